//! The `storm` scenario (S9): a reconnect storm. Thousands of subscribers sit in rooms while
//! one publisher per room sends durable messages, each with an id and a ref, so the publisher
//! knows which ones the server acknowledged. Once warm, the load generator says it is ready and
//! the bench script kills the server and starts it again on the same database. Every socket
//! then reconnects with exponential backoff and full jitter; subscribers resume from the last
//! stored message they saw (`options.since`), publishers resend what was not acknowledged under
//! the same id, so the server stores each message once.
//!
//! Reported: how long from the first lost connection until every socket is joined again and
//! until every subscriber has every message acknowledged before then; the server's peak CPU
//! and memory meanwhile (its pid is read again from a file, so the samples follow the new
//! process); reconnect attempts; and, by the load generator's own sequence numbers, lost
//! (acknowledged but never received), duplicated and out-of-order messages and `gap` frames.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchboard_protocol::{Action, Frame};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::order::{Arrival, Received};
use crate::peer::{dial_within, filler, stamped, text_frame, Socket};
use crate::reconnect::Backoff;
use crate::report::{
    histogram, latency, mib, micros, peak_rss_kib, process_age, process_sample, round,
    ProcessSample, Run,
};

/// The first reconnect waits up to this long; each further attempt doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest a reconnect waits.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long one connection attempt (TCP and WebSocket handshakes) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server is sampled and progress is checked. The kernel counts CPU time in
/// 10 ms ticks (user and system apart), so the CPU percent of one such 100 ms window is off by
/// up to ±20 points; the peak CPU is therefore taken over a sliding window of `CPU_WINDOW`
/// ticks (1 s, good to about ±2 points).
const TICK: Duration = Duration::from_millis(100);
/// Samples in the sliding window the peak CPU percent is computed over.
const CPU_WINDOW: usize = 10;
/// Publishers retry messages the server refused (`overloaded`, `internal`) this often.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// After the recovery: how long publishers get to have every message acknowledged and
/// subscribers to receive them, before loss is counted.
const DRAIN: Duration = Duration::from_secs(10);
/// The ref of every join, to tell its reply from the publishers' numbered ones.
const JOIN_REF: &str = "join";

#[derive(Args)]
pub struct Options {
    /// Subscribing sockets, spread round robin over the rooms.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Rooms; each has one publishing socket besides its subscribers.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Messages per second each room's publisher sends.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds of publishing after every socket joined, before the restart is asked for.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Write `ready` to this file when the server may be killed (`storm: ready` goes to
    /// stderr either way).
    #[arg(long, value_name = "PATH")]
    signal_file: Option<PathBuf>,
    /// Read the server's pid from this file at every sample, so CPU and memory follow the
    /// restarted server (until it holds a pid, the first `--server-pid` is sampled).
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Seconds to wait, after saying ready, for the connections to drop.
    #[arg(long, default_value_t = 60)]
    restart_timeout: u64,
    /// Seconds after the first lost connection to give up and report what is still missing.
    #[arg(long, default_value_t = 120)]
    recover_timeout: u64,
    /// Sockets connecting at once while the rooms fill (before the storm).
    #[arg(long, default_value_t = 64)]
    connect_window: usize,
}

/// What every socket's task and the run's clock share.
struct Storm {
    rooms: Vec<Room>,
    /// Per subscriber: how many of its room's messages it has with no hole (loadgen seqs
    /// `0..n`).
    progress: Vec<AtomicU64>,
    /// Sockets whose join is acknowledged on their current connection.
    joined: AtomicUsize,
    /// Connections lost.
    disconnects: AtomicU64,
    /// Connection attempts after a connection was lost.
    attempts: AtomicU64,
    /// Set once the load generator said ready: from then on a lost connection is the storm.
    armed: AtomicBool,
    /// The first lost connection after that: the storm begins.
    first_loss: OnceLock<Instant>,
    /// The first join acknowledged after it: the server is back.
    first_rejoin: OnceLock<Instant>,
    /// How long reconnecting took, socket by socket.
    rejoin_times: Mutex<RejoinTimes>,
    /// Why the latest connection attempt that failed did, to explain a run that cannot start.
    last_failure: Mutex<Option<String>>,
    /// Publishers create new messages while set.
    publishing: AtomicBool,
}

