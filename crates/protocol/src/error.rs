//! Error codes carried by `error` frames and error replies, and the WebSocket close codes the
//! server uses. Codes are stable strings: clients match on them, so never rename one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a client frame was refused. Serialized as a snake_case string in `payload.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// The frame is JSON but a field has the wrong type (e.g. `action` is a number).
    InvalidFrame,
    /// `action` names nothing the server knows.
    UnknownAction,
    /// The action needs `options.channel` and it is missing.
    MissingChannel,
    /// `options.channel` breaks the channel name rules.
    InvalidChannel,
    /// The socket sent to (or asked about) a channel it has not joined.
    NotSubscribed,
    /// `options.socketId` names no socket in that channel.
    UnknownSocket,
    /// `options.replaces`, `retracts` or `reactsTo` names no message stored in that channel.
    UnknownMessage,
    /// The payload is larger than the server allows.
    PayloadTooLarge,
    /// The socket already joined the maximum number of channels.
    TooManyChannels,
    /// The socket sends faster than the server allows.
    RateLimited,
    /// The action needs an authenticated socket.
    AuthRequired,
    /// The rules of the channel refuse this action to this socket.
    Forbidden,
    /// The server cannot store messages as fast as they arrive; retry shortly.
    Overloaded,
    /// The server failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The stable wire name of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::MissingChannel => "missing_channel",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::UnknownSocket => "unknown_socket",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server sends, each documented in PROTOCOL.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1008: the client kept sending after being told it is rate limited.
    PolicyViolation,
    /// 1009: a frame larger than the hard frame limit.
    MessageTooBig,
    /// 1012: the server is shutting down or restarting; clients should reconnect.
    ServiceRestart,
    /// 1013: the client did not read fast enough and its outbound queue filled up;
    /// clients should reconnect (and resume).
    TryAgainLater,
    /// 4001: an operator disconnected the socket; clients should not reconnect at once.
    Disconnected,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Disconnected => 4001,
        }
    }

    /// The close code with this number, if the server sends it.
    pub fn from_code(code: u16) -> Option<Self> {
        [
            CloseCode::PolicyViolation,
            CloseCode::MessageTooBig,
            CloseCode::ServiceRestart,
            CloseCode::TryAgainLater,
            CloseCode::Disconnected,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// The short reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::PolicyViolation => "rate limit exceeded repeatedly",
            CloseCode::MessageTooBig => "frame too large",
            CloseCode::ServiceRestart => "server restarting",
            CloseCode::TryAgainLater => "client too slow: outbound queue full",
            CloseCode::Disconnected => "disconnected by an operator",
        }
    }
}
