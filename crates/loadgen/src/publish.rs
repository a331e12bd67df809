//! The `publish` scenario: durable publish throughput. Each publisher keeps a window of
//! messages in flight (each with a ref) and sends the next as soon as one is acknowledged, so
//! the figure is what the server can store and confirm, not what the client can push.

use clap::Args;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_client::Client;
use switchboard_protocol::Action;

use crate::report::{histogram, latency, round, Run};

#[derive(Args)]
pub struct Options {
    /// Publishing connections, each on its own channel.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Messages in flight per publisher.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    payload: usize,
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    let before = run.sample();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for publisher in 0..options.publishers {
        let url = run.url.clone();
        let duration = run.duration;
        let (window, size) = (options.window, options.payload);
        tasks.push(tokio::spawn(async move {
            publish(url, publisher, duration, window, size).await
        }));
    }
    let mut acked = 0u64;
    let mut refused = 0u64;
    let mut latencies = histogram();
    for task in tasks {
        let (ok, failed, histogram) = task.await.map_err(|e| e.to_string())??;
        acked += ok;
        refused += failed;
        latencies.add(histogram).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = run.sample();
    Ok(json!({
        "scenario": "publish",
        "params": { "url": run.url, "publishers": options.publishers, "window": options.window,
                    "payload": options.payload, "duration_s": run.duration.as_secs() },
        "acknowledged": acked,
        "refused": refused,
        "messages_per_s": round(acked as f64 / elapsed),
        "send_to_ok": latency(&latencies),
        "server": run.server_usage(before, after),
    }))
}

async fn publish(
    url: String,
    publisher: usize,
    duration: Duration,
    window: usize,
    size: usize,
) -> Result<(u64, u64, hdrhistogram::Histogram<u64>), String> {
    let channel = format!("publish-bench-{}-{publisher}", std::process::id());
    let mut client = Client::connect(&url).await.map_err(|e| e.to_string())?;
    client
        .join(&channel, false, false)
        .await
        .map_err(|e| e.to_string())?;
    let filler = "p".repeat(size);
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut next = 0u64;
    let (mut acked, mut refused) = (0u64, 0u64);
    let mut latencies = histogram();
    let started = Instant::now();
    loop {
        let sending = started.elapsed() < duration;
        while sending && in_flight.len() < window {
            let frame = json!({"action": "message", "options": {"channel": channel, "ref": next}, "payload": {"n": next, "fill": filler}});
            client
                .send_raw(frame.to_string())
                .await
                .map_err(|e| e.to_string())?;
            in_flight.insert(next, Instant::now());
            next += 1;
        }
        if !sending && in_flight.is_empty() {
            break;
        }
        let frame = client.next_frame().await.map_err(|e| e.to_string())?;
        if frame.action != Action::Reply {
            continue;
        }
        let Some(sent) = frame
            .reference()
            .and_then(Value::as_u64)
            .and_then(|r| in_flight.remove(&r))
        else {
            continue;
        };
        if frame.error_code().is_some() {
            refused += 1;
        } else {
            acked += 1;
            let _ = latencies.record(sent.elapsed().as_micros() as u64);
        }
    }
    Ok((acked, refused, latencies))
}
