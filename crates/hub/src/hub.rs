//! The hub: the engine every connection and every server-side caller shares. It holds this
//! node's sockets and active channels, the limits, and the [`Broker`] that orders, stores and
//! spreads messages; it never asks which broker that is.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use switchboard_protocol::{validate_channel_name, CloseCode, ErrorCode};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::access::{authorize, Access, Caller, Refusal};
use crate::broker::{Accepted, Answer, Broker, LiveChannel, LocalBroker, MemberView};
use crate::broker::{RedisBroker, RedisConfig};
use crate::broker::{StoredMessage, Unhealthy};
use crate::channel::Channel;
use crate::config::HubConfig;
use crate::encode::{self, Stamp, StoredTemplate};
use crate::history::ChannelStats;
use crate::history::{HistoryStore, StoreError, StoredFrame};
use crate::hooks::{message_template, EventType, GateDecision, JoinAsk, PublishAsk};
use crate::metrics::EngineMetrics;
use crate::outbox::OutboxReceiver;
use crate::outbox::{outbox, Budget, MAX_HISTORY_FRAME_BYTES};
use crate::rate::TokenBucket;
use crate::registry::Order;
use crate::registry::{OrderQueue, Orders, Registry, SocketEntry};
use crate::rules::ChannelRule;
use crate::session::Session;
use crate::time::now_ms;

/// The realtime engine, cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    broker: Box<dyn Broker>,
    registry: Arc<Registry>,
    /// A channel's `messages_per_second` for people sending without a socket (pages), per
    /// channel and person: what a socket gets for each channel it joined.
    page_rates: Mutex<HashMap<(String, String), TokenBucket>>,
}

/// Most (channel, person) rate buckets kept for page sends. Past it, the buckets that have
/// refilled (as good as new) are dropped; if every one is still in use, all are, so memory stays
/// bounded and the per-address limit of the pages still holds.
const MAX_PAGE_RATES: usize = 65_536;

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

/// Who a socket (or a page's caller) is, as decided by the server from its token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The caller presented a valid token.
    pub authenticated: bool,
    /// Public identity: from the token (user id, name, colour) when signed in; for an
    /// anonymous caller of a server function, the name and colour it chose.
    pub extras: Map<String, Value>,
}

impl Identity {
    /// This identity as a caller of [`authorize`].
    pub fn caller(&self) -> Caller {
        Caller::Person {
            authenticated: self.authenticated,
        }
    }
}

/// Who publishes or reads through the hub without a socket.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The back end (an API key, an admin key): publishes an `event` frame, allowed in every
    /// channel.
    Server,
    /// A person through a page (a server function), calling from an address when it is
    /// known: publishes a `message` frame with their identity, and is held to the channel's
    /// rules and the back end's join and publish gates like a socket.
    Person(&'a Identity, Option<IpAddr>),
}

impl Actor<'_> {
    fn caller(self) -> Caller {
        match self {
            Actor::Server => Caller::Server,
            Actor::Person(identity, _) => identity.caller(),
        }
    }
}

