//! Message history behind a trait, so the embedded memory store and durable stores are
//! interchangeable. Entries are encoded `message` frames, stored and replayed as bytes.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Where a channel's recent messages are kept.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends one encoded message frame to a channel, keeping at most `keep` entries.
    fn append(&self, channel: &str, frame: Bytes, keep: usize);
    /// The latest `limit` frames of a channel, oldest first.
    fn recent(&self, channel: &str, limit: usize) -> Vec<Bytes>;
}

/// History in process memory: lost on restart, bounded per channel.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    channels: Mutex<HashMap<String, VecDeque<Bytes>>>,
}

impl HistoryStore for MemoryHistory {
    fn append(&self, channel: &str, frame: Bytes, keep: usize) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let entries = channels.entry(channel.to_owned()).or_default();
        entries.push_back(frame);
        while entries.len() > keep {
            entries.pop_front();
        }
    }

    fn recent(&self, channel: &str, limit: usize) -> Vec<Bytes> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(channel).map_or_else(Vec::new, |entries| {
            entries
                .iter()
                .skip(entries.len().saturating_sub(limit))
                .cloned()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_entries_in_order() {
        let store = MemoryHistory::default();
        for n in 0..5 {
            store.append("c", Bytes::from(n.to_string()), 3);
        }
        assert_eq!(store.recent("c", 10), vec!["2", "3", "4"]);
        assert_eq!(store.recent("c", 2), vec!["3", "4"]);
        assert!(store.recent("other", 2).is_empty());
    }
}
