//! What a node writes to Redis: stored messages through the storing script (a thread of its
//! own, pipelining a batch per round trip), and everything else — transient frames, presence
//! changes — through a command queue on the node's Redis runtime, bounded in bytes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::{liveness, Link};
use crate::broker::queue::{Batch, JobReceiver};
use crate::broker::{not_stored, Accepted, StoredMessage};
use crate::history::{HistoryStore, Publish, Retention, StoreError};

/// Most messages sent to Redis in one pipeline.
const MAX_BATCH: usize = 1024;

/// Starts the node's Redis runtime on a thread of its own and returns its handle.
pub(crate) fn start_runtime() -> Result<tokio::runtime::Handle, StoreError> {
    let (handle_tx, handle_rx) = std_mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("switchboard-redis".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = handle_tx.send(Err(err.to_string()));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>());
        })
        .map_err(|err| StoreError(format!("cannot start the Redis thread: {err}")))?;
    handle_rx
        .recv()
        .map_err(|_| StoreError("the Redis thread did not start".into()))?
        .map_err(|err| StoreError(format!("cannot start the Redis runtime: {err}")))
}

/// Runs `work` on the Redis runtime and waits (at most 5 s) for its result; for start-up and
/// shutdown only, from threads that may block.
pub(crate) fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

/// A command, or a request to confirm that everything queued before it was written.
enum Queued {
    Command(redis::Cmd, usize),
    Flushed(std_mpsc::SyncSender<()>),
}

