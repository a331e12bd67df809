//! The persister: the one thread of a single node that orders and stores messages.
//!
//! It takes everything waiting (up to a batch) and, per message, under nothing but its own
//! state: recognises a resend (the store is the authority on which ids it holds; a cache of
//! each channel's latest ids answers most questions without asking it), hands out the next
//! seq, and fills the seq and epoch into the frame encoded once by the sender's session. Then
//! it commits the batch in one transaction, and only then hands the batch to the deliverer (a
//! task on the runtime, `deliverer.rs`) which delivers each message to its channel and answers
//! its sender, in order. So a message is never seen before it is durable, an ok always follows
//! a commit (a resend's ok too, when its first copy was in the same batch), and seqs have no
//! holes. A history clear waits until everything committed before it has been delivered.
//!
//! A failed commit is retried (the store reopened in between); if it keeps failing, the batch
//! is refused, every channel it touched forgets its seq state (reloaded from the store on its
//! next message) and the node reports itself unhealthy until a commit succeeds again.
//! Between batches it trims history to the retention.

use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::deliverer::{hand_off, Deliverer, Handoff, Turn};
use super::queue::{Batch, JobReceiver};
use super::{not_stored, Accepted, StoredMessage};
use crate::access::Refusal;
use crate::channel::Writes;
use crate::history::{new_epoch, HistoryStore, HookWrites, NewEntry, Retention, StoreError};
use crate::hooks::{message_event_id, EventType, OutboxEvent};
use crate::registry::Registry;
use crate::time::now_ms;

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 1024;
/// With nothing to store for this long, what the store held back for its next commit is
/// written on its own.
const FLUSH_HELD: Duration = Duration::from_millis(200);

/// Pauses before the retries of a failed commit.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(200)];

/// Seq states kept for channels nobody published to lately, at most.
const IDLE_STATES: usize = 4096;

/// What the persister is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// Order, store and deliver a message.
    Store(StoredMessage),
    /// Drop a channel's history (its next message starts a new epoch).
    Clear {
        channel: Arc<str>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Record webhook events and membership changes (with the next commit).
    Hooks(HookWrites),
}

/// What the persister needs to know of the settings.
pub(crate) struct Settings {
    /// Retention of each channel.
    pub(crate) retention: Box<dyn Fn(&str) -> Retention + Send>,
    /// How often to trim.
    pub(crate) trim_every: Duration,
    /// Most bytes of frames committed and waiting for the deliverer.
    pub(crate) handoff_bytes: usize,
    /// How much the deliverer takes in one turn (from the sockets' outbox budget).
    pub(crate) turn: Turn,
}

/// Whether the last commit worked, and why not.
#[derive(Debug, Default)]
pub(crate) struct StoreHealth(Mutex<Option<String>>);

impl StoreHealth {
    /// The reason storing fails now, if it does.
    pub(crate) fn failing(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, failing: Option<String>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match (&*state, &failing) {
            (None, Some(why)) => tracing::error!("storing messages fails: {why}"),
            (Some(_), None) => tracing::info!("storing messages works again"),
            _ => {}
        }
        *state = failing;
    }
}

/// Where a channel's ordering stands.
struct SeqState {
    epoch: Arc<str>,
    next_seq: u64,
    ids: RecentIds,
    /// The cache holds every id the store holds: a miss means a new message.
    complete: bool,
    used: Instant,
}

/// The latest stored ids of a channel, with their seqs.
struct RecentIds {
    seqs: HashMap<String, u64>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    /// Remembers an id; false when an older one had to be forgotten for it.
    fn insert(&mut self, id: String, seq: u64) -> bool {
        if self.seqs.insert(id.clone(), seq).is_none() {
            self.order.push_back(id);
        }
        let mut kept_all = true;
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seqs.remove(&old);
                kept_all = false;
            }
        }
        kept_all
    }
}