/// One room: its channel and what its publisher sent and had acknowledged.
struct Room {
    channel: String,
    /// Messages the publisher created: loadgen seqs `0..created`.
    created: AtomicU64,
    /// Loadgen seqs the server acknowledged.
    acknowledged: Mutex<BTreeSet<u64>>,
}

/// Latencies of the reconnects, µs.
struct RejoinTimes {
    /// From a socket's lost connection to its join acknowledged on a new one.
    total: Histogram<u64>,
    /// TCP and WebSocket handshakes of the attempt that worked (a dropped SYN costs 1 s).
    dial: Histogram<u64>,
    /// From the join sent to its reply (the server finding where to resume).
    reply: Histogram<u64>,
}

impl Storm {
    fn acknowledged(&self, room: usize) -> usize {
        self.rooms[room].acknowledged.lock().unwrap().len()
    }
}

/// Why a connection's read loop ended.
enum End {
    /// The run is over.
    Stopped,
    /// The connection broke (the server went away).
    Lost,
    /// The server refused the join; the socket tries again after a pause.
    Refused,
}

/// One socket's connection, however often it is lost and opened again.
struct Link {
    url: String,
    backoff: Backoff,
    /// A connection was lost: every dial from now on is a reconnect attempt.
    reconnecting: bool,
    /// The join on the current connection was acknowledged.
    joined: bool,
    /// When the connection was lost, until the socket is joined again.
    lost_at: Option<Instant>,
    /// When the current connection's join was sent, and how long the dial before it took.
    join_sent: Option<(Instant, Duration)>,
}

impl Link {
    fn new(url: String, seed: u64) -> Self {
        Self {
            url,
            backoff: Backoff::new(FIRST_DELAY, MAX_DELAY, seed),
            reconnecting: false,
            joined: false,
            lost_at: None,
            join_sent: None,
        }
    }

    /// Connects and sends `join`; `None` when either failed.
    async fn open(&mut self, storm: &Storm, join: String) -> Option<Socket> {
        if self.reconnecting {
            storm.attempts.fetch_add(1, Relaxed);
        }
        let began = Instant::now();
        let mut socket = match dial_within(&self.url, DIAL_TIMEOUT).await {
            Ok(socket) => socket,
            Err(err) => {
                *storm.last_failure.lock().unwrap() = Some(err);
                return None;
            }
        };
        let dialled = began.elapsed();
        socket.send(Message::text(join)).await.ok()?;
        self.join_sent = Some((Instant::now(), dialled));
        Some(socket)
    }

    /// The server acknowledged the join.
    fn joined(&mut self, storm: &Storm) {
        self.joined = true;
        self.backoff.reset();
        storm.joined.fetch_add(1, Relaxed);
        if let (Some(lost_at), Some((sent, dialled))) = (self.lost_at.take(), self.join_sent) {
            if storm.first_loss.get().is_some() {
                storm.first_rejoin.get_or_init(Instant::now);
            }
            let mut times = storm.rejoin_times.lock().unwrap();
            let _ = times.total.record(micros(lost_at.elapsed()));
            let _ = times.dial.record(micros(dialled));
            let _ = times.reply.record(micros(sent.elapsed()));
        }
    }

    /// The connection ended; `lost` when it broke rather than being closed by the run.
    fn ended(&mut self, storm: &Storm, lost: bool) {
        if std::mem::take(&mut self.joined) {
            storm.joined.fetch_sub(1, Relaxed);
        }
        if lost {
            self.reconnecting = true;
            self.lost_at.get_or_insert_with(Instant::now);
            storm.disconnects.fetch_add(1, Relaxed);
            if storm.armed.load(Relaxed) {
                storm.first_loss.get_or_init(Instant::now);
            }
        }
    }

    /// Waits the backoff before the next attempt; `true` when the run stopped meanwhile.
    async fn pause(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => *stop.borrow(),
            _ = stop.changed() => true,
        }
    }
}

/// What went wrong for one subscriber, or several added up.
#[derive(Default)]
struct Tally {
    duplicates: u64,
    out_of_order: u64,
    gaps: u64,
    /// Messages the `gap` frames said are gone.
    gap_messages: u64,
    join_refusals: u64,
    errors: u64,
    unreadable: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.gaps += other.gaps;
        self.gap_messages += other.gap_messages;
        self.join_refusals += other.join_refusals;
        self.errors += other.errors;
        self.unreadable += other.unreadable;
    }
}

