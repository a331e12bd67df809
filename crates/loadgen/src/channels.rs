//! The `channels` scenario (S10): many small channels. Sockets come in pairs and each pair
//! shares channels of its own, so every channel has exactly two members: pair p joins channels
//! `p × per_socket .. (p + 1) × per_socket`. The channels fill in two phases so that memory
//! per channel and per membership can be told apart: first one socket of each pair joins
//! (every channel opens with one member), then the other (every channel gains a membership);
//! the server's RSS is read before, between and after. Joins are pipelined, a window of them
//! in flight per socket, each with a ref and timed to its reply.
//!
//! Then, for `--duration` seconds, a share of the channels (`--active`) get one message a
//! second each, sent by one of the two members at an offset that spreads all channels evenly
//! over the second (open loop); the other member must receive each one. Reports deliveries per
//! second, latency, loss, duplicates and order, and the server's CPU per 1,000 deliveries.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::{Action, ErrorCode, Frame};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::order::{Arrival, Received};
use crate::peer::{dial_within, filler, stamped, text_frame, Peer, Socket};
use crate::report::{
    cpu_ms_per_1000, histogram, latency, mib, micros, now_micros, round, ProcessSample, Run,
};

/// How long one connection (TCP and WebSocket handshakes) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet time before a memory sample, for the server to finish what the last phase began.
const SETTLE: Duration = Duration::from_secs(1);
/// After the last message is sent: time for it to arrive.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct Options {
    /// Sockets; an even number, in pairs that share their channels.
    #[arg(long, default_value_t = 2000)]
    sockets: usize,
    /// Channels each socket joins (and each pair shares).
    #[arg(long, default_value_t = 100)]
    per_socket: usize,
    /// Joins in flight per socket while the channels fill.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Share of the channels that get one message a second, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    active: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Join with presence: each joiner gets the member list, the other member an update.
    #[arg(long)]
    presence: bool,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 64)]
    connect_window: usize,
}

/// What the run tells every socket to do next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Connected, joined to nothing.
    Connected,
    /// The first socket of each pair joins its channels.
    FillFirst,
    /// The second socket of each pair joins the same channels.
    FillSecond,
    /// Active channels get a message a second from `start` until `end`.
    Messages {
        start: tokio::time::Instant,
        end: tokio::time::Instant,
    },
    /// Stop and report.
    Done,
}

/// The channels and the sending plan of one socket.
struct Member {
    first: bool,
    channels: Range<u64>,
    /// Every active channel this member is the sender of, with its offset in the second.
    sends: Vec<(Duration, u64)>,
    /// Active channels whose messages this member sends (and gets back as echoes).
    sends_on: Vec<u64>,
}

/// Which channels are active and who sends on them.
struct Plan {
    per_socket: u64,
    /// Every `step`-th channel is active.
    step: Option<u64>,
    active: u64,
}

impl Plan {
    fn new(options: &Options) -> Self {
        let channels = (options.sockets / 2 * options.per_socket) as u64;
        let step = (options.active > 0.0).then(|| (1.0 / options.active).round().max(1.0) as u64);
        let active = step.map_or(0, |step| channels.div_ceil(step));
        Self {
            per_socket: options.per_socket as u64,
            step,
            active,
        }
    }

    fn member(&self, index: usize) -> Member {
        let pair = (index / 2) as u64;
        let first = index.is_multiple_of(2);
        let channels = pair * self.per_socket..(pair + 1) * self.per_socket;
        let mut sends = Vec::new();
        if let Some(step) = self.step {
            for channel in channels.clone().filter(|c| c.is_multiple_of(step)) {
                let rank = channel / step;
                // The two members take turns, so each sends on half its active channels.
                if rank.is_multiple_of(2) == first {
                    let offset = Duration::from_secs_f64(rank as f64 / self.active as f64);
                    sends.push((offset, channel));
                }
            }
        }
        sends.sort();
        let mut sends_on: Vec<u64> = sends.iter().map(|(_, channel)| *channel).collect();
        sends_on.sort_unstable();
        Member {
            first,
            channels,
            sends,
            sends_on,
        }
    }
}

