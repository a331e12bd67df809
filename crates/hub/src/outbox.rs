//! The bounded queue between the hub and one socket's writer.
//!
//! Fan-out never waits on a socket: it pushes an already-encoded frame. Everything waiting for
//! one socket counts against its budget in bytes (and its queue against a number of frames):
//! a socket over either is too slow for its channels, and rather than grow memory or slow
//! everyone else the hub orders it closed with 1013 and the writer hangs up. So a client can
//! cost the server at most its budget, whatever it asks for.
//!
//! Three lanes, written in this order:
//! - the **lane** of answers that must come before anything live: presence lists, and *plans*
//!   that the writer carries out itself when it gets to them — the missed messages of a resume,
//!   a `history` answer — reading the store a page at a time, so a long resume or a history of
//!   large messages never sits in memory whole;
//! - the **queue** of live frames (chat messages, replies, presence changes);
//! - **volatile** frames (cursor positions): the newest per sender, written last, after a few
//!   milliseconds' linger so several share one write.
//!
//! A live frame for a socket whose writer waits with nothing in hand (every lane empty,
//! everything written) skips the queue: the fan-out writes it to the socket's [`Wire`] itself,
//! without waking the socket's task. The decision is made under the lanes' lock, and the writer
//! takes frames and goes idle under the same lock, so a frame never overtakes one queued before
//! it.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use switchboard_protocol::{CloseCode, ErrorCode};
use uuid::Uuid;

use crate::encode;
use crate::history::{HistoryReader, StoredFrame};

/// Most distinct (channel, sender) volatile streams waiting for one socket.
const MAX_VOLATILE_STREAMS: usize = 512;

/// Messages read from the store per page of a resume.
const RESUME_PAGE_MESSAGES: usize = 256;

/// Bytes of frames read from the store per page of a resume (at least one message).
const RESUME_PAGE_BYTES: usize = 256 * 1024;

/// Largest `history` frame: older messages are left out beyond it (at least one is sent);
/// clients page back with `before`.
pub const MAX_HISTORY_FRAME_BYTES: usize = 1024 * 1024;

/// How long a volatile frame may wait for others to share its write. Cursor updates arrive
/// tens of milliseconds apart per sender; batching a few milliseconds of them into one write
/// cuts the server's per-delivery cost several times for an imperceptible delay.
const VOLATILE_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// A socket that the fan-out may write to itself while its writer is idle (see the module's
/// documentation). Implemented by the transport over the socket's writing half.
pub trait Wire: Send + Sync {
    /// Writes `frame` without waiting.
    fn try_send(&self, frame: &Bytes) -> WireSend;
}

/// What became of a frame offered to a [`Wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireSend {
    /// All of it is on the socket.
    Sent,
    /// It was taken, but not all of it went out (the socket is full or busy, or failed): the
    /// writer flushes it next ([`Outbound::Flush`]).
    Unflushed,
    /// Nothing was taken: it goes through the queue.
    Refused,
}

/// Which volatile stream a frame belongs to: one channel, one sender.
pub(crate) type VolatileKey = (Arc<str>, Uuid);

/// How much may wait for one socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Frames in the live queue.
    pub(crate) frames: usize,
    /// Bytes in all lanes together.
    pub(crate) bytes: usize,
}

/// Work the writer does itself when it reaches it in the lane.
#[derive(Debug)]
pub(crate) enum Plan {
    /// A resume: the stored messages of `channel` after `after` up to `up_to`, in order, with
    /// a `gap` for any no longer stored.
    Resume {
        channel: Arc<str>,
        epoch: Arc<str>,
        after: u64,
        up_to: u64,
    },
    /// A `history` frame: the latest `limit` messages before `before` (up to `up_to` at
    /// most), then the reply to the request, if it had a ref.
    History {
        channel: Arc<str>,
        before: Option<u64>,
        limit: usize,
        reference: Option<Box<RawValue>>,
    },
}

/// One item of the lane.
#[derive(Debug)]
enum LaneItem {
    Frame(Bytes),
    Plan(Plan),
}

/// Sending half, held by the hub for each member of a channel.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

/// What both halves share. Laid out (`repr(C)`) in the order a delivery touches it — the
/// close order and the writer's waker, the flags, the byte count and limits, then the lock
/// and the live queue with the socket's wire — and small: 144 bytes, 160 with the `Arc`'s
/// counts, so three cache lines, four at worst (every lane but the live queue is boxed, and a
/// delivery looks into the box only when something waits there). With a thousand sockets in a
/// room, each delivery finds its socket's state out of the cache, and every further line it
/// touches is another wait on memory.
#[derive(Debug)]
#[repr(C)]
struct Shared {
    closer: Closer,
    /// Lets the writer (and an idle socket's every wake-up) skip the lock when nothing waits.
    waiting: AtomicBool,
    /// The writer is gone: frames pushed now would never be written.
    gone: AtomicBool,
    /// Most frames in the live queue (beside the flags, where it costs no room).
    max_frames: u32,
    /// Bytes waiting in every lane.
    bytes: AtomicUsize,
    /// What a delivery touches next, only ever prefetched: the socket's [`Wire`] once there is
    /// one, before that the writer's task.
    wake_hint: AtomicPtr<()>,
    max_bytes: usize,
    /// The bytes waiting in every socket's outbox, for `/metrics`.
    total: Gauge<i64, AtomicI64>,
    lanes: Mutex<LaneState>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A socket closed with a backlog takes its bytes out of the total.
        self.total.dec_by(self.bytes.load(Ordering::Acquire) as i64);
    }
}

