//! Decoding of client frames into typed requests, with the error code for every way a frame
//! can be wrong. Payloads stay as raw JSON text so the server can relay them without
//! re-serializing.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{validate_channel_name, ErrorCode};

/// A valid client request.
#[derive(Debug)]
pub enum ClientRequest<'a> {
    /// Subscribe to a channel.
    Join(JoinRequest<'a>),
    /// Unsubscribe from a channel.
    Leave {
        /// The channel to leave.
        channel: &'a str,
    },
    /// Send a message to a channel.
    Message(MessageRequest<'a>),
    /// Ask for a channel's stored messages.
    History(HistoryRequest<'a>),
}

/// `history`: the latest `limit` messages, or the `limit` before seq `before` (paging back).
#[derive(Debug)]
pub struct HistoryRequest<'a> {
    /// The channel asked about.
    pub channel: &'a str,
    /// Only messages with a smaller seq.
    pub before: Option<u64>,
    /// How many, at most (1 to [`MAX_HISTORY_LIMIT`]).
    pub limit: Option<usize>,
}

/// Largest `options.limit` of a history request.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// A resume position: the last message a client saw in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since<'a> {
    /// The channel's epoch when the client saw that message.
    pub epoch: &'a str,
    /// That message's seq.
    pub seq: u64,
}

/// `join`: `payload` = `{presence, history, extras}`, all optional.
#[derive(Debug)]
pub struct JoinRequest<'a> {
    /// The channel to join.
    pub channel: &'a str,
    /// Take part in presence: be listed and receive presence frames.
    pub presence: bool,
    /// Receive the channel's recent messages right after joining.
    pub history: bool,
    /// Public identity shown to others (name, colour) when the socket has no token.
    pub extras: Option<Map<String, Value>>,
    /// Resume: send what was stored after this position before live messages.
    pub since: Option<Since<'a>>,
}

/// `message`: the payload to relay and who should get it.
#[derive(Debug)]
pub struct MessageRequest<'a> {
    /// The channel sent to.
    pub channel: &'a str,
    /// Exactly what the sender put in, relayed verbatim.
    pub payload: &'a RawValue,
    /// The audience.
    pub target: Target<'a>,
    /// The sender's id for the message (`options.id`), for de-duplicating resends.
    pub id: Option<&'a str>,
    /// `options.volatile`: a cursor-style update, never stored, coalesced under load.
    pub volatile: bool,
    /// An earlier message this one edits, retracts or reacts to.
    pub relation: Option<Relation<'a>>,
}

/// How a stored message refers to an earlier one of the same channel, by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation<'a> {
    /// `options.replaces`: its payload replaces the earlier one's (author only).
    Replaces(&'a str),
    /// `options.retracts`: the earlier message is withdrawn (author only).
    Retracts(&'a str),
    /// `options.reactsTo`: a reaction to the earlier message.
    ReactsTo(&'a str),
}

impl<'a> Relation<'a> {
    /// The option's wire name.
    pub fn option(self) -> &'static str {
        match self {
            Relation::Replaces(_) => "replaces",
            Relation::Retracts(_) => "retracts",
            Relation::ReactsTo(_) => "reactsTo",
        }
    }

    /// The id of the earlier message.
    pub fn target(self) -> &'a str {
        match self {
            Relation::Replaces(id) | Relation::Retracts(id) | Relation::ReactsTo(id) => id,
        }
    }

    /// Whether only the earlier message's author may send it.
    pub fn author_only(self) -> bool {
        !matches!(self, Relation::ReactsTo(_))
    }
}

/// Who receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every member of the channel, the sender included.
    Everyone,
    /// Only authenticated members (`options.authenticated: true`).
    Authenticated,
    /// One socket of the channel (`options.socketId`).
    Socket(&'a str),
}

/// A decoded frame: its correlation id (when it could be read) and the request or the reason
/// it was refused.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// `options.ref`, raw JSON (a string or a number), echoed in the reply.
    pub reference: Option<&'a RawValue>,
    /// The channel named by the frame, when it could be read; echoed in error frames.
    pub channel: Option<&'a str>,
    /// The request, or the error code and message.
    pub request: Result<ClientRequest<'a>, (ErrorCode, String)>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Options<'a> {
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(default)]
    authenticated: Option<bool>,
    #[serde(borrow, default, rename = "socketId")]
    socket_id: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    since: Option<SinceOption<'a>>,
    #[serde(default)]
    volatile: Option<bool>,
    #[serde(borrow, default)]
    replaces: Option<&'a str>,
    #[serde(borrow, default)]
    retracts: Option<&'a str>,
    #[serde(borrow, default, rename = "reactsTo")]
    reacts_to: Option<&'a str>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Only the `ref` of the options, read even when other fields are wrong.
