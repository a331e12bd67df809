//! One channel: its members, its sequence numbers, and how a frame reaches the members.
//!
//! Every delivery to a channel happens under the channel's lock, so all members see the
//! channel's frames in one order, the order of `seq`. Deliveries never wait: each is a
//! `try_send` of shared bytes.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_protocol::{Action, Target};
use uuid::Uuid;

use crate::encode;
use crate::history::ChannelHistory;
use crate::outbox::{Outbox, VolatileKey, VolatileOutcome};
use crate::ChannelRule;

/// A named channel and its state.
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
    /// The channel's history epoch.
    pub(crate) epoch: Arc<str>,
    /// The seq the next stored message gets.
    pub(crate) next_seq: u64,
    /// The highest seq delivered to members; everything up to it is stored.
    pub(crate) delivered_seq: u64,
    /// Messages handed to the persister and not yet delivered; the channel stays registered
    /// until they are, so its seq counter is never re-read from the store too early.
    pub(crate) pending: u64,
    recent_ids: RecentIds,
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

/// Ids of the channel's latest stored messages, so a resend is stored and delivered once.
#[derive(Debug)]
struct RecentIds {
    seqs: HashMap<String, u64>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    fn insert(&mut self, id: String, seq: u64) {
        if self.seqs.insert(id.clone(), seq).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seqs.remove(&old);
            }
        }
    }
}

/// The channel, locked.
pub(crate) struct Locked<'a> {
    channel: &'a Channel,
    state: MutexGuard<'a, ChannelState>,
}

impl Channel {
    pub(crate) fn new(
        name: Arc<str>,
        rule: ChannelRule,
        history: ChannelHistory,
        recent_ids: usize,
    ) -> Self {
        let mut ids = RecentIds {
            seqs: HashMap::new(),
            order: VecDeque::new(),
            capacity: recent_ids,
        };
        for (id, seq) in history.recent_ids {
            ids.insert(id, seq);
        }
        Self {
            name,
            rule,
            state: Mutex::new(ChannelState {
                members: HashMap::new(),
                epoch: Arc::from(history.epoch),
                next_seq: history.last_seq + 1,
                delivered_seq: history.last_seq,
                pending: 0,
                recent_ids: ids,
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
    pub(crate) fn member_mut(&mut self, socket: &Uuid) -> Option<&mut Member> {
        self.state.members.get_mut(socket)
    }

    pub(crate) fn insert(&mut self, socket: Uuid, member: Member) {
        self.state.members.insert(socket, member);
    }

    pub(crate) fn remove(&mut self, socket: &Uuid) -> Option<Member> {
        self.state.members.remove(socket)
    }

    /// No members and nothing waiting to be stored: the channel may leave the registry.
    pub(crate) fn is_idle(&self) -> bool {
        self.state.members.is_empty() && self.state.pending == 0
    }

    /// The seq of an already stored (or queued) message with this id.
    pub(crate) fn seq_of(&self, id: &str) -> Option<u64> {
        self.state.recent_ids.seqs.get(id).copied()
    }

    /// Takes the next seq for a message with this id, now handed to the persister.
    pub(crate) fn assign_seq(&mut self, id: String) -> u64 {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        self.state.pending += 1;
        self.state.recent_ids.insert(id, seq);
        seq
    }

    /// Delivers a stored message (now durable) to every member.
    pub(crate) fn deliver_stored(&mut self, seq: u64, frame: &Bytes) {
        self.state.delivered_seq = self.state.delivered_seq.max(seq);
        self.state.pending = self.state.pending.saturating_sub(1);
        self.deliver(Target::Everyone, frame);
    }

    /// A message handed to the persister that will never be delivered.
    pub(crate) fn abandon_pending(&mut self) {
        self.state.pending = self.state.pending.saturating_sub(1);
    }

    /// Sends a frame to the members the target selects; false when a socket target is not a
    /// member.
    pub(crate) fn deliver(&self, target: Target<'_>, frame: &Bytes) -> bool {
        let members = &self.state.members;
        match target {
            Target::Everyone => {
                for member in members.values() {
                    member.outbox.push(frame.clone());
                }
                true
            }
            Target::Authenticated => {
                for member in members.values().filter(|m| m.authenticated) {
                    member.outbox.push(frame.clone());
                }
                true
            }
            Target::Socket(id) => {
                let member = Uuid::try_parse(id).ok().and_then(|id| members.get(&id));
                match member {
                    Some(member) => {
                        member.outbox.push(frame.clone());
                        true
                    }
                    None => false,
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

    /// The `presence_full` frame: every presence member's client object.
    pub(crate) fn presence_full(&self) -> Bytes {
        let listed = self.state.members.values().filter(|m| m.presence);
        encode::presence_full(&self.channel.name, listed.map(|m| &*m.client))
    }
}
