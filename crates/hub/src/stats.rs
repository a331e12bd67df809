//! Running totals of the engine, for `/metrics` and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since start; updated with relaxed atomics on the delivery path.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) volatile_queued: AtomicU64,
    pub(crate) volatile_coalesced: AtomicU64,
    pub(crate) volatile_dropped: AtomicU64,
}

impl Counters {
    /// Adds the (queued, coalesced, dropped) counts of a volatile delivery.
    pub(crate) fn count_volatile(&self, [queued, coalesced, dropped]: [u64; 3]) {
        self.volatile_queued.fetch_add(queued, Ordering::Relaxed);
        self.volatile_coalesced
            .fetch_add(coalesced, Ordering::Relaxed);
        self.volatile_dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}
