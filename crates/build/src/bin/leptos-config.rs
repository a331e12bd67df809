//! `leptos-config`: copies `Leptos.toml` into `Cargo.toml` (for cargo-leptos) and
//! `.cargo/config.toml` (for plain cargo builds), or with `--check` only says whether they
//! agree. Run through `scripts/leptos-config`.
//!
//!   leptos-config [--check] [PROJECT_ROOT]

use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_build::leptos_toml;

fn main() -> ExitCode {
    let mut check_only = false;
    let mut root = PathBuf::from(".");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check_only = true,
            "-h" | "--help" => {
                println!("usage: leptos-config [--check] [PROJECT_ROOT]\n\nCopies Leptos.toml into Cargo.toml's [package.metadata.leptos] and .cargo/config.toml's [env];\nwith --check, only says whether they agree (exit 1 when they do not).");
                return ExitCode::SUCCESS;
            }
            other => root = PathBuf::from(other),
        }
    }
    let outcome = if check_only {
        leptos_toml::check(&root)
            .map(|_| "Cargo.toml and .cargo/config.toml match Leptos.toml".to_string())
    } else {
        leptos_toml::sync(&root).map(|changed| match changed.as_slice() {
            [] => "Cargo.toml and .cargo/config.toml already match Leptos.toml".to_string(),
            files => format!(
                "copied Leptos.toml into {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        })
    };
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("leptos-config: {err}");
            ExitCode::FAILURE
        }
    }
}
