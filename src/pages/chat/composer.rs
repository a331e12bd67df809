//! The composer: a multi-line draft (Enter sends, Shift+Enter breaks the line, Up in an empty
//! draft edits one's last message, as in the chats people already use), a count of the
//! characters left near the limit, and the "typing" updates the others see.

use leptos::ev::KeyboardEvent;
use leptos::prelude::*;
use std::time::Duration;
use wasm_bindgen::JsCast;

use super::message::MAX_TEXT_CHARS;
use super::typing::{ping, PING_EVERY_MS, QUIET_AFTER_MS};
use super::Room;
use crate::realtime::Channel;

/// From this many characters left, the composer shows the count.
const SHOW_COUNT_FROM: usize = 200;
/// Lines the draft grows to before it scrolls.
const MAX_ROWS: usize = 8;

/// The draft and its send button. `on_send` sends the draft.
#[component]
pub fn Composer(draft: RwSignal<String>, channel: Channel, on_send: Callback<()>) -> impl IntoView {
    let room = expect_context::<Room>();
    let typing = Typing::new(channel);
    on_cleanup(move || typing.cancel_timer());
    let left = move || MAX_TEXT_CHARS.saturating_sub(draft.with(|d| d.chars().count()));
    let rows = move || draft.with(|d| d.matches('\n').count() + 1).min(MAX_ROWS);
    let submit = move || {
        typing.stop();
        on_send.run(());
    };
    let on_keydown = move |ev: KeyboardEvent| {
        if ev.is_composing() {
            return;
        }
        match ev.key().as_str() {
            "Enter" if !ev.shift_key() => {
                ev.prevent_default();
                submit();
            }
            "ArrowUp" if draft.with_untracked(String::is_empty) => {
                let last_own = room
                    .posts
                    .get_untracked()
                    .into_iter()
                    .rev()
                    .find(|post| room.may_change(post));
                if let Some(post) = last_own {
                    ev.prevent_default();
                    room.editing.set(Some(post.id));
                }
            }
            _ => {}
        }
    };
    let label = format!("Message #{}", room.name.get_value());
    view! {
        <form class="composer" on:submit=move |ev| {
            ev.prevent_default();
            submit();
        }>
            <textarea
                class="draft"
                name="text"
                rows=rows
                aria-label=label.clone()
                aria-describedby="composer-hint"
                placeholder=label
                autocomplete="off"
                maxlength=MAX_TEXT_CHARS.to_string()
                prop:value=move || draft.get()
                on:input=move |ev| {
                    draft.set(event_target_value(&ev));
                    if draft.with_untracked(|d| d.trim().is_empty()) {
                        typing.stop();
                    } else {
                        typing.keystroke();
                    }
                }
                on:keydown=on_keydown
            ></textarea>
            <button type="submit">"Send"</button>
        </form>
        <p class="composer-hint" id="composer-hint">
            <span>"Enter to send · Shift+Enter for a new line"</span>
            {move || (left() <= SHOW_COUNT_FROM).then(|| view! {
                <span class="count" class:at-limit=move || left() == 0>
                    {move || format!("{} characters left", left())}
                </span>
            })}
        </p>
    }
}

/// Puts the keyboard back in the composer (after editing a message in place).
pub fn focus_draft() {
    let draft = leptos::prelude::document()
        .query_selector(".composer .draft")
        .ok()
        .flatten()
        .and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok());
    if let Some(draft) = draft {
        let _ = draft.focus();
    }
}

/// This page's "typing" updates: one when typing starts and then at most every
/// [`PING_EVERY_MS`], and a stop when the draft is sent or emptied, or [`QUIET_AFTER_MS`]
/// after the last keystroke.
#[derive(Clone, Copy)]
struct Typing {
    channel: Channel,
    /// When the last "typing" update went out, while typing.
    last_ping: StoredValue<Option<f64>>,
    /// The timer that says "stopped" after a quiet spell.
    quiet: StoredValue<Option<TimeoutHandle>>,
}

impl Typing {
    fn new(channel: Channel) -> Self {
        Self {
            channel,
            last_ping: StoredValue::new(None),
            quiet: StoredValue::new(None),
        }
    }

    fn keystroke(self) {
        let now = js_sys::Date::now();
        if self
            .last_ping
            .get_value()
            .is_none_or(|at| now - at >= PING_EVERY_MS)
        {
            self.channel.send_volatile(ping(true));
            self.last_ping.set_value(Some(now));
        }
        self.cancel_timer();
        let quiet = set_timeout_with_handle(
            move || self.stop(),
            Duration::from_millis(QUIET_AFTER_MS as u64),
        );
        self.quiet.set_value(quiet.ok());
    }

    fn stop(self) {
        self.cancel_timer();
        if self.last_ping.try_get_value().flatten().is_some() {
            self.channel.send_volatile(ping(false));
            self.last_ping.set_value(None);
        }
    }

    fn cancel_timer(self) {
        if let Some(timer) = self.quiet.try_get_value().flatten() {
            timer.clear();
            self.quiet.set_value(None);
        }
    }
}
