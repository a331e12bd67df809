//! Start-up and graceful shutdown as one explicit type: [`Server`] binds, serves, and on
//! SIGINT/SIGTERM (or [`Server::shutdown_handle`]) stops accepting, closes every socket with
//! 1012 so clients reconnect elsewhere, and waits a bounded time for them to go.

use axum::serve::ListenerExt;
use leptos::config::LeptosOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use switchboard_hub::{HistoryStore, Hub, MemoryHistory, SqliteHistory};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tls::{self, Certificates};
use super::{describe, routes, AppState, HistoryEngine, ServerConfig, StartError};

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    /// Set when the server terminates TLS itself.
    tls: Option<Arc<Certificates>>,
    state: AppState,
    stop: CancellationToken,
}

impl Server {
    /// Opens the history store, binds `leptos_options.site_addr` and builds the hub.
    pub async fn bind(
        config: ServerConfig,
        leptos_options: LeptosOptions,
    ) -> Result<Self, StartError> {
        let hub = match &config.cluster {
            Some(cluster) => Hub::clustered(config.hub.clone(), cluster).map_err(|err| {
                format!("{err}; start Redis there or point [cluster] redis_url (SWITCHBOARD_REDIS_URL) at one")
            })?,
            None => {
                let store: Arc<dyn HistoryStore> = match &config.history {
                    HistoryEngine::Sqlite(path) => {
                        Arc::new(SqliteHistory::open(path).map_err(|err| err.to_string())?)
                    }
                    HistoryEngine::Memory => Arc::new(MemoryHistory::default()),
                };
                Hub::new(config.hub.clone(), store)
            }
        };
        let addr = leptos_options.site_addr;
        let listener = TcpListener::bind(addr).await.map_err(|err| {
            format!("cannot listen on {addr}: {err}; is another server running there? set LEPTOS_SITE_ADDR to another address")
        })?;
        let verifier = super::auth::Verifier::load(
            config.jwt_secret.as_deref(),
            config.jwt_public_key_file.as_deref(),
            config.jwks_file.as_deref(),
        )
        .map_err(StartError::Config)?;
        let tls = config
            .tls
            .as_ref()
            .map(Certificates::load)
            .transpose()
            .map_err(|err| StartError::Config(format!("TLS: {err}")))?;
        Ok(Self {
            listener,
            tls,
            state: AppState {
                hub,
                config: Arc::new(config),
                leptos_options,
                connections: TaskTracker::new(),
                per_ip: Default::default(),
                per_user: Default::default(),
                verifier,
            },
            stop: CancellationToken::new(),
        })
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the shutdown handle is cancelled, then shuts down gracefully.
    pub async fn run(self) -> std::io::Result<()> {
        let Server {
            listener,
            tls,
            state,
            stop,
        } = self;
        let app = routes::router(state.clone());
        let listener = tls::Listener::new(listener, tls)
            .map_err(std::io::Error::other)?
            .tap_io(|stream| stream.set_nodelay());
        let stopping = stop.clone();
        let hub = state.hub.clone();
        let connections = state.connections.clone();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            stopping.cancelled().await;
            connections.close();
            hub.shutdown();
        });
        serve.await?;
        let started = Instant::now();
        let open = state.hub.socket_count();
        if tokio::time::timeout(state.config.shutdown_grace, state.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} sockets still open after {:?}; dropping them",
                state.hub.socket_count(),
                state.config.shutdown_grace
            );
        }
        tracing::info!("closed {open} sockets with 1012 in {:?}", started.elapsed());
        state.hub.depart();
        Ok(())
    }
}

/// Runs the server process: settings from `config_path` and the environment, stop on SIGINT
/// or SIGTERM.
pub async fn run(
    leptos_options: LeptosOptions,
    config_path: Option<PathBuf>,
) -> Result<(), StartError> {
    let config = ServerConfig::load(config_path.as_deref())
        .map_err(|err| StartError::Config(format!("{err}; fix it and start again")))?;
    let loaded = match &config_path {
        Some(path) => format!("config {}", path.display()),
        None => "built-in defaults and SWITCHBOARD_* variables".to_string(),
    };
    let cluster = config.cluster.clone();
    let mut history = match &config.history {
        HistoryEngine::Sqlite(path) => format!("history in {}", path.display()),
        HistoryEngine::Memory => "history in memory (lost on restart)".to_string(),
    };
    let server = Server::bind(config, leptos_options).await?;
    let tls = server.tls.is_some();
    if let Some(cluster) = cluster {
        history = format!(
            "node {} of cluster {:?}; fan-out, presence and history in Redis at {}",
            server.state.hub.node_id().unwrap_or("?"),
            cluster.prefix,
            switchboard_hub::RedisHistory::shown_url(&cluster.redis_url)
        );
    }
    let local = server.local_addr().map_err(|err| err.to_string())?;
    // Tests and scripts read this line to find the port.
    println!(
        "switchboard listening on {} ({history}; {loaded})",
        describe(local, tls)
    );
    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: closing sockets with 1012");
        stop.cancel();
    });
    server
        .run()
        .await
        .map_err(|err| StartError::Failed(format!("server failed: {err}")))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
