//! The `fanout` scenario: R rooms of S subscribers, one publisher per room sending at a fixed
//! rate (open loop), against Switchboard or a peer server. Every payload carries a sequence
//! number and its send time, so each delivery yields a latency, and each subscriber checks for
//! loss, duplicates and order. A fraction of subscribers can stop reading (slow consumers);
//! with a rate of 0 the connections just sit idle, to measure memory per connection.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::order::{Arrival, Received};
use crate::peer::{dial, filler, stamp, stamped, Peer, Socket};
use crate::report::{cpu_ms_per_1000, histogram, latency, now_micros, round, Run};

#[derive(Args)]
pub struct Options {
    /// Which server the base URL points at.
    #[arg(long, value_enum, default_value = "switchboard")]
    peer: Peer,
    /// The server, as ws://host:port; several, comma-separated, spread the subscribers over
    /// the nodes of a cluster (round robin; publishers on the first).
    #[arg(long, default_value = "ws://127.0.0.1:3000", value_delimiter = ',')]
    base: Vec<String>,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages per second published to each room (0: idle connections only).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Share of subscribers that stop reading (slow consumers), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
}

#[derive(Default)]
struct Tally {
    received: u64,
    duplicates: u64,
    out_of_order: u64,
}

async fn open(peer: Peer, url: &str, room: &str) -> Result<Socket, String> {
    let mut ws = dial(url).await?;
    if let Some(hello) = peer.hello() {
        ws.send(Message::text(hello))
            .await
            .map_err(|e| e.to_string())?;
        // Socket.IO drops events sent before the namespace connect is acknowledged.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str().starts_with(hello) => break,
                Some(Ok(_)) => continue,
                _ => return Err("the connection closed during the handshake".into()),
            }
        }
    }
    ws.send(Message::text(peer.join(room)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    let urls: Vec<String> = options.base.iter().map(|b| options.peer.url(b)).collect();
    let url = urls.first().cloned().ok_or("--base names no server")?;
    let peer = options.peer;
    let baseline = run.sample();
    let room_name = |room: usize| format!("fanout-{room}");
    let total = options.rooms * options.subscribers;
    let slow_every = if options.slow > 0.0 {
        (1.0 / options.slow).round().max(1.0) as usize
    } else {
        0
    };
    let mut subscribers = Vec::with_capacity(total);
    for index in 0..total {
        let room = index % options.rooms;
        let socket = open(peer, &urls[index % urls.len()], &room_name(room))
            .await
            .map_err(|e| format!("subscriber {index}: {e}"))?;
        let slow = slow_every > 0 && index % slow_every == slow_every - 1;
        subscribers.push((room, slow, socket));
    }
    // Let every join land before anything is published.
    tokio::time::sleep(Duration::from_millis(1000 + total as u64 / 10)).await;
    let connected = run.sample();
    let started = Instant::now();
    let deadline = started + run.duration;
    let stop_reading = deadline + Duration::from_secs(2);
    let latencies = Arc::new(Mutex::new(histogram()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut readers = Vec::new();
    let mut held = Vec::new();
    // Subscribers that read, per room: what each room's publications should reach.
    let mut reading = vec![0u64; options.rooms];
    for (room, slow, socket) in subscribers {
        if !slow {
            reading[room] += 1;
        }
        if slow {
            // Never read: the server must cope without growing memory or slowing others.
            held.push(socket);
            continue;
        }
        let (latencies, tally) = (latencies.clone(), tally.clone());
        readers.push(tokio::spawn(async move {
            let mut socket = socket;
            let mut mine = histogram();
            let mut counts = Tally::default();
            // One room per subscriber, one publisher per room: its seqs.
            let mut arrived = Received::default();
            // One timer for the whole run, not one per frame.
            let until = tokio::time::sleep_until(tokio::time::Instant::from_std(stop_reading));
            tokio::pin!(until);
            loop {
                let message = tokio::select! {
                    biased;
                    message = socket.next() => message,
                    () = &mut until => break,
                };
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else {
                    continue;
                };
                if let Some(answer) = peer.answer(text.as_str()) {
                    let _ = socket.send(Message::text(answer)).await;
                    continue;
                }
                let Some((seq, sent)) = stamp(text.as_str()) else {
                    continue;
                };
                match arrived.note(seq) {
                    Arrival::Duplicate => counts.duplicates += 1,
                    arrival => {
                        // Late is still received (and counted out of order).
                        if arrival == Arrival::OutOfOrder {
                            counts.out_of_order += 1;
                        }
                        counts.received += 1;
                        let _ = mine.record(now_micros().saturating_sub(sent).max(1));
                    }
                }
            }
            let _ = latencies.lock().unwrap().add(mine);
            let mut shared = tally.lock().unwrap();
            shared.received += counts.received;
            shared.duplicates += counts.duplicates;
            shared.out_of_order += counts.out_of_order;
        }));
    }
    let mut published = 0u64;
    let mut expected = 0u64;
    if options.rate > 0.0 {
        let mut publishers = Vec::new();
        for room in 0..options.rooms {
            let mut socket = open(peer, &url, &room_name(room)).await?;
            let name = room_name(room);
            let interval = Duration::from_secs_f64(1.0 / options.rate);
            let fill = filler(options.payload);
            publishers.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    tokio::select! {
                        _ = ticker.tick() => {
                            let payload = stamped(seq, &fill);
                            if socket.send(Message::text(peer.publish(&name, &payload))).await.is_err() {
                                break;
                            }
                            seq += 1;
                        }
                        // Publishers are members too: read (and drop) what comes back.
                        message = socket.next() => match message {
                            Some(Ok(Message::Text(text))) => {
                                if let Some(answer) = peer.answer(text.as_str()) {
                                    let _ = socket.send(Message::text(answer)).await;
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
                // Keep draining until readers stop, so the publisher is never the slow one.
                let until = tokio::time::Instant::from_std(stop_reading);
                while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until, socket.next()).await {}
                seq
            }));
        }
        for (room, publisher) in publishers.into_iter().enumerate() {
            let sent = publisher.await.map_err(|e| e.to_string())?;
            published += sent;
            expected += sent * reading[room];
        }
    } else {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
    let after = run.sample();
    for reader in readers {
        let _ = reader.await;
    }
    drop(held);
    let tally = tally.lock().unwrap();
    let elapsed = run.duration.as_secs_f64();
    let usage = run.server_usage(connected, after);
    let cpu_ms_per_1000 = cpu_ms_per_1000(&usage, tally.received);
    let rss_per_connection_kib = match (baseline, after) {
        (Some(before), Some(after)) => Some(round(
            after.rss_kib().saturating_sub(before.rss_kib()) as f64 / total.max(1) as f64,
        )),
        _ => None,
    };
    Ok(json!({
        "scenario": "fanout",
        "params": { "peer": format!("{peer:?}").to_lowercase(), "rooms": options.rooms,
                    "subscribers": options.subscribers, "rate": options.rate,
                    "payload": options.payload, "slow": options.slow,
                    "duration_s": run.duration.as_secs() },
        "connections": total,
        "published": published,
        "expected": expected,
        "received": tally.received,
        "lost": expected.saturating_sub(tally.received),
        "loss": round(expected.saturating_sub(tally.received) as f64 / expected.max(1) as f64),
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "deliveries_per_s": round(tally.received as f64 / elapsed),
        "latency": latency(&latencies.lock().unwrap()),
        "cpu_ms_per_1000_deliveries": cpu_ms_per_1000,
        "rss_per_connection_kib": rss_per_connection_kib,
        "server": usage,
    }))
}
