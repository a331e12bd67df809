//! Several nodes, one channel space: ordering, storage, fan-out and presence through Redis.
//!
//! - **Stored messages.** The node that accepts a message encodes it once and hands it to its
//!   writer thread, which pipelines a script per message: it recognises a resend, takes the
//!   channel's next seq, fills seq and epoch into the frame, appends it to the channel's stream
//!   and publishes it — one atomic step, so every node sees a channel's messages in one order.
//!   Every node (the origin too) delivers what it receives to its own members.
//! - **Fan-out.** A node subscribes to the topic of each channel it has members in, and only
//!   those ([`subscriber`]); transient frames go out through its command queue ([`writer`])
//!   in the format of [`topic`].
//! - **Presence.** Member records in a hash per channel, node heartbeats, and the burial of
//!   dead nodes' members ([`presence`], [`liveness`]).
//!
//! Why one subscription per active channel rather than one pattern for everything: a node then
//! receives only the traffic of channels someone on it joined, and Redis does the routing.

mod admin;
mod config;
mod liveness;
mod presence;
mod subscriber;
mod topic;
mod writer;

pub use config::RedisConfig;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot};

use super::deliverer::{Deliverer, Room, Turn};
use super::queue::{job_queue, JobQueue};
use super::{Broker, LiveChannel, MemberView, PresenceMember, StoredMessage, Transient, Unhealthy};
use crate::access::Refusal;
use crate::config::HubConfig;
use crate::history::{ChannelHistory, HistoryReader, RedisHistory, StoreError};
use crate::hooks::{HookRoutes, LeaveReason};
use crate::outbox::Budget;
use crate::registry::Order;
use crate::registry::Registry;
use subscriber::SubscriptionCommand;
use uuid::Uuid;
use writer::CommandQueue;

/// What every part of a node's Redis side shares.
pub(crate) struct Link {
    pub(crate) store: Arc<RedisHistory>,
    pub(crate) node: String,
    pub(crate) node_ttl: Duration,
    /// Where received frames are delivered.
    pub(crate) registry: Arc<Registry>,
    /// Delivers received stored messages on the node's runtime, in turns (none outside a
    /// runtime: the subscription then delivers them itself).
    pub(crate) deliverer: Option<Deliverer>,
    pub(crate) subscriptions: mpsc::UnboundedSender<SubscriptionCommand>,
    pub(crate) commands: CommandQueue,
    /// Set when queued commands were lost (Redis unreachable); the next heartbeat reconciles
    /// this node's member records with its sockets.
    pub(crate) lost_commands: Arc<AtomicBool>,
    /// Why the last stored batch failed, while it does.
    pub(crate) failing: Mutex<Option<String>>,
    /// Which webhook endpoints want which events.
    pub(crate) routes: HookRoutes,
    /// Told when this node recorded webhook events.
    pub(crate) hooks_recorded: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link(node {}, {:?})", self.node, self.store)
    }
}

/// Most stored messages received from Redis that wait for the node's deliverer (each is a
/// batch of its own), so that its turns can be as long as the embedded engine's.
const RECEIVED_WAITING: usize = 1024;

/// The error for Redis being out of reach.
pub(crate) fn unreachable(store: &RedisHistory, what: &str) -> StoreError {
    StoreError(format!(
        "Redis at {} is unreachable ({what}); retry shortly",
        store.url()
    ))
}

/// Runs blocking Redis work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(StoreError(err.to_string())))
}

/// The broker of a node that shares its channels with others through Redis.
pub struct RedisBroker {
    link: Arc<Link>,
    reader: HistoryReader,
    stored: JobQueue<StoredMessage>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisBroker({:?})", self.link)
    }
}

