//! Server-side publishing through the hub, as the chat page's server function and the HTTP API
//! use it.

use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_hub::{Hub, HubConfig, Identity, MemoryHistory, Outbound, PublishError};
use switchboard_protocol::{Action, Frame};

fn hub() -> Hub {
    Hub::new(HubConfig::default(), Arc::new(MemoryHistory::default()))
}

async fn next_frame(outbox: &mut switchboard_hub::OutboxReceiver) -> Frame {
    match outbox.next().await {
        Outbound::Frame(bytes) => serde_json::from_slice(&bytes).expect("valid frame"),
        Outbound::Close(code) => panic!("closed with {code:?}"),
    }
}

#[tokio::test]
async fn a_published_event_reaches_members_and_is_kept_in_history() {
    let hub = hub();
    let (mut session, mut outbox) = hub.connect(Identity::default()).unwrap();
    session.handle_text(r#"{"action":"join","options":{"channel":"room1"}}"#);
    let payload = RawValue::from_string(r#"{"text":"from the server"}"#.into()).unwrap();
    hub.publish_event("room1", &payload).unwrap();
    let frame = next_frame(&mut outbox).await;
    assert_eq!(frame.action, Action::Event);
    assert_eq!(frame.payload["text"], "from the server");
    assert_eq!(frame.client, None);
    let stored = hub.recent("room1", 10).unwrap();
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn publishing_to_an_empty_channel_still_stores_the_event() {
    let hub = hub();
    let payload = RawValue::from_string("1".into()).unwrap();
    hub.publish_event("quiet", &payload).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(hub.recent("quiet", 10).unwrap().len(), 1);
    assert_eq!(hub.channel_count(), 0);
}

#[test]
fn bad_channels_and_oversized_payloads_are_refused() {
    let hub = hub();
    let payload = RawValue::from_string("1".into()).unwrap();
    assert!(matches!(
        hub.publish_event("no spaces", &payload),
        Err(PublishError::InvalidChannel(_))
    ));
    let big = RawValue::from_string(format!("\"{}\"", "x".repeat(70_000))).unwrap();
    assert!(matches!(
        hub.publish_event("room1", &big),
        Err(PublishError::PayloadTooLarge { .. })
    ));
}
