//! The channel client in the browser, on `web_sys::WebSocket`.
//!
//! One socket per open channel. Sends carry an `options.ref`; their outcome arrives as a
//! `reply`. Sends made before the channel is joined wait in a queue and go out, in order, right
//! after the (re)join succeeds. A send that was on the wire when the socket dropped is queued
//! again, since its outcome is unknown; it keeps its `options.id`, so the server stores and
//! delivers it once even if the first attempt had arrived.
//!
//! Stored messages to the channel are also written to `localStorage` (per channel) until the
//! server's ok, so a page reloaded — or closed and opened again — sends what was still waiting
//! under the same ids. Other tabs of the same room share the list: each writes back only its
//! own entries, and a message both send is still stored once.

use leptos::prelude::*;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;
use switchboard_protocol::{Action, ErrorCode, ErrorPayload, Frame};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use super::{ChannelOptions, ConnectionStatus, OnHistory, OnOutcome, Refers, Signals, Unsent};

/// First reconnect delay; doubled on each failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(300);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The realtime endpoint of the page's own server.
const ENDPOINT: &str = "/rt/app";
/// Where a channel's unsent stored messages are kept (followed by the channel's name).
const UNSENT_KEY: &str = "switchboard.unsent.";

/// An event listener attached to a socket: the event's name and the callback.
type Listener = (&'static str, Closure<dyn FnMut(Event)>);

/// The browser connection of one channel.
pub struct Sender {
    channel: String,
    options: ChannelOptions,
    signals: Signals,
    listener: Rc<dyn Fn(&Frame)>,
    state: RefCell<State>,
    this: Weak<Sender>,
}

#[derive(Default)]
struct State {
    socket: Option<WebSocket>,
    /// Event listeners of the current socket, kept alive while attached.
    handlers: Vec<Listener>,
    joined: bool,
    join_ref: Option<String>,
    /// Sends waiting for a joined socket, oldest first.
    queue: VecDeque<Outgoing>,
    /// Sends on the wire, waiting for their reply.
    in_flight: HashMap<String, Outgoing>,
    next_ref: u64,
    failures: u32,
    closed: bool,
    /// Epoch and seq of the latest stored message seen: where a rejoin resumes from.
    position: Option<(String, u64)>,
    /// Stored messages to the channel not acknowledged yet (what `localStorage` keeps).
    unsent: Vec<Unsent>,
    /// Ids of every unsent message this page listed, so that writing the list back leaves
    /// other tabs' entries alone.
    known: HashSet<String>,
    /// History requests waiting for their reply, by ref.
    history_waiting: HashMap<String, OnHistory>,
    /// How many messages the latest `history` frame held (the answer precedes its reply).
    last_history_len: usize,
    /// This socket's id, once its own message came back with it.
    socket_id: Option<String>,
}

struct Outgoing {
    reference: String,
    /// `options.id`: the same on every attempt, so a re-send after a drop is stored once.
    id: String,
    /// Another channel than this one: an untracked send, reported to `on_outcome`.
    channel: Option<String>,
    payload: Value,
    refers: Option<Refers>,
    on_outcome: Option<OnOutcome>,
}

impl Outgoing {
    /// A stored message to this channel, tracked in the unsent list.
    fn tracked(&self) -> bool {
        self.channel.is_none()
    }
}

impl Sender {
    pub(crate) fn open(
        channel: &str,
        options: ChannelOptions,
        signals: Signals,
        listener: Rc<dyn Fn(&Frame)>,
    ) -> Rc<Self> {
        let sender = Rc::new_cyclic(|this| Sender {
            channel: channel.to_string(),
            options,
            signals,
            listener,
            state: RefCell::new(State::default()),
            this: this.clone(),
        });
        sender.restore_unsent();
        sender.connect();
        let closing = send_wrapper::SendWrapper::new(sender.clone());
        on_cleanup(move || closing.close());
        sender
    }

    pub(crate) fn send_stored(&self, unsent: Unsent) {
        let outgoing = self.outgoing(&unsent);
        {
            let mut state = self.state.borrow_mut();
            state.known.insert(unsent.id.clone());
            state.unsent.push(unsent);
        }
        self.save_unsent();
        self.dispatch(outgoing);
    }

    pub(crate) fn retry(&self, id: &str) {
        let again = {
            let mut state = self.state.borrow_mut();
            state
                .unsent
                .iter_mut()
                .find(|u| u.id == id && u.refused.is_some())
                .map(|unsent| {
                    unsent.refused = None;
                    unsent.clone()
                })
        };
        if let Some(unsent) = again {
            self.save_unsent();
            self.dispatch(self.outgoing(&unsent));
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        {
            let mut state = self.state.borrow_mut();
            state.unsent.retain(|u| u.id != id);
            state.queue.retain(|o| o.id != id);
        }
        self.save_unsent();
        self.publish_queue_len();
    }

    pub(crate) fn send_to(&self, channel: &str, payload: Value, on_outcome: OnOutcome) {
        let outgoing = Outgoing {
            reference: self.next_reference('s'),
            id: crate::browser::random_id(),
            channel: Some(channel.to_string()),
            payload,
            refers: None,
            on_outcome: Some(on_outcome),
        };
        self.dispatch(outgoing);
    }

    pub(crate) fn history(&self, before: Option<u64>, limit: usize, on_answer: OnHistory) {
        let socket = {
            let state = self.state.borrow();
            state.socket.clone().filter(|_| state.joined)
        };
        let Some(socket) = socket else {
            return on_answer(Err(ErrorPayload {
                code: ErrorCode::NotSubscribed,
                message: "the channel is not joined yet".into(),
            }));
        };
        let reference = self.next_reference('h');
        let mut options = json!({ "channel": self.channel, "ref": reference, "limit": limit });
        if let Some(before) = before {
            options["before"] = json!(before);
        }
        let request = json!({ "action": "history", "options": options });
        if socket.send_with_str(&request.to_string()).is_ok() {
            self.state
                .borrow_mut()
                .history_waiting
                .insert(reference, on_answer);
        } else {
            on_answer(Err(dropped()));
        }
    }

    fn next_reference(&self, kind: char) -> String {
        let mut state = self.state.borrow_mut();
        state.next_ref += 1;
        format!("{kind}{}", state.next_ref)
    }

    fn outgoing(&self, unsent: &Unsent) -> Outgoing {
        Outgoing {
            reference: self.next_reference('s'),
            id: unsent.id.clone(),
            channel: None,
            payload: unsent.payload.clone(),
            refers: unsent.refers.clone(),
            on_outcome: None,
        }
    }

    /// Sends now if joined, else queues.
    fn dispatch(&self, outgoing: Outgoing) {
        let ready = self.state.borrow().joined;
        if ready {
            self.transmit(outgoing);
        } else {
            self.state.borrow_mut().queue.push_back(outgoing);
            self.publish_queue_len();
        }
    }

    fn unsent_key(&self) -> String {
        format!("{UNSENT_KEY}{}", self.channel)
    }

    /// Lists what an earlier page (or another tab) left unsent in this channel, and queues what
    /// was not refused.
    fn restore_unsent(&self) {
        let restored: Vec<Unsent> = crate::browser::local_get(&self.unsent_key())
            .and_then(|stored| serde_json::from_str(&stored).ok())
            .unwrap_or_default();
        let waiting: Vec<Outgoing> = restored
            .iter()
            .filter(|u| u.refused.is_none())
            .map(|u| self.outgoing(u))
            .collect();
        {
            let mut state = self.state.borrow_mut();
            state.known.extend(restored.iter().map(|u| u.id.clone()));
            state.unsent = restored;
            state.queue.extend(waiting);
        }
        self.save_unsent();
        self.publish_queue_len();
    }

    /// Publishes the unsent list and writes it back, keeping other tabs' entries.
    fn save_unsent(&self) {
        let key = self.unsent_key();
        let stored: Vec<Unsent> = crate::browser::local_get(&key)
            .and_then(|stored| serde_json::from_str(&stored).ok())
            .unwrap_or_default();
        let state = self.state.borrow();
        let mut kept: Vec<Unsent> = stored
            .into_iter()
            .filter(|u| !state.known.contains(&u.id))
            .collect();
        kept.extend(state.unsent.iter().cloned());
        match serde_json::to_string(&kept) {
            Ok(json) if !kept.is_empty() => crate::browser::local_set(&key, &json),
            _ => crate::browser::local_remove(&key),
        }
        self.signals.unsent.set(state.unsent.clone());
    }

    pub(crate) fn send_volatile(&self, payload: Value) {
        let state = self.state.borrow();
        if let (true, Some(socket)) = (state.joined, state.socket.as_ref()) {
            let frame = json!({
                "action": "message",
                "options": { "channel": self.channel, "volatile": true },
                "payload": payload,
            });
            let _ = socket.send_with_str(&frame.to_string());
        }
    }

    /// Leaves the channel and closes the socket for good (the page is going away).
    fn close(&self) {
        let socket = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            state.socket.take()
        };
        let handlers = std::mem::take(&mut self.state.borrow_mut().handlers);
        if let Some(socket) = socket {
            detach(&socket, &handlers);
            if socket.ready_state() == WebSocket::OPEN {
                let leave = json!({ "action": "leave", "options": { "channel": self.channel } });
                let _ = socket.send_with_str(&leave.to_string());
            }
            let _ = socket.close_with_code(1000);
        }
    }

    fn connect(&self) {
        let Some(url) = endpoint_url() else {
            self.signals.status.set(ConnectionStatus::Offline);
            return;
        };
        let opened = match &self.options.token {
            Some(token) => WebSocket::new_with_str(&url, token),
            None => WebSocket::new(&url),
        };
        let socket = match opened {
            Ok(socket) => socket,
            Err(_) => return self.schedule_reconnect(),
        };
        let handlers = vec![
            self.handler(&socket, "open", |this, _| this.on_open()),
            self.handler(&socket, "message", |this, event| {
                if let Some(text) = event
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                {
                    this.on_text(&text);
                }
            }),
            self.handler(&socket, "close", |this, event| {
                let code = event.dyn_ref::<CloseEvent>().map(CloseEvent::code);
                this.on_close(code);
            }),
        ];
        let mut state = self.state.borrow_mut();
        state.socket = Some(socket);
        state.handlers = handlers;
    }

    fn handler(
        &self,
        socket: &WebSocket,
        event: &'static str,
        on_event: impl Fn(&Sender, Event) + 'static,
    ) -> Listener {
        let this = self.this.clone();
        let closure = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            if let Some(this) = this.upgrade() {
                on_event(&this, event);
            }
        });
        let _ = socket.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
        (event, closure)
    }

    fn on_open(&self) {
        let reference = "join".to_string();
        let position = self.state.borrow().position.clone();
        let mut options = json!({ "channel": self.channel, "ref": reference });
        // A rejoin asks for exactly what was missed instead of the recent history.
        if let Some((epoch, seq)) = &position {
            options["since"] = json!({ "epoch": epoch, "seq": seq });
        }
        let join = json!({
            "action": "join",
            "options": options,
            "payload": {
                "presence": self.options.presence,
                "history": self.options.history && position.is_none(),
                "extras": self.options.extras,
            },
        });
        let socket = {
            let mut state = self.state.borrow_mut();
            state.join_ref = Some(reference);
            state.socket.clone()
        };
        if let Some(socket) = socket {
            let _ = socket.send_with_str(&join.to_string());
        }
    }

    fn on_text(&self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        self.note_position(&frame);
        match frame.action {
            Action::Reply => self.on_reply(&frame),
            Action::Message => self.note_own_socket(&frame),
            Action::History => {
                self.state.borrow_mut().last_history_len = frame
                    .payload
                    .get("history")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
            }
            Action::PresenceFull => {
                let listed = frame
                    .payload
                    .get("presence")
                    .cloned()
                    .and_then(|p| serde_json::from_value(p).ok())
                    .unwrap_or_default();
                self.signals.presence.set(listed);
            }
            Action::PresenceUpdate => {
                let member = frame.payload.get("presence").cloned().and_then(|p| {
                    serde_json::from_value::<switchboard_protocol::ClientInfo>(p).ok()
                });
                let joined = frame.payload.get("action").and_then(Value::as_str) == Some("join");
                if let Some(member) = member {
                    self.signals.presence.update(|list| {
                        list.retain(|m| m.socket_id != member.socket_id);
                        if joined {
                            list.push(member);
                        }
                    });
                }
            }
            Action::Error => {
                self.signals.last_error.set(error_of(&frame));
            }
            _ => {}
        }
        if frame.action != Action::Reply {
            (self.listener)(&frame);
        }
    }

    /// Learns this socket's id from its own message coming back (the server names the sender
    /// of every message it delivers).
    fn note_own_socket(&self, frame: &Frame) {
        let (Some(id), Some(client)) = (
            frame.options.get("id").and_then(Value::as_str),
            frame.client.as_ref(),
        ) else {
            return;
        };
        let learned = {
            let mut state = self.state.borrow_mut();
            let own = state.in_flight.values().any(|o| o.tracked() && o.id == id);
            let new = state.socket_id.as_deref() != Some(client.socket_id.as_str());
            if own && new {
                state.socket_id = Some(client.socket_id.clone());
            }
            own && new
        };
        if learned {
            self.signals.socket_id.set(Some(client.socket_id.clone()));
        }
    }

    /// Remembers the newest stored message seen, from live frames and history.
    fn note_position(&self, frame: &Frame) {
        let newest = match frame.action {
            Action::Message | Action::Event => frame.seq().zip(frame.epoch().map(str::to_string)),
            Action::History => frame
                .payload
                .get("history")
                .and_then(Value::as_array)
                .and_then(|entries| entries.last())
                .and_then(|last| serde_json::from_value::<Frame>(last.clone()).ok())
                .and_then(|last| last.seq().zip(last.epoch().map(str::to_string))),
            Action::Gap => None,
            _ => return,
        };
        let mut state = self.state.borrow_mut();
        if let Some((seq, epoch)) = newest {
            let newer = match &state.position {
                Some((known, at)) => *known != epoch || seq > *at,
                None => true,
            };
            if newer {
                state.position = Some((epoch, seq));
            }
        } else if frame.action == Action::Gap {
            // After a gap the server sends what it still has; resume from there next time.
            let epoch = frame.payload.get("epoch").and_then(Value::as_str);
            if let (Some(epoch), Some((known, _))) = (epoch, &state.position) {
                if known != epoch {
                    state.position = None;
                }
            }
        }
    }

    fn on_reply(&self, frame: &Frame) {
        let Some(reference) = frame.reference().and_then(Value::as_str) else {
            return;
        };
        let error = error_of(frame);
        let is_join = self.state.borrow().join_ref.as_deref() == Some(reference);
        if is_join {
            match error {
                None => self.on_joined(),
                Some(error) => self.signals.last_error.set(Some(error)),
            }
            return;
        }
        let waiting = self.state.borrow_mut().history_waiting.remove(reference);
        if let Some(on_answer) = waiting {
            let count = self.state.borrow().last_history_len;
            return on_answer(error.map_or(Ok(count), Err));
        }
        let outgoing = self.state.borrow_mut().in_flight.remove(reference);
        let Some(outgoing) = outgoing else {
            return;
        };
        if let Some(error) = &error {
            self.signals.last_error.set(Some(error.clone()));
        }
        match outgoing.on_outcome {
            Some(on_outcome) => on_outcome(error.map_or(Ok(()), Err)),
            None => {
                {
                    let mut state = self.state.borrow_mut();
                    match error {
                        None => state.unsent.retain(|u| u.id != outgoing.id),
                        Some(error) => {
                            if let Some(unsent) =
                                state.unsent.iter_mut().find(|u| u.id == outgoing.id)
                            {
                                unsent.refused = Some(error);
                            }
                        }
                    }
                }
                self.save_unsent();
            }
        }
    }

    fn on_joined(&self) {
        let queued = {
            let mut state = self.state.borrow_mut();
            state.joined = true;
            state.failures = 0;
            std::mem::take(&mut state.queue)
        };
        self.signals.status.set(ConnectionStatus::Connected);
        self.signals.last_error.set(None);
        for outgoing in queued {
            self.transmit(outgoing);
        }
        self.publish_queue_len();
    }

    fn transmit(&self, outgoing: Outgoing) {
        let channel = outgoing.channel.as_deref().unwrap_or(&self.channel);
        let mut options =
            json!({ "channel": channel, "ref": outgoing.reference, "id": outgoing.id });
        if let Some(refers) = &outgoing.refers {
            options[refers.option()] = json!(refers.target());
        }
        let frame = json!({ "action": "message", "options": options, "payload": outgoing.payload });
        let mut state = self.state.borrow_mut();
        match state.socket.clone() {
            Some(socket) if socket.send_with_str(&frame.to_string()).is_ok() => {
                state.in_flight.insert(outgoing.reference.clone(), outgoing);
            }
            _ => state.queue.push_back(outgoing),
        }
    }

    fn on_close(&self, code: Option<u16>) {
        // 4001: an operator disconnected this socket. Come back, but not at once: after the
        // longest backoff, as if many attempts had failed.
        if code == Some(OPERATOR_DISCONNECT) {
            let mut state = self.state.borrow_mut();
            state.failures = state.failures.max(OPERATOR_FAILURES);
        }
        let unanswered_history: Vec<OnHistory> = {
            let mut state = self.state.borrow_mut();
            state.socket_id = None;
            state.history_waiting.drain().map(|(_, h)| h).collect()
        };
        self.signals.socket_id.set(None);
        for on_answer in unanswered_history {
            on_answer(Err(dropped()));
        }
        {
            let mut state = self.state.borrow_mut();
            // This runs inside the socket's own close listener: detach the listeners but keep
            // them alive until the next connect replaces them.
            if let Some(socket) = state.socket.take() {
                detach(&socket, &state.handlers);
            }
            state.joined = false;
            // Unanswered sends go first in the queue again, oldest first.
            let mut unanswered: Vec<Outgoing> = state.in_flight.drain().map(|(_, o)| o).collect();
            unanswered.sort_by_key(|o| o.reference[1..].parse::<u64>().unwrap_or(0));
            for outgoing in unanswered.into_iter().rev() {
                state.queue.push_front(outgoing);
            }
            if state.closed {
                return;
            }
        }
        self.publish_queue_len();
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&self) {
        let failures = {
            let mut state = self.state.borrow_mut();
            state.failures += 1;
            state.failures
        };
        let online = web_sys::window()
            .map(|w| w.navigator().on_line())
            .unwrap_or(true);
        self.signals.status.set(if online {
            ConnectionStatus::Reconnecting
        } else {
            ConnectionStatus::Offline
        });
        let delay = backoff(failures);
        let this = send_wrapper::SendWrapper::new(self.this.clone());
        set_timeout(
            move || {
                if let Some(this) = this.upgrade() {
                    if !this.state.borrow().closed {
                        this.connect();
                    }
                }
            },
            delay,
        );
    }

    fn publish_queue_len(&self) {
        let len = self.state.borrow().queue.len();
        self.signals.queued.set(len);
    }
}

/// Exponential backoff with full jitter between half and the whole step, capped.
/// The close code of an operator's disconnect (PROTOCOL.md, "Close codes").
const OPERATOR_DISCONNECT: u16 = 4001;
/// Failures counted after it: enough for the longest backoff.
const OPERATOR_FAILURES: u32 = 10;

fn backoff(failures: u32) -> Duration {
    let step = FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    step.mul_f64(0.5 + js_sys::Math::random() / 2.0)
}

fn detach(socket: &WebSocket, handlers: &[Listener]) {
    for (event, closure) in handlers {
        let _ = socket.remove_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
    }
}

fn endpoint_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}{ENDPOINT}", location.host().ok()?))
}

/// The outcome of a request whose connection dropped before its answer.
fn dropped() -> ErrorPayload {
    ErrorPayload {
        code: ErrorCode::Internal,
        message: "the connection dropped before the answer came".into(),
    }
}

fn error_of(frame: &Frame) -> Option<ErrorPayload> {
    let code: ErrorCode = frame.error_code()?;
    let message = frame
        .payload
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some(ErrorPayload { code, message })
}
