//! Secret settings read from files. Each secret — the JWT secret, the API and admin keys, the
//! Redis URL (which may carry a password), the webhook and gate secrets — can be given as `NAME_FILE` (or the config file's `..._file`
//! key) naming a file that holds it, the way container runtimes and systemd credentials hand
//! secrets over, so they stay out of the environment and the config file.
//!
//! The environment wins over the config file, as for every setting; within one of them,
//! giving a secret both ways is an error rather than a guess.

use std::collections::HashMap;

/// The secret settings: variable, and whether its file holds a list (one item per line).
pub(crate) const SECRETS: &[(&str, bool)] = &[
    ("SWITCHBOARD_JWT_SECRET", false),
    ("SWITCHBOARD_API_KEYS", true),
    ("SWITCHBOARD_REDIS_URL", false),
    ("SWITCHBOARD_ADMIN_KEYS", true),
    ("SWITCHBOARD_WEBHOOK_SECRET", false),
    ("SWITCHBOARD_GATE_SECRET", false),
];

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The value and the file were both given in one place.
    #[error("{variable} and {variable}_FILE are both set {place}; set one of them")]
    Both {
        /// The secret's variable.
        variable: &'static str,
        /// "in the environment" or "in the config file".
        place: &'static str,
    },
    /// The file cannot be read.
    #[error("{variable}_FILE={path:?}: cannot read it: {source}")]
    Unreadable {
        /// The secret's variable.
        variable: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The secrets that come from files, by variable: for each secret, the environment is asked
/// first, then the config file (`file`); a secret given as a plain value is left to the usual
/// lookup.
pub fn read_files(
    env: impl Fn(&str) -> Option<String>,
    file: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, SecretError> {
    let mut found = HashMap::new();
    for &(variable, list) in SECRETS {
        let file_variable = format!("{variable}_FILE");
        for (lookup, place) in [
            (
                &env as &dyn Fn(&str) -> Option<String>,
                "in the environment",
            ),
            (&file, "in the config file"),
        ] {
            match (lookup(variable), lookup(&file_variable)) {
                (Some(_), Some(_)) => return Err(SecretError::Both { variable, place }),
                (Some(_), None) => break,
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path.trim()).map_err(|source| {
                        SecretError::Unreadable {
                            variable,
                            path,
                            source,
                        }
                    })?;
                    let value = if list {
                        text.lines()
                            .map(str::trim)
                            .filter(|line| !line.is_empty())
                            .collect::<Vec<_>>()
                            .join(",")
                    } else {
                        text.trim_end_matches(['\r', '\n']).to_string()
                    };
                    found.insert(variable, value);
                    break;
                }
                (None, None) => {}
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(text: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-secret-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn a_secret_file_gives_the_value_without_its_final_newline() {
        let path = secret_file("s3cret-with-enough-entropy\n");
        let env = lookup(&[("SWITCHBOARD_JWT_SECRET_FILE", path)]);
        let found = read_files(env, |_| None).unwrap();
        assert_eq!(
            found["SWITCHBOARD_JWT_SECRET"],
            "s3cret-with-enough-entropy"
        );
    }

    #[test]
    fn an_api_keys_file_holds_one_key_per_line() {
        let path = secret_file("key-one\n\nkey-two\n");
        let found = read_files(|_| None, lookup(&[("SWITCHBOARD_API_KEYS_FILE", path)])).unwrap();
        assert_eq!(found["SWITCHBOARD_API_KEYS"], "key-one,key-two");
    }

    #[test]
    fn value_and_file_in_one_place_is_an_error() {
        let path = secret_file("x");
        let env = lookup(&[
            ("SWITCHBOARD_JWT_SECRET", "inline".into()),
            ("SWITCHBOARD_JWT_SECRET_FILE", path),
        ]);
        let err = read_files(env, |_| None).unwrap_err();
        assert!(
            matches!(
                err,
                SecretError::Both {
                    place: "in the environment",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_environment_wins_over_the_config_file() {
        let from_env = secret_file("redis://:env@10.0.0.5:6379");
        let from_file = secret_file("redis://:file@10.0.0.5:6379");
        let env = lookup(&[("SWITCHBOARD_REDIS_URL_FILE", from_env)]);
        let file = lookup(&[("SWITCHBOARD_REDIS_URL_FILE", from_file)]);
        let found = read_files(env, file).unwrap();
        assert_eq!(found["SWITCHBOARD_REDIS_URL"], "redis://:env@10.0.0.5:6379");
        // A plain value in the environment also wins over a file named in the config file.
        let env = lookup(&[("SWITCHBOARD_JWT_SECRET", "inline".into())]);
        let file = lookup(&[("SWITCHBOARD_JWT_SECRET_FILE", "/nonexistent".into())]);
        assert!(read_files(env, file).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let env = lookup(&[("SWITCHBOARD_API_KEYS_FILE", "/nonexistent/keys".into())]);
        let err = read_files(env, |_| None).unwrap_err().to_string();
        assert!(
            err.starts_with("SWITCHBOARD_API_KEYS_FILE=\"/nonexistent/keys\""),
            "{err}"
        );
    }
}
