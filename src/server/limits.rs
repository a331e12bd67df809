//! Request rate limits of the HTTP side: per client address for everything under `/api/`
//! (the publish API and the pages' server functions), per API key for publishing, and per
//! address for what pages send. A caller over its limit gets `429 rate_limited` with
//! `Retry-After`, and the server holds at most a bounded number of buckets.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::AppState;

/// Most callers tracked per limit; beyond it, buckets that refilled are forgotten first.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by caller: `rate` requests per second, bursts of twice that.
#[derive(Debug)]
pub struct KeyedLimit<K> {
    rate: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> KeyedLimit<K> {
    /// A limit of `per_second` requests per second per caller.
    pub fn new(per_second: u32) -> Self {
        Self {
            rate: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        self.rate * 2.0
    }

    /// Takes one request from `key`'s bucket; false when it is empty.
    pub fn allow(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst());
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst(), now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst());
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The limits the HTTP side applies.
#[derive(Debug)]
pub struct RequestLimits {
    /// Every `/api/` request, per client address.
    pub per_ip: KeyedLimit<IpAddr>,
    /// Publish requests, per API key.
    pub per_key: KeyedLimit<String>,
    /// Admin API requests, per admin key (by its place in `admin_keys`).
    pub per_admin_key: KeyedLimit<usize>,
    /// What pages send through server functions, per client address.
    pub pages: KeyedLimit<IpAddr>,
}

impl RequestLimits {
    /// Limits from the settings.
    pub fn new(api_per_second: u32, pages_per_second: u32) -> Self {
        Self {
            per_ip: KeyedLimit::new(api_per_second),
            per_key: KeyedLimit::new(api_per_second),
            per_admin_key: KeyedLimit::new(api_per_second),
            pages: KeyedLimit::new(pages_per_second),
        }
    }
}

/// The answer to a caller over its limit.
pub fn too_many(what: &str) -> Response {
    let body = json!({ "error": {
        "code": "rate_limited",
        "message": format!("too many requests {what}: slow down and retry in a second"),
    }});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    response
}

/// Middleware for `/api/`: one bucket per client address (behind trusted proxies, the
/// forwarded client).
pub async fn per_ip(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<super::tls::Peer>,
    request: Request,
    next: Next,
) -> Response {
    let ip =
        super::transport::client_ip(peer.ip(), request.headers(), &state.config.trusted_proxies);
    if !state.limits.per_ip.allow(&ip) {
        tracing::info!(%ip, path = %request.uri().path(), "refused: API rate limit");
        state.hub.metrics().refused_as("rate_limited");
        return too_many("from this address");
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_a_burst_then_is_refused_and_others_are_not() {
        let limit = KeyedLimit::new(5);
        let allowed = (0..20).filter(|_| limit.allow(&1)).count();
        assert_eq!(allowed, 10);
        assert!(limit.allow(&2));
    }
}
