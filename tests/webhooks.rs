//! Webhooks against a real server with two endpoints, one healthy (checking signatures with the
//! `standardwebhooks` crate) and one that never answers:
//! the dead one holds up nothing but its own events (not sockets, not the other endpoint), and
//! `/metrics` counts what each endpoint got, retried and gave up on.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{metric, TestServer};
use switchboard_protocol::Action;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A healthy endpoint that checks every delivery with the `standardwebhooks` crate (not ours)
/// and keeps the events it verified, and how many it refused.
async fn verifying_endpoint() -> (
    String,
    support::Asked,
    std::sync::Arc<std::sync::Mutex<u32>>,
) {
    use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
    let verified = support::Asked::default();
    let refused = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let webhook = std::sync::Arc::new(standardwebhooks::Webhook::new(SECRET).unwrap());
    let (kept, counted) = (verified.clone(), refused.clone());
    let app = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let (webhook, kept, counted) = (webhook.clone(), kept.clone(), counted.clone());
            async move {
                if webhook.verify(&body, &headers).is_err() {
                    *counted.lock().unwrap() += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                kept.lock().unwrap().push(event);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, verified, refused)
}

/// An endpoint that takes connections and never answers them.
async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_dead_endpoint_holds_up_only_its_own_events_and_metrics_say_so() {
    let (good, heard, refused) = verifying_endpoint().await;
    let silent = silent_endpoint().await;
    let path = support::temp_db().with_file_name("webhooks.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        format!(
            "[[webhooks]]\nname = \"silent\"\nurl = \"{silent}\"\nsecret = \"{SECRET}\"\nevents = [\"message.stored\"]\ntimeout_ms = 200\n\n[[webhooks]]\nname = \"good\"\nurl = \"{good}\"\nsecret = \"{SECRET}\"\nevents = [\"message.stored\"]\n"
        ),
    )
    .unwrap();
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_CONFIG", path.to_str().unwrap()),
        ("SWITCHBOARD_WEBHOOK_GIVE_UP_MS", "1500"),
        ("SWITCHBOARD_FRAMES_PER_SECOND", "1000"),
        ("SWITCHBOARD_FRAME_BURST", "1000"),
    ]);
    let mut sender = server.client().await;
    let mut reader = server.client().await;
    for channel in ["room", "other"] {
        sender.join(channel, false, false).await.unwrap();
        reader.join(channel, false, false).await.unwrap();
    }
    // Sockets are not slowed: every send is answered and delivered while the silent endpoint
    // times out again and again (a send waiting on it would take 200 ms or more).
    let mut slowest = Duration::ZERO;
    let all = Instant::now();
    for n in 0..30 {
        let channel = if n % 2 == 0 { "room" } else { "other" };
        let started = Instant::now();
        sender.publish(channel, json!({"n": n})).await.unwrap();
        let frame = reader.expect(Action::Message, support::WAIT).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(frame.payload["n"], n);
    }
    // Waiting on the silent endpoint once per send would take 30 × 200 ms = 6 s.
    let took = all.elapsed();
    assert!(
        took < Duration::from_millis(4500) && slowest < Duration::from_secs(1),
        "30 sends took {took:?} (the slowest {slowest:?}) with a silent webhook endpoint"
    );

    // The other endpoint gets everything, in seq order per channel.
    let waited = Instant::now();
    let stored = loop {
        let stored: Vec<Value> = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "message.stored")
            .cloned()
            .collect();
        if stored.len() >= 30 || waited.elapsed() > Duration::from_secs(10) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        stored.len(),
        30,
        "the healthy endpoint got {}",
        stored.len()
    );
    assert_eq!(*refused.lock().unwrap(), 0, "every delivery is signed");
    for channel in ["room", "other"] {
        let seqs: Vec<u64> = stored
            .iter()
            .filter(|e| e["data"]["channel"] == channel)
            .map(|e| e["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=15).collect::<Vec<_>>(), "{channel}");
    }

    // Metrics per endpoint: delivered, retried, and given up on once they are too old.
    let waited = Instant::now();
    let text = loop {
        let text = support::http_get(&server.addr, "/metrics").await;
        let dead = metric(
            &text,
            "switchboard_webhook_events_dead{endpoint=\"silent\"}",
        );
        if dead == Some(30.0) || waited.elapsed() > Duration::from_secs(90) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name} in {text}"));
    assert_eq!(
        value("switchboard_webhook_delivered_total{endpoint=\"good\"}"),
        30.0
    );
    assert_eq!(
        value("switchboard_webhook_events_pending{endpoint=\"good\"}"),
        0.0
    );
    assert_eq!(
        value("switchboard_webhook_events_dead{endpoint=\"silent\"}"),
        30.0
    );
    assert_eq!(
        value("switchboard_webhook_dead_total{endpoint=\"silent\"}"),
        30.0
    );
    assert_eq!(
        value("switchboard_webhook_events_pending{endpoint=\"silent\"}"),
        0.0
    );
    assert!(value("switchboard_webhook_retried_total{endpoint=\"silent\"}") >= 1.0);
    assert_eq!(
        metric(
            &text,
            "switchboard_webhook_delivered_total{endpoint=\"silent\"}"
        )
        .unwrap_or(0.0),
        0.0
    );
}
