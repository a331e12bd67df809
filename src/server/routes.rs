//! The HTTP routes: the realtime endpoint, health, and the Leptos pages with their assets
//! (`assets.rs`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde_json::json;

use super::{assets, publish_api, transport, AppState};
use crate::app::{shell, App};

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let hub = state.hub.clone();
    let config = state.config.clone();
    Router::new()
        .route("/rt/{connection}", get(transport::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/api/channels/{channel}/messages",
            post(publish_api::publish),
        )
        // Pages and server functions reach the hub through Leptos context.
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(hub.clone());
                provide_context(config.clone());
            },
            move || shell(options.clone()),
        )
        .fallback(assets::site_file)
        .with_state(state)
}

/// `GET /metrics`: counts and running totals in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.hub.stats();
    let lines = [
        (
            "switchboard_sockets",
            "gauge",
            "Sockets connected now.",
            stats.sockets as u64,
        ),
        (
            "switchboard_channels",
            "gauge",
            "Channels active now.",
            stats.channels as u64,
        ),
        (
            "switchboard_volatile_queued_total",
            "counter",
            "Volatile frames queued for a socket.",
            stats.volatile_queued,
        ),
        (
            "switchboard_volatile_coalesced_total",
            "counter",
            "Volatile frames that replaced an unsent older one of the same sender.",
            stats.volatile_coalesced,
        ),
        (
            "switchboard_volatile_dropped_total",
            "counter",
            "Volatile frames dropped because a socket had too many senders waiting.",
            stats.volatile_dropped,
        ),
    ];
    let body: String = lines
        .iter()
        .map(|(name, kind, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect();
    ([("content-type", "text/plain; version=0.0.4")], body)
}

/// `GET /healthz`: 200 with live counts while serving; 503 once shutting down, or when a
/// cluster node cannot reach its Redis.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.connections.is_closed() {
        let body = json!({ "status": "shutting_down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    // A node that cannot reach its cluster's Redis cannot deliver or store: a load balancer
    // should send its clients elsewhere.
    let hub = state.hub.clone();
    let reachable = tokio::task::spawn_blocking(move || hub.check_cluster())
        .await
        .unwrap_or_else(|err| Err(switchboard_hub::StoreError(err.to_string())));
    if let Err(err) = reachable {
        let body = json!({ "status": "redis_unreachable", "error": err.to_string() });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    let mut body = json!({
        "status": "ok",
        "sockets": state.hub.socket_count(),
        "channels": state.hub.channel_count(),
    });
    if let Some(node) = state.hub.node_id() {
        body["node"] = json!(node);
    }
    (StatusCode::OK, Json(body))
}