/// Everything waiting for one socket, under one lock. Plain queues rather than a channel: an
/// idle socket's empty queues cost nothing, where a channel allocates its first block (about
/// a kilobyte) up front. The live queue is inline and the rest boxed, allocated when first
/// used: the lock's word then sits beside the queue (one cache line for a delivery, not two),
/// and a socket that never gets a cursor, a resume or a presence list pays 8 bytes for them.
#[derive(Debug, Default)]
struct LaneState {
    /// Live frames, in order.
    queue: VecDeque<Bytes>,
    rest: Option<Box<Lanes>>,
    /// Something waits in `rest`: kept here so a delivery need not look into the box.
    rest_waiting: bool,
    /// `rest` was handed out since the last unlock, so `rest_waiting` must be worked out again.
    rest_touched: bool,
    /// The writer waits with nothing in hand and everything written: with nothing waiting
    /// here either, a live frame may go straight to the wire.
    writer_idle: bool,
    /// A frame went to the wire but not all of it out: the writer flushes before anything else.
    flush_due: bool,
    /// The socket, while its writer lives.
    wire: Option<Arc<dyn Wire>>,
}

impl std::fmt::Debug for dyn Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

/// The lanes besides the live queue.
#[derive(Debug, Default)]
struct Lanes {
    lane: VecDeque<LaneItem>,
    /// The latest volatile frame per stream: a newer one replaces an unsent older one, so a
    /// slow reader gets the freshest position, not a backlog.
    volatile: HashMap<VolatileKey, Bytes>,
    volatile_order: VecDeque<VolatileKey>,
    /// When the oldest waiting volatile frame arrived.
    volatile_since: Option<tokio::time::Instant>,
}

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
    /// Send the client a ping (the reading side asked for one; see [`crate::Session::pinger`]).
    Ping,
    /// Finish writing what a fan-out left half-written on the socket ([`WireSend::Unflushed`]).
    Flush,
}

/// What the lanes hold next, as the writer polls them.
enum Ready {
    Frame(Bytes),
    Plan(Plan),
    Close(CloseCode),
    Ping,
    Flush,
}

/// Receiving half, owned by the socket's writer.
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
    reader: HistoryReader,
    /// Armed while a volatile frame lingers.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last poll waited for a lingering volatile frame: the next will likely wait again,
    /// so it registers the waker up front rather than checking everything twice.
    lingering: bool,
    /// A wire was attached ([`OutboxReceiver::attach_wire`]).
    wired: bool,
    /// This writer marked itself idle and has taken nothing since. Whoever makes it not idle
    /// (a half-written frame, a queued one) also makes something wait, so while nothing waits
    /// the mark stands and parking again needs no lock.
    idle: bool,
}

impl Shared {
    fn lock(&self) -> LanesGuard<'_> {
        LanesGuard {
            state: self.lanes.lock().unwrap_or_else(|e| e.into_inner()),
            waiting: &self.waiting,
        }
    }

    /// Registers the writer's waker, and (until the socket has a wire) remembers where its
    /// task lives so a fan-out can prefetch it ([`Outbox::prefetch_writer`]).
    fn register(&self, waker: &std::task::Waker, wired: bool) {
        self.closer.waker.register(waker);
        if !wired {
            self.wake_hint
                .store(waker.data().cast_mut(), Ordering::Relaxed);
        }
    }

    fn maybe_waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// Counts `len` more bytes waiting; false (and the socket ordered closed) when that
    /// breaks the budget.
    fn reserve(&self, len: usize) -> bool {
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            self.closer.close(CloseCode::TryAgainLater);
            return false;
        }
        self.total.inc_by(len as i64);
        true
    }

    fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.total.dec_by(len as i64);
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
        let state = &mut *self.state;
        if std::mem::take(&mut state.rest_touched) {
            state.rest_waiting = state
                .rest
                .as_ref()
                .is_some_and(|rest| !rest.lane.is_empty() || !rest.volatile_order.is_empty());
        }
        let waiting = !state.queue.is_empty() || state.rest_waiting || state.flush_due;
        self.waiting.store(waiting, Ordering::Release);
    }
}

impl LaneState {
    /// The other lanes, allocated on first use.
    fn rest(&mut self) -> &mut Lanes {
        self.rest_touched = true;
        self.rest.get_or_insert_with(Box::default)
    }

    /// The other lanes when something waits in them (without looking into the box otherwise).
    fn waiting_rest(&mut self) -> Option<&mut Lanes> {
        if self.rest_waiting {
            Some(self.rest())
        } else {
            None
        }
    }

    fn pop_volatile(&mut self) -> Option<Bytes> {
        self.waiting_rest()?.pop_volatile()
    }
}

impl Lanes {
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
pub struct CloseSignal(Arc<Shared>);

impl CloseSignal {
    /// Waits for the close order and returns its code. Must be polled by the task that owns
    /// the [`OutboxReceiver`] (they share one waker slot).
    pub async fn requested(&self) -> CloseCode {
        poll_fn(|cx| {
            // Register before checking, so an order given in between is not missed.
            self.0.closer.waker.register(cx.waker());
            match self.0.closer.pending() {
                Some(code) => Poll::Ready(code),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The close order given so far, if any.
    pub fn given(&self) -> Option<CloseCode> {
        self.0.closer.pending()
    }
}

/// A one-shot "close this socket with code N" signal that works even when the queue is full,
/// and the writer's wake-up for everything that does not come through the queue.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    code: AtomicU16,
    /// A ping is wanted: written ahead of waiting frames, like a close.
    ping: AtomicBool,
    /// The socket writer's task: woken by a close order and by the lane and volatile frames.
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

    fn ping(&self) {
        if !self.ping.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Takes the ping request, if any (one load when there is none).
    fn take_ping(&self) -> bool {
        self.ping.load(Ordering::Acquire) && self.ping.swap(false, Ordering::AcqRel)
    }

    fn pending(&self) -> Option<CloseCode> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => Some(CloseCode::from_code(code).unwrap_or(CloseCode::TryAgainLater)),
        }
    }
}

pub(crate) fn outbox(
    budget: Budget,
    reader: HistoryReader,
    total: Gauge<i64, AtomicI64>,
) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        closer: Closer::default(),
        bytes: AtomicUsize::new(0),
        wake_hint: AtomicPtr::new(std::ptr::null_mut()),
        max_bytes: budget.bytes.max(1),
        max_frames: u32::try_from(budget.frames.max(1)).unwrap_or(u32::MAX),
        lanes: Mutex::new(LaneState::default()),
        waiting: AtomicBool::new(false),
        gone: AtomicBool::new(false),
        total,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver {
            shared,
            reader,
            linger: None,
            lingering: false,
            wired: false,
            idle: false,
        },
    )
}

impl Outbox {
    /// Writes a frame straight to the socket when its writer is idle and nothing waits for
    /// it, and queues it otherwise; a full queue or budget marks the socket as too slow and
    /// drops it.
    pub(crate) fn push(&self, frame: Bytes) {
        self.push_with(frame, true);
    }

