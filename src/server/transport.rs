//! The WebSocket transport of `/rt/{connection}`: upgrade, then one [`Connection`] per socket
//! that feeds the socket's frames to its hub session and writes out its outbox.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::{HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use futures_util::lock::Mutex as AsyncMutex;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use switchboard_hub::{
    EngineMetrics, GateDecision, Outbound, OutboxReceiver, Pinger, Session, Wire, WireSend,
};
use switchboard_protocol::CloseCode;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::plain::PlainSocket;
use super::AppState;

/// Frames written before one flush, so a burst costs one syscall rather than one per frame.
const MAX_FRAMES_PER_FLUSH: usize = 64;
/// Bytes of frames gathered before they must be written out.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// How long a close frame may take to go out before the connection is simply dropped. Long
/// enough for a merely slow client to read its 1013.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// `?token=`, for clients that cannot set the protocol header.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Why an upgrade was refused before it began; logged (never with the token) and answered
/// with a JSON body.
fn refuse(
    state: &AppState,
    ip: IpAddr,
    status: StatusCode,
    code: &str,
    message: String,
) -> Response {
    state.hub.metrics().refused_as(code);
    tracing::info!(%ip, code, reason = %message, "refused a socket");
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Browser pages may open sockets from the server's own origin and from the configured ones;
/// clients that send no Origin (native apps, servers) are not browsers and are let through.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// One open socket counted against a limit per key (an IP address, a user); released when
/// dropped.
struct Slot<K: Eq + Hash + Clone> {
    key: K,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Slot<K> {
    fn take(counts: &Arc<Mutex<HashMap<K, usize>>>, key: K, limit: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let open = map.entry(key.clone()).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(Self {
            key,
            counts: counts.clone(),
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = map.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The address a socket comes from: the peer, or — when the peer is a trusted proxy (a load
/// balancer) — the nearest address in `X-Forwarded-For` that is not one of the trusted proxies.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
}

/// `GET /rt/{connection}`: checks origin, per-IP limit and token, then upgrades.
pub async fn upgrade(
    State(state): State<AppState>,
    Path(_connection): Path<String>,
    Query(query): Query<TokenQuery>,
    ConnectInfo(peer): ConnectInfo<super::tls::Peer>,
    headers: HeaderMap,
    version: axum::http::Version,
    ws: WebSocketUpgrade,
) -> Response {
    let client_ip = client_ip(peer.ip(), &headers, &state.config.trusted_proxies);
    if !origin_allowed(&headers, &state.config.allowed_origins) {
        let origin = headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return refuse(
            &state,
            client_ip,
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("pages from {origin} may not open sockets here; add it to allowed_origins (SWITCHBOARD_ALLOWED_ORIGINS)"),
        );
    }
    let Some(ip_slot) = Slot::take(&state.per_ip, client_ip, state.config.connections_per_ip)
    else {
        return refuse(
            &state,
            client_ip,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "{client_ip} already has {} sockets open, the most allowed (connections_per_ip)",
                state.config.connections_per_ip
            ),
        );
    };
    // Xano's SDK passes its token as the only requested subprotocol; the browser demands that
    // the server echo it back.
    let offered = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    let token = offered.clone().or(query.token);
    let identity = match state.verifier.identify(token.as_deref()).await {
        Ok(identity) => identity,
        Err(err) => {
            tracing::info!(ip = %client_ip, code = err.code(), reason = %err, "refused a socket");
            state.hub.metrics().refused_as(err.code());
            return err.into_response();
        }
    };
    if let Some(gates) = &state.gates {
        if let Some(GateDecision::Refuse(reason)) = gates.connect(&identity, client_ip).await {
            return refuse(
                &state,
                client_ip,
                StatusCode::FORBIDDEN,
                "forbidden",
                reason,
            );
        }
    }
    let user = identity
        .extras
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|_| identity.authenticated)
        .map(str::to_string);
    let user_slot = match user {
        Some(user) => match Slot::take(&state.per_user, user.clone(), state.config.sockets_per_user) {
            Some(slot) => Some(slot),
            None => {
                return refuse(
                    &state,
                    client_ip,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_sockets",
                    format!(
                        "user {user:?} already has {} sockets open, the most allowed (sockets_per_user)",
                        state.config.sockets_per_user
                    ),
                )
            }
        },
        None => None,
    };
    let config = &state.config;
    let ws = ws
        .read_buffer_size(config.read_buffer_bytes)
        // Frames are gathered up to this size and written with one syscall per batch (0 would
        // mean a syscall per frame).
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes)
        .protocols(offered);
    // Frames go below the WebSocket layer only when the socket is the whole connection: an
    // HTTP/1.1 upgrade (a WebSocket over HTTP/2 would be one stream of several; the server
    // speaks HTTP/1 only today).
    let plain = peer
        .plain
        .filter(|_| version == axum::http::Version::HTTP_11);
    let tracker = state.connections.clone();
    let user = user_slot.as_ref().map(|slot| slot.key.clone());
    // Only what the socket needs is moved into its task: it lives as long as the socket, and
    // every byte of it is paid once per connection.
    let hub = state.hub.clone();
    let (ping_interval, write_timeout) = (config.ping_interval, config.write_timeout);
    drop(state);
    ws.on_upgrade(move |socket| {
        // Everything is set up here, before the socket's task begins, and the task is one
        // future: each async layer between the upgrade and the socket's loops would keep its
        // own copy of the socket and the connection for as long as the socket lives.
        let task = match hub.connect(identity) {
            Ok((session, outbox)) => {
                // Every line this socket logs carries who it is (never its token).
                let span = tracing::info_span!(
                    "socket",
                    socket = %session.id(),
                    ip = %client_ip,
                    user = user.as_deref().unwrap_or(""),
                );
                let connection = Connection {
                    session,
                    outbox,
                    timing: Timing {
                        ping_interval,
                        write_timeout,
                        metrics: hub.metrics().clone(),
                    },
                    started: Instant::now(),
                    _slots: (ip_slot, user_slot),
                };
                let (sink, stream) = socket.split();
                Either::Left(connection.run(sink, stream, plain).instrument(span))
            }
            Err(_) => Either::Right(refuse_during_shutdown(socket)),
        };
        tracker.track_future(task)
    })
}

async fn refuse_during_shutdown(mut socket: WebSocket) {
    let close = close_frame(CloseCode::ServiceRestart);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
}

fn close_frame(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(code.reason()),
    }))
}

