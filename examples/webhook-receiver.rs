//! A back end receiving Switchboard's webhooks with axum and the `standardwebhooks` crate (which
//! checks the signature and refuses stale timestamps), dropping duplicates by `webhook-id`
//! (delivery is at least once).
//!
//!   SWITCHBOARD_WEBHOOK_SECRET=whsec_… cargo run --features ssr --example webhook-receiver
use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
use standardwebhooks::Webhook;
use std::{collections::HashSet, sync::Mutex};

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None); // your database, in production

async fn hook(headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = std::env::var("SWITCHBOARD_WEBHOOK_SECRET").expect("set the secret");
    let webhook = Webhook::new(&secret).expect("a whsec_ secret");
    if webhook.verify(&body, &headers).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let id = headers["webhook-id"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    if SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(id)
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
    let app = Router::new().route("/hooks", post(hook));
    axum::serve(listener, app).await.unwrap();
}
