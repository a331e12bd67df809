//! `POST /api/channels/{channel}/messages`: back-end code publishes into a channel with an API
//! key. The JSON body is the payload, delivered as an `event` frame to everyone in the channel
//! and stored like any message — the same path the chat page's server function takes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use serde_json::value::RawValue;
use switchboard_hub::{Actor, Refusal};
use switchboard_protocol::ErrorCode;

use super::limits::too_many;
use super::AppState;

/// Why a publish request was refused; each maps to a status and a stable code.
#[derive(Debug)]
pub enum ApiError {
    /// No key, a wrong key, or the API is off.
    Unauthorized(&'static str),
    /// The body is not JSON.
    BadJson(String),
    /// The key is sending faster than its limit.
    RateLimited,
    /// The hub refused the message.
    Refused(Refusal),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized(why) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", why.to_string())
            }
            ApiError::BadJson(why) => (
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("the body must be JSON: {why}"),
            ),
            ApiError::RateLimited => return too_many("with this API key"),
            ApiError::Refused(refusal) => {
                let status = match refusal.code {
                    ErrorCode::InvalidChannel | ErrorCode::BadJson | ErrorCode::InvalidFrame => {
                        StatusCode::BAD_REQUEST
                    }
                    ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::AuthRequired => StatusCode::UNAUTHORIZED,
                    ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                    ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, refusal.code.as_str(), refusal.message)
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// Compares without stopping at the first difference, so timing does not leak the key.
pub fn same_key(presented: &str, configured: &str) -> bool {
    presented.len() == configured.len()
        && presented
            .bytes()
            .zip(configured.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

impl ApiError {
    /// Counts this refusal in `/metrics` (a refusal of the hub is counted there already).
    pub fn counted(self, state: &AppState) -> Self {
        let code = match &self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadJson(_) => "bad_json",
            ApiError::RateLimited => "rate_limited",
            ApiError::Refused(_) => return self,
        };
        state.hub.metrics().refused_as(code);
        self
    }
}

/// Publishes the body to the channel.
pub async fn publish(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    publish_with_key(&state, &channel, &headers, &body)
        .await
        .map_err(|err| err.counted(&state))
}

async fn publish_with_key(
    state: &AppState,
    channel: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if state.config.api_keys.is_empty() {
        return Err(ApiError::Unauthorized(
            "publishing over HTTP is off: configure api_keys (SWITCHBOARD_API_KEYS)",
        ));
    }
    let key = presented_key(headers).ok_or(ApiError::Unauthorized(
        "send the API key as `Authorization: Bearer KEY` or `X-Api-Key: KEY`",
    ))?;
    let Some(known) = state.config.api_keys.iter().find(|k| same_key(key, k)) else {
        tracing::info!(%channel, "refused: publish with an unknown API key");
        return Err(ApiError::Unauthorized("the API key is not valid"));
    };
    if !state.limits.per_key.allow(known) {
        return Err(ApiError::RateLimited);
    }
    publish_payload(state, channel, body)
        .await
        .map(IntoResponse::into_response)
}

/// Publishes a JSON body as the server and answers 202 with its seq once it is stored.
pub async fn publish_payload(
    state: &AppState,
    channel: &str,
    body: &[u8],
) -> Result<impl IntoResponse, ApiError> {
    let text = std::str::from_utf8(body).map_err(|err| ApiError::BadJson(err.to_string()))?;
    let payload: &RawValue =
        serde_json::from_str(text.trim()).map_err(|err| ApiError::BadJson(err.to_string()))?;
    let accepted = state
        .hub
        .publish(Actor::Server, channel, payload)
        .await
        .map_err(ApiError::Refused)?;
    let body = json!({ "status": "accepted", "seq": accepted.seq });
    Ok((StatusCode::ACCEPTED, Json(body)))
}
