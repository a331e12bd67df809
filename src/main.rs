//! The `switchboard` server binary: pages, realtime endpoint and health on one port.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::server::StartError;
use tracing_subscriber::EnvFilter;

/// Switchboard: a self-hosted realtime channel server with its web app (chat, live cursors),
/// speaking the wire format of Xano's realtime service.
#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    after_help = "\
Settings: Leptos.toml in the working folder (else the copy built in) for the listen address,
then --config (every key: config/switchboard.example.toml), then environment variables, which
win: LEPTOS_SITE_ADDR (e.g. 0.0.0.0:443), PORT (the port only, when LEPTOS_SITE_ADDR is
unset), SWITCHBOARD_* (e.g. SWITCHBOARD_JWT_SECRET or SWITCHBOARD_JWT_SECRET_FILE,
SWITCHBOARD_TLS_CERT_FILE and SWITCHBOARD_TLS_KEY_FILE to serve HTTPS and WSS; SIGHUP
reloads them). RUST_LOG sets the log level (default info).

Exit status: 0 after a clean stop (SIGTERM, Ctrl-C), 78 when the configuration is wrong (a
supervisor should not restart it unchanged), 1 on any other failure."
)]
struct Cli {
    /// The TOML settings file.
    #[arg(long, value_name = "PATH", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Print every setting with its default and what it does, as a config file, and exit.
    #[arg(long)]
    example_config: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // --help and --version are not errors; a wrong flag is a configuration that will
            // not work however often a supervisor restarts it.
            return match err.use_stderr() {
                false => ExitCode::SUCCESS,
                true => ExitCode::from(StartError::EX_CONFIG),
            };
        }
    };
    if cli.example_config {
        print!("{}", switchboard::server::settings::example_config());
        return ExitCode::SUCCESS;
    }
    // Logs go to stderr; stdout carries what scripts read (where the server listens).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match std::env::var("SWITCHBOARD_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
        Ok(other) => {
            eprintln!("switchboard: SWITCHBOARD_LOG_FORMAT={other:?}: expected text or json");
            return ExitCode::from(StartError::EX_CONFIG);
        }
    }
    // One TLS implementation for the server, its Redis connections and anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchboard: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(switchboard::server::start(cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
