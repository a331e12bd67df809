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
use crate::encode;
use crate::history::{HistoryStore, NewEntry, Retention};
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
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Pending>(queue.max(1));
        let spawned = std::thread::Builder::new()
            .name("switchboard-persister".into())
            .spawn(move || run(rx, &hub, store.as_ref(), retention, trim_every));
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

fn run(
    rx: mpsc::Receiver<Pending>,
    hub: &Weak<Inner>,
    store: &dyn HistoryStore,
    retention: Box<dyn Fn(&str) -> Retention + Send>,
    trim_every: Duration,
) {
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
            match store.trim(&*retention, now_ms()) {
                Ok(0) => {}
                Ok(dropped) => tracing::debug!("trimmed {dropped} messages beyond the retention"),
                Err(err) => tracing::warn!("trimming history failed: {err}"),
            }
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
