//! Starting the server process, and the exit status that tells a supervisor whether trying
//! again can help: 78 (`EX_CONFIG`) when the configuration is wrong — a bad setting, an
//! unreadable config, key or certificate file — so systemd and others stop restarting it, and
//! 1 for anything else (the address is taken, Redis is unreachable), which a restart may fix.

use std::path::PathBuf;

use super::assets::SITE;
use super::leptos_settings::LeptosSettings;

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong: starting again unchanged fails again.
    #[error("{0}")]
    Config(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// The exit status for a configuration error (`EX_CONFIG` in sysexits.h).
    pub const EX_CONFIG: u8 = 78;

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => Self::EX_CONFIG,
            StartError::Failed(_) => 1,
        }
    }
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::Failed(message)
    }
}

/// Runs the server process: Leptos settings from `Leptos.toml` in the working folder (or the
/// copy built in) and the environment, server settings from `config_path` and the environment.
pub async fn start(config_path: Option<PathBuf>) -> Result<(), StartError> {
    let folder = std::env::current_dir()
        .map_err(|err| StartError::Failed(format!("cannot tell the working folder: {err}")))?;
    let leptos = LeptosSettings::load(&folder).map_err(|err| {
        StartError::Config(format!("{err}; fix it and start again (see Leptos.toml)"))
    })?;
    let site = match SITE.bundle {
        Some(_) => "site embedded in the binary".to_string(),
        None => format!("site from {}", leptos.options.site_root),
    };
    // Debug only: the first line on stdout is the one that says where the server listens.
    tracing::debug!("Leptos settings: {}; {site}", leptos.origin);
    super::run(SITE.page_options(leptos.options), config_path).await
}
