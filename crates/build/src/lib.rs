//! Build-time helpers of the Switchboard app, used by its `build.rs` and by
//! `scripts/leptos-config`:
//!
//! - [`leptos_toml`]: `Leptos.toml` is the one place people edit the app's Leptos settings, but
//!   cargo-leptos reads only `Cargo.toml` and plain `cargo` builds need `LEPTOS_OUTPUT_NAME`;
//!   this module writes both copies from it and stops every build while they disagree.

pub mod leptos_toml;