/// One subscriber's state across its connections.
#[derive(Default)]
struct Subscriber {
    /// Epoch and seq of the last stored message seen: where a rejoin resumes.
    resume: Option<(String, u64)>,
    received: Received,
    tally: Tally,
}

impl Subscriber {
    fn join_frame(&self, channel: &str, rejoining: bool) -> String {
        let mut options = json!({ "channel": channel, "ref": JOIN_REF });
        let payload = match &self.resume {
            Some((epoch, seq)) => {
                options["since"] = json!({ "epoch": epoch, "seq": seq });
                json!({})
            }
            // Nothing stored seen yet: the channel's latest messages stand in for a resume.
            None => json!({ "history": rejoining }),
        };
        json!({ "action": "join", "options": options, "payload": payload }).to_string()
    }

    /// A stored message, delivered live, replayed by a resume or listed in a `history` frame.
    fn deliver(&mut self, options: &Map<String, Value>, payload: &Value) {
        let seq = options.get("seq").and_then(Value::as_u64);
        if let (Some(seq), Some(epoch)) = (seq, options.get("epoch").and_then(Value::as_str)) {
            match &mut self.resume {
                Some((last_epoch, last)) if last_epoch == epoch => *last = (*last).max(seq),
                _ => self.resume = Some((epoch.to_string(), seq)),
            }
        }
        let Some(stamp) = payload.get("s").and_then(Value::as_u64) else {
            return;
        };
        match self.received.note(stamp) {
            Arrival::InOrder => {}
            Arrival::OutOfOrder => self.tally.out_of_order += 1,
            Arrival::Duplicate => self.tally.duplicates += 1,
        }
    }

    fn gap(&mut self, payload: &Value) {
        self.tally.gaps += 1;
        let bound = |key| payload.get(key).and_then(Value::as_u64);
        if let (Some(from), Some(to)) = (bound("from"), bound("to")) {
            self.tally.gap_messages += (to + 1).saturating_sub(from);
        }
    }

    /// Handles one frame; `Some` when it ends the connection.
    fn read(&mut self, frame: Frame, link: &mut Link, storm: &Storm) -> Option<End> {
        match frame.action {
            Action::Reply if is_join_reply(&frame) => {
                if frame.error_code().is_some() {
                    self.tally.join_refusals += 1;
                    return Some(End::Refused);
                }
                link.joined(storm);
            }
            Action::Message | Action::Event => self.deliver(&frame.options, &frame.payload),
            Action::History => {
                for entry in frame.payload["history"].as_array().into_iter().flatten() {
                    if let Some(options) = entry["options"].as_object() {
                        self.deliver(options, &entry["payload"]);
                    }
                }
            }
            Action::Gap => self.gap(&frame.payload),
            Action::Error => self.tally.errors += 1,
            _ => {}
        }
        None
    }
}

fn is_join_reply(frame: &Frame) -> bool {
    frame.reference().and_then(Value::as_str) == Some(JOIN_REF)
}

/// The next message of the connection, or never while there is none.
async fn next_message(
    socket: &mut Option<Socket>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

async fn subscribe(
    storm: Arc<Storm>,
    index: usize,
    room: usize,
    url: String,
    mut stop: watch::Receiver<bool>,
    gate: Arc<Semaphore>,
) -> Subscriber {
    // The rooms fill a window of sockets at a time: each holds a permit until it is joined.
    let mut permit = gate.acquire_owned().await.ok();
    let mut me = Subscriber::default();
    let mut link = Link::new(url, index as u64);
    let channel = storm.rooms[room].channel.clone();
    while !*stop.borrow() {
        let join = me.join_frame(&channel, link.reconnecting);
        if let Some(mut socket) = link.open(&storm, join).await {
            let end = loop {
                let message = tokio::select! {
                    message = socket.next() => message,
                    _ = stop.changed() => break End::Stopped,
                };
                let frame = match text_frame(message) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        me.tally.unreadable += 1;
                        continue;
                    }
                    Err(true) => break End::Lost,
                    Err(false) => continue,
                };
                if let Some(end) = me.read(frame, &mut link, &storm) {
                    break end;
                }
                if link.joined {
                    permit = None;
                }
                storm.progress[index].store(me.received.through(), Relaxed);
            };
            link.ended(&storm, matches!(end, End::Lost));
            if matches!(end, End::Stopped) {
                break;
            }
        }
        if link.pause(&mut stop).await {
            break;
        }
    }
    drop(permit);
    me
}

