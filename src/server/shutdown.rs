//! Serving and graceful shutdown as one explicit type: [`Server`] binds, serves, and on
//! SIGINT/SIGTERM (or [`Server::shutdown_handle`]) stops accepting, closes every socket with
//! 1012 so clients reconnect elsewhere, and waits a bounded time for them to go.

use leptos::config::LeptosOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use switchboard_hub::Hub;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hooks::{delivery::Webhooks, gates::HttpGates};
use super::tls::{self, Certificates};
use super::{routes, AppState, ServerConfig, StartError};

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    /// Set when the server terminates TLS itself.
    pub(crate) tls: Option<Arc<Certificates>>,
    state: AppState,
    stop: CancellationToken,
}

/// Connections waiting to be accepted, at most. After a restart every client reconnects at
/// once; with a short queue (the usual 1,024) some of them would wait a second or more for
/// TCP to retry. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16 * 1024;

/// Listens on `addr` with a long accept queue (see [`LISTEN_BACKLOG`]).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds `leptos_options.site_addr` and loads the token keys, serving `hub`.
    pub async fn bind(
        config: ServerConfig,
        hub: Hub,
        leptos_options: LeptosOptions,
        webhooks: Webhooks,
        gates: Option<Arc<HttpGates>>,
    ) -> Result<Self, StartError> {
        let addr = leptos_options.site_addr;
        let listener = listen(addr).map_err(|err| {
            format!("cannot listen on {addr}: {err}; is another server running there? set LEPTOS_SITE_ADDR to another address")
        })?;
        let verifier = super::auth::Verifier::load(&config.jwt)
            .await
            .map_err(StartError::Config)?;
        let tls = config
            .tls
            .as_ref()
            .map(Certificates::load)
            .transpose()
            .map_err(|err| StartError::Config(format!("TLS: {err}")))?;
        let engine = match &config.engine {
            super::Engine::Sqlite(_) => "sqlite",
            super::Engine::Memory => "memory",
            super::Engine::Redis(_) => "redis",
        };
        let hub_for_metrics = hub.clone();
        let limits = Arc::new(super::limits::RequestLimits::new(
            config.api_requests_per_second,
            config.page_requests_per_second,
        ));
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
                limits,
                metrics: Arc::new(super::metrics::Metrics::new(
                    &hub_for_metrics,
                    engine,
                    &webhooks,
                )),
                webhooks,
                gates,
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
        let listener = tls::Listener::new(listener, tls).map_err(std::io::Error::other)?;
        let stopping = stop.clone();
        let hub = state.hub.clone();
        let connections = state.connections.clone();
        let app = app.into_make_service_with_connect_info::<tls::Peer>();
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
        // Deliveries the store held back for its next commit are written now, so a clean
        // restart does not send them again.
        let outbox = state.hub.outbox();
        let flushed =
            tokio::task::spawn_blocking(move || outbox.flush_held().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|err| Err(err.to_string()));
        if let Err(err) = flushed {
            tracing::warn!("recording webhook deliveries failed: {err}");
        }
        Ok(())
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
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
