//! The realtime endpoint over real sockets: audiences, errors, presence, history, limits and
//! shutdown, as clients see them.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{TestServer, QUIET, WAIT};
use switchboard_client::{channel_options, Client, ClientError};
use switchboard_protocol::{Action, ErrorCode, Frame};

async fn next_message(client: &mut Client) -> Frame {
    client
        .expect(Action::Message, WAIT)
        .await
        .expect("a message arrives")
}

async fn assert_no_message(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client
            .next_frame_within(left)
            .await
            .expect("socket stays open")
        {
            Some(frame) if frame.action == Action::Message => {
                panic!("unexpected message {frame:?}")
            }
            Some(_) => continue,
            None => return,
        }
    }
}

fn refused_code(result: Result<(), ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn closed_code(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), client.next_frame()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(ClientError::Closed { code, .. })) => return code,
            Ok(Err(other)) => panic!("expected a close frame, got {other}"),
            Err(_) => panic!("the socket was not closed"),
        }
    }
}

#[tokio::test]
async fn two_clients_in_a_channel_receive_each_others_messages() {
    let server = TestServer::start();
    let (mut a, mut b) = (server.client().await, server.client().await);
    a.join("room1", false, false).await.unwrap();
    b.join("room1", false, false).await.unwrap();
    a.publish("room1", json!({"text": "hello from a"}))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b).await.payload,
        json!({"text": "hello from a"})
    );
    // The sender is part of "everyone", as with Xano.
    assert_eq!(next_message(&mut a).await.payload["text"], "hello from a");
    b.publish("room1", json!("hi a")).await.unwrap();
    let frame = next_message(&mut a).await;
    assert_eq!(frame.payload, json!("hi a"));
    assert_eq!(frame.channel(), Some("room1"));
    let sender = frame.client.expect("relayed frames carry the sender");
    assert_eq!(sender.permissions["authenticated"], false);
}

#[tokio::test]
async fn three_clients_see_every_message_once_in_the_same_order() {
    let server = TestServer::start();
    let mut clients = vec![
        server.client().await,
        server.client().await,
        server.client().await,
    ];
    for client in &mut clients {
        client.join("room1", false, false).await.unwrap();
    }
    for n in 0..20 {
        let sender = n % 3;
        clients[sender]
            .publish("room1", json!({"n": n}))
            .await
            .unwrap();
    }
    for client in &mut clients {
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(next_message(client).await.payload["n"].as_i64().unwrap());
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert_no_message(client).await;
    }
}

#[tokio::test]
async fn authenticated_audience_reaches_only_authenticated_members() {
    let server = TestServer::start();
    let mut alice = server.client_as("u1", "Alice").await;
    let mut bob = server.client_as("u2", "Bob").await;
    let mut anon = server.client().await;
    for client in [&mut alice, &mut bob, &mut anon] {
        client.join("room1", false, false).await.unwrap();
    }
    let mut options = channel_options("room1");
    options.insert("authenticated".into(), Value::Bool(true));
    alice
        .request(Action::Message, options, json!("members only"))
        .await
        .unwrap();
    let frame = next_message(&mut bob).await;
    assert_eq!(frame.payload, json!("members only"));
    let sender = frame.client.unwrap();
    assert_eq!(sender.extras["name"], "Alice");
    assert_eq!(sender.extras["id"], "u1");
    assert_eq!(sender.permissions["authenticated"], true);
    assert_eq!(
        next_message(&mut alice).await.payload,
        json!("members only")
    );
    assert_no_message(&mut anon).await;
}

