//! The SQLite store under trouble, over real sockets: a commit that fails is refused (never
//! acknowledged), reported by `/healthz`, and recovered from without a restart; channels that
//! hold nothing leave nothing in the file. (SQLite only: the Redis engine has its own tests in
//! `cluster.rs`.)

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{TestServer, WAIT};
use switchboard_client::{channel_options, ClientError};
use switchboard_protocol::{Action, ErrorCode};

fn with_id(channel: &str, id: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut options = channel_options(channel);
    options.insert("id".into(), json!(id));
    options
}

/// Waits until `/healthz` answers `status`.
async fn health_becomes(server: &TestServer, status: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let health = server.health().await;
        if health["status"] == status {
            return health;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "health stayed {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failing_store_refuses_reports_and_recovers_without_a_restart() {
    let db = support::temp_db();
    let server = TestServer::start_on(&db, &[]);
    let mut client = server.client().await;
    client.join("locked", false, false).await.unwrap();
    client.publish("locked", json!("before")).await.unwrap();

    // Another process takes the file's write lock and keeps it.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let first = client.request(Action::Message, with_id("locked", "dup"), json!(1));
    let refused = first.await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::Internal,
                ..
            })
        ),
        "{refused:?}"
    );
    let health = health_becomes(&server, "storage_failing").await;
    assert_eq!(health["http"], 503);
    // A resend of a message that was never stored gets no ok either.
    let again = client
        .request(Action::Message, with_id("locked", "dup"), json!(1))
        .await;
    assert!(
        matches!(again, Err(ClientError::Refused { .. })),
        "{again:?}"
    );

    other.execute_batch("COMMIT").unwrap();
    client
        .request(Action::Message, with_id("locked", "dup"), json!(1))
        .await
        .unwrap();
    health_becomes(&server, "ok").await;
    let mut seen = Vec::new();
    while let Some(frame) = client
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        if frame.action == Action::Message {
            seen.push((frame.seq().unwrap(), frame.payload.clone()));
        }
    }
    assert_eq!(
        seen,
        [(1, json!("before")), (2, json!(1))],
        "stored once, no hole in seq"
    );
    let mut late = server.client().await;
    late.join("locked", false, true).await.unwrap();
    let history = late.expect(Action::History, WAIT).await.unwrap();
    assert_eq!(history.payload["history"].as_array().unwrap().len(), 2);
}

fn channel_rows(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT name FROM channels ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn channels_that_hold_nothing_leave_nothing_in_the_file() {
    let db = support::temp_db();
    let server = TestServer::start_on(
        &db,
        &[
            ("SWITCHBOARD_HISTORY_MAX_AGE_MS", "500"),
            ("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", "200"),
            ("SWITCHBOARD_FRAMES_PER_SECOND", "10000"),
            ("SWITCHBOARD_FRAME_BURST", "10000"),
        ],
    );
    let mut client = server.client().await;
    for n in 0..100 {
        let name = format!("empty-{n}");
        client.join(&name, false, true).await.unwrap();
        client.leave(&name).await.unwrap();
    }
    client.join("said", false, false).await.unwrap();
    client.publish("said", json!("soon gone")).await.unwrap();
    assert_eq!(channel_rows(&db), ["said"]);
    // Once its history ages out, the channel is forgotten too.
    let started = Instant::now();
    while !channel_rows(&db).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            channel_rows(&db)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and its next message starts a new epoch, which resuming clients hear as a gap.
    client.publish("said", json!("new")).await.unwrap();
    let fresh = client.expect(Action::Message, WAIT).await.unwrap();
    let again = client.expect(Action::Message, WAIT).await.unwrap();
    assert_ne!(fresh.epoch(), again.epoch());
    assert_eq!(again.seq(), Some(1));
}
