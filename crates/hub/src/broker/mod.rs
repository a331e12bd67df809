//! The seam between the engine and how messages are ordered, stored and spread: a [`Broker`].
//!
//! The engine (sessions, channels, outboxes) is the same whether this node runs alone or is
//! one of many; what differs sits behind this trait, and two implementations stand side by
//! side and pass one contract suite:
//! - [`LocalBroker`] — one node: the persister thread hands out each channel's seqs, commits
//!   messages to the history store (SQLite or memory) in batches and only then delivers them
//!   in-process;
//! - [`RedisBroker`] — several nodes on one Redis: a script hands out the seq, stores and
//!   publishes in one step, every node delivers what it receives to its own members, and
//!   presence spans the nodes.
//!
//! A broker never reaches back into the hub: it gets the [`Registry`] of this node's active
//! channels (to deliver into) and its settings as values.

mod deliverer;
mod local;
mod persister;
mod queue;
mod redis;

pub use local::LocalBroker;
pub use redis::{RedisBroker, RedisConfig};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::ErrorCode;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::access::Refusal;
use crate::encode::{self, StoredTemplate};
use crate::history::{ChannelHistory, HistoryReader, StoreError};
use crate::hooks::LeaveReason;
use crate::outbox::Outbox;
use crate::registry::Order;

/// A message to store: ordered (seq), stored and delivered as one step by the broker.
#[derive(Debug)]
pub struct StoredMessage {
    pub(crate) channel: Arc<str>,
    /// The message id: the sender's (a resend with the same id is stored once) or generated.
    pub(crate) id: String,
    /// The id came from the sender, so it may be a resend.
    pub(crate) id_from_sender: bool,
    pub(crate) at_ms: u64,
    pub(crate) template: StoredTemplate,
    /// Messages the channel keeps.
    pub(crate) keep: u64,
    /// The webhook endpoints that want this message, and its event's body (seq and epoch
    /// filled in with the frame's) when the broker wants it ([`Broker::wants_hook_bodies`]).
    pub(crate) hooks: Vec<Arc<str>>,
    pub(crate) hook_body: Option<StoredTemplate>,
    /// Who hears the outcome.
    pub(crate) answer: Answer,
}

impl StoredMessage {
    /// Bytes this message holds while it waits.
    pub(crate) fn size(&self) -> usize {
        let hook = self.hook_body.as_ref().map_or(0, StoredTemplate::len);
        self.template.len() + hook * self.hooks.len() + self.id.len() + self.channel.len()
    }
}

/// A stored message's outcome: accepted with its seq, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The message's seq in its channel (the first copy's, for a resend).
    pub seq: u64,
    /// The id was already stored: this was a resend, not stored or delivered again.
    pub resend: bool,
}

/// Who hears a stored message's outcome.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The sending socket: a `reply` when it gave a ref, an `error` frame when it failed
    /// without one, nothing for a success without one.
    Socket {
        outbox: Outbox,
        reference: Option<Box<RawValue>>,
    },
    /// A server-side caller waiting for the outcome.
    Caller(oneshot::Sender<Result<Accepted, Refusal>>),
    /// No one here: a message another node accepted (and answered), which this node's
    /// subscription received for its own members.
    Elsewhere,
}

impl Answer {
    /// Tells the outcome. A socket's answer is queued for its own task to write: answers are
    /// sent from the deliverer, and from the persister's and the Redis writer's threads, which
    /// must not spend their time on socket writes.
    pub(crate) fn send(self, channel: &str, outcome: Result<Accepted, Refusal>) {
        match self {
            Answer::Caller(tx) => {
                let _ = tx.send(outcome);
            }
            Answer::Elsewhere => {}
            Answer::Socket { outbox, reference } => match (reference, outcome) {
                (Some(reference), Ok(accepted)) => {
                    outbox.push_queued(encode::reply_stored(channel, &reference, accepted.seq));
                }
                (Some(reference), Err(refusal)) => outbox.push_queued(encode::reply(
                    Some(channel),
                    &reference,
                    Err((refusal.code, &refusal.message)),
                )),
                (None, Err(refusal)) => {
                    outbox.push_queued(encode::error(Some(channel), refusal.code, &refusal.message))
                }
                (None, Ok(_)) => {}
            },
        }
    }
}

/// A frame that is not stored, by kind. This node's own members were served already; the
/// broker carries it to the members on other nodes. (Presence changes cross nodes with the
/// presence record they change: see [`Broker::presence_join`] and [`Broker::presence_leave`].)
#[derive(Debug, Clone, Copy)]
pub enum Transient<'a> {
    /// A message for the channel's authenticated members.
    Audience(&'a Bytes),
    /// A cursor-style update from `sender` (never back to it).
    Volatile {
        /// The sending socket.
        sender: Uuid,
        /// The encoded frame.
        frame: &'a Bytes,
    },
    /// A message for one socket that is not a member on this node.
    Socket {
        /// The addressed socket.
        socket: Uuid,
        /// The encoded frame.
        frame: &'a Bytes,
    },
}

