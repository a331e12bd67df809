//! Live cursors, `/cursors/{room}`: every open tab sees the others' pointers (mouse, pen or
//! touch) move over a shared board, who is there and whether they are active, idle or away,
//! and what they say in cursor chat (press `/`).
//!
//! Sending is cheap by design: at most one update per animation frame and ~30 per second, only
//! when something changed, as volatile messages (never stored; the server keeps only the
//! newest per sender for a slow reader) — so each update carries the whole state, position and
//! chat, and losing one to coalescing loses nothing. Positions are fractions of the board, so
//! windows of different sizes agree.
//!
//! Drawing is cheap too: positions never pass through the reactive view. A page-level listener
//! feeds them to the [`Board`], and a drawing loop that runs only while a cursor moves places
//! each mark on its spline with a transform. The reactive view holds only who is there and
//! what they are doing, which changes a few times a second at most.

mod board;
mod motion;

use leptos::html::{Div, Input};
use leptos::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

use crate::browser;
use crate::identity::{self, NameForm};
use crate::pages::chat::message::{Author, ChatUser};
use crate::pages::refusals::JoinRefusal;
use crate::realtime::{use_channel, Channel, ChannelOptions};
use board::{clean_chat, Activity, Board, Mark, CHAT_MAX_CHARS};
use motion::Point;

/// Least time between two updates sent: about 30 per second.
const MIN_SEND_INTERVAL_MS: f64 = 33.0;
/// Cursor chat closes this long after the last keystroke.
const CHAT_QUIET_MS: u64 = 5000;
/// How often the board re-reads who went idle or away.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

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

/// The marks' elements and the loop that places them.
#[derive(Clone, Copy)]
struct Drawing {
    board: StoredValue<Board>,
    elements: StoredValue<HashMap<String, web_sys::HtmlElement>, LocalStorage>,
    canvas: NodeRef<Div>,
    running: StoredValue<bool>,
}

impl Drawing {
    /// Draws on the next frames until no cursor moves.
    fn start(self) {
        if self.running.try_get_value() == Some(false) {
            self.running.set_value(true);
            request_animation_frame(move || self.frame());
        }
    }

    fn frame(self) {
        let Some(canvas) = self.canvas.get_untracked() else {
            return self.running.set_value(false);
        };
        let (width, height) = (
            f64::from(canvas.client_width()),
            f64::from(canvas.client_height()),
        );
        let now = js_sys::Date::now();
        let moving = self.board.try_update_value(|board| {
            let (positions, moving) = board.positions(now);
            self.elements.with_value(|elements| {
                for (socket, at) in positions {
                    if let Some(element) = elements.get(socket) {
                        let place =
                            format!("translate({:.1}px, {:.1}px)", at.x * width, at.y * height);
                        let _ = element.style().set_property("transform", &place);
                    }
                }
            });
            moving
        });
        match moving {
            Some(true) => request_animation_frame(move || self.frame()),
            Some(false) => self.running.set_value(false),
            None => {}
        }
    }
}

