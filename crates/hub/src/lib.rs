//! The realtime engine: channels, subscriptions, fan-out, presence and history.
//!
//! Transport-agnostic on purpose: the web server hands every text frame of a socket to its
//! [`Session`] and writes out whatever arrives on the socket's [`OutboxReceiver`]. Nothing
//! here knows about axum or Leptos, so the same engine runs behind any WebSocket stack and is
//! tested without one.
//!
//! How messages are ordered, stored and spread sits behind a [`Broker`]: [`LocalBroker`] for a
//! node alone (history in a [`HistoryStore`]: [`SqliteHistory`] by default, or
//! [`MemoryHistory`]), [`RedisBroker`] for several nodes on one Redis ([`Hub::clustered`]).
//! Whether a caller may join, read or send is decided in one place, [`authorize`].

mod access;
mod broker;
mod channel;
mod config;
mod encode;
mod history;
mod hooks;
mod hub;
mod metrics;
mod outbox;
mod rate;
mod registry;
mod rules;
mod session;
mod time;

pub use access::{authorize, Access, Caller, Refusal};
pub use broker::{
    Accepted, Broker, LiveChannel, LocalBroker, MemberView, PresenceMember, RedisBroker,
    RedisConfig, StoredMessage, Transient, Unhealthy,
};
pub use config::HubConfig;
pub use history::{
    ChannelHistory, ChannelStats, HistoryReader, HistoryStore, HookWrites, MemberChange,
    MemoryHistory, NewEntry, Orphan, RedisHistory, Retention, SqliteHistory, StoreError,
    StoredFrame,
};
pub use hooks::{
    EventType, GateDecision, GateHandle, Gates, HookEndpoint, HookOutbox, HookRoutes, JoinAsk,
    LeaveReason, OutboxEvent, OutboxStats, PendingEvent, PublishAsk,
};
pub use hub::{Actor, Hub, HubClosed, HubStats, Identity};
pub use metrics::{CodeLabel, EngineMetrics};
pub use outbox::{CloseSignal, Outbound, OutboxReceiver, Wire, WireSend, MAX_HISTORY_FRAME_BYTES};
pub use registry::{Order, Orders};
pub use rules::{ChannelRule, ChannelRules, JoinPolicy, SendPolicy};
pub use session::{Pinger, Session};
pub use time::iso8601;
