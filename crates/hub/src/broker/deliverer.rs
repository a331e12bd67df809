//! The deliverer: a task on the runtime that carries out what each commit of the persister
//! leaves to do — deliver every new message to its channel's members, then answer its sender —
//! in commit order. A Redis node has one too, fed by its subscription (from the Redis
//! runtime's thread) with each stored message it receives and each page of a catch-up, with
//! no one to answer: the same turns and the same writes on either engine.
//!
//! Why a task and not the persister thread itself: a message to a thousand members is written
//! to their sockets, or wakes their tasks, and either is done best on a tokio worker: a
//! wake-up from a worker goes to that worker's own run queue, where one from another thread
//! goes through the runtime's shared queue and may have to wake a worker. One hand-off per
//! commit replaces a thousand.
//!
//! How a fan-out hands each frame over ([`Writes`]) follows the backlog: a message with nothing
//! waiting behind it is written to idle sockets by the deliverer itself (its share of the
//! room: everyone on one runtime worker, one member in N on N), which spares each of those
//! sockets' tasks a wake-up for one frame; when more wait, the deliverer takes the commits that
//! wait together (a [`Turn`]: up to 256 messages and 1 MiB, and a quarter of a socket's
//! outbox) and queues their frames, and each socket's task, running after all of them were
//! queued, writes them together (up to 64 frames a system call). A commit larger than a turn is
//! taken in parts, so the sockets write between them. So at chat rates a delivery costs one
//! write and, for the deliverer's share, no wake-up, and a node that falls behind catches up in
//! batches that grow with the backlog: the more it is behind, the fewer writes per message.
//!
//! The queue between them is bounded in batches and in bytes of frames: a node that stores
//! faster than it delivers makes the persister wait (its own queue then fills and new messages
//! are refused as `overloaded`) rather than hold ever more frames; a Redis node's subscription
//! waits too, as a task ([`Deliverer::hand_over_async`]). When the runtime goes away (the
//! process is ending) whatever waits is delivered by whoever drops the task, and whoever hands
//! over delivers by itself from then on.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;

use super::{Accepted, Answer};
use crate::access::Refusal;
use crate::channel::Writes;
use crate::outbox::Budget;
use crate::registry::Registry;

/// Most batches waiting for the deliverer, by default: commits of the persister.
const MAX_BATCHES: usize = 64;

/// Most messages the deliverer takes in one turn: the sockets' tasks write between turns, so
/// a backlog of many commits, or one large commit, does not pile up in a healthy socket's
/// outbox before it had a chance to write.
const MAX_TAKEN: usize = 256;

/// Most bytes of frames taken in one turn, for the same reason.
const MAX_TAKEN_BYTES: usize = 1024 * 1024;

/// How much the deliverer takes in one turn (at least one message, however large).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    messages: usize,
    bytes: usize,
}

impl Turn {
    /// A turn of at most a quarter of a socket's `outbox`, and at most [`MAX_TAKEN`] messages
    /// and [`MAX_TAKEN_BYTES`]: with the default outbox (1,024 frames, 4 MiB), 256 messages
    /// and 1 MiB. A quarter, not all: a sender's replies come in the same turn as its own
    /// echoes (two frames a message), and the sockets' tasks usually write between turns but
    /// not always (on several workers a socket's task may wait for its worker, and the runtime
    /// now and then runs the deliverer again first), so the outbox holds two turns and more.
    /// A message larger than a quarter of the bytes still goes, alone.
    pub(crate) fn within(outbox: Budget) -> Self {
        Self {
            messages: (outbox.frames / 4).clamp(1, MAX_TAKEN),
            bytes: (outbox.bytes / 4).clamp(1, MAX_TAKEN_BYTES),
        }
    }
}

/// What a handoff costs the queue's byte budget besides its frame (the answer, its reference).
const HANDOFF_OVERHEAD: usize = 64;