/// How the reading half of a connection ended.
enum ReadEnd {
    /// The connection broke: nothing more to send.
    Gone,
    /// The client sent a close frame: it gets one back (RFC 6455 §5.5.1), then the
    /// connection ends.
    ClosedByClient,
    /// The socket must be closed with this code.
    Close(CloseCode),
}

/// One open socket.
struct Connection {
    session: Session,
    outbox: OutboxReceiver,
    timing: Timing,
    started: Instant,
    /// This socket's places in the per-IP and per-user limits, given back when it ends.
    _slots: (Slot<IpAddr>, Option<Slot<String>>),
}

impl Connection {
    /// Serves the socket, given as its two halves (split before the task starts, so the
    /// task never holds the whole socket as well).
    async fn run(
        mut self,
        sink: SplitSink<WebSocket, Message>,
        stream: SplitStream<WebSocket>,
        plain: Option<PlainSocket>,
    ) {
        tracing::debug!("socket opened");
        let Connection {
            session,
            outbox,
            timing,
            started,
            _slots,
        } = &mut self;
        let wire = Arc::new(SinkWire {
            sink: AsyncMutex::new(sink),
            plain,
        });
        outbox.attach_wire(wire.clone());
        // One write loop for the whole life of the socket: when the reading half ends with a
        // close order, the same loop writes the close frame.
        let ended = {
            let mut write = std::pin::pin!(write_loop(&wire, outbox, timing));
            let ended = {
                let read = std::pin::pin!(read_loop(stream, session, timing.ping_interval));
                Halves::new(read, write.as_mut()).await
            };
            if let Some(ReadEnd::Close(code)) = &ended {
                session.close(*code);
                write.await;
            }
            ended
        };
        if let Some(ReadEnd::ClosedByClient) = ended {
            wire.stop_direct();
            // The close frame that answers the client's was queued when its close was read;
            // closing the sink sends it.
            let close = async { wire.sink.lock().await.close().await };
            let _ = Box::pin(tokio::time::timeout(timing.write_timeout, close)).await;
        }
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "socket closed");
    }
}