    /// Queues a frame for the socket's own task to write, even when the caller could write it:
    /// how a fan-out leaves part of a large room to the runtime's other workers.
    pub(crate) fn push_queued(&self, frame: Bytes) {
        self.push_with(frame, false);
    }

    fn push_with(&self, frame: Bytes, direct: bool) {
        if self.shared.gone.load(Ordering::Acquire) {
            return;
        }
        let mut lanes = self.shared.lock();
        if direct
            && lanes.writer_idle
            && lanes.queue.is_empty()
            && !lanes.rest_waiting
            && self.shared.closer.pending().is_none()
        {
            if let Some(wire) = &lanes.wire {
                match wire.try_send(&frame) {
                    WireSend::Sent => return,
                    WireSend::Unflushed => {
                        lanes.writer_idle = false;
                        lanes.flush_due = true;
                        drop(lanes);
                        self.shared.closer.waker.wake();
                        return;
                    }
                    WireSend::Refused => {}
                }
            }
        }
        if lanes.queue.len() >= self.shared.max_frames as usize {
            drop(lanes);
            self.shared.closer.close(CloseCode::TryAgainLater);
            return;
        }
        if !self.shared.reserve(frame.len()) {
            return;
        }
        lanes.queue.push_back(frame);
        drop(lanes);
        self.shared.closer.waker.wake();
    }

    /// Puts a frame in the lane, ahead of anything live.
    pub(crate) fn push_first(&self, frame: Bytes) {
        if !self.shared.reserve(frame.len()) {
            return;
        }
        self.shared
            .lock()
            .rest()
            .lane
            .push_back(LaneItem::Frame(frame));
        self.shared.closer.waker.wake();
    }

    /// Puts a plan in the lane. A resume of a channel whose earlier resume has not started is
    /// merged into it; a `history` plan while another is waiting is refused (false).
    pub(crate) fn plan(&self, plan: Plan) -> bool {
        let mut lanes = self.shared.lock();
        match &plan {
            Plan::Resume {
                channel,
                epoch,
                after,
                up_to,
            } => {
                let earlier = lanes.rest().lane.iter_mut().find_map(|item| match item {
                    LaneItem::Plan(Plan::Resume {
                        channel: c,
                        epoch: e,
                        after: a,
                        up_to: u,
                    }) if c == channel && e == epoch => Some((a, u)),
                    _ => None,
                });
                if let Some((a, u)) = earlier {
                    *a = (*a).min(*after);
                    *u = (*u).max(*up_to);
                    return true;
                }
            }
            Plan::History { .. } => {
                let waiting = lanes
                    .rest()
                    .lane
                    .iter()
                    .any(|item| matches!(item, LaneItem::Plan(Plan::History { .. })));
                if waiting {
                    return false;
                }
            }
        }
        lanes.rest().lane.push_back(LaneItem::Plan(plan));
        drop(lanes);
        self.shared.closer.waker.wake();
        true
    }

    /// Queues a volatile frame, replacing the unsent one of the same stream.
    pub(crate) fn push_volatile(&self, key: &VolatileKey, frame: Bytes) -> VolatileOutcome {
        let mut guard = self.shared.lock();
        let lanes = guard.rest();
        if let Some(waiting) = lanes.volatile.get_mut(key) {
            let (new, old) = (frame.len(), waiting.len());
            if new > old && !self.shared.reserve(new - old) {
                return VolatileOutcome::Dropped;
            }
            if old > new {
                self.shared.release(old - new);
            }
            *waiting = frame;
            return VolatileOutcome::Coalesced;
        }
        if lanes.volatile.len() >= MAX_VOLATILE_STREAMS || !self.shared.reserve(frame.len()) {
            return VolatileOutcome::Dropped;
        }
        lanes.volatile.insert(key.clone(), frame);
        lanes.volatile_order.push_back(key.clone());
        lanes
            .volatile_since
            .get_or_insert_with(tokio::time::Instant::now);
        // Unlocked first: unlocking is what tells the writer that something waits.
        drop(guard);
        self.shared.closer.waker.wake();
        VolatileOutcome::Queued
    }

    pub(crate) fn close(&self, code: CloseCode) {
        self.shared.closer.close(code);
    }

    /// Asks the writer for a ping frame.
    pub(crate) fn ping(&self) {
        self.shared.closer.ping();
    }

    /// Asks the processor to start loading what [`Outbox::push`] touches, so that a fan-out
    /// prefetching a few members ahead does not wait on memory for each of them.
    pub(crate) fn prefetch(&self) {
        let at = Arc::as_ptr(&self.shared).cast::<u8>();
        let end = std::mem::size_of::<Shared>() - 1;
        prefetch(at);
        prefetch(at.wrapping_add(64));
        prefetch(at.wrapping_add(end));
    }

