//! The support chat, `/chat/{room}`: the room's messages (rendered with the page, then live,
//! paged back on request), who is here and who is typing, the connection state, and a
//! composer. A page-level listener feeds every stored frame into one list of entries that the
//! view folds into posts (edits, deletions and reactions applied), and every typing update
//! into the typing line.
//!
//! The parts of a room share one [`Room`] (a context): the list is rendered on the server and
//! hydrated, while the live part — the channel, presence and composer — exists only once the
//! page knows who the person is.

mod composer;
mod links;
mod list;
pub mod message;
mod row;
mod server;
mod time;
mod timeline;
mod typing;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use std::collections::HashMap;
use std::time::Duration;
use switchboard_protocol::{Action, ErrorCode};

use crate::browser;
use crate::identity::{self, NameForm};
use crate::pages::refusals::{self, Attempt, JoinRefusal};
use crate::realtime::{use_channel, Channel, ChannelOptions};
use composer::Composer;
use list::MessageList;
use message::{Author, ChatMessage, ChatUser, Entry};
use server::{recent_messages, send_message, Recent};
use timeline::{Post, Timeline};
use typing::Typists;

/// Channel the debug control sends to without joining it.
const UNJOINED_ROOM: &str = "not-joined";

/// `/chat/{room}`: one [`ChatRoom`] per room; changing rooms leaves the old one.
#[component]
pub fn ChatPage() -> impl IntoView {
    let room = super::use_room();
    move || view! { <ChatRoom room=room.get()/> }
}

/// What the parts of one room page share.
#[derive(Clone, Copy)]
struct Room {
    /// The room's name.
    name: StoredValue<String>,
    /// The server's clock when it rendered the page (ms since the Unix epoch).
    rendered_at: i64,
    /// Every entry the page has: rendered with the page, then from the socket.
    timeline: Memo<Timeline>,
    /// The posts, in order.
    posts: Memo<Vec<Post>>,
    /// The posts by id.
    by_id: Memo<HashMap<String, Post>>,
    /// Entries received over the socket (join history, live, earlier pages).
    live: RwSignal<Vec<Entry>>,
    /// The room's channel while the live part is on the page.
    channel: RwSignal<Option<Channel>>,
    /// The person at this page, once known.
    me: RwSignal<Option<ChatUser>>,
    /// Whether this page's socket is signed in.
    signed_in: RwSignal<bool>,
    /// Whether the page runs in the browser (the reader's clock and time zone are known).
    hydrated: RwSignal<bool>,
    /// Whether the reader is at the newest message (new ones then scroll into view).
    at_bottom: RwSignal<bool>,
    /// Messages by others that arrived while the reader was not at the newest.
    unread: RwSignal<usize>,
    /// The first of them: where the unread marker goes.
    unread_from: RwSignal<Option<String>>,
    /// The post whose text is being edited.
    editing: RwSignal<Option<String>>,
    /// A change (edit, deletion, reaction) the server refused, as a sentence.
    problem: RwSignal<Option<String>>,
    /// The debug controls are shown (`?debug=1`).
    debug: bool,
}

impl Room {
    /// Whether `author` is the person at this page.
    fn is_me(&self, author: &Author) -> bool {
        self.me.with(|me| {
            me.as_ref()
                .is_some_and(|me| me.id == author.id && self.signed_in.get() == author.verified)
        })
    }

    /// Whether the server will take an edit or deletion of `post` from this page: its author
    /// signed in with the same account, or — for a guest, whom the server knows by socket —
    /// sent from this very socket.
    fn may_change(&self, post: &Post) -> bool {
        let from_here = || {
            let socket = self
                .channel
                .get()
                .and_then(|channel| channel.socket_id.get());
            socket.is_some() && socket == post.socket
        };
        !post.deleted && self.is_me(&post.author) && (post.author.verified || from_here())
    }
}

/// A room: its recent history read for the server render, then the room itself.
#[component]
fn ChatRoom(room: String) -> impl IntoView {
    let debug = use_query_map().read_untracked().get("debug").is_some();
    let recent = Resource::new_blocking(
        {
            let room = room.clone();
            move || room.clone()
        },
        recent_messages,
    );
    let title = room.clone();
    view! {
        <div class="chat">
            <header class="chat-header">
                <a class="back" href="/">"Switchboard"</a>
                <h1>"#" {title}</h1>
            </header>
            <Suspense fallback=|| view! { <div class="message-pane"><p class="hint">"Loading messages…"</p></div> }>
                {move || recent.get().map(|recent| {
                    view! { <RoomView room=room.clone() recent=recent.ok() debug/> }
                })}
            </Suspense>
        </div>
    }
}

