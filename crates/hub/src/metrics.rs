//! What the engine counts and times, as Prometheus metrics (`prometheus-client`): the server
//! registers them once and exports them at `/metrics`. Counters are atomics; the hot path adds
//! to them once per message or per fan-out, never per byte.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicI64;
use switchboard_protocol::ErrorCode;

/// A label naming an error code or a close code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code (`rate_limited`, `1013`, …).
    pub code: String,
}

/// The engine's metrics; cheap to share (every metric is a handle).
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Messages received from sockets, pages and the HTTP API (every audience).
    pub messages_received: Counter,
    /// Messages (and server events) stored.
    pub messages_stored: Counter,
    /// Frames queued for sockets.
    pub deliveries: Counter,
    /// Requests refused, by error code.
    pub refusals: Family<CodeLabel, Counter>,
    /// Close frames the server sent, by close code.
    pub closes: Family<CodeLabel, Counter>,
    /// How long committing a batch of messages took.
    pub store_commit_seconds: Histogram,
    /// How long handing one stored message to every member here took.
    pub fanout_seconds: Histogram,
    /// Bytes waiting in every socket's outbox.
    pub outbox_bytes: Gauge<i64, AtomicI64>,
    /// Volatile frames queued, coalesced with an unsent one, and dropped.
    pub volatile_queued: Counter,
    /// Volatile frames that replaced an unsent older one of the same sender.
    pub volatile_coalesced: Counter,
    /// Volatile frames dropped because a socket had too many senders waiting.
    pub volatile_dropped: Counter,
    /// On a cluster: how long a round trip to Redis took (stored batches, presence).
    pub redis_round_trip_seconds: Histogram,
    /// On a cluster: reconnections to Redis.
    pub redis_reconnects: Counter,
    /// On a cluster: stored messages read back from Redis because the subscription missed them.
    pub redis_caught_up: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        // 50 µs to about 26 s.
        let seconds = || Histogram::new(exponential_buckets(0.000_05, 2.0, 20));
        Self {
            messages_received: Counter::default(),
            messages_stored: Counter::default(),
            deliveries: Counter::default(),
            refusals: Family::default(),
            closes: Family::default(),
            store_commit_seconds: seconds(),
            fanout_seconds: seconds(),
            outbox_bytes: Gauge::default(),
            volatile_queued: Counter::default(),
            volatile_coalesced: Counter::default(),
            volatile_dropped: Counter::default(),
            redis_round_trip_seconds: seconds(),
            redis_reconnects: Counter::default(),
            redis_caught_up: Counter::default(),
        }
    }
}

impl EngineMetrics {
    /// Counts a refusal.
    pub fn refused(&self, code: ErrorCode) {
        self.refused_as(code.as_str());
    }

    /// Counts a refusal of the HTTP side under its code (`unauthorized`, `rate_limited`, a
    /// token's `token_expired`, …).
    pub fn refused_as(&self, code: &str) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a close frame sent.
    pub fn closed(&self, code: u16) {
        self.closes
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Adds the (queued, coalesced, dropped) counts of a volatile delivery.
    pub(crate) fn count_volatile(&self, [queued, coalesced, dropped]: [u64; 3]) {
        self.volatile_queued.inc_by(queued);
        self.volatile_coalesced.inc_by(coalesced);
        self.volatile_dropped.inc_by(dropped);
    }

    /// Registers every metric, named with the `switchboard_` prefix of `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "messages_received",
            "Messages received from sockets, pages and the HTTP API (every audience)",
            self.messages_received.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages and server events stored",
            self.messages_stored.clone(),
        );
        registry.register(
            "messages_delivered",
            "Messages delivered: frames queued for sockets, one per message and member",
            self.deliveries.clone(),
        );
        registry.register(
            "deliveries",
            "The same count as switchboard_messages_delivered_total, under its earlier name",
            self.deliveries.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused, by error code: socket frames, upgrades, pages and the HTTP and admin APIs",
            self.refusals.clone(),
        );
        registry.register(
            "closes",
            "Close frames sent to sockets, by close code",
            self.closes.clone(),
        );
        registry.register_with_unit(
            "store_commit",
            "Time to commit a batch of messages",
            Unit::Seconds,
            self.store_commit_seconds.clone(),
        );
        registry.register_with_unit(
            "fanout",
            "Time to hand one stored message to every member on this node",
            Unit::Seconds,
            self.fanout_seconds.clone(),
        );
        registry.register_with_unit(
            "outbox",
            "Bytes waiting to be written to sockets",
            Unit::Bytes,
            self.outbox_bytes.clone(),
        );
        registry.register(
            "volatile_queued",
            "Volatile frames queued for a socket",
            self.volatile_queued.clone(),
        );
        registry.register(
            "volatile_coalesced",
            "Volatile frames that replaced an unsent older one of the same sender",
            self.volatile_coalesced.clone(),
        );
        registry.register(
            "volatile_dropped",
            "Volatile frames dropped because a socket had too many senders waiting",
            self.volatile_dropped.clone(),
        );
        registry.register_with_unit(
            "redis_round_trip",
            "Time of a round trip to Redis (stored batches, joins)",
            Unit::Seconds,
            self.redis_round_trip_seconds.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Reconnections to Redis",
            self.redis_reconnects.clone(),
        );
        registry.register(
            "redis_caught_up_messages",
            "Stored messages read back from Redis because the subscription missed them",
            self.redis_caught_up.clone(),
        );
    }
}
