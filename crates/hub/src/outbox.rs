//! The bounded queue between the hub and one socket's writer.
//!
//! Fan-out never waits on a socket: it `try_send`s an already-encoded frame. A socket whose
//! queue is full is too slow for the channel; rather than grow memory or slow everyone else,
//! the hub marks it for closing with 1013 and the writer hangs up.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use switchboard_protocol::CloseCode;
use tokio::sync::mpsc;
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

/// The two lanes beside the bounded queue. The writer is woken for them through the closer's
/// waker; `waiting` lets it skip the lock when both lanes are empty (nearly always).
#[derive(Debug, Default)]
struct Lanes {
    inner: Mutex<LaneState>,
    waiting: AtomicBool,
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
    /// Armed while a volatile frame lingers.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Lanes {
    fn lock(&self) -> LanesGuard<'_> {
        LanesGuard {
            state: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            waiting: &self.waiting,
        }
    }

    fn maybe_waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }
}

/// The lanes, locked; unlocking updates the `waiting` flag.
struct LanesGuard<'a> {
    state: std::sync::MutexGuard<'a, LaneState>,
    waiting: &'a AtomicBool,
}

impl std::ops::Deref for LanesGuard<'_> {
    type Target = LaneState;
    fn deref(&self) -> &LaneState {
        &self.state
    }
}

impl std::ops::DerefMut for LanesGuard<'_> {
    fn deref_mut(&mut self) -> &mut LaneState {
        &mut self.state
    }
}

impl Drop for LanesGuard<'_> {
    fn drop(&mut self) {
        let waiting = !self.state.replay.is_empty() || !self.state.volatile_order.is_empty();
        self.waiting.store(waiting, Ordering::Release);
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
    /// Waits for the close order and returns its code. Must be polled by the task that owns
    /// the [`OutboxReceiver`] (they share one waker slot).
    pub async fn requested(&self) -> CloseCode {
        poll_fn(|cx| {
            // Register before checking, so an order given in between is not missed.
            self.0.waker.register(cx.waker());
            match self.0.pending() {
                Some(code) => Poll::Ready(code),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// A one-shot "close this socket with code N" signal that works even when the queue is full,
/// and the writer's wake-up for everything that does not come through the queue.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    code: AtomicU16,
    /// The socket writer's task: woken by a close order and by the replay and volatile lanes.
    waker: AtomicWaker,
}

impl Closer {
    pub(crate) fn close(&self, code: CloseCode) {
        if self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
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
        OutboxReceiver {
            rx,
            closer,
            lanes,
            linger: None,
        },
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
        self.closer.waker.wake();
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
        self.closer.waker.wake();
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
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`OutboxReceiver::next`] as a poll: one waker registration and, when both lanes are
    /// empty, no lock — this runs once per delivered frame.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Outbound> {
        // Register before checking, so a close or lane push in between is not missed.
        self.closer.waker.register(cx.waker());
        loop {
            if let Some(code) = self.closer.pending() {
                return Poll::Ready(Outbound::Close(code));
            }
            if self.lanes.maybe_waiting() {
                if let Some(frame) = self.lanes.lock().replay.pop_front() {
                    return Poll::Ready(Outbound::Frame(frame));
                }
            }
            // Every sender gone means the session ended; the reader side decides how the
            // socket closes then (the close order wakes us).
            if let Poll::Ready(Some(frame)) = self.rx.poll_recv(cx) {
                return Poll::Ready(Outbound::Frame(frame));
            }
            if !self.lanes.maybe_waiting() {
                return Poll::Pending;
            }
            let mut lanes = self.lanes.lock();
            let Some(since) = lanes.volatile_since else {
                return Poll::Pending;
            };
            let due = since + VOLATILE_LINGER;
            if tokio::time::Instant::now() >= due {
                if let Some(frame) = lanes.pop_volatile() {
                    return Poll::Ready(Outbound::Frame(frame));
                }
                continue;
            }
            drop(lanes);
            let linger = self
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if linger.deadline() != due {
                linger.as_mut().reset(due);
            }
            if linger.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// A replayed or queued frame, if one is waiting (never a volatile one).
    fn try_next_urgent(&mut self) -> Option<Bytes> {
        if self.closer.pending().is_some() {
            return None;
        }
        if self.lanes.maybe_waiting() {
            if let Some(frame) = self.lanes.lock().replay.pop_front() {
                return Some(frame);
            }
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
        self.try_next_urgent().or_else(|| {
            self.lanes
                .maybe_waiting()
                .then(|| self.lanes.lock().pop_volatile())
                .flatten()
        })
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
    async fn a_close_order_and_a_replay_wake_a_waiting_writer() {
        let (outbox, mut rx) = outbox(4);
        let waiting = tokio::spawn(async move {
            let first = rx.next().await;
            let second = rx.next().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        outbox.replay([Bytes::from_static(b"missed")]);
        tokio::task::yield_now().await;
        outbox.close(CloseCode::ServiceRestart);
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first, Outbound::Frame(Bytes::from_static(b"missed")));
        assert_eq!(second, Outbound::Close(CloseCode::ServiceRestart));
    }

    #[tokio::test]
    async fn a_close_signal_fires_while_the_writer_is_busy_elsewhere() {
        let (outbox, rx) = outbox(4);
        let signal = rx.close_signal();
        let waiting = tokio::spawn(async move { signal.requested().await });
        tokio::task::yield_now().await;
        outbox.close(CloseCode::TryAgainLater);
        assert_eq!(waiting.await.unwrap(), CloseCode::TryAgainLater);
        drop(rx);
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
