//! The realtime engine: channels, subscriptions, fan-out, presence and history.
//!
//! Transport-agnostic on purpose: the web server hands every text frame of a socket to its
//! [`Session`] and writes out whatever arrives on the socket's [`OutboxReceiver`]. Nothing
//! here knows about axum or Leptos, so the same engine runs behind any WebSocket stack and is
//! tested without one. Storage sits behind [`HistoryStore`]: [`SqliteHistory`] is the
//! embedded default, [`MemoryHistory`] keeps nothing on disk. Several nodes share one channel
//! space through Redis ([`Hub::clustered`], [`RedisHistory`]): fan-out by pub/sub, history and
//! seq in streams, presence with node heartbeats.

mod channel;
mod cluster;
mod config;
mod encode;
mod history;
mod hub;
mod outbox;
mod persister;
mod rate;
mod rules;
mod session;

pub use cluster::ClusterConfig;
pub use config::HubConfig;
pub use history::{
    ChannelHistory, HistoryStore, MemoryHistory, NewEntry, RedisHistory, Retention, SqliteHistory,
    StoreError, StoredFrame,
};
pub use hub::{Hub, HubClosed, HubStats, Identity, PublishError};
pub use outbox::{CloseSignal, Outbound, OutboxReceiver};
pub use rules::{ChannelRule, ChannelRules, JoinPolicy, SendPolicy};
pub use session::Session;
