//! The server process: configuration, routes, the realtime transport and graceful shutdown.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod config;
mod config_file;
pub mod hooks;
mod leptos_settings;
pub mod limits;
pub mod metrics;
pub mod pages;
pub mod plain;
mod publish_api;
mod routes;
mod secrets;
pub mod settings;
mod shutdown;
mod start;
mod startup;
pub mod tls;
mod transport;

use leptos::config::LeptosOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_hub::Hub;
use tokio_util::task::TaskTracker;

pub use config::{ConfigError, Engine, ServerConfig};
pub use shutdown::Server;
pub use start::{start, StartError};
pub use startup::{open_engine, run};

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
    /// Checks tokens of sockets, pages and server functions.
    pub verifier: auth::Verifier,
    /// Rate limits of the HTTP side.
    pub limits: Arc<limits::RequestLimits>,
    /// Webhook endpoints and their delivery totals.
    pub webhooks: hooks::delivery::Webhooks,
    /// The application's gates, when configured (the connect gate is asked by the transport).
    pub gates: Option<Arc<hooks::gates::HttpGates>>,
    /// What `/metrics` exports.
    pub metrics: Arc<metrics::Metrics>,
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
