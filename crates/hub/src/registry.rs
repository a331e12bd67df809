//! The channels active on this node, by name, and the sockets connected to it.
//!
//! A channel becomes active when its first local member joins and leaves the registry when
//! its last one goes. Activation reads the channel's history position (and, on a cluster,
//! subscribes to it) — I/O that must not hold up anyone else — so it runs under the channel's
//! own slot, not the registry's lock: joiners of one channel wait for each other, joiners of
//! other channels do not wait at all. Stored messages that arrive while a channel is being
//! activated are kept in its slot and delivered once it is active, so none falls between the
//! position read and the first live delivery.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use switchboard_protocol::CloseCode;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::channel::{Channel, Handed, Writes};
use crate::metrics::EngineMetrics;
use crate::outbox::Outbox;

/// Every channel active (or being activated) here, and every socket.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: Mutex<HashMap<Arc<str>, Slot>>,
    sockets: Mutex<Sockets>,
    /// What the engine counts and times.
    pub(crate) metrics: EngineMetrics,
}

/// The sockets of this node, and whether it still takes new ones.
#[derive(Debug, Default)]
struct Sockets {
    open: HashMap<Uuid, SocketEntry>,
    closed: bool,
}

/// What the node can do to one of its sockets from outside its session.
#[derive(Debug)]
pub(crate) struct SocketEntry {
    /// Its outbox, for close orders.
    pub(crate) outbox: Outbox,
    pub(crate) orders: Arc<OrderQueue>,
}

/// Orders waiting for one socket's session, and the wake-up of the task that reads them. A
/// lock and a waker rather than a channel: every socket has one and nearly all stay empty, so
/// it must cost a few bytes, not a channel's first block.
#[derive(Debug, Default)]
pub(crate) struct OrderQueue {
    waiting: Mutex<VecDeque<Order>>,
    waker: AtomicWaker,
}

impl OrderQueue {
    fn send(&self, order: Order) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(order);
        self.waker.wake();
    }
}

/// The orders for one socket, taken once by its transport (see `Session::take_orders`).
#[derive(Debug)]
pub struct Orders(pub(crate) Arc<OrderQueue>);

