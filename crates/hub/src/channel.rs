//! One channel: its members and how a frame reaches them.
//!
//! Every delivery to a channel happens under the channel's lock, so all members see the
//! channel's frames in one order. Deliveries never wait: each is a `try_send` of shared bytes.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_protocol::{Action, Target};
use uuid::Uuid;

use crate::encode;
use crate::outbox::Outbox;

/// A named channel and its members.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    members: Mutex<HashMap<Uuid, Member>>,
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

/// The members of a channel, locked.
pub(crate) struct Members<'a> {
    channel: &'a Channel,
    members: MutexGuard<'a, HashMap<Uuid, Member>>,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            members: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lock(&self) -> Members<'_> {
        Members {
            channel: self,
            members: self.members.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Members<'_> {
    pub(crate) fn get_mut(&mut self, socket: &Uuid) -> Option<&mut Member> {
        self.members.get_mut(socket)
    }

    pub(crate) fn insert(&mut self, socket: Uuid, member: Member) {
        self.members.insert(socket, member);
    }

    pub(crate) fn remove(&mut self, socket: &Uuid) -> Option<Member> {
        self.members.remove(socket)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends a frame to the members the target selects; false when a socket target is not a
    /// member.
    pub(crate) fn deliver(&self, target: Target<'_>, frame: &Bytes) -> bool {
        match target {
            Target::Everyone => {
                for member in self.members.values() {
                    member.outbox.push(frame.clone());
                }
                true
            }
            Target::Authenticated => {
                for member in self.members.values().filter(|m| m.authenticated) {
                    member.outbox.push(frame.clone());
                }
                true
            }
            Target::Socket(id) => {
                let member = Uuid::try_parse(id)
                    .ok()
                    .and_then(|id| self.members.get(&id));
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

    /// Tells every presence member except `socket` that `client` joined or left.
    pub(crate) fn announce(&self, socket: &Uuid, action: Action, client: &str) {
        let mut frame = None;
        for (id, member) in self.members.iter() {
            if id != socket && member.presence {
                let frame = frame.get_or_insert_with(|| {
                    encode::presence_update(&self.channel.name, action, client)
                });
                member.outbox.push(frame.clone());
            }
        }
    }

    /// The `presence_full` frame: every presence member's client object.
    pub(crate) fn presence_full(&self) -> Bytes {
        let listed = self.members.values().filter(|m| m.presence);
        encode::presence_full(&self.channel.name, listed.map(|m| &*m.client))
    }
}