impl RedisBroker {
    /// Connects: checks Redis, starts the node's Redis thread (pub/sub and commands), its
    /// writer and its heartbeat.
    pub(crate) fn start(
        config: &RedisConfig,
        hub: &HubConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(RedisHistory::connect(&config.redis_url, &config.prefix)?);
        let runtime = writer::start_runtime()?;
        let client = store.client().clone();
        let pubsub = writer::wait(&runtime, async move { client.get_async_pubsub().await })
            .ok_or_else(|| unreachable(&store, "no answer"))?
            .map_err(|err| unreachable(&store, &err.to_string()))?;
        let (sink, stream) = pubsub.split();
        // Orders for this node's sockets come on the cluster's control topic.
        let control = format!("{}:control", store.prefix());
        let sink = writer::wait(&runtime, async move {
            let mut sink = sink;
            sink.subscribe(control).await.map(|()| sink)
        })
        .ok_or_else(|| unreachable(&store, "no answer"))?
        .map_err(|err| unreachable(&store, &err.to_string()))?;
        let (subscriptions, subscription_rx) = mpsc::unbounded_channel();
        let lost_commands = Arc::new(AtomicBool::new(false));
        let commands = CommandQueue::start(
            &runtime,
            store.client().clone(),
            hub.store_queue_bytes,
            lost_commands.clone(),
        );
        // Started here, on the node's runtime, where the sockets' tasks run.
        let turn = Turn::within(Budget {
            frames: hub.outbox_capacity,
            bytes: hub.outbox_bytes,
        });
        let room = Room {
            batches: RECEIVED_WAITING,
            bytes: hub.store_queue_bytes,
        };
        let deliverer = Deliverer::start_with(registry.clone(), room, turn);
        let link = Arc::new(Link {
            store: store.clone(),
            node: uuid::Uuid::new_v4().simple().to_string(),
            node_ttl: config.node_ttl.max(Duration::from_millis(300)),
            registry,
            deliverer,
            subscriptions,
            commands,
            lost_commands,
            failing: Mutex::new(None),
            routes: hub.hooks.clone(),
            hooks_recorded: Arc::new(tokio::sync::Notify::new()),
        });
        runtime.spawn(subscriber::run_subscriptions(sink, subscription_rx));
        runtime.spawn(subscriber::receive(Arc::downgrade(&link), stream));
        let (stored, stored_rx) = job_queue(hub.store_queue, hub.store_queue_bytes);
        let trim = writer::Trimming {
            retention: {
                let hub = hub.clone();
                Box::new(move |channel: &str| hub.retention(channel))
            },
            every: hub.history_trim_interval,
        };
        writer::start_stored_writer(link.clone(), stored_rx, trim)?;
        liveness::start(&link)?;
        Ok(Self {
            link,
            reader: HistoryReader::new(store),
            stored,
        })
    }
}

impl Broker for RedisBroker {
    fn reader(&self) -> &HistoryReader {
        &self.reader
    }

