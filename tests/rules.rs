//! Channel rules over real sockets: who may join, who may send, presence, per-channel payload
//! and rate limits, and per-channel history size; every denial is a typed error and nothing
//! is delivered.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{TestServer, WAIT};
use switchboard_client::{channel_options, ClientError};
use switchboard_protocol::{Action, ErrorCode};

const RULES: &str = r#"
[[channels]]
pattern = "staff/*"
join = "authenticated"

[[channels]]
pattern = "announcements"
send = "nobody"

[[channels]]
pattern = "members-speak"
send = "authenticated"

[[channels]]
pattern = "quiet"
presence = false

[[channels]]
pattern = "tiny"
max_payload_bytes = 16
messages_per_second = 5
history_keep = 3

[[channels]]
pattern = "staff/open"
join = "anyone"
"#;

fn server(extra: &[(&str, &str)]) -> TestServer {
    let path = support::temp_db().with_file_name("rules.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, RULES).unwrap();
    let config = path.to_str().unwrap().to_string();
    let mut env: Vec<(&str, &str)> =
        vec![("SWITCHBOARD_CONFIG", Box::leak(config.into_boxed_str()))];
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

fn refused(result: Result<(), ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn anonymous_sockets_cannot_join_channels_for_signed_in_ones() {
    let server = server(&[]);
    let mut anonymous = server.client().await;
    assert_eq!(
        refused(anonymous.join("staff/room", false, false).await),
        ErrorCode::AuthRequired
    );
    // The first matching rule wins: staff/* comes before staff/open.
    assert_eq!(
        refused(anonymous.join("staff/open", false, false).await),
        ErrorCode::AuthRequired
    );
    let mut signed_in = server.client_as("u1", "Alice").await;
    signed_in.join("staff/room", false, false).await.unwrap();
    // Anonymous sockets still join the channels no rule restricts.
    anonymous.join("lobby", false, false).await.unwrap();
}

#[tokio::test]
async fn a_server_only_channel_refuses_client_sends_but_takes_the_api() {
    let server = server(&[("SWITCHBOARD_API_KEYS", "k")]);
    let mut listener = server.client().await;
    let mut alice = server.client_as("u1", "Alice").await;
    listener.join("announcements", false, false).await.unwrap();
    alice.join("announcements", false, false).await.unwrap();
    assert_eq!(
        refused(alice.publish("announcements", json!("hi")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        listener
            .next_frame_within(Duration::from_millis(300))
            .await
            .unwrap(),
        None
    );
    let response = support::http_post(
        &server.addr,
        "/api/channels/announcements/messages",
        "X-Api-Key: k\r\n",
        r#"{"text":"from the server"}"#,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let event = listener.expect(Action::Event, WAIT).await.unwrap();
    assert_eq!(event.payload["text"], "from the server");
}

#[tokio::test]
async fn only_signed_in_members_may_send_where_the_rule_says_so() {
    let server = server(&[]);
    let mut anonymous = server.client().await;
    let mut alice = server.client_as("u1", "Alice").await;
    anonymous.join("members-speak", false, false).await.unwrap();
    alice.join("members-speak", false, false).await.unwrap();
    assert_eq!(
        refused(anonymous.publish("members-speak", json!("me too")).await),
        ErrorCode::AuthRequired
    );
    alice
        .publish("members-speak", json!("hello"))
        .await
        .unwrap();
    let heard = anonymous.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(heard.payload, json!("hello"));
}

#[tokio::test]
async fn presence_off_means_no_presence_frames() {
    let server = server(&[]);
    let (mut a, mut b) = (server.client().await, server.client().await);
    a.join("quiet", true, false).await.unwrap();
    b.join("quiet", true, false).await.unwrap();
    for client in [&mut a, &mut b] {
        while let Some(frame) = client
            .next_frame_within(Duration::from_millis(300))
            .await
            .unwrap()
        {
            assert!(
                !matches!(frame.action, Action::PresenceFull | Action::PresenceUpdate),
                "unexpected {frame:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_channel_can_have_its_own_payload_rate_and_history_limits() {
    let server = server(&[("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", "50")]);
    let mut a = server.client().await;
    a.join("tiny", false, false).await.unwrap();
    assert_eq!(
        refused(
            a.publish("tiny", json!("this is more than sixteen bytes"))
                .await
        ),
        ErrorCode::PayloadTooLarge
    );
    // 5 a second with a burst of 5: of eight sends, some are refused.
    let (limited, _) = support::burst(&mut a, "tiny", 8).await;
    assert!(
        limited >= 2,
        "5 per second, then rate_limited (got {limited} refusals)"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.publish("tiny", json!("after a second")).await.unwrap();
    let echo = a.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(echo.payload, "after a second");
    // Trimming runs every 50 ms in the background: ask until it has caught up.
    let deadline = tokio::time::Instant::now() + WAIT;
    let kept = loop {
        a.request(Action::History, channel_options("tiny"), Value::Null)
            .await
            .unwrap();
        let history = a.expect(Action::History, WAIT).await.unwrap();
        let kept = history.payload["history"].as_array().unwrap().clone();
        if kept.len() <= 3 || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept.len(), 3, "history_keep = 3 for this channel");
    assert_eq!(kept[2]["payload"], "after a second");
}
