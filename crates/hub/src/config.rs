//! Limits of the engine. Every number here is documented in PROTOCOL.md.

use std::time::Duration;

/// Limits the hub enforces on every socket.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Largest `payload` of a message, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Largest `extras` object a join may carry, in bytes of JSON.
    pub max_extras_bytes: usize,
    /// Most channels one socket may be joined to at once.
    pub max_channels_per_socket: usize,
    /// Frames one socket may send per second, sustained.
    pub frames_per_second: u32,
    /// Frames one socket may send in a burst above the sustained rate.
    pub frame_burst: u32,
    /// `rate_limited` errors a socket may earn in a burst before it is cut off (1008); they
    /// refill at a tenth of the frame rate.
    pub rate_violation_burst: u32,
    /// Frames waiting to be written to one socket before it counts as too slow (1013).
    pub outbox_capacity: usize,
    /// Bytes waiting to be written to one socket (every lane) before it counts as too slow
    /// (1013): what one client can cost the server at most.
    pub outbox_bytes: usize,
    /// Messages kept per channel (older ones are trimmed in the background).
    pub history_keep: u64,
    /// Messages older than this are trimmed.
    pub history_max_age: Duration,
    /// How often trimming runs.
    pub history_trim_interval: Duration,
    /// Messages sent to a joiner that asked for history, and to `history` without a limit.
    pub history_on_join: usize,
    /// Most missed messages replayed to a resuming client; older ones are reported as a gap.
    pub max_resume: usize,
    /// Messages waiting to be stored before senders get `overloaded`.
    pub store_queue: usize,
    /// Bytes of messages waiting to be stored (and, on a cluster, of frames waiting to be
    /// published) before senders get `overloaded`.
    pub store_queue_bytes: usize,
    /// Who may do what in which channels.
    pub rules: crate::rules::ChannelRules,
    /// Which webhook endpoints want which events.
    pub hooks: crate::hooks::HookRoutes,
    /// A back end's decisions before joins and sends, if it asked to make them.
    pub gates: crate::hooks::GateHandle,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_extras_bytes: 1024,
            max_channels_per_socket: 100,
            frames_per_second: 50,
            frame_burst: 100,
            rate_violation_burst: 100,
            outbox_capacity: 1024,
            outbox_bytes: 4 * 1024 * 1024,
            history_keep: 1000,
            history_max_age: Duration::from_secs(30 * 24 * 3600),
            history_trim_interval: Duration::from_secs(60),
            history_on_join: 50,
            max_resume: 10_000,
            store_queue: 65_536,
            store_queue_bytes: 64 * 1024 * 1024,
            rules: crate::rules::ChannelRules::default(),
            hooks: crate::hooks::HookRoutes::default(),
            gates: crate::hooks::GateHandle::default(),
        }
    }
}

impl HubConfig {
    /// The retention of `channel`: its rule's count, or the server-wide one.
    pub fn retention(&self, channel: &str) -> crate::history::Retention {
        self.rules
            .retention(channel, self.history_keep, self.history_max_age)
    }
}
