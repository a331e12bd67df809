//! The browser's channel client: what components use to talk to a channel.
//!
//! [`use_channel`] opens the channel for as long as the calling component (a page, or the app)
//! lives: it connects, joins, hands every event to the page's listener, keeps presence, and
//! reconnects on its own (exponential backoff with jitter), rejoining and flushing the sends
//! queued while offline, in order. Stored messages stay listed as unsent until the server's
//! ok (or with its refusal, until retried or dropped) and are kept in `localStorage`, so a
//! reload sends them again under the same id and the server stores each once. Older history
//! is paged back on request. In the browser it runs on `web_sys::WebSocket`; during server
//! rendering it is inert.

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(not(feature = "hydrate"))]
mod inert;

#[cfg(feature = "hydrate")]
use browser as imp;
#[cfg(not(feature = "hydrate"))]
use inert as imp;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::rc::Rc;
use switchboard_protocol::{ClientInfo, ErrorPayload, Frame};

/// Where the socket stands, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Opening the first connection.
    Connecting,
    /// Connected and joined.
    Connected,
    /// The connection dropped; retrying.
    Reconnecting,
    /// The browser reports no network; retrying once it is back.
    Offline,
}

impl ConnectionStatus {
    /// The word shown in the UI.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionStatus::Connecting => "connecting",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Reconnecting => "reconnecting",
            ConnectionStatus::Offline => "offline",
        }
    }
}

/// How to join the channel.
#[derive(Debug, Clone, Default)]
pub struct ChannelOptions {
    /// Be listed in presence and receive presence events.
    pub presence: bool,
    /// Receive recent messages after each join.
    pub history: bool,
    /// Public identity shown to the others (name, colour, id); a token's claims win over it.
    pub extras: Map<String, Value>,
    /// A token that signs the socket in (sent as the WebSocket subprotocol).
    pub token: Option<String>,
}

/// The outcome of one send: ok, or the server's error (code and message).
pub type SendOutcome = Result<(), ErrorPayload>;

/// Callback that receives a send's outcome.
pub type OnOutcome = Box<dyn FnOnce(SendOutcome)>;

/// The outcome of a request for earlier history: how many messages the answer held (their
/// `history` frame went to the channel's listener just before), or the server's error.
pub type HistoryOutcome = Result<usize, ErrorPayload>;

/// Callback that receives a history request's outcome.
pub type OnHistory = Box<dyn FnOnce(HistoryOutcome)>;

/// An earlier message of the channel that a stored message changes (protocol extensions):
/// sent as `options.replaces`, `options.retracts` or `options.reactsTo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Refers {
    /// The payload replaces the earlier message's (its author only).
    Replaces(String),
    /// The earlier message is withdrawn (its author only).
    Retracts(String),
    /// A reaction to the earlier message.
    ReactsTo(String),
}

impl Refers {
    /// The option's name on the wire.
    pub fn option(&self) -> &'static str {
        match self {
            Refers::Replaces(_) => "replaces",
            Refers::Retracts(_) => "retracts",
            Refers::ReactsTo(_) => "reactsTo",
        }
    }

    /// The id of the earlier message.
    pub fn target(&self) -> &str {
        match self {
            Refers::Replaces(id) | Refers::Retracts(id) | Refers::ReactsTo(id) => id,
        }
    }
}

/// A stored message sent to the channel and not acknowledged yet: on its way (waiting for a
/// connection, or for the server's ok), or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsent {
    /// Its `options.id`, the same on every attempt.
    pub id: String,
    /// What it says.
    pub payload: Value,
    /// The earlier message it changes, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers: Option<Refers>,
    /// The server's refusal; it is not sent again until retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorPayload>,
}

