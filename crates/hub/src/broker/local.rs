//! One node alone: seqs from the persister, history in a local store (SQLite or memory),
//! delivery in-process. Nothing crosses a node boundary, so transient frames are done once
//! this node's members have them, and presence is this node's members.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchboard_protocol::ErrorCode;
use tokio::sync::{oneshot, Notify};

use super::deliverer::Turn;
use super::persister::{Job, Persister, Settings, StoreHealth};
use super::queue::{job_queue, JobQueue};
use super::{Broker, LiveChannel, MemberView, PresenceMember, StoredMessage, Transient, Unhealthy};
use crate::access::Refusal;
use crate::config::HubConfig;
use crate::history::{
    ChannelHistory, HistoryReader, HistoryStore, HookWrites, MemberChange, Orphan, StoreError,
};
use crate::hooks::{membership_event, EventType, HookRoutes, LeaveReason};
use crate::outbox::Budget;
use crate::registry::Order;
use crate::registry::Registry;
use crate::time::now_ms;
use uuid::Uuid;

/// The broker of a node that runs alone.
pub struct LocalBroker {
    registry: Arc<Registry>,
    reader: HistoryReader,
    jobs: JobQueue<Job>,
    health: Arc<StoreHealth>,
    routes: HookRoutes,
    /// Members per channel, counted for `channel.occupied` / `channel.vacated` (only while
    /// back ends want membership events).
    members: Mutex<HashMap<String, usize>>,
    recorded: Arc<Notify>,
    /// The store builds `message.stored` bodies from the stored messages.
    store_builds_bodies: bool,
}

impl std::fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalBroker")
    }
}

impl LocalBroker {
    /// Starts the persister on `store`, delivering into `registry`.
    pub(crate) fn start(
        store: Arc<dyn HistoryStore>,
        registry: Arc<Registry>,
        config: &HubConfig,
    ) -> Result<Self, StoreError> {
        let (jobs, receiver) = job_queue(config.store_queue, config.store_queue_bytes);
        let health = Arc::new(StoreHealth::default());
        let retention = {
            let config = config.clone();
            Box::new(move |channel: &str| config.retention(channel))
        };
        let settings = Settings {
            retention,
            trim_every: config.history_trim_interval,
            handoff_bytes: config.store_queue_bytes,
            turn: Turn::within(Budget {
                frames: config.outbox_capacity,
                bytes: config.outbox_bytes,
            }),
        };
        let recorded = Arc::new(Notify::new());
        // Members the last process had when it died: they left with it.
        let orphans = if config.hooks.wants_members() {
            store.orphaned_members()?
        } else {
            Vec::new()
        };
        let store_builds_bodies = store.builds_message_bodies();
        Persister::start(
            store.clone(),
            registry.clone(),
            settings,
            health.clone(),
            receiver,
            recorded.clone(),
        )
        .map_err(|err| StoreError(format!("cannot start the persister thread: {err}")))?;
        let broker = Self {
            registry,
            reader: HistoryReader::new(store),
            jobs,
            health,
            routes: config.hooks.clone(),
            members: Mutex::new(HashMap::new()),
            recorded,
            store_builds_bodies,
        };
        broker.bury(orphans);
        Ok(broker)
    }

