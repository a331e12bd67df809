//! Encoding of server frames straight into bytes.
//!
//! A message is encoded once per publish and the same `Bytes` is queued to every subscriber.
//! The pieces spliced in (payload, client) are already valid JSON, so frames are assembled
//! rather than re-serialized.

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_protocol::{Action, ErrorCode};

/// A JSON string literal for `s`, escaped.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

fn open(
    action: Action,
    channel: Option<&str>,
    reference: Option<&RawValue>,
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity + 96);
    out.push_str(r#"{"action":""#);
    out.push_str(action.as_str());
    out.push_str(r#"","options":{"#);
    let mut first = true;
    if let Some(channel) = channel {
        out.push_str(r#""channel":"#);
        push_json_str(&mut out, channel);
        first = false;
    }
    if let Some(reference) = reference {
        if !first {
            out.push(',');
        }
        out.push_str(r#""ref":"#);
        out.push_str(reference.get());
    }
    out.push_str(r#"},"payload":"#);
    out
}

/// `message` frame relayed to a channel: payload verbatim, sender's client object.
pub(crate) fn relayed(channel: &str, payload: &RawValue, client: &str) -> Bytes {
    let mut out = open(
        Action::Message,
        Some(channel),
        None,
        payload.get().len() + client.len(),
    );
    out.push_str(payload.get());
    out.push_str(r#","client":"#);
    out.push_str(client);
    out.push('}');
    Bytes::from(out)
}

/// `event` frame published by the server side: no sending socket, so no `client`.
pub(crate) fn server_event(channel: &str, payload: &RawValue) -> Bytes {
    let mut out = open(Action::Event, Some(channel), None, payload.get().len());
    out.push_str(payload.get());
    out.push('}');
    Bytes::from(out)
}

/// `error` frame for a request sent without `options.ref`.
pub(crate) fn error(channel: Option<&str>, code: ErrorCode, message: &str) -> Bytes {
    let mut out = open(Action::Error, channel, None, message.len() + 32);
    push_error_payload(&mut out, code, message);
    out.push('}');
    Bytes::from(out)
}

/// `reply` frame for a request sent with `options.ref`.
pub(crate) fn reply(
    channel: Option<&str>,
    reference: &RawValue,
    outcome: Result<(), (ErrorCode, &str)>,
) -> Bytes {
    let mut out = open(Action::Reply, channel, Some(reference), 64);
    match outcome {
        Ok(()) => out.push_str(r#"{"status":"ok"}"#),
        Err((code, message)) => {
            out.push_str(r#"{"status":"error","code":""#);
            out.push_str(code.as_str());
            out.push_str(r#"","message":"#);
            push_json_str(&mut out, message);
            out.push('}');
        }
    }
    out.push('}');
    Bytes::from(out)
}

fn push_error_payload(out: &mut String, code: ErrorCode, message: &str) {
    out.push_str(r#"{"code":""#);
    out.push_str(code.as_str());
    out.push_str(r#"","message":"#);
    push_json_str(out, message);
    out.push('}');
}

/// `presence_full` frame: every listed member's client object.
pub(crate) fn presence_full<'a>(channel: &str, clients: impl Iterator<Item = &'a str>) -> Bytes {
    let mut out = open(Action::PresenceFull, Some(channel), None, 256);
    out.push_str(r#"{"presence":["#);
    for (n, client) in clients.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(client);
    }
    out.push_str("]}}");
    Bytes::from(out)
}

/// `presence_update` frame: one member joined or left.
pub(crate) fn presence_update(channel: &str, action: Action, client: &str) -> Bytes {
    let mut out = open(
        Action::PresenceUpdate,
        Some(channel),
        None,
        client.len() + 48,
    );
    out.push_str(r#"{"action":""#);
    out.push_str(action.as_str());
    out.push_str(r#"","presence":"#);
    out.push_str(client);
    out.push_str("}}");
    Bytes::from(out)
}

/// `history` frame: stored message frames, oldest first.
pub(crate) fn history(channel: &str, frames: &[Bytes]) -> Bytes {
    let size = frames.iter().map(Bytes::len).sum::<usize>() + frames.len();
    let mut out = open(Action::History, Some(channel), None, size + 16);
    out.push_str(r#"{"history":["#);
    for (n, frame) in frames.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        // Stored frames were produced by this module, which only writes UTF-8.
        out.push_str(std::str::from_utf8(frame).unwrap_or("null"));
    }
    out.push_str("]}}");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::Frame;

    fn decode(bytes: &Bytes) -> Frame {
        serde_json::from_slice(bytes).expect("server frames are valid JSON")
    }

    #[test]
    fn relayed_message_is_valid_json_with_verbatim_payload() {
        let payload = RawValue::from_string(r#"{"text":"hi \"there\""}"#.into()).unwrap();
        let client = r#"{"socketId":"s1","extras":{},"permissions":{"authenticated":false}}"#;
        let frame = decode(&relayed("room\"1", &payload, client));
        assert_eq!(frame.action, Action::Message);
        assert_eq!(frame.channel(), Some("room\"1"));
        assert_eq!(frame.payload["text"], "hi \"there\"");
        assert_eq!(frame.client.unwrap().socket_id, "s1");
    }

    #[test]
    fn replies_echo_the_ref_and_carry_the_code() {
        let reference = RawValue::from_string("42".into()).unwrap();
        let ok = decode(&reply(Some("a"), &reference, Ok(())));
        assert_eq!(ok.reference(), Some(&serde_json::json!(42)));
        assert_eq!(ok.payload["status"], "ok");
        let err = decode(&reply(
            None,
            &reference,
            Err((ErrorCode::NotSubscribed, "no")),
        ));
        assert_eq!(err.error_code(), Some(ErrorCode::NotSubscribed));
    }

    #[test]
    fn error_history_and_presence_frames_decode() {
        assert_eq!(
            decode(&error(None, ErrorCode::BadJson, "x")).error_code(),
            Some(ErrorCode::BadJson)
        );
        let client = r#"{"socketId":"s1","extras":{},"permissions":{}}"#;
        let full = decode(&presence_full("c", [client, client].into_iter()));
        assert_eq!(full.payload["presence"].as_array().unwrap().len(), 2);
        let payload = RawValue::from_string("1".into()).unwrap();
        let stored = relayed("c", &payload, client);
        let hist = decode(&history("c", &[stored.clone(), stored]));
        assert_eq!(hist.payload["history"][1]["payload"], 1);
        let update = decode(&presence_update("c", Action::Leave, client));
        assert_eq!(update.payload["action"], "leave");
    }
}
