//! The persister: one thread that stores messages in batches and only then delivers them.
//!
//! Sessions assign each message its seq under the channel's lock and hand it here in that
//! order. The thread takes everything waiting (up to a batch), commits it in one transaction,
//! then delivers each message to its channel and sends the sender's ok. So a message is never
//! seen before it is durable, an ok always means stored, and one writer keeps commits in seq
//! order. Between batches it trims history to the retention.
//!
//! If a commit fails, the store is no longer trusted: the batch's senders get `internal`, and
//! every later message is refused the same way (rather than stored after a hole in `seq`)
//! until the server is restarted.

use bytes::Bytes;
use serde_json::value::RawValue;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_protocol::ErrorCode;

use crate::channel::Channel;
use crate::cluster::Cluster;
use crate::encode;
use crate::history::{HistoryStore, NewEntry, Publish, Retention};
use crate::hub::Inner;
use crate::outbox::Outbox;

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 1024;

/// A message waiting to be stored.
pub(crate) struct Pending {
    pub(crate) channel: Arc<Channel>,
    pub(crate) entry: NewEntry,
    /// The sending socket's outbox (none for server-side events).
    pub(crate) sender: Option<Outbox>,
    /// The sender's `options.ref`, when it asked for a reply.
    pub(crate) reference: Option<Box<RawValue>>,
    /// On a cluster: where the seq (encoded as `0`) sits in the frame; Redis assigns it.
    pub(crate) seq_at: Option<usize>,
}

/// Handle to the persister thread.
#[derive(Debug)]
pub(crate) struct Persister {
    tx: SyncSender<Pending>,
}

impl Persister {
    /// Starts the thread.
    pub(crate) fn start(
        hub: Weak<Inner>,
        store: Arc<dyn HistoryStore>,
        queue: usize,
        retention: Box<dyn Fn(&str) -> Retention + Send>,
        trim_every: Duration,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Pending>(queue.max(1));
        let spawned = std::thread::Builder::new()
            .name("switchboard-persister".into())
            .spawn(move || {
                let context = Context {
                    hub,
                    store,
                    retention,
                    trim_every,
                    cluster,
                };
                run(rx, &context);
            });
        if let Err(err) = spawned {
            tracing::error!("cannot start the persister thread: {err}");
        }
        Self { tx }
    }

    /// Queues a message; refused with `overloaded` when the queue is full.
    pub(crate) fn submit(&self, pending: Pending) -> Result<(), (ErrorCode, String)> {
        match self.tx.try_send(pending) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err((
                ErrorCode::Overloaded,
                "the server is storing messages slower than they arrive; retry shortly".into(),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err((ErrorCode::Internal, "message storage has stopped".into()))
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the persister thread works with.
struct Context {
    hub: Weak<Inner>,
    store: Arc<dyn HistoryStore>,
    retention: Box<dyn Fn(&str) -> Retention + Send>,
    trim_every: Duration,
    cluster: Option<Arc<Cluster>>,
}

fn run(rx: mpsc::Receiver<Pending>, context: &Context) {
    let Context {
        hub,
        store,
        retention,
        trim_every,
        ..
    } = context;
    let (store, trim_every) = (store.as_ref(), *trim_every);
    let mut failed = false;
    let mut next_trim = Instant::now() + trim_every;
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<NewEntry> = Vec::with_capacity(MAX_BATCH);
    loop {
        let wait = next_trim.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(first) => batch.push(first),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if let (Some(cluster), false) = (&context.cluster, batch.is_empty()) {
            // Redis assigns seqs and publishes; delivery comes back through the subscription.
            // A failure refuses this batch only: Redis hands out seqs, so no hole can follow.
            publish(cluster, &mut batch, retention.as_ref());
        }
        if !batch.is_empty() {
            entries.clear();
            entries.extend(batch.iter().map(|p| p.entry.clone()));
            let outcome = if failed {
                Err("an earlier commit failed; restart the server".to_string())
            } else {
                store.append(&entries).map_err(|err| err.to_string())
            };
            let mut touched: Vec<Arc<Channel>> = Vec::new();
            for pending in &batch {
                if !touched.iter().any(|c| Arc::ptr_eq(c, &pending.channel)) {
                    touched.push(pending.channel.clone());
                }
            }
            match outcome {
                Ok(()) => deliver(batch.drain(..)),
                Err(why) => {
                    if !failed {
                        tracing::error!(
                            "storing messages failed, refusing new ones until restart: {why}"
                        );
                    }
                    failed = true;
                    refuse(batch.drain(..), &why);
                }
            }
            if let Some(hub) = hub.upgrade() {
                for channel in &touched {
                    hub.prune_if_idle(channel);
                }
            }
        }
        if Instant::now() >= next_trim {
            next_trim = Instant::now() + trim_every;
            // On a cluster one node trims the shared history per interval.
            let my_turn = context
                .cluster
                .as_ref()
                .is_none_or(|cluster| cluster.take_trim_turn(trim_every));
            if !my_turn {
                continue;
            }
            match store.trim(retention.as_ref(), now_ms()) {
                Ok(0) => {}
                Ok(dropped) => tracing::debug!("trimmed {dropped} messages beyond the retention"),
                Err(err) => tracing::warn!("trimming history failed: {err}"),
            }
        }
    }
}

fn publish(cluster: &Cluster, batch: &mut Vec<Pending>, retention: &dyn Fn(&str) -> Retention) {
    let messages: Vec<Publish<'_>> = batch
        .iter()
        .map(|pending| {
            let frame = &pending.entry.frame;
            let at = pending.seq_at.unwrap_or(0).min(frame.len());
            Publish {
                channel: &pending.entry.channel,
                id: &pending.entry.id,
                at_ms: pending.entry.at_ms,
                head: &frame[..at],
                tail: &frame[(at + 1).min(frame.len())..],
                keep: retention(&pending.entry.channel).count,
            }
        })
        .collect();
    match cluster.store.publish_batch(&messages) {
        Ok(seqs) => {
            drop(messages);
            for (pending, (seq, _)) in batch.drain(..).zip(seqs) {
                if let (Some(outbox), Some(reference)) = (pending.sender, pending.reference) {
                    outbox.push(encode::reply_stored(
                        &pending.entry.channel,
                        &reference,
                        seq,
                    ));
                }
            }
        }
        Err(err) => {
            drop(messages);
            tracing::warn!("publishing {} messages failed: {err}", batch.len());
            refuse(batch.drain(..), &err.to_string());
        }
    }
}

fn deliver(committed: impl Iterator<Item = Pending>) {
    for pending in committed {
        let frame: &Bytes = &pending.entry.frame;
        pending
            .channel
            .lock()
            .deliver_stored(pending.entry.seq, frame);
        if let (Some(outbox), Some(reference)) = (pending.sender, pending.reference) {
            outbox.push(encode::reply_stored(
                &pending.entry.channel,
                &reference,
                pending.entry.seq,
            ));
        }
    }
}

fn refuse(batch: impl Iterator<Item = Pending>, why: &str) {
    for pending in batch {
        pending.channel.lock().abandon_pending();
        let Some(outbox) = pending.sender else {
            continue;
        };
        let message = format!("the message was not stored: {why}");
        let channel = Some(pending.entry.channel.as_str());
        outbox.push(match pending.reference {
            Some(reference) => {
                encode::reply(channel, &reference, Err((ErrorCode::Internal, &message)))
            }
            None => encode::error(channel, ErrorCode::Internal, &message),
        });
    }
}
