//! Properties of the client-frame decoder, checked on generated inputs: whatever bytes or JSON
//! a client sends, decoding never panics and always yields a request or a typed error with an
//! explanation.
//!
//! `scripts/test` runs a few thousand cases. For a long campaign:
//! `PROPTEST_CASES=1000000 cargo test --release -p switchboard-protocol --test decoder_properties`.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchboard_protocol::{decode_client_frame, ClientRequest, ErrorCode};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A field name a frame might carry: the real ones, and anything else.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_string()),
        Just("options".to_string()),
        Just("payload".to_string()),
        ".{0,10}",
    ]
}

/// Frames shaped like the real ones, with every field possibly of the wrong type or value.
fn frame_like() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        Just(json!("join")),
        Just(json!("leave")),
        Just(json!("message")),
        Just(json!("history")),
        any_json(),
    ];
    let option = prop_oneof![
        Just("channel".to_string()),
        Just("ref".to_string()),
        Just("since".to_string()),
        Just("before".to_string()),
        Just("limit".to_string()),
        Just("id".to_string()),
        Just("socketId".to_string()),
        Just("volatile".to_string()),
        Just("authenticated".to_string()),
        ".{0,8}",
    ];
    let options = prop::collection::btree_map(option, any_json(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    (action, options, any_json()).prop_map(|(action, options, payload)| {
        json!({"action": action, "options": options, "payload": payload})
    })
}

fn check(text: &str) {
    let decoded = decode_client_frame(text);
    match decoded.request {
        Ok(request) => {
            // A request always names a valid channel.
            let channel = match &request {
                ClientRequest::Join(join) => join.channel,
                ClientRequest::Leave { channel } => channel,
                ClientRequest::Message(message) => message.channel,
                ClientRequest::History(history) => history.channel,
            };
            assert!(switchboard_protocol::validate_channel_name(channel).is_ok());
        }
        Err((code, message)) => {
            assert!(!message.is_empty(), "{code:?} without an explanation");
            assert!(
                code != ErrorCode::Internal,
                "decoding never fails internally"
            );
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        check(&value.to_string());
    }

    #[test]
    fn arbitrary_objects_with_any_fields_never_panic(
        fields in prop::collection::btree_map(field(), any_json(), 0..5)
    ) {
        check(&Value::Object(fields.into_iter().collect()).to_string());
    }

    #[test]
    fn frames_with_any_field_values_yield_a_request_or_a_typed_error(frame in frame_like()) {
        check(&frame.to_string());
    }

    #[test]
    fn truncated_frames_never_panic(frame in frame_like(), cut in any::<prop::sample::Index>()) {
        let text = frame.to_string();
        let at = cut.index(text.len() + 1);
        if let Some(prefix) = text.get(..at) {
            check(prefix);
        }
    }
}
