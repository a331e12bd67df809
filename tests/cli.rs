//! The CLI's commands against a real server: `listen` prints events as JSON lines, `send`
//! reports the outcome.

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
    for _ in 0..100 {
        if support::http_get(&server.addr, "/healthz")
            .await
            .contains(r#""channels":1"#)
        {
            break;
        }
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
    let printed = listening.await.unwrap();
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