#[component]
fn LiveCursors(room: String, me: ChatUser) -> impl IntoView {
    let smooth = !browser::prefers_reduced_motion();
    let board = StoredValue::new(Board::default());
    let marks = RwSignal::new(Vec::<Mark>::new());
    let canvas = NodeRef::<Div>::new();
    let drawing = Drawing {
        board,
        elements: StoredValue::new_local(HashMap::new()),
        canvas,
        running: StoredValue::new(false),
    };
    let token = identity::load_token();
    let signed_in = token.is_some();
    let options = ChannelOptions {
        presence: true,
        history: false,
        extras: identity::extras(&me),
        token,
    };
    let channel = use_channel(&room, options, move |frame| {
        let now = js_sys::Date::now();
        if board.try_update_value(|b| b.apply(frame, now, smooth)) == Some(true) {
            marks.set(board.with_value(Board::marks));
        }
        drawing.start();
    });
    let now = RwSignal::new(js_sys::Date::now());
    if let Ok(ticker) = set_interval_with_handle(
        move || {
            let at = js_sys::Date::now();
            now.set(at);
            if board.try_update_value(|b| b.refresh(at)) == Some(true) {
                marks.set(board.with_value(Board::marks));
                drawing.start();
            }
        },
        REFRESH_EVERY,
    ) {
        on_cleanup(move || ticker.clear());
    }
    let resized = window_event_listener(leptos::ev::resize, move |_| drawing.start());
    on_cleanup(move || resized.remove());

    let outgoing = Outgoing::new(channel);
    let chat = CursorChat::new(outgoing);
    let keys = window_event_listener(leptos::ev::keydown, move |ev| chat.on_window_key(&ev));
    on_cleanup(move || keys.remove());

    let on_pointer = move |ev: leptos::ev::PointerEvent| {
        let Some(canvas) = canvas.get_untracked() else {
            return;
        };
        let rect = canvas.get_bounding_client_rect();
        if rect.width() <= 0.0 || rect.height() <= 0.0 {
            return;
        }
        let at = Point {
            x: ((f64::from(ev.client_x()) - rect.left()) / rect.width()).clamp(0.0, 1.0),
            y: ((f64::from(ev.client_y()) - rect.top()) / rect.height()).clamp(0.0, 1.0),
        };
        outgoing.moved(at);
        if chat.text.get_untracked().is_some() {
            chat.at.set(at);
        }
    };
    let me = StoredValue::new(me);
    let people = Memo::new(move |_| {
        let at = now.get();
        let members = channel.presence.get();
        let me = me.get_value();
        board.with_value(|board| people_on(board, &members, &me, signed_in, at))
    });
    view! {
        <p class="connection" data-status=move || channel.status.get().label()>
            <span class="state" role="status">
                <span class="pill">{move || channel.status.get().label()}</span>
            </span>
            <span class="hint">"Move your pointer (or finger) over the board: everyone in the room sees it."</span>
            <button type="button" class="link open-chat" aria-keyshortcuts="/" on:click=move |_| chat.open()>
                "Chat beside your cursor " <kbd>"/"</kbd>
            </button>
        </p>
        <JoinRefusal channel/>
        <div class="board-area">
            <div
                class="cursor-canvas"
                node_ref=canvas
                tabindex="0"
                role="application"
                aria-label="Shared board. Press / to write a short message beside your cursor."
                on:pointermove=on_pointer
                on:pointerdown=on_pointer
            >
                <For each=move || marks.get() key=|m| m.socket_id.clone() let:mark>
                    <CursorMark mark marks drawing/>
                </For>
                {move || chat.open.get().then(|| view! { <ChatBubble chat/> })}
            </div>
            <aside class="board-people" aria-label="People on the board">
                <h2 class="here">{move || format!("{} here", people.with(Vec::len))}</h2>
                <ul>
                    <For each=move || people.get() key=|p| p.clone() let:person>
                        <li class="person" data-user=person.id.clone() data-activity=person.activity.label()>
                            <span class="dot" class:dim=person.activity != Activity::Active style:background=person.colour.clone() aria-hidden="true"></span>
                            <span class="name">{person.name.clone()}{person.you.then_some(" (you)")}</span>
                            <span class="activity">{person.activity.label()}</span>
                        </li>
                    </For>
                </ul>
            </aside>
        </div>
    }
}

/// A person on the board, however many tabs they have open, with their liveliest tab's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Person {
    id: String,
    name: String,
    colour: String,
    verified: bool,
    you: bool,
    activity: Activity,
}

/// The presence members grouped by person (as the server names them), this page's person
/// first and always active.
fn people_on(
    board: &Board,
    members: &[switchboard_protocol::ClientInfo],
    me: &ChatUser,
    signed_in: bool,
    now: f64,
) -> Vec<Person> {
    let mut people: Vec<Person> = Vec::new();
    for member in members {
        let author = Author::of(member);
        let you = author.id == me.id && author.verified == signed_in;
        let activity = match you {
            true => Activity::Active,
            false => board.activity_of(&member.socket_id, now),
        };
        match people
            .iter_mut()
            .find(|p| p.id == author.id && p.verified == author.verified)
        {
            Some(person) => person.activity = person.activity.max(activity),
            None => people.push(Person {
                id: author.id,
                name: author.name,
                colour: author.colour,
                verified: author.verified,
                you,
                activity,
            }),
        }
    }
    people.sort_by_key(|p| !p.you);
    people
}