/// What one publisher did.
#[derive(Default)]
struct Published {
    /// Messages sent again on a new connection because they were not acknowledged.
    resent: u64,
    /// Refusals (`overloaded`, `internal`), each retried.
    refused: u64,
}

/// A message the publisher created, until the server acknowledges it.
struct Pending {
    frame: String,
    sent: bool,
}

async fn publish(
    storm: Arc<Storm>,
    room: usize,
    url: String,
    interval: Duration,
    fill: String,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let mut link = Link::new(url, u64::MAX - room as u64);
    let mut socket: Option<Socket> = None;
    let mut reconnect_at = tokio::time::Instant::now();
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut refused: BTreeSet<u64> = BTreeSet::new();
    let mut done = Published::default();
    let mut ticker = tokio::time::interval(interval);
    // Messages due while the server was away are created when it is back: an open loop.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Retries go out one interval after the first refusal, not in a burst of the ticks missed
    // while nothing was refused.
    let mut retry = tokio::time::interval(RETRY_INTERVAL);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let this = &storm.rooms[room];
    let id_prefix = format!("s{}-{room}", std::process::id());
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {
                if !storm.publishing.load(Relaxed) {
                    continue;
                }
                let seq = this.created.load(Relaxed);
                let frame = format!(
                    r#"{{"action":"message","options":{{"channel":"{}","id":"{id_prefix}-{seq}","ref":{seq}}},"payload":{}}}"#,
                    this.channel,
                    stamped(seq, &fill),
                );
                let mut message = Pending { frame, sent: false };
                if let (true, Some(socket)) = (link.joined, socket.as_mut()) {
                    // A failed send shows up as a lost connection on the next read.
                    message.sent = socket.send(Message::text(message.frame.clone())).await.is_ok();
                }
                pending.insert(seq, message);
                this.created.store(seq + 1, Relaxed);
            }
            _ = retry.tick(), if link.joined && !refused.is_empty() => {
                if let Some(socket) = socket.as_mut() {
                    for seq in std::mem::take(&mut refused) {
                        if let Some(message) = pending.get(&seq) {
                            let _ = socket.send(Message::text(message.frame.clone())).await;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(reconnect_at), if socket.is_none() => {
                let join = json!({"action": "join", "options": {"channel": this.channel, "ref": JOIN_REF}, "payload": {}});
                socket = link.open(&storm, join.to_string()).await;
                if socket.is_none() {
                    reconnect_at = tokio::time::Instant::now() + link.backoff.next_delay();
                }
            }
            message = next_message(&mut socket) => {
                let frame = match text_frame(message) {
                    Ok(Some(frame)) => frame,
                    Ok(None) | Err(false) => continue,
                    Err(true) => {
                        link.ended(&storm, true);
                        socket = None;
                        reconnect_at = tokio::time::Instant::now() + link.backoff.next_delay();
                        continue;
                    }
                };
                if frame.action != Action::Reply {
                    continue;
                }
                if is_join_reply(&frame) {
                    if frame.error_code().is_some() {
                        link.ended(&storm, false);
                        socket = None;
                        reconnect_at = tokio::time::Instant::now() + link.backoff.next_delay();
                        continue;
                    }
                    link.joined(&storm);
                    refused.clear();
                    // Everything not acknowledged yet, oldest first, under its first id.
                    if let Some(socket) = socket.as_mut() {
                        for message in pending.values_mut() {
                            done.resent += u64::from(message.sent);
                            message.sent = socket.send(Message::text(message.frame.clone())).await.is_ok();
                        }
                    }
                    continue;
                }
                let Some(seq) = frame.reference().and_then(Value::as_u64) else {
                    continue;
                };
                if frame.error_code().is_some() {
                    done.refused += 1;
                    if refused.is_empty() {
                        retry.reset();
                    }
                    refused.insert(seq);
                } else if pending.remove(&seq).is_some() {
                    this.acknowledged.lock().unwrap().insert(seq);
                }
            }
        }
    }
    done
}

/// The server's CPU and memory every tick, following it across the restart.
struct Sampler {
    pid_file: Option<PathBuf>,
    fallback: Option<u32>,
    last: Option<(u32, ProcessSample)>,
    /// CPU used and wall time of the last `CPU_WINDOW` samples (across the restart: the time
    /// the server was down is in neither).
    window: VecDeque<(Duration, Duration)>,
}

/// One tick's server usage.
struct Usage {
    pid: u32,
    /// CPU used since the previous tick.
    cpu: Duration,
    /// Share of one core over the last `CPU_WINDOW` samples (about 1 s), in percent.
    cpu_percent: f64,
    rss_kib: u64,
}

impl Sampler {
    fn pid(&self) -> Option<u32> {
        self.pid_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| text.trim().parse().ok())
            .or(self.fallback)
    }

    fn tick(&mut self) -> Option<Usage> {
        let pid = self.pid()?;
        // None while the server is dead (a zombie has no RSS) or not started yet.
        let now = process_sample(pid)?;
        let previous = self.last.replace((pid, now));
        let (cpu, wall) = match previous {
            Some((same, before)) if same == pid => (
                now.cpu().saturating_sub(before.cpu()),
                now.at().duration_since(before.at()),
            ),
            // The restarted server: everything it used since it started (its start-up too),
            // over its age.
            Some(_) => (now.cpu(), process_age(pid)?.max(TICK)),
            None => (Duration::ZERO, Duration::ZERO),
        };
        if self.window.len() == CPU_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back((cpu, wall));
        let (window_cpu, window_wall) = self
            .window
            .iter()
            .fold((Duration::ZERO, Duration::ZERO), |(c, w), (cpu, wall)| {
                (c + *cpu, w + *wall)
            });
        Some(Usage {
            pid,
            cpu,
            cpu_percent: 100.0 * window_cpu.as_secs_f64() / window_wall.as_secs_f64().max(1e-3),
            rss_kib: now.rss_kib(),
        })
    }
}

/// The server's usage over the recovery.
#[derive(Default)]
struct Peaks {
    cpu_percent: f64,
    rss_kib: u64,
    cpu: Duration,
}

impl Peaks {
    fn add(&mut self, usage: &Usage) {
        self.cpu_percent = self.cpu_percent.max(usage.cpu_percent);
        self.rss_kib = self.rss_kib.max(usage.rss_kib);
        self.cpu += usage.cpu;
    }
}

fn seconds_between(from: Instant, to: Option<Instant>) -> Option<f64> {
    to.map(|to| round(to.duration_since(from).as_secs_f64()))
}

fn say_ready(signal_file: Option<&PathBuf>) -> Result<(), String> {
    eprintln!("storm: ready");
    if let Some(path) = signal_file {
        std::fs::write(path, "ready\n")
            .map_err(|e| format!("writing the signal file {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Waits until `count` sockets are joined, or fails saying how many made it.
async fn wait_joined(storm: &Storm, count: usize, what: &str) -> Result<(), String> {
    let limit = Duration::from_secs(60 + count as u64 / 100);
    let started = Instant::now();
    while storm.joined.load(Relaxed) < count {
        if started.elapsed() > limit {
            let failure = storm.last_failure.lock().unwrap().clone();
            return Err(format!(
                "only {} of {count} sockets joined within {limit:?} ({what}); last failure: {}",
                storm.joined.load(Relaxed),
                failure.as_deref().unwrap_or("none (see the server's log)")
            ));
        }
        tokio::time::sleep(TICK).await;
    }
    Ok(())
}

pub async fn run(run: &Run, options: Options) -> Result<Value, String> {
    if options.rooms == 0 || options.sockets == 0 || options.rate <= 0.0 {
        return Err("--sockets, --rooms and --rate must be above 0".into());
    }
    let total = options.sockets + options.rooms;
    let storm = Arc::new(Storm {
        rooms: (0..options.rooms)
            .map(|room| Room {
                channel: format!("storm-{}-{room}", std::process::id()),
                created: AtomicU64::new(0),
                acknowledged: Mutex::new(BTreeSet::new()),
            })
            .collect(),
        progress: (0..options.sockets).map(|_| AtomicU64::new(0)).collect(),
        joined: AtomicUsize::new(0),
        disconnects: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
        armed: AtomicBool::new(false),
        first_loss: OnceLock::new(),
        first_rejoin: OnceLock::new(),
        rejoin_times: Mutex::new(RejoinTimes {
            total: histogram(),
            dial: histogram(),
            reply: histogram(),
        }),
        last_failure: Mutex::new(None),
        publishing: AtomicBool::new(true),
    });
    let (stop_tx, stop) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(options.connect_window.max(1)));
    let subscribers: Vec<_> = (0..options.sockets)
        .map(|index| {
            tokio::spawn(subscribe(
                storm.clone(),
                index,
                index % options.rooms,
                run.url.clone(),
                stop.clone(),
                gate.clone(),
            ))
        })
        .collect();
    wait_joined(&storm, options.sockets, "subscribers").await?;
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let fill = filler(options.payload);
    let publishers: Vec<_> = (0..options.rooms)
        .map(|room| {
            tokio::spawn(publish(
                storm.clone(),
                room,
                run.url.clone(),
                interval,
                fill.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_joined(&storm, total, "publishers").await?;

    let mut sampler = Sampler {
        pid_file: options.pid_file.clone(),
        fallback: run.server_pids().first().copied(),
        last: None,
        window: VecDeque::with_capacity(CPU_WINDOW),
    };
    let warm_until = Instant::now() + Duration::from_secs(options.warmup);
    let mut before = None;
    let mut ticker = tokio::time::interval(TICK);
    while Instant::now() < warm_until {
        ticker.tick().await;
        before = sampler.tick().or(before);
    }
    storm.armed.store(true, Relaxed);
    say_ready(options.signal_file.as_ref())?;
    let ready_at = Instant::now();
    let restart_timeout = Duration::from_secs(options.restart_timeout);
    let recover_timeout = Duration::from_secs(options.recover_timeout);
    let mut peaks = Peaks::default();
    let mut last_pid = None;
    let mut all_back: Option<Instant> = None;
    let mut targets: Option<Vec<u64>> = None;
    let behind = |targets: &[u64]| {
        (0..options.sockets)
            .filter(|&index| storm.progress[index].load(Relaxed) < targets[index % options.rooms])
            .count()
    };
    let caught_up = loop {
        ticker.tick().await;
        let usage = sampler.tick();
        let Some(&lost_at) = storm.first_loss.get() else {
            if ready_at.elapsed() > restart_timeout {
                break None;
            }
            continue;
        };
        if let Some(usage) = &usage {
            peaks.add(usage);
            last_pid = Some(usage.pid);
        }
        if all_back.is_none() && storm.joined.load(Relaxed) == total {
            all_back = Some(Instant::now());
            // Caught up = holding every message created before the last socket was back.
            targets = Some(
                storm
                    .rooms
                    .iter()
                    .map(|r| r.created.load(Relaxed))
                    .collect(),
            );
        }
        if targets.as_deref().is_some_and(|t| behind(t) == 0) {
            break Some(Instant::now());
        }
        if lost_at.elapsed() > recover_timeout {
            break None;
        }
    };
    let still_disconnected = total - storm.joined.load(Relaxed);
    let still_behind = match (&targets, caught_up) {
        (_, Some(_)) => 0,
        (Some(targets), None) => behind(targets),
        (None, None) => {
            let created: Vec<u64> = storm
                .rooms
                .iter()
                .map(|r| r.created.load(Relaxed))
                .collect();
            behind(&created)
        }
    };

    // Stop creating, let the last messages be acknowledged and arrive, then count.
    storm.publishing.store(false, Relaxed);
    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until {
        let acknowledged: Vec<u64> = (0..options.rooms)
            .map(|room| storm.acknowledged(room) as u64)
            .collect();
        let settled = storm
            .rooms
            .iter()
            .zip(&acknowledged)
            .all(|(room, &acked)| room.created.load(Relaxed) == acked);
        if settled && behind(&acknowledged) == 0 {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let after = sampler.tick();
    let last_pid = last_pid.or(after.as_ref().map(|u| u.pid));
    // Read while the server still runs: its peak resident memory since it started.
    let restarted_peak_rss_kib = last_pid
        .filter(|_| storm.first_loss.get().is_some())
        .and_then(peak_rss_kib);
    // What was acknowledged before the stop: an acknowledgement arriving while the sockets
    // close is not one subscribers could still receive, so it must not count as lost.
    let acknowledged: Vec<BTreeSet<u64>> = storm
        .rooms
        .iter()
        .map(|room| room.acknowledged.lock().unwrap().clone())
        .collect();
    let _ = stop_tx.send(true);
    let mut published = Published::default();
    for publisher in publishers {
        let done = publisher.await.map_err(|e| e.to_string())?;
        published.resent += done.resent;
        published.refused += done.refused;
    }
    let mut tally = Tally::default();
    let (mut expected, mut received, mut lost, mut lossy) = (0u64, 0u64, 0u64, 0u64);
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let me = subscriber.await.map_err(|e| e.to_string())?;
        let acked = &acknowledged[index % options.rooms];
        let missing = acked.iter().filter(|&&seq| !me.received.has(seq)).count() as u64;
        expected += acked.len() as u64;
        received += me.received.count();
        lost += missing;
        lossy += u64::from(missing > 0);
        tally.add(&me.tally);
    }
    let created: u64 = storm.rooms.iter().map(|r| r.created.load(Relaxed)).sum();
    let acked: u64 = acknowledged.iter().map(|a| a.len() as u64).sum();
    let lost_at = storm.first_loss.get().copied();
    let rejoin_times = storm.rejoin_times.lock().unwrap();
    let since_loss = |to: Option<Instant>| lost_at.and_then(|from| seconds_between(from, to));
    Ok(json!({
        "scenario": "storm",
        "params": { "url": run.url, "sockets": options.sockets, "rooms": options.rooms,
                    "rate": options.rate, "payload": options.payload, "warmup_s": options.warmup,
                    "recover_timeout_s": options.recover_timeout },
        "connections": total,
        "restarted": lost_at.is_some(),
        "recovered": caught_up.is_some(),
        "published": created,
        "acknowledged": acked,
        "unacknowledged": created - acked,
        "resent": published.resent,
        "refused": published.refused,
        "recovery": {
            "disconnects": storm.disconnects.load(Relaxed),
            "reconnect_attempts": storm.attempts.load(Relaxed),
            "first_rejoin_s": since_loss(storm.first_rejoin.get().copied()),
            "all_reconnected_s": since_loss(all_back),
            "caught_up_s": since_loss(caught_up),
            "still_disconnected": still_disconnected,
            "still_behind": still_behind,
            "rejoin": latency(&rejoin_times.total),
            "rejoin_dial": latency(&rejoin_times.dial),
            "rejoin_reply": latency(&rejoin_times.reply),
        },
        "delivery": {
            "expected": expected,
            "received": received,
            "lost": lost,
            "subscribers_with_loss": lossy,
            "duplicates": tally.duplicates,
            "out_of_order": tally.out_of_order,
            "gaps": tally.gaps,
            "gap_messages": tally.gap_messages,
            "join_refusals": tally.join_refusals,
            "errors": tally.errors,
            "unreadable_frames": tally.unreadable,
        },
        "server": {
            "pid_before": before.as_ref().map(|u| u.pid),
            "pid_after": last_pid,
            "rss_before_mib": before.as_ref().map(|u| mib(u.rss_kib)),
            // Over a sliding 1 s window.
            "recovery_peak_cpu_percent": lost_at.map(|_| round(peaks.cpu_percent)),
            // The highest RSS seen in the samples, every 100 ms.
            "recovery_peak_rss_mib": lost_at.map(|_| mib(peaks.rss_kib)),
            // The restarted server's true peak RSS (VmHWM), from its start to the end.
            "restarted_peak_rss_mib": restarted_peak_rss_kib.map(mib),
            "recovery_cpu_seconds": lost_at.map(|_| round(peaks.cpu.as_secs_f64())),
            "rss_after_mib": after.as_ref().map(|u| mib(u.rss_kib)),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_resumes_from_the_last_stored_message_it_saw() {
        let mut me = Subscriber::default();
        assert_eq!(
            serde_json::from_str::<Value>(&me.join_frame("c", true)).unwrap()["payload"],
            json!({ "history": true })
        );
        let options = json!({ "channel": "c", "seq": 4, "epoch": "e1" });
        me.deliver(options.as_object().unwrap(), &json!({ "s": 0 }));
        let frame: Value = serde_json::from_str(&me.join_frame("c", true)).unwrap();
        assert_eq!(
            frame["options"]["since"],
            json!({ "epoch": "e1", "seq": 4 })
        );
        assert_eq!(frame["options"]["ref"], JOIN_REF);
    }

    #[test]
    fn a_gap_counts_the_messages_it_says_are_gone() {
        let mut me = Subscriber::default();
        me.gap(&json!({ "epoch": "e", "from": 3, "to": 9 }));
        assert_eq!((me.tally.gaps, me.tally.gap_messages), (1, 7));
    }
}
