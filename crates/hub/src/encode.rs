//! Encoding of server frames straight into bytes.
//!
//! A message is encoded once per publish and the same `Bytes` is queued to every subscriber.
//! The pieces spliced in (payload, client) are already valid JSON, so frames are assembled
//! rather than re-serialized.

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_protocol::{Action, ErrorCode, Relation};

/// A JSON string literal for `s`, escaped.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
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

/// A stored frame before its seq and epoch are known: the text split where they go. The
/// broker fills them in when it orders the message (Redis does it in its script), so a message
/// is still encoded once, whoever hands out its seq.
#[derive(Debug, Clone)]
pub(crate) struct StoredTemplate {
    text: Bytes,
    /// Where the seq digits go.
    seq_at: usize,
    /// Where the epoch goes (inside its quotes).
    epoch_at: usize,
}

impl StoredTemplate {
    /// `text` with the seq to go at `seq_at` and the epoch at `epoch_at`.
    pub(crate) fn split(text: Bytes, seq_at: usize, epoch_at: usize) -> Self {
        Self {
            text,
            seq_at,
            epoch_at,
        }
    }

    /// The frame up to the seq.
    pub(crate) fn head(&self) -> &[u8] {
        &self.text[..self.seq_at]
    }

    /// The frame between the seq and the epoch.
    pub(crate) fn middle(&self) -> &[u8] {
        &self.text[self.seq_at..self.epoch_at]
    }

    /// The frame after the epoch.
    pub(crate) fn tail(&self) -> &[u8] {
        &self.text[self.epoch_at..]
    }

    /// Bytes of the finished frame, less the seq and epoch.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    /// The finished frame.
    pub(crate) fn fill(&self, seq: u64, epoch: &str) -> Bytes {
        let seq = seq.to_string();
        let mut out = Vec::with_capacity(self.text.len() + seq.len() + epoch.len());
        out.extend_from_slice(self.head());
        out.extend_from_slice(seq.as_bytes());
        out.extend_from_slice(self.middle());
        out.extend_from_slice(epoch.as_bytes());
        out.extend_from_slice(self.tail());
        Bytes::from(out)
    }
}

/// Identity of a stored message besides its seq and epoch.
pub(crate) struct Stamp<'a> {
    /// The message id.
    pub(crate) id: &'a str,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The earlier message it edits, retracts or reacts to.
    pub(crate) relation: Option<Relation<'a>>,
}