#[derive(Deserialize)]
struct RefOnly<'a> {
    #[serde(borrow, default, rename = "ref")]
    reference: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SinceOption<'a> {
    #[serde(borrow)]
    epoch: &'a str,
    seq: u64,
}

/// Longest message id accepted.
pub const MAX_MESSAGE_ID_LEN: usize = 64;

#[derive(Deserialize, Default)]
struct JoinPayload {
    #[serde(default)]
    presence: Option<bool>,
    #[serde(default)]
    history: Option<bool>,
    #[serde(default)]
    extras: Option<Map<String, Value>>,
}

/// Longest `options.ref` accepted, in bytes of JSON.
const MAX_REF_LEN: usize = 128;

/// Deepest nesting of arrays and objects accepted in a payload or join extras: deeper JSON
/// is refused (`invalid_frame`) rather than relayed to clients whose parsers stop at a depth.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deep `json` nests arrays and objects (it is valid JSON already), counted without
/// recursion so no input can exhaust the stack.
fn depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn too_deep(what: &str) -> (ErrorCode, String) {
    (
        ErrorCode::InvalidFrame,
        format!("{what} nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
    )
}

/// Decodes one client text frame.
pub fn decode_client_frame(text: &str) -> Decoded<'_> {
    let mut decoded = Decoded {
        reference: None,
        channel: None,
        request: Err((ErrorCode::Internal, String::new())),
    };
    decoded.request = decode_into(text, &mut decoded.reference, &mut decoded.channel);
    decoded
}

