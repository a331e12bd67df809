//! Build script of the app.
//!
//! It stops the build while `Leptos.toml` and the copies the build reads (`Cargo.toml`'s
//! `[package.metadata.leptos]`, `.cargo/config.toml`'s `[env]`) disagree, so an edit to
//! `Leptos.toml` is never silently ignored. It also writes the table of site files the server
//! embeds: with the `embed-site` feature, the site cargo-leptos built (`target/site`, or
//! `SWITCHBOARD_SITE_DIR`); without it an empty table, and the server serves the site folder.

use std::fmt::Display;
use std::path::PathBuf;
use switchboard_build::leptos_toml::{self, CARGO_CONFIG, CARGO_TOML, LEPTOS_TOML};
use switchboard_build::site::SiteTable;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    for file in [LEPTOS_TOML, CARGO_TOML, CARGO_CONFIG] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_SITE_DIR");
    let leptos = leptos_toml::check(&root).unwrap_or_else(|err| fail(err));
    let table = if std::env::var_os("CARGO_FEATURE_EMBED_SITE").is_some() {
        let site = std::env::var_os("SWITCHBOARD_SITE_DIR")
            .map_or_else(|| root.join(leptos.site_root()), PathBuf::from);
        println!("cargo:rerun-if-changed={}", site.display());
        SiteTable::build(&site, &leptos, &out).unwrap_or_else(|err| fail(err))
    } else {
        SiteTable::default()
    };
    if let Err(err) = std::fs::write(out.join("site.rs"), table.to_rust()) {
        fail(format!(
            "cannot write {}: {err}",
            out.join("site.rs").display()
        ));
    }
}

/// Stops the build with `err` (cargo shows it under the build script's output).
fn fail(err: impl Display) -> ! {
    eprintln!("error: {err}");
    std::process::exit(1)
}