/// One message of a commit: deliver it (when it is new and stored) to its channel, then answer
/// its sender.
pub(crate) struct Handoff {
    pub(crate) channel: Arc<str>,
    pub(crate) stored: Option<(u64, Arc<str>, Bytes)>,
    pub(crate) answer: Answer,
    pub(crate) outcome: Result<Accepted, Refusal>,
}

/// Carries out a commit's deliveries and answers, in order.
pub(crate) fn hand_off(registry: &Registry, handoffs: Vec<Handoff>, writes: Writes) {
    for handoff in handoffs {
        if let Some((seq, epoch, frame)) = &handoff.stored {
            registry.deliver_stored(&handoff.channel, *seq, epoch, frame, writes);
        }
        handoff.answer.send(&handoff.channel, handoff.outcome);
    }
}

fn bytes_of(handoffs: &[Handoff]) -> usize {
    handoffs.iter().map(Handoff::bytes).sum()
}

impl Handoff {
    /// What it costs the queue's byte budget.
    fn bytes(&self) -> usize {
        HANDOFF_OVERHEAD + self.stored.as_ref().map_or(0, |(_, _, frame)| frame.len())
    }
}

/// Takes from the front of `batch` as many handoffs as fit in a turn (at least one).
fn split_front(batch: &mut Vec<Handoff>, turn: Turn) -> Vec<Handoff> {
    let mut bytes = 0;
    let fit = batch
        .iter()
        .take(turn.messages)
        .take_while(|handoff| {
            bytes += handoff.bytes();
            bytes <= turn.bytes
        })
        .count();
    batch.drain(..fit.max(1)).collect()
}

#[derive(Default)]
struct Waiting {
    batches: VecDeque<(usize, Vec<Handoff>)>,
    bytes: usize,
    /// The deliverer is carrying out the batches it took (or, once closed, what was left).
    busy: bool,
    /// The deliverer is gone: the persister delivers by itself (once `busy` is over).
    closed: bool,
    /// The persister is gone: the deliverer ends once nothing waits.
    stopped: bool,
}

/// The handing side of the queue: the persister's, or a Redis node's subscription's.
pub(crate) struct Deliverer {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// Told when the deliverer finished a batch or went away: the persister's thread waits on
    /// this one…
    room: Condvar,
    /// …and a task on another runtime (a Redis node's subscription) on this one.
    room_async: Notify,
    /// Wakes the deliverer.
    ready: Notify,
    room_for: Room,
    turn: Turn,
}

/// How much may wait for the deliverer: batches, and bytes of frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Room {
    pub(crate) batches: usize,
    pub(crate) bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits for room, on either side.
    fn tell_room(&self) {
        self.room.notify_all();
        self.room_async.notify_waiters();
    }
}

/// Where a batch of `bytes` goes, asked under the queue's lock.
enum Admission {
    /// Into the queue.
    Queued,
    /// Nowhere yet: the deliverer is too far behind.
    Wait,
    /// Delivered by whoever hands it over: the deliverer is gone.
    Deliver,
}

impl Waiting {
    fn admit(&mut self, room: Room, bytes: usize, handoffs: &mut Vec<Handoff>) -> Admission {
        if self.closed {
            return if self.busy {
                Admission::Wait
            } else {
                Admission::Deliver
            };
        }
        let idle = self.batches.is_empty() && !self.busy;
        let fits = self.batches.len() < room.batches && self.bytes + bytes <= room.bytes;
        if !(idle || fits) {
            return Admission::Wait;
        }
        self.bytes += bytes;
        self.batches.push_back((bytes, std::mem::take(handoffs)));
        Admission::Queued
    }
}

impl Deliverer {
    /// Starts the deliverer task on the current runtime, with at most `max_bytes` of frames
    /// (and 64 batches) waiting for it, taking them in turns of `turn`; `None` outside a
    /// runtime (whoever hands over then delivers by itself).
    pub(crate) fn start(registry: Arc<Registry>, max_bytes: usize, turn: Turn) -> Option<Self> {
        let room = Room {
            batches: MAX_BATCHES,
            bytes: max_bytes,
        };
        Self::start_with(registry, room, turn)
    }