fn stored(
    action: Action,
    channel: &str,
    stamp: &Stamp<'_>,
    payload: &RawValue,
    client: Option<&str>,
) -> StoredTemplate {
    let extra = client.map_or(0, str::len);
    let mut out = String::with_capacity(payload.get().len() + extra + 160);
    out.push_str(r#"{"action":""#);
    out.push_str(action.as_str());
    out.push_str(r#"","options":{"channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","seq":"#);
    let seq_at = out.len();
    out.push_str(r#","id":"#);
    push_json_str(&mut out, stamp.id);
    out.push_str(r#","at":"#);
    out.push_str(&stamp.at_ms.to_string());
    out.push_str(r#","epoch":""#);
    let epoch_at = out.len();
    out.push('"');
    if let Some(relation) = stamp.relation {
        out.push_str(",\"");
        out.push_str(relation.option());
        out.push_str("\":");
        push_json_str(&mut out, relation.target());
    }
    out.push_str(r#"},"payload":"#);
    out.push_str(payload.get());
    if let Some(client) = client {
        out.push_str(r#","client":"#);
        out.push_str(client);
    }
    out.push('}');
    StoredTemplate {
        text: Bytes::from(out),
        seq_at,
        epoch_at,
    }
}

/// Stored `message` frame: payload verbatim, its position, the sender's client object.
pub(crate) fn stored_message(
    channel: &str,
    stamp: &Stamp<'_>,
    payload: &RawValue,
    client: &str,
) -> StoredTemplate {
    stored(Action::Message, channel, stamp, payload, Some(client))
}

/// Stored `event` frame published by the server side: no sending socket, so no `client`.
pub(crate) fn stored_event(channel: &str, stamp: &Stamp<'_>, payload: &RawValue) -> StoredTemplate {
    stored(Action::Event, channel, stamp, payload, None)
}

/// A socket's `client` object: `{socketId, extras, permissions}`; `extras` is JSON already.
pub(crate) fn client(socket: &str, extras: &str, authenticated: bool) -> String {
    let mut out = String::with_capacity(extras.len() + 96);
    out.push_str(r#"{"socketId":"#);
    push_json_str(&mut out, socket);
    out.push_str(r#","extras":"#);
    out.push_str(extras);
    out.push_str(r#","permissions":{"authenticated":"#);
    out.push_str(if authenticated { "true" } else { "false" });
    out.push_str("}}");
    out
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
    out.push_str(&since.saturating_add(1).to_string());
    out.push_str(r#","to":"#);
    out.push_str(&missing_to.to_string());
    out.push_str("}}");
    Bytes::from(out)
}

/// An `event` frame without a seq: a notice from the server about the socket itself (not
/// stored), e.g. `{"kind": "removed", "reason": "…"}`.
pub(crate) fn notice(channel: &str, kind: &str, reason: &str) -> Bytes {
    let mut out = open(Action::Event, Some(channel), None, 96 + reason.len());
    out.push_str(r#"{"kind":"#);
    push_json_str(&mut out, kind);
    out.push_str(r#","reason":"#);
    push_json_str(&mut out, reason);
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
pub(crate) fn history(channel: &str, frames: &[crate::history::StoredFrame]) -> Bytes {
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
        let stamp = Stamp {
            id: "m1",
            at_ms: 1_700_000_000_000,
            relation: None,
        };
        let stored = crate::history::StoredFrame {
            seq: 7,
            frame: stored_message("c", &stamp, &payload, client).fill(7, "e"),
        };
        assert_eq!(decode(&stored.frame).seq(), Some(7));
        assert_eq!(decode(&stored.frame).epoch(), Some("e"));
        assert_eq!(decode(&stored.frame).options["at"], 1_700_000_000_000u64);
        let hist = decode(&history("c", &[stored.clone(), stored]));
        assert_eq!(hist.payload["history"][1]["payload"], 1);
        let update = decode(&presence_update("c", Action::Leave, client));
        assert_eq!(update.payload["action"], "leave");
        let gap = decode(&gap("c", "e", 3, 9));
        assert_eq!(
            (gap.payload["from"].as_u64(), gap.payload["to"].as_u64()),
            (Some(4), Some(9))
        );
        let event = decode(&stored_event("c", &stamp, &payload).fill(1, "e"));
        assert_eq!((event.action, event.client), (Action::Event, None));
    }

    #[test]
    fn a_template_is_filled_with_its_seq_and_epoch() {
        let payload = RawValue::from_string(r#"{"seq":0}"#.into()).unwrap();
        let stamp = Stamp {
            id: "m\"1",
            at_ms: 5,
            relation: Some(Relation::Replaces("m0")),
        };
        let client = r#"{"socketId":"s1","extras":{},"permissions":{}}"#;
        let template = stored_message("r\"1", &stamp, &payload, client);
        let spliced = [
            template.head(),
            b"12345",
            template.middle(),
            b"abc",
            template.tail(),
        ]
        .concat();
        let decoded: Frame = serde_json::from_slice(&spliced).unwrap();
        assert_eq!(
            (decoded.seq(), decoded.channel(), decoded.epoch()),
            (Some(12345), Some("r\"1"), Some("abc"))
        );
        assert_eq!(decoded.payload["seq"], 0);
        assert_eq!(decoded.options["replaces"], "m0");
        assert_eq!(template.fill(12345, "abc"), bytes::Bytes::from(spliced));
    }
}
