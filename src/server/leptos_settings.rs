//! The Leptos settings of the running server (listen address, output name, site folder):
//! `Leptos.toml` from the working folder when there is one, else the copy compiled into the
//! binary, so a server started from any folder still knows them. `LEPTOS_*` environment
//! variables win over the file; `PORT` (as hosting platforms set it) changes the port of the
//! address when `LEPTOS_SITE_ADDR` is not set.

use leptos::config::LeptosOptions;
use std::path::Path;

/// `Leptos.toml` as it was when this binary was built.
const COMPILED_IN: &str = include_str!("../../Leptos.toml");

/// Why the Leptos settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LeptosSettingsError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML (the message names the line).
    #[error("{origin}: {message}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A setting (from the file or a `LEPTOS_*` variable) has a value Leptos cannot use.
    #[error("{origin} or a LEPTOS_* variable: {message}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Leptos's message.
        message: String,
    },
    /// `PORT` is not a port number.
    #[error("PORT={0:?}: expected a port number from 0 to 65535")]
    Port(String),
}

/// The settings, and where they came from (for the start-up line).
pub struct LeptosSettings {
    /// The settings.
    pub options: LeptosOptions,
    /// `Leptos.toml in /srv/app`, or `Leptos.toml built in`.
    pub origin: String,
}

impl LeptosSettings {
    /// Reads `Leptos.toml` in `folder` (or the compiled-in copy), then the environment.
    pub fn load(folder: &Path) -> Result<Self, LeptosSettingsError> {
        let path = folder.join("Leptos.toml");
        let (text, origin) = match std::fs::read_to_string(&path) {
            Ok(text) => (text, format!("{}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                (COMPILED_IN.to_string(), "Leptos.toml built in".to_string())
            }
            Err(source) => {
                return Err(LeptosSettingsError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let options = parse(&text, &origin)?;
        let options = with_port(
            options,
            std::env::var_os("LEPTOS_SITE_ADDR").is_some(),
            std::env::var("PORT").ok(),
        )?;
        Ok(Self { options, origin })
    }
}

/// The settings in `text`, with `LEPTOS_*` variables over them.
fn parse(text: &str, origin: &str) -> Result<LeptosOptions, LeptosSettingsError> {
    // Syntax first, so the message names the line of the file as written.
    text.parse::<toml::Table>()
        .map_err(|err| LeptosSettingsError::Syntax {
            origin: origin.to_string(),
            message: err.to_string(),
        })?;
    leptos::config::get_config_from_str(&format!("[package.metadata.leptos]\n{text}")).map_err(
        |err| LeptosSettingsError::Invalid {
            origin: origin.to_string(),
            message: err.to_string(),
        },
    )
}

/// `options` with the port `PORT` names, unless `LEPTOS_SITE_ADDR` was set.
fn with_port(
    mut options: LeptosOptions,
    site_addr_set: bool,
    port: Option<String>,
) -> Result<LeptosOptions, LeptosSettingsError> {
    if let (false, Some(port)) = (site_addr_set, port) {
        let number = port
            .trim()
            .parse()
            .map_err(|_| LeptosSettingsError::Port(port.clone()))?;
        options.site_addr.set_port(number);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_file_is_valid() {
        let options = parse(COMPILED_IN, "Leptos.toml built in").unwrap();
        assert!(!options.output_name.is_empty());
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let err = parse("output-name = \"a\"\nsite-addr = \n", "/srv/Leptos.toml").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("/srv/Leptos.toml: "), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn a_bad_value_is_refused() {
        let err = parse(
            "output-name = \"a\"\nsite-addr = \"nowhere\"\n",
            "Leptos.toml",
        )
        .unwrap_err();
        assert!(matches!(err, LeptosSettingsError::Invalid { .. }), "{err}");
    }

    #[test]
    fn port_changes_only_the_port_and_only_without_leptos_site_addr() {
        let options = parse("output-name = \"a\"\nsite-addr = \"127.0.0.2:3000\"\n", "x").unwrap();
        let moved = with_port(options.clone(), false, Some("8080".into())).unwrap();
        assert_eq!(moved.site_addr.to_string(), "127.0.0.2:8080");
        let kept = with_port(options.clone(), true, Some("8080".into())).unwrap();
        assert_eq!(kept.site_addr.to_string(), "127.0.0.2:3000");
        assert!(matches!(
            with_port(options, false, Some("http".into())),
            Err(LeptosSettingsError::Port(_))
        ));
    }
}
