//! The back end's gates over real sockets: a refused connect never becomes a socket, every
//! kind of send (stored, volatile, for signed-in members, for one socket) passes the publish
//! gate with what it is, and answers are reused only when the back end says for how long.

mod support;

use serde_json::{json, Map, Value};
use support::{TestServer, WAIT};
use switchboard_client::{channel_options, ClientError};
use switchboard_protocol::{Action, ErrorCode};

fn kinds(asked: &support::Asked, kind: &str) -> Vec<Value> {
    asked
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q["type"] == kind)
        .map(|q| q["data"].clone())
        .collect()
}

fn options(channel: &str, more: Value) -> Map<String, Value> {
    let mut options = channel_options(channel);
    if let Value::Object(more) = more {
        options.extend(more);
    }
    options
}

#[tokio::test]
async fn a_connect_gate_refuses_before_the_upgrade_and_hears_who_is_connecting() {
    let (gate, asked) = support::gate(|question| {
        if question["data"]["extras"]["id"] == "banned" {
            json!({"allow": false, "reason": "banned from here"})
        } else {
            json!({"allow": true})
        }
    })
    .await;
    let server = TestServer::start_with(&[("SWITCHBOARD_GATE_CONNECT_URL", &gate)]);
    let banned = support::token("banned", "Bo", 600);
    match tokio_tungstenite::connect_async(format!("{}?token={banned}", server.url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("banned from here"), "{body}");
        }
        other => panic!("the gate's refusal was not a 403 before the upgrade: {other:?}"),
    }
    let mut ada = server.client_as("ada", "Ada").await;
    ada.join("room", false, false).await.unwrap();
    let mut guest = server.client().await;
    guest.join("room", false, false).await.unwrap();
    let asked = kinds(&asked, "gate.connect");
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(asked[0]["authenticated"], true);
    assert_eq!(asked[0]["extras"]["id"], "banned");
    assert_eq!(asked[1]["extras"]["name"], "Ada");
    assert_eq!(asked[2]["authenticated"], false);
    assert_eq!(asked[2]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn every_kind_of_send_passes_the_publish_gate_as_what_it_is() {
    let (gate, asked) = support::gate(|question| {
        let text = question["data"]["payload"]["text"]
            .as_str()
            .unwrap_or_default();
        if text.contains("spam") {
            json!({"allow": false, "reason": "no spam, thank you"})
        } else {
            json!({"allow": true, "payload": {"text": text.to_uppercase()}})
        }
    })
    .await;
    let server = TestServer::start_with(&[("SWITCHBOARD_GATE_PUBLISH_URL", &gate)]);
    let mut sender = server.client_as("sam", "Sam").await;
    let mut reader = server.client_as("rea", "Rea").await;
    sender.join("room", false, false).await.unwrap();
    let reader_id = support::join_as(&mut reader, "room", "Rea").await;
    let sends = [
        json!({}),
        json!({"volatile": true}),
        json!({"authenticated": true}),
        json!({"socketId": reader_id}),
    ];
    for more in &sends {
        let refused = sender
            .request(
                Action::Message,
                options("room", more.clone()),
                json!({"text": "buy spam"}),
            )
            .await;
        match refused {
            Err(ClientError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::Forbidden, "{more}");
                assert_eq!(message, "no spam, thank you");
            }
            other => panic!("{more}: spam was not refused: {other:?}"),
        }
        sender
            .request(
                Action::Message,
                options("room", more.clone()),
                json!({"text": "hello"}),
            )
            .await
            .unwrap();
        let frame = reader.expect(Action::Message, WAIT).await.unwrap();
        assert_eq!(frame.payload, json!({"text": "HELLO"}), "{more}");
    }
    let asked = kinds(&asked, "gate.publish");
    assert_eq!(asked.len(), 8, "two questions per kind of send: {asked:?}");
    for (n, more) in sends.iter().enumerate() {
        assert_eq!(
            &asked[2 * n]["options"],
            more,
            "the gate hears how it is sent"
        );
        assert_eq!(asked[2 * n]["channel"], "room");
        assert_eq!(asked[2 * n]["client"]["extras"]["id"], "sam");
    }
}

