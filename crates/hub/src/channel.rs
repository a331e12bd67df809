//! One channel as this node holds it: its local members, the position of its history, and how
//! a frame reaches the members.
//!
//! Every delivery to a channel happens under the channel's lock, so all members see the
//! channel's frames in one order, the order of `seq`. Deliveries never wait: each is a
//! non-blocking push of shared bytes into a member's outbox. Seqs are handed out by the broker,
//! not here; the channel only remembers how far it delivered.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_protocol::{Action, Target};
use uuid::Uuid;

use crate::encode;
use crate::outbox::{Outbox, VolatileKey, VolatileOutcome};
use crate::rules::ChannelRule;

/// A named channel active on this node, and its state.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    /// The rule that applies to this channel.
    pub(crate) rule: ChannelRule,
    state: Mutex<ChannelState>,
}

/// Everything about a channel that changes, behind its lock.
#[derive(Debug)]
pub(crate) struct ChannelState {
    members: HashMap<Uuid, Member>,
    /// The channel's history epoch (none until something was stored).
    pub(crate) epoch: Option<Arc<str>>,
    /// The highest seq delivered to members; everything up to it is stored.
    pub(crate) delivered_seq: u64,
    /// Set when the channel left the registry: whoever still holds it must look it up again.
    pub(crate) retired: bool,
    /// On a Redis node, how far its subscription handed the channel's stored messages on to be
    /// delivered here; they may still be on their way.
    handed: Handed,
}

/// The furthest stored message handed on to be delivered: its epoch and seq.
#[derive(Debug, Default)]
pub(crate) struct Handed(Option<(Arc<str>, u64)>);

impl Handed {
    /// Notes that the messages of `epoch` up to `seq` were handed on.
    pub(crate) fn note(&mut self, epoch: &Arc<str>, seq: u64) {
        let further = match &self.0 {
            Some((of, up_to)) => of != epoch || seq > *up_to,
            None => true,
        };
        if further {
            self.0 = Some((epoch.clone(), seq));
        }
    }

    /// How far `epoch` was handed on; none if the last hand-off was of another epoch.
    fn of(&self, epoch: &str) -> Option<u64> {
        let handed = self.0.as_ref();
        handed.filter(|(of, _)| &**of == epoch).map(|&(_, seq)| seq)
    }
}

impl ChannelState {
    /// How far `epoch` has come to this node's members: the furthest seq delivered, or handed
    /// on to be delivered; none if neither is of that epoch.
    pub(crate) fn reached(&self, epoch: &str) -> Option<u64> {
        let delivered = (self.epoch.as_deref() == Some(epoch)).then_some(self.delivered_seq);
        delivered.max(self.handed.of(epoch))
    }

    /// Notes that the messages of `epoch` up to `seq` were handed on to be delivered.
    pub(crate) fn handed(&mut self, epoch: &Arc<str>, seq: u64) {
        self.handed.note(epoch, seq);
    }

    /// Takes over what was handed on for the channel while it was being activated.
    pub(crate) fn take_handed(&mut self, handed: Handed) {
        if let Some((epoch, seq)) = handed.0 {
            self.handed.note(&epoch, seq);
        }
    }
}

/// How a fan-out hands a frame to sockets whose writers are idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// It writes its share of the room itself ([`push_all`]): right for a message with nothing
    /// behind it, where each socket would take its task's wake-up for this one frame.
    Direct,
    /// It queues the frame for each socket's own task: right when more messages wait behind
    /// this one, since a task that runs after several were queued writes them all at once.
    Queued,
}

/// One socket's subscription to a channel.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) outbox: Outbox,
    /// The socket's client object as JSON, spliced into the frames it causes.
    pub(crate) client: Arc<str>,
    pub(crate) authenticated: bool,
    pub(crate) presence: bool,
}

/// The channel, locked.
pub(crate) struct Locked<'a> {
    channel: &'a Channel,
    state: MutexGuard<'a, ChannelState>,
}