    /// The second step, for an outbox prefetched a little earlier: starts loading the socket's
    /// wire, which the push writes to (or, before it has one, the task the push wakes).
    pub(crate) fn prefetch_writer(&self) {
        prefetch(self.shared.wake_hint.load(Ordering::Relaxed).cast::<u8>());
    }
}

/// A hint to the processor that `at` will be read soon.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints at what will be read; it reads nothing itself and cannot
    // fault, whatever the address (null included).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Keeps the newest frames whose total stays within `max_bytes` (at least one).
fn newest_within(mut frames: Vec<StoredFrame>, max_bytes: usize) -> Vec<StoredFrame> {
    let mut total = 0;
    let keep = frames
        .iter()
        .rev()
        .take_while(|f| {
            total += f.frame.len() + 1;
            total <= max_bytes
        })
        .count()
        .max(1);
    let drop = frames.len().saturating_sub(keep);
    frames.drain(..drop);
    frames
}

impl OutboxReceiver {
    /// Waits for the next frame to write, or for the order to close. A close order wins over
    /// queued frames: a socket closed as too slow must not drain its backlog first.
    pub async fn next(&mut self) -> Outbound {
        loop {
            match poll_fn(|cx| self.poll_ready(cx)).await {
                Ready::Frame(frame) => return Outbound::Frame(frame),
                Ready::Close(code) => return Outbound::Close(code),
                Ready::Ping => return Outbound::Ping,
                Ready::Flush => return Outbound::Flush,
                Ready::Plan(plan) => {
                    let signal = self.close_signal();
                    tokio::select! {
                        biased;
                        code = signal.requested() => return Outbound::Close(code),
                        // Boxed: only a socket reading the store pays for its state.
                        () = Box::pin(self.carry_out(plan)) => {}
                    }
                }
            }
        }
    }

    /// Reads what a plan needs from the store and puts the frames it makes at the front of
    /// the lane (a resume longer than a page puts its remainder back behind them).
    async fn carry_out(&mut self, plan: Plan) {
        let mut made: Vec<LaneItem> = Vec::new();
        match plan {
            Plan::Resume {
                channel,
                epoch,
                after,
                up_to,
            } => {
                let page = self
                    .reader
                    .range(&channel, after, up_to, RESUME_PAGE_MESSAGES)
                    .await;
                match page {
                    Ok(frames) => {
                        let first = frames.first().map_or(up_to.saturating_add(1), |f| f.seq);
                        if first > after.saturating_add(1) {
                            let missing_to = first.saturating_sub(1).min(up_to);
                            made.push(LaneItem::Frame(encode::gap(
                                &channel, &epoch, after, missing_to,
                            )));
                        }
                        let full = frames.len() == RESUME_PAGE_MESSAGES;
                        let mut total = 0;
                        let mut last = after;
                        let mut truncated = false;
                        for frame in frames {
                            if total > 0 && total + frame.frame.len() > RESUME_PAGE_BYTES {
                                truncated = true;
                                break;
                            }
                            total += frame.frame.len();
                            last = frame.seq;
                            made.push(LaneItem::Frame(frame.frame));
                        }
                        if (truncated || full) && last < up_to && last > after {
                            made.push(LaneItem::Plan(Plan::Resume {
                                channel,
                                epoch,
                                after: last,
                                up_to,
                            }));
                        }
                    }
                    Err(err) => {
                        let why = format!("could not read the missed messages: {err}");
                        made.push(LaneItem::Frame(encode::error(
                            Some(&channel),
                            ErrorCode::Internal,
                            &why,
                        )));
                    }
                }
            }
            Plan::History {
                channel,
                before,
                limit,
                reference,
            } => match self.reader.latest(&channel, before, limit).await {
                Ok(frames) => {
                    let frames = newest_within(frames, MAX_HISTORY_FRAME_BYTES);
                    made.push(LaneItem::Frame(encode::history(&channel, &frames)));
                    if let Some(reference) = reference {
                        made.push(LaneItem::Frame(encode::reply(
                            Some(&channel),
                            &reference,
                            Ok(()),
                        )));
                    }
                }
                Err(err) => {
                    let why = format!("could not read the history: {err}");
                    let frame = match reference {
                        Some(reference) => encode::reply(
                            Some(&channel),
                            &reference,
                            Err((ErrorCode::Internal, &why)),
                        ),
                        None => encode::error(Some(&channel), ErrorCode::Internal, &why),
                    };
                    made.push(LaneItem::Frame(frame));
                }
            },
        }
        for item in &made {
            if let LaneItem::Frame(frame) = item {
                if !self.shared.reserve(frame.len()) {
                    return;
                }
            }
        }
        let mut lanes = self.shared.lock();
        let lane = &mut lanes.rest().lane;
        for item in made.into_iter().rev() {
            lane.push_front(item);
        }
    }

