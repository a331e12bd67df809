//! Reconnecting like a well-behaved client: exponential backoff with full jitter, so that
//! thousands of sockets that lost the server at the same moment do not all come back at the
//! same moment and knock it over again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delays between reconnect attempts: the n-th is uniform in `[0, min(cap, first × 2ⁿ)]`.
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
    random: SplitMix,
}

impl Backoff {
    /// A backoff whose jitter is seeded from `seed` and the clock, so sockets differ.
    pub fn new(first: Duration, cap: Duration, seed: u64) -> Self {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            first,
            cap,
            attempt: 0,
            random: SplitMix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ clock),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let doubling = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.first.saturating_mul(doubling).min(self.cap);
        ceiling.mul_f64(self.random.unit())
    }

    /// After a connection that worked: the next loss starts again from the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// SplitMix64: plenty for jitter, and no dependency for it.
struct SplitMix(u64);

impl SplitMix {
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_up_to_the_cap() {
        let (first, cap) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut backoff = Backoff::new(first, cap, 7);
        for attempt in 0..40u32 {
            let ceiling = first.saturating_mul(1 << attempt.min(16)).min(cap);
            assert!(backoff.next_delay() <= ceiling);
        }
    }

    #[test]
    fn jitter_spreads_delays_and_reset_starts_over() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 1);
        let delays: Vec<Duration> = (0..100).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(750)));
        let mut growing = Backoff::new(Duration::from_millis(10), Duration::from_secs(60), 2);
        for _ in 0..10 {
            growing.next_delay();
        }
        growing.reset();
        assert!(growing.next_delay() <= Duration::from_millis(10));
    }
}