#[tokio::test]
async fn answers_are_reused_only_for_as_long_as_the_back_end_says() {
    let (gate, asked) = support::gate(|question| match question["data"]["channel"].as_str() {
        Some("cached") => json!({"allow": true, "cache_seconds": 60}),
        Some("brief") => json!({"allow": true, "cache_seconds": 1}),
        _ => json!({"allow": true}),
    })
    .await;
    let server = TestServer::start_with(&[("SWITCHBOARD_GATE_JOIN_URL", &gate)]);
    let mut ada = server.client_as("ada", "Ada").await;
    let joins = |asked: &support::Asked, channel: &str| {
        kinds(asked, "gate.join")
            .iter()
            .filter(|d| d["channel"] == channel)
            .count()
    };
    for _ in 0..3 {
        for channel in ["plain", "cached"] {
            ada.join(channel, false, false).await.unwrap();
            ada.leave(channel).await.unwrap();
        }
    }
    assert_eq!(
        joins(&asked, "plain"),
        3,
        "not cached unless the back end says so"
    );
    assert_eq!(joins(&asked, "cached"), 1, "cached for as long as it said");
    // An answer kept for a second is asked for again once it is older.
    ada.join("brief", false, false).await.unwrap();
    ada.leave("brief").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ada.join("brief", false, false).await.unwrap();
    assert_eq!(
        joins(&asked, "brief"),
        2,
        "asked again once the answer is old"
    );
}

#[tokio::test]
async fn a_volatile_stream_is_asked_about_once_while_the_answer_is_kept() {
    let (gate, asked) = support::gate(|question| {
        let data = &question["data"];
        match data["channel"].as_str() {
            Some("board") => json!({"allow": true, "cache_seconds": 60}),
            // An answer that rewrites is never kept for a stream of other payloads.
            _ => json!({"allow": true, "cache_seconds": 60, "payload": {"x": 0}}),
        }
    })
    .await;
    let server = TestServer::start_with(&[("SWITCHBOARD_GATE_PUBLISH_URL", &gate)]);
    let mut mover = server.client_as("mo", "Mo").await;
    let mut watcher = server.client_as("wat", "Wat").await;
    for channel in ["board", "pinned"] {
        mover.join(channel, false, false).await.unwrap();
        watcher.join(channel, false, false).await.unwrap();
    }
    for channel in ["board", "pinned"] {
        for x in 1..=5 {
            mover
                .request(
                    Action::Message,
                    options(channel, json!({"volatile": true})),
                    json!({"x": x}),
                )
                .await
                .unwrap();
            let seen = watcher.expect(Action::Message, WAIT).await.unwrap();
            let expected = if channel == "board" { x } else { 0 };
            assert_eq!(seen.payload, json!({"x": expected}), "{channel}");
        }
    }
    let asked = kinds(&asked, "gate.publish");
    let of = |channel: &str| asked.iter().filter(|d| d["channel"] == channel).count();
    assert_eq!(
        of("board"),
        1,
        "one question for the stream while its answer is kept"
    );
    assert_eq!(
        of("pinned"),
        5,
        "a rewriting answer is asked again for each payload"
    );
}

#[tokio::test]
async fn a_refused_join_is_a_typed_forbidden_with_the_back_ends_reason() {
    let (gate, _) =
        support::gate(|_| json!({"allow": false, "reason": "members only, sorry"})).await;
    let server = TestServer::start_with(&[("SWITCHBOARD_GATE_JOIN_URL", &gate)]);
    let mut client = server.client().await;
    match client.join("room", false, false).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert_eq!(message, "members only, sorry");
        }
        other => panic!("the join was not refused: {other:?}"),
    }
    // Nothing was opened for it: a send there is not subscribed.
    let sent = client
        .request(Action::Message, channel_options("room"), json!("hi"))
        .await;
    assert!(
        matches!(
            sent,
            Err(ClientError::Refused {
                code: ErrorCode::NotSubscribed,
                ..
            })
        ),
        "{sent:?}"
    );
}