/// This tab's state on its way out: the newest position and chat, whether they changed since
/// the last update, when that went out, and whether an animation frame is booked to send.
#[derive(Clone, Copy)]
struct Outgoing {
    at: StoredValue<Option<Point>>,
    chat: StoredValue<Option<String>>,
    changed: StoredValue<bool>,
    last_sent: StoredValue<f64>,
    booked: StoredValue<bool>,
    channel: Channel,
}

impl Outgoing {
    fn new(channel: Channel) -> Self {
        Self {
            at: StoredValue::new(None),
            chat: StoredValue::new(None),
            changed: StoredValue::new(false),
            last_sent: StoredValue::new(0.0),
            booked: StoredValue::new(false),
            channel,
        }
    }

    fn moved(self, to: Point) {
        if self.at.get_value() != Some(to) {
            self.at.set_value(Some(to));
            self.changed.set_value(true);
            self.book();
        }
    }

    fn say(self, chat: Option<String>) {
        self.chat.set_value(chat);
        self.changed.set_value(true);
        self.book();
    }

    /// Where this tab's pointer is (the middle of the board until it has been there).
    fn position(self) -> Point {
        self.at.get_value().unwrap_or(Point { x: 0.5, y: 0.5 })
    }

    /// Sends on the next animation frame, unless one is already booked.
    fn book(self) {
        if !self.booked.get_value() {
            self.booked.set_value(true);
            request_animation_frame(move || self.send());
        }
    }

    /// Sends the state if it changed and the interval has passed; otherwise waits for a later
    /// frame.
    fn send(self) {
        if self.booked.try_get_value().is_none() {
            return;
        }
        self.booked.set_value(false);
        if !self.changed.get_value() {
            return;
        }
        let now = js_sys::Date::now();
        if now - self.last_sent.get_value() < MIN_SEND_INTERVAL_MS {
            return self.book();
        }
        self.changed.set_value(false);
        self.last_sent.set_value(now);
        let chat = self.chat.get_value();
        self.channel
            .send_volatile(board::update(self.position(), chat.as_deref()));
    }
}

/// This tab's cursor chat: open while the person types (`/` opens it, Escape cancels it) and
/// closed [`CHAT_QUIET_MS`] after the last keystroke.
#[derive(Clone, Copy)]
struct CursorChat {
    /// What is being typed, while open.
    text: RwSignal<Option<String>>,
    /// Whether it is open (changes only when it opens or closes).
    open: Memo<bool>,
    /// Where this tab's pointer is, while open: the chat follows it.
    at: RwSignal<Point>,
    quiet: StoredValue<Option<TimeoutHandle>>,
    outgoing: Outgoing,
}

impl CursorChat {
    fn new(outgoing: Outgoing) -> Self {
        let text = RwSignal::new(None::<String>);
        Self {
            text,
            open: Memo::new(move |_| text.with(Option::is_some)),
            at: RwSignal::new(outgoing.position()),
            quiet: StoredValue::new(None),
            outgoing,
        }
    }

    /// `/` anywhere but in a text field opens the chat.
    fn on_window_key(self, ev: &leptos::ev::KeyboardEvent) {
        let typing_elsewhere = ev
            .target()
            .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(t).ok())
            .is_some_and(|e| matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        let plain = !(ev.ctrl_key() || ev.meta_key() || ev.alt_key());
        if ev.key() == "/" && plain && !typing_elsewhere {
            ev.prevent_default();
            self.open();
        }
    }

    fn open(self) {
        if self.text.get_untracked().is_none() {
            self.at.set(self.outgoing.position());
            self.text.set(Some(String::new()));
            self.keep_open();
        }
    }

