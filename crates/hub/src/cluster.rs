//! Several nodes, one channel space: fan-out, presence and sequence numbers through Redis.
//!
//! - **Fan-out.** Each node subscribes (Redis pub/sub) to the topic of every channel it has
//!   members in, and only those: a node never receives traffic for channels nobody on it
//!   joined, and a subscription costs Redis one entry. Every frame for a channel — stored
//!   messages, audience and socket messages, volatile updates, presence changes — is encoded
//!   once by the node that accepts it, published once, and delivered by each node to its own
//!   members. Topic messages are `m <seq> <frame>` (stored), `a <origin> <frame>`
//!   (authenticated members), `s <socket> <frame>` (one socket on another node),
//!   `v <origin> <socket> <frame>` (volatile, not back to the sender) and
//!   `p <origin> <socket> <frame>` (presence, not back to its socket). Stored messages reach
//!   every node, the origin included, through Redis (that is their order); the others are
//!   delivered by their origin node to its own members at once and skipped when they come
//!   back (`-` as origin: every node delivers, e.g. the leave of a dead node's sockets).
//! - **Order and seq.** Stored messages get their seq from a Lua script that also stores and
//!   publishes them, so all nodes see a channel's messages in seq order. A node remembers the
//!   last seq it delivered per channel; anything it did not see (a dropped subscription, a
//!   Redis restart) is read from the stream before the next message is delivered.
//! - **Presence.** `{prefix}:c:{channel}:members` holds every member (socket → node, presence
//!   flag, client object). Nodes beat every `node_ttl / 3` into `{prefix}:nodes` (a sorted set
//!   scored by expiry) and list their members in `{prefix}:node:{id}`. Presence lists skip the
//!   members of expired nodes at once; the first node to notice an expired node removes its
//!   members and publishes their `leave`, so a crashed node's sockets leave presence within
//!   `node_ttl` plus one beat.

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchboard_protocol::Action;
use tokio::sync::mpsc;

use crate::channel::Channel;
use crate::encode;
use crate::history::{HistoryStore, RedisHistory, StoreError};
use crate::hub::Inner;
use crate::persister::now_ms;

/// Where and how a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// Prefix of every key and topic, so deployments can share one Redis.
    pub prefix: String,
    /// A node that has not beaten for this long counts as dead and its sockets leave presence.
    pub node_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            prefix: "switchboard".into(),
            node_ttl: Duration::from_secs(10),
        }
    }
}

/// A channel member as other nodes see it.
struct MemberRecord<'a> {
    node: &'a str,
    presence: bool,
    client: &'a str,
}

impl MemberRecord<'_> {
    fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}",
            self.node,
            u8::from(self.presence),
            self.client
        )
    }

    fn decode(text: &str) -> Option<MemberRecord<'_>> {
        let mut parts = text.splitn(3, '\t');
        Some(MemberRecord {
            node: parts.next()?,
            presence: parts.next()? == "1",
            client: parts.next()?,
        })
    }
}

/// This node's link to the cluster.
pub(crate) struct Cluster {
    pub(crate) store: Arc<RedisHistory>,
    node: String,
    node_ttl: Duration,
    runtime: tokio::runtime::Handle,
    sink: Mutex<Option<PubSubSink>>,
    publisher: mpsc::UnboundedSender<Queued>,
    /// The channels active here, by name: what the Redis thread delivers to. Kept apart from
    /// the hub's registry so the Redis thread never waits for the registry lock, which is held
    /// while a join waits for that thread to confirm a subscription.
    subscribed: Mutex<HashMap<String, Weak<Channel>>>,
    /// Set when queued commands were lost (Redis unreachable); the next heartbeat reconciles
    /// this node's member records with its sockets.
    lost_commands: Arc<AtomicBool>,
}