impl Channel {
    /// A channel whose history stands at `epoch` and `last_seq`.
    pub(crate) fn new(
        name: Arc<str>,
        rule: ChannelRule,
        epoch: Option<String>,
        last_seq: u64,
    ) -> Self {
        Self {
            name,
            rule,
            state: Mutex::new(ChannelState {
                members: HashMap::new(),
                epoch: epoch.map(Arc::from),
                delivered_seq: last_seq,
                retired: false,
                handed: Handed::default(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            channel: self,
            state: self.state.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = ChannelState;
    fn deref(&self) -> &ChannelState {
        &self.state
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut ChannelState {
        &mut self.state
    }
}

impl Locked<'_> {
    /// The channel's name.
    pub(crate) fn channel_name(&self) -> Arc<str> {
        self.channel.name.clone()
    }

    pub(crate) fn member_mut(&mut self, socket: &Uuid) -> Option<&mut Member> {
        self.state.members.get_mut(socket)
    }

    pub(crate) fn insert(&mut self, socket: Uuid, member: Member) {
        self.state.members.insert(socket, member);
    }

    pub(crate) fn remove(&mut self, socket: &Uuid) -> Option<Member> {
        self.state.members.remove(socket)
    }

    /// No members: the channel may leave the registry.
    pub(crate) fn is_idle(&self) -> bool {
        self.state.members.is_empty()
    }

    /// Delivers a stored message (now durable) to every member, once: a seq already
    /// delivered in this epoch is skipped. A new epoch (the history was reset) starts over.
    /// Returns how many sockets it was handed to.
    pub(crate) fn deliver_stored(
        &mut self,
        seq: u64,
        epoch: &str,
        frame: &Bytes,
        writes: Writes,
    ) -> usize {
        if self.state.epoch.as_deref() != Some(epoch) {
            self.state.epoch = Some(Arc::from(epoch));
            self.state.delivered_seq = 0;
        }
        if seq <= self.state.delivered_seq {
            return 0;
        }
        self.state.delivered_seq = seq;
        let members = &self.state.members;
        push_all(members.values(), members.len(), frame, writes)
    }

    /// Sends a frame that is not stored to the members the target selects, queued for each
    /// socket's own task; how many it was handed to (0 when a socket target is not a member
    /// here).
    pub(crate) fn deliver(&self, target: Target<'_>, frame: &Bytes) -> usize {
        let members = &self.state.members;
        match target {
            Target::Everyone => push_each(members.values(), frame, Outbox::push_queued),
            Target::Authenticated => {
                let authenticated = members.values().filter(|m| m.authenticated);
                push_each(authenticated, frame, Outbox::push_queued)
            }
            Target::Socket(id) => {
                let member = Uuid::try_parse(id).ok().and_then(|id| members.get(&id));
                match member {
                    Some(member) => {
                        member.outbox.push_queued(frame.clone());
                        1
                    }
                    None => 0,
                }
            }
        }
    }

    /// Sends a volatile frame from `sender` to every other member, coalescing with the unsent
    /// frame of the same stream; returns (queued, coalesced, dropped) counts.
    pub(crate) fn deliver_volatile(&self, sender: &Uuid, frame: &Bytes) -> [u64; 3] {
        let key: VolatileKey = (self.channel.name.clone(), *sender);
        let mut counts = [0u64; 3];
        for (id, member) in &self.state.members {
            if id == sender {
                continue;
            }
            let slot = match member.outbox.push_volatile(&key, frame.clone()) {
                VolatileOutcome::Queued => 0,
                VolatileOutcome::Coalesced => 1,
                VolatileOutcome::Dropped => 2,
            };
            counts[slot] += 1;
        }
        counts
    }

    /// Tells every presence member except `socket` that `client` joined or left.
    pub(crate) fn announce(&self, socket: &Uuid, action: Action, client: &str) {
        let mut frame = None;
        for (id, member) in self.state.members.iter() {
            if id != socket && member.presence {
                let frame = frame.get_or_insert_with(|| {
                    encode::presence_update(&self.channel.name, action, client)
                });
                member.outbox.push_queued(frame.clone());
            }
        }
    }

    /// Sends a presence frame that `socket` caused to every other presence member.
    pub(crate) fn announce_frame(&self, socket: &Uuid, frame: &Bytes) {
        for (id, member) in self.state.members.iter() {
            if id != socket && member.presence {
                member.outbox.push_queued(frame.clone());
            }
        }
    }

    /// The client objects of the presence members here.
    pub(crate) fn presence_clients(&self) -> Vec<Arc<str>> {
        let listed = self.state.members.values().filter(|m| m.presence);
        listed.map(|m| m.client.clone()).collect()
    }

    /// Every member here: socket, listed in presence, client object.
    pub(crate) fn member_list(&self) -> Vec<(Uuid, bool, Arc<str>)> {
        let members = self.state.members.iter();
        members
            .map(|(id, m)| (*id, m.presence, m.client.clone()))
            .collect()
    }

    /// Whether `socket` is a member here.
    pub(crate) fn has_member(&self, socket: &Uuid) -> bool {
        self.state.members.contains_key(socket)
    }
}

/// How many members ahead a fan-out prefetches an outbox, and (half as far) its socket.
const PREFETCH_AHEAD: usize = 4;

/// Hands the frame to every member's outbox; how many.
///
/// With [`Writes::Direct`] a push writes to an idle socket itself, on this thread. The fan-out
/// does that for its own share of the room (of about `count` members), one member in N on N
/// runtime workers, and queues the rest first, for the sockets' tasks, which the other workers
/// take up while it writes: a large room's writes are spread over every core, and on one
/// worker the fan-out writes to everyone, with no task woken. The writes never wait, but they
/// are done under the channel's lock, so on N workers the lock is held for about a write's
/// time (some microseconds) per member in N.
fn push_all<'a>(
    members: impl Iterator<Item = &'a Member> + Clone,
    count: usize,
    frame: &Bytes,
    writes: Writes,
) -> usize {
    let own_share = match writes {
        Writes::Direct => {
            let workers =
                tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
            count.div_ceil(workers.max(1))
        }
        Writes::Queued => 0,
    };
    let queued = push_each(members.clone().skip(own_share), frame, Outbox::push_queued);
    let written = push_each(members.take(own_share), frame, Outbox::push);
    queued + written
}

/// Pushes the frame into each member's outbox with `push`; how many. Each outbox is usually
/// out of the cache by the time the next message comes (a room of a thousand touches more than
/// the cache holds between two messages), so while one is pushed the outboxes a few members
/// ahead, and the sockets or tasks their pushes will touch, are loaded: the waits on memory
/// overlap instead of adding up.
fn push_each<'a>(
    members: impl Iterator<Item = &'a Member> + Clone,
    frame: &Bytes,
    push: fn(&Outbox, Bytes),
) -> usize {
    let mut far = members.clone();
    let mut near = members.clone();
    for member in far.by_ref().take(PREFETCH_AHEAD) {
        member.outbox.prefetch();
    }
    for member in near.by_ref().take(PREFETCH_AHEAD / 2) {
        member.outbox.prefetch_writer();
    }
    let mut pushed = 0;
    for member in members {
        if let Some(next) = far.next() {
            next.outbox.prefetch();
        }
        if let Some(next) = near.next() {
            next.outbox.prefetch_writer();
        }
        push(&member.outbox, frame.clone());
        pushed += 1;
    }
    pushed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HistoryReader, MemoryHistory};
    use crate::outbox::{outbox, Budget, OutboxReceiver, Wire, WireSend};
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A socket that takes every frame and counts them.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wire for Counting {
        fn try_send(&self, _frame: &Bytes) -> WireSend {
            self.0.fetch_add(1, Ordering::Relaxed);
            WireSend::Sent
        }
    }

    /// A room of `size` idle sockets: (members, receivers, how many frames went straight out).
    fn room(size: usize) -> (Vec<Member>, Vec<OutboxReceiver>, Arc<Counting>) {
        let wire = Arc::new(Counting::default());
        let mut members = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..size {
            let budget = Budget {
                frames: 16,
                bytes: 1 << 20,
            };
            let reader = HistoryReader::new(Arc::new(MemoryHistory::default()));
            let (tx, mut rx) = outbox(budget, reader, Default::default());
            rx.attach_wire(wire.clone());
            // The writer has written everything and waits.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::pin::pin!(rx.next()).poll(&mut cx).is_pending());
            members.push(Member {
                outbox: tx,
                client: Arc::from("{}"),
                authenticated: true,
                presence: false,
            });
            receivers.push(rx);
        }
        (members, receivers, wire)
    }

    fn waiting(receivers: &mut [OutboxReceiver]) -> usize {
        receivers.iter_mut().filter_map(|rx| rx.try_next()).count()
    }

    /// Fans one frame out to a room of ten idle sockets: (how many the fan-out wrote itself, how
    /// many wait for their sockets' tasks).
    fn fan_out_to_ten(writes: Writes) -> (usize, usize) {
        let (members, mut receivers, wire) = room(10);
        let frame = Bytes::from_static(b"m");
        assert_eq!(push_all(members.iter(), members.len(), &frame, writes), 10);
        (wire.0.load(Ordering::Relaxed), waiting(&mut receivers))
    }

    #[test]
    fn a_message_handed_on_counts_as_reached_in_its_epoch_only() {
        let rule = ChannelRule::open("*");
        let channel = Channel::new(Arc::from("room"), rule, Some("e1".into()), 5);
        let mut locked = channel.lock();
        assert_eq!(locked.reached("e1"), Some(5), "what was delivered");
        assert_eq!(locked.reached("e2"), None, "another epoch");
        // Handed on, not delivered yet: the next one is not a gap.
        let e1: Arc<str> = Arc::from("e1");
        locked.handed(&e1, 9);
        assert_eq!(locked.reached("e1"), Some(9));
        // An older hand-off does not go back.
        locked.handed(&e1, 7);
        assert_eq!(locked.reached("e1"), Some(9));
        // Delivered further than handed (a channel opened later): the furthest counts.
        locked.delivered_seq = 12;
        assert_eq!(locked.reached("e1"), Some(12));
        // A new epoch handed on: the old one's delivered seq still stands for the old one.
        let e2: Arc<str> = Arc::from("e2");
        locked.handed(&e2, 1);
        assert_eq!(locked.reached("e2"), Some(1));
        assert_eq!(locked.reached("e1"), Some(12));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_one_worker_a_fan_out_writes_to_every_idle_socket_itself() {
        assert_eq!(fan_out_to_ten(Writes::Direct), (10, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_more_workers_a_fan_out_leaves_the_rest_of_the_room_to_the_sockets_tasks() {
        // Its own share, one of four (rounded up); the other seven wait for their tasks.
        assert_eq!(fan_out_to_ten(Writes::Direct), (3, 7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn with_messages_waiting_behind_a_fan_out_leaves_every_socket_to_its_task() {
        assert_eq!(fan_out_to_ten(Writes::Queued), (0, 10));
    }
}
