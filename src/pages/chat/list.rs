//! The message list: the room's posts under day headings, with the reader's place kept.
//!
//! It follows the newest message while the reader is at the bottom and stays still while they
//! read older ones: new messages by others are counted ("3 new messages", which takes the
//! reader down to them) and an unread marker shows where they start. Scrolling to the top, or
//! "Load earlier messages", pages back through the history (`history` with `before`) and keeps
//! the message the reader was looking at where it was. Times and days are the server's until
//! the page runs in the browser, then the reader's (time zone and language).

use leptos::html::Div;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::row::MessageRow;
use super::time::Day;
use super::timeline::Timeline;
use super::Room;
use crate::browser;
use crate::pages::refusals::{self, Attempt};
use crate::realtime::ConnectionStatus;

/// Messages asked for per page of earlier history.
const PAGE: usize = 50;
/// The reader is "at the bottom" within this many pixels of it.
const NEAR_BOTTOM_PX: i32 = 48;
/// Earlier messages load when the reader scrolls within this many pixels of the top.
const LOAD_WITHIN_PX: i32 = 200;

/// One line of the list.
#[derive(Debug, Clone, PartialEq)]
enum Row {
    /// A day's heading.
    Day { key: String, heading: String },
    /// Where the messages the reader has not seen start.
    Unread,
    /// A message (stored, or still on its way).
    Message { id: String },
}

impl Row {
    fn key(&self) -> String {
        match self {
            // The heading is part of the key: it changes once the reader's language is known.
            Row::Day { key, heading } => format!("day:{key}:{heading}"),
            Row::Unread => "unread".into(),
            Row::Message { id } => format!("message:{id}"),
        }
    }
}

/// The room's messages, a way to earlier ones, and the "new messages" control.
#[component]
pub fn MessageList() -> impl IntoView {
    let room = expect_context::<Room>();
    let list = NodeRef::<Div>::new();
    let loading = RwSignal::new(false);
    let reached_start = RwSignal::new(false);
    let earlier_problem = RwSignal::new(None::<String>);
    // The message the reader was looking at while an earlier page loads, and how far below
    // the list's top it was.
    let anchor = StoredValue::new(None::<(String, f64)>);
    let oldest = Memo::new(move |_| room.timeline.with(Timeline::oldest_seq));
    let at_start = move || reached_start.get() || matches!(oldest.get(), None | Some(1));

    let pending = Memo::new(move |_| {
        let unsent = room
            .channel
            .get()
            .map(|channel| channel.unsent.get())
            .unwrap_or_default();
        room.timeline.with(|timeline| {
            unsent
                .into_iter()
                .filter(|u| u.refers.is_none() && !timeline.holds(&u.id))
                .map(|u| u.id)
                .collect::<Vec<_>>()
        })
    });
    let rows = Memo::new(move |_| {
        let hydrated = room.hydrated.get();
        let offset = move |ms: i64| match hydrated {
            true => browser::local_offset_minutes(ms),
            false => 0,
        };
        let now = match hydrated {
            true => browser::now_ms(),
            false => room.rendered_at,
        };
        let today = Day::at(now, offset(now));
        let unread_from = room.unread_from.get();
        let mut rows = Vec::new();
        let mut shown_day = None;
        let mut day_of = |ms: i64, rows: &mut Vec<Row>| {
            let day = Day::at(ms, offset(ms));
            if shown_day == Some(day) {
                return;
            }
            shown_day = Some(day);
            let heading = match hydrated {
                true if day != today && day != today.yesterday() => {
                    browser::local_date(ms, day.year != today.year)
                }
                _ => day.heading(today),
            };
            rows.push(Row::Day {
                key: day.key(),
                heading,
            });
        };
        room.posts.with(|posts| {
            for post in posts {
                if let Some(at) = post.at {
                    day_of(at, &mut rows);
                }
                if unread_from.as_deref() == Some(post.id.as_str()) {
                    rows.push(Row::Unread);
                }
                rows.push(Row::Message {
                    id: post.id.clone(),
                });
            }
        });
        for id in pending.get() {
            day_of(now, &mut rows);
            rows.push(Row::Message { id });
        }
        rows
    });

    // After the list changed (and the page drew it): keep the reader's message in place while
    // an earlier page loads, else follow the newest message if the reader is at the bottom.
    Effect::new(move |_| {
        rows.track();
        room.posts.track();
        request_animation_frame(move || match anchor.try_get_value().flatten() {
            Some(place) => restore(list, &place),
            None if room.at_bottom.get_untracked() => scroll_to_bottom(list),
            None => {}
        });
    });

    let load_earlier = move || {
        let Some(channel) = room.channel.get_untracked() else {
            return;
        };
        let connected = channel.status.get_untracked() == ConnectionStatus::Connected;
        let start =
            reached_start.get_untracked() || matches!(oldest.get_untracked(), None | Some(1));
        if loading.get_untracked() || start || !connected {
            return;
        }
        anchor.set_value(first_visible(list));
        loading.set(true);
        earlier_problem.set(None);
        channel.history(oldest.get_untracked(), PAGE, move |outcome| {
            loading.set(false);
            match outcome {
                Ok(0) => reached_start.set(true),
                Ok(_) => {}
                Err(error) => earlier_problem.set(Some(
                    refusals::sentence(error.code, Attempt::LoadEarlier).into(),
                )),
            }
            request_animation_frame(move || {
                if let Some(place) = anchor.try_get_value().flatten() {
                    restore(list, &place);
                    anchor.set_value(None);
                }
            });
        });
    };

    // Where the list stood at its last scroll event. A reader leaves the bottom by scrolling
    // up: rows added below between a scroll to the bottom and its event only look like it (the
    // event then measures the list with them), and must not stop the list following.
    let last_top = StoredValue::new(0);
    let on_scroll = move |_| {
        let Some(element) = list.get_untracked() else {
            return;
        };
        let top = element.scroll_top();
        let went_up = top < last_top.get_value();
        last_top.set_value(top);
        let from_bottom = element.scroll_height() - top - element.client_height();
        let bottom = from_bottom <= NEAR_BOTTOM_PX || (room.at_bottom.get_untracked() && !went_up);
        if room.at_bottom.get_untracked() != bottom {
            room.at_bottom.set(bottom);
        }
        if bottom && room.unread.get_untracked() > 0 {
            room.unread.set(0);
        }
        if element.scroll_top() <= LOAD_WITHIN_PX {
            load_earlier();
        }
    };

    let jump_to_new = move |_| {
        room.unread.set(0);
        jump_to_unread(list);
    };
    let label = format!("Messages in #{}", room.name.get_value());
    let beginning = format!("This is the beginning of #{}.", room.name.get_value());
    view! {
        <div class="message-pane">
            <div class="messages" node_ref=list role="log" aria-label=label tabindex="0" on:scroll=on_scroll>
                <div class="history-start">
                    {move || match at_start() {
                        true => view! { <p class="beginning">{beginning.clone()}</p> }.into_any(),
                        false => view! {
                            <button
                                type="button"
                                class="load-earlier"
                                aria-busy=move || loading.get().to_string()
                                on:click=move |_| load_earlier()
                            >
                                {move || match loading.get() {
                                    true => "Loading earlier messages…",
                                    false => "Load earlier messages",
                                }}
                            </button>
                        }.into_any(),
                    }}
                    {move || earlier_problem.get().map(|why| view! {
                        <p class="send-error" role="alert">{why}</p>
                    })}
                </div>
                <ol class="message-list">
                    <For each=move || rows.get() key=Row::key let:row>
                        {match row {
                            Row::Day { key, heading } => view! {
                                <li class="day" data-day=key><h2 class="day-heading">{heading}</h2></li>
                            }.into_any(),
                            Row::Unread => view! {
                                <li class="unread-marker"><span>"New messages"</span></li>
                            }.into_any(),
                            Row::Message { id } => view! { <MessageRow id/> }.into_any(),
                        }}
                    </For>
                </ol>
            </div>
            {move || {
                let count = room.unread.get();
                (count > 0 && !room.at_bottom.get()).then(|| view! {
                    <button type="button" class="new-messages" on:click=jump_to_new>
                        {match count {
                            1 => "1 new message".to_string(),
                            n => format!("{n} new messages"),
                        }}
                        <span aria-hidden="true">" ↓"</span>
                    </button>
                })
            }}
        </div>
    }
}