/// The socket id a person calling through a page goes by: the same for the same person (its
/// user or guest id) from the same address, so the back end's cached answers (`cache_seconds`)
/// serve its next call instead of piling up under ids nobody uses again; a fresh one when the
/// address is not known.
fn page_socket_id(identity: &Identity, address: Option<IpAddr>) -> Uuid {
    use std::hash::{Hash, Hasher};
    let Some(address) = address else {
        return Uuid::new_v4();
    };
    let person = identity.extras.get("id").and_then(Value::as_str);
    let mut bytes = [0u8; 16];
    for (half, salt) in bytes.chunks_mut(8).zip([0u8, 1]) {
        let mut hasher = std::hash::DefaultHasher::new();
        (salt, address, identity.authenticated, person).hash(&mut hasher);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
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

impl Hub {
    /// A node that runs alone, keeping history in `store`; starts its persister thread.
    pub fn new(config: HubConfig, store: Arc<dyn HistoryStore>) -> Result<Self, StoreError> {
        let registry = Arc::new(Registry::default());
        let broker = LocalBroker::start(store, registry.clone(), &config)?;
        Ok(Self::with(config, Box::new(broker), registry))
    }

    /// A node of a cluster: ordering, history, fan-out and presence go through the Redis of
    /// `cluster`, shared with every node using the same prefix.
    pub fn clustered(config: HubConfig, cluster: &RedisConfig) -> Result<Self, StoreError> {
        let registry = Arc::new(Registry::default());
        let broker = RedisBroker::start(cluster, &config, registry.clone())?;
        Ok(Self::with(config, Box::new(broker), registry))
    }

    fn with(config: HubConfig, broker: Box<dyn Broker>, registry: Arc<Registry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                broker,
                registry,
                page_rates: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The id of this node in its cluster (none when it runs alone).
    pub fn node_id(&self) -> Option<&str> {
        self.inner.broker.node()
    }

    /// Whether this node can store and deliver now.
    pub async fn health(&self) -> Result<(), Unhealthy> {
        self.inner.broker.health().await
    }

    /// Leaves the cluster after a clean shutdown: this node's remaining members are removed
    /// from presence at once rather than when its heartbeat expires.
    pub fn depart(&self) {
        self.inner.broker.depart();
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The rule that applies to `channel`.
    pub fn rule(&self, channel: &str) -> &ChannelRule {
        self.inner.config.rules.for_channel(channel)
    }

    /// Where webhook events wait for their endpoints (the history store).
    pub fn outbox(&self) -> Arc<dyn HistoryStore> {
        self.inner.broker.reader().store().clone()
    }

    /// Told when this node recorded webhook events.
    pub fn hooks_recorded(&self) -> Arc<tokio::sync::Notify> {
        self.inner.broker.hooks_recorded()
    }

    /// The webhook endpoints that want a stored message of `channel`, and its event's body
    /// when the broker needs it made up front ([`Broker::wants_hook_bodies`]).
    pub(crate) fn message_hooks(
        &self,
        channel: &str,
        id: &str,
        at_ms: u64,
        client: Option<&str>,
        payload: &RawValue,
    ) -> (Vec<Arc<str>>, Option<StoredTemplate>) {
        let hooks = self
            .config()
            .hooks
            .wanting(EventType::MessageStored, channel);
        let body = (!hooks.is_empty() && self.broker().wants_hook_bodies())
            .then(|| message_template(channel, id, at_ms, client, payload));
        (hooks, body)
    }

    pub(crate) fn broker(&self) -> &dyn Broker {
        self.inner.broker.as_ref()
    }

    /// Registers a new socket: its session (fed with the socket's frames) and the receiver its
    /// writer drains.
    pub fn connect(&self, identity: Identity) -> Result<(Session, OutboxReceiver), HubClosed> {
        let id = Uuid::new_v4();
        let config = &self.inner.config;
        let budget = Budget {
            frames: config.outbox_capacity,
            bytes: config.outbox_bytes,
        };
        let (outbox, receiver) = outbox(
            budget,
            self.inner.broker.reader().clone(),
            self.inner.registry.metrics.outbox_bytes.clone(),
        );
        let orders = Arc::new(OrderQueue::default());
        let entry = SocketEntry {
            outbox: outbox.clone(),
            orders: orders.clone(),
        };
        if !self.inner.registry.add_socket(id, entry) {
            return Err(HubClosed);
        }
        let session = Session::new(self.clone(), id, identity, outbox, Orders(orders));
        Ok((session, receiver))
    }

    /// Refuses new sockets and tells every connected one to close with 1012.
    pub fn shutdown(&self) {
        self.inner.registry.close_all(CloseCode::ServiceRestart);
    }

    /// Sockets connected now.
    pub fn socket_count(&self) -> usize {
        self.inner.registry.socket_count()
    }

    /// Channels with at least one member here now.
    pub fn channel_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// Current counts and running totals.
    pub fn stats(&self) -> HubStats {
        let metrics = &self.inner.registry.metrics;
        HubStats {
            sockets: self.socket_count(),
            channels: self.channel_count(),
            volatile_queued: metrics.volatile_queued.get(),
            volatile_coalesced: metrics.volatile_coalesced.get(),
            volatile_dropped: metrics.volatile_dropped.get(),
        }
    }

    /// What the engine counts and times, for `/metrics`.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.registry.metrics
    }

    /// A person's client object as members see it (a caller over HTTP has no socket: it gets
    /// an id of its own), after the back end's join gate, which may refuse the person or set
    /// their public extras, as it does for a socket's join.
    async fn admit_person(
        &self,
        identity: &Identity,
        address: Option<IpAddr>,
        channel: &str,
    ) -> Result<String, Refusal> {
        let extras = Value::Object(identity.extras.clone()).to_string();
        let socket = page_socket_id(identity, address).to_string();
        let client = encode::client(&socket, &extras, identity.authenticated);
        let Some(gates) = &self.inner.config.gates.0 else {
            return Ok(client);
        };
        let ask = JoinAsk {
            channel,
            client: &client,
            presence: false,
        };
        match gates.join(ask).await {
            GateDecision::Refuse(reason) => Err(Refusal::new(ErrorCode::Forbidden, reason)),
            GateDecision::Allow {
                extras: Some(extras),
                ..
            } => {
                let extras = Value::Object(extras).to_string();
                Ok(encode::client(&socket, &extras, identity.authenticated))
            }
            GateDecision::Allow { .. } => Ok(client),
        }
    }

    /// Counts a page's send against the channel's `messages_per_second`, per person: the
    /// signed-in user, or a guest by the id its browser chose and the address it calls from
    /// (a guest's id is no secret: keyed by it alone, anyone could spend someone else's rate).
    fn take_page_send(
        &self,
        channel: &str,
        identity: &Identity,
        address: Option<IpAddr>,
        per_second: u32,
    ) -> Result<(), Refusal> {
        let person = identity
            .extras
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let who = match (identity.authenticated, address) {
            (true, _) => format!("user:{person}"),
            (false, Some(address)) => format!("guest:{address}:{person}"),
            (false, None) => format!("guest:{person}"),
        };
        let mut rates = self
            .inner
            .page_rates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (channel.to_string(), who);
        if !rates.contains_key(&key) && rates.len() >= MAX_PAGE_RATES {
            rates.retain(|_, bucket| !bucket.is_full());
            if rates.len() >= MAX_PAGE_RATES {
                rates.clear();
            }
        }
        let bucket = rates.entry(key).or_insert_with(|| {
            TokenBucket::new(f64::from(per_second), f64::from(per_second.max(1)))
        });
        if bucket.take() {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {per_second} messages per second to channel {channel:?}: slow down"
                ),
            ))
        }
    }

    /// Publishes from the server side, stored like any message, and waits until it is stored
    /// (and delivered to this node's members). The back end ([`Actor::Server`]) may publish
    /// anywhere; a person is held to the channel's rules and to the back end's join and
    /// publish gates.
    pub async fn publish(
        &self,
        publisher: Actor<'_>,
        channel: &str,
        payload: &RawValue,
    ) -> Result<Accepted, Refusal> {
        self.metrics().messages_received.inc();
        let outcome = self.publish_message(publisher, channel, payload).await;
        if let Err(refusal) = &outcome {
            self.metrics().refused(refusal.code);
        }
        outcome
    }

    async fn publish_message(
        &self,
        publisher: Actor<'_>,
        channel: &str,
        payload: &RawValue,
    ) -> Result<Accepted, Refusal> {
        validate_channel_name(channel).map_err(|(code, why)| Refusal::new(code, why))?;
        let config = &self.inner.config;
        let rule = self.rule(channel);
        authorize(rule, publisher.caller(), Access::Send, channel)?;
        let limit = rule
            .max_payload_bytes
            .map_or(config.max_payload_bytes, |max| {
                max.min(config.max_payload_bytes)
            });
        let size = payload.get().len();
        if size > limit {
            return Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("payload is {size} bytes; at most {limit} are allowed in this channel"),
            ));
        }
        if let (Actor::Person(identity, address), Some(per_second)) =
            (publisher, rule.messages_per_second)
        {
            self.take_page_send(channel, identity, address, per_second)?;
        }
        let client = match publisher {
            Actor::Server => None,
            Actor::Person(identity, address) => {
                Some(self.admit_person(identity, address, channel).await?)
            }
        };
        // A person's send passes the back end's publish gate, as a socket's does.
        let mut replaced = None;
        if let (Some(client), Some(gates)) = (&client, &config.gates.0) {
            let ask = PublishAsk {
                channel,
                client,
                payload,
                volatile: false,
                target: switchboard_protocol::Target::Everyone,
            };
            match gates.publish(ask).await {
                GateDecision::Refuse(reason) => {
                    return Err(Refusal::new(ErrorCode::Forbidden, reason))
                }
                GateDecision::Allow { payload, .. } => replaced = payload,
            }
        }
        let payload = replaced.as_deref().unwrap_or(payload);
        // Stamped once the gates have answered, so `at` follows the order of seqs.
        let id = Uuid::now_v7().simple().to_string();
        let at_ms = now_ms();
        let stamp = Stamp {
            id: &id,
            at_ms,
            relation: None,
        };
        let template = match &client {
            None => encode::stored_event(channel, &stamp, payload),
            Some(client) => encode::stored_message(channel, &stamp, payload, client),
        };
        let (hooks, hook_body) =
            self.message_hooks(channel, &id, at_ms, client.as_deref(), payload);
        let (answer, outcome) = oneshot::channel();
        self.inner.broker.publish_stored(StoredMessage {
            channel: Arc::from(channel),
            id,
            id_from_sender: false,
            at_ms,
            template,
            keep: config.retention(channel).count,
            hooks,
            hook_body,
            answer: Answer::Caller(answer),
        })?;
        outcome.await.unwrap_or_else(|_| {
            Err(Refusal::new(
                ErrorCode::Internal,
                "message storage has stopped",
            ))
        })
    }

    /// The latest `limit` stored frames of `channel` before seq `before` (all when none),
    /// oldest first, if `reader` may read them (a person: the channel's rules and the back
    /// end's join gate, as a socket must join first); at most [`MAX_HISTORY_FRAME_BYTES`] in
    /// all.
    pub async fn history(
        &self,
        reader: Actor<'_>,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Bytes>, Refusal> {
        let outcome = self.read_history(reader, channel, before, limit).await;
        if let Err(refusal) = &outcome {
            self.metrics().refused(refusal.code);
        }
        outcome
    }

    async fn read_history(
        &self,
        reader: Actor<'_>,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Bytes>, Refusal> {
        validate_channel_name(channel).map_err(|(code, why)| Refusal::new(code, why))?;
        authorize(
            self.rule(channel),
            reader.caller(),
            Access::ReadHistory,
            channel,
        )?;
        if let Actor::Person(identity, address) = reader {
            self.admit_person(identity, address, channel).await?;
        }
        let limit = limit.min(switchboard_protocol::MAX_HISTORY_LIMIT);
        let frames = self
            .inner
            .broker
            .reader()
            .latest(channel, before, limit)
            .await
            .map_err(|err| {
                Refusal::new(
                    ErrorCode::Internal,
                    format!("could not read the history: {err}"),
                )
            })?;
        let mut total = 0;
        let mut newest: Vec<Bytes> = frames
            .into_iter()
            .rev()
            .map(|StoredFrame { frame, .. }| frame)
            .take_while(|frame| {
                total += frame.len();
                total <= MAX_HISTORY_FRAME_BYTES
            })
            .collect();
        newest.reverse();
        Ok(newest)
    }

    /// Drops a channel's stored history: its next message starts a new epoch, so clients
    /// resuming from the old one get a `gap`.
    pub async fn clear_history(&self, channel: &str) -> Result<(), Refusal> {
        validate_channel_name(channel).map_err(|(code, why)| Refusal::new(code, why))?;
        self.inner
            .broker
            .clear_history(channel)
            .await
            .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))
    }

    /// Every channel with members (on every node), with where its history stands.
    pub async fn live_channels(&self) -> Result<Vec<(LiveChannel, ChannelStats)>, Refusal> {
        let failed = |err: StoreError| Refusal::new(ErrorCode::Internal, err.to_string());
        let live = self.inner.broker.live_channels().await.map_err(failed)?;
        let store = self.outbox();
        tokio::task::spawn_blocking(move || {
            let now = now_ms();
            live.into_iter()
                .map(|channel| {
                    let stats = store.channel_stats(&channel.name, now)?;
                    Ok((channel, stats))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))?
        .map_err(failed)
    }

    /// A channel's members (on every node) and where its history stands.
    pub async fn channel_state(
        &self,
        channel: &str,
    ) -> Result<(Vec<MemberView>, ChannelStats), Refusal> {
        validate_channel_name(channel).map_err(|(code, why)| Refusal::new(code, why))?;
        let failed = |err: StoreError| Refusal::new(ErrorCode::Internal, err.to_string());
        let members = self.inner.broker.members(channel).await.map_err(failed)?;
        let (store, name) = (self.outbox(), channel.to_string());
        let stats = tokio::task::spawn_blocking(move || store.channel_stats(&name, now_ms()))
            .await
            .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))?
            .map_err(failed)?;
        Ok((members, stats))
    }

    /// Carries out an operator's order for a socket, wherever it is; false when no node has
    /// it (or, for a removal, when it is not in that channel here).
    pub async fn order(&self, socket: Uuid, order: Order) -> Result<bool, Refusal> {
        if self.inner.registry.order(&socket, order.clone()) {
            return Ok(true);
        }
        self.inner
            .broker
            .order_elsewhere(socket, order)
            .await
            .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))
    }

    /// The channel, active on this node (activated if it is not).
    pub(crate) async fn activate(&self, name: &str) -> Result<Arc<Channel>, Refusal> {
        let rule = self.rule(name).clone();
        let broker = self.broker();
        self.inner
            .registry
            .activate(name, || async move {
                let history = broker.activate(name).await?;
                Ok::<_, StoreError>(Channel::new(
                    Arc::from(name),
                    rule,
                    history.epoch,
                    history.last_seq,
                ))
            })
            .await
            .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))
    }

    /// Takes the channel out of the registry (and out of the broker's care here) when its
    /// last member left.
    pub(crate) fn prune_if_idle(&self, channel: &Arc<Channel>) {
        let broker = self.broker();
        self.inner
            .registry
            .prune_if_idle(channel, |name| broker.deactivate(name));
    }

    pub(crate) fn count_volatile(&self, counts: [u64; 3]) {
        self.inner.registry.metrics.count_volatile(counts);
    }

    pub(crate) fn forget_socket(&self, id: &Uuid) {
        self.inner.registry.remove_socket(id);
    }
}
