//! Start-up: settings, the engine they choose, the listening socket, and the line that says
//! where the server listens and what it loaded.

use leptos::config::LeptosOptions;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_hub::{
    GateHandle, Gates, HistoryStore, Hub, MemoryHistory, RedisHistory, SqliteHistory,
};

use super::hooks::{self, delivery::Webhooks, gates::HttpGates};
use super::{describe, shutdown, Engine, Server, ServerConfig, StartError};

/// The hub of the engine the settings choose: SQLite (the default), memory, or Redis; with
/// the webhook routes and gates of the settings.
pub fn open_engine(config: &ServerConfig, gates: Option<&Arc<HttpGates>>) -> Result<Hub, String> {
    let mut hub = config.hub.clone();
    hub.hooks = hooks::routes(&config.webhooks);
    if config.gates.join_url.is_some() || config.gates.publish_url.is_some() {
        hub.gates = GateHandle(gates.map(|g| g.clone() as Arc<dyn Gates>));
    }
    match &config.engine {
        Engine::Sqlite(path) => {
            let store = SqliteHistory::open(path).map_err(|err| err.to_string())?;
            Hub::new(hub, Arc::new(store)).map_err(|err| err.to_string())
        }
        Engine::Memory => {
            // Before [engine], SWITCHBOARD_ENGINE=memory meant one node with its history in
            // SQLite: whoever still sets it that way must hear that nothing is kept now.
            tracing::warn!(
                "the engine is memory: stored messages, resume and webhook events are lost on \
                 every restart; leave SWITCHBOARD_ENGINE unset (or set it to sqlite) to keep them"
            );
            let store: Arc<dyn HistoryStore> = Arc::new(MemoryHistory::default());
            Hub::new(hub, store).map_err(|err| err.to_string())
        }
        Engine::Redis(redis) => Hub::clustered(hub, &redis.hub_config()).map_err(|err| {
            format!("{err}; start Redis there or point [engine] redis_url (SWITCHBOARD_REDIS_URL) at one")
        }),
    }
}

/// What the engine is, for the start-up line.
fn describe_engine(config: &ServerConfig, hub: &Hub) -> String {
    match &config.engine {
        Engine::Sqlite(path) => format!("history in {}", path.display()),
        Engine::Memory => "history in memory (lost on restart)".to_string(),
        Engine::Redis(redis) => format!(
            "node {} of cluster {:?}; fan-out, presence and history in Redis at {}",
            hub.node_id().unwrap_or("?"),
            redis.prefix,
            RedisHistory::shown_url(&redis.url)
        ),
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
    let gates = match config.gates.any() {
        true => Some(Arc::new(
            HttpGates::new(config.gates.clone()).map_err(StartError::Config)?,
        )),
        false => None,
    };
    let hub = open_engine(&config, gates.as_ref())?;
    let engine = describe_engine(&config, &hub);
    let webhooks = Webhooks::new(&config.webhooks, config.webhook_give_up);
    webhooks.start(&hub, hub.node_id().unwrap_or("this-node").to_string())?;
    if !config.webhooks.is_empty() {
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        tracing::info!("delivering webhooks to {}", names.join(", "));
    }
    let server = Server::bind(config, hub, leptos_options, webhooks, gates).await?;
    let tls = server.tls.is_some();
    let local = server.local_addr().map_err(|err| err.to_string())?;
    // Tests and scripts read this line to find the port.
    println!(
        "switchboard listening on {} ({engine}; {loaded})",
        describe(local, tls)
    );
    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        shutdown::wait_for_signal().await;
        tracing::info!("shutdown signal received: closing sockets with 1012");
        stop.cancel();
    });
    server
        .run()
        .await
        .map_err(|err| StartError::Failed(format!("server failed: {err}")))
}
