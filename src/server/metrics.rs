//! `/metrics`: everything an operator alerts on, in the Prometheus text format, through
//! `prometheus-client` — the engine's counters and histograms, sockets and channels, webhook
//! delivery per endpoint, the build, and the standard `process_*` metrics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use switchboard_hub::Hub;

use super::hooks::delivery::Webhooks;

/// A webhook endpoint's label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// The endpoint's name.
    pub endpoint: String,
}

/// The build's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    engine: String,
}

/// What `/metrics` exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sockets: Gauge,
    channels: Gauge,
    pending: Family<EndpointLabel, Gauge>,
    dead: Family<EndpointLabel, Gauge>,
    oldest: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// The metrics of this server: the engine's and its own.
    pub fn new(hub: &Hub, engine: &str, webhooks: &Webhooks) -> Self {
        let mut registry = Registry::default();
        let process = ProcessCollector;
        registry.register_collector(Box::new(process));
        let switchboard = registry.sub_registry_with_prefix("switchboard");
        hub.metrics().register(switchboard);
        let sockets = Gauge::default();
        switchboard.register("sockets", "Sockets connected now", sockets.clone());
        let channels = Gauge::default();
        switchboard.register(
            "channels",
            "Channels with members on this node now",
            channels.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                engine: engine.into(),
            })
            .set(1);
        switchboard.register("build_info", "The running build (always 1)", build);
        let pending = Family::<EndpointLabel, Gauge>::default();
        switchboard.register(
            "webhook_events_pending",
            "Webhook events waiting to be delivered, per endpoint",
            pending.clone(),
        );
        let dead = Family::<EndpointLabel, Gauge>::default();
        switchboard.register(
            "webhook_events_dead",
            "Webhook events given up on (replayable), per endpoint",
            dead.clone(),
        );
        let oldest = Family::<EndpointLabel, Gauge<f64, AtomicU64>>::default();
        switchboard.register_with_unit(
            "webhook_oldest_pending_age",
            "Age of the oldest webhook event waiting, per endpoint",
            Unit::Seconds,
            oldest.clone(),
        );
        switchboard.register_collector(Box::new(WebhookTotals(webhooks.clone())));
        Self {
            registry,
            sockets,
            channels,
            pending,
            dead,
            oldest,
        }
    }

    /// The text of a scrape: gauges read now, then everything encoded.
    pub async fn scrape(&self, hub: &Hub, webhooks: &Webhooks) -> Result<String, String> {
        self.sockets.set(hub.socket_count() as i64);
        self.channels.set(hub.channel_count() as i64);
        let store = hub.outbox();
        let names: Vec<String> = webhooks
            .endpoints
            .iter()
            .map(|e| e.settings.name.clone())
            .collect();
        let stats = tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|name| {
                    let stats = store.outbox_stats(&name);
                    (name, stats)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|err| err.to_string())?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (endpoint, stats) in stats {
            let label = EndpointLabel { endpoint };
            match stats {
                Ok(stats) => {
                    self.pending.get_or_create(&label).set(stats.pending as i64);
                    self.dead.get_or_create(&label).set(stats.dead as i64);
                    let age = stats
                        .oldest_pending_ms
                        .map_or(0.0, |at| now_ms.saturating_sub(at) as f64 / 1000.0);
                    self.oldest.get_or_create(&label).set(age);
                }
                Err(err) => tracing::warn!("reading webhook outbox stats failed: {err}"),
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|err| err.to_string())?;
        Ok(text)
    }
}

/// Reads one total from an endpoint's counters.
type ReadCounter = fn(&super::hooks::delivery::EndpointCounters) -> u64;

/// Webhook delivery totals per endpoint, read at each scrape.
#[derive(Debug)]
struct WebhookTotals(Webhooks);

impl Collector for WebhookTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let totals: [(&str, &str, ReadCounter); 3] = [
            (
                "webhook_delivered",
                "Webhook events delivered, per endpoint",
                |c| c.delivered.load(Relaxed),
            ),
            (
                "webhook_retried",
                "Webhook delivery attempts that failed and were retried, per endpoint",
                |c| c.retried.load(Relaxed),
            ),
            (
                "webhook_dead",
                "Webhook events given up on, per endpoint",
                |c| c.dead.load(Relaxed),
            ),
        ];
        for (name, help, read) in totals {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for endpoint in self.0.endpoints.iter() {
                let label = EndpointLabel {
                    endpoint: endpoint.settings.name.clone(),
                };
                let counter = ConstCounter::new(read(&endpoint.counters));
                counter.encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc` CPU times (the Linux default).
const TICKS_PER_SECOND: f64 = 100.0;

fn process_figures() -> Option<(f64, f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces, in parentheses.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n)?.parse::<f64>().ok();
    let cpu = (ticks(11)? + ticks(12)?) / TICKS_PER_SECOND;
    let start_ticks = ticks(19)?;
    let virtual_bytes = ticks(20)?;
    let page_size = 4096.0;
    let resident = ticks(21)? * page_size;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let start = now - uptime + start_ticks / TICKS_PER_SECOND;
    Some((cpu, resident, virtual_bytes, start))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((cpu, resident, virtual_bytes, start)) = process_figures() else {
            return Ok(());
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as i64;
        let cpu_total = ConstCounter::new(cpu);
        cpu_total.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu_total.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 4] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                resident,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                start,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                open_fds as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
