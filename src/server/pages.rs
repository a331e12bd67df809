//! The pages' side of a request: who is calling a server function (or loading a page), from
//! where, and the checks every server function makes before it acts. Server functions go
//! through the same token check as sockets and the same channel rules
//! ([`switchboard_hub::authorize`], inside the hub), so a page is no way around them.

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use leptos::prelude::{expect_context, ServerFnError};
use serde_json::{Map, Value};
use std::net::IpAddr;
use switchboard_hub::Identity;
use switchboard_protocol::is_valid_colour;

use super::auth::{page_token, TOKEN_COOKIE};
use super::AppState;
use crate::pages::chat::message::{ChatUser, MAX_NAME_CHARS};

/// The caller of a server function or page load.
pub struct PageCaller {
    /// The server's shared state.
    pub state: AppState,
    /// Who the caller is (anonymous without a valid token).
    pub identity: Identity,
    /// Where the caller is (behind trusted proxies, the forwarded client).
    pub ip: IpAddr,
    headers: HeaderMap,
}

/// A refusal as the page shows it: a sentence for a person.
fn refused(message: impl Into<String>) -> ServerFnError {
    ServerFnError::ServerError(message.into())
}

/// A refusal of the page's side answered with `status` (a server function's errors are 500
/// otherwise), counted in `/metrics` under `code`.
pub fn refused_with(
    status: axum::http::StatusCode,
    code: &str,
    message: impl Into<String>,
) -> ServerFnError {
    if let Some(state) = leptos::prelude::use_context::<AppState>() {
        state.hub.metrics().refused_as(code);
    }
    answered_with(status, message)
}

/// An error answered with `status`, not counted (the hub counted it). Only a server
/// function's answer takes the status: a page rendered on the server that could not show part
/// of itself (a room's history) is still the page.
fn answered_with(status: axum::http::StatusCode, message: impl Into<String>) -> ServerFnError {
    if in_server_function() {
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
    }
    refused(message)
}

/// Whether this is a call of a server function (under `/api/`), not a page being rendered.
fn in_server_function() -> bool {
    leptos::prelude::use_context::<axum::http::request::Parts>()
        .is_none_or(|parts| parts.uri.path().starts_with("/api/"))
}

/// Input the page should not have sent (a name too long, a colour that is not one): 400.
pub fn bad_input(message: impl Into<String>) -> ServerFnError {
    refused_with(axum::http::StatusCode::BAD_REQUEST, "bad_input", message)
}

impl PageCaller {
    /// The caller of the current request. A token that fails its check is refused outright
    /// (the page should sign in again), never treated as anonymous.
    pub async fn of_request() -> Result<Self, ServerFnError> {
        let state = expect_context::<AppState>();
        let headers: HeaderMap = leptos_axum::extract()
            .await
            .map_err(|_| refused("the request could not be read"))?;
        let ConnectInfo(peer) = leptos_axum::extract::<ConnectInfo<super::tls::Peer>>()
            .await
            .map_err(|_| refused("the request could not be read"))?;
        let ip = super::transport::client_ip(peer.ip(), &headers, &state.config.trusted_proxies);
        let token = page_token(&headers);
        let identity = state
            .verifier
            .identify(token.as_deref())
            .await
            .map_err(|err| {
                tracing::info!(%ip, code = err.code(), reason = %err, "refused a page request");
                refused_with(
                    axum::http::StatusCode::UNAUTHORIZED,
                    err.code(),
                    "your sign-in is no longer valid: sign in again",
                )
            })?;
        Ok(Self {
            state,
            identity,
            ip,
            headers,
        })
    }

    /// The back end's connect gate, asked as it is before a socket's upgrade: a page that
    /// reads or sends in a channel is a way in like a socket. A refusal is a 403 with the back
    /// end's reason.
    pub async fn admit(&self) -> Result<(), ServerFnError> {
        let Some(gates) = &self.state.gates else {
            return Ok(());
        };
        // A page load asks the back end too, and is not an `/api/` request the address's API
        // limit already counted: it counts here, so no one makes the server ask without bound.
        if !in_server_function() && !self.state.limits.per_ip.allow(&self.ip) {
            return Err(refused_with(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many pages from this address: wait a moment and reload",
            ));
        }
        match gates.connect(&self.identity, self.ip).await {
            Some(switchboard_hub::GateDecision::Refuse(reason)) => {
                tracing::info!(ip = %self.ip, %reason, "refused a page request: connect gate");
                Err(refused_with(
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    reason,
                ))
            }
            _ => Ok(()),
        }
    }

    /// A refusal of the hub as the page's answer: its status (401 for a members-only channel,
    /// 403 for a server-only one, 429 when too fast) and its sentence.
    pub fn refused(&self, refusal: switchboard_hub::Refusal) -> ServerFnError {
        use switchboard_protocol::ErrorCode;
        let status = match refusal.code {
            ErrorCode::AuthRequired => axum::http::StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => axum::http::StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => axum::http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InvalidChannel | ErrorCode::PayloadTooLarge => {
                axum::http::StatusCode::BAD_REQUEST
            }
            _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        };
        answered_with(status, refusal.message)
    }

    /// Counts one action that sends something against the caller's address; refused when it
    /// sends too fast.
    pub fn take_send(&self) -> Result<(), ServerFnError> {
        if self.state.limits.pages.allow(&self.ip) {
            Ok(())
        } else {
            tracing::info!(ip = %self.ip, "refused: page rate limit");
            Err(refused_with(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "you are sending too fast: wait a moment and try again",
            ))
        }
    }

    /// The identity a message is sent under: the token's when signed in; otherwise the name
    /// and colour the guest chose, checked like a socket's join extras.
    pub fn sender(&self, guest: &ChatUser) -> Result<Identity, ServerFnError> {
        if self.identity.authenticated {
            return Ok(self.identity.clone());
        }
        let name = guest.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(bad_input("your name must have 1 to 40 characters"));
        }
        if !is_valid_colour(&guest.colour) {
            return Err(bad_input("choose a colour such as #3d6cf2"));
        }
        if guest.id.is_empty() || guest.id.len() > 64 {
            return Err(bad_input("this browser's id is not valid: reload the page"));
        }
        let mut extras = Map::new();
        extras.insert("id".into(), Value::from(guest.id.as_str()));
        extras.insert("name".into(), Value::from(name));
        extras.insert("colour".into(), Value::from(guest.colour.as_str()));
        Ok(Identity {
            authenticated: false,
            extras,
        })
    }

    /// Whether the page was reached over HTTPS (directly or through a proxy that says so).
    fn secure(&self) -> bool {
        self.headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    }

    /// Sets (or, with `None`, clears) the token cookie the page's later requests carry.
    pub fn set_token_cookie(&self, token: Option<&str>, max_age_seconds: u64) {
        let response = expect_context::<leptos_axum::ResponseOptions>();
        let secure = if self.secure() { "; Secure" } else { "" };
        let cookie = match token {
            Some(token) => format!(
                "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
            ),
            None => format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
        };
        if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
            response.append_header(axum::http::header::SET_COOKIE, value);
        }
    }
}
