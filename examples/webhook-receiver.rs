//! A back end receiving Switchboard's webhooks with axum: checks each signature (Standard
//! Webhooks: HMAC-SHA256 of "{id}.{timestamp}.{body}" with the `whsec_` secret), refuses stale
//! timestamps, and drops duplicates by `webhook-id` (delivery is at least once).
//!
//!   SWITCHBOARD_WEBHOOK_SECRET=whsec_… cargo run --features ssr --example webhook-receiver
use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use std::{collections::HashSet, sync::Mutex, time::SystemTime};

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None); // your database, in production

async fn hook(headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let secret = std::env::var("SWITCHBOARD_WEBHOOK_SECRET").expect("set the secret");
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a whsec_ secret");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) <= 300);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&body);
    let signed = header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"));
    let valid = signed
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|s| mac.clone().verify_slice(&s).is_ok());
    if !fresh || !valid {
        return StatusCode::UNAUTHORIZED;
    }
    if SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(id.to_string())
    {
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        println!("{} {}", event["type"], event["data"]);
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4000")
        .await
        .unwrap();
    axum::serve(listener, Router::new().route("/hooks", post(hook)))
        .await
        .unwrap();
}
