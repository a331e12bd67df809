//! One message in the list: who wrote it and when, its text (links clickable, everything else
//! literal), its reactions, and what the reader may do with it — react; edit in place or
//! delete (after a confirmation) if it is theirs; retry or discard it if the server refused it.
//!
//! Each part reads only the piece of the message it shows, so a reaction arriving from someone
//! else never rebuilds the edit box the reader is typing in or takes their focus.

use leptos::ev::KeyboardEvent;
use leptos::html::{Button, Textarea};
use leptos::prelude::*;
use serde_json::{json, Value};
use switchboard_protocol::ErrorCode;

use super::links::{pieces, Piece};
use super::message::{Author, ChatMessage, REACTIONS};
use super::time;
use super::timeline::{Post, Reactions};
use super::Room;
use crate::browser;
use crate::pages::colour::safe_colour;
use crate::pages::refusals::{self, Attempt};
use crate::realtime::Refers;

/// Where a message stands between this page and the server.
#[derive(Debug, Clone, PartialEq)]
enum Delivery {
    /// Stored by the server.
    Stored,
    /// This page's, on its way.
    Sending,
    /// This page's, refused by the server: its code and its words.
    Refused(ErrorCode, String),
}

/// A message as its row shows it.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    post: Post,
    delivery: Delivery,
    /// The text of this page's edit on its way, shown meanwhile.
    saving: Option<String>,
}

/// The message with this id, as stored or as still on its way from this page.
fn shown(room: Room, id: &str) -> Option<Shown> {
    let channel = room.channel.get();
    let unsent = channel.map(|c| c.unsent.get()).unwrap_or_default();
    if let Some(post) = room.by_id.with(|posts| posts.get(id).cloned()) {
        let saving = unsent
            .iter()
            .filter(|u| u.refused.is_none())
            .filter(|u| matches!(&u.refers, Some(Refers::Replaces(target)) if target == id))
            .filter_map(|u| u.payload.get("text").and_then(Value::as_str))
            .next_back()
            .map(str::to_string);
        return Some(Shown {
            post,
            delivery: Delivery::Stored,
            saving,
        });
    }
    let unsent = unsent
        .into_iter()
        .find(|u| u.id == id && u.refers.is_none())?;
    let message: ChatMessage = serde_json::from_value(unsent.payload).ok()?;
    let me = room.me.get()?;
    Some(Shown {
        post: Post {
            id: id.to_string(),
            seq: None,
            at: time::parse_iso(&message.sent_at),
            author: Author {
                id: me.id,
                name: me.name,
                colour: safe_colour(Some(&me.colour)),
                verified: room.signed_in.get(),
            },
            socket: None,
            text: message.text,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        },
        delivery: match unsent.refused {
            Some(error) => Delivery::Refused(error.code, error.message),
            None => Delivery::Sending,
        },
        saving: None,
    })
}

/// Sends a change to an earlier message (an edit, a deletion, a reaction) under `id`.
fn send_change(room: Room, id: String, payload: Value, refers: Refers) {
    if let Some(channel) = room.channel.get_untracked() {
        room.problem.set(None);
        channel.send(id, payload, Some(refers));
    }
}

/// Focuses an element once the page has drawn it.
fn focus_when_drawn(element: impl FnOnce() -> Option<web_sys::HtmlElement> + 'static) {
    request_animation_frame(move || {
        if let Some(element) = element() {
            let _ = element.focus();
        }
    });
}