#[tokio::test]
async fn socket_audience_reaches_only_that_socket() {
    let server = TestServer::start();
    let (mut a, mut b, mut c) = (
        server.client().await,
        server.client().await,
        server.client().await,
    );
    a.join("room1", true, false).await.unwrap();
    b.join("room1", true, false).await.unwrap();
    c.join("room1", false, false).await.unwrap();
    // a learns b's socket id from the join announcement; b's full list holds a besides b.
    let announced = a.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    let b_id = announced.payload["presence"]["socketId"]
        .as_str()
        .unwrap()
        .to_string();
    let full = b.expect(Action::PresenceFull, WAIT).await.unwrap();
    let a_id = full.payload["presence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["socketId"].as_str())
        .find(|id| *id != b_id)
        .expect("a is listed besides b")
        .to_string();
    let mut options = channel_options("room1");
    options.insert("socketId".into(), Value::from(a_id));
    b.request(Action::Message, options, json!("just for a"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a).await.payload, json!("just for a"));
    assert_no_message(&mut b).await;
    assert_no_message(&mut c).await;
    let mut options = channel_options("room1");
    options.insert(
        "socketId".into(),
        Value::from("00000000-0000-0000-0000-000000000000"),
    );
    let result = b.request(Action::Message, options, json!("nobody")).await;
    assert_eq!(refused_code(result), ErrorCode::UnknownSocket);
}

#[tokio::test]
async fn sending_to_unjoined_channel_returns_not_subscribed() {
    let server = TestServer::start();
    let (mut member, mut outsider) = (server.client().await, server.client().await);
    member.join("room1", false, false).await.unwrap();
    // Without a ref (as Xano's SDK sends): an error frame naming the channel.
    outsider
        .send(
            Action::Message,
            json!({"channel": "room1"}),
            json!("let me in"),
        )
        .await
        .unwrap();
    let error = outsider.expect(Action::Error, WAIT).await.unwrap();
    assert_eq!(error.error_code(), Some(ErrorCode::NotSubscribed));
    assert_eq!(error.channel(), Some("room1"));
    assert!(error.payload["message"].as_str().unwrap().contains("join"));
    // With a ref: a reply with status error.
    let result = outsider.publish("room1", json!("again")).await;
    assert_eq!(refused_code(result), ErrorCode::NotSubscribed);
    assert_no_message(&mut member).await;
}

#[tokio::test]
async fn a_good_send_without_ref_gets_no_extra_frame() {
    let server = TestServer::start();
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    a.send(Action::Message, json!({"channel": "room1"}), json!(1))
        .await
        .unwrap();
    assert_eq!(next_message(&mut a).await.payload, json!(1));
    assert_eq!(a.next_frame_within(QUIET).await.unwrap(), None);
}

#[tokio::test]
async fn leaving_stops_delivery_and_tells_presence_members() {
    let server = TestServer::start();
    let (mut a, mut b) = (server.client().await, server.client().await);
    a.join("room1", true, false).await.unwrap();
    b.join("room1", true, false).await.unwrap();
    a.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    b.leave("room1").await.unwrap();
    let update = a.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    assert_eq!(update.payload["action"], "leave");
    a.publish("room1", json!("after b left")).await.unwrap();
    assert_no_message(&mut b).await;
    assert_eq!(
        refused_code(b.leave("room1").await),
        ErrorCode::NotSubscribed
    );
    assert_eq!(
        refused_code(b.publish("room1", json!("x")).await),
        ErrorCode::NotSubscribed
    );
}

#[tokio::test]
async fn presence_lists_members_on_join_and_drops_them_on_disconnect() {
    let server = TestServer::start();
    let mut a = server.client().await;
    a.request(
        Action::Join,
        channel_options("room1"),
        json!({"presence": true, "extras": {"name": "Ann"}}),
    )
    .await
    .unwrap();
    let own = a.expect(Action::PresenceFull, WAIT).await.unwrap();
    assert_eq!(own.payload["presence"].as_array().unwrap().len(), 1);
    let mut b = server.client().await;
    b.join("room1", true, false).await.unwrap();
    let full = b.expect(Action::PresenceFull, WAIT).await.unwrap();
    let listed = full.payload["presence"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|p| p["extras"]["name"] == "Ann"));
    let joined = a.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    assert_eq!(joined.payload["action"], "join");
    let b_id = joined.payload["presence"]["socketId"].clone();
    drop(b);
    let left = a.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    assert_eq!(left.payload["action"], "leave");
    assert_eq!(left.payload["presence"]["socketId"], b_id);
}

