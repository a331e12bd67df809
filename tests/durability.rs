//! Durable history over real sockets: what was acknowledged survives a crash, a client that was
//! away gets exactly what it missed, resends are stored once, and what is gone is said to be.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use support::{temp_db, TestServer, WAIT};
use switchboard_client::{channel_options, Client};
use switchboard_protocol::{Action, Frame};

const FAST: [(&str, &str); 3] = [
    ("SWITCHBOARD_FRAMES_PER_SECOND", "1000000"),
    ("SWITCHBOARD_FRAME_BURST", "1000000"),
    ("SWITCHBOARD_HISTORY_KEEP", "1000000"),
];

/// Every stored message of `channel`, oldest first, paging back 100 at a time.
async fn all_history(client: &mut Client, channel: &str) -> Vec<Frame> {
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut options = channel_options(channel);
        options.insert("limit".into(), json!(100));
        if let Some(before) = before {
            options.insert("before".into(), json!(before));
        }
        client
            .request(Action::History, options, Value::Null)
            .await
            .unwrap();
        let page = client.expect(Action::History, WAIT).await.unwrap();
        let frames: Vec<Frame> = serde_json::from_value(page.payload["history"].clone()).unwrap();
        if frames.is_empty() {
            break;
        }
        before = frames.first().and_then(Frame::seq);
        let mut older = frames;
        older.append(&mut all);
        all = older;
    }
    all
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9_exactly_once_in_order() {
    let db = temp_db();
    let mut server = TestServer::start_on(&db, &FAST);
    let mut sender = server.client().await;
    sender.join("ledger", false, false).await.unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut n: u64 = 0;
    let collect = |frame: Frame, acked: &mut Vec<u64>| {
        if frame.action == Action::Reply && frame.error_code().is_none() {
            acked.push(frame.reference().and_then(Value::as_u64).unwrap());
        }
    };
    // Bursts of 50 sends, so that many are in flight when the server is killed.
    'stream: for burst in 0.. {
        for _ in 0..50 {
            let frame = json!({"action": "message", "options": {"channel": "ledger", "ref": n}, "payload": {"n": n}});
            if sender.send_raw(frame.to_string()).await.is_err() {
                break 'stream;
            }
            n += 1;
        }
        if acked.len() >= 300 || burst == 400 {
            server.kill();
            break;
        }
        while let Ok(Some(frame)) = sender.next_frame_within(Duration::from_millis(1)).await {
            collect(frame, &mut acked);
        }
    }
    while let Ok(Some(frame)) = sender.next_frame_within(Duration::from_millis(200)).await {
        collect(frame, &mut acked);
    }
    assert!(
        acked.len() >= 100,
        "only {} messages were acknowledged before the kill",
        acked.len()
    );

    let server = TestServer::start_on(&db, &FAST);
    let mut reader = server.client().await;
    reader.join("ledger", false, false).await.unwrap();
    let stored = all_history(&mut reader, "ledger").await;
    let numbers: Vec<u64> = stored
        .iter()
        .map(|f| f.payload["n"].as_u64().unwrap())
        .collect();
    let seqs: Vec<u64> = stored.iter().map(|f| f.seq().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq has no holes"
    );
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "stored in the order sent, each once"
    );
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for n in &numbers {
        *counts.entry(*n).or_default() += 1;
    }
    for n in &acked {
        assert_eq!(
            counts.get(n),
            Some(&1),
            "acknowledged message {n} is stored exactly once"
        );
    }
}