/// What became of one message of a batch.
enum Outcome {
    New {
        seq: u64,
        epoch: Arc<str>,
        frame: Bytes,
    },
    Resend {
        seq: u64,
        /// Its first copy is in this batch: it stands or falls with the commit.
        in_batch: bool,
    },
    Refused(Refusal),
}

/// The thread's state.
pub(crate) struct Persister {
    store: Arc<dyn HistoryStore>,
    registry: Arc<Registry>,
    settings: Settings,
    health: Arc<StoreHealth>,
    states: HashMap<Arc<str>, SeqState>,
    /// Membership events and changes waiting for the next commit (kept across a failed one).
    hooks: HookWrites,
    /// Told after a commit that recorded webhook events.
    recorded: Arc<tokio::sync::Notify>,
    /// The last commit recorded webhook events, so deliveries (to be written) are coming.
    recorded_lately: bool,
    /// The deliverer task, when the persister was started on a runtime (otherwise it delivers
    /// itself).
    deliverer: Option<Deliverer>,
}

impl Persister {
    /// Starts the thread.
    pub(crate) fn start(
        store: Arc<dyn HistoryStore>,
        registry: Arc<Registry>,
        settings: Settings,
        health: Arc<StoreHealth>,
        jobs: JobReceiver<Job>,
        recorded: Arc<tokio::sync::Notify>,
    ) -> std::io::Result<()> {
        let deliverer = Deliverer::start(registry.clone(), settings.handoff_bytes, settings.turn);
        let persister = Persister {
            store,
            registry,
            settings,
            health,
            states: HashMap::new(),
            hooks: HookWrites::default(),
            recorded,
            recorded_lately: false,
            deliverer,
        };
        std::thread::Builder::new()
            .name("switchboard-persister".into())
            .spawn(move || persister.run(&jobs))
            .map(drop)
    }

    fn run(mut self, jobs: &JobReceiver<Job>) {
        let mut taken = Vec::with_capacity(MAX_BATCH);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut next_trim = Instant::now() + self.settings.trim_every;
        loop {
            let mut wait = next_trim.saturating_duration_since(Instant::now());
            // Only while deliveries are coming or held back does an idle node wake for them.
            if std::mem::take(&mut self.recorded_lately) || self.store.holds_writes() {
                wait = wait.min(FLUSH_HELD);
            }
            let closed = matches!(jobs.take(&mut taken, MAX_BATCH, wait), Batch::Closed);
            if taken.is_empty() {
                self.flush_held();
            }
            if closed {
                return;
            }
            for job in taken.drain(..) {
                match job {
                    Job::Store(message) => batch.push(message),
                    Job::Clear { channel, done } => {
                        // Everything sent before the clear is stored (and cleared) first.
                        self.commit(&mut batch);
                        // ...and delivered: a delivery after the clear could bring a cleared
                        // message back into a channel reopened on the emptied store.
                        if let Some(deliverer) = &self.deliverer {
                            deliverer.drain();
                        }
                        self.states.remove(&channel);
                        let _ = done.send(self.store.clear(&channel));
                    }
                    Job::Hooks(writes) => {
                        self.hooks.events.extend(writes.events);
                        self.hooks.members.extend(writes.members);
                    }
                }
            }
            self.commit(&mut batch);
            if Instant::now() >= next_trim {
                next_trim = Instant::now() + self.settings.trim_every;
                self.trim();
            }
        }
    }

    /// Writes what the store held back for its next commit, when no commit is coming.
    fn flush_held(&self) {
        if let Err(err) = self.store.flush_held() {
            tracing::warn!("recording webhook deliveries failed: {err}");
        }
    }

