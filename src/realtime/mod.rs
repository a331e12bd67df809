//! The browser's channel client: what components use to talk to a channel.
//!
//! [`use_channel`] opens the channel for as long as the calling component (a page, or the app)
//! lives: it connects, joins, hands every event to the page's listener, keeps presence, and
//! reconnects on its own (exponential backoff with jitter), rejoining and flushing the sends
//! queued while offline, in order. Each send reports its outcome (ok, or the server's error).
//! In the browser it runs on `web_sys::WebSocket`; during server rendering it is inert.

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(not(feature = "hydrate"))]
mod inert;

#[cfg(feature = "hydrate")]
use browser as imp;
#[cfg(not(feature = "hydrate"))]
use inert as imp;

use leptos::prelude::*;
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
    sender: StoredValue<Rc<imp::Sender>, LocalStorage>,
}

impl Channel {
    /// Sends `payload` to everyone in the channel (queued while offline); `on_outcome` gets
    /// the server's answer.
    pub fn send(&self, payload: Value, on_outcome: impl FnOnce(SendOutcome) + 'static) {
        self.sender
            .with_value(|sender| sender.send(None, payload, Box::new(on_outcome)));
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
        self.sender.with_value(|sender| {
            sender.send(Some(channel.to_string()), payload, Box::new(on_outcome))
        });
    }
}

/// Signals the connection writes to (during server rendering nothing does).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub(crate) struct Signals {
    pub status: WriteSignal<ConnectionStatus>,
    pub presence: WriteSignal<Vec<ClientInfo>>,
    pub last_error: WriteSignal<Option<ErrorPayload>>,
    pub queued: WriteSignal<usize>,
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
    let signals = Signals {
        status: set_status,
        presence: set_presence,
        last_error: set_last_error,
        queued: set_queued,
    };
    let sender = imp::Sender::open(channel, options, signals, Rc::new(listener));
    Channel {
        status,
        presence,
        last_error,
        queued,
        sender: StoredValue::new_local(sender),
    }
}
