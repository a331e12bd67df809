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

use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// A channel's history position, read when the channel becomes active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHistory {
    /// Changes only when the channel's history is reset; resume tokens from another epoch are
    /// answered with a gap.
    pub epoch: String,
    /// The highest `seq` ever stored in the channel (0 when none).
    pub last_seq: u64,
    /// `(id, seq)` of the latest stored messages, newest last, for de-duplication of resends.
    pub recent_ids: Vec<(String, u64)>,
}

/// One message to store.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The channel.
    pub channel: String,
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

/// Where channels' messages are kept. Calls block; the hub makes them from its persister
/// thread and, for reads, while a channel or join needs them.
pub trait HistoryStore: Send + Sync + 'static {
    /// The channel's epoch, last seq and recent ids; creates its history on first use.
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError>;
    /// Stores a batch of messages atomically: after `Ok`, all are durable; after `Err`, none.
    fn append(&self, batch: &[NewEntry]) -> Result<(), StoreError>;
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
    /// Drops messages beyond each channel's retention; returns how many were dropped.
    fn trim(&self, retention: &dyn Fn(&str) -> Retention, now_ms: u64) -> Result<u64, StoreError>;
}