    /// The channel's seq state, read from the store when not held.
    fn state(&mut self, channel: &Arc<str>, keep: u64) -> Result<&mut SeqState, StoreError> {
        if !self.states.contains_key(channel) {
            let capacity = keep.clamp(1, 10_000) as usize;
            let history = self.store.open_channel(channel, capacity)?;
            let mut ids = RecentIds {
                seqs: HashMap::new(),
                order: VecDeque::new(),
                capacity,
            };
            for (id, seq) in history.recent_ids {
                ids.insert(id, seq);
            }
            let state = SeqState {
                epoch: Arc::from(history.epoch.unwrap_or_else(new_epoch)),
                next_seq: history.last_seq.saturating_add(1),
                ids,
                complete: !history.more_ids,
                used: Instant::now(),
            };
            self.states.insert(channel.clone(), state);
        }
        let state = self
            .states
            .get_mut(channel)
            .ok_or_else(|| StoreError("seq state vanished".into()))?;
        state.used = Instant::now();
        Ok(state)
    }

    /// Decides what becomes of `message`: a new entry (added to `entries`), a resend, or a
    /// refusal.
    fn order(
        &mut self,
        message: &StoredMessage,
        entries: &mut Vec<NewEntry>,
        new_here: &mut HashSet<(Arc<str>, String)>,
    ) -> Outcome {
        let store = self.store.clone();
        let state = match self.state(&message.channel, message.keep) {
            Ok(state) => state,
            Err(err) => return Outcome::Refused(not_stored(err)),
        };
        if message.id_from_sender {
            let key = (message.channel.clone(), message.id.clone());
            if let Some(seq) = state.ids.seqs.get(&message.id) {
                return Outcome::Resend {
                    seq: *seq,
                    in_batch: new_here.contains(&key),
                };
            }
            if !state.complete {
                match store.seq_of(&message.channel, &message.id) {
                    Ok(Some(seq)) => {
                        return Outcome::Resend {
                            seq,
                            in_batch: false,
                        }
                    }
                    Ok(None) => {}
                    Err(err) => return Outcome::Refused(not_stored(err)),
                }
            }
            new_here.insert(key);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        if !state.ids.insert(message.id.clone(), seq) {
            state.complete = false;
        }
        let frame = message.template.fill(seq, &state.epoch);
        entries.push(NewEntry {
            channel: message.channel.to_string(),
            epoch: state.epoch.to_string(),
            seq,
            id: message.id.clone(),
            at_ms: message.at_ms,
            frame: frame.clone(),
        });
        Outcome::New {
            seq,
            epoch: state.epoch.clone(),
            frame,
        }
    }

    /// Orders and stores a batch (and records what back ends are to hear, in the same commit),
    /// then hands it over to be delivered and answered.
    fn commit(&mut self, batch: &mut Vec<StoredMessage>) {
        if batch.is_empty() && self.hooks.is_empty() {
            return;
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut new_here = HashSet::new();
        let outcomes: Vec<Outcome> = batch
            .iter()
            .map(|message| self.order(message, &mut entries, &mut new_here))
            .collect();
        let mut hooks = std::mem::take(&mut self.hooks);
        let membership = (hooks.events.len(), hooks.members.len());
        hooks
            .events
            .reserve(batch.iter().map(|message| message.hooks.len()).sum());
        for (message, outcome) in batch.iter().zip(&outcomes) {
            if let (Outcome::New { seq, epoch, .. }, false) = (outcome, message.hooks.is_empty()) {
                // Without a body when the store builds it from the message (see
                // `HookOutbox::builds_message_bodies`).
                let body = message
                    .hook_body
                    .as_ref()
                    .map_or_else(Bytes::new, |body| body.fill(*seq, epoch));
                for endpoint in &message.hooks {
                    hooks.events.push(OutboxEvent {
                        id: message_event_id(&message.channel, epoch, *seq),
                        endpoint: endpoint.to_string(),
                        channel: message.channel.to_string(),
                        kind: EventType::MessageStored,
                        body: body.clone(),
                        created_ms: message.at_ms,
                        message_seq: Some(*seq),
                    });
                }
            }
        }
        let stored = if entries.is_empty() && hooks.is_empty() {
            Ok(())
        } else {
            self.append(&entries, &hooks)
        };
        match &stored {
            Ok(()) if !hooks.events.is_empty() => {
                self.recorded.notify_one();
                self.recorded_lately = true;
            }
            Ok(()) => {}
            Err(_) => {
                // Membership is not the senders' to retry: keep it for the next commit.
                hooks.events.truncate(membership.0);
                hooks.members.truncate(membership.1);
                self.hooks = hooks;
            }
        }
        if let Err(why) = &stored {
            // Seqs handed out in this batch were not stored: reload them from the store.
            for entry in &entries {
                self.states.remove(entry.channel.as_str());
            }
            self.health.set(Some(why.clone()));
        } else if !entries.is_empty() || membership != (0, 0) {
            self.health.set(None);
        }
        let handoffs = batch
            .drain(..)
            .zip(outcomes)
            .map(|(message, outcome)| {
                let (stored, outcome) = match (outcome, &stored) {
                    (Outcome::Refused(refusal), _) => (None, Err(refusal)),
                    (
                        Outcome::Resend {
                            seq,
                            in_batch: false,
                        },
                        _,
                    )
                    | (Outcome::Resend { seq, .. }, Ok(())) => {
                        (None, Ok(Accepted { seq, resend: true }))
                    }
                    (Outcome::New { seq, epoch, frame }, Ok(())) => (
                        Some((seq, epoch, frame)),
                        Ok(Accepted { seq, resend: false }),
                    ),
                    (Outcome::New { .. } | Outcome::Resend { .. }, Err(why)) => {
                        (None, Err(not_stored(why)))
                    }
                };
                Handoff {
                    channel: message.channel,
                    stored,
                    answer: message.answer,
                    outcome,
                }
            })
            .collect();
        self.hand_over(handoffs);
    }

    /// Gives a commit's deliveries and answers to the deliverer, or carries them out here
    /// when there is none.
    fn hand_over(&self, handoffs: Vec<Handoff>) {
        match &self.deliverer {
            Some(deliverer) => deliverer.hand_over(handoffs),
            None => hand_off(&self.registry, handoffs, Writes::Queued),
        }
    }

    /// Appends, retrying a failed commit on a recovered store.
    fn append(&self, entries: &[NewEntry], hooks: &HookWrites) -> Result<(), String> {
        let started = Instant::now();
        let first = self.store.append(entries, hooks);
        self.registry
            .metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut failure = match first {
            Ok(()) => {
                self.registry
                    .metrics
                    .messages_stored
                    .inc_by(entries.len() as u64);
                return Ok(());
            }
            Err(err) => err,
        };
        for pause in RETRY_PAUSES {
            tracing::warn!(
                "storing {} messages failed, retrying: {failure}",
                entries.len()
            );
            std::thread::sleep(pause);
            if let Err(err) = self.store.recover() {
                failure = err;
                continue;
            }
            match self.store.append(entries, hooks) {
                Ok(()) => {
                    self.registry
                        .metrics
                        .messages_stored
                        .inc_by(entries.len() as u64);
                    return Ok(());
                }
                Err(err) => failure = err,
            }
        }
        Err(failure.to_string())
    }

    fn trim(&mut self) {
        match self.store.trim(self.settings.retention.as_ref(), now_ms()) {
            Ok(0) => {}
            Ok(dropped) => {
                tracing::debug!("trimmed {dropped} messages beyond the retention");
                // The store may have forgotten channels trimmed to nothing; what is cached of
                // them is read again on their next message.
                self.states.clear();
            }
            Err(err) => tracing::warn!("trimming history failed: {err}"),
        }
        if self.states.len() > IDLE_STATES {
            let idle_for = self.settings.trim_every.max(Duration::from_secs(60));
            self.states
                .retain(|_, state| state.used.elapsed() < idle_for);
        }
    }
}
