//! The bounded queue between the hub and one socket's writer.
//!
//! Fan-out never waits on a socket: it `try_send`s an already-encoded frame. A socket whose
//! queue is full is too slow for the channel; rather than grow memory or slow everyone else,
//! the hub marks it for closing with 1013 and the writer hangs up.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use switchboard_protocol::CloseCode;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

/// Sending half, held by the hub for each member of a channel.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Bytes>,
    closer: Arc<Closer>,
    lanes: Arc<Lanes>,
}

/// Most distinct (channel, sender) volatile streams waiting for one socket.
const MAX_VOLATILE_STREAMS: usize = 512;

/// Which volatile stream a frame belongs to: one channel, one sender.
pub(crate) type VolatileKey = (Arc<str>, Uuid);

/// The two lanes beside the bounded queue, and the bell that wakes the writer for them.
#[derive(Debug, Default)]
struct Lanes {
    inner: Mutex<LaneState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct LaneState {
    /// Missed messages for a resuming socket: written before anything else, and not counted
    /// against the queue's capacity (a long resume is not a slow consumer).
    replay: VecDeque<Bytes>,
    /// The latest volatile frame per stream: a newer one replaces an unsent older one, so a
    /// slow reader gets the freshest position, not a backlog.
    volatile: HashMap<VolatileKey, Bytes>,
    volatile_order: VecDeque<VolatileKey>,
    /// When the oldest waiting volatile frame arrived.
    volatile_since: Option<tokio::time::Instant>,
}

/// How long a volatile frame may wait for others to share its write. Cursor updates arrive
/// tens of milliseconds apart per sender; batching a few milliseconds of them into one write
/// cuts the server's per-delivery cost several times for an imperceptible delay.
const VOLATILE_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// What happened to a volatile frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VolatileOutcome {
    /// Waiting to be written.
    Queued,
    /// Replaced an older unsent frame of the same stream.
    Coalesced,
    /// Too many streams waiting for this socket; the frame was dropped.
    Dropped,
}

/// What the socket writer should do next.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    /// Write this text frame (UTF-8 JSON).
    Frame(Bytes),
    /// Close the socket with this code.
    Close(CloseCode),
}

/// Receiving half, owned by the socket's writer.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::Receiver<Bytes>,
    closer: Arc<Closer>,
    lanes: Arc<Lanes>,
}

impl Lanes {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LaneState {
    fn pop_volatile(&mut self) -> Option<Bytes> {
        let key = self.volatile_order.pop_front()?;
        if self.volatile_order.is_empty() {
            self.volatile_since = None;
        }
        self.volatile.remove(&key)
    }
}

/// Resolves when the socket is ordered to close.
#[derive(Debug, Clone)]
pub struct CloseSignal(Arc<Closer>);

impl CloseSignal {
    /// Waits for the close order and returns its code.
    pub async fn requested(&self) -> CloseCode {
        self.0.requested().await
    }
}

/// A one-shot "close this socket with code N" signal that works even when the queue is full.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    code: AtomicU16,
    notify: Notify,
}

impl Closer {
    pub(crate) fn close(&self, code: CloseCode) {
        if self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_waiters();
        }
    }

    /// Resolves once a close was ordered, with its code.
    async fn requested(&self) -> CloseCode {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so an order given in between is not missed.
            notified.as_mut().enable();
            if let Some(code) = self.pending() {
                return code;
            }
            notified.await;
        }
    }

    fn pending(&self) -> Option<CloseCode> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            1008 => Some(CloseCode::PolicyViolation),
            1009 => Some(CloseCode::MessageTooBig),
            1012 => Some(CloseCode::ServiceRestart),
            _ => Some(CloseCode::TryAgainLater),
        }
    }
}

pub(crate) fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let closer = Arc::new(Closer::default());
    let lanes = Arc::new(Lanes::default());
    (
        Outbox {
            tx,
            closer: closer.clone(),
            lanes: lanes.clone(),
        },
        OutboxReceiver { rx, closer, lanes },
    )
}

impl Outbox {
    /// Queues a frame; a full queue marks the socket as too slow and drops the frame.
    pub(crate) fn push(&self, frame: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            self.closer.close(CloseCode::TryAgainLater);
        }
    }

    /// Queues missed messages ahead of the live queue.
    pub(crate) fn replay(&self, frames: impl IntoIterator<Item = Bytes>) {
        self.lanes.lock().replay.extend(frames);
        self.lanes.wake.notify_one();
    }

    /// Queues a volatile frame, replacing the unsent one of the same stream.
    pub(crate) fn push_volatile(&self, key: &VolatileKey, frame: Bytes) -> VolatileOutcome {
        let mut lanes = self.lanes.lock();
        if let Some(waiting) = lanes.volatile.get_mut(key) {
            *waiting = frame;
            return VolatileOutcome::Coalesced;
        }
        if lanes.volatile.len() >= MAX_VOLATILE_STREAMS {
            return VolatileOutcome::Dropped;
        }
        lanes.volatile.insert(key.clone(), frame);
        lanes.volatile_order.push_back(key.clone());
        lanes
            .volatile_since
            .get_or_insert_with(tokio::time::Instant::now);
        drop(lanes);
        self.lanes.wake.notify_one();
        VolatileOutcome::Queued
    }

    pub(crate) fn close(&self, code: CloseCode) {
        self.closer.close(code);
    }

    pub(crate) fn closer(&self) -> Arc<Closer> {
        self.closer.clone()
    }
}