    /// The next thing to do: one lock per delivered frame, the waker registered only when
    /// there is nothing to do, and no lock at all when nothing waits (an idle socket's
    /// wake-ups) except once to mark the writer idle after it took something.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Ready> {
        // Most polls find a frame and need no wake-up, so the waker is registered only before
        // giving up; then everything is checked once more, so a close or a push that came in
        // between is not missed.
        let mut registered = std::mem::take(&mut self.lingering);
        if registered {
            self.shared.register(cx.waker(), self.wired);
        }
        loop {
            if let Some(code) = self.shared.closer.pending() {
                return Poll::Ready(Ready::Close(code));
            }
            if self.shared.closer.take_ping() {
                return Poll::Ready(Ready::Ping);
            }
            let due = if self.shared.maybe_waiting() {
                let mut lanes = self.shared.lock();
                // Whatever is taken now is in hand until written: no frame may pass it.
                lanes.writer_idle = false;
                self.idle = false;
                if std::mem::take(&mut lanes.flush_due) {
                    return Poll::Ready(Ready::Flush);
                }
                match lanes.waiting_rest().and_then(|rest| rest.lane.pop_front()) {
                    Some(LaneItem::Frame(frame)) => {
                        drop(lanes);
                        self.shared.release(frame.len());
                        return Poll::Ready(Ready::Frame(frame));
                    }
                    Some(LaneItem::Plan(plan)) => return Poll::Ready(Ready::Plan(plan)),
                    None => {}
                }
                if let Some(frame) = lanes.queue.pop_front() {
                    drop(lanes);
                    self.shared.release(frame.len());
                    return Poll::Ready(Ready::Frame(frame));
                }
                match lanes.waiting_rest().and_then(|rest| rest.volatile_since) {
                    Some(since) if tokio::time::Instant::now() >= since + VOLATILE_LINGER => {
                        if let Some(frame) = lanes.pop_volatile() {
                            drop(lanes);
                            self.shared.release(frame.len());
                            return Poll::Ready(Ready::Frame(frame));
                        }
                        continue;
                    }
                    since => since.map(|since| since + VOLATILE_LINGER),
                }
            } else {
                None
            };
            if let Some(due) = due {
                let linger = self
                    .linger
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if linger.deadline() != due {
                    linger.as_mut().reset(due);
                }
                if linger.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            if registered {
                self.lingering = due.is_some();
                if due.is_none() && self.wired && !self.idle && !self.go_idle() {
                    continue;
                }
                return Poll::Pending;
            }
            self.shared.register(cx.waker(), self.wired);
            registered = true;
        }
    }

    /// Marks the writer idle, so fan-outs write to the wire themselves, unless something came
    /// in meanwhile (false: take it first).
    fn go_idle(&mut self) -> bool {
        let mut lanes = self.shared.lock();
        if !lanes.queue.is_empty() || lanes.rest_waiting || lanes.flush_due {
            return false;
        }
        lanes.writer_idle = true;
        self.idle = true;
        true
    }

    /// Lets fan-outs write to `wire` themselves while the writer is idle. The writer must
    /// write only frames it took from here, and must have written each before waiting again.
    pub fn attach_wire(&mut self, wire: Arc<dyn Wire>) {
        let hint = Arc::as_ptr(&wire).cast::<()>().cast_mut();
        self.shared.wake_hint.store(hint, Ordering::Relaxed);
        self.shared.lock().wire = Some(wire);
        self.wired = true;
    }

    /// A handle that resolves when a close is ordered; lets the writer abandon a write that
    /// a stalled client is blocking.
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal(self.shared.clone())
    }