/// The room's messages from the server render, and live ones once connected.
#[component]
fn RoomView(room: String, recent: Option<Recent>, debug: bool) -> impl IntoView {
    let (rendered, rendered_at) = recent.map_or((Vec::new(), 0), |r| (r.entries, r.now));
    let live = RwSignal::new(Vec::<Entry>::new());
    let (user, hydrated) = identity::use_identity();
    let timeline = Memo::new(move |_| {
        let mut timeline = Timeline::of(rendered.iter().cloned());
        live.with(|entries| entries.iter().cloned().for_each(|e| timeline.add(e)));
        timeline
    });
    let posts = Memo::new(move |_| timeline.with(Timeline::posts));
    let by_id = Memo::new(move |_| {
        posts.with(|posts| posts.iter().map(|p| (p.id.clone(), p.clone())).collect())
    });
    provide_context(Room {
        name: StoredValue::new(room),
        rendered_at,
        timeline,
        posts,
        by_id,
        live,
        channel: RwSignal::new(None),
        me: user,
        signed_in: RwSignal::new(false),
        hydrated,
        at_bottom: RwSignal::new(true),
        unread: RwSignal::new(0),
        unread_from: RwSignal::new(None),
        editing: RwSignal::new(None),
        problem: RwSignal::new(None),
        debug,
    });
    view! {
        <MessageList/>
        {move || match user.get() {
            Some(me) => view! { <LiveRoom me user/> }.into_any(),
            None if hydrated.get() => view! {
                <div class="composer-area">
                    <NameForm on_save=Callback::new(move |chosen| user.set(Some(chosen)))/>
                </div>
            }.into_any(),
            None => view! {
                <div class="composer-area"><p class="hint">"Connecting…"</p></div>
            }.into_any(),
        }}
    }
}

/// The connected part of a room: the channel, presence, connection state, typing line and
/// composer.
#[component]
fn LiveRoom(me: ChatUser, user: RwSignal<Option<ChatUser>>) -> impl IntoView {
    let room = expect_context::<Room>();
    let token = identity::load_token();
    room.signed_in.set(token.is_some());
    let options = ChannelOptions {
        presence: true,
        history: true,
        extras: identity::extras(&me),
        token,
    };
    let gap = RwSignal::new(false);
    let typists = RwSignal::new(Typists::default());
    let channel = use_channel(&room.name.get_value(), options, move |frame| {
        if frame.action == Action::Gap {
            gap.set(true);
        }
        typists.maybe_update(|t| {
            let before = t.clone();
            t.apply(frame, js_sys::Date::now());
            *t != before
        });
        let incoming = Entry::all_in(frame);
        if incoming.is_empty() {
            return;
        }
        if matches!(frame.action, Action::Message | Action::Event) {
            note_unread(&room, &incoming);
        }
        room.live.update(|list| list.extend(incoming));
    });
    room.channel.set(Some(channel));
    on_cleanup(move || room.channel.set(None));
    if let Ok(ticker) = set_interval_with_handle(
        move || {
            typists.maybe_update(|t| {
                let before = t.clone();
                t.forget_quiet(js_sys::Date::now());
                *t != before
            });
        },
        Duration::from_secs(1),
    ) {
        on_cleanup(move || ticker.clear());
    }
    // A change the server refused is reported once, then given up (a message stays, with a
    // retry).
    Effect::new(move |_| {
        let refused: Vec<(String, ErrorCode)> = channel.unsent.with(|unsent| {
            unsent
                .iter()
                .filter(|u| u.refers.is_some())
                .filter_map(|u| u.refused.as_ref().map(|r| (u.id.clone(), r.code)))
                .collect()
        });
        for (id, code) in refused {
            room.problem
                .set(Some(refusals::sentence(code, Attempt::Change).into()));
            channel.forget(&id);
        }
    });

    let failure = RwSignal::new(None::<(String, String)>);
    let me = StoredValue::new(me);
    let draft = RwSignal::new(String::new());
    let send = move |path: SendPath| {
        let text = draft.get_untracked();
        let message = ChatMessage {
            id: browser::random_id(),
            text: text.clone(),
            user: me.get_value(),
            sent_at: browser::now_iso(),
        };
        if message.text.trim().is_empty() {
            return;
        }
        if let Some(problem) = message.problem() {
            failure.set(Some(("invalid".into(), problem.into())));
            return;
        }
        draft.set(String::new());
        failure.set(None);
        room.problem.set(None);
        // A message sent from a debug control that the server refuses goes back into the
        // composer, so nothing typed is lost; one sent normally stays in the list to retry.
        let refused = move |code: String, why: String| {
            if draft.get_untracked().is_empty() {
                draft.set(text);
            }
            failure.set(Some((code, why)));
        };
        let payload = serde_json::to_value(&message).unwrap_or_default();
        match path {
            SendPath::Socket => {
                room.at_bottom.set(true);
                room.unread_from.set(None);
                channel.send(message.id, payload, None);
            }
            SendPath::Unjoined => channel.send_to(UNJOINED_ROOM, payload, move |outcome| {
                if let Err(error) = outcome {
                    let why = refusals::explain(error.code, &error.message, Attempt::Send);
                    refused(error.code.to_string(), why);
                }
            }),
            SendPath::ServerFunction => spawn_local(async move {
                if let Err(error) = send_message(room.name.get_value(), message).await {
                    refused("server_function".into(), identity::explain(&error));
                }
            }),
        }
    };
    let typing_line = move || {
        let signed_in = room.signed_in.get();
        let me = me.get_value();
        typists.with(|t| t.sentence((&me.id, signed_in)))
    };
    view! {
        <aside class="presence" aria-label="People in this room">
            <h2>{move || format!("Here now · {}", people(&channel).len())}</h2>
            <ul>
                <For each=move || people(&channel) key=|p| (p.id.clone(), p.verified, p.tabs) let:person>
                    <li class="person" data-user=person.id.clone()>
                        <span class="dot" style:background=person.colour.clone() aria-hidden="true"></span>
                        {person.name.clone()}
                        {(person.tabs > 1).then(|| format!(" ({} tabs)", person.tabs))}
                        {person.verified.then(|| view! {
                            <span class="verified" title="Signed in" role="img" aria-label="signed in"></span>
                        })}
                    </li>
                </For>
            </ul>
        </aside>
        <div class="composer-area">
            <p class="connection" data-status=move || channel.status.get().label()>
                <span class="state" role="status">
                    <span class="pill">{move || channel.status.get().label()}</span>
                    {move || match channel.queued.get() {
                        0 => String::new(),
                        n => format!("{n} waiting to send"),
                    }}
                </span>
                <button type="button" class="link" on:click=move |_| user.set(None)>"Change name"</button>
            </p>
            {move || gap.get().then(|| view! {
                <p class="gap-notice" role="status">
                    "Some messages from while you were away are no longer available."
                </p>
            })}
            {move || failure.get().map(|(code, why)| view! {
                <p class="send-error" role="alert" data-code=code.clone()>
                    {why} {room.debug.then(|| view! { " " <code>"("{code.clone()}")"</code> })}
                </p>
            })}
            {move || room.problem.get().map(|why| view! {
                <p class="send-error change-error" role="alert">
                    {why}
                    <button type="button" class="link dismiss" on:click=move |_| room.problem.set(None)>"Dismiss"</button>
                </p>
            })}
            <JoinRefusal channel/>
            <p class="typing" aria-live="polite">{typing_line}</p>
            <Composer draft channel on_send=Callback::new(move |()| send(SendPath::Socket))/>
            {room.debug.then(|| view! {
                <div class="debug">
                    <button type="button" class="via-server" on:click=move |_| send(SendPath::ServerFunction)>
                        "Send via server function"
                    </button>
                    <button type="button" class="to-unjoined" on:click=move |_| send(SendPath::Unjoined)>
                        "Send to a room I have not joined"
                    </button>
                </div>
            })}
        </div>
    }
}

