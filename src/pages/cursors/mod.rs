//! Live cursors, `/cursors/{room}`: every open tab sees the others' pointers move over a shared
//! canvas. A page-level listener keeps a reactive `cursors` array (one entry per remote socket)
//! that the cursor marks are bound to.
//!
//! Sending is cheap by design: at most one update per animation frame and ~30 per second, only
//! when the position changed, as volatile messages (never stored; the server keeps only the
//! newest per sender for a slow reader). Positions are fractions of the canvas (0..1), so
//! windows of different sizes agree. Marks glide between updates (a CSS transition), vanish
//! at once when their socket leaves, and fade when their sender goes quiet.

use leptos::html::Div;
use leptos::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_protocol::{Action, Frame};

use crate::identity::{self, NameForm};
use crate::pages::chat::message::ChatUser;
use crate::realtime::{use_channel, Channel, ChannelOptions};

/// Least time between two updates sent: about 30 per second.
const MIN_SEND_INTERVAL_MS: f64 = 33.0;
/// A cursor not updated for this long fades out.
const STALE_AFTER_MS: f64 = 3000.0;

/// One remote pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The socket it belongs to (one per tab).
    pub socket_id: String,
    /// Its person's name.
    pub name: String,
    /// Its person's colour.
    pub colour: String,
    /// Horizontal position, 0 (left) to 1 (right) of the canvas.
    pub x: f64,
    /// Vertical position, 0 (top) to 1 (bottom) of the canvas.
    pub y: f64,
    /// When the last update arrived, in milliseconds since the Unix epoch.
    pub updated_at: f64,
}

/// `/cursors/{room}`.
#[component]
pub fn CursorsPage() -> impl IntoView {
    let room = super::use_room();
    move || view! { <CursorRoom room=room.get()/> }
}

#[component]
fn CursorRoom(room: String) -> impl IntoView {
    let (user, hydrated) = identity::use_identity();
    let title = room.clone();
    view! {
        <div class="cursors-page">
            <header class="chat-header">
                <a class="back" href="/">"Switchboard"</a>
                <h1>"Cursors · #" {title}</h1>
            </header>
            {move || match user.get() {
                Some(me) => view! { <LiveCursors room=room.clone() me/> }.into_any(),
                None if hydrated.get() => view! {
                    <div class="composer-area">
                        <NameForm on_save=Callback::new(move |chosen| user.set(Some(chosen)))/>
                    </div>
                }.into_any(),
                None => view! { <p class="hint">"Connecting…"</p> }.into_any(),
            }}
        </div>
    }
}

/// Applies one frame to the cursors array.
fn apply(cursors: &mut Vec<Cursor>, frame: &Frame, now: f64) {
    match frame.action {
        Action::Message if frame.payload.get("kind").and_then(Value::as_str) == Some("cursor") => {
            let (Some(client), Some(x), Some(y)) = (
                frame.client.as_ref(),
                frame.payload.get("x").and_then(Value::as_f64),
                frame.payload.get("y").and_then(Value::as_f64),
            ) else {
                return;
            };
            let (x, y) = (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0));
            match cursors.iter_mut().find(|c| c.socket_id == client.socket_id) {
                Some(cursor) => {
                    cursor.x = x;
                    cursor.y = y;
                    cursor.updated_at = now;
                }
                None => {
                    let text = |key: &str, default: &str| {
                        client
                            .extras
                            .get(key)
                            .and_then(Value::as_str)
                            .unwrap_or(default)
                            .to_string()
                    };
                    cursors.push(Cursor {
                        socket_id: client.socket_id.clone(),
                        name: text("name", "Anonymous"),
                        // Checked again here: only a real colour reaches the page's CSS.
                        colour: crate::pages::chat::message::safe_colour(Some(&text("colour", ""))),
                        x,
                        y,
                        updated_at: now,
                    });
                }
            }
        }
        Action::PresenceUpdate
            if frame.payload.get("action").and_then(Value::as_str) == Some("leave") =>
        {
            if let Some(gone) = frame
                .payload
                .pointer("/presence/socketId")
                .and_then(Value::as_str)
            {
                cursors.retain(|c| c.socket_id != gone);
            }
        }
        _ => {}
    }
}