#[tokio::test]
async fn history_returns_recent_messages_on_request_and_on_join() {
    let server = TestServer::start_with(&[("SWITCHBOARD_HISTORY_ON_JOIN", "5")]);
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    for n in 0..7 {
        a.publish("room1", json!({"n": n})).await.unwrap();
    }
    // A page ends at the last message delivered live here; on several nodes the ok can come
    // before this node's delivery, so the page is asked for once the last one arrived.
    for n in 0..7 {
        expect_number(&mut a, n).await;
    }
    a.request(Action::History, channel_options("room1"), Value::Null)
        .await
        .unwrap();
    let history = a.expect(Action::History, WAIT).await.unwrap();
    let numbers: Vec<i64> = history.payload["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![2, 3, 4, 5, 6]);
    let mut late = server.client().await;
    late.join("room1", false, true).await.unwrap();
    let history = late.expect(Action::History, WAIT).await.unwrap();
    let entries = history.payload["history"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[4]["payload"]["n"], 6);
    assert_eq!(entries[4]["action"], "message");
    let mut outsider = server.client().await;
    let result = outsider
        .request(Action::History, channel_options("room1"), Value::Null)
        .await;
    assert_eq!(refused_code(result), ErrorCode::NotSubscribed);
}

#[tokio::test]
async fn malformed_frames_get_their_code_and_the_socket_keeps_working() {
    let server = TestServer::start();
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    let big = "x".repeat(1024 * 1024);
    let cases = [
        ("not json at all".to_string(), ErrorCode::BadJson),
        (
            r#"{"action": 7, "options": {"channel": "room1"}}"#.to_string(),
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"action": "message", "options": "room1"}"#.to_string(),
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"action": "dance", "options": {"channel": "room1"}}"#.to_string(),
            ErrorCode::UnknownAction,
        ),
        (
            r#"{"action": "message", "payload": 1}"#.to_string(),
            ErrorCode::MissingChannel,
        ),
        (
            r#"{"action": "join", "options": {"channel": "no spaces"}}"#.to_string(),
            ErrorCode::InvalidChannel,
        ),
        (
            format!(r#"{{"action":"message","options":{{"channel":"room1"}},"payload":"{big}"}}"#),
            ErrorCode::PayloadTooLarge,
        ),
    ];
    for (text, code) in cases {
        a.send_raw(text).await.unwrap();
        let error = a.expect(Action::Error, WAIT).await.unwrap();
        assert_eq!(error.error_code(), Some(code));
        assert!(!error.payload["message"].as_str().unwrap().is_empty());
    }
    a.publish("room1", json!("still here")).await.unwrap();
    assert_eq!(next_message(&mut a).await.payload, json!("still here"));
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_with_1009() {
    let server = TestServer::start_with(&[("SWITCHBOARD_MAX_FRAME_BYTES", "65536")]);
    let mut a = server.client().await;
    a.send_raw("y".repeat(100_000)).await.unwrap();
    assert_eq!(closed_code(&mut a).await, Some(1009));
}

/// The next message `client` gets, which must be number `n` of a numbered run.
async fn expect_number(client: &mut Client, n: u64) {
    let frame = client
        .expect(Action::Message, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(frame.payload["n"].as_u64(), Some(n), "in order, none lost");
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_others_keep_receiving() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_OUTBOX_CAPACITY", "64"),
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    const COUNT: usize = 1500;
    let mut publisher = server.client().await;
    let mut healthy = server.client().await;
    let mut slow = server.client().await;
    for client in [&mut publisher, &mut healthy, &mut slow] {
        client.join("room1", false, false).await.unwrap();
    }
    // How far the healthy reader got: the publisher never runs more than 32 frames ahead of
    // it (half the 64-frame outbox, even if no TCP buffer held any), however busy the machine.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader_progress = progress.clone();
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < COUNT {
            expect_number(&mut healthy, seen as u64).await;
            seen += 1;
            reader_progress.store(seen, std::sync::atomic::Ordering::Relaxed);
        }
        seen
    });
    let filler = "z".repeat(16 * 1024);
    let mut publish_options = json!({"channel": "room1"});
    for n in 0..COUNT {
        publisher
            .send(
                Action::Message,
                publish_options.take(),
                json!({"n": n, "fill": filler}),
            )
            .await
            .unwrap();
        publish_options = json!({"channel": "room1"});
        // The publisher reads its own echoes so that it is not the slow one, and waits now
        // and then for the healthy reader (the slow one never reads, so it fills up
        // regardless).
        while publisher
            .next_frame_within(Duration::ZERO)
            .await
            .unwrap()
            .is_some()
        {}
        if n % 8 == 7 {
            let waited = Instant::now();
            while progress.load(std::sync::atomic::Ordering::Relaxed) + 24 < n {
                assert!(
                    waited.elapsed() < Duration::from_secs(20),
                    "the healthy reader stalled"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    assert_eq!(reader.await.unwrap(), COUNT);
    assert_eq!(closed_code(&mut slow).await, Some(1013));
}

#[tokio::test]
async fn a_burst_larger_than_a_small_outbox_reaches_every_member_that_reads() {
    // An operator's small outbox (16 frames). A burst of 300 messages, written before any
    // answer is read, is stored in a few commits of many messages each; a node hands a commit
    // to the sockets in parts of a quarter of an outbox, which they write in between, so
    // members that read get all of it and none is cut off with 1013 for the size of a commit
    // (with a commit taken whole, the reader is cut off after a message or two). On Redis, a
    // node's subscription receives the burst and hands it to the same deliverer, which takes
    // the same turns (delivered as it arrives, the reader is cut off after a message or two
    // too). One runtime worker, so the sockets' tasks run between the parts.
    let server = TestServer::start_with(&[
        ("TOKIO_WORKER_THREADS", "1"),
        ("SWITCHBOARD_OUTBOX_CAPACITY", "16"),
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    const COUNT: u64 = 300;
    let mut publisher = server.client().await;
    let mut reader = server.client().await;
    for client in [&mut publisher, &mut reader] {
        client.join("room1", false, false).await.unwrap();
    }
    let reading = tokio::spawn(async move {
        for n in 0..COUNT {
            expect_number(&mut reader, n).await;
        }
    });
    support::send_numbered(&mut publisher, "room1", 0..COUNT).await;
    // Both read what they are sent, as members do: the publisher its own echoes.
    for n in 0..COUNT {
        expect_number(&mut publisher, n).await;
    }
    reading.await.unwrap();
}

#[tokio::test]
async fn a_reader_that_pauses_gets_every_message_in_order_once_it_reads_again() {
    // More than the kernel's socket buffers hold arrives while the reader pauses, so its frames
    // go every way there is: written straight from the fan-out while the socket takes them,
    // half-written when it fills, queued behind that, and straight again once it caught up.
    // One runtime worker, so the fan-out's own share is the whole room.
    let server = TestServer::start_with(&[
        ("TOKIO_WORKER_THREADS", "1"),
        ("SWITCHBOARD_OUTBOX_CAPACITY", "4096"),
        ("SWITCHBOARD_OUTBOX_BYTES", "67108864"),
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    const PAUSED: u64 = 1200;
    const AFTER: u64 = 50;
    let mut publisher = server.client().await;
    let mut reader = server.client().await;
    for client in [&mut publisher, &mut reader] {
        client.join("room1", false, false).await.unwrap();
    }
    let filler = "z".repeat(16 * 1024);
    for n in 0..PAUSED + AFTER {
        publisher
            .send(
                Action::Message,
                json!({"channel": "room1"}),
                json!({"n": n, "fill": filler}),
            )
            .await
            .unwrap();
        // The publisher reads its own echoes so that it is not the one falling behind.
        while publisher
            .next_frame_within(Duration::ZERO)
            .await
            .unwrap()
            .is_some()
        {}
        if n == PAUSED - 1 {
            // About 19 MiB waited for the reader; now it reads them all.
            for seen in 0..PAUSED {
                expect_number(&mut reader, seen).await;
            }
        } else if n >= PAUSED {
            // Caught up: each message arrives on its own.
            expect_number(&mut reader, n).await;
        }
    }
    assert!(reader
        .next_frame_within(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none_or(|frame| frame.action != Action::Message));
}

#[tokio::test]
async fn rate_limited_then_recovers_and_abuse_is_cut_off_with_1008() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "20"),
        ("SWITCHBOARD_FRAME_BURST", "5"),
        ("SWITCHBOARD_RATE_VIOLATION_BURST", "3"),
    ]);
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    // The join took one token, so of six sends at least one is refused.
    let (refused, _) = support::burst(&mut a, "room1", 6).await;
    assert!(refused >= 1, "the burst beyond 5 frames is refused");
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.publish("room1", json!("after a pause")).await.unwrap();
    let mut abuser = server.client().await;
    for _ in 0..50 {
        if abuser.send_raw("{}").await.is_err() {
            break;
        }
    }
    assert_eq!(closed_code(&mut abuser).await, Some(1008));
}

#[tokio::test]
async fn bad_and_expired_tokens_are_refused_before_the_upgrade() {
    let server = TestServer::start();
    for bad in ["not-a-token".to_string(), support::token("u1", "Old", -120)] {
        match Client::connect_with_token(&server.url(), Some(&bad)).await {
            Err(ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                assert_eq!(response.status(), 401);
            }
            Err(other) => panic!("expected HTTP 401, got {other}"),
            Ok(_) => panic!("a bad token was accepted"),
        }
    }
}

#[tokio::test]
async fn silent_sockets_are_dropped_after_missed_pings() {
    let server = TestServer::start_with(&[("SWITCHBOARD_PING_INTERVAL_MS", "100")]);
    // A client that reads nothing for two ping intervals is gone: `silent` joins first and then
    // reads nothing, while `listening` reads from its join on, so on a busy machine only
    // `silent` goes quiet for long.
    let mut silent = server.client().await;
    silent.join("room1", false, false).await.unwrap();
    let mut listening = server.client().await;
    listening.join("room1", false, false).await.unwrap();
    // Reading answers pings; `silent` reads nothing for a while, so it never pongs.
    for _ in 0..8 {
        assert_eq!(
            listening
                .next_frame_within(Duration::from_millis(100))
                .await
                .unwrap(),
            None
        );
    }
    let ended = {
        let ended = silent.next_frame_within(WAIT);
        tokio::pin!(ended);
        loop {
            tokio::select! {
                ended = &mut ended => break ended,
                frame = listening.next_frame_within(Duration::from_millis(100)) => {
                    assert_eq!(frame.unwrap(), None);
                }
            }
        }
    };
    assert!(
        ended.is_err(),
        "the silent socket should have been dropped, got {ended:?}"
    );
    listening
        .publish("room1", json!("still alive"))
        .await
        .unwrap();
}

/// A join gate that answers "allow" after `delay`, as a back end that takes its time would.
async fn slow_join_gate(delay: Duration) -> String {
    use axum::{routing::post, Json, Router};
    let app = Router::new().route(
        "/gate",
        post(move || async move {
            tokio::time::sleep(delay).await;
            Json(json!({"allow": true}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn pings_go_on_while_a_frame_is_being_handled_and_a_slow_answer_is_not_silence() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // The gate takes seven ping intervals to answer the join.
    let gate = slow_join_gate(Duration::from_millis(700)).await;
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_PING_INTERVAL_MS", "100"),
        ("SWITCHBOARD_GATE_JOIN_URL", &gate),
        ("SWITCHBOARD_GATE_TIMEOUT_MS", "5000"),
    ]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap();
    let join =
        json!({"action": "join", "options": {"channel": "room1", "ref": "j1"}, "payload": {}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    let mut pings = 0;
    let reply = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["options"]["ref"] == "j1" {
                    break frame;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the socket ended while its join was answered: {other:?}"),
        }
    };
    assert_eq!(reply["action"], "reply", "{reply}");
    assert!(
        reply["payload"]["code"].is_null(),
        "the join was refused: {reply}"
    );
    assert!(
        pings >= 3,
        "only {pings} pings while the gate took 700 ms with a 100 ms ping interval"
    );
}

#[tokio::test]
async fn healthz_reports_live_counts() {
    let server = TestServer::start();
    let mut a = server.client().await;
    a.join("room1", false, false).await.unwrap();
    let body = support::http_get(&server.addr, "/healthz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    assert!(body.contains(r#""sockets":1"#), "{body}");
}

#[tokio::test]
async fn the_home_page_is_rendered_on_the_server() {
    let server = TestServer::start();
    let body = support::http_get(&server.addr, "/").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("<h1>Switchboard</h1>"), "{body}");
    assert!(
        body.contains("/pkg/switchboard.js"),
        "hydration script is linked: {body}"
    );
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1012() {
    let mut server = TestServer::start();
    let (mut a, mut b) = (server.client().await, server.client().await);
    a.join("room1", true, false).await.unwrap();
    b.join("room2", false, false).await.unwrap();
    let waiter = tokio::task::spawn_blocking(move || server.terminate());
    assert_eq!(closed_code(&mut a).await, Some(1012));
    assert_eq!(closed_code(&mut b).await, Some(1012));
    assert!(waiter.await.unwrap(), "the server exits with status 0");
}

#[tokio::test]
async fn volatile_messages_reach_the_others_are_never_stored_and_coalesce_for_slow_readers() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    let (mut mover, mut watcher, mut slow) = (
        server.client().await,
        server.client().await,
        server.client().await,
    );
    for client in [&mut mover, &mut watcher, &mut slow] {
        client.join("board", false, false).await.unwrap();
    }
    let volatile = json!({"channel": "board", "volatile": true});
    mover
        .send(
            Action::Message,
            volatile.clone(),
            json!({"x": 0.25, "y": 0.5}),
        )
        .await
        .unwrap();
    let seen = next_message(&mut watcher).await;
    assert_eq!(seen.payload, json!({"x": 0.25, "y": 0.5}));
    assert_eq!(
        seen.seq(),
        None,
        "volatile messages have no seq: they are not stored"
    );
    assert_no_message(&mut mover).await;

    // `slow` reads nothing while the mover sends 400 large updates: its outbox keeps only the
    // newest one waiting, so it gets far fewer frames, ending with the latest position.
    let filler = "f".repeat(16 * 1024);
    for n in 0..400 {
        mover
            .send(
                Action::Message,
                volatile.clone(),
                json!({"n": n, "fill": filler}),
            )
            .await
            .unwrap();
    }
    mover
        .publish("board", json!("chat after the storm"))
        .await
        .unwrap();
    // The chat message is never dropped; it may overtake the cursor backlog (chat first).
    let (mut updates, mut chat_seen) = (Vec::new(), false);
    while !(chat_seen && updates.last() == Some(&399)) {
        let frame = next_message(&mut slow).await;
        match frame.payload.get("n").and_then(Value::as_u64) {
            Some(n) => updates.push(n),
            None => chat_seen |= frame.payload == json!("chat after the storm"),
        }
    }
    assert!(
        updates.windows(2).all(|w| w[0] < w[1]),
        "updates stay in order"
    );
    assert!(
        updates.len() < 400,
        "a slow reader gets coalesced updates, got {}",
        updates.len()
    );
    assert_eq!(
        updates.last(),
        Some(&399),
        "the newest position is never lost"
    );
    let metrics = support::http_get(&server.addr, "/metrics").await;
    let coalesced: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_volatile_coalesced_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("metrics report coalescing");
    assert!(coalesced > 0, "{metrics}");

    let mut late = server.client().await;
    late.join("board", false, false).await.unwrap();
    late.request(Action::History, channel_options("board"), Value::Null)
        .await
        .unwrap();
    let history = late.expect(Action::History, WAIT).await.unwrap();
    let stored: Vec<Value> = history.payload["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(stored, vec![json!("chat after the storm")]);
}