    fn activate<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelHistory, StoreError>> {
        async move {
            // Subscribed before the position is read, so no message falls between the two.
            let (done, confirmed) = oneshot::channel();
            let topic = self.link.store.topic(channel);
            let asked = self
                .link
                .subscriptions
                .send(SubscriptionCommand::Subscribe(topic, done));
            if asked.is_err() {
                return Err(unreachable(&self.link.store, "the Redis thread stopped"));
            }
            match tokio::time::timeout(Duration::from_secs(5), confirmed).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(why))) => return Err(unreachable(&self.link.store, &why)),
                Ok(Err(_)) | Err(_) => {
                    return Err(unreachable(&self.link.store, "subscribe timed out"))
                }
            }
            self.reader.open_channel(channel, 0).await
        }
        .boxed()
    }

    fn deactivate(&self, channel: &str) {
        let topic = self.link.store.topic(channel);
        let _ = self
            .link
            .subscriptions
            .send(SubscriptionCommand::Unsubscribe(topic));
    }

    fn publish_stored(&self, message: StoredMessage) -> Result<(), Refusal> {
        let size = message.size();
        self.stored.submit(message, size)
    }

    fn publish_transient<'a>(
        &'a self,
        channel: &'a str,
        transient: Transient<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        async move {
            let node = Some(self.link.node.as_str());
            let (message, droppable) = match transient {
                Transient::Audience(frame) => (topic::encode(b'a', node, None, frame), false),
                Transient::Volatile { sender, frame } => {
                    (topic::encode(b'v', node, Some(sender), frame), true)
                }
                Transient::Socket { socket, frame } => {
                    let unknown = || {
                        Refusal::new(
                            ErrorCode::UnknownSocket,
                            format!("no socket {:?} in channel {channel:?}", socket.to_string()),
                        )
                    };
                    let link = self.link.clone();
                    let name = channel.to_string();
                    let member = tokio::task::spawn_blocking(move || {
                        presence::is_member(&link, &name, socket)
                    })
                    .await
                    .unwrap_or_else(|err| Err(StoreError(err.to_string())))
                    .map_err(|err| Refusal::new(ErrorCode::Internal, err.to_string()))?;
                    if !member {
                        return Err(unknown());
                    }
                    (topic::encode(b's', None, Some(socket), frame), false)
                }
            };
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(self.link.store.topic(channel)).arg(&message);
            if self.link.commands.send(cmd, message.len()) || droppable {
                Ok(())
            } else {
                Err(Refusal::new(
                    ErrorCode::Overloaded,
                    "this node cannot reach the other nodes fast enough; retry shortly",
                ))
            }
        }
        .boxed()
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let link = self.link.clone();
        let channel = channel.to_string();
        let (socket, presence, was_listed) = (member.socket, member.presence, member.was_listed);
        let is_new = member.is_new;
        let client = member.client.to_string();
        let registry = self.link.registry.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let member = PresenceMember {
                    socket,
                    presence,
                    was_listed,
                    is_new,
                    client: &client,
                };
                let started = std::time::Instant::now();
                let joined = presence::join(&link, &channel, member);
                registry
                    .metrics
                    .redis_round_trip_seconds
                    .observe(started.elapsed().as_secs_f64());
                joined
            })
            .await
            .unwrap_or_else(|err| Err(StoreError(err.to_string())))
        }
        .boxed()
    }

    fn presence_leave(&self, channel: &str, member: PresenceMember<'_>, reason: LeaveReason) {
        presence::leave(&self.link, channel, member, reason);
    }

    fn clear_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.link.store.clone();
        let channel = channel.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                crate::history::HistoryStore::clear(store.as_ref(), &channel)
            })
            .await
            .unwrap_or_else(|err| Err(StoreError(err.to_string())))
        }
        .boxed()
    }

    fn health(&self) -> BoxFuture<'_, Result<(), Unhealthy>> {
        let store = self.link.store.clone();
        async move {
            let pong = tokio::task::spawn_blocking(move || {
                store.with_conn(|conn| redis::cmd("PING").query::<String>(conn))
            })
            .await
            .unwrap_or_else(|err| Err(StoreError(err.to_string())));
            match pong {
                Ok(_) => Ok(()),
                Err(err) => Err(Unhealthy {
                    status: "redis_unreachable",
                    error: err.to_string(),
                }),
            }
        }
        .boxed()
    }

    fn node(&self) -> Option<&str> {
        Some(&self.link.node)
    }

    fn hooks_recorded(&self) -> Arc<tokio::sync::Notify> {
        self.link.hooks_recorded.clone()
    }

    fn live_channels(&self) -> BoxFuture<'_, Result<Vec<LiveChannel>, StoreError>> {
        let link = self.link.clone();
        blocking(move || admin::live_channels(&link)).boxed()
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MemberView>, StoreError>> {
        let (link, channel) = (self.link.clone(), channel.to_string());
        blocking(move || admin::members(&link, &channel)).boxed()
    }

    fn order_elsewhere(
        &self,
        socket: Uuid,
        order: Order,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let link = self.link.clone();
        blocking(move || admin::order_elsewhere(&link, socket, order)).boxed()
    }

    fn depart(&self) {
        liveness::depart(&self.link);
    }
}