/// The socket's writing half, shared by its writer and the fan-outs that write to it while
/// the writer is idle ([`Wire`]). The writer holds the lock for as long as a batch takes,
/// waits included; a fan-out only ever tries it and writes without waiting.
struct SinkWire {
    sink: AsyncMutex<SplitSink<WebSocket, Message>>,
    /// On plain TCP, the way to write a frame's header and the message's shared bytes to the
    /// socket itself, below the WebSocket layers (`plain.rs`).
    plain: Option<PlainSocket>,
}

impl SinkWire {
    /// No frame goes to the socket below the WebSocket layer any more: it is closing.
    fn stop_direct(&self) {
        if let Some(plain) = &self.plain {
            plain.close();
        }
    }
}

impl Wire for SinkWire {
    fn try_send(&self, frame: &bytes::Bytes) -> WireSend {
        let Some(mut sink) = self.sink.try_lock() else {
            return WireSend::Refused;
        };
        if let Some(plain) = &self.plain {
            return plain.try_send_text(frame);
        }
        // Nothing here waits: a part that cannot go out now is the writer's to flush, and the
        // writer polls the socket with its own waker then. Outside tokio's budget of I/O per
        // task poll: a fan-out writes to a whole room in one poll, and a write refused for
        // the budget would only hand the frame to the socket's task, at a greater cost.
        let mut cx = Context::from_waker(Waker::noop());
        let attempt = std::future::poll_fn(|cx| Poll::Ready(send_now(&mut sink, frame, cx)));
        match std::pin::pin!(tokio::task::unconstrained(attempt)).poll(&mut cx) {
            Poll::Ready(sent) => sent,
            Poll::Pending => WireSend::Unflushed,
        }
    }
}

/// Puts `frame` on the socket as far as it goes without waiting.
fn send_now(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: &bytes::Bytes,
    cx: &mut Context<'_>,
) -> WireSend {
    if !matches!(sink.poll_ready_unpin(cx), Poll::Ready(Ok(()))) {
        return WireSend::Refused;
    }
    let Ok(message) = text_message(frame.clone()) else {
        return WireSend::Refused;
    };
    if sink.start_send_unpin(message).is_err() {
        return WireSend::Unflushed;
    }
    match sink.poll_flush_unpin(cx) {
        Poll::Ready(Ok(())) => WireSend::Sent,
        // The writer's flush finds out what became of it: a write error again (ending the
        // socket), or nothing to do on a socket the client is closing, whose reading half ends
        // it (frames to a closing socket are lost whichever way they go).
        Poll::Ready(Err(_)) | Poll::Pending => WireSend::Unflushed,
    }
}

/// The socket's reading and writing halves, run in its one task; resolves when either ends
/// (`Some` with how the reading half ended, `None` when the writing half did).
///
/// The reading half is polled only when something it waits on (the socket becoming readable,
/// an operator's order, the ping timer) woke it, not each time a frame is queued for writing:
/// a subscriber's task wakes once per frame queued for it (frames a fan-out writes itself wake
/// nothing), and polling the reading half on each of those wake-ups cost as much as a tenth of
/// the delivery.
struct Halves<'a, R, W> {
    read: Pin<&'a mut R>,
    write: Pin<&'a mut W>,
    woken: Arc<ReadWoken>,
    /// The waker the reading half is polled with: it marks the half as woken, then wakes the
    /// task.
    read_waker: Waker,
}

/// Whether the reading half was woken since it was last polled, and the task to wake.
#[derive(Default)]
struct ReadWoken {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWoken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<'a, R, W> Halves<'a, R, W> {
    fn new(read: Pin<&'a mut R>, write: Pin<&'a mut W>) -> Self {
        let woken = Arc::new(ReadWoken::default());
        // The first poll polls both.
        woken.woken.store(true, Ordering::Relaxed);
        Self {
            read,
            write,
            read_waker: Waker::from(woken.clone()),
            woken,
        }
    }
}

impl<R: Future<Output = ReadEnd>, W: Future<Output = ()>> Future for Halves<'_, R, W> {
    type Output = Option<ReadEnd>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.woken.woken.swap(false, Ordering::AcqRel) {
            // The task is registered before the half is polled, so a wake-up during the poll
            // is not lost.
            this.woken.task.register(cx.waker());
            let mut read_cx = Context::from_waker(&this.read_waker);
            if let Poll::Ready(end) = this.read.as_mut().poll(&mut read_cx) {
                return Poll::Ready(Some(end));
            }
        }
        this.write.as_mut().poll(cx).map(|()| None)
    }
}

