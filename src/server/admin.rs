//! The admin API, `/api/admin/…`: what operators see (live channels, members, history,
//! webhook delivery) and do (publish as the server, disconnect a socket, remove it from a
//! channel, clear a channel's history, replay dead webhook events) — on a cluster, any node
//! answers for all of them. Authorised by admin keys, kept apart from publish keys and compared
//! in constant time; off when none is configured. Every action is logged, never with the key.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_hub::{Actor, Order, Refusal};
use switchboard_protocol::ErrorCode;
use tracing::Instrument;
use uuid::Uuid;

use super::publish_api::{publish_payload, same_key, ApiError};
use super::AppState;

/// The publish API's route (served by `routes.rs` outside the admin-key check).
pub const PUBLISH_ROUTE: &str = "/api/channels/{channel}/messages";

/// The admin API: method, path and handler of each route. [`router`] serves exactly these,
/// and [`api_routes`] lists them for the test that holds `/api/openapi.json` to them.
fn admin_routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("get", "/api/admin/channels", get(channels)),
        ("get", "/api/admin/channels/{channel}", get(channel)),
        (
            "post",
            "/api/admin/channels/{channel}/messages",
            post(publish),
        ),
        (
            "delete",
            "/api/admin/channels/{channel}/history",
            delete(clear_history),
        ),
        (
            "delete",
            "/api/admin/channels/{channel}/members/{socketId}",
            delete(remove_member),
        ),
        (
            "delete",
            "/api/admin/sockets/{socketId}",
            delete(disconnect),
        ),
        ("get", "/api/admin/webhooks", get(webhooks)),
        ("post", "/api/admin/webhooks/replay", post(replay)),
    ]
}

/// Every route of the HTTP API as (method, path): the publish route and the admin router's.
pub fn api_routes() -> Vec<(&'static str, &'static str)> {
    let admin = admin_routes()
        .into_iter()
        .map(|(method, path, _)| (method, path));
    std::iter::once(("post", PUBLISH_ROUTE))
        .chain(admin)
        .collect()
}

/// The OpenAPI document of the HTTP API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The admin routes, behind the admin-key check.
pub fn router(state: &AppState) -> Router<AppState> {
    admin_routes()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .method_not_allowed_fallback(method_not_allowed)
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], OPENAPI)
}

/// A refusal of the admin API.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

/// A query string the admin API cannot read (`?limit=abc`): 400 with what was wrong.
fn bad_query(state: &AppState, rejection: &QueryRejection) -> Response {
    state.hub.metrics().refused_as("bad_query");
    error(StatusCode::BAD_REQUEST, "bad_query", rejection.body_text())
}

/// A method the route does not take: 405, as JSON like every other answer of the API.
async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method: see /api/openapi.json",
    )
}

/// A refusal of the engine as the API's answer, counted in `/metrics` (the engine's `publish`
/// and `history` count their own: their refusals are answered without this).
fn refused(state: &AppState, refusal: Refusal) -> Response {
    state.hub.metrics().refused(refusal.code);
    ApiError::Refused(refusal).into_response()
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-Admin-Key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| headers.get("x-admin-key").and_then(|v| v.to_str().ok()))
}

/// Lets through requests with a valid admin key; everything else gets 401 and nothing else.
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keys = &state.config.admin_keys;
    if keys.is_empty() {
        state.hub.metrics().refused_as("unauthorized");
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API is off: configure admin_keys (SWITCHBOARD_ADMIN_KEYS)",
        );
    }
    let valid = presented_key(request.headers()).and_then(|presented| {
        // Every key compared, so the time taken says nothing about which one matched.
        keys.iter()
            .enumerate()
            .fold(None, |found, (index, key)| match same_key(presented, key) {
                true => found.or(Some(index)),
                false => found,
            })
    });
    let Some(index) = valid else {
        tracing::info!(path = %request.uri().path(), "refused: admin request without a valid key");
        state.hub.metrics().refused_as("unauthorized");
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an admin key as `Authorization: Bearer KEY` or `X-Admin-Key: KEY`",
        );
    };
    if !state.limits.per_admin_key.allow(&index) {
        tracing::info!(
            key = index + 1,
            "refused: admin API rate limit for this key"
        );
        state.hub.metrics().refused_as("rate_limited");
        return super::limits::too_many("with this admin key");
    }
    // Which key acted, by its place in admin_keys: never the key itself.
    next.run(request)
        .instrument(tracing::info_span!("admin", key = index + 1))
        .await
}

