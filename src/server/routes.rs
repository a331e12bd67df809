//! The HTTP routes: the realtime endpoint, health, and the Leptos pages with their assets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde_json::json;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};

use super::{admin, assets, publish_api, transport, AppState};
use crate::app::{shell, App};

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let context = state.clone();
    Router::new()
        .route("/rt/{connection}", get(transport::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(admin::PUBLISH_ROUTE, post(publish_api::publish))
        .route("/api/openapi.json", get(admin::openapi))
        .merge(admin::router(&state))
        // Pages and server functions reach the hub, the settings and the token checks through
        // Leptos context.
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context.clone()),
            move || shell(options.clone()),
        )
        .fallback(assets::site_file)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api_limit,
        ))
        // A span per HTTP request (method and path: never the query, which may carry a
        // token); its outcome logged at debug, server errors at warn.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .with_state(state)
}

/// `GET /metrics`: the Prometheus (OpenMetrics) text of this node.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.scrape(&state.hub, &state.webhooks).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain; charset=utf-8")],
            format!("metrics could not be read: {err}"),
        ),
    }
}

/// Every request under `/api/` (the publish API and the pages' server functions) counts
/// against its client address's rate limit.
async fn api_limit(
    state: State<AppState>,
    peer: axum::extract::ConnectInfo<super::tls::Peer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.uri().path().starts_with("/api/") {
        return super::limits::per_ip(state, peer, request, next).await;
    }
    next.run(request).await
}

/// `GET /healthz`: 200 with live counts while serving; 503 once shutting down, when storing
/// fails (`storage_failing`), or when a cluster node cannot reach its Redis
/// (`redis_unreachable`) — a load balancer should send clients elsewhere.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.connections.is_closed() {
        let body = json!({ "status": "shutting_down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    if let Err(unhealthy) = state.hub.health().await {
        let body = json!({ "status": unhealthy.status, "error": unhealthy.error });
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
