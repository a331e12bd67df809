//! The support chat, `/chat/{room}`: the room's messages (rendered with the page, then live),
//! who is here, the connection state, and a composer. A page-level listener feeds every
//! `message`, `event` and `history` frame into one reactive list that the view is bound to.

pub mod message;
mod server;

use leptos::html::Ol;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use serde_json::Value;

use crate::browser;
use crate::identity::{self, NameForm};
use crate::realtime::{use_channel, Channel, ChannelOptions, ConnectionStatus};
use message::{merge, safe_colour, Author, ChatMessage, ChatUser};
use server::{recent_messages, send_message};

/// Channel the debug control sends to without joining it.
const UNJOINED_ROOM: &str = "not-joined";

/// `/chat/{room}`: one [`ChatRoom`] per room; changing rooms leaves the old one.
#[component]
pub fn ChatPage() -> impl IntoView {
    let room = super::use_room();
    move || view! { <ChatRoom room=room.get()/> }
}

/// A room: history from the server render, live messages once connected.
#[component]
fn ChatRoom(room: String) -> impl IntoView {
    let debug = use_query_map().read_untracked().get("debug").is_some();
    let history = Resource::new_blocking(
        {
            let room = room.clone();
            move || room.clone()
        },
        recent_messages,
    );
    let live = RwSignal::new(Vec::<ChatMessage>::new());
    let (user, hydrated) = identity::use_identity();
    let messages = move || {
        let mut all = history.get().and_then(Result::ok).unwrap_or_default();
        merge(&mut all, live.get());
        all
    };
    let list = NodeRef::<Ol>::new();
    Effect::new(move |_| {
        let count = live.with(Vec::len);
        if let (Some(list), true) = (list.get(), count > 0) {
            list.set_scroll_top(list.scroll_height());
        }
    });
    let title = room.clone();
    view! {
        <div class="chat">
            <header class="chat-header">
                <a class="back" href="/">"Switchboard"</a>
                <h1>"#" {title}</h1>
            </header>
            <ol class="messages" node_ref=list aria-live="polite">
                <Suspense fallback=|| view! { <li class="hint">"Loading messages…"</li> }>
                    <For each=messages key=|m| m.id.clone() let:message>
                        <MessageRow message hydrated/>
                    </For>
                </Suspense>
            </ol>
            {move || match user.get() {
                Some(me) => view! { <LiveRoom room=room.clone() me live user debug/> }.into_any(),
                None if hydrated.get() => view! {
                    <div class="composer-area">
                        <NameForm on_save=Callback::new(move |chosen| user.set(Some(chosen)))/>
                    </div>
                }.into_any(),
                None => view! {
                    <div class="composer-area"><p class="hint">"Connecting…"</p></div>
                }.into_any(),
            }}
        </div>
    }
}

/// One message: author, time, text (always as text, never as HTML). The author is the
/// server's word for who sent it; a signed-in author is marked as verified.
#[component]
fn MessageRow(message: ChatMessage, hydrated: RwSignal<bool>) -> impl IntoView {
    let author = message.author();
    let sent_at = message.sent_at.clone();
    // The server cannot know the reader's time zone: it shows UTC until the page hydrates.
    let time = move || match hydrated.get() {
        true => browser::local_time(&sent_at),
        false => sent_at.get(11..16).unwrap_or_default().to_string(),
    };
    view! {
        <li class="message" data-id=message.id.clone() data-author=author.id.clone()>
            <span class="author">
                <span class="swatch" style:background=safe_colour(Some(&author.colour)) aria-hidden="true"></span>
                <span class="name">{author.name.clone()}</span>
                {author.verified.then(|| view! {
                    <span class="verified" title="Signed in" role="img" aria-label="signed in"></span>
                })}
            </span>
            <time datetime=message.sent_at.clone()>{time}</time>
            <p class="text">{message.text.clone()}</p>
        </li>
    }
}

/// The connected part of a room: presence, connection state, composer.
#[component]
fn LiveRoom(
    room: String,
    me: ChatUser,
    live: RwSignal<Vec<ChatMessage>>,
    user: RwSignal<Option<ChatUser>>,
    debug: bool,
) -> impl IntoView {
    let options = ChannelOptions {
        presence: true,
        history: true,
        extras: identity::extras(&me),
        token: identity::load_token(),
    };
    let gap = RwSignal::new(false);
    let channel = use_channel(&room, options, move |frame| {
        if frame.action == switchboard_protocol::Action::Gap {
            gap.set(true);
        }
        let incoming = ChatMessage::all_in(frame);
        if !incoming.is_empty() {
            live.update(|list| merge(list, incoming));
        }
    });
    let draft = RwSignal::new(String::new());
    let failure = RwSignal::new(None::<(String, String)>);
    let room = StoredValue::new(room);
    let me = StoredValue::new(me);
    let send = move |path: SendPath| {
        let text = draft.get_untracked();
        let message = ChatMessage {
            id: browser::random_id(),
            text: text.clone(),
            user: me.get_value(),
            sent_at: browser::now_iso(),
            author: None,
        };
        if let Some(problem) = message.problem() {
            failure.set(Some(("invalid".into(), problem.into())));
            return;
        }
        draft.set(String::new());
        failure.set(None);
        // A refused message goes back into the composer, so nothing typed is lost.
        let refused = move |code: String, why: String| {
            if draft.get_untracked().is_empty() {
                draft.set(text);
            }
            failure.set(Some((code, why)));
        };
        let payload = serde_json::to_value(&message).unwrap_or(Value::Null);
        match path {
            SendPath::Socket => channel.send(payload, move |outcome| {
                if let Err(error) = outcome {
                    refused(error.code.to_string(), error.message);
                }
            }),
            SendPath::Unjoined => channel.send_to(UNJOINED_ROOM, payload, move |outcome| {
                if let Err(error) = outcome {
                    refused(error.code.to_string(), error.message);
                }
            }),
            SendPath::ServerFunction => spawn_local(async move {
                if let Err(error) = send_message(room.get_value(), message).await {
                    refused("server_function".into(), identity::explain(&error));
                }
            }),
        }
    };
    view! {
        <aside class="presence">
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
                <span class="pill">{move || channel.status.get().label()}</span>
                {move || match channel.queued.get() {
                    0 => String::new(),
                    n => format!("{n} waiting to send"),
                }}
                <button type="button" class="link" on:click=move |_| user.set(None)>"Change name"</button>
            </p>
            {move || gap.get().then(|| view! {
                <p class="gap-notice" role="status">
                    "Some messages from while you were away are no longer available."
                </p>
            })}
            {move || failure.get().map(|(code, why)| view! {
                <p class="send-error" role="alert" data-code=code.clone()>
                    <strong>{code.clone()}</strong>": "{why}
                </p>
            })}
            {move || {
                let connected = channel.status.get() == ConnectionStatus::Connected;
                channel.last_error.get().filter(|_| !connected).map(|error| view! {
                    <p class="send-error" role="alert" data-code=error.code.to_string()>
                        {error.message}
                    </p>
                })
            }}
            <form class="composer" on:submit=move |ev| {
                ev.prevent_default();
                send(SendPath::Socket);
            }>
                <input
                    class="draft"
                    name="text"
                    placeholder="Write a message"
                    autocomplete="off"
                    maxlength=message::MAX_TEXT_CHARS.to_string()
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                />
                <button type="submit">"Send"</button>
            </form>
            {debug.then(|| view! {
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