/// A member as presence (and back ends' membership events) record it across nodes.
#[derive(Debug, Clone, Copy)]
pub struct PresenceMember<'a> {
    /// The socket.
    pub socket: Uuid,
    /// Listed in presence now.
    pub presence: bool,
    /// Was listed before this change (a re-join that changes the flag).
    pub was_listed: bool,
    /// A new membership (not a re-join of a channel already joined).
    pub is_new: bool,
    /// Its client object (JSON).
    pub client: &'a str,
}

/// How messages are ordered, stored and spread: one node, or many.
pub trait Broker: Send + Sync + 'static {
    /// Reads of the history store, off the async threads.
    fn reader(&self) -> &HistoryReader;

    /// Opens `channel` on this node: subscribes to it (on a cluster) and reads where its
    /// history stands. Runs under the channel's own activation, never the registry's lock.
    fn activate<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelHistory, StoreError>>;

    /// The channel's last member here left. Called under the registry's lock: must not wait.
    fn deactivate(&self, channel: &str);

    /// Queues a message to store; its [`Answer`] hears the outcome once it is stored (or
    /// refused). Refused at once with `overloaded` when too much is waiting.
    fn publish_stored(&self, message: StoredMessage) -> Result<(), Refusal>;

    /// Whether a stored message for webhooks needs its event's body made up front
    /// ([`StoredMessage::hook_body`]); not when the store builds it from the message.
    fn wants_hook_bodies(&self) -> bool {
        true
    }

    /// Carries a frame that is not stored to the members on other nodes.
    fn publish_transient<'a>(
        &'a self,
        channel: &'a str,
        transient: Transient<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>>;

    /// Records a member's presence across nodes (announcing a change to the other nodes) and
    /// returns the client objects of the presence members on other nodes.
    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Removes a member from presence across nodes and announces its leave there when it was
    /// listed (queued: never waits).
    fn presence_leave(&self, channel: &str, member: PresenceMember<'_>, reason: LeaveReason);

    /// Drops a channel's history: its next message starts a new epoch.
    fn clear_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether this node can store and deliver now (the reason when it cannot).
    fn health(&self) -> BoxFuture<'_, Result<(), Unhealthy>>;

    /// This node's id, when it is one of several.
    fn node(&self) -> Option<&str>;

    /// Told when this node recorded webhook events (deliveries need not wait for their poll).
    fn hooks_recorded(&self) -> Arc<tokio::sync::Notify>;

    /// Every channel with members, on every node.
    fn live_channels(&self) -> BoxFuture<'_, Result<Vec<LiveChannel>, StoreError>>;

    /// A channel's members, on every node.
    fn members<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MemberView>, StoreError>>;

    /// Carries an operator's order to a socket on another node; false when no node has it.
    fn order_elsewhere(
        &self,
        socket: Uuid,
        order: Order,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Leaves cleanly after a shutdown: this node's members leave presence at once.
    fn depart(&self);
}

/// A channel with members, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChannel {
    /// Its name.
    pub name: String,
    /// Sockets in it.
    pub sockets: usize,
    /// People in it: signed-in users counted once, anonymous sockets one each.
    pub people: usize,
}

/// A member as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Its socket id.
    pub socket: String,
    /// Listed in presence.
    pub presence: bool,
    /// Its client object (JSON).
    pub client: String,
    /// The node it is on (on a cluster).
    pub node: Option<String>,
}

/// Who a client object stands for: a signed-in user, or one anonymous socket.
pub(crate) fn person_of(client: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(client).unwrap_or_default();
    let signed_in = value["permissions"]["authenticated"].as_bool() == Some(true);
    match value["extras"]["id"].as_str() {
        Some(user) if signed_in => format!("user:{user}"),
        _ => format!("socket:{}", value["socketId"].as_str().unwrap_or_default()),
    }
}

/// Counts a channel's sockets and people from its members' client objects.
pub(crate) fn live_channel<'a>(
    name: String,
    clients: impl Iterator<Item = &'a str>,
) -> LiveChannel {
    let mut people = std::collections::HashSet::new();
    let mut sockets = 0;
    for client in clients {
        sockets += 1;
        people.insert(person_of(client));
    }
    LiveChannel {
        name,
        sockets,
        people: people.len(),
    }
}

/// Why a node cannot serve now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// A stable word for load balancers and dashboards (`storage_failing`,
    /// `redis_unreachable`).
    pub status: &'static str,
    /// What failed.
    pub error: String,
}

/// The refusal for a message the store could not take.
pub(crate) fn not_stored(why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        ErrorCode::Internal,
        format!("the message was not stored: {why}"),
    )
}
