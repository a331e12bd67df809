//! `Leptos.toml` and the two copies derived from it.
//!
//! People edit the app's Leptos settings in `Leptos.toml` only. cargo-leptos reads them from
//! `Cargo.toml`'s `[package.metadata.leptos]`, and a plain `cargo build` or `cargo test` needs
//! `LEPTOS_OUTPUT_NAME` at compile time (without it Leptos names the wasm file `NAME_bg.wasm`,
//! which cargo-leptos never writes), which `.cargo/config.toml`'s `[env]` provides. [`sync`]
//! writes both copies; [`check`] runs in the app's build script, so no build goes ahead with a
//! `Leptos.toml` change that the copies do not carry yet.

use std::path::{Path, PathBuf};

/// The settings file, relative to the project root.
pub const LEPTOS_TOML: &str = "Leptos.toml";
/// Cargo's manifest, relative to the project root.
pub const CARGO_TOML: &str = "Cargo.toml";
/// Cargo's project configuration, relative to the project root.
pub const CARGO_CONFIG: &str = ".cargo/config.toml";

/// First line of a generated block.
const BEGIN: &str =
    "# BEGIN generated from Leptos.toml by scripts/leptos-config: edit Leptos.toml, not this block";
/// Last line of a generated block.
const END: &str = "# END generated from Leptos.toml";

/// Why `Leptos.toml` or one of its copies cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LeptosTomlError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid TOML (the message names the line).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// `Leptos.toml` holds a `[table]`; Leptos settings are flat.
    #[error("{path}: [{key}] is a table; Leptos settings are plain `key = value` lines")]
    Table {
        /// The file.
        path: PathBuf,
        /// The table's name.
        key: String,
    },
    /// `Leptos.toml` does not name the site's files.
    #[error("{path} sets no output-name (the name of the site's .js, .wasm and .css files)")]
    NoOutputName {
        /// The file.
        path: PathBuf,
    },
    /// `Cargo.toml` has no generated block to keep in step.
    #[error("{path} has no block between the lines `{BEGIN}` and `{END}`; put those two lines where [package.metadata.leptos] belongs and run scripts/leptos-config")]
    NoBlock {
        /// The file.
        path: PathBuf,
    },
    /// A copy says something else than `Leptos.toml`.
    #[error("{path} does not match Leptos.toml ({detail}); run scripts/leptos-config to copy Leptos.toml into it (edit Leptos.toml, never the copy)")]
    OutOfStep {
        /// The copy.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
}

/// `Leptos.toml`, read and checked.
#[derive(Debug, Clone)]
pub struct LeptosToml {
    text: String,
    table: toml::Table,
}

impl LeptosToml {
    /// Reads `Leptos.toml` under `root`.
    pub fn read(root: &Path) -> Result<Self, LeptosTomlError> {
        let path = root.join(LEPTOS_TOML);
        Self::parse(&path, read(&path)?)
    }

