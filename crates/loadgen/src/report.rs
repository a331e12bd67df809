//! What every scenario shares: the run's parameters, latency histograms, and the server's CPU
//! time and memory read from /proc.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One measured run.
pub struct Run {
    pub url: String,
    pub duration: Duration,
    server_pids: Vec<u32>,
}

/// CPU time and resident memory of a process.
#[derive(Clone, Copy)]
pub struct ProcessSample {
    cpu: Duration,
    rss_kib: u64,
    at: Instant,
}

impl ProcessSample {
    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.rss_kib
    }

    /// CPU time (user and system) the process used since it started.
    pub fn cpu(&self) -> Duration {
        self.cpu
    }

    /// When the sample was taken.
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl Run {
    pub fn new(url: &str, seconds: u64, server_pids: Vec<u32>) -> Self {
        Self {
            url: url.to_string(),
            duration: Duration::from_secs(seconds),
            server_pids,
        }
    }

    /// The server processes named by `--server-pid`.
    pub fn server_pids(&self) -> &[u32] {
        &self.server_pids
    }

    /// The server's CPU time and RSS now (summed over its processes), if pids were given and
    /// /proc can be read.
    pub fn sample(&self) -> Option<ProcessSample> {
        let mut total: Option<ProcessSample> = None;
        for pid in &self.server_pids {
            let one = process_sample(*pid)?;
            total = Some(match total {
                Some(sum) => ProcessSample {
                    cpu: sum.cpu + one.cpu,
                    rss_kib: sum.rss_kib + one.rss_kib,
                    at: one.at,
                },
                None => one,
            });
        }
        total
    }

    /// Server CPU use between two samples, as a share of one core, and the RSS at the end.
    pub fn server_usage(
        &self,
        before: Option<ProcessSample>,
        after: Option<ProcessSample>,
    ) -> Value {
        match (before, after) {
            (Some(before), Some(after)) => {
                let wall = after.at.duration_since(before.at).as_secs_f64();
                let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
                json!({
                    "cpu_seconds": round(cpu),
                    "cpu_cores": round(cpu / wall.max(1e-9)),
                    "rss_mib": mib(after.rss_kib),
                })
            }
            _ => Value::Null,
        }
    }
}

/// CPU time and RSS of one process now, if /proc can be read (not for a zombie: it has no RSS).
/// Linux counts CPU time in clock ticks of 1/100 s on every common configuration.
pub fn process_sample(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())?;
    Some(ProcessSample {
        cpu: Duration::from_millis(ticks * 10),
        rss_kib,
        at: Instant::now(),
    })
}

/// How long the process has been running: the system's uptime less the process's start time.
pub fn process_age(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let started_ticks: u64 = stat_fields(&stat)?.get(19)?.parse().ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let uptime: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (uptime - started_ticks as f64 / 100.0).max(0.0),
    ))
}

/// The fields of /proc/PID/stat after the command name (which may contain spaces), from the
/// state on: field n of proc(5) is at index n − 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat.rsplit_once(") ")?.1.split_whitespace().collect())
}

/// Microseconds since the Unix epoch: the send time stamped in payloads.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Server CPU milliseconds per 1,000 deliveries, from a [`Run::server_usage`] report.
pub fn cpu_ms_per_1000(usage: &Value, deliveries: u64) -> Option<f64> {
    usage
        .get("cpu_seconds")
        .and_then(Value::as_f64)
        .filter(|_| deliveries > 0)
        .map(|cpu| round(cpu * 1000.0 / (deliveries as f64 / 1000.0)))
}

/// A histogram of latencies in microseconds, up to one minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles in milliseconds.
pub fn latency(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| round(histogram.value_at_quantile(q) as f64 / 1000.0);
    json!({
        "count": histogram.len(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": round(histogram.max() as f64 / 1000.0),
    })
}

/// A duration in whole microseconds for a histogram (which holds nothing below 1).
pub fn micros(duration: Duration) -> u64 {
    duration.as_micros().max(1) as u64
}

/// KiB as MiB, rounded for a report.
pub fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0)
}

/// The peak resident memory (`VmHWM`) of a process since it started, KiB, if /proc can be read.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Three decimals are plenty for a report.
pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