    /// Takes a frame that is already waiting, without waiting; lets the writer batch frames
    /// into one flush. The order: the lane (stopping at a plan, which [`OutboxReceiver::next`]
    /// carries out), then the queue, then volatile frames (chat before cursors).
    pub fn try_next(&mut self) -> Option<Bytes> {
        if self.shared.closer.pending().is_some() || !self.shared.maybe_waiting() {
            return None;
        }
        let mut lanes = self.shared.lock();
        lanes.writer_idle = false;
        self.idle = false;
        let frame = match lanes.waiting_rest().and_then(|rest| rest.lane.front()) {
            Some(LaneItem::Plan(_)) => return None,
            Some(LaneItem::Frame(_)) => match lanes.rest().lane.pop_front() {
                Some(LaneItem::Frame(frame)) => frame,
                _ => return None,
            },
            None => match lanes.queue.pop_front() {
                Some(frame) => frame,
                None => lanes.pop_volatile()?,
            },
        };
        drop(lanes);
        self.shared.release(frame.len());
        Some(frame)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        // Nothing will be written any more: stop taking frames and give back what waits.
        self.shared.gone.store(true, Ordering::Release);
        let mut lanes = self.shared.lock();
        let queued: usize = lanes.queue.drain(..).map(|f| f.len()).sum();
        // The socket is let go of with its writer.
        lanes.writer_idle = false;
        let wire = lanes.wire.take();
        drop(lanes);
        self.shared
            .wake_hint
            .store(std::ptr::null_mut(), Ordering::Relaxed);
        drop(wire);
        self.shared.release(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::MemoryHistory;
    use crate::history::{HistoryStore, NewEntry};

    fn reader_with(channel: &str, frames: &[(u64, &str)]) -> HistoryReader {
        let store = MemoryHistory::default();
        let batch: Vec<NewEntry> = frames
            .iter()
            .map(|(seq, text)| NewEntry {
                channel: channel.into(),
                epoch: "e".into(),
                seq: *seq,
                id: format!("m{seq}"),
                at_ms: 0,
                frame: Bytes::from(text.to_string()),
            })
            .collect();
        store.append(&batch, &Default::default()).unwrap();
        HistoryReader::new(Arc::new(store))
    }

    fn small(frames: usize, bytes: usize) -> (Outbox, OutboxReceiver) {
        outbox(
            Budget { frames, bytes },
            reader_with("room", &[]),
            Gauge::default(),
        )
    }

    #[tokio::test]
    async fn full_queue_turns_into_close_1013() {
        let (outbox, mut rx) = small(2, 1 << 20);
        for n in 0..3 {
            outbox.push(Bytes::from(format!("{n}")));
        }
        assert_eq!(rx.next().await, Outbound::Close(CloseCode::TryAgainLater));
    }

    #[tokio::test]
    async fn a_budget_in_bytes_closes_a_socket_whose_frames_are_few_but_large() {
        let (outbox, mut rx) = small(1024, 1000);
        outbox.push(Bytes::from(vec![b'x'; 600]));
        assert_eq!(outbox.shared.bytes.load(Ordering::Acquire), 600);
        outbox.push(Bytes::from(vec![b'y'; 600]));
        assert_eq!(rx.next().await, Outbound::Close(CloseCode::TryAgainLater));
    }

    #[tokio::test]
    async fn written_frames_give_their_bytes_back() {
        let (outbox, mut rx) = small(1024, 1000);
        for _ in 0..5 {
            outbox.push(Bytes::from(vec![b'x'; 600]));
            assert!(matches!(rx.next().await, Outbound::Frame(_)));
        }
        assert_eq!(outbox.shared.bytes.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn frames_keep_their_order_and_a_gone_writer_holds_nothing() {
        let total = Gauge::<i64, AtomicI64>::default();
        let (outbox, mut rx) = outbox(
            Budget {
                frames: 64,
                bytes: 1 << 20,
            },
            reader_with("room", &[]),
            total.clone(),
        );
        for n in 0..10 {
            outbox.push(Bytes::from(format!("{n}")));
        }
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from("0")));
        let batch: Vec<Bytes> = std::iter::from_fn(|| rx.try_next()).collect();
        assert_eq!(
            batch,
            (1..10)
                .map(|n| Bytes::from(format!("{n}")))
                .collect::<Vec<_>>()
        );
        outbox.push(Bytes::from("late"));
        assert_eq!(total.get(), 4);
        // The socket's writer ends (the connection broke): what waited is given back, and
        // what the fan-out pushes afterwards is not kept.
        drop(rx);
        assert_eq!(total.get(), 0);
        outbox.push(Bytes::from("after"));
        assert_eq!(outbox.shared.bytes.load(Ordering::Acquire), 0);
        assert_eq!(total.get(), 0);
    }

    #[tokio::test]
    async fn a_resume_is_read_page_by_page_before_live_frames_with_a_gap_for_what_is_gone() {
        let stored: Vec<(u64, String)> = (3..=600).map(|n| (n, format!("m{n}"))).collect();
        let stored: Vec<(u64, &str)> = stored.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let reader = reader_with("room", &stored);
        let (outbox, mut rx) = outbox(
            Budget {
                frames: 16,
                bytes: 1 << 20,
            },
            reader,
            Gauge::default(),
        );
        outbox.push(Bytes::from_static(b"live"));
        assert!(outbox.plan(Plan::Resume {
            channel: Arc::from("room"),
            epoch: Arc::from("e"),
            after: 0,
            up_to: 600,
        }));
        let Outbound::Frame(gap) = rx.next().await else {
            panic!("a gap first")
        };
        let gap: switchboard_protocol::Frame = serde_json::from_slice(&gap).unwrap();
        assert_eq!(
            (gap.payload["from"].as_u64(), gap.payload["to"].as_u64()),
            (Some(1), Some(2))
        );
        for n in 3..=600 {
            assert_eq!(
                rx.next().await,
                Outbound::Frame(Bytes::from(format!("m{n}")))
            );
        }
        assert_eq!(
            rx.next().await,
            Outbound::Frame(Bytes::from_static(b"live"))
        );
        assert_eq!(rx.try_next(), None);
    }

    #[tokio::test]
    async fn a_second_history_request_waits_for_the_first_and_resumes_merge() {
        let (outbox, _rx) = small(16, 1 << 20);
        let history = || Plan::History {
            channel: Arc::from("room"),
            before: None,
            limit: 10,
            reference: None,
        };
        assert!(outbox.plan(history()));
        assert!(!outbox.plan(history()));
        let resume = |after, up_to| Plan::Resume {
            channel: Arc::from("room"),
            epoch: Arc::from("e"),
            after,
            up_to,
        };
        assert!(outbox.plan(resume(5, 10)));
        assert!(outbox.plan(resume(2, 12)));
        let mut lanes = outbox.shared.lock();
        let lane = &lanes.rest().lane;
        assert_eq!(lane.len(), 2);
        assert!(matches!(
            lane.back(),
            Some(LaneItem::Plan(Plan::Resume {
                after: 2,
                up_to: 12,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_history_frame_keeps_the_newest_messages_within_its_size_limit() {
        let big = "x".repeat(400 * 1024);
        let reader = reader_with("room", &[(1, &big), (2, &big), (3, &big), (4, "small")]);
        let (outbox, mut rx) = outbox(
            Budget {
                frames: 16,
                bytes: 8 << 20,
            },
            reader,
            Gauge::default(),
        );
        assert!(outbox.plan(Plan::History {
            channel: Arc::from("room"),
            before: None,
            limit: 100,
            reference: Some(RawValue::from_string("7".into()).unwrap()),
        }));
        let Outbound::Frame(frame) = rx.next().await else {
            panic!("a history frame")
        };
        assert!(frame.len() <= MAX_HISTORY_FRAME_BYTES + 200);
        let text = String::from_utf8(frame.to_vec()).unwrap();
        assert!(text.ends_with(",small]}}"), "the newest message is kept");
        let Outbound::Frame(reply) = rx.next().await else {
            panic!("then the reply")
        };
        assert!(String::from_utf8_lossy(&reply).contains(r#""status":"ok""#));
    }

    #[tokio::test]
    async fn volatile_frames_keep_only_the_latest_per_stream_and_yield_to_the_queue() {
        let (outbox, mut rx) = small(4, 1 << 20);
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
        assert_eq!(outbox.shared.bytes.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_volatile_frame_wakes_a_waiting_writer() {
        let (outbox, mut rx) = small(4, 1 << 20);
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
    async fn a_close_order_and_a_lane_frame_wake_a_waiting_writer() {
        let (outbox, mut rx) = small(4, 1 << 20);
        let waiting = tokio::spawn(async move {
            let first = rx.next().await;
            let second = rx.next().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        outbox.push_first(Bytes::from_static(b"missed"));
        tokio::task::yield_now().await;
        outbox.close(CloseCode::ServiceRestart);
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first, Outbound::Frame(Bytes::from_static(b"missed")));
        assert_eq!(second, Outbound::Close(CloseCode::ServiceRestart));
    }

    #[test]
    fn what_a_delivery_touches_stays_small() {
        // 144 bytes (160 with the `Arc`'s counts): each delivery to a socket whose state fell
        // out of the cache waits on memory once per line it touches (see `Shared`), and an
        // idle socket pays for every byte.
        assert!(
            std::mem::size_of::<Shared>() <= 144,
            "{}",
            std::mem::size_of::<Shared>()
        );
    }

    #[tokio::test]
    async fn a_ping_wakes_a_waiting_writer_and_goes_ahead_of_queued_frames() {
        let (outbox, mut rx) = small(4, 1 << 20);
        let waiting = tokio::spawn(async move {
            let first = rx.next().await;
            (first, rx)
        });
        tokio::task::yield_now().await;
        outbox.ping();
        let (first, mut rx) = waiting.await.unwrap();
        assert_eq!(first, Outbound::Ping);
        // Asked twice before the writer looks: one ping, then the frames in order.
        outbox.push(Bytes::from_static(b"a"));
        outbox.ping();
        outbox.ping();
        assert_eq!(rx.next().await, Outbound::Ping);
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from_static(b"a")));
        assert_eq!(rx.try_next(), None);
    }

    #[tokio::test]
    async fn a_close_signal_fires_while_the_writer_is_busy_elsewhere() {
        let (outbox, rx) = small(4, 1 << 20);
        let signal = rx.close_signal();
        let waiting = tokio::spawn(async move { signal.requested().await });
        tokio::task::yield_now().await;
        outbox.close(CloseCode::TryAgainLater);
        assert_eq!(waiting.await.unwrap(), CloseCode::TryAgainLater);
        drop(rx);
    }

    #[tokio::test]
    async fn frames_arrive_in_order() {
        let (outbox, mut rx) = small(4, 1 << 20);
        outbox.push(Bytes::from_static(b"a"));
        outbox.push(Bytes::from_static(b"b"));
        assert_eq!(rx.next().await, Outbound::Frame(Bytes::from_static(b"a")));
        assert_eq!(rx.try_next(), Some(Bytes::from_static(b"b")));
        assert_eq!(rx.try_next(), None);
    }

    /// A socket that logs what it takes and answers as told (`Sent` once told nothing). Its
    /// log may be shared with a writer that logs what it writes, so the log is the socket.
    #[derive(Default)]
    struct FakeWire {
        log: Arc<Mutex<Vec<Bytes>>>,
        answers: Mutex<VecDeque<WireSend>>,
        /// Answers drawn from a seed instead, when set (for the race below).
        seed: Mutex<Option<u64>>,
    }

    impl FakeWire {
        fn answer(&self, answers: &[WireSend]) {
            self.answers.lock().unwrap().extend(answers);
        }

        fn taken(&self) -> Vec<Bytes> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Wire for FakeWire {
        fn try_send(&self, frame: &Bytes) -> WireSend {
            let drawn = self.seed.lock().unwrap().as_mut().map(|seed| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                [WireSend::Sent, WireSend::Refused, WireSend::Unflushed][(*seed % 3) as usize]
            });
            let told = self.answers.lock().unwrap().pop_front();
            let answer = drawn.or(told).unwrap_or(WireSend::Sent);
            if answer != WireSend::Refused {
                self.log.lock().unwrap().push(frame.clone());
            }
            answer
        }
    }

    fn wired(frames: usize) -> (Outbox, OutboxReceiver, Arc<FakeWire>) {
        let (outbox, mut rx) = small(frames, 1 << 20);
        let wire = Arc::new(FakeWire::default());
        rx.attach_wire(wire.clone());
        (outbox, rx, wire)
    }

    /// Polls the writer once, as a socket's task does when it has written everything.
    fn writer_waits(rx: &mut OutboxReceiver) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let next = std::pin::pin!(rx.next());
        assert!(next.poll(&mut cx).is_pending(), "nothing should wait");
    }

    fn frame(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[tokio::test]
    async fn an_idle_writers_frames_go_straight_to_the_wire() {
        let (outbox, mut rx, wire) = wired(4);
        // Before the writer first waits, frames queue: it may be busy.
        outbox.push(frame("a"));
        assert!(wire.taken().is_empty());
        assert_eq!(rx.next().await, Outbound::Frame(frame("a")));
        writer_waits(&mut rx);
        outbox.push(frame("b"));
        outbox.push(frame("c"));
        assert_eq!(wire.taken(), [frame("b"), frame("c")]);
        // Nothing waits, and nothing is counted as waiting.
        assert_eq!(rx.try_next(), None);
        assert_eq!(outbox.shared.bytes.load(Ordering::Acquire), 0);
        // More frames than the queue holds pass without a close order: none waited.
        writer_waits(&mut rx);
        for _ in 0..8 {
            outbox.push(frame("d"));
        }
        assert_eq!(outbox.shared.closer.pending(), None);
        assert_eq!(wire.taken().len(), 10);
    }

    #[tokio::test]
    async fn a_frame_the_wire_refuses_is_queued_and_the_next_wait_behind_it() {
        let (outbox, mut rx, wire) = wired(4);
        writer_waits(&mut rx);
        wire.answer(&[WireSend::Refused]);
        outbox.push(frame("a"));
        // The wire would take this one, but it must not pass the queued frame.
        outbox.push(frame("b"));
        assert!(wire.taken().is_empty());
        assert_eq!(rx.next().await, Outbound::Frame(frame("a")));
        // Taken but not written yet: still nothing may pass it.
        outbox.push(frame("c"));
        assert!(wire.taken().is_empty());
        assert_eq!(rx.try_next(), Some(frame("b")));
        assert_eq!(rx.try_next(), Some(frame("c")));
        writer_waits(&mut rx);
        outbox.push(frame("d"));
        assert_eq!(wire.taken(), [frame("d")]);
    }

    #[tokio::test]
    async fn a_half_written_frame_is_flushed_by_the_writer_before_anything_else() {
        let (outbox, mut rx, wire) = wired(4);
        writer_waits(&mut rx);
        wire.answer(&[WireSend::Unflushed]);
        outbox.push(frame("a"));
        outbox.push(frame("b"));
        assert_eq!(wire.taken(), [frame("a")]);
        assert_eq!(rx.next().await, Outbound::Flush);
        assert_eq!(rx.try_next(), Some(frame("b")));
        writer_waits(&mut rx);
        outbox.push(frame("c"));
        assert_eq!(wire.taken(), [frame("a"), frame("c")]);
    }

    #[tokio::test]
    async fn nothing_passes_the_lane_a_plan_or_a_close_order() {
        let (outbox, mut rx, wire) = wired(4);
        writer_waits(&mut rx);
        outbox.push_first(frame("presence"));
        outbox.push(frame("a"));
        assert!(wire.taken().is_empty());
        assert_eq!(rx.next().await, Outbound::Frame(frame("presence")));
        assert_eq!(rx.next().await, Outbound::Frame(frame("a")));
        // A history being read: live frames wait for it, also while the store is read.
        writer_waits(&mut rx);
        let plan = Plan::History {
            channel: Arc::from("room"),
            before: None,
            limit: 10,
            reference: None,
        };
        assert!(outbox.plan(plan));
        outbox.push(frame("b"));
        assert!(wire.taken().is_empty());
        let history = rx.next().await;
        assert!(
            matches!(&history, Outbound::Frame(f) if f.starts_with(b"{\"action\":\"history\"")),
            "{history:?}"
        );
        assert_eq!(rx.next().await, Outbound::Frame(frame("b")));
        writer_waits(&mut rx);
        outbox.close(CloseCode::TryAgainLater);
        outbox.push(frame("c"));
        assert!(wire.taken().is_empty());
        assert_eq!(rx.next().await, Outbound::Close(CloseCode::TryAgainLater));
    }

    #[tokio::test]
    async fn a_gone_writer_lets_go_of_the_wire() {
        let (outbox, mut rx, wire) = wired(4);
        writer_waits(&mut rx);
        assert_eq!(Arc::strong_count(&wire), 2);
        drop(rx);
        assert_eq!(Arc::strong_count(&wire), 1);
        outbox.push(frame("a"));
        assert!(wire.taken().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_reach_the_socket_in_order_whichever_way_each_goes() {
        // A producer on its own thread against a writer task: the wire takes, refuses or
        // half-takes frames at random, and the writer logs what it writes to the same log.
        const FRAMES: u32 = 20_000;
        let (outbox, mut rx) = small(FRAMES as usize, 1 << 30);
        let wire = Arc::new(FakeWire::default());
        *wire.seed.lock().unwrap() = Some(0x9E37_79B9_7F4A_7C15);
        rx.attach_wire(wire.clone());
        let log = wire.log.clone();
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        let writer = tokio::spawn(async move {
            loop {
                match rx.next().await {
                    Outbound::Frame(frame) => {
                        let mut next = Some(frame);
                        while let Some(frame) = next {
                            // A socket's writer takes a moment between taking a frame and
                            // writing it (locking the socket, framing): nothing may pass it.
                            std::thread::sleep(std::time::Duration::from_micros(20));
                            log.lock().unwrap().push(frame);
                            count.fetch_add(1, Ordering::Relaxed);
                            next = rx.try_next();
                        }
                    }
                    Outbound::Flush => {}
                    other => panic!("{other:?}"),
                }
                tokio::task::yield_now().await;
            }
        });
        let producer = std::thread::spawn(move || {
            let wait_until = |ready: &dyn Fn(&LaneState) -> bool| {
                let waited = std::time::Instant::now();
                while !ready(&outbox.shared.lock()) {
                    assert!(
                        waited.elapsed().as_secs() < 10,
                        "the writer never caught up"
                    );
                    std::thread::sleep(std::time::Duration::from_micros(10));
                }
            };
            for n in 0..FRAMES {
                if n % 256 == 128 {
                    // Right after the writer took the last queued frame, maybe still holding
                    // it: the next frame must not pass it.
                    wait_until(&|lanes| lanes.queue.is_empty());
                }
                outbox.push(Bytes::from(n.to_be_bytes().to_vec()));
                if n % 256 == 0 {
                    // The writer catches up and waits: the next frames may go straight out.
                    wait_until(&|lanes| lanes.writer_idle);
                } else if n % 16 == 0 {
                    std::thread::yield_now();
                }
            }
            outbox
        });
        let _outbox = producer.join().unwrap();
        let all_in = async {
            while wire.taken().len() < FRAMES as usize {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), all_in)
            .await
            .expect("every frame reaches the socket");
        writer.abort();
        let order: Vec<u32> = wire
            .taken()
            .iter()
            .map(|f| u32::from_be_bytes(f[..].try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..FRAMES).collect::<Vec<_>>());
        // Both ways were taken, many times.
        let by_writer = written.load(Ordering::Relaxed);
        let by_fan_out = FRAMES as usize - by_writer;
        assert!(
            by_writer > 0 && by_fan_out >= 20,
            "{by_writer} by the writer"
        );
    }
}
