//! The home page: what Switchboard is, and a way into a chat room.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use super::DEFAULT_ROOM;

/// `/`: introduction and a room picker.
#[component]
pub fn HomePage() -> impl IntoView {
    let room = RwSignal::new(String::new());
    let navigate = use_navigate();
    let open = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = room.get_untracked();
        let name = name.trim();
        let name = if name.is_empty() { DEFAULT_ROOM } else { name };
        navigate(&format!("/chat/{name}"), Default::default());
    };
    view! {
        <section class="home">
            <h1>"Switchboard"</h1>
            <p class="lede">
                "A self-hosted realtime channel server. Browsers join named channels, "
                "send messages to everyone in them and react to each one as it arrives."
            </p>
            <p class="ctas">
                <a class="cta" href=format!("/chat/{DEFAULT_ROOM}")>"Open the support chat"</a>
                <a class="cta secondary" href=format!("/cursors/{DEFAULT_ROOM}")>"Live cursors"</a>
            </p>
            <form class="room-picker" on:submit=open>
                <label for="room">"Or open any room"</label>
                <input
                    id="room"
                    name="room"
                    placeholder=DEFAULT_ROOM
                    prop:value=move || room.get()
                    on:input=move |ev| room.set(event_target_value(&ev))
                />
                <button type="submit">"Open"</button>
            </form>
            <p class="fine">
                "Realtime endpoint: " <code>"/rt/{connection}"</code>
                " — the Xano realtime protocol, so Xano's JS SDK connects as it is."
            </p>
        </section>
    }
}