#[tokio::test]
async fn a_client_away_for_1000_messages_resumes_with_all_of_them_then_live_ones() {
    let server = TestServer::start_with(&FAST);
    let mut away = server.client().await;
    let mut sender = server.client().await;
    away.join("room1", false, false).await.unwrap();
    sender.join("room1", false, false).await.unwrap();
    sender.publish("room1", json!({"n": 0})).await.unwrap();
    let last_seen = away.expect(Action::Message, WAIT).await.unwrap();
    let since = json!({"epoch": last_seen.epoch().unwrap(), "seq": last_seen.seq().unwrap()});
    away.close().await.unwrap();

    support::send_numbered(&mut sender, "room1", 1..=1000).await;
    sender
        .publish("room1", json!({"n": "barrier"}))
        .await
        .unwrap();

    let mut back = server.client().await;
    let mut options = channel_options("room1");
    options.insert("since".into(), since);
    back.request(Action::Join, options, json!({}))
        .await
        .unwrap();
    sender.publish("room1", json!({"n": "live"})).await.unwrap();
    let mut received = Vec::new();
    while received.len() < 1002 {
        let frame = back.expect(Action::Message, WAIT).await.unwrap();
        received.push(frame.payload["n"].clone());
    }
    let mut expected: Vec<Value> = (1..=1000).map(|n| json!(n)).collect();
    expected.push(json!("barrier"));
    expected.push(json!("live"));
    assert_eq!(received, expected);
    assert_eq!(
        back.next_frame_within(Duration::from_millis(300))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_resume_from_trimmed_history_gets_a_gap_then_what_is_left() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_HISTORY_KEEP", "5"),
        ("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", "50"),
    ]);
    let mut sender = server.client().await;
    sender.join("room1", false, false).await.unwrap();
    let mut epoch = String::new();
    for n in 1..=20 {
        sender.publish("room1", json!({"n": n})).await.unwrap();
        let frame = sender.expect(Action::Message, WAIT).await.unwrap();
        epoch = frame.epoch().unwrap().to_string();
    }
    // Trimming runs every 50 ms in the background: wait until it has kept only the last five.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        sender
            .request(Action::History, channel_options("room1"), Value::Null)
            .await
            .unwrap();
        let page = sender.expect(Action::History, WAIT).await.unwrap();
        let kept = page.payload["history"].as_array().unwrap().len();
        if kept == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history still holds {kept} messages, expected the last 5"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut back = server.client().await;
    let mut options = channel_options("room1");
    options.insert("since".into(), json!({"epoch": epoch, "seq": 2}));
    back.request(Action::Join, options, json!({}))
        .await
        .unwrap();
    let gap = back.expect(Action::Gap, WAIT).await.unwrap();
    assert_eq!(gap.payload["from"], 3);
    assert_eq!(gap.payload["to"], 15);
    let mut left = Vec::new();
    for _ in 16..=20 {
        left.push(
            back.expect(Action::Message, WAIT).await.unwrap().payload["n"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(left, vec![16, 17, 18, 19, 20]);

    let mut stranger = server.client().await;
    let mut options = channel_options("room1");
    options.insert("since".into(), json!({"epoch": "an-older-epoch", "seq": 7}));
    stranger
        .request(Action::Join, options, json!({}))
        .await
        .unwrap();
    let gap = stranger.expect(Action::Gap, WAIT).await.unwrap();
    assert_eq!(gap.payload["epoch"], epoch);
    let history = stranger.expect(Action::History, WAIT).await.unwrap();
    assert_eq!(history.payload["history"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_resend_with_the_same_id_is_stored_and_delivered_once() {
    let server = TestServer::start_with(&[]);
    let (mut sender, mut listener) = (server.client().await, server.client().await);
    sender.join("room1", false, false).await.unwrap();
    listener.join("room1", false, false).await.unwrap();
    let mut seqs = Vec::new();
    for attempt in ["first", "again"] {
        let mut options = channel_options("room1");
        options.insert("id".into(), json!("msg-42"));
        options.insert("ref".into(), json!(attempt));
        sender
            .send(Action::Message, Value::Object(options), json!("once"))
            .await
            .unwrap();
        let reply = sender.expect(Action::Reply, WAIT).await.unwrap();
        assert_eq!(reply.payload["status"], "ok");
        seqs.push(reply.payload["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs[0], seqs[1], "the resend gets the same ok");
    let delivered = listener.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(delivered.options["id"], "msg-42");
    assert_eq!(
        listener
            .next_frame_within(Duration::from_millis(300))
            .await
            .unwrap(),
        None
    );
}

/// Copies of one message sent back to back, before the first is stored (a client that resends
/// on a timer while the store is slow): every copy gets the same ok, and the message is stored
/// and delivered once.
#[tokio::test]
async fn copies_sent_before_the_first_is_stored_are_stored_and_delivered_once() {
    let server = TestServer::start_with(&FAST);
    let (mut sender, mut listener) = (server.client().await, server.client().await);
    sender.join("room1", false, false).await.unwrap();
    listener.join("room1", false, false).await.unwrap();
    // Sent without waiting for any answer: the server finds them waiting together.
    for n in 0..5 {
        let options = json!({"channel": "room1", "id": "msg-43", "ref": format!("copy-{n}")});
        sender
            .send(Action::Message, options, json!("once"))
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let reply = sender.expect(Action::Reply, WAIT).await.unwrap();
        assert_eq!(reply.payload["status"], "ok", "{reply:?}");
        seqs.push(reply.payload["seq"].as_u64().unwrap());
    }
    assert!(
        seqs.iter().all(|&seq| seq == seqs[0]),
        "one seq for every copy: {seqs:?}"
    );
    let delivered = listener.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(delivered.options["id"], "msg-43");
    assert_eq!(
        listener
            .next_frame_within(Duration::from_millis(300))
            .await
            .unwrap(),
        None,
        "delivered once"
    );
    assert_eq!(
        all_history(&mut sender, "room1").await.len(),
        1,
        "stored once"
    );
}

#[tokio::test]
async fn a_resend_after_a_restart_is_still_stored_once() {
    let db = temp_db();
    let mut server = TestServer::start_on(&db, &[]);
    let mut sender = server.client().await;
    sender.join("room1", false, false).await.unwrap();
    let mut options = channel_options("room1");
    options.insert("id".into(), json!("before-restart"));
    sender
        .request(Action::Message, options.clone(), json!(1))
        .await
        .unwrap();
    assert!(server.terminate());
    let server = TestServer::start_on(&db, &[]);
    let mut again = server.client().await;
    again.join("room1", false, false).await.unwrap();
    again
        .request(Action::Message, options, json!(1))
        .await
        .unwrap();
    assert_eq!(all_history(&mut again, "room1").await.len(), 1);
}

#[test]
fn an_unreadable_history_file_stops_start_up_with_a_clear_message() {
    let db = temp_db();
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, vec![0x42u8; 8192]).unwrap();
    let output = support::run_expecting_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("SWITCHBOARD_HISTORY_PATH", &db)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "switchboard"),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("Move the file aside"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "it never said it was listening"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        vec![0x42u8; 8192],
        "the file is left as it was"
    );
}

#[tokio::test]
async fn messages_carry_seq_id_and_epoch() {
    let server = TestServer::start_with(&[]);
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    a.publish("room1", json!(1)).await.unwrap();
    a.publish("room1", json!(2)).await.unwrap();
    let first = a.expect(Action::Message, WAIT).await.unwrap();
    let second = a.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(second.seq(), first.seq().map(|s| s + 1));
    assert_eq!(first.epoch(), second.epoch());
    assert_ne!(first.options["id"], second.options["id"]);
}
