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
    /// Returns how many sockets it was queued for.
    pub(crate) fn deliver_stored(&mut self, seq: u64, epoch: &str, frame: &Bytes) -> usize {
        if self.state.epoch.as_deref() != Some(epoch) {
            self.state.epoch = Some(Arc::from(epoch));
            self.state.delivered_seq = 0;
        }
        if seq <= self.state.delivered_seq {
            return 0;
        }
        self.state.delivered_seq = seq;
        self.deliver(Target::Everyone, frame)
    }

    /// Sends a frame to the members the target selects; how many it was queued for (0 when a
    /// socket target is not a member here).
    pub(crate) fn deliver(&self, target: Target<'_>, frame: &Bytes) -> usize {
        let members = &self.state.members;
        match target {
            Target::Everyone => push_all(members.values(), frame),
            Target::Authenticated => push_all(members.values().filter(|m| m.authenticated), frame),
            Target::Socket(id) => {
                let member = Uuid::try_parse(id).ok().and_then(|id| members.get(&id));
                match member {
                    Some(member) => {
                        member.outbox.push(frame.clone());
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
                member.outbox.push(frame.clone());
            }
        }
    }

    /// Sends a presence frame that `socket` caused to every other presence member.
    pub(crate) fn announce_frame(&self, socket: &Uuid, frame: &Bytes) {
        for (id, member) in self.state.members.iter() {
            if id != socket && member.presence {
                member.outbox.push(frame.clone());
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

/// How many members ahead a fan-out prefetches an outbox, and (half as far) its writer's task.
const PREFETCH_AHEAD: usize = 4;

/// Pushes the frame into every member's outbox; how many. Each outbox is usually out of the
/// cache by the time the next message comes (a room of a thousand touches more than the cache
/// holds between two messages), so while one is pushed the outboxes a few members ahead, and
/// the tasks their pushes will wake, are loaded: the waits on memory overlap instead of adding
/// up.
fn push_all<'a>(members: impl Iterator<Item = &'a Member> + Clone, frame: &Bytes) -> usize {
    let mut far = members.clone();
    let mut near = members.clone();
    for member in far.by_ref().take(PREFETCH_AHEAD) {
        member.outbox.prefetch();
    }
    for member in near.by_ref().take(PREFETCH_AHEAD / 2) {
        member.outbox.prefetch_writer();
    }
    let mut queued = 0;
    for member in members {
        if let Some(next) = far.next() {
            next.outbox.prefetch();
        }
        if let Some(next) = near.next() {
            next.outbox.prefetch_writer();
        }
        member.outbox.push(frame.clone());
        queued += 1;
    }
    queued
}