    /// [`Deliverer::start`] with room for other than 64 batches.
    pub(crate) fn start_with(registry: Arc<Registry>, room: Room, turn: Turn) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting::default()),
            room: Condvar::new(),
            room_async: Notify::new(),
            ready: Notify::new(),
            room_for: Room {
                batches: room.batches.max(1),
                bytes: room.bytes.max(1),
            },
            turn,
        });
        let task = Task {
            registry: registry.clone(),
            shared: shared.clone(),
        };
        runtime.spawn(task.run());
        Some(Self { registry, shared })
    }

    /// Gives a commit's handoffs to the deliverer, waiting while it is too far behind (a
    /// batch is always taken when nothing else waits, however large). Delivers them here once
    /// the deliverer is gone.
    pub(crate) fn hand_over(&self, mut handoffs: Vec<Handoff>) {
        if handoffs.is_empty() {
            return;
        }
        let bytes = bytes_of(&handoffs);
        let mut waiting = self.shared.lock();
        loop {
            match waiting.admit(self.shared.room_for, bytes, &mut handoffs) {
                Admission::Queued => break,
                Admission::Deliver => {
                    drop(waiting);
                    hand_off(&self.registry, handoffs, Writes::Queued);
                    return;
                }
                Admission::Wait => {
                    waiting = self
                        .shared
                        .room
                        .wait(waiting)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        drop(waiting);
        self.shared.ready.notify_one();
    }

    /// [`Deliverer::hand_over`] for a task: it waits for room without holding up its runtime's
    /// other tasks.
    pub(crate) async fn hand_over_async(&self, mut handoffs: Vec<Handoff>) {
        if handoffs.is_empty() {
            return;
        }
        let bytes = bytes_of(&handoffs);
        loop {
            // Listening before looking, so room made in between is not missed.
            let room = self.shared.room_async.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let admission = self
                .shared
                .lock()
                .admit(self.shared.room_for, bytes, &mut handoffs);
            match admission {
                Admission::Queued => break,
                Admission::Deliver => {
                    hand_off(&self.registry, handoffs, Writes::Queued);
                    return;
                }
                Admission::Wait => room.await,
            }
        }
        self.shared.ready.notify_one();
    }

    /// Waits until everything handed over has been delivered.
    pub(crate) fn drain(&self) {
        let mut waiting = self.shared.lock();
        while waiting.busy || !waiting.batches.is_empty() {
            waiting = self
                .shared
                .room
                .wait(waiting)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.ready.notify_one();
    }
}

/// The task's side. Dropped with the runtime, it delivers what still waits and tells the
/// persister to deliver by itself.
struct Task {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
}

impl Task {
    async fn run(self) {
        loop {
            // What waits is taken together, up to a turn: behind, the frames of several
            // commits go into each socket's queue before any socket's task runs, so each writes
            // them together. The batches stay counted until they are carried out.
            let (taken, stopped, behind) = {
                let turn = self.shared.turn;
                let mut waiting = self.shared.lock();
                let mut taken = Vec::new();
                let (mut messages, mut bytes) = (0, 0);
                while let Some((batch_bytes, batch)) = waiting.batches.front_mut() {
                    let over =
                        messages + batch.len() > turn.messages || bytes + *batch_bytes > turn.bytes;
                    if over {
                        if taken.is_empty() {
                            // A commit larger than a turn is taken in parts; the rest stays
                            // first in line.
                            let part = split_front(batch, turn);
                            let part_bytes = bytes_of(&part);
                            *batch_bytes -= part_bytes;
                            if batch.is_empty() {
                                waiting.batches.pop_front();
                            }
                            taken.push((part_bytes, part));
                        }
                        break;
                    }
                    messages += batch.len();
                    bytes += *batch_bytes;
                    taken.extend(waiting.batches.pop_front());
                }
                waiting.busy = !taken.is_empty();
                (taken, waiting.stopped, !waiting.batches.is_empty())
            };
            if taken.is_empty() {
                if stopped {
                    return;
                }
                self.shared.ready.notified().await;
                continue;
            }
            let stored: usize = taken
                .iter()
                .flat_map(|(_, handoffs)| handoffs)
                .filter(|h| h.stored.is_some())
                .count();
            // Written straight only for a message with nothing behind it.
            let writes = if behind || stored > 1 {
                Writes::Queued
            } else {
                Writes::Direct
            };
            let bytes: usize = taken.iter().map(|(bytes, _)| bytes).sum();
            for (_, handoffs) in taken {
                hand_off(&self.registry, handoffs, writes);
            }
            let more = {
                let mut waiting = self.shared.lock();
                waiting.busy = false;
                waiting.bytes -= bytes;
                !waiting.batches.is_empty()
            };
            self.shared.tell_room();
            if more {
                // The sockets just woken write before the next batches are taken: a long
                // backlog must not keep this worker from them, and what comes in meanwhile is
                // taken together.
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // Busy until what was left is delivered, so the persister's later commits (delivered
        // by itself from now on) and a clear's drain wait for it: order is kept.
        let left = {
            let mut waiting = self.shared.lock();
            waiting.closed = true;
            waiting.busy = true;
            waiting.bytes = 0;
            std::mem::take(&mut waiting.batches)
        };
        self.shared.tell_room();
        for (_, handoffs) in left {
            hand_off(&self.registry, handoffs, Writes::Queued);
        }
        self.shared.lock().busy = false;
        self.shared.tell_room();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// The default outbox's turn: 256 messages, 1 MiB.
    const DEFAULT_TURN: Turn = Turn {
        messages: MAX_TAKEN,
        bytes: MAX_TAKEN_BYTES,
    };

    #[test]
    fn a_turn_is_at_most_a_quarter_of_an_outbox() {
        let turn = |frames, bytes| Turn::within(Budget { frames, bytes });
        assert_eq!(turn(1024, 4 << 20), DEFAULT_TURN);
        assert_eq!(turn(4096, 64 << 20), DEFAULT_TURN);
        assert_eq!(
            turn(16, 64 * 1024),
            Turn {
                messages: 4,
                bytes: 16 * 1024
            }
        );
        // However small the outbox, a turn takes one message.
        assert_eq!(
            turn(1, 1),
            Turn {
                messages: 1,
                bytes: 1
            }
        );
    }

    fn answered(seq: u64) -> (Handoff, oneshot::Receiver<Result<Accepted, Refusal>>) {
        let (tx, rx) = oneshot::channel();
        let handoff = Handoff {
            channel: Arc::from("room"),
            stored: None,
            answer: Answer::Caller(tx),
            outcome: Ok(Accepted { seq, resend: false }),
        };
        (handoff, rx)
    }

    #[test]
    fn answers_come_in_order_and_a_drain_waits_for_them() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let deliverer = runtime
            .block_on(async {
                Deliverer::start(Arc::new(Registry::default()), 1 << 20, DEFAULT_TURN)
            })
            .expect("started on a runtime");
        let mut waiting = Vec::new();
        for seq in 1..=200 {
            let (handoff, rx) = answered(seq);
            deliverer.hand_over(vec![handoff]);
            waiting.push(rx);
        }
        deliverer.drain();
        for (seq, mut rx) in (1..=200).zip(waiting) {
            let answer = rx.try_recv().expect("answered before the drain returned");
            assert_eq!(answer.unwrap().seq, seq);
        }
    }

    /// What reached the room's one socket: how many frames its task found each time it woke,
    /// and how many the fan-out wrote to it straight.
    #[derive(Debug, PartialEq)]
    struct Reached {
        woken_with: Vec<usize>,
        direct: usize,
    }

    /// A socket that takes every frame, logging its seq where the writer logs its own.
    struct Logging(Arc<Mutex<Vec<u64>>>);

    impl crate::outbox::Wire for Logging {
        fn try_send(&self, frame: &Bytes) -> crate::outbox::WireSend {
            self.0.lock().unwrap().push(seq_of(frame));
            crate::outbox::WireSend::Sent
        }
    }

    fn seq_of(frame: &Bytes) -> u64 {
        std::str::from_utf8(frame).unwrap().trim().parse().unwrap()
    }

    /// [`reached_after_commits_to`] a socket with the default outbox.
    fn reached_after_commits_of(sizes: &[usize], frame_bytes: usize) -> Reached {
        let config = crate::config::HubConfig::default();
        let outbox = Budget {
            frames: config.outbox_capacity,
            bytes: config.outbox_bytes,
        };
        reached_after_commits_to(outbox, sizes, frame_bytes)
    }

    /// Commits of these sizes (messages of `frame_bytes` to one room, whose one socket's
    /// writer is idle and has `budget` for its outbox) wait while the deliverer is busy
    /// elsewhere; then it runs, with the turn a server with that outbox has. Checks that the
    /// socket got every frame once, in order (it was not closed for a full outbox), and every
    /// sender its answer, in order.
    fn reached_after_commits_to(budget: Budget, sizes: &[usize], frame_bytes: usize) -> Reached {
        use crate::channel::{Channel, Member};
        use crate::history::{HistoryReader, MemoryHistory};
        use crate::outbox::{outbox, Outbound};
        use crate::rules::ChannelRule;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let registry = Arc::new(Registry::default());
        let total: usize = sizes.iter().sum();
        let reader = HistoryReader::new(Arc::new(MemoryHistory::default()));
        let (tx, mut rx) = outbox(budget, reader, Default::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        rx.attach_wire(Arc::new(Logging(written.clone())));
        runtime.block_on(async {
            let channel = registry
                .activate("room", || async {
                    let rule = ChannelRule::open("*");
                    Ok::<_, ()>(Channel::new(Arc::from("room"), rule, Some("e".into()), 0))
                })
                .await
                .unwrap();
            let member = Member {
                outbox: tx,
                client: Arc::from("{}"),
                authenticated: true,
                presence: false,
            };
            channel.lock().insert(uuid::Uuid::new_v4(), member);
        });
        // The socket's writer, idle until it is given something; it ends on anything but a
        // frame (a close for a full outbox), saying what it was.
        let woken_with = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (written, woken_with) = (written.clone(), woken_with.clone());
            runtime.spawn(async move {
                loop {
                    let first = match rx.next().await {
                        Outbound::Frame(first) => first,
                        other => return format!("{other:?}"),
                    };
                    let mut frames = vec![first];
                    frames.extend(std::iter::from_fn(|| rx.try_next()));
                    woken_with.lock().unwrap().push(frames.len());
                    written.lock().unwrap().extend(frames.iter().map(seq_of));
                }
            })
        };
        let deliverer = runtime
            .block_on(async { Deliverer::start(registry.clone(), 1 << 30, Turn::within(budget)) })
            .expect("started on a runtime");
        // The writer parks, idle; the deliverer waits for work.
        runtime.block_on(tokio::task::yield_now());
        let mut answers = Vec::new();
        let mut seq = 0;
        for &size in sizes {
            let mut commit = Vec::new();
            for _ in 0..size {
                seq += 1;
                let (mut handoff, rx) = answered(seq);
                let digits = seq.to_string();
                let frame = " ".repeat(frame_bytes.saturating_sub(digits.len())) + &digits;
                handoff.stored = Some((seq, Arc::from("e"), Bytes::from(frame)));
                commit.push(handoff);
                answers.push(rx);
            }
            deliverer.hand_over(commit);
        }
        runtime.block_on(async {
            while written.lock().unwrap().len() < total && !writer.is_finished() {
                tokio::task::yield_now().await;
            }
        });
        if writer.is_finished() {
            let ended = runtime.block_on(writer).expect("the writer did not panic");
            panic!(
                "the socket was given {ended} after {:?}",
                written.lock().unwrap()
            );
        }
        writer.abort();
        let total = u64::try_from(total).unwrap();
        assert_eq!(*written.lock().unwrap(), (1..=total).collect::<Vec<_>>());
        for (seq, mut rx) in (1..).zip(answers) {
            assert_eq!(rx.try_recv().unwrap().unwrap().seq, seq);
        }
        let woken_with = std::mem::take(&mut *woken_with.lock().unwrap());
        let queued: usize = woken_with.iter().sum();
        Reached {
            direct: usize::try_from(total).unwrap() - queued,
            woken_with,
        }
    }

    #[test]
    fn a_lone_message_is_written_straight_to_an_idle_socket() {
        let reached = reached_after_commits_of(&[1], 8);
        assert_eq!(
            reached,
            Reached {
                woken_with: vec![],
                direct: 1
            }
        );
    }

    #[test]
    fn commits_that_wait_together_reach_a_socket_together() {
        // With the old loop: woken three times with one frame each.
        let reached = reached_after_commits_of(&[1, 1, 1], 8);
        assert_eq!(
            reached,
            Reached {
                woken_with: vec![3],
                direct: 0
            }
        );
    }

    #[test]
    fn a_long_backlog_is_taken_in_turns_that_sockets_write_in_between() {
        // 256 messages a turn at most: 100 + 100, then 100 + 100.
        let reached = reached_after_commits_of(&[100, 100, 100, 100], 8);
        assert_eq!(reached.woken_with, [200, 200]);
        // 1 MiB of frames a turn at most: three of 600 KB go one at a time, the last one,
        // with nothing behind it, straight to the socket.
        let reached = reached_after_commits_of(&[1, 1, 1], 600_000);
        assert_eq!(
            reached,
            Reached {
                woken_with: vec![1, 1],
                direct: 1
            }
        );
        // A message taken alone with more behind it is queued, not written straight; the
        // commit behind it, larger than a turn, is taken in parts.
        let reached = reached_after_commits_of(&[1, 300], 8);
        assert_eq!(
            reached,
            Reached {
                woken_with: vec![1, 256, 44],
                direct: 0
            }
        );
    }

    #[test]
    fn a_commit_larger_than_a_quarter_of_an_outbox_reaches_a_healthy_socket_in_parts() {
        // An outbox of 16 frames: a commit of 40 messages goes 4 at a time (taken whole, it
        // would fill the outbox and close the socket with 1013).
        let small = Budget {
            frames: 16,
            bytes: 4 << 20,
        };
        let reached = reached_after_commits_to(small, &[40], 8);
        assert_eq!(reached.woken_with, [4; 10]);
        // An outbox of 64 KiB: messages of 4 KiB go 3 at a time (3 × 4 KiB and what each
        // costs the queue is under 16 KiB, 4 are over).
        let small = Budget {
            frames: 1024,
            bytes: 64 * 1024,
        };
        let reached = reached_after_commits_to(small, &[20], 4096);
        assert_eq!(reached.woken_with, [3, 3, 3, 3, 3, 3, 2]);
    }

    #[test]
    fn a_commit_taken_in_parts_is_finished_and_answered_in_order_when_the_runtime_goes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let turn = Turn {
            messages: 4,
            bytes: 1 << 20,
        };
        let deliverer = runtime
            .block_on(async { Deliverer::start(Arc::new(Registry::default()), 1 << 20, turn) })
            .expect("started on a runtime");
        let (commit, mut answers): (Vec<_>, Vec<_>) = (1..=40).map(answered).unzip();
        deliverer.hand_over(commit);
        // The runtime runs until the first part is answered, then goes.
        runtime.block_on(async {
            while answers[0].is_empty() {
                tokio::task::yield_now().await;
            }
        });
        let answered_before = answers.iter().filter(|rx| !rx.is_empty()).count();
        assert!(
            (4..40).contains(&answered_before),
            "{answered_before} of 40 answered: the commit was not taken in parts"
        );
        drop(runtime);
        for (seq, rx) in (1..).zip(&mut answers) {
            assert_eq!(rx.try_recv().unwrap().unwrap().seq, seq);
        }
        // What the persister commits next is carried out after all of it.
        let (next, mut next_rx) = answered(41);
        deliverer.hand_over(vec![next]);
        assert_eq!(next_rx.try_recv().unwrap().unwrap().seq, 41);
        deliverer.drain();
    }

    #[test]
    fn a_commit_waiting_for_room_is_let_in_as_the_one_before_goes_out_in_parts() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let turn = Turn {
            messages: 4,
            bytes: 1 << 20,
        };
        // Room for 50 handoffs without frames (64 bytes each): a commit of 30 waits behind one
        // of 40 until 20 of those went out, part by part; the count of waiting bytes is checked
        // at the end.
        let deliverer = Arc::new(
            runtime
                .block_on(async {
                    Deliverer::start(Arc::new(Registry::default()), 50 * HANDOFF_OVERHEAD, turn)
                })
                .expect("started on a runtime"),
        );
        let (first, mut answers): (Vec<_>, Vec<_>) = (1..=40).map(answered).unzip();
        deliverer.hand_over(first);
        let (second, second_answers): (Vec<_>, Vec<_>) = (41..=70).map(answered).unzip();
        answers.extend(second_answers);
        let handing = {
            let deliverer = deliverer.clone();
            std::thread::spawn(move || deliverer.hand_over(second))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!handing.is_finished(), "a commit over the room was let in");
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while !handing.is_finished() {
                assert!(tokio::time::Instant::now() < deadline, "never let in");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // Answers come in order: the last one means all of them.
            while answers[69].is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "never answered");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        handing.join().unwrap();
        for (seq, mut rx) in (1..).zip(answers) {
            assert_eq!(rx.try_recv().unwrap().unwrap().seq, seq);
        }
        // Every part gave its bytes back, no more and no less (a count that went below zero
        // would have ended the task, whose drop delivers the rest and zeroes the count).
        let waiting = deliverer.shared.lock();
        assert!(!waiting.closed, "the deliverer task ended");
        assert_eq!(waiting.bytes, 0);
    }

    #[test]
    fn what_waits_when_the_runtime_goes_is_still_answered_and_later_batches_too() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Started, but never given a chance to run: everything handed over waits.
        let deliverer = runtime
            .block_on(async {
                Deliverer::start(Arc::new(Registry::default()), 1 << 20, DEFAULT_TURN)
            })
            .expect("started on a runtime");
        let (first, mut first_rx) = answered(1);
        deliverer.hand_over(vec![first]);
        assert!(
            first_rx.try_recv().is_err(),
            "nothing ran the deliverer yet"
        );
        drop(runtime);
        assert_eq!(first_rx.try_recv().unwrap().unwrap().seq, 1);
        let (second, mut second_rx) = answered(2);
        deliverer.hand_over(vec![second]);
        assert_eq!(second_rx.try_recv().unwrap().unwrap().seq, 2);
        deliverer.drain();
    }

    /// A deliverer with room for one batch, on a runtime that has not run it yet, holding the
    /// answer of message 1 (the first batch is always taken, however large; the next one waits
    /// for it): the runtime, the deliverer, and that answer's receiver.
    fn holding_one() -> (
        tokio::runtime::Runtime,
        Arc<Deliverer>,
        oneshot::Receiver<Result<Accepted, Refusal>>,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let deliverer = runtime
            .block_on(async { Deliverer::start(Arc::new(Registry::default()), 1, DEFAULT_TURN) })
            .expect("started on a runtime");
        let (first, first_rx) = answered(1);
        deliverer.hand_over(vec![first]);
        (runtime, Arc::new(deliverer), first_rx)
    }

    #[test]
    fn a_task_waiting_for_room_leaves_its_runtime_free_and_gets_in_once_there_is_room() {
        let (runtime, deliverer, mut first_rx) = holding_one();
        let (second, mut second_rx) = answered(2);
        // Handed over from a task on a runtime of its own (as a Redis node's subscription
        // does), whose other tasks go on meanwhile: here, a ticker.
        let (ticks_tx, ticks) = std::sync::mpsc::channel();
        let other = {
            let deliverer = deliverer.clone();
            std::thread::spawn(move || {
                let other = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                other.block_on(async move {
                    let handing =
                        tokio::spawn(async move { deliverer.hand_over_async(vec![second]).await });
                    for _ in 0..3 {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        ticks_tx.send(handing.is_finished()).unwrap();
                    }
                    handing.await.unwrap();
                })
            })
        };
        for _ in 0..3 {
            let tick = ticks.recv_timeout(std::time::Duration::from_secs(10));
            assert_eq!(
                tick,
                Ok(false),
                "the waiting task held up its runtime, or got in"
            );
        }
        // The deliverer runs: once the first batch is out, the second gets in and goes out.
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while second_rx.is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "never let in");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        other.join().unwrap();
        assert_eq!(first_rx.try_recv().unwrap().unwrap().seq, 1);
        assert_eq!(second_rx.try_recv().unwrap().unwrap().seq, 2);
        // Once the deliverer is gone, a task's batch is delivered by the task itself.
        drop(runtime);
        let (third, mut third_rx) = answered(3);
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        other.block_on(deliverer.hand_over_async(vec![third]));
        assert_eq!(third_rx.try_recv().unwrap().unwrap().seq, 3);
    }

    #[test]
    fn a_hand_over_given_up_while_waiting_leaves_nothing_behind() {
        let (runtime, deliverer, mut first_rx) = holding_one();
        // A Redis node's subscription gives up waiting for room (it then drops its connection
        // and catches up from the streams): the batch is not queued, nor counted.
        let (second, mut second_rx) = answered(2);
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let handing = deliverer.hand_over_async(vec![second]);
        let waiting_for = std::time::Duration::from_millis(20);
        let waited = other.block_on(async { tokio::time::timeout(waiting_for, handing).await });
        assert!(waited.is_err(), "let in over the room");
        {
            let waiting = deliverer.shared.lock();
            assert_eq!(waiting.batches.len(), 1, "only the first waits");
            assert_eq!(waiting.bytes, HANDOFF_OVERHEAD);
        }
        runtime.block_on(async {
            while first_rx.is_empty() {
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(first_rx.try_recv().unwrap().unwrap().seq, 1);
        assert!(
            matches!(
                second_rx.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ),
            "what was given up is not carried out"
        );
        // The next one is let in and carried out.
        let (third, mut third_rx) = answered(3);
        other.block_on(deliverer.hand_over_async(vec![third]));
        runtime.block_on(async {
            while third_rx.is_empty() {
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(third_rx.try_recv().unwrap().unwrap().seq, 3);
        assert_eq!(deliverer.shared.lock().bytes, 0);
    }

    #[test]
    fn the_persister_waits_while_the_deliverer_is_too_far_behind() {
        let (runtime, deliverer, _first_rx) = holding_one();
        let (second, mut second_rx) = answered(2);
        let handing = {
            let deliverer = deliverer.clone();
            std::thread::spawn(move || deliverer.hand_over(vec![second]))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!handing.is_finished(), "a batch over the budget was taken");
        // Running the runtime lets the deliverer catch up, and the second batch in.
        runtime.block_on(async {
            for _ in 0..100 {
                if second_rx.try_recv().is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the second batch was never delivered");
        });
        handing.join().unwrap();
    }
}