fn scroll_to_bottom(list: NodeRef<Div>) {
    if let Some(element) = list.get_untracked() {
        element.set_scroll_top(element.scroll_height());
    }
}

/// Every message element in the list, with its id.
fn message_elements(list: &web_sys::HtmlDivElement) -> Vec<(String, web_sys::Element)> {
    let Ok(nodes) = list.query_selector_all(".message[data-id]") else {
        return Vec::new();
    };
    (0..nodes.length())
        .filter_map(|i| nodes.item(i)?.dyn_into::<web_sys::Element>().ok())
        .filter_map(|element| Some((element.get_attribute("data-id")?, element)))
        .collect()
}

/// The first message the reader can see, and how far below the list's top it is.
fn first_visible(list: NodeRef<Div>) -> Option<(String, f64)> {
    let element = list.get_untracked()?;
    let top = element.get_bounding_client_rect().top();
    message_elements(&element)
        .into_iter()
        .map(|(id, message)| (id, message.get_bounding_client_rect()))
        .find(|(_, rect)| rect.bottom() > top)
        .map(|(id, rect)| (id, rect.top() - top))
}

/// Scrolls so that the message of `place` is where it was.
fn restore(list: NodeRef<Div>, (id, offset): &(String, f64)) {
    let Some(element) = list.get_untracked() else {
        return;
    };
    let top = element.get_bounding_client_rect().top();
    if let Some((_, message)) = message_elements(&element)
        .into_iter()
        .find(|(found, _)| found == id)
    {
        let moved = message.get_bounding_client_rect().top() - top - offset;
        element.set_scroll_top(element.scroll_top() + moved.round() as i32);
    }
}

/// Takes the reader down to the first new message (or to the newest, when they all fit).
fn jump_to_unread(list: NodeRef<Div>) {
    let Some(element) = list.get_untracked() else {
        return;
    };
    let bottom = element.scroll_height() - element.client_height();
    let target = element
        .query_selector(".unread-marker")
        .ok()
        .flatten()
        .map(|marker| {
            let above =
                marker.get_bounding_client_rect().top() - element.get_bounding_client_rect().top();
            (f64::from(element.scroll_top()) + above).round() as i32
        })
        .map_or(bottom, |marker| marker.min(bottom));
    let options = web_sys::ScrollToOptions::new();
    options.set_top(f64::from(target));
    options.set_behavior(match browser::prefers_reduced_motion() {
        true => web_sys::ScrollBehavior::Instant,
        false => web_sys::ScrollBehavior::Smooth,
    });
    element.scroll_to_with_scroll_to_options(&options);
}