impl OutboxReceiver {
    /// Waits for the next frame to write, or for the order to close. A close order wins over
    /// queued frames: a socket closed as too slow must not drain its backlog first.
    pub async fn next(&mut self) -> Outbound {
        loop {
            if let Some(frame) = self.try_next_urgent() {
                return Outbound::Frame(frame);
            }
            let linger_until = self
                .lanes
                .lock()
                .volatile_since
                .map(|since| since + VOLATILE_LINGER);
            if let Some(until) = linger_until {
                if tokio::time::Instant::now() >= until {
                    if let Some(frame) = self.lanes.lock().pop_volatile() {
                        return Outbound::Frame(frame);
                    }
                    continue;
                }
            }
            let linger = async {
                match linger_until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                code = self.closer.requested() => return Outbound::Close(code),
                () = self.lanes.wake.notified() => continue,
                frame = self.rx.recv() => match frame {
                    Some(frame) => return Outbound::Frame(frame),
                    // Every sender is gone only after the session ended; the reader side
                    // decides how the socket closes then.
                    None => return Outbound::Close(self.closer.requested().await),
                },
                () = linger => continue,
            }
        }
    }

    /// A replayed or queued frame, if one is waiting (never a volatile one).
    fn try_next_urgent(&mut self) -> Option<Bytes> {
        if self.closer.pending().is_some() {
            return None;
        }
        if let Some(frame) = self.lanes.lock().replay.pop_front() {
            return Some(frame);
        }
        self.rx.try_recv().ok()
    }

    /// A handle that resolves when a close is ordered; lets the writer abandon a write that
    /// a stalled client is blocking.
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal(self.closer.clone())
    }

    /// Takes a frame that is already queued, without waiting; lets the writer batch frames
    /// into one flush.
    /// The order: replayed messages, then the queue, then volatile frames (chat before cursors).
    pub fn try_next(&mut self) -> Option<Bytes> {
        if self.closer.pending().is_some() {
            return None;
        }
        self.try_next_urgent()
            .or_else(|| self.lanes.lock().pop_volatile())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_turns_into_close_1013() {
        let (outbox, mut rx) = outbox(2);
        for n in 0..3 {
            outbox.push(Bytes::from(format!("{n}")));
        }
        assert_eq!(rx.next().await, Outbound::Close(CloseCode::TryAgainLater));
    }

    #[tokio::test]
    async fn replayed_frames_come_first_and_do_not_count_against_capacity() {
        let (outbox, mut rx) = outbox(2);
        outbox.push(Bytes::from_static(b"live"));
        outbox.replay((0..10).map(|n| Bytes::from(n.to_string())));
        for n in 0..10 {
            assert_eq!(rx.next().await, Outbound::Frame(Bytes::from(n.to_string())));
        }
        assert_eq!(
            rx.next().await,
            Outbound::Frame(Bytes::from_static(b"live"))
        );
        assert_eq!(rx.try_next(), None);
    }

    #[tokio::test]
    async fn volatile_frames_keep_only_the_latest_per_stream_and_yield_to_the_queue() {
        let (outbox, mut rx) = outbox(4);
        let mover: VolatileKey = (Arc::from("room"), Uuid::new_v4());
        let other: VolatileKey = (Arc::from("room"), Uuid::new_v4());
        assert_eq!(
            outbox.push_volatile(&mover, Bytes::from_static(b"m1")),
            VolatileOutcome::Queued
        );
        assert_eq!(
            outbox.push_volatile(&other, Bytes::from_static(b"o1")),
            VolatileOutcome::Queued
        );
        assert_eq!(
            outbox.push_volatile(&mover, Bytes::from_static(b"m2")),
            VolatileOutcome::Coalesced
        );
        outbox.push(Bytes::from_static(b"chat"));
        assert_eq!(
            rx.next().await,
            Outbound::Frame(Bytes::from_static(b"chat"))
        );
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from_static(b"m2")));
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from_static(b"o1")));
        assert_eq!(rx.try_next(), None);
    }

    #[tokio::test]
    async fn a_volatile_frame_wakes_a_waiting_writer() {
        let (outbox, mut rx) = outbox(4);
        let waiting = tokio::spawn(async move { rx.next().await });
        tokio::task::yield_now().await;
        let key: VolatileKey = (Arc::from("room"), Uuid::new_v4());
        outbox.push_volatile(&key, Bytes::from_static(b"cursor"));
        assert_eq!(
            waiting.await.unwrap(),
            Outbound::Frame(Bytes::from_static(b"cursor"))
        );
    }

    #[tokio::test]
    async fn frames_arrive_in_order() {
        let (outbox, mut rx) = outbox(4);
        outbox.push(Bytes::from_static(b"a"));
        outbox.push(Bytes::from_static(b"b"));
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from_static(b"a")));
        assert_eq!(rx.try_next(), Some(Bytes::from_static(b"b")));
        assert_eq!(rx.try_next(), None);
    }
}