    /// Records that the members a dead process had left (`node_died`) and their channels
    /// emptied.
    fn bury(&self, orphans: Vec<Orphan>) {
        if orphans.is_empty() {
            return;
        }
        tracing::warn!(
            "{} members of the previous run were still listed: recording that they left",
            orphans.len()
        );
        let now = now_ms();
        let mut writes = HookWrites::default();
        let mut channels: Vec<String> = Vec::new();
        for (channel, socket, client) in orphans {
            for endpoint in self.routes.wanting(EventType::MemberLeft, &channel) {
                writes.events.push(membership_event(
                    &endpoint,
                    EventType::MemberLeft,
                    &channel,
                    Some(&client),
                    Some(LeaveReason::NodeDied),
                    now,
                ));
            }
            writes.members.push(MemberChange::Left {
                channel: channel.clone(),
                socket,
            });
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        for channel in channels {
            for endpoint in self.routes.wanting(EventType::ChannelVacated, &channel) {
                writes.events.push(membership_event(
                    &endpoint,
                    EventType::ChannelVacated,
                    &channel,
                    None,
                    None,
                    now,
                ));
            }
        }
        let size = writes.events.iter().map(|e| e.body.len()).sum();
        if let Err(refusal) = self.jobs.submit(Job::Hooks(writes), size) {
            tracing::warn!("could not record the leaves of the previous run: {refusal}");
        }
    }

    /// Records a membership change for back ends: its event, the channel's occupancy, and
    /// the member itself (so a crash can be made good after the restart).
    fn record_membership(
        &self,
        channel: &str,
        member: PresenceMember<'_>,
        left: Option<LeaveReason>,
    ) {
        if !self.routes.wants_members() {
            return;
        }
        let now = now_ms();
        let count = {
            let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
            let count = members.entry(channel.to_string()).or_default();
            match left {
                None => *count += 1,
                Some(_) => *count = count.saturating_sub(1),
            }
            let now = *count;
            if now == 0 {
                members.remove(channel);
            }
            now
        };
        let mut writes = HookWrites::default();
        let (kind, occupancy) = match left {
            None => (
                EventType::MemberJoined,
                (count == 1).then_some(EventType::ChannelOccupied),
            ),
            Some(_) => (
                EventType::MemberLeft,
                (count == 0).then_some(EventType::ChannelVacated),
            ),
        };
        let mut events = vec![(kind, Some(member.client), left)];
        if let Some(occupancy) = occupancy {
            // Occupied comes before the first join; vacated after the last leave.
            match left {
                None => events.insert(0, (occupancy, None, None)),
                Some(_) => events.push((occupancy, None, None)),
            }
        }
        for (kind, client, reason) in events {
            for endpoint in self.routes.wanting(kind, channel) {
                writes.events.push(membership_event(
                    &endpoint, kind, channel, client, reason, now,
                ));
            }
        }
        let socket = member.socket.to_string();
        writes.members.push(match left {
            None => MemberChange::Joined {
                channel: channel.to_string(),
                socket,
                client: member.client.to_string(),
            },
            Some(_) => MemberChange::Left {
                channel: channel.to_string(),
                socket,
            },
        });
        let size = writes.events.iter().map(|e| e.body.len()).sum::<usize>() + 128;
        if let Err(refusal) = self.jobs.submit(Job::Hooks(writes), size) {
            tracing::warn!("a membership event of {channel:?} was not recorded: {refusal}");
        }
    }
}

impl Broker for LocalBroker {
    fn wants_hook_bodies(&self) -> bool {
        !self.store_builds_bodies
    }

    fn reader(&self) -> &HistoryReader {
        &self.reader
    }

    fn activate<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelHistory, StoreError>> {
        self.reader.open_channel(channel, 0).boxed()
    }

    fn deactivate(&self, _channel: &str) {}

    fn publish_stored(&self, message: StoredMessage) -> Result<(), Refusal> {
        let size = message.size();
        self.jobs.submit(Job::Store(message), size)
    }

    fn publish_transient<'a>(
        &'a self,
        channel: &'a str,
        transient: Transient<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        let outcome = match transient {
            Transient::Socket { socket, .. } => Err(Refusal::new(
                ErrorCode::UnknownSocket,
                format!("no socket {:?} in channel {channel:?}", socket.to_string()),
            )),
            Transient::Audience(_) | Transient::Volatile { .. } => Ok(()),
        };
        futures_util::future::ready(outcome).boxed()
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        if member.is_new {
            self.record_membership(channel, member, None);
        }
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    fn presence_leave(&self, channel: &str, member: PresenceMember<'_>, reason: LeaveReason) {
        self.record_membership(channel, member, Some(reason));
    }

    fn clear_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let (done, cleared) = oneshot::channel();
            let job = Job::Clear {
                channel: Arc::from(channel),
                done,
            };
            self.jobs
                .submit(job, channel.len())
                .map_err(|refusal| StoreError(refusal.message))?;
            cleared
                .await
                .unwrap_or_else(|_| Err(StoreError("message storage has stopped".into())))
        }
        .boxed()
    }

    fn health(&self) -> BoxFuture<'_, Result<(), Unhealthy>> {
        let outcome = match self.health.failing() {
            None => Ok(()),
            Some(error) => Err(Unhealthy {
                status: "storage_failing",
                error,
            }),
        };
        futures_util::future::ready(outcome).boxed()
    }

    fn node(&self) -> Option<&str> {
        None
    }

    fn hooks_recorded(&self) -> Arc<Notify> {
        self.recorded.clone()
    }

    fn live_channels(&self) -> BoxFuture<'_, Result<Vec<LiveChannel>, StoreError>> {
        futures_util::future::ready(Ok(self.registry.live_channels())).boxed()
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MemberView>, StoreError>> {
        futures_util::future::ready(Ok(self.registry.member_views(channel))).boxed()
    }

    fn order_elsewhere(
        &self,
        _socket: Uuid,
        _order: Order,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        // There is no elsewhere.
        futures_util::future::ready(Ok(false)).boxed()
    }

    fn depart(&self) {}
}
