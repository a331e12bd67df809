//! A standing hostile-client suite: what an attacker tries against a real server over real
//! sockets, each answered with a typed error or a documented close code — and every time,
//! the server goes on serving everyone else.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{TestServer, WAIT};
use switchboard_client::{channel_options, Client, ClientError};
use switchboard_protocol::{Action, ErrorCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The server still serves: a fresh client joins and gets its own message back.
async fn still_serving(server: &TestServer) {
    let mut probe = server.client().await;
    probe.join("probe", false, false).await.unwrap();
    probe.publish("probe", json!("alive")).await.unwrap();
    let echo = probe.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(echo.payload, "alive");
}

async fn raw(
    server: &TestServer,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(server.url())
        .await
        .expect("raw client connects")
        .0
}

/// The next text frame of a raw socket, decoded.
async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

fn error_code(frame: &Value) -> Option<&str> {
    frame["payload"]["code"].as_str()
}

#[tokio::test]
async fn a_close_frame_from_the_client_is_answered_with_a_close_frame() {
    let server = TestServer::start();
    let mut ws = raw(&server).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: WsCloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let answer = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, WsCloseCode::Normal),
        other => panic!("expected the close to be echoed, got {other:?}"),
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn deeply_nested_and_malformed_frames_get_typed_errors_and_the_socket_keeps_working() {
    let server = TestServer::start();
    let mut ws = raw(&server).await;
    let deep = format!(
        r#"{{"action":"message","options":{{"channel":"c"}},"payload":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    ws.send(Message::text(deep)).await.unwrap();
    assert_eq!(error_code(&next_json(&mut ws).await), Some("invalid_frame"));
    ws.send(Message::binary(vec![0xff, 0xfe, b'{', 0x80]))
        .await
        .unwrap();
    assert_eq!(error_code(&next_json(&mut ws).await), Some("bad_json"));
    ws.send(Message::text(
        r#"{"action":"teleport","options":{"channel":"c"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        error_code(&next_json(&mut ws).await),
        Some("unknown_action")
    );
    let huge_ref = format!(
        r#"{{"action":"leave","options":{{"channel":"c","ref":"{}"}}}}"#,
        "r".repeat(100_000)
    );
    ws.send(Message::text(huge_ref)).await.unwrap();
    assert_eq!(error_code(&next_json(&mut ws).await), Some("invalid_frame"));
    ws.send(Message::text(
        r#"{"action":"join","options":{"channel":"c","ref":1}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["payload"]["status"], "ok");
    still_serving(&server).await;
}

#[tokio::test]
async fn positions_and_limits_at_the_edges_of_their_types_are_answered_not_crashed_on() {
    let server = TestServer::start();
    let mut client = server.client().await;
    client.join("edges", false, false).await.unwrap();
    client.publish("edges", json!(1)).await.unwrap();
    let epoch = client
        .expect(Action::Message, WAIT)
        .await
        .unwrap()
        .epoch()
        .unwrap()
        .to_string();
    for seq in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
        let mut options = channel_options("edges");
        options.insert("since".into(), json!({"epoch": epoch, "seq": seq}));
        client
            .request(Action::Join, options, json!({}))
            .await
            .unwrap();
        let mut options = channel_options("edges");
        options.insert("since".into(), json!({"epoch": "other", "seq": seq}));
        client
            .request(Action::Join, options, json!({}))
            .await
            .unwrap();
        let mut options = channel_options("edges");
        options.insert("before".into(), json!(seq));
        client
            .request(Action::History, options, Value::Null)
            .await
            .unwrap();
    }
    for bad in ["-1", "1e300", "\"9\"", "18446744073709551616", "0", "101"] {
        let frame = format!(
            r#"{{"action":"history","options":{{"channel":"edges","limit":{bad},"ref":"l"}}}}"#
        );
        client.send_raw(frame).await.unwrap();
        let reply = client.expect(Action::Reply, WAIT).await.unwrap();
        assert_eq!(
            reply.error_code(),
            Some(ErrorCode::InvalidFrame),
            "limit {bad}"
        );
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn a_thousand_joins_of_new_names_leave_nothing_behind() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    let mut watcher = server.client().await;
    watcher.join("lobby", true, false).await.unwrap();
    let mut churner = server.client().await;
    for n in 0..1000 {
        let name = format!("passing-{n}");
        churner.join(&name, true, false).await.unwrap();
        churner.leave(&name).await.unwrap();
    }
    // Rapid join and leave of one channel: presence ends where it started.
    for _ in 0..200 {
        churner.join("lobby", true, false).await.unwrap();
        churner.leave("lobby").await.unwrap();
    }
    let health = server.health().await;
    assert_eq!(health["channels"], 1, "only the lobby is open: {health}");
    let mut late = server.client().await;
    late.join("lobby", true, false).await.unwrap();
    let full = late.expect(Action::PresenceFull, WAIT).await.unwrap();
    assert_eq!(full.payload["presence"].as_array().unwrap().len(), 2);
    still_serving(&server).await;
}

#[tokio::test]
async fn a_forged_forwarded_address_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start_with(&[("SWITCHBOARD_CONNECTIONS_PER_IP", "1")]);
    let connect = |forwarded: &'static str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = server.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let _first = connect("203.0.113.1")
        .await
        .expect("the first socket is let in");
    match connect("203.0.113.2").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("a second socket from the same peer must be refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_history_request_while_one_is_unanswered_is_refused_and_answers_never_pile_up() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    let mut client = server.client().await;
    client.join("pile", false, false).await.unwrap();
    for n in 0..20 {
        client.publish("pile", json!({"n": n})).await.unwrap();
    }
    let mut ws = raw(&server).await;
    ws.send(Message::text(
        r#"{"action":"join","options":{"channel":"pile","ref":"j"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["payload"]["status"], "ok");
    let request = r#"{"action":"history","options":{"channel":"pile","ref":"h"}}"#;
    for _ in 0..50 {
        ws.send(Message::text(request)).await.unwrap();
    }
    let mut histories = 0;
    let mut refused = 0;
    while histories + refused < 50 {
        let frame = next_json(&mut ws).await;
        match (
            frame["action"].as_str(),
            frame["payload"]["status"].as_str(),
        ) {
            (Some("history"), _) => histories += 1,
            (Some("reply"), Some("error")) => {
                assert_eq!(error_code(&frame), Some("rate_limited"));
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(
        histories >= 1 && refused >= 1,
        "{histories} answered, {refused} refused"
    );
}

/// A socket that never reads asks again and again for the whole history of a channel of large
/// messages (resuming from the start, and `history`); what it can make the server hold is its
/// budget, not what it asks for.
#[tokio::test]
async fn a_reader_that_never_reads_cannot_make_the_server_allocate_without_bound() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "1000"),
        ("SWITCHBOARD_FRAME_BURST", "1000"),
        ("SWITCHBOARD_HISTORY_ON_JOIN", "200"),
        ("SWITCHBOARD_MAX_RESUME", "10000"),
    ]);
    let mut writer = server.client().await;
    writer.join("big", false, false).await.unwrap();
    let filler = "x".repeat(60_000);
    for n in 0..200 {
        writer
            .publish("big", json!({"n": n, "fill": filler}))
            .await
            .unwrap();
    }
    let epoch = writer
        .expect(Action::Message, WAIT)
        .await
        .unwrap()
        .epoch()
        .unwrap()
        .to_string();
    drop(writer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_bytes();
    let mut ws = raw(&server).await;
    let replay = json!({"action": "join", "options": {"channel": "big", "since": {"epoch": epoch, "seq": 0}}, "payload": {"history": true}}).to_string();
    let history =
        json!({"action": "history", "options": {"channel": "big", "limit": 100}}).to_string();
    let started = Instant::now();
    let mut peak = before;
    let mut cut_off = false;
    while started.elapsed() < Duration::from_secs(8) {
        for frame in [&replay, &history] {
            let sent = tokio::time::timeout(
                Duration::from_millis(200),
                ws.send(Message::text(frame.clone())),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                cut_off = true;
            }
        }
        peak = peak.max(server.rss_bytes());
        if cut_off {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 256 * 1024 * 1024,
        "the server grew by {} MiB",
        grown / (1024 * 1024)
    );
    // The socket was closed (over its budget) or at least refused: what it is finally read
    // says so.
    let (mut closed_with, mut refused) = (None, 0);
    let reading = Instant::now();
    while closed_with.is_none() && reading.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                if frame["payload"]["status"] == "error" || frame["action"] == "error" {
                    refused += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed_with = Some(frame.map_or(0, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => {
                closed_with.get_or_insert(0);
            }
            Err(_) if refused > 0 => break,
            Err(_) => {}
        }
    }
    assert!(
        closed_with == Some(1013) || refused > 0,
        "the socket was neither closed with 1013 nor refused (closed with {closed_with:?}, \
         cut off while sending: {cut_off})"
    );
    let health = server.health().await;
    assert_eq!(health["http"], 200);
    still_serving(&server).await;
    drop(ws);
}

#[tokio::test]
async fn a_write_that_never_completes_drops_the_connection_in_time() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_WRITE_TIMEOUT_MS", "1000"),
        ("SWITCHBOARD_FRAMES_PER_SECOND", "1000"),
        ("SWITCHBOARD_FRAME_BURST", "1000"),
        ("SWITCHBOARD_OUTBOX_BYTES", "67108864"),
        ("SWITCHBOARD_OUTBOX_CAPACITY", "100000"),
    ]);
    let mut writer = server.client().await;
    writer.join("wide", false, false).await.unwrap();
    let filler = "y".repeat(60_000);
    for n in 0..20 {
        writer
            .publish("wide", json!({"n": n, "fill": filler}))
            .await
            .unwrap();
    }
    let mut ws = raw(&server).await;
    ws.send(Message::text(
        r#"{"action":"join","options":{"channel":"wide"}}"#,
    ))
    .await
    .unwrap();
    let history = r#"{"action":"history","options":{"channel":"wide","limit":100}}"#;
    // Ask for about 1 MiB at a time until the kernel's buffers are full and writes stall.
    let started = Instant::now();
    loop {
        let _ =
            tokio::time::timeout(Duration::from_millis(50), ws.send(Message::text(history))).await;
        let sockets = server.health().await["sockets"].as_u64().unwrap_or(99);
        if sockets == 1 {
            // Only the writer is left: the stalled socket was dropped.
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a socket whose writes stalled was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn a_resend_of_an_old_id_never_wedges_the_node() {
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_HISTORY_KEEP", "2"),
        ("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", "3600000"),
    ]);
    let mut client = server.client().await;
    client.join("resends", false, false).await.unwrap();
    let send = |id: &str| {
        let mut options = channel_options("resends");
        options.insert("id".into(), json!(id));
        options
    };
    for n in 1..=5 {
        client
            .request(Action::Message, send(&format!("m{n}")), json!(n))
            .await
            .unwrap();
    }
    // m1 fell out of the ids the channel keeps in memory, but is still stored.
    client
        .request(Action::Message, send("m1"), json!(1))
        .await
        .unwrap();
    client
        .request(Action::Message, send("m6"), json!(6))
        .await
        .unwrap();
    // Six messages arrive (on a cluster the last may come after its ok), and no seventh.
    let mut seqs = Vec::new();
    while seqs.len() < 6 {
        let frame = client.expect(Action::Message, WAIT).await.unwrap();
        seqs.push(frame.seq().unwrap());
    }
    while let Some(frame) = client
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        assert_ne!(frame.action, Action::Message, "delivered again: {frame:?}");
    }
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 6],
        "the resend was not delivered again"
    );
    assert_eq!(server.health().await["http"], 200);
    let mut other = server.client().await;
    other.join("elsewhere", false, false).await.unwrap();
    other.publish("elsewhere", json!("fine")).await.unwrap();
}

#[tokio::test]
async fn stale_future_and_forged_tokens_are_refused() {
    let server = TestServer::start_with(&[("SWITCHBOARD_JWT_LEEWAY_SECONDS", "5")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
        )
        .unwrap()
    };
    let status = |token: String| {
        let url = server.url();
        async move {
            match Client::connect_with_token(&url, Some(&token)).await {
                Ok(_) => 101,
                Err(ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r))) => {
                    r.status().as_u16()
                }
                Err(other) => panic!("{other}"),
            }
        }
    };
    assert_eq!(
        status(sign(json!({"sub": "u", "exp": now + 60}))).await,
        101
    );
    assert_eq!(
        status(sign(json!({"sub": "u", "exp": now - 60}))).await,
        401,
        "stale"
    );
    assert_eq!(
        status(sign(json!({"sub": "u", "exp": now - 2}))).await,
        101,
        "within the leeway"
    );
    assert_eq!(
        status(sign(json!({"sub": "u", "exp": now + 60, "nbf": now + 60}))).await,
        401,
        "not yet valid"
    );
    assert_eq!(
        status(sign(json!({"sub": "u", "exp": now + 60, "nbf": now + 2}))).await,
        101,
        "nbf within the leeway"
    );
    // alg "none": an unsigned token.
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "admin", "exp": now + 60}))
    );
    assert_eq!(status(unsigned).await, 401);
    still_serving(&server).await;
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_public_key_is_refused() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let public = format!("{fixtures}/rs256-public.pem");
    let server = TestServer::start_with(&[("SWITCHBOARD_JWT_PUBLIC_KEY_FILE", &public)]);
    let pem = std::fs::read(&public).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "admin", "exp": now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(&pem),
    )
    .unwrap();
    match Client::connect_with_token(&server.url(), Some(&forged)).await {
        Err(ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            assert_eq!(r.status().as_u16(), 401)
        }
        other => panic!(
            "a token signed with the public key must be refused: {:?}",
            other.is_ok()
        ),
    }
}