/// Feeds each text frame to the session until the client goes away or must be cut off, and
/// pings the client on schedule, also while a frame is being handled (a client silent for two
/// ping intervals is gone).
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    session: &mut Session,
    ping_interval: Duration,
) -> ReadEnd {
    // Operators' orders (remove from a channel) are carried out between frames.
    let mut orders = session.take_orders();
    let pings = Pings {
        pinger: session.pinger(),
        interval: ping_interval,
    };
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            order = next_order(&mut orders) => {
                session.obey(order);
                continue;
            }
            _ = ping.tick() => match pings.due(last_heard) {
                Some(end) => return end,
                None => continue,
            }
        };
        let Some(message) = message else {
            break;
        };
        last_heard = Instant::now();
        let text = match &message {
            Ok(Message::Text(text)) => text.as_str(),
            Ok(Message::Binary(bytes)) => std::str::from_utf8(bytes).unwrap_or_default(),
            Ok(Message::Close(_)) => return ReadEnd::ClosedByClient,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Err(_) => {
                let too_big = message
                    .err()
                    .and_then(|err| err.into_inner().downcast::<tungstenite::Error>().ok())
                    .is_some_and(|err| matches!(*err, tungstenite::Error::Capacity(_)));
                return if too_big {
                    ReadEnd::Close(CloseCode::MessageTooBig)
                } else {
                    ReadEnd::Gone
                };
            }
        };
        // Boxed: handling a frame takes a kilobyte of state that an idle socket's task would
        // otherwise carry all its life. Pings go on meanwhile (a gate or a store read may take
        // a while), but nothing is read, so the client's answers wait in the socket: it is
        // judged silent only once reading resumes.
        let mut handling = Box::pin(session.handle_text(text));
        let mut pinged = false;
        loop {
            tokio::select! {
                biased;
                () = &mut handling => break,
                _ = ping.tick() => {
                    pings.pinger.ping();
                    pinged = true;
                }
            }
        }
        if pinged {
            // The answers may be waiting unread: the next judgement comes a full interval
            // after reading resumes.
            ping.reset();
        }
    }
    ReadEnd::Gone
}

/// The ping schedule's side of the reading half.
struct Pings {
    pinger: Pinger,
    interval: Duration,
}

impl Pings {
    /// At a tick: the end of a client silent for two intervals, or a ping asked of the writer.
    fn due(&self, last_heard: Instant) -> Option<ReadEnd> {
        let silent = last_heard.elapsed();
        if silent > self.interval * 2 {
            tracing::info!(
                rule = "ping_interval_ms",
                silent_seconds = silent.as_secs_f64(),
                "dropped a socket that answered no pings",
            );
            return Some(ReadEnd::Gone);
        }
        // The writing half sends it, ahead of what waits.
        self.pinger.ping();
        None
    }
}

/// How often to ping, how long any write may take, and where close codes are counted.
struct Timing {
    ping_interval: Duration,
    /// Longest a write may take before the client counts as gone.
    write_timeout: Duration,
    metrics: EngineMetrics,
}

/// The next order for the socket; never resolves when there can be none.
async fn next_order(orders: &mut Option<switchboard_hub::Orders>) -> switchboard_hub::Order {
    match orders {
        Some(orders) => orders.next().await,
        None => std::future::pending().await,
    }
}

