//! The `switchboard` server binary: pages, realtime endpoint and health on one port.

use leptos::config::get_configuration;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    // Logs go to stderr; stdout carries what scripts read (where the server listens).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let leptos_options = match get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(err) => {
            eprintln!("switchboard: cannot read the Leptos settings: {err}");
            std::process::exit(2);
        }
    };
    // `--config PATH` (or SWITCHBOARD_CONFIG) names the TOML settings file.
    let mut args = std::env::args().skip(1);
    let mut config = std::env::var_os("SWITCHBOARD_CONFIG").map(std::path::PathBuf::from);
    while let Some(arg) = args.next() {
        if arg == "--example-config" {
            print!("{}", switchboard::server::settings::example_config());
            return;
        }
        match (arg.as_str(), args.next()) {
            ("--config", Some(path)) => config = Some(path.into()),
            _ => {
                eprintln!("usage: switchboard [--config PATH] [--example-config]");
                std::process::exit(2);
            }
        }
    }
    if let Err(message) = switchboard::server::run(leptos_options, config).await {
        eprintln!("switchboard: {message}");
        std::process::exit(1);
    }
}