/// One socket's fill phase: how its joins went.
struct Joins {
    latency: hdrhistogram::Histogram<u64>,
    refused: BTreeMap<String, u64>,
}

/// One socket's message phase, or several added up.
struct Deliveries {
    sent: u64,
    /// `error` frames during the message phase: messages the server refused.
    refused: BTreeMap<String, u64>,
    /// `error` frames before the message phase (not about any message sent).
    errors_before_messages: BTreeMap<String, u64>,
    /// Sockets whose connection failed (closed, or a read or send failed).
    failed: u64,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    /// The sender's own copies (the server sends every stored message to its sender too).
    echoes: u64,
    latency: hdrhistogram::Histogram<u64>,
}

impl Deliveries {
    fn new() -> Self {
        Self {
            sent: 0,
            refused: BTreeMap::new(),
            errors_before_messages: BTreeMap::new(),
            failed: 0,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            echoes: 0,
            latency: histogram(),
        }
    }

    fn add(&mut self, other: Deliveries) {
        self.sent += other.sent;
        self.failed += other.failed;
        add_counts(
            &mut self.errors_before_messages,
            other.errors_before_messages,
        );
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.echoes += other.echoes;
        add_counts(&mut self.refused, other.refused);
        let _ = self.latency.add(other.latency);
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (code, count) in from {
        *into.entry(code).or_default() += count;
    }
}

fn channel_name(prefix: &str, channel: u64) -> String {
    format!("{prefix}-{channel}")
}

fn channel_number(name: &str) -> Option<u64> {
    name.rsplit_once('-')?.1.parse().ok()
}

fn refusal_code(frame: &Frame) -> String {
    frame
        .error_code()
        .map_or("unknown", ErrorCode::as_str)
        .to_string()
}

/// A socket's life through every phase: it always reads, so pings are answered and nothing
/// piles up while other sockets fill.
struct Session {
    socket: Socket,
    member: Member,
    prefix: Arc<str>,
    join_payload: &'static str,
    window: usize,
    fill: Arc<str>,
    /// Channels still to join in this socket's fill phase.
    to_join: Range<u64>,
    in_flight: HashMap<u64, Instant>,
    joins: Option<Joins>,
    deliveries: Deliveries,
    /// Per channel this socket receives on: the loadgen seqs that arrived.
    arrived: HashMap<u64, Received>,
    /// The message phase started: `error` frames from now on are refused messages.
    messaging: bool,
}

impl Session {
    async fn send(&mut self, frame: String) -> Result<(), String> {
        self.socket
            .send(Message::text(frame))
            .await
            .map_err(|e| format!("sending: {e}"))
    }

    /// Keeps up to `window` joins in flight.
    async fn join_more(&mut self) -> Result<(), String> {
        while self.in_flight.len() < self.window {
            let Some(channel) = self.to_join.next() else {
                break;
            };
            let name = channel_name(&self.prefix, channel);
            let frame = format!(
                r#"{{"action":"join","options":{{"channel":"{name}","ref":{channel}}},"payload":{}}}"#,
                self.join_payload
            );
            self.in_flight.insert(channel, Instant::now());
            self.send(frame).await?;
        }
        Ok(())
    }

    /// Handles one frame; `Some` with the socket's joins when its fill phase just finished.
    async fn read(&mut self, frame: Frame) -> Result<Option<Joins>, String> {
        match frame.action {
            Action::Reply => {
                let Some(sent) = frame
                    .reference()
                    .and_then(Value::as_u64)
                    .and_then(|channel| self.in_flight.remove(&channel))
                else {
                    return Ok(None);
                };
                let joins = self.joins.get_or_insert_with(|| Joins {
                    latency: histogram(),
                    refused: BTreeMap::new(),
                });
                if frame.error_code().is_some() {
                    *joins.refused.entry(refusal_code(&frame)).or_default() += 1;
                } else {
                    let _ = joins.latency.record(micros(sent.elapsed()));
                }
                self.join_more().await?;
                if self.in_flight.is_empty() {
                    return Ok(self.joins.take());
                }
            }
            Action::Message => self.deliver(&frame),
            Action::Error => {
                let counts = if self.messaging {
                    &mut self.deliveries.refused
                } else {
                    &mut self.deliveries.errors_before_messages
                };
                *counts.entry(refusal_code(&frame)).or_default() += 1;
            }
            _ => {}
        }
        Ok(None)
    }

