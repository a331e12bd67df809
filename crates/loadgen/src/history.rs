//! The `history` scenario: joins at a fixed rate, each on a new connection, each asking for the
//! latest messages of one channel. Open loop: joins start on schedule whether or not earlier
//! ones have finished, so a slow server shows up as latency, not as a lower rate.

use clap::Args;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_client::{channel_options, Client};
use switchboard_protocol::Action;

use crate::report::{histogram, latency, Run};

#[derive(Args)]
pub struct Options {
    /// Joins started per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Messages in the channel, and asked for by each join.
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Payload size of the seeded messages, in bytes.
    #[arg(long, default_value_t = 128)]
    payload: usize,
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    let channel = format!("history-bench-{}", std::process::id());
    let mut seeder = Client::connect(&run.url).await.map_err(|e| e.to_string())?;
    seeder
        .join(&channel, false, false)
        .await
        .map_err(|e| e.to_string())?;
    let filler = "x".repeat(options.payload);
    for n in 0..options.messages {
        seeder
            .publish(&channel, json!({ "n": n, "fill": filler }))
            .await
            .map_err(|e| e.to_string())?;
    }
    let join_to_history = Arc::new(Mutex::new(histogram()));
    let connect_to_history = Arc::new(Mutex::new(histogram()));
    let failures = Arc::new(Mutex::new(0u64));
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let before = run.sample();
    let started = Instant::now();
    let mut tasks = Vec::new();
    while started.elapsed() < run.duration {
        ticker.tick().await;
        let (url, channel) = (run.url.clone(), channel.clone());
        let (join_h, connect_h, failures) = (
            join_to_history.clone(),
            connect_to_history.clone(),
            failures.clone(),
        );
        let expected = options.messages;
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let outcome = async {
                let mut client = Client::connect(&url).await.map_err(|e| e.to_string())?;
                let joined_at = Instant::now();
                let payload = json!({ "history": true });
                client
                    .send(
                        Action::Join,
                        Value::Object(channel_options(&channel)),
                        payload,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let history = client
                    .expect(Action::History, Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string())?;
                let got = history.payload["history"].as_array().map_or(0, Vec::len);
                if got != expected {
                    return Err(format!("history had {got} messages, expected {expected}"));
                }
                let done = Instant::now();
                let _ = client.close().await;
                Ok::<_, String>((done - joined_at, done - began))
            }
            .await;
            match outcome {
                Ok((join, total)) => {
                    let _ = join_h.lock().unwrap().record(join.as_micros() as u64);
                    let _ = connect_h.lock().unwrap().record(total.as_micros() as u64);
                }
                Err(_) => *failures.lock().unwrap() += 1,
            }
        }));
    }
    let issued = tasks.len();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = run.sample();
    let join_h = join_to_history.lock().unwrap();
    let connect_h = connect_to_history.lock().unwrap();
    Ok(json!({
        "scenario": "history",
        "params": { "url": run.url, "rate": options.rate, "messages": options.messages,
                    "payload": options.payload, "duration_s": run.duration.as_secs() },
        "joins": issued,
        "joins_per_s": crate::report::round(issued as f64 / elapsed),
        "failures": *failures.lock().unwrap(),
        "join_to_history": latency(&join_h),
        "connect_join_history": latency(&connect_h),
        "server": run.server_usage(before, after),
    }))
}
