//! Frames as they travel: the action names, the envelope, and the payloads of the frames the
//! server sends. Clients (the native client, the browser app) decode server frames into
//! [`Frame`]; the server encodes its frames once per publish (see the hub crate).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ErrorCode;

/// Every action name in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Client → server: subscribe to a channel.
    Join,
    /// Client → server: unsubscribe from a channel.
    Leave,
    /// Both ways: a message sent to a channel, and its delivery.
    Message,
    /// Both ways: ask for a channel's recent messages, and the answer.
    History,
    /// Server → client: the whole presence list of a channel, sent to a joiner.
    PresenceFull,
    /// Server → client: one member joined or left.
    PresenceUpdate,
    /// Server → client: a message published by the server side (HTTP API).
    Event,
    /// Server → client: a request without `options.ref` was refused.
    Error,
    /// Server → client (extension): the outcome of a request that carried `options.ref`.
    Reply,
    /// Server → client (extension): messages a resuming client missed are no longer stored.
    Gap,
}

impl Action {
    /// The wire name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Leave => "leave",
            Action::Message => "message",
            Action::History => "history",
            Action::PresenceFull => "presence_full",
            Action::PresenceUpdate => "presence_update",
            Action::Event => "event",
            Action::Error => "error",
            Action::Reply => "reply",
            Action::Gap => "gap",
        }
    }
}

/// A decoded frame, as a client sees frames from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// What the frame is.
    pub action: Action,
    /// Routing details: channel, and the extensions (`ref`, ...).
    #[serde(default)]
    pub options: Map<String, Value>,
    /// The body; for `message` exactly what the sender put in.
    #[serde(default)]
    pub payload: Value,
    /// The socket that caused the frame, on relayed frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

impl Frame {
    /// The frame's `options.channel`, if any.
    pub fn channel(&self) -> Option<&str> {
        self.options.get("channel").and_then(Value::as_str)
    }

    /// The frame's `options.seq` (stored messages), if any.
    pub fn seq(&self) -> Option<u64> {
        self.options.get("seq").and_then(Value::as_u64)
    }

    /// The frame's `options.epoch` (stored messages), if any.
    pub fn epoch(&self) -> Option<&str> {
        self.options.get("epoch").and_then(Value::as_str)
    }

    /// The frame's `options.ref`, if any.
    pub fn reference(&self) -> Option<&Value> {
        self.options.get("ref")
    }

    /// The error code of an `error` frame or of a failed `reply`.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self.action {
            Action::Error | Action::Reply => self
                .payload
                .get("code")
                .and_then(|code| serde_json::from_value(code.clone()).ok()),
            _ => None,
        }
    }
}

/// The public face of a socket, attached to the frames it causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The socket's id (a uuid), unique per connection.
    #[serde(rename = "socketId")]
    pub socket_id: String,
    /// Public identity: name, colour, user id (from a token or from the join).
    #[serde(default)]
    pub extras: Map<String, Value>,
    /// What the socket is allowed: `{"authenticated": bool}`.
    #[serde(default)]
    pub permissions: Map<String, Value>,
}

impl ClientInfo {
    /// Whether the server vouches that the socket is signed in (it checked a token).
    pub fn authenticated(&self) -> bool {
        self.permissions
            .get("authenticated")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Payload of an `error` frame and of a failed `reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// Stable error code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Outcome in a `reply` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    /// The request was carried out.
    Ok,
    /// The request was refused; `code` and `message` say why.
    Error,
}

/// Payload of a `reply` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyPayload {
    /// ok or error.
    pub status: ReplyStatus,
    /// Set when status is error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Set when status is error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Payload of `presence_full`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresencePayload {
    /// Every member of the channel that joined with presence on.
    pub presence: Vec<ClientInfo>,
}

/// Payload of `presence_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceUpdatePayload {
    /// `join` or `leave`.
    pub action: Action,
    /// The member who joined or left.
    pub presence: ClientInfo,
}

/// Payload of a `history` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPayload {
    /// Stored messages, oldest first, each shaped like a delivered `message` frame.
    pub history: Vec<Frame>,
}