    fn deliver(&mut self, frame: &Frame) {
        let Some(channel) = frame.channel().and_then(channel_number) else {
            return;
        };
        if self.member.sends_on.binary_search(&channel).is_ok() {
            self.deliveries.echoes += 1;
            return;
        }
        let stamp = |key| frame.payload.get(key).and_then(Value::as_u64);
        let (Some(seq), Some(sent_at)) = (stamp("s"), stamp("t")) else {
            return;
        };
        match self.arrived.entry(channel).or_default().note(seq) {
            Arrival::Duplicate => self.deliveries.duplicates += 1,
            arrival => {
                if arrival == Arrival::OutOfOrder {
                    self.deliveries.out_of_order += 1;
                }
                self.deliveries.received += 1;
                let _ = self
                    .deliveries
                    .latency
                    .record(now_micros().saturating_sub(sent_at).max(1));
            }
        }
    }

    /// Runs the socket until `Done`, reporting each finished fill phase on `filled`.
    async fn run(
        mut self,
        mut phase: watch::Receiver<Phase>,
        filled: mpsc::UnboundedSender<Result<Joins, String>>,
    ) -> Deliveries {
        let outcome = self.serve(&mut phase, &filled).await;
        if let Err(err) = outcome {
            self.deliveries.failed += 1;
            // The run waits for this socket's fill: tell it why it will not come.
            let _ = filled.send(Err(err));
            // Stay out of the way until the run ends.
            while phase.changed().await.is_ok() && *phase.borrow() != Phase::Done {}
        }
        self.deliveries
    }

    async fn serve(
        &mut self,
        phase: &mut watch::Receiver<Phase>,
        filled: &mpsc::UnboundedSender<Result<Joins, String>>,
    ) -> Result<(), String> {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let (mut next_send, mut second, mut window_end) = (0usize, 0u64, far);
        let mut start = far;
        loop {
            let due = self.member.sends.get(next_send).map_or(far, |(offset, _)| {
                start + Duration::from_secs(second) + *offset
            });
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let now = *phase.borrow_and_update();
                    match now {
                        Phase::FillFirst | Phase::FillSecond => {
                            if (now == Phase::FillFirst) == self.member.first {
                                self.to_join = self.member.channels.clone();
                                self.join_more().await?;
                            }
                        }
                        Phase::Messages { start: from, end } => {
                            (start, window_end) = (from, end);
                            self.messaging = true;
                        }
                        Phase::Done => return Ok(()),
                        Phase::Connected => {}
                    }
                }
                () = tokio::time::sleep_until(due), if due < window_end => {
                    let channel = self.member.sends[next_send].1;
                    let name = channel_name(&self.prefix, channel);
                    let payload = stamped(second, &self.fill);
                    self.send(Peer::Switchboard.publish(&name, &payload)).await?;
                    self.deliveries.sent += 1;
                    next_send += 1;
                    if next_send == self.member.sends.len() {
                        (next_send, second) = (0, second + 1);
                    }
                }
                message = self.socket.next() => {
                    let frame = match text_frame(message) {
                        Ok(Some(frame)) => frame,
                        Ok(None) | Err(false) => continue,
                        Err(true) => return Err("the connection closed or failed".into()),
                    };
                    if let Some(joins) = self.read(frame).await? {
                        let _ = filled.send(Ok(joins));
                    }
                }
            }
        }
    }
}

/// One fill phase, measured.
struct Fill {
    joins: u64,
    seconds: f64,
    latency: hdrhistogram::Histogram<u64>,
    refused: BTreeMap<String, u64>,
    cpu: Value,
    /// The server's memory once the phase settled.
    settled: Option<ProcessSample>,
}

impl Fill {
    fn report(&self) -> Value {
        json!({
            "joins": self.joins,
            "seconds": round(self.seconds),
            "joins_per_s": round(self.joins as f64 / self.seconds.max(1e-9)),
            "latency": latency(&self.latency),
            "refused": self.refused,
            "server": self.cpu,
        })
    }
}