/// `?filter=&after=&limit=` of the channel list.
#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Only channels whose name contains this.
    filter: Option<String>,
    /// Only channels after this name (the `next` of the previous page).
    after: Option<String>,
    /// At most this many (1 to 500, default 100).
    limit: Option<usize>,
}

/// `GET /api/admin/channels`: live channels, by name, a page at a time.
async fn channels(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_query(&state, &rejection),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let mut live = match state.hub.live_channels().await {
        Ok(live) => live,
        Err(refusal) => return refused(&state, refusal),
    };
    live.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let matching = live.into_iter().filter(|(channel, _)| {
        query
            .filter
            .as_deref()
            .is_none_or(|f| channel.name.contains(f))
            && query
                .after
                .as_deref()
                .is_none_or(|a| channel.name.as_str() > a)
    });
    let mut page: Vec<Value> = Vec::new();
    let mut next = None;
    for (channel, stats) in matching {
        if page.len() == limit {
            next = page
                .last()
                .and_then(|c| c["channel"].as_str().map(str::to_string));
            break;
        }
        page.push(json!({
            "channel": channel.name,
            "members": channel.people,
            "sockets": channel.sockets,
            "messages_last_minute": stats.last_minute,
            "last_seq": stats.last_seq,
            "history_size": stats.stored,
        }));
    }
    Json(json!({ "channels": page, "next": next })).into_response()
}

/// `?before=&limit=` of a channel's history.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/admin/channels/{channel}`: members, recent history, the rule.
async fn channel(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_query(&state, &rejection),
    };
    let (members, stats) = match state.hub.channel_state(&channel).await {
        Ok(state) => state,
        Err(refusal) => return refused(&state, refusal),
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let history = match state
        .hub
        .history(Actor::Server, &channel, query.before, limit)
        .await
    {
        Ok(history) => history,
        Err(refusal) => return ApiError::Refused(refusal).into_response(),
    };
    let history: Vec<Value> = history
        .iter()
        .filter_map(|frame| serde_json::from_slice(frame).ok())
        .collect();
    let members: Vec<Value> = members
        .into_iter()
        .map(|member| {
            let client: Value = serde_json::from_str(&member.client).unwrap_or(Value::Null);
            json!({
                "socketId": member.socket,
                "signedIn": client["permissions"]["authenticated"].as_bool().unwrap_or(false),
                "extras": client["extras"],
                "presence": member.presence,
                "node": member.node,
            })
        })
        .collect();
    let rule = state.hub.rule(&channel);
    Json(json!({
        "channel": channel,
        "rule": {
            "pattern": rule.pattern,
            "join": format!("{:?}", rule.join).to_lowercase(),
            "send": format!("{:?}", rule.send).to_lowercase(),
            "presence": rule.presence,
            "history_keep": rule.history_keep,
            "max_payload_bytes": rule.max_payload_bytes,
            "messages_per_second": rule.messages_per_second,
        },
        "members": members,
        "history": history,
        "last_seq": stats.last_seq,
        "history_size": stats.stored,
        "messages_last_minute": stats.last_minute,
    }))
    .into_response()
}

/// `POST /api/admin/channels/{channel}/messages`: publish as the server.
async fn publish(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    body: Bytes,
) -> Response {
    tracing::info!(%channel, "admin: publish");
    match publish_payload(&state, &channel, &body).await {
        Ok(accepted) => accepted.into_response(),
        Err(err) => err.counted(&state).into_response(),
    }
}

/// `DELETE /api/admin/channels/{channel}/history`: a new epoch; resuming clients get a gap.
async fn clear_history(State(state): State<AppState>, Path(channel): Path<String>) -> Response {
    tracing::info!(%channel, "admin: clear history");
    match state.hub.clear_history(&channel).await {
        Ok(()) => Json(json!({ "status": "cleared" })).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

/// The socket id in a path, or the 404 that says there is no such socket.
fn socket_id(text: &str) -> Result<Uuid, Box<Response>> {
    Uuid::try_parse(text).map_err(|_| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSocket.as_str(),
            format!("no socket {text:?}"),
        ))
    })
}

