//! The binary as an operator runs it: `--help` and `--version`, exit statuses a supervisor can
//! act on, `PORT`, `Leptos.toml` read from the working folder (or the copy built in) under the
//! `LEPTOS_*` variables, secrets read from files, and pages that name the wasm file the build
//! writes.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::{TestServer, SECRET};

/// The server binary with a memory history and no Leptos settings from the test's own
/// environment (cargo passes `LEPTOS_OUTPUT_NAME` to tests), run from `folder`.
fn switchboard_in(folder: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .current_dir(folder)
        .env_remove("LEPTOS_SITE_ADDR")
        .env_remove("LEPTOS_OUTPUT_NAME")
        .env_remove("PORT")
        .env_remove("SWITCHBOARD_JWT_SECRET")
        .env("SWITCHBOARD_ENGINE", "memory")
        .env("RUST_LOG", "warn");
    command
}

/// An empty folder of the test's own.
fn empty_folder() -> PathBuf {
    switchboard_testkit::temp_folder("switchboard-deploy")
}

/// A change to the command line or environment of a server about to start.
type Configure = fn(&mut Command);

fn write(path: &std::path::Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

#[test]
fn help_and_version_exit_0() {
    let help = support::run_expecting_exit(switchboard_in(&empty_folder()).arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--config <PATH>"), "{text}");
    assert!(text.contains("Exit status"), "{text}");
    let version = support::run_expecting_exit(switchboard_in(&empty_folder()).arg("--version"));
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn configuration_errors_exit_78_and_other_failures_exit_1() {
    let folder = empty_folder();
    let cases: [(&str, Configure); 4] = [
        ("an unknown flag", |c| {
            c.arg("--listen");
        }),
        ("a bad setting", |c| {
            c.env("SWITCHBOARD_ENGINE", "etcd");
        }),
        ("a missing config file", |c| {
            c.args(["--config", "/nonexistent.toml"]);
        }),
        ("an unreadable key file", |c| {
            c.env("SWITCHBOARD_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem");
        }),
    ];
    for (what, configure) in cases {
        let mut command = switchboard_in(&folder);
        configure(command.env("LEPTOS_SITE_ADDR", "127.0.0.1:0"));
        let output = support::run_expecting_exit(&mut command);
        assert_eq!(output.status.code(), Some(78), "{what}: {output:?}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output =
        support::run_expecting_exit(switchboard_in(&folder).env("LEPTOS_SITE_ADDR", &address));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn port_sets_the_port_unless_leptos_site_addr_is_set() {
    let port = switchboard_testkit::free_port();
    let server = TestServer::launch(switchboard_in(&empty_folder()).env("PORT", port.to_string()));
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    let server = TestServer::launch(
        switchboard_in(&empty_folder())
            .env("PORT", port.to_string())
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
    );
    assert_ne!(server.addr, format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn leptos_toml_in_the_working_folder_sets_the_address_and_the_file_names() {
    let folder = empty_folder();
    let port = switchboard_testkit::free_port();
    write(
        &folder.join("Leptos.toml"),
        &format!("output-name = \"board\"\nsite-addr = \"127.0.0.1:{port}\"\n"),
    );
    let server = TestServer::launch(&mut switchboard_in(&folder));
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    let page = support::http_get(&server.addr, "/").await;
    for file in ["/pkg/board.js", "/pkg/board.wasm", "/pkg/board.css"] {
        assert!(page.contains(file), "the page should load {file}: {page}");
    }
    drop(server);
    // LEPTOS_* variables win over the file.
    let server = TestServer::launch(
        switchboard_in(&folder)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "other"),
    );
    assert_ne!(server.addr, format!("127.0.0.1:{port}"));
    let page = support::http_get(&server.addr, "/").await;
    assert!(page.contains("/pkg/other.wasm"), "{page}");
}

#[test]
fn a_broken_leptos_toml_exits_78_naming_its_line() {
    let folder = empty_folder();
    write(
        &folder.join("Leptos.toml"),
        "output-name = \"board\"\nsite-addr = \n",
    );
    let output = support::run_expecting_exit(&mut switchboard_in(&folder));
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Leptos.toml") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_leptos_toml_the_settings_built_in_apply_and_the_page_names_the_real_wasm_file() {
    // A plain `cargo test` build: the page must name the file cargo-leptos writes
    // (switchboard.wasm), not wasm-bindgen's switchboard_bg.wasm.
    let server =
        TestServer::launch(switchboard_in(&empty_folder()).env("LEPTOS_SITE_ADDR", "127.0.0.1:0"));
    let page = support::http_get(&server.addr, "/").await;
    assert!(page.contains("/pkg/switchboard.wasm"), "{page}");
    assert!(page.contains("/pkg/switchboard.css"), "{page}");
    assert!(!page.contains("_bg.wasm"), "{page}");
}

#[tokio::test]
async fn secrets_are_read_from_files() {
    let folder = empty_folder();
    let secret = write(&folder.join("jwt-secret"), &format!("{SECRET}\n"));
    let keys = write(&folder.join("api-keys"), "first-key\nsecond-key\n");
    let server = TestServer::launch(
        switchboard_in(&folder)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_JWT_SECRET_FILE", &secret)
            .env("SWITCHBOARD_API_KEYS_FILE", &keys),
    );
    // A token signed with the secret from the file is accepted.
    let mut member = server.client_as("u1", "Ann").await;
    member.join("room1", false, false).await.unwrap();
    let accepted = support::http_post(
        &server.addr,
        "/api/channels/room1/messages",
        "X-Api-Key: second-key\r\n",
        r#"{"text":"from a back end"}"#,
    )
    .await;
    assert!(accepted.starts_with("HTTP/1.1 202"), "{accepted}");

    let both = support::run_expecting_exit(
        switchboard_in(&folder)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_JWT_SECRET", SECRET)
            .env("SWITCHBOARD_JWT_SECRET_FILE", &secret),
    );
    assert_eq!(both.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("SWITCHBOARD_JWT_SECRET and SWITCHBOARD_JWT_SECRET_FILE are both set"),
        "{stderr}"
    );
}
