//! Build script of the app.
//!
//! It stops the build while `Leptos.toml` and the copies the build reads (`Cargo.toml`'s
//! `[package.metadata.leptos]`, `.cargo/config.toml`'s `[env]`) disagree, so an edit to
//! `Leptos.toml` is never silently ignored.

use std::path::PathBuf;
use switchboard_build::leptos_toml::{self, CARGO_CONFIG, CARGO_TOML, LEPTOS_TOML};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    for file in [LEPTOS_TOML, CARGO_TOML, CARGO_CONFIG] {
        println!("cargo:rerun-if-changed={file}");
    }
    if let Err(err) = leptos_toml::check(&root) {
        // cargo shows this under the build script's output.
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
