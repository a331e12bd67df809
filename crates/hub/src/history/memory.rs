//! History in process memory: the store for tests and for running without a disk. Lost on
//! restart (a restart is a new epoch), bounded by the retention.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use super::{
    ChannelHistory, ChannelStats, HistoryStore, HookWrites, NewEntry, Retention, StoreError,
    StoredFrame,
};
use crate::hooks::{HookOutbox, OutboxEvent, OutboxStats, PendingEvent};

/// In-memory history of every channel, and the webhook outbox.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    channels: Mutex<HashMap<String, Channel>>,
    outbox: Mutex<HashMap<String, Queue>>,
}

/// One endpoint's events: waiting (with attempts and next try) and dead, by key.
#[derive(Debug, Default)]
struct Queue {
    next_key: u64,
    waiting: BTreeMap<u64, (OutboxEvent, u32, u64)>,
    dead: BTreeMap<u64, OutboxEvent>,
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

    fn queues<R>(&self, f: impl FnOnce(&mut HashMap<String, Queue>) -> R) -> R {
        f(&mut self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, events: &[OutboxEvent]) {
        self.queues(|queues| {
            for event in events {
                let queue = queues.entry(event.endpoint.clone()).or_default();
                queue.next_key += 1;
                let key = queue.next_key;
                queue.waiting.insert(key, (event.clone(), 0, 0));
            }
        });
    }
}

fn key_of(key: &str) -> Result<u64, StoreError> {
    key.parse()
        .map_err(|_| StoreError(format!("no outbox event {key:?}")))
}

impl HookOutbox for MemoryHistory {
    fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(self.queues(|queues| {
            queues.get(endpoint).map_or_else(Vec::new, |queue| {
                queue
                    .waiting
                    .iter()
                    .take(limit)
                    .map(|(key, (event, attempts, next))| PendingEvent {
                        key: key.to_string(),
                        event: event.clone(),
                        attempts: *attempts,
                        next_attempt_ms: *next,
                    })
                    .collect()
            })
        }))
    }

    fn delivered_all(&self, endpoint: &str, keys: &[String]) -> Result<(), StoreError> {
        let keys = keys
            .iter()
            .map(|key| key_of(key))
            .collect::<Result<Vec<_>, _>>()?;
        self.queues(|queues| {
            if let Some(queue) = queues.get_mut(endpoint) {
                for key in &keys {
                    queue.waiting.remove(key);
                }
            }
        });
        Ok(())
    }

    fn retry_later(
        &self,
        endpoint: &str,
        key: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        let key = key_of(key)?;
        self.queues(|queues| {
            if let Some((_, tries, next)) = queues
                .get_mut(endpoint)
                .and_then(|q| q.waiting.get_mut(&key))
            {
                *tries = attempts;
                *next = next_attempt_ms;
            }
        });
        Ok(())
    }

    fn give_up(&self, endpoint: &str, key: &str) -> Result<(), StoreError> {
        let key = key_of(key)?;
        self.queues(|queues| {
            if let Some(queue) = queues.get_mut(endpoint) {
                if let Some((event, _, _)) = queue.waiting.remove(&key) {
                    queue.dead.insert(key, event);
                }
            }
        });
        Ok(())
    }

    fn replay_dead(&self, endpoint: Option<&str>) -> Result<u64, StoreError> {
        Ok(self.queues(|queues| {
            let mut replayed = 0;
            for (name, queue) in queues.iter_mut() {
                if endpoint.is_some_and(|e| e != name) {
                    continue;
                }
                for (key, event) in std::mem::take(&mut queue.dead) {
                    queue.waiting.insert(key, (event, 0, 0));
                    replayed += 1;
                }
            }
            replayed
        }))
    }

    fn outbox_stats(&self, endpoint: &str) -> Result<OutboxStats, StoreError> {
        Ok(self.queues(|queues| {
            queues
                .get(endpoint)
                .map_or_else(OutboxStats::default, |queue| OutboxStats {
                    pending: queue.waiting.len() as u64,
                    dead: queue.dead.len() as u64,
                    oldest_pending_ms: queue.waiting.values().map(|(e, _, _)| e.created_ms).min(),
                })
        }))
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

    fn append(&self, batch: &[NewEntry], hooks: &HookWrites) -> Result<(), StoreError> {
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
        })?;
        // Memory keeps no members across a restart: nothing is left to recover after one.
        self.record(&hooks.events);
        Ok(())
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

    fn channel_stats(&self, channel: &str, now_ms: u64) -> Result<ChannelStats, StoreError> {
        Ok(self.with(|channels| {
            channels
                .get(channel)
                .map_or_else(ChannelStats::default, |state| {
                    let since = now_ms.saturating_sub(60_000);
                    ChannelStats {
                        last_seq: state.last_seq,
                        stored: state.entries.len() as u64,
                        last_minute: state.entries.iter().filter(|e| e.at_ms >= since).count()
                            as u64,
                    }
                })
        }))
    }
}