impl Orders {
    /// The next order; waits while there is none.
    pub async fn next(&mut self) -> Order {
        std::future::poll_fn(|cx| {
            // Register before looking, so an order sent in between is not missed.
            self.0.waker.register(cx.waker());
            match self
                .0
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            {
                Some(order) => std::task::Poll::Ready(order),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }
}

/// What an operator asks of a socket's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Close it (4001: do not reconnect at once).
    Disconnect,
    /// Take it out of one channel (it is told so).
    Remove {
        /// The channel.
        channel: String,
    },
}

#[derive(Debug)]
enum Slot {
    Activating(Arc<Activation>),
    Active(Arc<Channel>),
}

/// A channel being activated: the result every joiner waits for, and the stored messages that
/// arrived meanwhile.
#[derive(Debug, Default)]
struct Activation {
    done: OnceCell<Arc<Channel>>,
    buffered: Mutex<Vec<Stored>>,
    /// How far stored messages were handed on for it meanwhile (a Redis node's subscription).
    handed: Mutex<Handed>,
}

/// A stored message to deliver: seq, epoch, frame.
#[derive(Debug)]
struct Stored {
    seq: u64,
    epoch: Arc<str>,
    frame: Bytes,
}

impl Registry {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a socket, unless the node is shutting down (false).
    pub(crate) fn add_socket(&self, id: Uuid, entry: SocketEntry) -> bool {
        let mut sockets = self.sockets();
        if sockets.closed {
            return false;
        }
        sockets.open.insert(id, entry);
        true
    }

    pub(crate) fn remove_socket(&self, id: &Uuid) {
        self.sockets().open.remove(id);
    }

    /// Sockets connected here now.
    pub(crate) fn socket_count(&self) -> usize {
        self.sockets().open.len()
    }

    /// Refuses new sockets and orders every connected one closed with `code`.
    pub(crate) fn close_all(&self, code: CloseCode) {
        let mut sockets = self.sockets();
        sockets.closed = true;
        for entry in sockets.open.values() {
            entry.outbox.close(code);
        }
    }

    /// Every active channel here, with its sockets and people.
    pub(crate) fn live_channels(&self) -> Vec<crate::broker::LiveChannel> {
        self.all()
            .into_iter()
            .map(|channel| {
                let members = channel.lock().member_list();
                crate::broker::live_channel(
                    channel.name.to_string(),
                    members.iter().map(|(_, _, client)| &**client),
                )
            })
            .filter(|live| live.sockets > 0)
            .collect()
    }

    /// The members of `name` here.
    pub(crate) fn member_views(&self, name: &str) -> Vec<crate::broker::MemberView> {
        let Some(channel) = self.get(name) else {
            return Vec::new();
        };
        let members = channel.lock().member_list();
        members
            .into_iter()
            .map(|(socket, presence, client)| crate::broker::MemberView {
                socket: socket.to_string(),
                presence,
                client: client.to_string(),
                node: None,
            })
            .collect()
    }

    /// Carries out an order for a socket of this node; false when it is not here.
    pub(crate) fn order(&self, socket: &Uuid, order: Order) -> bool {
        let sockets = self.sockets();
        let Some(entry) = sockets.open.get(socket) else {
            return false;
        };
        match order {
            Order::Disconnect => entry.outbox.close(CloseCode::Disconnected),
            Order::Remove { .. } => entry.orders.send(order),
        }
        true
    }

    /// The channel if it is active here.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Channel>> {
        match self.slots().get(name) {
            Some(Slot::Active(channel)) => Some(channel.clone()),
            _ => None,
        }
    }

    /// Every active channel.
    pub(crate) fn all(&self) -> Vec<Arc<Channel>> {
        let slots = self.slots();
        slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Active(channel) => Some(channel.clone()),
                Slot::Activating(_) => None,
            })
            .collect()
    }

    /// Active channels now.
    pub(crate) fn len(&self) -> usize {
        let slots = self.slots();
        slots
            .values()
            .filter(|slot| matches!(slot, Slot::Active(_)))
            .count()
    }

    /// The active channel `name`, activated with `open` if it is not (at most one activation
    /// runs per channel; a failed one lets the next joiner try again).
    pub(crate) async fn activate<E, F, Fut>(&self, name: &str, open: F) -> Result<Arc<Channel>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Channel, E>>,
    {
        let activation = {
            let mut slots = self.slots();
            match slots.get(name) {
                Some(Slot::Active(channel)) => return Ok(channel.clone()),
                Some(Slot::Activating(activation)) => activation.clone(),
                None => {
                    let activation = Arc::new(Activation::default());
                    slots.insert(Arc::from(name), Slot::Activating(activation.clone()));
                    activation
                }
            }
        };
        let opened = activation
            .done
            .get_or_try_init(|| async move { open().await.map(Arc::new) })
            .await;
        let mut slots = self.slots();
        let current = slots.get(name);
        let ours = matches!(current, Some(Slot::Activating(a)) if Arc::ptr_eq(a, &activation));
        match opened {
            Ok(channel) => {
                if let Some(Slot::Active(active)) = current {
                    return Ok(active.clone());
                }
                let channel = channel.clone();
                {
                    let mut locked = channel.lock();
                    let buffered = activation
                        .buffered
                        .lock()
                        .map(|mut b| std::mem::take(&mut *b))
                        .unwrap_or_default();
                    for stored in buffered {
                        let (seq, epoch) = (stored.seq, &stored.epoch);
                        locked.deliver_stored(seq, epoch, &stored.frame, Writes::Queued);
                    }
                    let mut handed = activation.handed.lock().unwrap_or_else(|e| e.into_inner());
                    locked.take_handed(std::mem::take(&mut *handed));
                }
                slots.insert(channel.name.clone(), Slot::Active(channel.clone()));
                Ok(channel)
            }
            Err(err) => {
                if ours {
                    slots.remove(name);
                }
                Err(err)
            }
        }
    }

    /// Delivers a stored message to the channel's members here, if it is active (or keeps it
    /// for them if it is being activated); counted and timed in the metrics.
    pub(crate) fn deliver_stored(
        &self,
        name: &str,
        seq: u64,
        epoch: &str,
        frame: &Bytes,
        writes: Writes,
    ) {
        let channel = {
            let slots = self.slots();
            match slots.get(name) {
                Some(Slot::Active(channel)) => channel.clone(),
                Some(Slot::Activating(activation)) => {
                    let mut buffered = activation
                        .buffered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    buffered.push(Stored {
                        seq,
                        epoch: Arc::from(epoch),
                        frame: frame.clone(),
                    });
                    return;
                }
                None => return,
            }
        };
        let started = std::time::Instant::now();
        let queued = channel.lock().deliver_stored(seq, epoch, frame, writes);
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.deliveries.inc_by(queued as u64);
    }

    /// Notes that stored messages of `name` up to `seq` (of `epoch`) were handed on to be
    /// delivered here: for the channel if it is active, for the one being activated if it is.
    pub(crate) fn handed(&self, name: &str, epoch: &Arc<str>, seq: u64) {
        let slots = self.slots();
        match slots.get(name) {
            Some(Slot::Active(channel)) => channel.lock().handed(epoch, seq),
            Some(Slot::Activating(activation)) => activation
                .handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .note(epoch, seq),
            None => {}
        }
    }

    /// Takes the channel out of the registry if it has no members; `removed` runs (under the
    /// registry's lock, so it is ordered with the next activation) when it was.
    pub(crate) fn prune_if_idle(&self, channel: &Arc<Channel>, removed: impl FnOnce(&str)) -> bool {
        let mut slots = self.slots();
        let current = matches!(
            slots.get(&channel.name),
            Some(Slot::Active(active)) if Arc::ptr_eq(active, channel)
        );
        let mut locked = channel.lock();
        if !current || !locked.is_idle() {
            return false;
        }
        locked.retired = true;
        drop(locked);
        slots.remove(&channel.name);
        removed(&channel.name);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ChannelRule;

    fn open(name: &str, last_seq: u64) -> Channel {
        Channel::new(
            Arc::from(name),
            ChannelRule::open("*"),
            Some("e".into()),
            last_seq,
        )
    }

    #[tokio::test]
    async fn messages_stored_while_a_channel_activates_are_delivered_after_its_position() {
        let registry = Arc::new(Registry::default());
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let activating = {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .activate("room", || async move {
                        let _ = wait.await;
                        Ok::<_, ()>(open("room", 5))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // 5 was already counted in the position read; 6 arrived during the activation.
        registry.deliver_stored("room", 5, "e", &Bytes::from_static(b"5"), Writes::Queued);
        registry.deliver_stored("room", 6, "e", &Bytes::from_static(b"6"), Writes::Queued);
        let _ = release.send(());
        let channel = activating.await.unwrap().unwrap();
        assert_eq!(channel.lock().delivered_seq, 6);
        assert!(registry.get("room").is_some());
    }

    #[tokio::test]
    async fn a_failed_activation_leaves_nothing_behind() {
        let registry = Registry::default();
        let failed = registry
            .activate("room", || async { Err::<Channel, _>("no store") })
            .await;
        assert_eq!(failed.unwrap_err(), "no store");
        assert_eq!(registry.len(), 0);
        assert!(registry.slots().is_empty());
    }

    #[tokio::test]
    async fn an_idle_channel_is_retired_and_the_next_join_gets_a_fresh_one() {
        let registry = Registry::default();
        let first = registry
            .activate("room", || async { Ok::<_, ()>(open("room", 0)) })
            .await
            .unwrap();
        let mut removed = Vec::new();
        assert!(registry.prune_if_idle(&first, |name| removed.push(name.to_string())));
        assert_eq!(removed, ["room"]);
        assert!(first.lock().retired);
        let second = registry
            .activate("room", || async { Ok::<_, ()>(open("room", 0)) })
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
    }
}