/// `DELETE /api/admin/sockets/{socketId}`: closes it with 4001 (do not reconnect at once).
async fn disconnect(State(state): State<AppState>, Path(socket): Path<String>) -> Response {
    let id = match socket_id(&socket) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    tracing::info!(%socket, "admin: disconnect");
    match state.hub.order(id, Order::Disconnect).await {
        Ok(true) => Json(json!({ "status": "disconnected" })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSocket.as_str(),
            format!("no socket {socket:?} is connected"),
        ),
        Err(refusal) => refused(&state, refusal),
    }
}

/// `DELETE /api/admin/channels/{channel}/members/{socketId}`: takes it out of the channel;
/// it gets an `event` saying so.
async fn remove_member(
    State(state): State<AppState>,
    Path((channel, socket)): Path<(String, String)>,
) -> Response {
    let id = match socket_id(&socket) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let members = match state.hub.channel_state(&channel).await {
        Ok((members, _)) => members,
        Err(refusal) => return refused(&state, refusal),
    };
    if !members.iter().any(|m| m.socket == socket) {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSocket.as_str(),
            format!("socket {socket:?} is not in channel {channel:?}"),
        );
    }
    tracing::info!(%channel, %socket, "admin: remove from channel");
    let order = Order::Remove {
        channel: channel.clone(),
    };
    match state.hub.order(id, order).await {
        Ok(true) => Json(json!({ "status": "removed" })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSocket.as_str(),
            format!("no socket {socket:?} is connected"),
        ),
        Err(refusal) => refused(&state, refusal),
    }
}

/// `GET /api/admin/webhooks`: each endpoint and how its delivery stands.
async fn webhooks(State(state): State<AppState>) -> Response {
    let store = state.hub.outbox();
    let endpoints = state.webhooks.endpoints.clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let listed = tokio::task::spawn_blocking(move || {
        use std::sync::atomic::Ordering::Relaxed;
        endpoints
            .iter()
            .map(|endpoint| {
                let settings = &endpoint.settings;
                let stats = store.outbox_stats(&settings.name)?;
                let events: Vec<&str> = settings.events.iter().map(|e| e.as_str()).collect();
                Ok(json!({
                    "name": settings.name,
                    "url": settings.url,
                    "events": events,
                    "channels": settings.channels,
                    "pending": stats.pending,
                    "dead": stats.dead,
                    "oldest_pending_age_seconds": stats
                        .oldest_pending_ms
                        .map(|at| now_ms.saturating_sub(at) as f64 / 1000.0),
                    "delivered": endpoint.counters.delivered.load(Relaxed),
                    "retried": endpoint.counters.retried.load(Relaxed),
                }))
            })
            .collect::<Result<Vec<Value>, switchboard_hub::StoreError>>()
    })
    .await;
    match listed {
        Ok(Ok(endpoints)) => Json(json!({ "endpoints": endpoints })).into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, "internal", err.to_string()),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, "internal", err.to_string()),
    }
}

/// The body of a replay: which endpoint (all when absent).
#[derive(Debug, Default, Deserialize)]
struct ReplayBody {
    endpoint: Option<String>,
}

/// `POST /api/admin/webhooks/replay`: dead events back in line.
async fn replay(State(state): State<AppState>, body: Bytes) -> Response {
    let body: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(err) => {
                return ApiError::BadJson(err.to_string())
                    .counted(&state)
                    .into_response()
            }
        }
    };
    if let Some(name) = &body.endpoint {
        if !state
            .webhooks
            .endpoints
            .iter()
            .any(|e| &e.settings.name == name)
        {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_endpoint",
                format!("no webhook endpoint is named {name:?}"),
            );
        }
    }
    tracing::info!(endpoint = ?body.endpoint, "admin: replay dead webhook events");
    let store = state.hub.outbox();
    let endpoint = body.endpoint.clone();
    let replayed =
        tokio::task::spawn_blocking(move || store.replay_dead(endpoint.as_deref())).await;
    match replayed {
        Ok(Ok(count)) => {
            state.hub.hooks_recorded().notify_waiters();
            Json(json!({ "replayed": count })).into_response()
        }
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, "internal", err.to_string()),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, "internal", err.to_string()),
    }
}
