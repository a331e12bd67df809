//! One node alone: seqs from the persister, history in a local store (SQLite or memory),
//! delivery in-process. Nothing crosses a node boundary, so transient frames are done once
//! this node's members have them, and presence is this node's members.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::sync::Arc;
use switchboard_protocol::ErrorCode;
use tokio::sync::oneshot;

use super::persister::{Job, Persister, Settings, StoreHealth};
use super::queue::{job_queue, JobQueue};
use super::{Broker, PresenceMember, StoredMessage, Transient, Unhealthy};
use crate::access::Refusal;
use crate::config::HubConfig;
use crate::history::{ChannelHistory, HistoryReader, HistoryStore, StoreError};
use crate::registry::Registry;

/// The broker of a node that runs alone.
pub struct LocalBroker {
    reader: HistoryReader,
    jobs: JobQueue<Job>,
    health: Arc<StoreHealth>,
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
        };
        Persister::start(store.clone(), registry, settings, health.clone(), receiver)
            .map_err(|err| StoreError(format!("cannot start the persister thread: {err}")))?;
        Ok(Self {
            reader: HistoryReader::new(store),
            jobs,
            health,
        })
    }
}

impl Broker for LocalBroker {
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
        _channel: &'a str,
        _member: PresenceMember<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    fn presence_leave(&self, _channel: &str, _member: PresenceMember<'_>) {}

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

    fn depart(&self) {}
}
