//! Wire types of the Switchboard realtime protocol.
//!
//! One JSON object per WebSocket text frame, in both directions:
//! `{"action": ..., "options": {"channel": ..., ...}, "payload": ..., "client": {...}}`.
//! The shape is the one Xano's realtime service speaks, so its JS SDK can talk to us; our
//! extensions are optional fields the SDK ignores. This crate only uses serde, so the browser
//! (wasm32) and the server share one definition of every frame and error code.

mod channel;
mod colour;
mod decode;
mod error;
mod frame;

pub use channel::{validate_channel_name, MAX_CHANNEL_NAME_LEN};
pub use colour::{is_valid_colour, COLOUR_NAMES};
pub use decode::{
    decode_client_frame, ClientRequest, Decoded, HistoryRequest, JoinRequest, MessageRequest,
    Relation, Since, Target, MAX_HISTORY_LIMIT, MAX_MESSAGE_ID_LEN, MAX_PAYLOAD_DEPTH,
};
pub use error::{CloseCode, ErrorCode};
pub use frame::{
    Action, ClientInfo, ErrorPayload, Frame, HistoryPayload, PresencePayload,
    PresenceUpdatePayload, ReplyPayload, ReplyStatus,
};
