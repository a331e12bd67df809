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

/// Where a stored message sits in its channel: spliced into its frame's options.
pub(crate) struct Position<'a> {
    pub(crate) seq: u64,
    pub(crate) id: &'a str,
    pub(crate) epoch: &'a str,
}

fn stored(
    action: Action,
    channel: &str,
    at: &Position<'_>,
    payload: &RawValue,
    extra: usize,
) -> String {
    let mut out = String::with_capacity(payload.get().len() + extra + 160);
    out.push_str(r#"{"action":""#);
    out.push_str(action.as_str());
    out.push_str(r#"","options":{"channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","seq":"#);
    out.push_str(&at.seq.to_string());
    out.push_str(r#","id":"#);
    push_json_str(&mut out, at.id);
    out.push_str(r#","epoch":"#);
    push_json_str(&mut out, at.epoch);
    out.push_str(r#"},"payload":"#);
    out.push_str(payload.get());
    out
}

/// Where the seq digits start in a stored frame of `action` in `channel` (see [`stored`]);
/// a frame encoded with seq 0 is split there so Redis can splice in the seq it hands out.
pub(crate) fn seq_offset(action: Action, channel: &str) -> usize {
    let mut head = String::with_capacity(64);
    head.push_str(r#"{"action":""#);
    head.push_str(action.as_str());
    head.push_str(r#"","options":{"channel":"#);
    push_json_str(&mut head, channel);
    head.push_str(r#","seq":"#);
    head.len()
}

/// Stored `message` frame: payload verbatim, its position, the sender's client object.
pub(crate) fn stored_message(
    channel: &str,
    at: &Position<'_>,
    payload: &RawValue,
    client: &str,
) -> Bytes {
    let mut out = stored(Action::Message, channel, at, payload, client.len());
    out.push_str(r#","client":"#);
    out.push_str(client);
    out.push('}');
    Bytes::from(out)
}

/// Stored `event` frame published by the server side: no sending socket, so no `client`.
pub(crate) fn stored_event(channel: &str, at: &Position<'_>, payload: &RawValue) -> Bytes {
    let mut out = stored(Action::Event, channel, at, payload, 0);
    out.push('}');
    Bytes::from(out)
}

/// `message` frame that is not stored (to one socket or to authenticated members).
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

/// `gap` frame: messages after `since` up to `missing_to` are no longer stored (or the epoch
/// changed); what is still stored follows it.
pub(crate) fn gap(channel: &str, epoch: &str, since: u64, missing_to: u64) -> Bytes {
    let mut out = open(Action::Gap, Some(channel), None, 96);
    out.push_str(r#"{"epoch":"#);
    push_json_str(&mut out, epoch);
    out.push_str(r#","from":"#);
    out.push_str(&(since + 1).to_string());
    out.push_str(r#","to":"#);
    out.push_str(&missing_to.to_string());
    out.push_str("}}");
    Bytes::from(out)
}

/// `reply` ok for a stored message, with its seq.
pub(crate) fn reply_stored(channel: &str, reference: &RawValue, seq: u64) -> Bytes {
    let mut out = open(Action::Reply, Some(channel), Some(reference), 32);
    out.push_str(r#"{"status":"ok","seq":"#);
    out.push_str(&seq.to_string());
    out.push_str("}}");
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
pub(crate) fn history(channel: &str, frames: &[crate::StoredFrame]) -> Bytes {
    let size = frames.iter().map(|f| f.frame.len()).sum::<usize>() + frames.len();
    let mut out = open(Action::History, Some(channel), None, size + 16);
    out.push_str(r#"{"history":["#);
    for (n, frame) in frames.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        // Stored frames were produced by this module, which only writes UTF-8.
        out.push_str(std::str::from_utf8(&frame.frame).unwrap_or("null"));
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
        let at = Position {
            seq: 7,
            id: "m1",
            epoch: "e",
        };
        let stored = crate::StoredFrame {
            seq: 7,
            frame: stored_message("c", &at, &payload, client),
        };
        assert_eq!(decode(&stored.frame).seq(), Some(7));
        assert_eq!(decode(&stored.frame).epoch(), Some("e"));
        let hist = decode(&history("c", &[stored.clone(), stored]));
        assert_eq!(hist.payload["history"][1]["payload"], 1);
        let update = decode(&presence_update("c", Action::Leave, client));
        assert_eq!(update.payload["action"], "leave");
        let gap = decode(&gap("c", "e", 3, 9));
        assert_eq!(
            (gap.payload["from"].as_u64(), gap.payload["to"].as_u64()),
            (Some(4), Some(9))
        );
        let event = decode(&stored_event("c", &at, &payload));
        assert_eq!((event.action, event.client), (Action::Event, None));
    }

    #[test]
    fn a_frame_with_seq_zero_splits_around_its_seq() {
        let payload = RawValue::from_string(r#"{"seq":0}"#.into()).unwrap();
        let at = Position {
            seq: 0,
            id: "m\"1",
            epoch: "e",
        };
        let client = r#"{"socketId":"s1","extras":{},"permissions":{}}"#;
        let frame = stored_message("r\"1", &at, &payload, client);
        let offset = seq_offset(Action::Message, "r\"1");
        assert_eq!(frame[offset], b'0');
        let spliced = [&frame[..offset], b"12345", &frame[offset + 1..]].concat();
        let decoded: Frame = serde_json::from_slice(&spliced).unwrap();
        assert_eq!(
            (decoded.seq(), decoded.channel()),
            (Some(12345), Some("r\"1"))
        );
        assert_eq!(decoded.payload["seq"], 0);
    }
}
