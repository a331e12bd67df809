//! Switchboard's web app: the Leptos pages (rendered on the server, hydrated in the browser)
//! and, behind the `ssr` feature, the server that hosts them next to the realtime endpoint.

pub mod app;
mod browser;
mod identity;
mod pages;
pub mod realtime;
#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Lets browser tests wait for interactivity instead of guessing.
    let _ = js_sys::Reflect::set(
        &js_sys::global(),
        &"__switchboard_hydrated".into(),
        &true.into(),
    );
}
