//! The hub: the registry of channels and sockets, shared by every connection.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_protocol::{validate_channel_name, Action, CloseCode, ErrorCode};
use uuid::Uuid;

use crate::channel::Channel;
use crate::cluster::{Cluster, ClusterConfig};
use crate::encode::{self, Position};
use crate::history::{NewEntry, StoreError};
use crate::outbox::{outbox, Closer};
use crate::persister::{now_ms, Pending, Persister};
use crate::{HistoryStore, HubConfig, OutboxReceiver, RedisHistory, Session};

/// The realtime engine, cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) history: Arc<dyn HistoryStore>,
    pub(crate) persister: Persister,
    /// Set when this node is one of several sharing Redis.
    pub(crate) cluster: Option<Arc<Cluster>>,
    channels: Mutex<HashMap<Arc<str>, Arc<Channel>>>,
    sockets: Mutex<HashMap<Uuid, Arc<Closer>>>,
    closed: AtomicBool,
    pub(crate) stats: Counters,
}

/// Running totals since start, for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) volatile_queued: AtomicU64,
    pub(crate) volatile_coalesced: AtomicU64,
    pub(crate) volatile_dropped: AtomicU64,
}

/// A snapshot of the hub's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Sockets connected now.
    pub sockets: usize,
    /// Channels active now.
    pub channels: usize,
    /// Volatile frames queued for a socket.
    pub volatile_queued: u64,
    /// Volatile frames that replaced an unsent older one (saved writes).
    pub volatile_coalesced: u64,
    /// Volatile frames dropped because a socket had too many streams waiting.
    pub volatile_dropped: u64,
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
    /// Storage refused or failed (the code says which).
    Unavailable(ErrorCode, String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidChannel(why) => write!(f, "invalid channel: {why}"),
            PublishError::PayloadTooLarge { size, max } => {
                write!(f, "payload is {size} bytes; at most {max} are allowed")
            }
            PublishError::Unavailable(code, why) => write!(f, "{code}: {why}"),
        }
    }
}

impl std::error::Error for PublishError {}

impl Hub {
    /// A hub with these limits and this history store; starts the persister thread.
    pub fn new(config: HubConfig, history: Arc<dyn HistoryStore>) -> Self {
        let inner = Arc::new_cyclic(|hub| Inner::new(hub, config, history, None));
        Self { inner }
    }

    /// A hub that is one node of a cluster: history, seq, fan-out and presence live in the
    /// Redis at `cluster.redis_url`, shared with every node using the same prefix.
    pub fn clustered(config: HubConfig, cluster: &ClusterConfig) -> Result<Self, StoreError> {
        let store = Arc::new(RedisHistory::connect(&cluster.redis_url, &cluster.prefix)?);
        let mut failure = None;
        let inner = Arc::new_cyclic(|hub| {
            let joined = match Cluster::start(cluster, store.clone(), hub.clone()) {
                Ok(joined) => Some(joined),
                Err(err) => {
                    failure = Some(err);
                    None
                }
            };
            Inner::new(hub, config, store, joined)
        });
        match failure {
            Some(err) => Err(err),
            None => Ok(Self { inner }),
        }
    }

    /// The id of this node in its cluster (none when it runs alone).
    pub fn node_id(&self) -> Option<&str> {
        self.inner.cluster.as_deref().map(Cluster::node)
    }

    /// On a cluster, whether this node reaches its Redis (one `PING`; blocks up to a few
    /// seconds when Redis does not answer). Always fine for a node alone.
    pub fn check_cluster(&self) -> Result<(), StoreError> {
        match &self.inner.cluster {
            Some(cluster) => cluster
                .store
                .with_conn(|conn| redis::cmd("PING").query::<String>(conn))
                .map(drop),
            None => Ok(()),
        }
    }

    /// Leaves the cluster after a clean shutdown: this node's remaining members are removed
    /// from presence at once rather than when its heartbeat expires.
    pub fn depart(&self) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.depart();
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

    /// Current counts and running totals.
    pub fn stats(&self) -> HubStats {
        let stats = &self.inner.stats;
        HubStats {
            sockets: self.socket_count(),
            channels: self.channel_count(),
            volatile_queued: stats.volatile_queued.load(Ordering::Relaxed),
            volatile_coalesced: stats.volatile_coalesced.load(Ordering::Relaxed),
            volatile_dropped: stats.volatile_dropped.load(Ordering::Relaxed),
        }
    }