/// What the fill phases need: the run's phase, where sockets report their joins, and sizes.
struct Filling<'a> {
    run: &'a Run,
    phase: &'a watch::Sender<Phase>,
    filled: mpsc::UnboundedReceiver<Result<Joins, String>>,
    /// Sockets joining in each phase (one per pair).
    sockets: usize,
    per_socket: usize,
}

impl Filling<'_> {
    /// Starts a fill phase, waits until each of its sockets finished its joins, then lets the
    /// server settle and reads its memory.
    async fn fill(&mut self, which: Phase) -> Result<Fill, String> {
        let before = self.run.sample();
        let started = Instant::now();
        self.phase
            .send(which)
            .map_err(|_| "every socket task ended".to_string())?;
        let mut latency = histogram();
        let mut refused = BTreeMap::new();
        let joins = (self.sockets * self.per_socket) as u64;
        let limit = Duration::from_secs(60 + joins / 500);
        for _ in 0..self.sockets {
            let left = limit.saturating_sub(started.elapsed());
            let done = tokio::time::timeout(left, self.filled.recv())
                .await
                .map_err(|_| format!("{which:?}: the joins did not finish within {limit:?}"))?
                .ok_or("every socket task ended")??;
            let _ = latency.add(done.latency);
            add_counts(&mut refused, done.refused);
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = self.run.server_usage(before, self.run.sample());
        tokio::time::sleep(SETTLE).await;
        Ok(Fill {
            joins,
            seconds,
            latency,
            refused,
            cpu,
            settled: self.run.sample(),
        })
    }
}

