//! The home page: what Switchboard is and where its realtime endpoint lives.

use leptos::prelude::*;

/// `/`: introduction, with a control that only works once the page has hydrated.
#[component]
pub fn HomePage() -> impl IntoView {
    let hydrated = RwSignal::new(false);
    let pings = RwSignal::new(0u32);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <section class="home">
            <h1>"Switchboard"</h1>
            <p class="lede">
                "A self-hosted realtime channel server. Browsers join named channels, "
                "send messages to everyone in them and react to each one as it arrives."
            </p>
            <p>
                "Realtime endpoint: " <code>"/rt/{connection}"</code>
                " — speaks the Xano realtime protocol, so Xano's JS SDK connects as it is."
            </p>
            <p class="status" data-hydrated=move || hydrated.get().to_string()>
                {move || if hydrated.get() { "Interactive" } else { "Loading…" }}
            </p>
            <button class="ping" on:click=move |_| pings.update(|n| *n += 1)>
                "Pinged " {move || pings.get()} " times"
            </button>
        </section>
    }
}
