//! Delivers the outbox: one task per endpoint takes waiting events from the engine's store and
//! POSTs them, signed, until the endpoint answers 2xx.
//!
//! - **Order.** Per channel: a channel's next event waits until the one before it was taken.
//!   Each pass delivers a lane per channel — its waiting events one after another, up to 128,
//!   until one fails — with up to 16 channels side by side, and forgets what was taken in one
//!   write. Channels do not wait for each other, so a receiver that keeps failing one
//!   channel's event holds up only that channel.
//! - **Retries.** Exponential backoff with jitter (half a second doubling to five minutes);
//!   after the give-up age (24 h by default) the event is kept as dead, and can be replayed.
//! - **Isolation.** Each endpoint has its own task and HTTP timeout: a slow or dead endpoint
//!   never slows sockets, other endpoints, or the storing of messages. Delivery runs on a
//!   thread of its own in the idle scheduling class (`SCHED_IDLE`, with the blocking threads
//!   it starts for the outbox): on a busy node the sockets and the persister come first and
//!   webhooks take the CPU that is left, falling behind rather than slowing the realtime path
//!   (`switchboard_webhook_oldest_pending_age_seconds` shows by how much) and catching up when
//!   the load eases.
//! - **Clusters.** An endpoint is delivered by one node at a time (a lease in the store that
//!   its holder renews); if that node dies, another takes over within the lease.

use bytes::Bytes;
use futures_util::future::join_all;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_hub::{HistoryStore, Hub, PendingEvent};

use super::WebhookSettings;

/// Events read per look at the outbox.
const BATCH: usize = 512;
/// Deliveries in flight per endpoint (different channels).
const CONCURRENT: usize = 16;
/// Most events of one channel delivered one after another in one pass.
const LANE: usize = 128;
/// How long a lease lasts; renewed well before.
const LEASE: Duration = Duration::from_secs(10);
/// While events wait for their retry, how often new events are looked at.
const RECHECK: Duration = Duration::from_millis(100);
/// Longest wait before looking at the outbox again when nothing is due.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Running totals of one endpoint, for `/metrics`.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Events the endpoint took.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Events given up on.
    pub dead: AtomicU64,
}

/// One endpoint's delivery state, shared with `/metrics` and the admin API.
#[derive(Debug)]
pub struct Endpoint {
    /// Its settings.
    pub settings: WebhookSettings,
    /// Its totals.
    pub counters: EndpointCounters,
}

/// Every endpoint.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// The endpoints, in configuration order.
    pub endpoints: Arc<Vec<Arc<Endpoint>>>,
    /// Events older than this are given up on.
    pub give_up_after: Duration,
}

impl Webhooks {
    /// The endpoints of these settings.
    pub fn new(settings: &[WebhookSettings], give_up_after: Duration) -> Self {
        Self {
            endpoints: Arc::new(
                settings
                    .iter()
                    .map(|s| {
                        Arc::new(Endpoint {
                            settings: s.clone(),
                            counters: EndpointCounters::default(),
                        })
                    })
                    .collect(),
            ),
            give_up_after,
        }
    }

    /// Starts one delivery task per endpoint, on the webhook thread; they end with the process.
    pub fn start(&self, hub: &Hub, holder: String) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Ok(());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("cannot make the HTTP client for webhooks: {err}"))?;
        let deliveries: Vec<Delivery> = self
            .endpoints
            .iter()
            .map(|endpoint| {
                let url = reqwest::Url::parse(&endpoint.settings.url).map_err(|err| {
                    format!(
                        "webhook URL {:?} is not a URL: {err}",
                        endpoint.settings.url
                    )
                })?;
                Ok(Delivery {
                    endpoint: endpoint.clone(),
                    url,
                    store: hub.outbox(),
                    client: client.clone(),
                    holder: holder.clone(),
                    give_up_after: self.give_up_after,
                    recorded: hub.hooks_recorded(),
                })
            })
            .collect::<Result<_, String>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("switchboard-webhooks-io")
            .build()
            .map_err(|err| format!("cannot start the webhook runtime: {err}"))?;
        std::thread::Builder::new()
            .name("switchboard-webhooks".into())
            .spawn(move || {
                lower_priority();
                runtime.block_on(join_all(deliveries.into_iter().map(Delivery::run)));
            })
            .map(drop)
            .map_err(|err| format!("cannot start the webhook thread: {err}"))
    }
}