#[component]
fn LiveCursors(room: String, me: ChatUser) -> impl IntoView {
    let cursors = RwSignal::new(Vec::<Cursor>::new());
    let now = RwSignal::new(js_sys::Date::now());
    let options = ChannelOptions {
        presence: true,
        history: false,
        extras: identity::extras(&me),
        token: identity::load_token(),
    };
    let channel = use_channel(&room, options, move |frame| {
        cursors.update(|list| apply(list, frame, js_sys::Date::now()));
    });
    if let Ok(ticker) = set_interval_with_handle(
        move || now.set(js_sys::Date::now()),
        Duration::from_millis(500),
    ) {
        on_cleanup(move || ticker.clear());
    }

    let canvas = NodeRef::<Div>::new();
    let outgoing = Outgoing {
        pending: StoredValue::new(None),
        last_sent: StoredValue::new((f64::NAN, f64::NAN, 0.0)),
        booked: StoredValue::new(false),
        channel,
    };
    let on_move = move |ev: leptos::ev::PointerEvent| {
        let Some(canvas) = canvas.get() else {
            return;
        };
        let rect = canvas.get_bounding_client_rect();
        if rect.width() <= 0.0 || rect.height() <= 0.0 {
            return;
        }
        let x = ((f64::from(ev.client_x()) - rect.left()) / rect.width()).clamp(0.0, 1.0);
        let y = ((f64::from(ev.client_y()) - rect.top()) / rect.height()).clamp(0.0, 1.0);
        outgoing.pending.set_value(Some((x, y)));
        outgoing.book();
    };
    let here = move || {
        let mut people: Vec<String> = channel
            .presence
            .get()
            .iter()
            .filter_map(|m| {
                m.extras
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        people.sort();
        people.dedup();
        people.len()
    };
    view! {
        <p class="connection" data-status=move || channel.status.get().label()>
            <span class="pill">{move || channel.status.get().label()}</span>
            <span class="here">{move || format!("{} here", here())}</span>
            <span class="hint">"Move your pointer over the board: everyone in the room sees it."</span>
        </p>
        <div class="cursor-canvas" node_ref=canvas on:pointermove=on_move>
            <For each=move || cursors.get() key=|c| c.socket_id.clone() let:cursor>
                <CursorMark id=cursor.socket_id.clone() name=cursor.name.clone() colour=cursor.colour.clone() cursors now/>
            </For>
        </div>
    }
}

/// This tab's pointer on its way out: the newest position not yet sent, the last one sent
/// (x, y, when), and whether an animation frame is booked to send it.
#[derive(Clone, Copy)]
struct Outgoing {
    pending: StoredValue<Option<(f64, f64)>>,
    last_sent: StoredValue<(f64, f64, f64)>,
    booked: StoredValue<bool>,
    channel: Channel,
}

impl Outgoing {
    /// Sends on the next animation frame, unless one is already booked.
    fn book(self) {
        if !self.booked.get_value() {
            self.booked.set_value(true);
            request_animation_frame(move || self.send());
        }
    }

    /// Sends the pending position if it changed and the interval has passed; otherwise waits
    /// for a later frame.
    fn send(self) {
        self.booked.set_value(false);
        let Some((x, y)) = self.pending.get_value() else {
            return;
        };
        let (last_x, last_y, last_at) = self.last_sent.get_value();
        if (x, y) == (last_x, last_y) {
            self.pending.set_value(None);
            return;
        }
        let at = js_sys::Date::now();
        if at - last_at < MIN_SEND_INTERVAL_MS {
            return self.book();
        }
        self.pending.set_value(None);
        self.last_sent.set_value((x, y, at));
        self.channel
            .send_volatile(json!({ "kind": "cursor", "x": x, "y": y }));
    }
}

/// One remote cursor: an arrow in its person's colour with their name, gliding to each new
/// position and fading when quiet.
#[component]
fn CursorMark(
    id: String,
    name: String,
    colour: String,
    cursors: RwSignal<Vec<Cursor>>,
    now: RwSignal<f64>,
) -> impl IntoView {
    let id = StoredValue::new(id);
    let position = move || {
        cursors.with(|list| {
            id.with_value(|id| {
                list.iter()
                    .find(|c| &c.socket_id == id)
                    .map(|c| (c.x, c.y, c.updated_at))
            })
        })
    };
    let left = move || format!("{}%", position().map_or(0.0, |p| p.0 * 100.0));
    let top = move || format!("{}%", position().map_or(0.0, |p| p.1 * 100.0));
    let stale = move || position().is_some_and(|p| now.get() - p.2 > STALE_AFTER_MS);
    let label = name.clone();
    view! {
        <div
            class="cursor"
            class:stale=stale
            data-socket=id.get_value()
            data-name=name
            style:left=left
            style:top=top
        >
            <svg width="18" height="18" viewBox="0 0 18 18" aria-hidden="true">
                <path d="M1 1 L1 15 L5 11 L8 17 L10.5 16 L7.5 10 L13 10 Z" fill=colour.clone() stroke="white" stroke-width="1"/>
            </svg>
            <span class="label" style:background-color=colour>{label}</span>
        </div>
    }
}
