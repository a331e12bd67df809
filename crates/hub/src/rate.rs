//! Token bucket: the per-socket frame rate limit.

use std::time::Instant;

/// A token bucket refilled continuously at `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Whether it has refilled to its burst: as good as a new one.
    pub(crate) fn is_full(&self) -> bool {
        let elapsed = self.updated.elapsed().as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_spent_then_refused() {
        let mut bucket = TokenBucket::new(1.0, 3.0);
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take());
        assert!(!bucket.is_full());
    }

    #[test]
    fn tokens_come_back_with_time() {
        let mut bucket = TokenBucket::new(1000.0, 1.0);
        assert!(bucket.take());
        assert!(!bucket.take());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(bucket.is_full());
        assert!(bucket.take());
    }
}
