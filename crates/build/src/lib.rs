//! Build-time helpers of the Switchboard app, used by its `build.rs` and by
//! `scripts/leptos-config`:
//!
//! - [`leptos_toml`]: `Leptos.toml` is the one place people edit the app's Leptos settings, but
//!   cargo-leptos reads only `Cargo.toml` and plain `cargo` builds need `LEPTOS_OUTPUT_NAME`;
//!   this module writes both copies from it and stops every build while they disagree.
//! - [`site`]: turns the site cargo-leptos built (`target/site`) into a table of files for the
//!   server binary to embed, with content-hashed names and brotli and gzip variants made once,
//!   at build time.

pub mod leptos_toml;
pub mod site;