/// Counts new messages by others that arrive while the reader is not at the newest (reading
/// older ones, or away from the tab), and remembers where they start.
fn note_unread(room: &Room, incoming: &[Entry]) {
    let away = !room.at_bottom.get_untracked() || browser::tab_hidden();
    for entry in incoming {
        let new_message = matches!(entry.said, message::Said::Message { .. });
        let seen = room.timeline.with_untracked(|t| t.holds(&entry.id));
        let mine = room
            .me
            .with_untracked(|me| me.as_ref().is_some_and(|me| me.id == entry.author.id));
        if !new_message || seen || mine || !away {
            continue;
        }
        if !room.at_bottom.get_untracked() {
            room.unread.update(|n| *n += 1);
        }
        if room.unread_from.get_untracked().is_none() {
            room.unread_from.set(Some(entry.id.clone()));
        }
    }
}

/// How a message leaves the page.
#[derive(Clone, Copy)]
enum SendPath {
    /// Over the page's WebSocket to the room.
    Socket,
    /// Over the page's WebSocket to a room it has not joined (debug control).
    Unjoined,
    /// Over HTTP, through the `send_message` server function.
    ServerFunction,
}

/// One person in the room, however many tabs they have open.
#[derive(Clone, PartialEq)]
struct Person {
    id: String,
    name: String,
    colour: String,
    verified: bool,
    tabs: usize,
}

/// The presence list grouped by person, as the server names them: a signed-in person by
/// their token's user id, a guest by the id its page joined with — never one with the other,
/// so a guest cannot pass for a signed-in person.
fn people(channel: &Channel) -> Vec<Person> {
    let mut people: Vec<Person> = Vec::new();
    for member in channel.presence.get() {
        let author = Author::of(&member);
        match people
            .iter_mut()
            .find(|p| p.id == author.id && p.verified == author.verified)
        {
            Some(person) => person.tabs += 1,
            None => people.push(Person {
                id: author.id,
                name: author.name,
                colour: author.colour,
                verified: author.verified,
                tabs: 1,
            }),
        }
    }
    people
}
