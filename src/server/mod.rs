//! The server process: configuration, routes, the realtime transport and graceful shutdown.

pub mod assets;
pub mod auth;
pub mod config;
mod config_file;
mod leptos_settings;
mod publish_api;
mod routes;
mod secrets;
mod shutdown;
mod start;
pub mod tls;
mod transport;

use leptos::config::LeptosOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_hub::Hub;
use tokio_util::task::TaskTracker;

pub use config::{ConfigError, HistoryEngine, ServerConfig};
pub use shutdown::{run, Server};
pub use start::{start, StartError};

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The realtime engine.
    pub hub: Hub,
    /// Server settings.
    pub config: Arc<ServerConfig>,
    /// Leptos settings (site root, output name).
    pub leptos_options: LeptosOptions,
    /// Open WebSocket connections, awaited on shutdown.
    pub connections: TaskTracker,
    /// Open sockets per client IP address.
    pub per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    /// Open sockets per signed-in user id.
    pub per_user: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Checks socket tokens.
    pub verifier: auth::Verifier,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The address the server listens on, for logs.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}