/// The reactive face of an open channel. Cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Channel {
    /// Connection state.
    pub status: ReadSignal<ConnectionStatus>,
    /// Members listed in presence (when joined with presence).
    pub presence: ReadSignal<Vec<ClientInfo>>,
    /// The last error the server reported on this channel.
    pub last_error: ReadSignal<Option<ErrorPayload>>,
    /// Sends waiting for a connection.
    pub queued: ReadSignal<usize>,
    /// Stored messages not acknowledged yet, oldest first (restored after a reload).
    pub unsent: ReadSignal<Vec<Unsent>>,
    /// This page's socket id on the current connection, once the server showed it (its own
    /// first message back carries it): the server knows a guest author by socket.
    pub socket_id: ReadSignal<Option<String>>,
    sender: StoredValue<Rc<imp::Sender>, LocalStorage>,
}

impl Channel {
    /// Sends a stored message to everyone in the channel under `id` (its `options.id`),
    /// changing an earlier one if `refers` says so. It is listed in [`Channel::unsent`] until
    /// the server's ok, waits for a connection while offline, and survives a reload.
    pub fn send(&self, id: String, payload: Value, refers: Option<Refers>) {
        let unsent = Unsent {
            id,
            payload,
            refers,
            refused: None,
        };
        self.sender.with_value(|sender| sender.send_stored(unsent));
    }

    /// Sends a refused message again, under its id.
    pub fn retry(&self, id: &str) {
        self.sender.with_value(|sender| sender.retry(id));
    }

    /// Gives up on an unsent message: it is no longer listed or sent.
    pub fn forget(&self, id: &str) {
        self.sender.with_value(|sender| sender.forget(id));
    }

    /// Asks for up to `limit` stored messages before seq `before` (the latest without it).
    /// They reach the channel's listener as a `history` frame; `on_answer` gets how many came.
    pub fn history(
        &self,
        before: Option<u64>,
        limit: usize,
        on_answer: impl FnOnce(HistoryOutcome) + 'static,
    ) {
        self.sender
            .with_value(|sender| sender.history(before, limit, Box::new(on_answer)));
    }

    /// Sends a volatile update (a cursor position): never stored, not queued while offline,
    /// no outcome; the server may coalesce it with the sender's next one.
    pub fn send_volatile(&self, payload: Value) {
        self.sender
            .with_value(|sender| sender.send_volatile(payload));
    }

    /// Sends on this socket to another channel, joined or not (used to show how the server
    /// answers a send to a channel the page has not joined).
    pub fn send_to(
        &self,
        channel: &str,
        payload: Value,
        on_outcome: impl FnOnce(SendOutcome) + 'static,
    ) {
        self.sender
            .with_value(|sender| sender.send_to(channel, payload, Box::new(on_outcome)));
    }
}

/// Signals the connection writes to (during server rendering nothing does).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub(crate) struct Signals {
    pub status: WriteSignal<ConnectionStatus>,
    pub presence: WriteSignal<Vec<ClientInfo>>,
    pub last_error: WriteSignal<Option<ErrorPayload>>,
    pub queued: WriteSignal<usize>,
    pub unsent: WriteSignal<Vec<Unsent>>,
    pub socket_id: WriteSignal<Option<String>>,
}

/// Opens `channel` for the lifetime of the calling component (it leaves the channel and closes
/// the socket when the component is cleaned up); `listener` sees every frame of the channel
/// (messages, events, history, presence, errors) in arrival order.
pub fn use_channel(
    channel: &str,
    options: ChannelOptions,
    listener: impl Fn(&Frame) + 'static,
) -> Channel {
    let (status, set_status) = signal(ConnectionStatus::Connecting);
    let (presence, set_presence) = signal(Vec::new());
    let (last_error, set_last_error) = signal(None);
    let (queued, set_queued) = signal(0usize);
    let (unsent, set_unsent) = signal(Vec::new());
    let (socket_id, set_socket_id) = signal(None);
    let signals = Signals {
        status: set_status,
        presence: set_presence,
        last_error: set_last_error,
        queued: set_queued,
        unsent: set_unsent,
        socket_id: set_socket_id,
    };
    let sender = imp::Sender::open(channel, options, signals, Rc::new(listener));
    Channel {
        status,
        presence,
        last_error,
        queued,
        unsent,
        socket_id,
        sender: StoredValue::new_local(sender),
    }
}