    fn typed(self, text: String) {
        let text = clean_chat(&text);
        let shown = (!text.trim().is_empty()).then(|| text.clone());
        self.text.set(Some(text));
        self.outgoing.say(shown);
        self.keep_open();
    }

    /// Closes the chat [`CHAT_QUIET_MS`] from now, unless typed into again.
    fn keep_open(self) {
        if let Some(timer) = self.quiet.get_value() {
            timer.clear();
        }
        let timer =
            set_timeout_with_handle(move || self.close(), Duration::from_millis(CHAT_QUIET_MS));
        self.quiet.set_value(timer.ok());
    }

    fn close(self) {
        if let Some(timer) = self.quiet.try_get_value().flatten() {
            timer.clear();
            self.quiet.set_value(None);
        }
        if self.text.try_get_untracked().flatten().is_some() {
            self.text.set(None);
            self.outgoing.say(None);
        }
    }
}

/// This tab's own cursor chat, typed where its pointer is.
#[component]
fn ChatBubble(chat: CursorChat) -> impl IntoView {
    let field = NodeRef::<Input>::new();
    request_animation_frame(move || {
        if let Some(field) = field.get_untracked() {
            let _ = field.focus();
        }
    });
    on_cleanup(move || chat.close());
    let left = move || format!("{}%", chat.at.get().x * 100.0);
    let top = move || format!("{}%", chat.at.get().y * 100.0);
    view! {
        <div class="own-chat" style:left=left style:top=top>
            <input
                class="cursor-chat-input"
                node_ref=field
                maxlength=CHAT_MAX_CHARS.to_string()
                aria-label="Say something beside your cursor (Escape to cancel)"
                placeholder="Say something"
                autocomplete="off"
                prop:value=move || chat.text.get().unwrap_or_default()
                on:input=move |ev| chat.typed(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
                    "Escape" => {
                        ev.prevent_default();
                        chat.close();
                    }
                    "Enter" => ev.prevent_default(),
                    _ => {}
                }
            />
        </div>
    }
}

/// One remote cursor: an arrow in its person's colour with their name and cursor chat, dimmed
/// when idle and hidden when away. The drawing loop places it.
#[component]
fn CursorMark(mark: Mark, marks: RwSignal<Vec<Mark>>, drawing: Drawing) -> impl IntoView {
    let id = StoredValue::new(mark.socket_id.clone());
    let current = Memo::new(move |_| {
        marks.with(|all| {
            all.iter()
                .find(|m| m.socket_id == *id.read_value())
                .map(|m| (m.activity, m.chat.clone()))
        })
    });
    let activity = move || current.with(|m| m.as_ref().map_or(Activity::Away, |m| m.0));
    let chat = move || current.with(|m| m.as_ref().and_then(|m| m.1.clone()));
    let node = NodeRef::<Div>::new();
    node.on_load(move |element| {
        drawing.elements.update_value(|elements| {
            elements.insert(id.get_value(), element.into());
        });
        drawing.start();
    });
    on_cleanup(move || {
        let socket = id.get_value();
        drawing
            .elements
            .try_update_value(|elements| elements.remove(&socket));
    });
    let (colour, ink) = (mark.author.colour.clone(), mark.ink);
    view! {
        <div
            class="cursor"
            node_ref=node
            class:stale=move || activity() != Activity::Active
            class:away=move || activity() == Activity::Away
            data-socket=id.get_value()
            data-name=mark.author.name.clone()
            data-activity=move || activity().label()
        >
            <svg width="18" height="18" viewBox="0 0 18 18" aria-hidden="true">
                <path d="M1 1 L1 15 L5 11 L8 17 L10.5 16 L7.5 10 L13 10 Z" fill=colour.clone() stroke="white" stroke-width="1"/>
            </svg>
            <span class="label" style:background-color=colour.clone() style:color=ink>{mark.author.name.clone()}</span>
            {move || chat().map(|text| view! {
                <span class="cursor-chat" style:background-color=colour.clone() style:color=ink>{text}</span>
            })}
        </div>
    }
}