    /// Checks `text` as the contents of `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, LeptosTomlError> {
        let table = parse(path, &text)?;
        if let Some((key, _)) = table.iter().find(|(_, value)| value.is_table()) {
            return Err(LeptosTomlError::Table {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
        if !matches!(table.get("output-name"), Some(toml::Value::String(name)) if !name.is_empty())
        {
            return Err(LeptosTomlError::NoOutputName {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { text, table })
    }

    /// The base name of the site's `.js`, `.wasm` and `.css` files.
    pub fn output_name(&self) -> &str {
        self.string("output-name").unwrap_or_default()
    }

    /// The folder the site is built into, relative to the project root.
    pub fn site_root(&self) -> &str {
        self.string("site-root").unwrap_or("target/site")
    }

    /// The folder of the site's `.js`, `.wasm` and `.css` files, inside the site root.
    pub fn site_pkg_dir(&self) -> &str {
        self.string("site-pkg-dir").unwrap_or("pkg")
    }

    fn string(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(toml::Value::as_str)
    }

    /// The `[package.metadata.leptos]` block of `Cargo.toml`, markers included: the settings
    /// as written, without the file's opening comment (its first paragraph).
    fn cargo_block(&self) -> String {
        let body = self
            .text
            .lines()
            .skip_while(|line| line.trim_start().starts_with('#'))
            .skip_while(|line| line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "{BEGIN}\n[package.metadata.leptos]\n{}\n{END}",
            body.trim_end()
        )
    }

    /// The `[env]` block of `.cargo/config.toml`, markers included.
    fn config_block(&self) -> String {
        format!(
            "{BEGIN}\n# cargo-leptos sets LEPTOS_OUTPUT_NAME for its builds; plain `cargo build` and `cargo test`\n# get it here, so the page they serve names the wasm file cargo-leptos writes.\n[env]\nLEPTOS_OUTPUT_NAME = {}\n{END}",
            toml::Value::String(self.output_name().to_string())
        )
    }
}

/// Fails unless `Cargo.toml` and `.cargo/config.toml` under `root` say what `Leptos.toml` says.
pub fn check(root: &Path) -> Result<LeptosToml, LeptosTomlError> {
    let leptos = LeptosToml::read(root)?;
    let cargo_path = root.join(CARGO_TOML);
    let cargo = parse(&cargo_path, &read(&cargo_path)?)?;
    let metadata = cargo
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("leptos"))
        .and_then(toml::Value::as_table);
    match metadata {
        None => {
            return Err(LeptosTomlError::OutOfStep {
                path: cargo_path,
                detail: "it has no [package.metadata.leptos]".into(),
            })
        }
        Some(metadata) if metadata != &leptos.table => {
            return Err(LeptosTomlError::OutOfStep {
                path: cargo_path,
                detail: differences(&leptos.table, metadata),
            })
        }
        Some(_) => {}
    }
    let config_path = root.join(CARGO_CONFIG);
    let config = match std::fs::read_to_string(&config_path) {
        Ok(text) => parse(&config_path, &text)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(source) => {
            return Err(LeptosTomlError::Read {
                path: config_path,
                source,
            })
        }
    };
    let env = config
        .get("env")
        .and_then(|env| env.get("LEPTOS_OUTPUT_NAME"))
        .and_then(|value| value.as_str().or_else(|| value.get("value")?.as_str()));
    if env != Some(leptos.output_name()) {
        return Err(LeptosTomlError::OutOfStep {
            path: config_path,
            detail: format!(
                "[env] LEPTOS_OUTPUT_NAME is {} but output-name is {:?}",
                env.map_or_else(|| "not set".to_string(), |name| format!("{name:?}")),
                leptos.output_name()
            ),
        });
    }
    Ok(leptos)
}

/// Writes `Leptos.toml`'s settings into `Cargo.toml` and `.cargo/config.toml` under `root`;
/// returns the files it changed.
pub fn sync(root: &Path) -> Result<Vec<PathBuf>, LeptosTomlError> {
    let leptos = LeptosToml::read(root)?;
    let mut changed = Vec::new();
    let cargo_path = root.join(CARGO_TOML);
    let cargo = read(&cargo_path)?;
    let updated =
        replace_block(&cargo, &leptos.cargo_block()).ok_or_else(|| LeptosTomlError::NoBlock {
            path: cargo_path.clone(),
        })?;
    if updated != cargo {
        write(&cargo_path, &updated)?;
        changed.push(cargo_path);
    }
    let config_path = root.join(CARGO_CONFIG);
    let config = match std::fs::read_to_string(&config_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(LeptosTomlError::Read {
                path: config_path,
                source,
            })
        }
    };
    let block = leptos.config_block();
    let updated = replace_block(&config, &block).unwrap_or_else(|| {
        let separator = if config.is_empty() || config.ends_with("\n\n") {
            ""
        } else if config.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        };
        format!("{config}{separator}{block}\n")
    });
    if updated != config {
        if let Some(folder) = config_path.parent() {
            std::fs::create_dir_all(folder).map_err(|source| LeptosTomlError::Write {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        write(&config_path, &updated)?;
        changed.push(config_path);
    }
    check(root)?;
    Ok(changed)
}

/// `text` with the lines from [`BEGIN`] to [`END`] replaced by `block`, if it has them.
fn replace_block(text: &str, block: &str) -> Option<String> {
    let start = text.find(BEGIN)?;
    let end = start + text[start..].find(END)? + END.len();
    Some(format!("{}{block}{}", &text[..start], &text[end..]))
}

/// "output-name is "a" in Leptos.toml but "b" in the copy; ...".
fn differences(wanted: &toml::Table, found: &toml::Table) -> String {
    let mut keys: Vec<&String> = wanted.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |value: Option<&toml::Value>| value.map_or("unset".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|key| wanted.get(*key) != found.get(*key))
        .map(|key| {
            format!(
                "{key} is {} in Leptos.toml but {} in the copy",
                shown(wanted.get(key)),
                shown(found.get(key))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn read(path: &Path) -> Result<String, LeptosTomlError> {
    std::fs::read_to_string(path).map_err(|source| LeptosTomlError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), LeptosTomlError> {
    std::fs::write(path, text).map_err(|source| LeptosTomlError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(path: &Path, text: &str) -> Result<toml::Table, LeptosTomlError> {
    text.parse()
        .map_err(|err: toml::de::Error| LeptosTomlError::Syntax {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEPTOS: &str = "# Leptos settings.\n\noutput-name = \"switchboard\"\nsite-addr = \"127.0.0.1:3000\"\n# the browser tests\nbin-features = [\"ssr\"]\n";
    const CARGO: &str = "[package]\nname = \"app\"\n\n# BEGIN generated from Leptos.toml by scripts/leptos-config: edit Leptos.toml, not this block\n[package.metadata.leptos]\noutput-name = \"old\"\n# END generated from Leptos.toml\n\n[features]\nssr = []\n";

    /// A project folder of its own with the given `Leptos.toml` and `Cargo.toml`.
    fn project(leptos: &str, cargo: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "switchboard-leptos-toml-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(LEPTOS_TOML), leptos).unwrap();
        std::fs::write(root.join(CARGO_TOML), cargo).unwrap();
        root
    }

    #[test]
    fn sync_copies_the_settings_into_cargo_toml_and_the_output_name_into_cargo_env() {
        let root = project(LEPTOS, CARGO);
        let changed = sync(&root).unwrap();
        assert_eq!(changed.len(), 2);
        let cargo = std::fs::read_to_string(root.join(CARGO_TOML)).unwrap();
        assert!(cargo.contains("[package.metadata.leptos]\noutput-name = \"switchboard\"\nsite-addr = \"127.0.0.1:3000\"\n# the browser tests\nbin-features = [\"ssr\"]\n# END"), "{cargo}");
        assert!(!cargo.contains("# Leptos settings."), "{cargo}");
        assert!(cargo.ends_with("\n\n[features]\nssr = []\n"), "{cargo}");
        let config = std::fs::read_to_string(root.join(CARGO_CONFIG)).unwrap();
        assert!(
            config.contains("[env]\nLEPTOS_OUTPUT_NAME = \"switchboard\"\n"),
            "{config}"
        );
        check(&root).unwrap();
        assert!(
            sync(&root).unwrap().is_empty(),
            "a second sync changes nothing"
        );
    }

    #[test]
    fn an_edit_to_leptos_toml_fails_the_check_naming_the_key_until_synced() {
        let root = project(LEPTOS, CARGO);
        sync(&root).unwrap();
        let edited = LEPTOS.replace("127.0.0.1:3000", "0.0.0.0:8080");
        std::fs::write(root.join(LEPTOS_TOML), &edited).unwrap();
        let err = check(&root).unwrap_err().to_string();
        assert!(
            err.contains("Cargo.toml does not match Leptos.toml"),
            "{err}"
        );
        assert!(
            err.contains(
                "site-addr is \"0.0.0.0:8080\" in Leptos.toml but \"127.0.0.1:3000\" in the copy"
            ),
            "{err}"
        );
        assert!(err.contains("run scripts/leptos-config"), "{err}");
        sync(&root).unwrap();
        check(&root).unwrap();
    }

    #[test]
    fn a_new_output_name_must_reach_the_cargo_env_too() {
        let root = project(LEPTOS, CARGO);
        sync(&root).unwrap();
        // Someone copies the new name into Cargo.toml by hand but not into .cargo/config.toml.
        let renamed = LEPTOS.replace("\"switchboard\"", "\"board\"");
        std::fs::write(root.join(LEPTOS_TOML), &renamed).unwrap();
        let cargo = std::fs::read_to_string(root.join(CARGO_TOML)).unwrap();
        std::fs::write(
            root.join(CARGO_TOML),
            cargo.replace("\"switchboard\"", "\"board\""),
        )
        .unwrap();
        let err = check(&root).unwrap_err().to_string();
        assert!(err.contains(".cargo/config.toml does not match"), "{err}");
        assert!(
            err.contains("LEPTOS_OUTPUT_NAME is \"switchboard\" but output-name is \"board\""),
            "{err}"
        );
        sync(&root).unwrap();
        assert_eq!(check(&root).unwrap().output_name(), "board");
    }

    #[test]
    fn other_cargo_settings_in_the_config_file_are_kept() {
        let root = project(LEPTOS, CARGO);
        std::fs::create_dir_all(root.join(".cargo")).unwrap();
        std::fs::write(root.join(CARGO_CONFIG), "[build]\njobs = 2\n").unwrap();
        sync(&root).unwrap();
        let config = std::fs::read_to_string(root.join(CARGO_CONFIG)).unwrap();
        assert!(
            config.starts_with("[build]\njobs = 2\n\n# BEGIN"),
            "{config}"
        );
    }

    #[test]
    fn bad_leptos_toml_is_refused_with_its_line() {
        let root = project("output-name = \"a\"\nsite-addr = \n", CARGO);
        let err = sync(&root).unwrap_err().to_string();
        assert!(
            err.contains("Leptos.toml") && err.contains("line 2"),
            "{err}"
        );
        let root = project("output-name = \"a\"\n[site]\naddr = \"x\"\n", CARGO);
        let err = sync(&root).unwrap_err().to_string();
        assert!(err.contains("[site] is a table"), "{err}");
        let root = project("site-addr = \"127.0.0.1:3000\"\n", CARGO);
        assert!(matches!(
            sync(&root).unwrap_err(),
            LeptosTomlError::NoOutputName { .. }
        ));
    }

    #[test]
    fn cargo_toml_without_the_markers_is_not_guessed_at() {
        let root = project(LEPTOS, "[package]\nname = \"app\"\n");
        assert!(matches!(
            sync(&root).unwrap_err(),
            LeptosTomlError::NoBlock { .. }
        ));
    }
}