/// One message.
#[component]
pub fn MessageRow(id: String) -> AnyView {
    let room = expect_context::<Room>();
    let id = StoredValue::new(id);
    let shown = Memo::new(move |_| shown(room, &id.read_value()));
    let is = move |read: fn(&Shown) -> bool| shown.with(|s| s.as_ref().is_some_and(read));
    let deleted = Memo::new(move |_| is(|s| s.post.deleted));
    let stored = Memo::new(move |_| is(|s| s.delivery == Delivery::Stored));
    let mine =
        Memo::new(move |_| shown.with(|s| s.as_ref().is_some_and(|s| room.is_me(&s.post.author))));
    let may_change = Memo::new(move |_| {
        shown.with(|s| {
            s.as_ref()
                .is_some_and(|s| s.delivery == Delivery::Stored && room.may_change(&s.post))
        })
    });
    let editing = Memo::new(move |_| {
        room.editing
            .with(|e| e.as_deref() == Some(&*id.read_value()))
    });
    let picking = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let react_button = NodeRef::<Button>::new();

    let author = move || shown.with(|s| s.as_ref().map(|s| s.post.author.clone()));
    let author_view = move || {
        author().map(|author| {
            view! {
                <span class="author">
                    <span class="swatch" style:background=author.colour.clone() aria-hidden="true"></span>
                    <span class="name">{author.name.clone()}</span>
                    {author.verified.then(|| view! {
                        <span class="verified" title="Signed in" role="img" aria-label="signed in"></span>
                    })}
                </span>
            }
            .into_any()
        })
    };
    let at = Memo::new(move |_| shown.with(|s| s.as_ref().and_then(|s| s.post.at)));
    let time_view = move || {
        at.get().map(|at| {
            // The server cannot know the reader's time zone: UTC until the page runs.
            let (clock, full) = match room.hydrated.get() {
                true => (browser::local_clock(at), browser::local_date_time(at)),
                false => (time::clock(at, 0), format!("{} UTC", time::iso(at))),
            };
            view! { <time datetime=time::iso(at) title=full>{clock}</time> }.into_any()
        })
    };
    let edited = Memo::new(move |_| is(|s| s.post.edited));
    let text = Memo::new(move |_| {
        shown.with(|s| {
            s.as_ref()
                .map(|s| s.saving.clone().unwrap_or_else(|| s.post.text.clone()))
                .unwrap_or_default()
        })
    });
    let saving = Memo::new(move |_| is(|s| s.saving.is_some()));
    let delivery = Memo::new(move |_| shown.with(|s| s.as_ref().map(|s| s.delivery.clone())));
    let reactions = Memo::new(move |_| {
        shown.with(|s| {
            s.as_ref()
                .map(|s| s.post.reactions.clone())
                .unwrap_or_default()
        })
    });

    let body = move || {
        if deleted.get() {
            return view! { <p class="deleted">"message deleted"</p> }.into_any();
        }
        if editing.get() {
            let original = text.get_untracked();
            return view! { <EditBox id=id.get_value() original/> }.into_any();
        }
        view! {
            <p class="text" class:saving=move || saving.get()>
                {move || linked(&text.get())}
            </p>
        }
        .into_any()
    };

    let delivery_view = move || match delivery.get()? {
        Delivery::Stored => None,
        Delivery::Sending => Some(view! { <p class="delivery">"sending…"</p> }.into_any()),
        Delivery::Refused(code, message) => Some(
            view! {
                <p class="delivery refused" role="alert">
                    "not sent — "
                    <button type="button" class="retry" on:click=move |_| {
                        if let Some(channel) = room.channel.get_untracked() {
                            channel.retry(&id.read_value());
                        }
                    }>"retry"</button>
                    " "
                    <span class="why">{refusals::explain(code, &message, Attempt::Send)}</span>
                    " "
                    <button type="button" class="discard" on:click=move |_| {
                        if let Some(channel) = room.channel.get_untracked() {
                            channel.forget(&id.read_value());
                        }
                    }>"discard"</button>
                </p>
            }
            .into_any(),
        ),
    };

    let my_reaction = move |emoji: &str| {
        let (me_id, signed_in) = (
            room.me.with(|me| me.as_ref().map(|me| me.id.clone())),
            room.signed_in.get(),
        );
        reactions.with(|all| {
            all.iter().find(|r| r.emoji == emoji).is_some_and(|r| {
                r.people
                    .iter()
                    .any(|p| Some(&p.id) == me_id.as_ref() && p.verified == signed_in)
            })
        })
    };
    let toggle = move |emoji: String| {
        toggle_on(room, &id.read_value(), &emoji, my_reaction(&emoji));
    };
    let reactions_view = move || {
        let emojis =
            move || reactions.with(|r| r.iter().map(|r| r.emoji.clone()).collect::<Vec<_>>());
        (!emojis().is_empty()).then(|| {
            view! {
            <ul class="reactions" aria-label="Reactions">
                <For each=emojis key=|emoji| emoji.clone() children=move |emoji| {
                    let mine = Signal::derive({
                        let emoji = emoji.clone();
                        move || my_reaction(&emoji)
                    });
                    view! { <ReactionChip emoji reactions mine on_toggle=Callback::new(toggle)/> }
                }/>
            </ul>
        }.into_any()
        })
    };

    let picker_view = move || {
        picking.get().then(|| {
            let first = NodeRef::<Button>::new();
            focus_when_drawn(move || first.get_untracked().map(Into::into));
            let close = move || {
                picking.set(false);
                focus_when_drawn(move || react_button.get_untracked().map(Into::into));
            };
            view! {
                <div
                    class="picker"
                    role="group"
                    aria-label="Choose a reaction"
                    on:keydown=move |ev: KeyboardEvent| {
                        if ev.key() == "Escape" {
                            ev.prevent_default();
                            close();
                        }
                    }
                >
                    {REACTIONS.iter().enumerate().map(|(index, (emoji, name))| {
                        let button = if index == 0 { first } else { NodeRef::new() };
                        view! {
                            <button
                                type="button"
                                class="pick"
                                node_ref=button
                                aria-label=format!("React with {name}")
                                title=name.to_string()
                                on:click=move |_| {
                                    toggle_on(room, &id.get_value(), emoji, my_reaction(emoji));
                                    close();
                                }
                            >{*emoji}</button>
                        }
                    }).collect_view()}
                </div>
            }
            .into_any()
        })
    };

    let confirm_view = move || {
        confirming.get().then(|| {
            let delete_button = NodeRef::<Button>::new();
            focus_when_drawn(move || delete_button.get_untracked().map(Into::into));
            let cancel = move || {
                confirming.set(false);
            };
            view! {
                <div
                    class="confirm"
                    role="group"
                    aria-label="Delete this message?"
                    on:keydown=move |ev: KeyboardEvent| {
                        if ev.key() == "Escape" {
                            ev.prevent_default();
                            cancel();
                        }
                    }
                >
                    <span>"Delete this message for everyone?"</span>
                    <button type="button" class="confirm-delete" node_ref=delete_button on:click=move |_| {
                        confirming.set(false);
                        send_change(room, browser::random_id(), json!({}), Refers::Retracts(id.get_value()));
                    }>"Delete"</button>
                    <button type="button" class="cancel" on:click=move |_| cancel()>"Cancel"</button>
                </div>
            }
            .into_any()
        })
    };

    let actions_view = move || {
        (stored.get() && !deleted.get() && room.channel.get().is_some()).then(|| {
            view! {
            <div class="actions" role="toolbar" aria-label="Message actions">
                <button
                    type="button"
                    class="react"
                    node_ref=react_button
                    aria-label="Add a reaction"
                    title="Add a reaction"
                    aria-expanded=move || picking.get().to_string()
                    on:click=move |_| picking.update(|open| *open = !*open)
                >
                    <span aria-hidden="true">"☺+"</span>
                </button>
                {move || may_change.get().then(|| view! {
                    <button type="button" class="edit" aria-label="Edit message" title="Edit"
                        on:click=move |_| room.editing.set(Some(id.get_value()))>
                        <span aria-hidden="true">"✎"</span>
                    </button>
                    <button type="button" class="delete" aria-label="Delete message" title="Delete"
                        on:click=move |_| confirming.set(true)>
                        <span aria-hidden="true">"🗑"</span>
                    </button>
                }.into_any())}
            </div>
        }.into_any()
        })
    };

    let author_id = move || author().map(|a| a.id).unwrap_or_default();
    // Each part is its own view, so the row's type stays shallow enough to compile.
    let meta = view! {
        <div class="meta">
            {author_view}
            {time_view}
            {move || edited.get().then(|| view! { <span class="edited">"(edited)"</span> })}
        </div>
    }
    .into_any();
    let content = view! { {body} {delivery_view} {reactions_view} }.into_any();
    let controls = view! { {actions_view} {picker_view} {confirm_view} }.into_any();
    view! {
        <li
            class="message"
            tabindex="-1"
            class:mine=move || mine.get()
            class:sending=move || delivery.get() == Some(Delivery::Sending)
            class:refused=move || matches!(delivery.get(), Some(Delivery::Refused(..)))
            class:is-deleted=move || deleted.get()
            data-id=id.get_value()
            data-author=author_id
        >
            {meta}
            {content}
            {controls}
        </li>
    }
    .into_any()
}

