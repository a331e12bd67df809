//! `test-certificates DIR NAME...`: writes a new test authority (`ca.pem`) and a server
//! certificate for the names (`cert.pem`, `key.pem`) into DIR, for tests outside Rust (the
//! browser and SDK tests) to use the same rcgen certificates as the Rust ones.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: test-certificates DIR NAME...");
        std::process::exit(2);
    };
    let names: Vec<String> = args.collect();
    let names: Vec<&str> = match names.is_empty() {
        true => vec!["localhost", "127.0.0.1"],
        false => names.iter().map(String::as_str).collect(),
    };
    let files = switchboard_testkit::tls::TestCa::new().write(std::path::Path::new(&dir), &names);
    println!("{}", files.ca.display());
}
