//! The `switchboard` server binary: pages, realtime endpoint and health on one port.

use leptos::config::get_configuration;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
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
    if let Err(message) = switchboard::server::run(leptos_options).await {
        eprintln!("switchboard: {message}");
        std::process::exit(1);
    }
}