fn decode_into<'a>(
    text: &'a str,
    reference: &mut Option<&'a RawValue>,
    channel_out: &mut Option<&'a str>,
) -> Result<ClientRequest<'a>, (ErrorCode, String)> {
    // serde would also read a struct from a JSON array; only objects are frames.
    if !text.trim_start().starts_with('{') {
        return Err((ErrorCode::BadJson, "frame is not a JSON object".into()));
    }
    // The envelope itself is 3 levels deep at most; anything deeper is in a payload.
    if depth(text) > MAX_PAYLOAD_DEPTH + 3 {
        return Err(too_deep("the frame"));
    }
    let envelope: Envelope<'a> = serde_json::from_str(text).map_err(|err| {
        (
            ErrorCode::BadJson,
            format!("frame is not a JSON object: {err}"),
        )
    })?;
    // The ref is read on its own first, so a request refused for any other field of its
    // options still gets its reply.
    if let Some(raw) = envelope.options.filter(|raw| raw.get() != "null") {
        let loose: Result<RefOnly<'a>, _> = serde_json::from_str(raw.get());
        if let Some(raw) = loose.ok().and_then(|found| found.reference) {
            let first = raw.get().as_bytes().first().copied();
            let scalar = matches!(first, Some(b'"' | b'-' | b'0'..=b'9'));
            if !scalar || raw.get().len() > MAX_REF_LEN {
                return Err((
                    ErrorCode::InvalidFrame,
                    "options.ref must be a string or a number of at most 128 bytes".into(),
                ));
            }
            *reference = Some(raw);
        }
    }
    let options: Options<'a> = match envelope.options {
        None => Options::default(),
        Some(raw) if raw.get() == "null" => Options::default(),
        Some(raw) => serde_json::from_str(raw.get()).map_err(|err| {
            (
                ErrorCode::InvalidFrame,
                format!("options must be an object of the documented fields: {err}"),
            )
        })?,
    };
    let action: &str = match envelope.action {
        None => return Err((ErrorCode::InvalidFrame, "action is missing".into())),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| (ErrorCode::InvalidFrame, "action must be a string".into()))?,
    };
    if !matches!(action, "join" | "leave" | "message" | "history") {
        return Err((
            ErrorCode::UnknownAction,
            format!("unknown action {action:?}: expected join, leave, message or history"),
        ));
    }
    let channel: &'a str = match options.channel {
        None => {
            return Err((
                ErrorCode::MissingChannel,
                format!("{action} needs options.channel"),
            ))
        }
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
            (
                ErrorCode::InvalidChannel,
                "options.channel must be a string".to_string(),
            )
        })?,
    };
    validate_channel_name(channel).map_err(|(code, why)| (code, why.to_string()))?;
    *channel_out = Some(channel);
    match action {
        "join" => {
            if envelope
                .payload
                .is_some_and(|raw| depth(raw.get()) > MAX_PAYLOAD_DEPTH)
            {
                return Err(too_deep("the join payload"));
            }
            let payload: JoinPayload = match envelope.payload {
                None => JoinPayload::default(),
                Some(raw) if raw.get() == "null" => JoinPayload::default(),
                Some(raw) => serde_json::from_str(raw.get()).map_err(|err| {
                    (
                        ErrorCode::InvalidFrame,
                        format!("join payload must be {{presence, history, extras}}: {err}"),
                    )
                })?,
            };
            Ok(ClientRequest::Join(JoinRequest {
                channel,
                presence: payload.presence.unwrap_or(false),
                history: payload.history.unwrap_or(false),
                extras: payload.extras,
                since: options.since.map(|since| Since {
                    epoch: since.epoch,
                    seq: since.seq,
                }),
            }))
        }
        "leave" => Ok(ClientRequest::Leave { channel }),
        "history" => {
            if options
                .limit
                .is_some_and(|limit| limit == 0 || limit > MAX_HISTORY_LIMIT)
            {
                return Err((
                    ErrorCode::InvalidFrame,
                    format!("options.limit must be from 1 to {MAX_HISTORY_LIMIT}"),
                ));
            }
            Ok(ClientRequest::History(HistoryRequest {
                channel,
                before: options.before,
                limit: options.limit,
            }))
        }
        _ => {
            let target = match (options.socket_id, options.authenticated) {
                (Some(socket), _) => Target::Socket(socket),
                (None, Some(true)) => Target::Authenticated,
                (None, _) => Target::Everyone,
            };
            let valid_id = |id: &str| {
                !id.is_empty()
                    && id.len() <= MAX_MESSAGE_ID_LEN
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if options.id.is_some_and(|id| !valid_id(id)) {
                return Err((
                    ErrorCode::InvalidFrame,
                    "options.id must be 1 to 64 ASCII letters, digits, - or _".into(),
                ));
            }
            let payload = envelope.payload.unwrap_or(RawValue::NULL);
            if depth(payload.get()) > MAX_PAYLOAD_DEPTH {
                return Err(too_deep("the payload"));
            }
            let relations = [
                options.replaces.map(Relation::Replaces),
                options.retracts.map(Relation::Retracts),
                options.reacts_to.map(Relation::ReactsTo),
            ];
            let mut given = relations.into_iter().flatten();
            let relation = given.next();
            if let Some(relation) = relation {
                let volatile = options.volatile.unwrap_or(false);
                if given.next().is_some() || volatile || target != Target::Everyone {
                    return Err((
                        ErrorCode::InvalidFrame,
                        "replaces, retracts and reactsTo go one at a time, on a stored message to everyone".into(),
                    ));
                }
                if !valid_id(relation.target()) {
                    return Err((
                        ErrorCode::InvalidFrame,
                        format!("options.{} must be a message id", relation.option()),
                    ));
                }
            }
            Ok(ClientRequest::Message(MessageRequest {
                channel,
                payload,
                target,
                id: options.id,
                volatile: options.volatile.unwrap_or(false),
                relation,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        decode_client_frame(text).request.unwrap_err().0
    }

    #[test]
    fn message_to_everyone_keeps_the_payload_verbatim() {
        let text =
            r#"{"action":"message","options":{"channel":"room1"},"payload":{"b": 1,"a":[2]}}"#;
        match decode_client_frame(text).request.unwrap() {
            ClientRequest::Message(m) => {
                assert_eq!(m.channel, "room1");
                assert_eq!(m.payload.get(), r#"{"b": 1,"a":[2]}"#);
                assert_eq!(m.target, Target::Everyone);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn audience_options_select_the_target() {
        let auth =
            r#"{"action":"message","options":{"channel":"c","authenticated":true},"payload":1}"#;
        let one = r#"{"action":"message","options":{"channel":"c","socketId":"abc"},"payload":1}"#;
        let target = |t| match decode_client_frame(t).request.unwrap() {
            ClientRequest::Message(m) => m.target,
            other => panic!("decoded as {other:?}"),
        };
        assert_eq!(target(auth), Target::Authenticated);
        assert_eq!(target(one), Target::Socket("abc"));
    }

    #[test]
    fn sdk_join_frame_decodes() {
        let text = r#"{"action":"join","options":{"channel":"room1"},"payload":{"history":false,"presence":true}}"#;
        match decode_client_frame(text).request.unwrap() {
            ClientRequest::Join(j) => {
                assert!(j.presence);
                assert!(!j.history);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn each_malformed_frame_has_its_code() {
        assert_eq!(code_of("not json"), ErrorCode::BadJson);
        assert_eq!(code_of("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code_of(r#"{"action":5}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code_of(r#"{"options":{"channel":"a"}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"action":"join","options":"room1"}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"action":"dance","options":{"channel":"a"}}"#),
            ErrorCode::UnknownAction
        );
        assert_eq!(
            code_of(r#"{"action":"join","options":{}}"#),
            ErrorCode::MissingChannel
        );
        assert_eq!(
            code_of(r#"{"action":"join","options":{"channel":7}}"#),
            ErrorCode::InvalidChannel
        );
        assert_eq!(
            code_of(r#"{"action":"join","options":{"channel":"a b"}}"#),
            ErrorCode::InvalidChannel
        );
        assert_eq!(
            code_of(r#"{"action":"join","options":{"channel":"a"},"payload":{"presence":"yes"}}"#),
            ErrorCode::InvalidFrame
        );
    }

    #[test]
    fn ref_is_kept_even_when_the_request_is_refused() {
        let decoded =
            decode_client_frame(r#"{"action":"dance","options":{"channel":"a","ref":"r1"}}"#);
        assert_eq!(decoded.reference.map(RawValue::get), Some(r#""r1""#));
        assert_eq!(decoded.request.unwrap_err().0, ErrorCode::UnknownAction);
    }

    #[test]
    fn resume_position_ids_and_paging_are_read() {
        let join = r#"{"action":"join","options":{"channel":"c","since":{"epoch":"e1","seq":41}}}"#;
        match decode_client_frame(join).request.unwrap() {
            ClientRequest::Join(j) => assert_eq!(
                j.since,
                Some(Since {
                    epoch: "e1",
                    seq: 41
                })
            ),
            other => panic!("decoded as {other:?}"),
        }
        let message = r#"{"action":"message","options":{"channel":"c","id":"m-1"},"payload":1}"#;
        match decode_client_frame(message).request.unwrap() {
            ClientRequest::Message(m) => assert_eq!(m.id, Some("m-1")),
            other => panic!("decoded as {other:?}"),
        }
        let page = r#"{"action":"history","options":{"channel":"c","before":10,"limit":5}}"#;
        match decode_client_frame(page).request.unwrap() {
            ClientRequest::History(h) => assert_eq!((h.before, h.limit), (Some(10), Some(5))),
            other => panic!("decoded as {other:?}"),
        }
        assert_eq!(
            code_of(r#"{"action":"history","options":{"channel":"c","limit":1000}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"action":"message","options":{"channel":"c","id":"has space"}}"#),
            ErrorCode::InvalidFrame
        );
    }

    #[test]
    fn payloads_nested_too_deep_are_refused_without_recursion() {
        let nested = |n: usize| {
            format!(
                r#"{{"action":"message","options":{{"channel":"c"}},"payload":{}"x"{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(decode_client_frame(&nested(MAX_PAYLOAD_DEPTH))
            .request
            .is_ok());
        assert_eq!(
            code_of(&nested(MAX_PAYLOAD_DEPTH + 1)),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code_of(&nested(1_000_000)), ErrorCode::InvalidFrame);
        // Brackets inside strings are text, not nesting.
        let text = format!(
            r#"{{"action":"message","options":{{"channel":"c"}},"payload":"{}"}}"#,
            "[{".repeat(1000)
        );
        assert!(decode_client_frame(&text).request.is_ok());
    }

    #[test]
    fn the_ref_is_kept_when_another_option_has_the_wrong_type() {
        let decoded = decode_client_frame(
            r#"{"action":"history","options":{"channel":"a","limit":"9","ref":"r2"}}"#,
        );
        assert_eq!(decoded.reference.map(RawValue::get), Some(r#""r2""#));
        assert_eq!(decoded.request.unwrap_err().0, ErrorCode::InvalidFrame);
    }

    #[test]
    fn edits_retractions_and_reactions_name_one_earlier_message() {
        let relation = |options: &str| {
            let text = format!(
                r#"{{"action":"message","options":{{"channel":"c",{options}}},"payload":1}}"#
            );
            match decode_client_frame(&text).request {
                Ok(ClientRequest::Message(m)) => {
                    Ok(m.relation.map(|r| (r.option(), r.target().to_string())))
                }
                Ok(other) => panic!("decoded as {other:?}"),
                Err((code, _)) => Err(code),
            }
        };
        let named = |option: &'static str| Ok(Some((option, "m1".to_string())));
        assert_eq!(relation(r#""replaces":"m1""#), named("replaces"));
        assert_eq!(relation(r#""retracts":"m1""#), named("retracts"));
        assert_eq!(relation(r#""reactsTo":"m1""#), named("reactsTo"));
        for bad in [
            r#""replaces":"m1","retracts":"m2""#,
            r#""replaces":"m1","volatile":true"#,
            r#""reactsTo":"m1","authenticated":true"#,
            r#""retracts":"not an id""#,
            r#""replaces":7"#,
        ] {
            assert_eq!(relation(bad), Err(ErrorCode::InvalidFrame), "{bad}");
        }
    }

    #[test]
    fn object_ref_is_invalid_frame() {
        assert_eq!(
            code_of(r#"{"action":"leave","options":{"channel":"a","ref":{"x":1}}}"#),
            ErrorCode::InvalidFrame
        );
    }
}
