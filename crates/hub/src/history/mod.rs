//! Message history behind one trait, so the embedded stores (SQLite, memory) and the Redis one
//! are interchangeable and pass one test suite.
//!
//! Every stored message has a per-channel `seq`, strictly increasing without holes, and each
//! channel an `epoch` that only changes when its history is reset. Entries are encoded frames
//! (stored and replayed as bytes), so replay never re-serializes.

mod memory;
mod redis;
mod sqlite;

pub use memory::MemoryHistory;
pub(crate) use redis::Publish;
pub use redis::RedisHistory;
pub use sqlite::SqliteHistory;

use crate::hooks::{HookOutbox, OutboxEvent};

use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// A channel's history position, read when the channel becomes active or is first published
/// to. Reading it never creates anything: a channel exists in the store only once a message
/// was stored in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHistory {
    /// Changes only when the channel's history is reset; resume tokens from another epoch are
    /// answered with a gap. `None` when the store holds nothing of the channel.
    pub epoch: Option<String>,
    /// The highest `seq` stored in the channel's epoch (0 when none).
    pub last_seq: u64,
    /// `(id, seq)` of the latest stored messages, newest last, for de-duplication of resends.
    pub recent_ids: Vec<(String, u64)>,
    /// The store holds ids older than `recent_ids`: a resend that misses them must be looked
    /// up with [`HistoryStore::seq_of`].
    pub more_ids: bool,
}

/// One message to store.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The channel.
    pub channel: String,
    /// The channel's epoch: recorded with the channel's first message, kept after.
    pub epoch: String,
    /// Its sequence number in the channel.
    pub seq: u64,
    /// Its id (client-chosen or generated), unique per channel.
    pub id: String,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The encoded frame, as delivered.
    pub frame: Bytes,
}

/// A stored frame and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    /// Sequence number in the channel.
    pub seq: u64,
    /// The encoded frame.
    pub frame: Bytes,
}

/// A storage failure, with what the operator should do about it.
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// How much history each channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per channel.
    pub count: u64,
    /// Messages older than this are dropped.
    pub max_age: Duration,
}

/// A change of a channel's membership, kept by the stores of a node that runs alone while
/// back ends want membership events, so the members of a process that died are known after
/// it restarts (and their `member.left` is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// `socket` joined `channel`, with this client object.
    Joined {
        /// The channel.
        channel: String,
        /// The socket.
        socket: String,
        /// Its client object (JSON).
        client: String,
    },
    /// `socket` left `channel`.
    Left {
        /// The channel.
        channel: String,
        /// The socket.
        socket: String,
    },
}

/// What is written for back ends in the same commit as a batch of messages.
#[derive(Debug, Clone, Default)]
pub struct HookWrites {
    /// Webhook events.
    pub events: Vec<OutboxEvent>,
    /// Membership changes to keep (see [`MemberChange`]).
    pub members: Vec<MemberChange>,
}

impl HookWrites {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.members.is_empty()
    }
}

/// Where a channel's stored history stands, for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// The highest seq stored (0 when none).
    pub last_seq: u64,
    /// Messages stored now.
    pub stored: u64,
    /// Messages stored in the last minute.
    pub last_minute: u64,
}

/// A member recorded by a process that is gone: `(channel, socket, client)`.
pub type Orphan = (String, String, String);

/// Where channels' messages are kept, with the webhook outbox beside them. Calls block: the
/// engine makes them from its own threads (the persister) or through `spawn_blocking`, never on
/// an async worker.
pub trait HistoryStore: HookOutbox + Send + Sync + 'static {
    /// The channel's epoch, last seq and latest `recent_ids` ids; reads only.
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError>;
    /// Stores a batch of messages and what back ends are to hear of it atomically: after `Ok`,
    /// all are durable; after `Err`, none. A channel's first message records the channel with
    /// the entry's epoch.
    fn append(&self, batch: &[NewEntry], hooks: &HookWrites) -> Result<(), StoreError>;
    /// The seq of the stored message of `channel` with this id: the authority on resends.
    fn seq_of(&self, channel: &str, id: &str) -> Result<Option<u64>, StoreError>;
    /// Frames with `after < seq <= up_to`, oldest first, at most `limit`.
    fn range(
        &self,
        channel: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError>;
    /// The latest `limit` frames with `seq < before` (all when `before` is `None`), oldest first.
    fn latest(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError>;
    /// Drops messages beyond each channel's retention, and forgets channels left with no
    /// message (their next message starts a new epoch); returns how many messages were dropped.
    fn trim(&self, retention: &dyn Fn(&str) -> Retention, now_ms: u64) -> Result<u64, StoreError>;
    /// Drops every message of `channel` and its epoch: its next message starts a new epoch.
    fn clear(&self, channel: &str) -> Result<(), StoreError>;
    /// Called after a failed write: reconnect or reopen whatever may be broken.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Where `channel`'s stored history stands at `now_ms`.
    fn channel_stats(&self, channel: &str, now_ms: u64) -> Result<ChannelStats, StoreError>;
    /// Writes what was held back for the next commit (see
    /// [`HookOutbox::delivered_all`]) when no commit came for a while; the persister calls it
    /// when it has nothing else to do.
    fn flush_held(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether anything is held back for the next commit (see [`HistoryStore::flush_held`]).
    fn holds_writes(&self) -> bool {
        false
    }
    /// Members recorded (see [`MemberChange`]) that no longer exist because the process that
    /// had them is gone; read once at start-up.
    fn orphaned_members(&self) -> Result<Vec<Orphan>, StoreError> {
        Ok(Vec::new())
    }
}

/// Reads of a [`HistoryStore`] for async code: each runs on a blocking thread, so a slow disk
/// or Redis never stalls an async worker.
#[derive(Clone)]
pub struct HistoryReader {
    store: std::sync::Arc<dyn HistoryStore>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HistoryReader")
    }
}

impl HistoryReader {
    /// Reads of `store`.
    pub fn new(store: std::sync::Arc<dyn HistoryStore>) -> Self {
        Self { store }
    }

    /// The store read from.
    pub fn store(&self) -> &std::sync::Arc<dyn HistoryStore> {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn HistoryStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(store.as_ref()))
            .await
            .unwrap_or_else(|err| Err(StoreError(format!("history read failed: {err}"))))
    }

    /// [`HistoryStore::range`], off the async threads.
    pub async fn range(
        &self,
        channel: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let channel = channel.to_string();
        self.blocking(move |store| store.range(&channel, after, up_to, limit))
            .await
    }

    /// [`HistoryStore::latest`], off the async threads.
    pub async fn latest(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let channel = channel.to_string();
        self.blocking(move |store| store.latest(&channel, before, limit))
            .await
    }

    /// The stored message of `channel` with this id, if the store holds it.
    pub async fn message(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<Option<StoredFrame>, StoreError> {
        let (channel, id) = (channel.to_string(), id.to_string());
        self.blocking(move |store| match store.seq_of(&channel, &id)? {
            Some(seq) => Ok(store
                .range(&channel, seq.saturating_sub(1), seq, 1)?
                .into_iter()
                .next()),
            None => Ok(None),
        })
        .await
    }

    /// [`HistoryStore::open_channel`], off the async threads.
    pub async fn open_channel(
        &self,
        channel: &str,
        recent_ids: usize,
    ) -> Result<ChannelHistory, StoreError> {
        let channel = channel.to_string();
        self.blocking(move |store| store.open_channel(&channel, recent_ids))
            .await
    }
}

/// A new random epoch.
pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}
