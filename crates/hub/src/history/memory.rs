//! History in process memory: the store for tests and for running without a disk. Lost on
//! restart (a restart is a new epoch), bounded by the retention.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{ChannelHistory, HistoryStore, NewEntry, Retention, StoreError, StoredFrame};

/// In-memory history of every channel.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    channels: Mutex<HashMap<String, Channel>>,
}

#[derive(Debug)]
struct Channel {
    epoch: String,
    last_seq: u64,
    entries: VecDeque<Entry>,
    /// Seq of every retained entry, by id.
    ids: HashMap<String, u64>,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    id: String,
    at_ms: u64,
    frame: bytes::Bytes,
}

impl MemoryHistory {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Channel>) -> R) -> R {
        f(&mut self.channels.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn frames<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<StoredFrame> {
    entries
        .map(|e| StoredFrame {
            seq: e.seq,
            frame: e.frame.clone(),
        })
        .collect()
}

impl HistoryStore for MemoryHistory {
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError> {
        Ok(self.with(|channels| match channels.get(channel) {
            None => ChannelHistory {
                epoch: None,
                last_seq: 0,
                recent_ids: Vec::new(),
                more_ids: false,
            },
            Some(state) => {
                let skip = state.entries.len().saturating_sub(recent_ids);
                ChannelHistory {
                    epoch: Some(state.epoch.clone()),
                    last_seq: state.last_seq,
                    recent_ids: state
                        .entries
                        .iter()
                        .skip(skip)
                        .map(|e| (e.id.clone(), e.seq))
                        .collect(),
                    more_ids: skip > 0,
                }
            }
        }))
    }

    fn append(&self, batch: &[NewEntry]) -> Result<(), StoreError> {
        self.with(|channels| {
            // All or nothing, like a transaction: check the whole batch first.
            let mut last: HashMap<&str, u64> = HashMap::new();
            for entry in batch {
                let previous = *last
                    .entry(entry.channel.as_str())
                    .or_insert_with(|| channels.get(&entry.channel).map_or(0, |c| c.last_seq));
                let duplicate = channels
                    .get(&entry.channel)
                    .is_some_and(|c| c.ids.contains_key(&entry.id));
                if entry.seq <= previous || duplicate {
                    return Err(StoreError(format!(
                        "seq {} (id {:?}) of channel {:?} is already stored",
                        entry.seq, entry.id, entry.channel
                    )));
                }
                last.insert(entry.channel.as_str(), entry.seq);
            }
            for entry in batch {
                let state = channels
                    .entry(entry.channel.clone())
                    .or_insert_with(|| Channel {
                        epoch: entry.epoch.clone(),
                        last_seq: 0,
                        entries: VecDeque::new(),
                        ids: HashMap::new(),
                    });
                state.last_seq = state.last_seq.max(entry.seq);
                state.ids.insert(entry.id.clone(), entry.seq);
                state.entries.push_back(Entry {
                    seq: entry.seq,
                    id: entry.id.clone(),
                    at_ms: entry.at_ms,
                    frame: entry.frame.clone(),
                });
            }
            Ok(())
        })
    }

    fn seq_of(&self, channel: &str, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.with(|channels| channels.get(channel)?.ids.get(id).copied()))
    }

    fn range(
        &self,
        channel: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        Ok(self.with(|channels| {
            channels.get(channel).map_or_else(Vec::new, |state| {
                frames(
                    state
                        .entries
                        .iter()
                        .filter(|e| e.seq > after && e.seq <= up_to)
                        .take(limit),
                )
            })
        }))
    }

    fn latest(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        Ok(self.with(|channels| {
            channels.get(channel).map_or_else(Vec::new, |state| {
                let mut newest_first = frames(
                    state
                        .entries
                        .iter()
                        .rev()
                        .filter(|e| before.is_none_or(|before| e.seq < before))
                        .take(limit),
                );
                newest_first.reverse();
                newest_first
            })
        }))
    }

    fn trim(&self, retention: &dyn Fn(&str) -> Retention, now_ms: u64) -> Result<u64, StoreError> {
        Ok(self.with(|channels| {
            let mut dropped = 0;
            for (name, state) in channels.iter_mut() {
                let retention = retention(name);
                let oldest_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64);
                let floor = state.last_seq.saturating_sub(retention.count);
                while let Some(front) = state.entries.front() {
                    if front.seq <= floor || front.at_ms < oldest_ms {
                        if let Some(gone) = state.entries.pop_front() {
                            state.ids.remove(&gone.id);
                        }
                        dropped += 1;
                    } else {
                        break;
                    }
                }
            }
            channels.retain(|_, state| !state.entries.is_empty());
            dropped
        }))
    }

    fn clear(&self, channel: &str) -> Result<(), StoreError> {
        self.with(|channels| channels.remove(channel));
        Ok(())
    }
}
