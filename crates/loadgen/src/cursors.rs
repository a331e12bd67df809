//! The `cursors` scenario: R rooms of U users, each sending a volatile cursor update at H Hz
//! (open loop) and receiving everyone else's. Each update carries its send time, so every
//! delivery yields a latency. The server's coalescing total is read from `/metrics` before and
//! after: coalesced updates are replaced by newer ones, never lost positions.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::report::{histogram, latency, now_micros, round, Run};

#[derive(Args)]
pub struct Options {
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Users per room, each on its own connection.
    #[arg(long, default_value_t = 30)]
    users: usize,
    /// Updates each user sends per second.
    #[arg(long, default_value_t = 30)]
    rate: u32,
    /// Name the rooms PREFIX-0, PREFIX-1, … (to drive a board a browser has open); by
    /// default each run gets rooms of its own.
    #[arg(long)]
    prefix: Option<String>,
}

/// The send time stamped in a frame, read without parsing the whole frame.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find("\"t\":")? + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `switchboard_volatile_coalesced_total` from the server's `/metrics` (over HTTPS for a
/// `wss://` URL).
async fn coalesced_total(ws_url: &str) -> Option<u64> {
    let body = match switchboard_client::admin::metrics_text(ws_url).await {
        Ok(body) => body,
        Err(err) => {
            eprintln!("could not read the server's coalescing total: {err}");
            return None;
        }
    };
    body.lines()
        .find_map(|line| line.strip_prefix("switchboard_volatile_coalesced_total "))
        .and_then(|value| value.trim().parse().ok())
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    let latencies = Arc::new(Mutex::new(histogram()));
    let delivered = Arc::new(Mutex::new(0u64));
    let sent = Arc::new(Mutex::new(0u64));
    let mut sockets = Vec::new();
    for room in 0..options.rooms {
        for _ in 0..options.users {
            let ws = crate::peer::dial(run.url.as_str())
                .await
                .map_err(|e| format!("connecting user {} of room {room}: {e}", sockets.len()))?;
            sockets.push((room, ws));
        }
    }
    let prefix = options
        .prefix
        .clone()
        .unwrap_or_else(|| format!("cursors-bench-{}", std::process::id()));
    let channel_of = |room: usize| format!("{prefix}-{room}");
    for (room, ws) in &mut sockets {
        let join =
            json!({"action": "join", "options": {"channel": channel_of(*room)}, "payload": {}});
        ws.send(Message::text(join.to_string()))
            .await
            .map_err(|e| e.to_string())?;
    }
    // Let every join land before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let coalesced_before = coalesced_total(&run.url).await;
    let before = run.sample();
    let started = Instant::now();
    let deadline = started + run.duration;
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let mut tasks = Vec::new();
    for (index, (room, ws)) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
        let channel = channel_of(room);
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the users over the interval so they do not all send at once.
            let offset = interval.mul_f64((index % 97) as f64 / 97.0);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            let mut count = 0u64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let angle = count as f64 / 30.0;
                let frame = json!({
                    "action": "message",
                    "options": {"channel": channel, "volatile": true},
                    "payload": {"kind": "cursor", "x": 0.5 + 0.4 * angle.cos(), "y": 0.5 + 0.4 * angle.sin(), "t": now_micros()},
                });
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                count += 1;
            }
            *sent.lock().unwrap() += count;
            // The socket stays open (the sink is dropped, not closed) so this user still
            // receives the updates others send until the end.
            drop(sink);
        }));
        let (latencies, delivered) = (latencies.clone(), delivered.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = histogram();
            let mut count = 0u64;
            let stop = tokio::time::Instant::from_std(deadline + Duration::from_secs(1));
            while let Ok(Some(Ok(message))) = tokio::time::timeout_at(stop, stream.next()).await {
                if let Message::Text(text) = message {
                    if let Some(t) = stamp(text.as_str()) {
                        let _ = mine.record(now_micros().saturating_sub(t).max(1));
                        count += 1;
                    }
                }
            }
            *delivered.lock().unwrap() += count;
            let _ = latencies.lock().unwrap().add(mine);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let after = run.sample();
    let coalesced_after = coalesced_total(&run.url).await;
    let elapsed = run.duration.as_secs_f64();
    let sent = *sent.lock().unwrap();
    let delivered = *delivered.lock().unwrap();
    let fanout = sent * (options.users as u64 - 1);
    let coalesced = coalesced_before.zip(coalesced_after).map(|(b, a)| a - b);
    let latencies = latencies.lock().unwrap();
    Ok(json!({
        "scenario": "cursors",
        "params": { "url": run.url, "rooms": options.rooms, "users": options.users,
                    "rate_hz": options.rate, "duration_s": run.duration.as_secs() },
        "updates_sent": sent,
        "updates_per_s": round(sent as f64 / elapsed),
        "deliveries": delivered,
        "deliveries_per_s": round(delivered as f64 / elapsed),
        "fanout_wanted": fanout,
        "coalesced": coalesced,
        "coalesced_share": coalesced.map(|c| round(c as f64 / fanout.max(1) as f64)),
        "undelivered": fanout.saturating_sub(delivered + coalesced.unwrap_or(0)),
        "send_to_receive": latency(&latencies),
        "server": run.server_usage(before, after),
    }))
}
