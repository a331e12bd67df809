//! The channel client in the browser, on `web_sys::WebSocket`.
//!
//! One socket per open channel. Sends carry an `options.ref`; their outcome arrives as a
//! `reply`. Sends made before the channel is joined wait in a queue and go out, in order, right
//! after the (re)join succeeds. A send that was on the wire when the socket dropped is queued
//! again, since its outcome is unknown; it keeps its `options.id`, so the server stores and
//! delivers it once even if the first attempt had arrived.

use leptos::prelude::*;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;
use switchboard_protocol::{Action, ErrorCode, ErrorPayload, Frame};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use super::{ChannelOptions, ConnectionStatus, OnOutcome, Signals};

/// First reconnect delay; doubled on each failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(300);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The realtime endpoint of the page's own server.
const ENDPOINT: &str = "/rt/app";

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
}

struct Outgoing {
    reference: String,
    /// `options.id`: the same on every attempt, so a re-send after a drop is stored once.
    id: String,
    channel: Option<String>,
    payload: Value,
    on_outcome: OnOutcome,
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
        sender.connect();
        let closing = send_wrapper::SendWrapper::new(sender.clone());
        on_cleanup(move || closing.close());
        sender
    }

    pub(crate) fn send(&self, channel: Option<String>, payload: Value, on_outcome: OnOutcome) {
        let reference = {
            let mut state = self.state.borrow_mut();
            state.next_ref += 1;
            format!("s{}", state.next_ref)
        };
        let outgoing = Outgoing {
            reference,
            id: crate::browser::random_id(),
            channel,
            payload,
            on_outcome,
        };
        let ready = self.state.borrow().joined;
        if ready {
            self.transmit(outgoing);
        } else {
            self.state.borrow_mut().queue.push_back(outgoing);
            self.publish_queue_len();
        }
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
        let outgoing = self.state.borrow_mut().in_flight.remove(reference);
        if let Some(outgoing) = outgoing {
            if let Some(error) = &error {
                self.signals.last_error.set(Some(error.clone()));
            }
            (outgoing.on_outcome)(error.map_or(Ok(()), Err));
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
        let frame = json!({
            "action": "message",
            "options": { "channel": channel, "ref": outgoing.reference, "id": outgoing.id },
            "payload": outgoing.payload,
        });
        let mut state = self.state.borrow_mut();
        match state.socket.clone() {
            Some(socket) if socket.send_with_str(&frame.to_string()).is_ok() => {
                state.in_flight.insert(outgoing.reference.clone(), outgoing);
            }
            _ => state.queue.push_back(outgoing),
        }
    }

    fn on_close(&self, _code: Option<u16>) {
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