/// Commands for Redis that nobody waits for, written in order and pipelined; bounded in bytes.
#[derive(Debug)]
pub(crate) struct CommandQueue {
    tx: mpsc::UnboundedSender<Queued>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

impl CommandQueue {
    /// Starts the task that writes the queue.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        client: redis::Client,
        max_bytes: usize,
        lost_commands: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicUsize::new(0));
        runtime.spawn(write_commands(client, rx, bytes.clone(), lost_commands));
        Self {
            tx,
            bytes,
            max_bytes: max_bytes.max(1),
        }
    }

    /// Queues a command of about `size` bytes; false when the queue is over its budget (the
    /// command is dropped).
    pub(crate) fn send(&self, cmd: redis::Cmd, size: usize) -> bool {
        let before = self.bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        self.tx.send(Queued::Command(cmd, size)).is_ok()
    }

    /// Waits (at most 2 s) until everything queued so far is written.
    pub(crate) fn flush(&self) {
        let (tx, rx) = std_mpsc::sync_channel(1);
        if self.tx.send(Queued::Flushed(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Writes queued commands in order, pipelining whatever is waiting.
async fn write_commands(
    client: redis::Client,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    bytes: Arc<AtomicUsize>,
    lost_commands: Arc<AtomicBool>,
) {
    let mut conn = None;
    let mut received = Vec::with_capacity(256);
    let mut waiting = Vec::with_capacity(256);
    let mut flushed = Vec::new();
    while queue.recv_many(&mut received, 256).await > 0 {
        for item in received.drain(..) {
            match item {
                Queued::Command(cmd, size) => {
                    bytes.fetch_sub(size, Ordering::AcqRel);
                    waiting.push(cmd);
                }
                Queued::Flushed(done) => flushed.push(done),
            }
        }
        if !waiting.is_empty() {
            if conn.is_none() {
                match client.get_multiplexed_async_connection().await {
                    Ok(fresh) => conn = Some(fresh),
                    Err(err) => {
                        tracing::warn!(
                            "Redis unreachable, {} commands not sent: {err}",
                            waiting.len()
                        );
                        waiting.clear();
                        lost_commands.store(true, Ordering::Release);
                    }
                }
            }
            if let Some(live) = conn.as_mut() {
                let mut pipe = redis::pipe();
                for cmd in waiting.drain(..) {
                    pipe.add_command(cmd).ignore();
                }
                if let Err(err) = pipe.query_async::<()>(live).await {
                    tracing::warn!("writing to Redis failed: {err}");
                    lost_commands.store(true, Ordering::Release);
                    conn = None;
                }
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// How the writer trims the shared history.
pub(crate) struct Trimming {
    pub(crate) retention: Box<dyn Fn(&str) -> Retention + Send>,
    pub(crate) every: Duration,
}

/// Starts the thread that stores and publishes messages.
pub(crate) fn start_stored_writer(
    link: Arc<Link>,
    jobs: JobReceiver<StoredMessage>,
    trim: Trimming,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("switchboard-redis-writer".into())
        .spawn(move || write_stored(&link, &jobs, &trim))
        .map(drop)
        .map_err(|err| StoreError(format!("cannot start the Redis writer thread: {err}")))
}

fn write_stored(link: &Link, jobs: &JobReceiver<StoredMessage>, trim: &Trimming) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next_trim = Instant::now() + trim.every;
    loop {
        let wait = next_trim.saturating_duration_since(Instant::now());
        if let Batch::Closed = jobs.take(&mut batch, MAX_BATCH, wait) {
            return;
        }
        if !batch.is_empty() {
            publish(link, &mut batch);
        }
        if Instant::now() >= next_trim {
            next_trim = Instant::now() + trim.every;
            // One node trims the shared history per interval.
            if liveness::take_trim_turn(link, trim.every) {
                match link
                    .store
                    .trim(trim.retention.as_ref(), crate::time::now_ms())
                {
                    Ok(0) => {}
                    Ok(dropped) => tracing::debug!("trimmed {dropped} messages"),
                    Err(err) => tracing::warn!("trimming history failed: {err}"),
                }
            }
        }
    }
}

/// Stores and publishes a batch in one round trip, then answers each sender. Delivery comes
/// back through the subscription, as on every other node.
fn publish(link: &Link, batch: &mut Vec<StoredMessage>) {
    let proposed = crate::history::new_epoch();
    let messages: Vec<Publish<'_>> = batch
        .iter()
        .map(|message| Publish {
            channel: &message.channel,
            id: &message.id,
            at_ms: message.at_ms,
            head: message.template.head(),
            middle: message.template.middle(),
            tail: message.template.tail(),
            keep: message.keep,
            epoch: &proposed,
            hooks: &message.hooks,
            hook_body: message.hook_body.as_ref(),
        })
        .collect();
    let started = Instant::now();
    let outcome = link.store.publish_batch(&messages);
    let took = started.elapsed().as_secs_f64();
    let metrics = &link.registry.metrics;
    metrics.store_commit_seconds.observe(took);
    metrics.redis_round_trip_seconds.observe(took);
    if let Ok(answers) = &outcome {
        metrics
            .messages_stored
            .inc_by(answers.iter().filter(|a| !a.duplicate).count() as u64);
    }
    drop(messages);
    let failing = outcome.as_ref().err().map(ToString::to_string);
    {
        let mut state = link.failing.lock().unwrap_or_else(|e| e.into_inner());
        match (&*state, &failing) {
            (None, Some(why)) => {
                tracing::warn!("publishing {} messages failed: {why}", batch.len())
            }
            (Some(_), None) => tracing::info!("publishing to Redis works again"),
            _ => {}
        }
        *state = failing;
    }
    let recorded = batch
        .iter()
        .any(|m| m.hook_body.is_some() && !m.hooks.is_empty());
    match outcome {
        Ok(answers) => {
            if recorded {
                link.hooks_recorded.notify_one();
            }
            for (message, published) in batch.drain(..).zip(answers) {
                let accepted = Accepted {
                    seq: published.seq,
                    resend: published.duplicate,
                };
                let channel = message.channel.clone();
                message.answer.send(&channel, Ok(accepted));
            }
        }
        Err(err) => {
            for message in batch.drain(..) {
                let channel = message.channel.clone();
                message.answer.send(&channel, Err(not_stored(&err)));
            }
        }
    }
}