async fn connect_all(url: &str, count: usize, window: usize) -> Result<Vec<Socket>, String> {
    let gate = Arc::new(Semaphore::new(window.max(1)));
    let mut dials = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let url = url.to_string();
        dials.push(tokio::spawn(async move {
            let socket = dial_within(&url, DIAL_TIMEOUT).await;
            drop(permit);
            socket
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for (index, dial) in dials.into_iter().enumerate() {
        let socket = dial
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("socket {index}: {e}"))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn rss(sample: Option<ProcessSample>) -> Option<u64> {
    sample.map(|s| s.rss_kib())
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    if options.sockets < 2 || !options.sockets.is_multiple_of(2) || options.per_socket == 0 {
        return Err("--sockets must be an even number (pairs), --per-socket above 0".into());
    }
    let plan = Plan::new(&options);
    let pairs = options.sockets / 2;
    let channels = (pairs * options.per_socket) as u64;
    let prefix: Arc<str> = Arc::from(format!("ch{}", std::process::id()));
    let fill_text: Arc<str> = Arc::from(filler(options.payload));
    let join_payload = if options.presence {
        r#"{"presence":true}"#
    } else {
        "{}"
    };

    let idle = run.sample();
    let sockets = connect_all(&run.url, options.sockets, options.connect_window).await?;
    let (phase, phase_rx) = watch::channel(Phase::Connected);
    let (filled_tx, filled) = mpsc::unbounded_channel();
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            let session = Session {
                socket,
                member: plan.member(index),
                prefix: prefix.clone(),
                join_payload,
                window: options.window.max(1),
                fill: fill_text.clone(),
                to_join: 0..0,
                in_flight: HashMap::new(),
                joins: None,
                deliveries: Deliveries::new(),
                arrived: HashMap::new(),
                messaging: false,
            };
            tokio::spawn(session.run(phase_rx.clone(), filled_tx.clone()))
        })
        .collect();
    drop(filled_tx);

    tokio::time::sleep(SETTLE).await;
    let connected = run.sample();
    let mut filling = Filling {
        run,
        phase: &phase,
        filled,
        sockets: pairs,
        per_socket: options.per_socket,
    };
    let first = filling.fill(Phase::FillFirst).await?;
    let second = filling.fill(Phase::FillSecond).await?;
    let (after_first, after_second) = (first.settled, second.settled);

    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + run.duration;
    phase
        .send(Phase::Messages { start, end })
        .map_err(|_| "every socket task ended".to_string())?;
    tokio::time::sleep_until(start).await;
    let before = run.sample();
    tokio::time::sleep_until(end).await;
    let after = run.sample();
    tokio::time::sleep(DRAIN).await;
    let _ = phase.send(Phase::Done);
    let mut deliveries = Deliveries::new();
    for task in tasks {
        deliveries.add(task.await.map_err(|e| e.to_string())?);
    }

    let refused: u64 = deliveries.refused.values().sum();
    let expected = deliveries.sent.saturating_sub(refused);
    let usage = run.server_usage(before, after);
    let cpu_ms_per_1000 = cpu_ms_per_1000(&usage, deliveries.received);
    let mib = |kib: Option<u64>| kib.map(mib);
    let (per_channel, per_membership) = match (rss(connected), rss(after_first), rss(after_second))
    {
        (Some(base), Some(a), Some(b)) => {
            // Phase A opened every channel with one member; phase B added one membership.
            let channel_and_member = a as f64 - base as f64;
            let membership = b as f64 - a as f64;
            (
                Some(round(
                    (channel_and_member - membership) * 1024.0 / channels as f64,
                )),
                Some(round(membership * 1024.0 / channels as f64)),
            )
        }
        _ => (None, None),
    };
    let seconds = run.duration.as_secs_f64();
    Ok(json!({
        "scenario": "channels",
        "params": { "url": run.url, "sockets": options.sockets, "per_socket": options.per_socket,
                    "window": options.window, "active": options.active, "payload": options.payload,
                    "presence": options.presence, "duration_s": run.duration.as_secs() },
        "channels": channels,
        "memberships": channels * 2,
        "fill": { "first": first.report(), "second": second.report() },
        "memory": {
            "rss_idle_mib": mib(rss(idle)),
            "rss_connected_mib": mib(rss(connected)),
            "rss_after_first_mib": mib(rss(after_first)),
            "rss_after_second_mib": mib(rss(after_second)),
            "bytes_per_channel": per_channel,
            "bytes_per_membership": per_membership,
        },
        "messages": {
            "active_channels": plan.active,
            "sent": deliveries.sent,
            "refused": deliveries.refused,
            "errors_before_messages": deliveries.errors_before_messages,
            "failed": deliveries.failed,
            "expected": expected,
            "received": deliveries.received,
            "lost": expected.saturating_sub(deliveries.received),
            "duplicates": deliveries.duplicates,
            "out_of_order": deliveries.out_of_order,
            "echoes": deliveries.echoes,
            "deliveries_per_s": round(deliveries.received as f64 / seconds),
            "latency": latency(&deliveries.latency),
            "cpu_ms_per_1000_deliveries": cpu_ms_per_1000,
            "server": usage,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sockets: usize, per_socket: usize, active: f64) -> Options {
        Options {
            sockets,
            per_socket,
            window: 10,
            active,
            payload: 64,
            presence: false,
            connect_window: 64,
        }
    }

    #[test]
    fn a_pair_shares_its_channels_and_splits_the_sending() {
        let plan = Plan::new(&options(4, 100, 0.1));
        let (a, b) = (plan.member(2), plan.member(3));
        assert_eq!(
            (a.channels.clone(), b.channels.clone()),
            (100..200, 100..200)
        );
        assert!(a.first && !b.first);
        assert_eq!(plan.active, 20);
        assert_eq!(a.sends.len() + b.sends.len(), 10);
        assert!(a
            .sends_on
            .iter()
            .all(|c| c % 10 == 0 && !b.sends_on.contains(c)));
    }

    #[test]
    fn active_channels_are_spread_over_the_second() {
        let plan = Plan::new(&options(2000, 100, 0.1));
        let offsets: Vec<Duration> = (0..2000)
            .flat_map(|index| plan.member(index).sends)
            .map(|(offset, _)| offset)
            .collect();
        assert_eq!(offsets.len(), 10_000);
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(1)));
        assert!(offsets.contains(&Duration::ZERO));
    }

    #[test]
    fn channel_numbers_come_back_from_names() {
        assert_eq!(channel_number(&channel_name("ch42", 99_999)), Some(99_999));
    }
}