/// What the publishing task is given: a command, or a request to confirm that everything
/// queued before it was written.
enum Queued {
    Command(redis::Cmd),
    Flushed(std_mpsc::SyncSender<()>),
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(node {}, {:?})", self.node, self.store)
    }
}

fn unreachable(store: &RedisHistory, what: &str) -> StoreError {
    StoreError(format!(
        "Redis at {} is unreachable ({what}); retry shortly",
        store.url()
    ))
}

impl Cluster {
    /// Connects: checks Redis, starts the node's Redis thread (pub/sub and publishing) and its
    /// heartbeat. `hub` is where received frames are delivered.
    pub(crate) fn start(
        config: &ClusterConfig,
        store: Arc<RedisHistory>,
        hub: Weak<Inner>,
    ) -> Result<Arc<Self>, StoreError> {
        let (handle_tx, handle_rx) = std_mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("switchboard-redis".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = handle_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(std::future::pending::<()>());
            })
            .map_err(|err| StoreError(format!("cannot start the Redis thread: {err}")))?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| StoreError("the Redis thread did not start".into()))?
            .map_err(|err| StoreError(format!("cannot start the Redis runtime: {err}")))?;
        let client = store.client().clone();
        let pubsub = wait(&runtime, async move { client.get_async_pubsub().await })
            .ok_or_else(|| unreachable(&store, "no answer"))?
            .map_err(|err| unreachable(&store, &err.to_string()))?;
        let (sink, stream) = pubsub.split();
        let (publisher, queue) = mpsc::unbounded_channel();
        let lost_commands = Arc::new(AtomicBool::new(false));
        let cluster = Arc::new(Self {
            store,
            node: uuid::Uuid::new_v4().simple().to_string(),
            node_ttl: config.node_ttl.max(Duration::from_millis(300)),
            runtime: runtime.clone(),
            sink: Mutex::new(Some(sink)),
            publisher,
            subscribed: Mutex::new(HashMap::new()),
            lost_commands: lost_commands.clone(),
        });
        runtime.spawn(receive(Arc::downgrade(&cluster), hub.clone(), stream));
        runtime.spawn(publish_queue(
            cluster.store.client().clone(),
            queue,
            lost_commands,
        ));
        cluster.beat(&hub)?;
        let beating = Arc::downgrade(&cluster);
        std::thread::Builder::new()
            .name("switchboard-heartbeat".into())
            .spawn(move || heartbeat(beating, hub))
            .map_err(|err| StoreError(format!("cannot start the heartbeat thread: {err}")))?;
        Ok(cluster)
    }

    /// This node's id.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Subscribes to the channel's topic; returns once Redis confirmed it, so a seq read
    /// afterwards misses nothing.
    pub(crate) fn subscribe(&self, channel: &str) -> Result<(), StoreError> {
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(mut sink) = sink else {
            return Err(unreachable(&self.store, "reconnecting"));
        };
        let topic = self.store.topic(channel);
        match wait(&self.runtime, async move { sink.subscribe(topic).await }) {
            Some(Ok(())) => Ok(()),
            Some(Err(err)) => Err(unreachable(&self.store, &err.to_string())),
            None => Err(unreachable(&self.store, "subscribe timed out")),
        }
    }

    /// Records that `channel` is active here (after [`Cluster::subscribe`]).
    pub(crate) fn track(&self, channel: &Arc<Channel>) {
        let mut subscribed = self.subscribed.lock().unwrap_or_else(|e| e.into_inner());
        subscribed.insert(channel.name.to_string(), Arc::downgrade(channel));
    }

    fn tracked(&self, channel: &str) -> Option<Arc<Channel>> {
        let subscribed = self.subscribed.lock().unwrap_or_else(|e| e.into_inner());
        subscribed.get(channel).and_then(Weak::upgrade)
    }

    fn all_tracked(&self) -> Vec<Arc<Channel>> {
        let subscribed = self.subscribed.lock().unwrap_or_else(|e| e.into_inner());
        subscribed.values().filter_map(Weak::upgrade).collect()
    }

    /// Stops receiving the channel's frames (its last member here left).
    pub(crate) fn unsubscribe(&self, channel: &str) {
        self.subscribed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel);
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(mut sink) = sink {
            let topic = self.store.topic(channel);
            self.runtime.spawn(async move {
                let _ = sink.unsubscribe(topic).await;
            });
        }
    }

    /// Publishes a frame on the channel's topic (queued; never waits). Audience, volatile and
    /// presence frames carry their origin: the node that sent one has delivered it to its own
    /// members already and skips it (`from_here`); `-` means every node delivers it.
    pub(crate) fn publish(
        &self,
        channel: &str,
        kind: u8,
        from_here: bool,
        socket: Option<&str>,
        frame: &[u8],
    ) {
        let message = self.message(kind, from_here, socket, frame);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.store.topic(channel)).arg(message);
        let _ = self.publisher.send(Queued::Command(cmd));
    }

    /// A topic message: kind, origin (except for `s`), socket, frame.
    fn message(&self, kind: u8, from_here: bool, socket: Option<&str>, frame: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(frame.len() + 80);
        message.push(kind);
        message.push(b' ');
        if kind != b's' {
            let origin = if from_here { self.node.as_str() } else { "-" };
            message.extend_from_slice(origin.as_bytes());
            message.push(b' ');
        }
        if let Some(socket) = socket {
            message.extend_from_slice(socket.as_bytes());
            message.push(b' ');
        }
        message.extend_from_slice(frame);
        message
    }

    /// Lists a socket as a member of `channel`, announces it to the other nodes when its
    /// presence changed (the caller tells this node's members) and returns the channel's
    /// presence list across nodes (live nodes only).
    pub(crate) fn join(
        &self,
        channel: &str,
        socket: &str,
        presence: bool,
        was_listed: bool,
        client: &str,
    ) -> Result<Vec<String>, StoreError> {
        let record = MemberRecord {
            node: &self.node,
            presence,
            client,
        }
        .encode();
        let members = self.store.key(channel, "members");
        // The announcement goes out in the same round trip, before the join is answered.
        let announcement = match (was_listed, presence) {
            (false, true) => Some(Action::Join),
            (true, false) => Some(Action::Leave),
            _ => None,
        }
        .map(|action| {
            let frame = encode::presence_update(channel, action, client);
            self.message(b'p', true, Some(socket), &frame)
        });
        let (listed, live): (Vec<(String, String)>, Vec<String>) =
            self.store.with_conn(|conn| {
                // Listed first, announced second: whoever hears the announcement and then
                // reads the list finds the member in it.
                let mut pipe = redis::pipe();
                pipe.cmd("HSET")
                    .arg(&members)
                    .arg(socket)
                    .arg(&record)
                    .ignore()
                    .cmd("SADD")
                    .arg(self.node_key(&self.node))
                    .arg(format!("{socket}\t{channel}"))
                    .ignore();
                if let Some(message) = &announcement {
                    pipe.cmd("PUBLISH")
                        .arg(self.store.topic(channel))
                        .arg(message)
                        .ignore();
                }
                pipe.cmd("HGETALL")
                    .arg(&members)
                    .cmd("ZRANGEBYSCORE")
                    .arg(self.nodes_key())
                    .arg(now_ms())
                    .arg("+inf")
                    .query(conn)
            })?;
        Ok(listed
            .iter()
            .filter_map(|(_, record)| MemberRecord::decode(record))
            .filter(|m| m.presence && live.iter().any(|n| n == m.node))
            .map(|m| m.client.to_string())
            .collect())
    }

    /// Removes a socket's membership and tells the other nodes (queued; never waits; the
    /// caller tells this node's members).
    pub(crate) fn leave(&self, channel: &str, socket: &str, presence: bool, client: &str) {
        let mut forget = redis::cmd("HDEL");
        forget.arg(self.store.key(channel, "members")).arg(socket);
        let _ = self.publisher.send(Queued::Command(forget));
        let mut unlist = redis::cmd("SREM");
        unlist
            .arg(self.node_key(&self.node))
            .arg(format!("{socket}\t{channel}"));
        let _ = self.publisher.send(Queued::Command(unlist));
        if presence {
            self.announce(channel, socket, Action::Leave, client, true);
        }
    }

    fn announce(&self, channel: &str, socket: &str, action: Action, client: &str, here: bool) {
        let frame = encode::presence_update(channel, action, client);
        self.publish(channel, b'p', here, Some(socket), &frame);
    }

    /// Whether this node trims the shared history this interval: the first node to ask in an
    /// interval gets the turn (a key that expires with the interval).
    pub(crate) fn take_trim_turn(&self, interval: Duration) -> bool {
        let key = format!("{}:trim-turn", self.store.prefix());
        let taken = self.store.with_conn(|conn| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(interval.as_millis().max(1) as u64)
                .query::<Option<String>>(conn)
        });
        matches!(taken, Ok(Some(_)))
    }

    /// Whether `socket` is a member of `channel` on any node.
    pub(crate) fn is_member(&self, channel: &str, socket: &str) -> Result<bool, StoreError> {
        let members = self.store.key(channel, "members");
        self.store
            .with_conn(|conn| redis::cmd("HEXISTS").arg(&members).arg(socket).query(conn))
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.store.prefix())
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.store.prefix())
    }

    /// One heartbeat: renews this node, re-lists its members if Redis forgot them (a restart
    /// without persistence, or this node was taken for dead), and clears dead nodes.
    fn beat(&self, hub: &Weak<Inner>) -> Result<(), StoreError> {
        let now = now_ms();
        let expires = now + self.node_ttl.as_millis() as u64;
        let added: u64 = self.store.with_conn(|conn| {
            redis::cmd("ZADD")
                .arg(self.nodes_key())
                .arg(expires)
                .arg(&self.node)
                .query(conn)
        })?;
        if added == 1 {
            if let Some(hub) = hub.upgrade() {
                self.relist(&hub)?;
            }
        }
        if self.lost_commands.swap(false, Ordering::AcqRel) {
            if let Err(err) = self.reconcile() {
                self.lost_commands.store(true, Ordering::Release);
                return Err(err);
            }
        }
        let dead: Vec<String> = self.store.with_conn(|conn| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.nodes_key())
                .arg("-inf")
                .arg(format!("({now}"))
                .query(conn)
        })?;
        for node in dead {
            self.bury(&node)?;
        }
        Ok(())
    }

    /// Lists every local member again.
    fn relist(&self, hub: &Inner) -> Result<(), StoreError> {
        for channel in hub.active_channels() {
            let members = channel.lock().member_list();
            for (socket, presence, client) in members {
                let record = MemberRecord {
                    node: &self.node,
                    presence,
                    client: &client,
                }
                .encode();
                self.store.with_conn(|conn| {
                    redis::pipe()
                        .cmd("HSET")
                        .arg(self.store.key(&channel.name, "members"))
                        .arg(socket.to_string())
                        .arg(&record)
                        .ignore()
                        .cmd("SADD")
                        .arg(self.node_key(&self.node))
                        .arg(format!("{socket}\t{}", channel.name))
                        .ignore()
                        .query::<()>(conn)
                })?;
                // Others may have been told these sockets left (this node was taken for dead).
                if presence {
                    let socket = socket.to_string();
                    self.announce(&channel.name, &socket, Action::Join, &client, false);
                }
            }
        }
        Ok(())
    }

    /// Removes the member records of sockets no longer here (their leave was lost while Redis
    /// was unreachable) and announces their leave.
    fn reconcile(&self) -> Result<(), StoreError> {
        let entries: Vec<String> = self.store.with_conn(|conn| {
            redis::cmd("SMEMBERS")
                .arg(self.node_key(&self.node))
                .query(conn)
        })?;
        for entry in entries {
            let Some((socket, channel)) = entry.split_once('\t') else {
                continue;
            };
            let here = uuid::Uuid::try_parse(socket).is_ok_and(|socket| {
                self.tracked(channel)
                    .is_some_and(|c| c.lock().has_member(&socket))
            });
            if here {
                continue;
            }
            let members = self.store.key(channel, "members");
            let record: Option<String> = self
                .store
                .with_conn(|conn| redis::cmd("HGET").arg(&members).arg(socket).query(conn))?;
            self.store.with_conn(|conn| {
                redis::pipe()
                    .cmd("HDEL")
                    .arg(&members)
                    .arg(socket)
                    .ignore()
                    .cmd("SREM")
                    .arg(self.node_key(&self.node))
                    .arg(&entry)
                    .ignore()
                    .query::<()>(conn)
            })?;
            if let Some(member) = record.as_deref().and_then(MemberRecord::decode) {
                if member.presence && member.node == self.node {
                    self.announce(channel, socket, Action::Leave, member.client, false);
                }
            }
        }
        Ok(())
    }

    /// Removes a dead node's members and announces their leave; only the node that wins the
    /// `ZREM` does it.
    fn bury(&self, node: &str) -> Result<(), StoreError> {
        let won: u64 = self.store.with_conn(|conn| {
            redis::cmd("ZREM")
                .arg(self.nodes_key())
                .arg(node)
                .query(conn)
        })?;
        if won == 0 {
            return Ok(());
        }
        let entries: Vec<String> = self
            .store
            .with_conn(|conn| redis::cmd("SMEMBERS").arg(self.node_key(node)).query(conn))?;
        let mut buried = 0;
        for entry in entries {
            let Some((socket, channel)) = entry.split_once('\t') else {
                continue;
            };
            let members = self.store.key(channel, "members");
            let record: Option<String> = self
                .store
                .with_conn(|conn| redis::cmd("HGET").arg(&members).arg(socket).query(conn))?;
            let Some(record) = record else { continue };
            let Some(member) = MemberRecord::decode(&record) else {
                continue;
            };
            if member.node != node {
                continue;
            }
            self.store.with_conn(|conn| {
                redis::cmd("HDEL")
                    .arg(&members)
                    .arg(socket)
                    .query::<u64>(conn)
            })?;
            if member.presence {
                self.announce(channel, socket, Action::Leave, member.client, false);
            }
            buried += 1;
        }
        self.store.with_conn(|conn| {
            redis::cmd("DEL")
                .arg(self.node_key(node))
                .query::<u64>(conn)
        })?;
        tracing::warn!("node {node} stopped beating; removed its {buried} members");
        Ok(())
    }

    /// Leaves the cluster on a clean shutdown: this node's members are removed and announced
    /// at once instead of after `node_ttl`.
    pub(crate) fn depart(&self) {
        self.flush();
        let removed = self.store.with_conn(|conn| {
            redis::cmd("ZADD")
                .arg(self.nodes_key())
                .arg(0)
                .arg(&self.node)
                .query::<u64>(conn)
        });
        if removed.is_ok() {
            if let Err(err) = self.bury(&self.node.clone()) {
                tracing::warn!("leaving the cluster: {err}");
            }
        }
        self.flush();
    }

    /// Waits (at most 2 s) until everything queued for publishing so far is written.
    fn flush(&self) {
        let (tx, rx) = std_mpsc::sync_channel(1);
        if self.publisher.send(Queued::Flushed(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Runs `work` on the Redis thread and waits (at most 5 s) for its result.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

fn heartbeat(cluster: Weak<Cluster>, hub: Weak<Inner>) {
    let mut healthy = true;
    loop {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let every = cluster.node_ttl / 3;
        match cluster.beat(&hub) {
            Ok(()) if !healthy => {
                tracing::info!("Redis heartbeat works again");
                healthy = true;
            }
            Ok(()) => {}
            Err(err) if healthy => {
                tracing::warn!("heartbeat failed: {err}");
                healthy = false;
            }
            Err(_) => {}
        }
        drop(cluster);
        std::thread::sleep(every);
    }
}

/// Writes queued commands in order, pipelining whatever is waiting.
async fn publish_queue(
    client: redis::Client,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    lost_commands: Arc<AtomicBool>,
) {
    let mut conn = None;
    let mut received = Vec::with_capacity(256);
    let mut waiting = Vec::with_capacity(256);
    let mut flushed = Vec::new();
    while queue.recv_many(&mut received, 256).await > 0 {
        for item in received.drain(..) {
            match item {
                Queued::Command(cmd) => waiting.push(cmd),
                Queued::Flushed(done) => flushed.push(done),
            }
        }
        if waiting.is_empty() {
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
            continue;
        }
        if conn.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(fresh) => conn = Some(fresh),
                Err(err) => {
                    tracing::warn!(
                        "Redis unreachable, {} frames not published: {err}",
                        waiting.len()
                    );
                    waiting.clear();
                    lost_commands.store(true, Ordering::Release);
                    for done in flushed.drain(..) {
                        let _ = done.send(());
                    }
                    continue;
                }
            }
        }
        let mut pipe = redis::pipe();
        for cmd in waiting.drain(..) {
            pipe.add_command(cmd).ignore();
        }
        if let Some(live) = conn.as_mut() {
            if let Err(err) = pipe.query_async::<()>(live).await {
                tracing::warn!("publishing to Redis failed: {err}");
                lost_commands.store(true, Ordering::Release);
                conn = None;
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Receives the node's subscriptions and delivers to local members; reconnects (and catches
/// up every active channel from its stream) when the connection drops.
async fn receive(cluster: Weak<Cluster>, hub: Weak<Inner>, mut stream: redis::aio::PubSubStream) {
    loop {
        while let Some(message) = stream.next().await {
            let (Some(cluster), Some(hub)) = (cluster.upgrade(), hub.upgrade()) else {
                return;
            };
            let topic = message.get_channel_name();
            if let Some(channel) = cluster.store.channel_of(topic) {
                if let Some(channel) = cluster.tracked(channel) {
                    let payload = Bytes::from(message.get_payload_bytes().to_vec());
                    dispatch(&cluster, &hub, &channel, payload);
                }
            }
        }
        let Some(live) = cluster.upgrade() else {
            return;
        };
        *live.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::warn!("lost the Redis subscription connection; reconnecting");
        let client = live.store.client().clone();
        drop(live);
        let mut backoff = Duration::from_millis(100);
        stream = loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let (Some(live), Some(_)) = (cluster.upgrade(), hub.upgrade()) else {
                return;
            };
            let Ok(pubsub) = client.get_async_pubsub().await else {
                continue;
            };
            let (mut sink, stream) = pubsub.split();
            let active = live.all_tracked();
            let topics: Vec<String> = active.iter().map(|c| live.store.topic(&c.name)).collect();
            if !topics.is_empty() && sink.subscribe(topics).await.is_err() {
                continue;
            }
            *live.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
            for channel in &active {
                refresh_epoch(&live, channel);
                catch_up(&live, channel, u64::MAX);
            }
            tracing::info!(
                "Redis subscription back; {} channels caught up",
                active.len()
            );
            break stream;
        };
    }
}

/// After a reconnect: if Redis lost the channel's history (restarted without persistence), the
/// channel has a new epoch; take it and deliver the new epoch's messages from the start.
fn refresh_epoch(cluster: &Cluster, channel: &Channel) {
    match cluster.store.open_channel(&channel.name, 0) {
        Ok(now) => {
            let mut locked = channel.lock();
            if *locked.epoch != *now.epoch {
                tracing::warn!(
                    "channel {:?} has a new history epoch in Redis (its data was lost)",
                    channel.name
                );
                locked.epoch = Arc::from(now.epoch);
                locked.delivered_seq = 0;
            }
        }
        Err(err) => tracing::warn!("re-reading {:?} from Redis: {err}", channel.name),
    }
}

/// Delivers from the stream whatever the node missed of `channel`, up to `before` (excluded).
fn catch_up(cluster: &Cluster, channel: &Channel, before: u64) {
    let mut locked = channel.lock();
    let from = locked.delivered_seq;
    if before <= from + 1 {
        return;
    }
    match cluster
        .store
        .range(&channel.name, from, before - 1, usize::MAX)
    {
        Ok(missed) => {
            for frame in missed {
                locked.deliver_stored(frame.seq, &frame.frame);
            }
        }
        Err(err) => tracing::warn!("catching up {:?} from Redis: {err}", channel.name),
    }
}

fn dispatch(cluster: &Cluster, hub: &Inner, channel: &Arc<Channel>, payload: Bytes) {
    let kind = payload.first().copied();
    let rest = payload.slice(2.min(payload.len())..);
    let split = |rest: &Bytes| -> Option<(String, Bytes)> {
        let space = rest.iter().position(|b| *b == b' ')?;
        let word = std::str::from_utf8(&rest[..space]).ok()?.to_string();
        Some((word, rest.slice(space + 1..)))
    };
    // Audience, volatile and presence frames name their origin; the origin delivered them to
    // its own members already.
    let rest = match kind {
        Some(b'a' | b'v' | b'p') => {
            let Some((origin, rest)) = split(&rest) else {
                return;
            };
            if origin == cluster.node {
                return;
            }
            rest
        }
        _ => rest,
    };
    match kind {
        Some(b'm') => {
            let Some((seq, frame)) = split(&rest) else {
                return;
            };
            let Ok(seq) = seq.parse::<u64>() else { return };
            if seq > channel.lock().delivered_seq + 1 {
                catch_up(cluster, channel, seq);
            }
            let mut locked = channel.lock();
            if seq > locked.delivered_seq {
                locked.deliver_stored(seq, &frame);
            }
        }
        Some(b'a') => {
            channel
                .lock()
                .deliver(switchboard_protocol::Target::Authenticated, &rest);
        }
        Some(b's') => {
            let Some((socket, frame)) = split(&rest) else {
                return;
            };
            channel
                .lock()
                .deliver(switchboard_protocol::Target::Socket(&socket), &frame);
        }
        Some(b'v') => {
            let Some((socket, frame)) = split(&rest) else {
                return;
            };
            let Ok(sender) = uuid::Uuid::try_parse(&socket) else {
                return;
            };
            let counts = channel.lock().deliver_volatile(&sender, &frame);
            hub.count_volatile(counts);
        }
        Some(b'p') => {
            let Some((socket, frame)) = split(&rest) else {
                return;
            };
            let Ok(socket) = uuid::Uuid::try_parse(&socket) else {
                return;
            };
            channel.lock().announce_frame(&socket, &frame);
        }
        _ => tracing::debug!("ignored an unknown frame on {:?}", channel.name),
    }
}

#[cfg(test)]
mod tests {
    use super::MemberRecord;

    #[test]
    fn member_records_round_trip_with_tabs_in_the_client() {
        let record = MemberRecord {
            node: "n1",
            presence: true,
            client: "{\"extras\":{\"name\":\"a\\tb\"}}",
        }
        .encode();
        let back = MemberRecord::decode(&record).unwrap();
        assert_eq!((back.node, back.presence), ("n1", true));
        assert_eq!(back.client, "{\"extras\":{\"name\":\"a\\tb\"}}");
    }
}