/// Adds `emoji` to a message, or takes this page's back if it is there already.
fn toggle_on(room: Room, target: &str, emoji: &str, already: bool) {
    send_change(
        room,
        browser::random_id(),
        json!({ "emoji": emoji, "on": !already }),
        Refers::ReactsTo(target.to_string()),
    );
}

/// One emoji's count under a message; pressing it adds or takes back the reader's reaction,
/// and hovering it says who reacted.
#[component]
fn ReactionChip(
    emoji: String,
    reactions: Memo<Vec<Reactions>>,
    mine: Signal<bool>,
    on_toggle: Callback<String>,
) -> impl IntoView {
    let emoji = StoredValue::new(emoji);
    let people = move || {
        reactions.with(|all| {
            all.iter()
                .find(|r| r.emoji == *emoji.read_value())
                .map(|r| r.people.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let who = move || {
        let names = people();
        format!(
            "{} reacted with {}",
            names_in_words(&names),
            emoji.read_value()
        )
    };
    view! {
        <li>
            <button
                type="button"
                class="reaction"
                class:mine=move || mine.get()
                aria-pressed=move || mine.get().to_string()
                title=who
                aria-label=move || format!("{} {}: {}", emoji.read_value(), people().len(), who())
                on:click=move |_| on_toggle.run(emoji.get_value())
            >
                <span class="emoji">{emoji.get_value()}</span>
                <span class="count">{move || people().len()}</span>
            </button>
        </li>
    }
}

/// "Ada", "Ada and Ben", "Ada, Ben and Cy".
fn names_in_words(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A message's text with its web addresses as links; the rest literal.
fn linked(text: &str) -> impl IntoView {
    pieces(text)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.to_string().into_any(),
            Piece::Link(address) => view! {
                <a href=address.to_string() target="_blank" rel="noopener noreferrer">{address.to_string()}</a>
            }
            .into_any(),
        })
        .collect_view()
}

/// Editing a message in place: Enter saves, Shift+Enter breaks the line, Escape cancels.
#[component]
fn EditBox(id: String, original: String) -> impl IntoView {
    let room = expect_context::<Room>();
    let draft = RwSignal::new(original.clone());
    let field = NodeRef::<Textarea>::new();
    focus_when_drawn(move || field.get_untracked().map(Into::into));
    let id = StoredValue::new(id);
    let original = StoredValue::new(original);
    let close = move || {
        room.editing.set(None);
        super::composer::focus_draft();
    };
    let save = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        if text != original.get_value() {
            if let Some(me) = room.me.get_untracked() {
                let edit_id = browser::random_id();
                let message = ChatMessage {
                    id: edit_id.clone(),
                    text,
                    user: me,
                    sent_at: browser::now_iso(),
                };
                if let Some(problem) = message.problem() {
                    room.problem.set(Some(problem.into()));
                    return;
                }
                let payload = serde_json::to_value(&message).unwrap_or_default();
                send_change(room, edit_id, payload, Refers::Replaces(id.get_value()));
            }
        }
        close();
    };
    view! {
        <div class="edit-box">
            <textarea
                class="edit-draft"
                node_ref=field
                aria-label="Edit message"
                maxlength=super::message::MAX_TEXT_CHARS.to_string()
                rows=move || draft.with(|d| d.matches('\n').count() + 1).min(8)
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev: KeyboardEvent| {
                    if ev.is_composing() {
                        return;
                    }
                    match ev.key().as_str() {
                        "Enter" if !ev.shift_key() => {
                            ev.prevent_default();
                            save();
                        }
                        "Escape" => {
                            ev.prevent_default();
                            close();
                        }
                        _ => {}
                    }
                }
            ></textarea>
            <div class="edit-controls">
                <span class="hint">"Enter to save · Escape to cancel"</span>
                <button type="button" class="cancel" on:click=move |_| close()>"Cancel"</button>
                <button
                    type="button"
                    class="save"
                    disabled=move || draft.with(|d| d.trim().is_empty())
                    on:click=move |_| save()
                >"Save"</button>
            </div>
        </div>
    }
}