/// Puts the calling thread in the idle scheduling class (`SCHED_IDLE`): it runs when no other
/// thread of the machine wants the CPU, and gives way at once when one wakes. Threads it starts
/// inherit it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // The kernel's `struct sched_param` is one int, the priority (0 for SCHED_IDLE). The
        // system call itself rather than libc's wrapper: musl's wrapper declines to change one
        // thread. SAFETY: it acts on this thread (0) and reads `priority`, which outlives it.
        let priority: libc::c_int = 0;
        let changed = unsafe {
            libc::syscall(
                libc::SYS_sched_setscheduler,
                0,
                libc::SCHED_IDLE,
                &priority as *const libc::c_int,
            )
        };
        if changed != 0 {
            tracing::debug!(
                "webhook delivery keeps the normal priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Runs a blocking outbox call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn HistoryStore>,
    call: impl FnOnce(&dyn HistoryStore) -> Result<T, switchboard_hub::StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(store.as_ref()).map_err(|err| err.to_string()))
        .await
        .unwrap_or_else(|err| Err(err.to_string()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The delay before attempt `attempts + 1`: doubling, capped, with jitter between half and
/// all of it so receivers coming back are not hit by every sender at once.
fn backoff(attempts: u32) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(1u32 << attempts.min(20))
        .min(MAX_BACKOFF);
    full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// One endpoint's delivery task.
struct Delivery {
    endpoint: Arc<Endpoint>,
    /// The endpoint's URL, parsed once.
    url: reqwest::Url,
    store: Arc<dyn HistoryStore>,
    client: reqwest::Client,
    holder: String,
    give_up_after: Duration,
    recorded: Arc<tokio::sync::Notify>,
}

/// What became of one attempt.
enum Attempt {
    Delivered,
    Failed(String),
}

impl Delivery {
    async fn run(self) {
        let name = self.endpoint.settings.name.clone();
        let mut leased_at: Option<Instant> = None;
        loop {
            // Alone, the lease is always ours; on a cluster one node delivers at a time.
            if leased_at.is_none_or(|at| at.elapsed() > LEASE / 3) {
                let (endpoint, holder) = (name.clone(), self.holder.clone());
                match blocking(&self.store, move |s| {
                    s.take_lease(&endpoint, &holder, LEASE)
                })
                .await
                {
                    Ok(true) => leased_at = Some(Instant::now()),
                    Ok(false) => {
                        leased_at = None;
                        tokio::time::sleep(LEASE / 3).await;
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(endpoint = %name, "webhook outbox unreachable: {err}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let endpoint = name.clone();
            let pending = match blocking(&self.store, move |s| s.pending(&endpoint, BATCH)).await {
                Ok(pending) => pending,
                Err(err) => {
                    tracing::warn!(endpoint = %name, "reading the webhook outbox failed: {err}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let now = now_ms();
            let (due, next_due) = self.due(&pending, now).await;
            if due.is_empty() {
                let wait = next_due
                    .map_or(IDLE_POLL, |at| {
                        Duration::from_millis(at.saturating_sub(now))
                    })
                    .min(IDLE_POLL);
                tokio::select! {
                    () = self.recorded.notified() => {
                        // Events are waiting for their retry: new ones are looked at every
                        // so often, not after every commit, so an endpoint that is down does
                        // not make the node read its outbox over and over.
                        if !pending.is_empty() {
                            tokio::time::sleep(RECHECK.min(wait)).await;
                        }
                    }
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            // Channels side by side; within one, events one after another, in order, until one
            // fails. What was delivered is forgotten in one write.
            let lanes = due.iter().map(|lane| self.deliver_lane(lane));
            let outcomes = join_all(lanes).await;
            let mut delivered = Vec::new();
            let mut failed = Vec::new();
            for (lane, (taken, failure)) in due.into_iter().zip(outcomes) {
                delivered.extend(lane[..taken].iter().map(|event| event.key.clone()));
                if let Some(why) = failure {
                    failed.push((lane[taken].clone(), why));
                }
            }
            self.settle_delivered(delivered).await;
            for (event, why) in failed {
                self.retry(event, why).await;
            }
        }
    }

    /// Delivers `lane` (one channel's events, oldest first) in order until one fails or the
    /// pass has taken a third of the lease: how many were delivered, and why the next failed.
    async fn deliver_lane(&self, lane: &[PendingEvent]) -> (usize, Option<String>) {
        let started = Instant::now();
        for (taken, event) in lane.iter().enumerate() {
            if taken > 0 && started.elapsed() > LEASE / 3 {
                return (taken, None);
            }
            if let Attempt::Failed(why) = self.attempt(event).await {
                return (taken, Some(why));
            }
        }
        (lane.len(), None)
    }

    /// The events to attempt now, as one lane per channel: the channel's first waiting event if
    /// it is due (events past the give-up age are given up on here), then the ones after it
    /// that are due too, up to [`LANE`]. Also when the next one falls due.
    async fn due(
        &self,
        pending: &[PendingEvent],
        now: u64,
    ) -> (Vec<Vec<PendingEvent>>, Option<u64>) {
        let give_up_ms = self.give_up_after.as_millis() as u64;
        // Per channel: Some(lane index) while its lane may grow, None once it is closed.
        let mut lanes_of: std::collections::HashMap<String, Option<usize>> = Default::default();
        let mut lanes: Vec<Vec<PendingEvent>> = Vec::new();
        let mut next_due: Option<u64> = None;
        for event in pending {
            let channel = &event.event.channel;
            match lanes_of.get(channel) {
                Some(None) => continue,
                Some(Some(lane)) => {
                    let lane = *lane;
                    // Only fresh, due events join a lane; anything else waits for its turn.
                    if lanes[lane].len() < LANE
                        && event.attempts == 0
                        && event.next_attempt_ms <= now
                    {
                        lanes[lane].push(event.clone());
                    } else {
                        lanes_of.insert(channel.clone(), None);
                    }
                    continue;
                }
                None => {}
            }
            if now.saturating_sub(event.event.created_ms) > give_up_ms && event.attempts > 0 {
                let (endpoint, key) = (self.endpoint.settings.name.clone(), event.key.clone());
                match blocking(&self.store, move |s| s.give_up(&endpoint, &key)).await {
                    Ok(()) => {
                        self.endpoint.counters.dead.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            endpoint = %self.endpoint.settings.name,
                            event = %event.event.id,
                            attempts = event.attempts,
                            "gave up on a webhook event; it is kept as dead and can be replayed"
                        );
                    }
                    Err(err) => tracing::warn!("giving up on a webhook event failed: {err}"),
                }
                // The channel's next event is its first now; it waits for the next pass.
                lanes_of.insert(channel.clone(), None);
                continue;
            }
            if event.next_attempt_ms <= now && lanes.len() < CONCURRENT {
                lanes_of.insert(channel.clone(), Some(lanes.len()));
                lanes.push(vec![event.clone()]);
            } else {
                lanes_of.insert(channel.clone(), None);
                if event.next_attempt_ms > now {
                    next_due = Some(
                        next_due.map_or(event.next_attempt_ms, |n| n.min(event.next_attempt_ms)),
                    );
                }
            }
        }
        (lanes, next_due)
    }

    /// One POST of one event.
    async fn attempt(&self, event: &PendingEvent) -> Attempt {
        let settings = &self.endpoint.settings;
        let timestamp = now_ms() / 1000;
        let signature = settings
            .key
            .sign(&event.event.id, timestamp, &event.event.body);
        let sent = self
            .client
            .post(self.url.clone())
            .timeout(settings.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &event.event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Bytes::clone(&event.event.body))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => Attempt::Failed(format!("answered {}", response.status())),
            Err(err) if err.is_timeout() => {
                Attempt::Failed(format!("no answer within {:?}", settings.timeout))
            }
            Err(err) => Attempt::Failed(format!("unreachable: {err}")),
        }
    }

    /// Forgets what the endpoint took, in one write.
    async fn settle_delivered(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let count = keys.len() as u64;
        self.endpoint
            .counters
            .delivered
            .fetch_add(count, Ordering::Relaxed);
        let name = self.endpoint.settings.name.clone();
        if let Err(err) = blocking(&self.store, move |s| s.delivered_all(&name, &keys)).await {
            tracing::warn!("recording webhook deliveries failed: {err}");
        }
    }

    /// The attempt at `event` failed: it is tried again after its backoff.
    async fn retry(&self, event: PendingEvent, why: String) {
        let name = self.endpoint.settings.name.clone();
        let key = event.key.clone();
        self.endpoint
            .counters
            .retried
            .fetch_add(1, Ordering::Relaxed);
        let attempts = event.attempts.saturating_add(1);
        let delay = backoff(event.attempts);
        tracing::info!(
            endpoint = %name,
            event = %event.event.id,
            attempts,
            retry_in_ms = delay.as_millis() as u64,
            "webhook delivery failed: {why}"
        );
        let next = now_ms() + delay.as_millis() as u64;
        if let Err(err) = blocking(&self.store, move |s| {
            s.retry_later(&name, &key, attempts, next)
        })
        .await
        {
            tracing::warn!("recording a webhook delivery failed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn retries_back_off_with_jitter_up_to_five_minutes() {
        for attempts in 0..40 {
            let delay = backoff(attempts);
            let full = Duration::from_millis(500)
                .saturating_mul(1 << attempts.min(20))
                .min(Duration::from_secs(300));
            assert!(delay <= full && delay >= full / 2, "{attempts}: {delay:?}");
        }
    }
}
