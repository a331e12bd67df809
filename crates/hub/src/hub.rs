//! The hub: the registry of channels and sockets, shared by every connection.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_protocol::{validate_channel_name, CloseCode, Target};
use uuid::Uuid;

use crate::channel::Channel;
use crate::encode;
use crate::outbox::{outbox, Closer};
use crate::{HistoryStore, HubConfig, OutboxReceiver, Session};

/// The realtime engine, cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) history: Arc<dyn HistoryStore>,
    channels: Mutex<HashMap<Arc<str>, Arc<Channel>>>,
    sockets: Mutex<HashMap<Uuid, Arc<Closer>>>,
    closed: AtomicBool,
}

/// Who a socket is, as decided by the transport when it connected.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The socket presented a valid token.
    pub authenticated: bool,
    /// Public identity from the token (user id, name, colour); empty for anonymous sockets.
    pub extras: Map<String, Value>,
}

/// The hub is shutting down and accepts no new sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubClosed;

impl fmt::Display for HubClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the hub is shutting down")
    }
}

impl std::error::Error for HubClosed {}

/// Why a server-side publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The channel name breaks the name rules.
    InvalidChannel(&'static str),
    /// The payload is over the configured limit.
    PayloadTooLarge {
        /// Bytes of JSON in the payload.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidChannel(why) => write!(f, "invalid channel: {why}"),
            PublishError::PayloadTooLarge { size, max } => {
                write!(f, "payload is {size} bytes; at most {max} are allowed")
            }
        }
    }
}

impl std::error::Error for PublishError {}

impl Hub {
    /// A hub with these limits and this history store.
    pub fn new(config: HubConfig, history: Arc<dyn HistoryStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                history,
                channels: Mutex::new(HashMap::new()),
                sockets: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Registers a new socket: its session (fed with the socket's frames) and the receiver its
    /// writer drains.
    pub fn connect(&self, identity: Identity) -> Result<(Session, OutboxReceiver), HubClosed> {
        let mut sockets = self.inner.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(HubClosed);
        }
        let id = Uuid::new_v4();
        let (outbox, receiver) = outbox(self.inner.config.outbox_capacity);
        sockets.insert(id, outbox.closer());
        Ok((Session::new(self.clone(), id, identity, outbox), receiver))
    }

    /// Refuses new sockets and tells every connected one to close with 1012.
    pub fn shutdown(&self) {
        let sockets = self.inner.sockets.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.closed.store(true, Ordering::Release);
        for closer in sockets.values() {
            closer.close(CloseCode::ServiceRestart);
        }
    }

    /// Sockets connected now.
    pub fn socket_count(&self) -> usize {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Channels with at least one member now.
    pub fn channel_count(&self) -> usize {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Publishes a server-side message: an `event` frame to every member of `channel`, kept in
    /// history like any message. Needs no member and no socket; `payload` must be valid JSON.
    pub fn publish_event(&self, channel: &str, payload: &RawValue) -> Result<(), PublishError> {
        validate_channel_name(channel).map_err(|(_, why)| PublishError::InvalidChannel(why))?;
        let config = &self.inner.config;
        if payload.get().len() > config.max_payload_bytes {
            return Err(PublishError::PayloadTooLarge {
                size: payload.get().len(),
                max: config.max_payload_bytes,
            });
        }
        let frame = encode::server_event(channel, payload);
        let channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.inner
            .history
            .append(channel, frame.clone(), config.history_per_channel);
        if let Some(channel) = channels.get(channel) {
            channel.lock().deliver(Target::Everyone, &frame);
        }
        Ok(())
    }

    /// The latest `limit` stored frames of `channel` (message and event frames), oldest first.
    pub fn recent(&self, channel: &str, limit: usize) -> Vec<Bytes> {
        self.inner.history.recent(channel, limit)
    }

    pub(crate) fn forget_socket(&self, id: &Uuid) {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Runs `f` on the channel, created if needed, while no one can remove it.
    pub(crate) fn with_channel<R>(&self, name: &str, f: impl FnOnce(&Arc<Channel>) -> R) -> R {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let channel = match channels.get(name) {
            Some(channel) => channel.clone(),
            None => {
                let name: Arc<str> = Arc::from(name);
                let channel = Arc::new(Channel::new(name.clone()));
                channels.insert(name, channel.clone());
                channel
            }
        };
        f(&channel)
    }

    /// Runs `f` on an existing channel and drops the channel from the registry when `f` left it
    /// without members.
    pub(crate) fn with_channel_then_prune(
        &self,
        channel: &Arc<Channel>,
        f: impl FnOnce(&Arc<Channel>) -> bool,
    ) {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if f(channel) {
            channels.remove(&channel.name);
        }
    }
}