    /// Publishes a server-side message: an `event` frame to every member of `channel`, stored
    /// like any message and delivered once stored. Needs no member and no socket.
    pub fn publish_event(&self, channel: &str, payload: &RawValue) -> Result<(), PublishError> {
        validate_channel_name(channel).map_err(|(_, why)| PublishError::InvalidChannel(why))?;
        let config = &self.inner.config;
        if payload.get().len() > config.max_payload_bytes {
            return Err(PublishError::PayloadTooLarge {
                size: payload.get().len(),
                max: config.max_payload_bytes,
            });
        }
        let unavailable = |(code, why): (ErrorCode, String)| PublishError::Unavailable(code, why);
        let store_failed =
            |err: StoreError| PublishError::Unavailable(ErrorCode::Internal, err.to_string());
        let id = Uuid::new_v4().simple().to_string();
        if self.inner.cluster.is_some() {
            // Redis hands out the seq; the frame goes with seq 0 and is split there. A channel
            // nobody here is in is only read for its epoch, not subscribed to: the nodes with
            // members get the event through Redis.
            let handle = match self.inner.active_channel(channel) {
                Some(active) => active,
                None => {
                    let history = self.inner.history.open_channel(channel, 0);
                    let rule = self.inner.config.rules.for_channel(channel).clone();
                    Arc::new(Channel::new(
                        Arc::from(channel),
                        rule,
                        history.map_err(store_failed)?,
                        0,
                    ))
                }
            };
            let epoch = handle.lock().epoch.clone();
            let at = Position {
                seq: 0,
                id: &id,
                epoch: &epoch,
            };
            let pending = Pending {
                channel: handle.clone(),
                entry: NewEntry {
                    channel: channel.to_string(),
                    seq: 0,
                    id: id.clone(),
                    at_ms: now_ms(),
                    frame: encode::stored_event(channel, &at, payload),
                },
                sender: None,
                reference: None,
                seq_at: Some(encode::seq_offset(Action::Event, channel)),
            };
            return self.inner.persister.submit(pending).map_err(unavailable);
        }
        let handle = self.channel(channel).map_err(store_failed)?;
        let mut locked = handle.lock();
        let seq = locked.next_seq;
        let epoch = locked.epoch.clone();
        let frame = encode::stored_event(
            channel,
            &Position {
                seq,
                id: &id,
                epoch: &epoch,
            },
            payload,
        );
        let pending = Pending {
            channel: handle.clone(),
            entry: NewEntry {
                channel: channel.to_string(),
                seq,
                id: id.clone(),
                at_ms: now_ms(),
                frame,
            },
            sender: None,
            reference: None,
            seq_at: None,
        };
        // The seq is taken only once the persister accepted the message, so a refusal
        // leaves no hole.
        let submitted = self.inner.persister.submit(pending);
        if submitted.is_ok() {
            locked.assign_seq(id);
        }
        drop(locked);
        self.inner.prune_if_idle(&handle);
        submitted.map_err(unavailable)
    }

    /// The latest `limit` stored frames of `channel` (message and event frames), oldest first.
    pub fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        let frames = self.inner.history.latest(channel, None, limit)?;
        Ok(frames.into_iter().map(|f| f.frame).collect())
    }

    pub(crate) fn forget_socket(&self, id: &Uuid) {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The channel's state, activated from the store if no one is in it yet.
    pub(crate) fn channel(&self, name: &str) -> Result<Arc<Channel>, StoreError> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(name) {
            return Ok(channel.clone());
        }
        if let Some(cluster) = &self.inner.cluster {
            // Subscribed before the seq is read, so no message falls between the two.
            cluster.subscribe(name)?;
        }
        let recent_ids = self.inner.config.history_keep.min(10_000) as usize;
        let history = self.inner.history.open_channel(name, recent_ids)?;
        let name: Arc<str> = Arc::from(name);
        let rule = self.inner.config.rules.for_channel(&name).clone();
        let channel = Arc::new(Channel::new(name.clone(), rule, history, recent_ids));
        if let Some(cluster) = &self.inner.cluster {
            cluster.track(&channel);
        }
        channels.insert(name, channel.clone());
        Ok(channel)
    }

    pub(crate) fn prune_if_idle(&self, channel: &Arc<Channel>) {
        self.inner.prune_if_idle(channel);
    }
}

impl Inner {
    fn new(
        hub: &std::sync::Weak<Inner>,
        config: HubConfig,
        history: Arc<dyn HistoryStore>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let persister = Persister::start(
            hub.clone(),
            history.clone(),
            config.store_queue,
            {
                let config = config.clone();
                Box::new(move |channel: &str| config.retention(channel))
            },
            config.history_trim_interval,
            cluster.clone(),
        );
        Inner {
            config,
            history,
            persister,
            cluster,
            channels: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stats: Counters::default(),
        }
    }

    /// The channel if it is active on this node (never activates it).
    pub(crate) fn active_channel(&self, name: &str) -> Option<Arc<Channel>> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(name).cloned()
    }

    /// Every channel active on this node.
    pub(crate) fn active_channels(&self) -> Vec<Arc<Channel>> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.values().cloned().collect()
    }

    /// Adds the (queued, coalesced, dropped) counts of a volatile delivery.
    pub(crate) fn count_volatile(&self, [queued, coalesced, dropped]: [u64; 3]) {
        let stats = &self.stats;
        stats.volatile_queued.fetch_add(queued, Ordering::Relaxed);
        stats
            .volatile_coalesced
            .fetch_add(coalesced, Ordering::Relaxed);
        stats.volatile_dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Drops the channel from the registry when it has no members and nothing pending; it is
    /// re-activated from the store on next use. Taking the registry lock first keeps this
    /// exclusive with [`Hub::channel`].
    pub(crate) fn prune_if_idle(&self, channel: &Arc<Channel>) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let idle = channel.lock().is_idle();
        let current = channels
            .get(&channel.name)
            .is_some_and(|c| Arc::ptr_eq(c, channel));
        if current && idle {
            channels.remove(&channel.name);
            if let Some(cluster) = &self.cluster {
                cluster.unsubscribe(&channel.name);
            }
        }
    }
}