/// Writes queued frames (batched into one flush), finishes what a fan-out left half-written,
/// and writes the pings the reading half asks for; returns once the socket was closed or
/// stopped taking writes for `write_timeout`. It waits on the outbox alone, and while it waits
/// with nothing in hand, fan-outs write to the socket themselves.
async fn write_loop(wire: &SinkWire, outbox: &mut OutboxReceiver, timing: &Timing) {
    let Timing {
        write_timeout,
        metrics,
        ..
    } = timing;
    let write_timeout = *write_timeout;
    let close_signal = outbox.close_signal();
    loop {
        let first = match outbox.next().await {
            Outbound::Frame(frame) => Some(frame),
            Outbound::Flush => None,
            Outbound::Ping => {
                // Boxed, like every rare path here: the loop's state is paid by every socket.
                let ping = async {
                    let mut sink = wire.sink.lock().await;
                    sink.send(Message::Ping(Default::default())).await
                };
                let sent = Box::pin(tokio::time::timeout(write_timeout, ping)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
                continue;
            }
            Outbound::Close(code) => {
                closing(metrics, code);
                Box::pin(send_close(wire, code, write_timeout)).await;
                return;
            }
        };
        let written = {
            let batch = std::pin::pin!(write_batch(wire, outbox, first));
            write_or_give_up(batch, &close_signal, write_timeout).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(None) => {
                tracing::info!(
                    rule = "write_timeout_ms",
                    seconds = write_timeout.as_secs_f64(),
                    "dropped a socket that took no writes",
                );
                return;
            }
            Err(Some(code)) => {
                closing(metrics, code);
                Box::pin(send_close(wire, code, write_timeout)).await;
                return;
            }
        }
    }
}

/// Counts a close code sent, and logs the ones a rule decided (not shutdowns or echoes).
fn closing(metrics: &EngineMetrics, code: CloseCode) {
    metrics.closed(code.code());
    match code {
        CloseCode::ServiceRestart => tracing::debug!(code = code.code(), "closing the socket"),
        _ => tracing::info!(
            code = code.code(),
            reason = code.reason(),
            "closing the socket"
        ),
    }
}

/// Sends a close frame, giving up after a while (the client may have stopped reading).
async fn send_close(wire: &SinkWire, code: CloseCode, write_timeout: Duration) {
    let frame = close_frame(code);
    let send = async {
        let mut sink = wire.sink.lock().await;
        wire.stop_direct();
        sink.send(frame).await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT.min(write_timeout), send).await;
}

/// Carries out a write. Nearly every write finishes at once, without a timer; one that has to
/// wait (a client that stopped reading) gets the write deadline and gives way to a close order
/// (queue full, shutdown), so none waits forever. `Err(None)`: the deadline passed;
/// `Err(Some(code))`: a close was ordered meanwhile.
async fn write_or_give_up(
    mut batch: Pin<&mut impl Future<Output = Result<(), axum::Error>>>,
    close_signal: &switchboard_hub::CloseSignal,
    write_timeout: Duration,
) -> Result<Result<(), axum::Error>, Option<CloseCode>> {
    let first = std::future::poll_fn(|cx| Poll::Ready(batch.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first {
        return Ok(result);
    }
    Box::pin(async {
        tokio::select! {
            biased;
            code = close_signal.requested() => Err(Some(code)),
            result = tokio::time::timeout(write_timeout, batch) => result.map_err(|_| None),
        }
    })
    .await
}

/// Writes `first` (if any; none when finishing a fan-out's write) and what else waits, up to a
/// batch, then flushes.
async fn write_batch(
    wire: &SinkWire,
    outbox: &mut OutboxReceiver,
    first: Option<bytes::Bytes>,
) -> Result<(), axum::Error> {
    let mut sink = wire.sink.lock().await;
    if let Some(first) = first {
        sink.feed(text_message(first)?).await?;
    }
    for _ in 1..MAX_FRAMES_PER_FLUSH {
        match outbox.try_next() {
            Some(frame) => sink.feed(text_message(frame)?).await?,
            None => break,
        }
    }
    sink.flush().await
}

fn text_message(frame: bytes::Bytes) -> Result<Message, axum::Error> {
    Utf8Bytes::try_from(frame)
        .map(Message::Text)
        .map_err(axum::Error::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let balancer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = [balancer];
        let headers = forwarded("203.0.113.7, 198.51.100.1, 10.0.0.2");
        // The nearest hop that is not a trusted proxy: what the balancer saw.
        assert_eq!(
            client_ip(balancer, &headers, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        // From anyone else the header is the client's own claim and is ignored.
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        // A trusted proxy without the header (a health check) is itself the client.
        assert_eq!(client_ip(balancer, &HeaderMap::new(), &trusted), balancer);
    }
}
