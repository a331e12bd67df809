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
    /// Messages kept per channel for `history`.
    pub history_per_channel: usize,
    /// Messages sent to a joiner that asked for history.
    pub history_on_join: usize,
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
            history_per_channel: 100,
            history_on_join: 50,
        }
    }
}

impl HubConfig {
    /// How long a full frame bucket takes to refill; used by tests that wait for recovery.
    pub fn rate_refill_time(&self) -> Duration {
        Duration::from_secs_f64(
            f64::from(self.frame_burst) / f64::from(self.frames_per_second.max(1)),
        )
    }
}
