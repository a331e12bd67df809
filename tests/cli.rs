//! The CLI's commands against a real server: `listen` prints events as JSON lines, `send`
//! reports the outcome, `webhooks status` and `webhooks replay` work the admin API.

mod support;

use serde_json::{json, Value};
use support::TestServer;
use switchboard_client::cli;

#[tokio::test]
async fn listen_prints_each_event_as_a_json_line_and_send_reports_the_outcome() {
    let server = TestServer::start();
    let url = server.url();
    let listening = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            cli::listen(&url, None, "room1", false, Some(2), &mut out)
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        })
    };
    // Wait until the listener has joined (the channel is active).
    let deadline = std::time::Instant::now() + support::WAIT;
    while !support::http_get(&server.addr, "/healthz")
        .await
        .contains(r#""channels":1"#)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never joined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        cli::send(&url, None, "room1", r#"{"text":"one"}"#)
            .await
            .unwrap(),
        json!({"status": "ok"})
    );
    assert_eq!(
        cli::send(&url, None, "room1", "2").await.unwrap(),
        json!({"status": "ok"})
    );
    let printed = tokio::time::timeout(support::WAIT, listening)
        .await
        .expect("the listener printed both messages in time")
        .unwrap();
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "message");
    assert_eq!(lines[0]["payload"], json!({"text": "one"}));
    assert_eq!(lines[1]["payload"], json!(2));
}

#[tokio::test]
async fn send_reports_a_refusal_with_its_code() {
    let server = TestServer::start_with(&[("SWITCHBOARD_MAX_PAYLOAD_BYTES", "4")]);
    let outcome = cli::send(&server.url(), None, "room1", r#""far too long""#)
        .await
        .unwrap();
    assert_eq!(outcome["status"], "error");
    assert_eq!(outcome["code"], "payload_too_large");
    assert!(cli::send(&server.url(), None, "room1", "not json")
        .await
        .is_err());
}

/// A webhook receiver on a free port that answers every request with the status in `answer`
/// and keeps the bodies it accepted.
async fn receiver(
    answer: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::{extract::State, http::StatusCode, routing::post, Router};
    type Shared = (
        std::sync::Arc<std::sync::atomic::AtomicU16>,
        std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    );
    async fn hook(State((answer, got)): State<Shared>, body: String) -> StatusCode {
        let status = answer.load(std::sync::atomic::Ordering::SeqCst);
        if status < 300 {
            got.lock()
                .unwrap()
                .push(serde_json::from_str(&body).unwrap());
        }
        StatusCode::from_u16(status).unwrap()
    }
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state((answer, got.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn dead_webhook_events_are_replayed_from_the_command_line() {
    use std::sync::atomic::{AtomicU16, Ordering};
    use switchboard_client::admin::Admin;
    use switchboard_client::ClientError;

    let answer = std::sync::Arc::new(AtomicU16::new(503));
    let (hook_url, received) = receiver(answer.clone()).await;
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_ADMIN_KEYS", "admin-key-0123456789"),
        ("SWITCHBOARD_WEBHOOK_URL", &hook_url),
        (
            "SWITCHBOARD_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("SWITCHBOARD_WEBHOOK_EVENTS", "message.stored"),
        ("SWITCHBOARD_WEBHOOK_GIVE_UP_MS", "1000"),
    ]);
    let outcome = cli::send(&server.url(), None, "orders", r#"{"text":"kept"}"#)
        .await
        .unwrap();
    assert_eq!(outcome["status"], "ok");

    let admin = Admin::new(&server.url(), "admin-key-0123456789").unwrap();
    // The receiver fails every attempt; after the give-up age the event is kept as dead.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let endpoint = loop {
        let status = admin.webhooks().await.unwrap();
        let endpoint = status["endpoints"][0].clone();
        if endpoint["dead"] == 1 {
            break endpoint;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event never went dead: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(endpoint["pending"], 0, "{endpoint}");
    assert!(received.lock().unwrap().is_empty());

    // Refusals say why: a wrong key, an endpoint that does not exist.
    let wrong = Admin::new(&server.url(), "not-the-key").unwrap();
    match wrong.replay_webhooks(None).await {
        Err(ClientError::Http { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "unauthorized"))
        }
        other => panic!("a wrong admin key was not refused: {other:?}"),
    }
    match admin.replay_webhooks(Some("no-such-endpoint")).await {
        Err(ClientError::Http { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "unknown_endpoint"))
        }
        other => panic!("an unknown endpoint was not refused: {other:?}"),
    }

    // The receiver is back; replaying delivers the dead event, once.
    answer.store(200, Ordering::SeqCst);
    let replayed = admin
        .replay_webhooks(endpoint["name"].as_str())
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed event never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let event = received.lock().unwrap()[0].clone();
    assert_eq!(event["type"], "message.stored");
    assert_eq!(event["data"]["channel"], "orders");
    assert_eq!(event["data"]["payload"]["text"], "kept");
    let status = admin.webhooks().await.unwrap();
    assert_eq!(status["endpoints"][0]["dead"], 0, "{status}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "delivered more than once"
    );
}
