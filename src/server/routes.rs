//! The HTTP routes: the realtime endpoint, health, and the Leptos pages with their assets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde_json::json;

use super::{transport, AppState};
use crate::app::{shell, App};

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let hub = state.hub.clone();
    Router::new()
        .route("/rt/{connection}", get(transport::upgrade))
        .route("/healthz", get(healthz))
        // Pages and server functions reach the hub through Leptos context.
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(hub.clone()),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
}

/// `GET /healthz`: 200 with live counts while serving, 503 once shutting down.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.connections.is_closed() {
        let body = json!({ "status": "shutting_down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    let body = json!({
        "status": "ok",
        "sockets": state.hub.socket_count(),
        "channels": state.hub.channel_count(),
    });
    (StatusCode::OK, Json(body))
}
