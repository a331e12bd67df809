//! The TOML configuration file: each key stands for one `SWITCHBOARD_*` setting of the
//! settings table, so the file and the environment share one list of settings, one parser and
//! one set of messages. A variable that is set wins over the file.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use switchboard_hub::{ChannelRule, JoinPolicy, SendPolicy};

use super::hooks::WebhookSettings;
use super::settings;

/// Values read from a file, by variable, with where each was written, the channel rules and
/// the webhook endpoints.
#[derive(Debug, Default)]
pub struct FileSettings {
    values: HashMap<&'static str, (String, String)>,
    /// `[[channels]]` entries, in order (they exist only in the file).
    pub rules: Vec<ChannelRule>,
    /// `[[webhooks]]` entries, in order.
    pub webhooks: Vec<WebhookSettings>,
}

/// One `[[webhooks]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEntry {
    url: String,
    secret: String,
    name: Option<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    timeout_ms: Option<u64>,
}

/// One `[[channels]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    pattern: String,
    join: Option<String>,
    send: Option<String>,
    presence: Option<bool>,
    history_keep: Option<u64>,
    max_payload_bytes: Option<usize>,
    messages_per_second: Option<u32>,
}

impl RuleEntry {
    fn into_rule(self) -> Result<ChannelRule, String> {
        let mut rule = ChannelRule::open(&self.pattern);
        if self.pattern.is_empty()
            || self.pattern[..self.pattern.len() - usize::from(self.pattern.ends_with('*'))]
                .contains('*')
        {
            return Err(format!(
                "pattern {:?}: use an exact name or a prefix ending in *",
                self.pattern
            ));
        }
        rule.join = match self.join.as_deref() {
            None | Some("anyone") => JoinPolicy::Anyone,
            Some("authenticated") => JoinPolicy::Authenticated,
            Some(other) => {
                return Err(format!(
                    "join = {other:?}: expected \"anyone\" or \"authenticated\""
                ))
            }
        };
        rule.send = match self.send.as_deref() {
            None | Some("anyone") => SendPolicy::Anyone,
            Some("authenticated") => SendPolicy::Authenticated,
            Some("nobody") => SendPolicy::Nobody,
            Some(other) => {
                return Err(format!(
                    "send = {other:?}: expected \"anyone\", \"authenticated\" or \"nobody\" (server only)"
                ))
            }
        };
        rule.presence = self.presence.unwrap_or(true);
        rule.history_keep = self.history_keep;
        rule.max_payload_bytes = self.max_payload_bytes;
        rule.messages_per_second = self.messages_per_second.filter(|n| *n > 0);
        Ok(rule)
    }
}

impl FileSettings {
    /// Reads and checks `path`: TOML syntax, known sections and keys, value types.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read the config file {}: {err}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|err| format!("config file {}: {err}", path.display()))?;
        let mut values = HashMap::new();
        let mut rules = Vec::new();
        let mut webhooks = Vec::new();
        for (section, entries) in &table {
            if section == "webhooks" {
                let list = entries.as_array().ok_or_else(|| {
                    format!(
                        "config file {}: webhook endpoints are written as [[webhooks]] entries",
                        path.display()
                    )
                })?;
                for (n, entry) in list.iter().enumerate() {
                    let at = nth_line(&text, "[[webhooks]]", n);
                    let endpoint = entry
                        .clone()
                        .try_into::<WebhookEntry>()
                        .map_err(|err| err.to_string())
                        .and_then(|e| {
                            WebhookSettings::new(
                                e.name.as_deref(),
                                &e.url,
                                &e.secret,
                                &e.events,
                                &e.channels,
                                e.timeout_ms,
                            )
                        })
                        .map_err(|why| {
                            format!(
                                "config file {}{at} [[webhooks]] #{}: {why}",
                                path.display(),
                                n + 1
                            )
                        })?;
                    webhooks.push(endpoint);
                }
                continue;
            }
            if section == "channels" {
                let list = entries.as_array().ok_or_else(|| {
                    format!(
                        "config file {}: channel rules are written as [[channels]] entries",
                        path.display()
                    )
                })?;
                for (n, entry) in list.iter().enumerate() {
                    let at = nth_line(&text, "[[channels]]", n);
                    let rule = entry
                        .clone()
                        .try_into::<RuleEntry>()
                        .map_err(|err| err.to_string())
                        .and_then(RuleEntry::into_rule)
                        .map_err(|why| {
                            format!(
                                "config file {}{at} [[channels]] #{}: {why}",
                                path.display(),
                                n + 1
                            )
                        })?;
                    rules.push(rule);
                }
                continue;
            }
            let entries = entries.as_table().ok_or_else(|| {
                format!(
                    "config file {}{}: `{section}` must be a [section]",
                    path.display(),
                    line_of(&text, section, None)
                )
            })?;
            for (key, value) in entries {
                let at = line_of(&text, section, Some(key));
                if let Some((_, _, moved_to)) = settings::MOVED
                    .iter()
                    .find(|(s, k, _)| s == section && k == key)
                {
                    return Err(format!(
                        "config file {}{at}: [{section}] {key} was moved: write it as {moved_to}",
                        path.display()
                    ));
                }
                let variable = settings::SETTINGS
                    .iter()
                    .find(|s| s.section == section && s.key == key)
                    .map(|s| s.variable)
                    .ok_or_else(|| {
                        format!(
                            "config file {}{at}: unknown setting [{section}] {key}; see config/switchboard.example.toml",
                            path.display()
                        )
                    })?;
                let text_value = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|item| item.as_str().map(str::to_string).ok_or(()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|()| {
                            format!(
                                "config file {}{at}: [{section}] {key} must be a list of strings",
                                path.display()
                            )
                        })?
                        .join(","),
                    other => {
                        return Err(format!(
                            "config file {}{at}: [{section}] {key} cannot be a {}",
                            path.display(),
                            other.type_str()
                        ))
                    }
                };
                let origin = format!("{}{at} [{section}] {key}", path.display());
                values.insert(variable, (text_value, origin));
            }
        }
        Ok(Self {
            values,
            rules,
            webhooks,
        })
    }

    /// The value the file gives `variable`.
    pub fn get(&self, variable: &str) -> Option<String> {
        self.values.get(variable).map(|(value, _)| value.clone())
    }

    /// Where the file sets `variable` ("path:line [section] key").
    pub fn origin(&self, variable: &str) -> Option<&str> {
        self.values.get(variable).map(|(_, origin)| origin.as_str())
    }
}

/// `:N` for the line of the `n`th (from 0) line that reads `marker`.
fn nth_line(text: &str, marker: &str, n: usize) -> String {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.trim() == marker)
        .nth(n)
        .map_or_else(String::new, |(at, _)| format!(":{}", at + 1))
}

/// `:N` for the line where `[section]` (or `key` inside it) is written, if it can be found.
fn line_of(text: &str, section: &str, key: Option<&str>) -> String {
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line.trim_matches(|c| c == '[' || c == ']').trim() == section;
            if in_section && key.is_none() {
                return format!(":{}", n + 1);
            }
            continue;
        }
        if let (true, Some(key)) = (in_section, key) {
            if line.split('=').next().map(str::trim) == Some(key) {
                return format!(":{}", n + 1);
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file of its own for each call (tests run in parallel), removed when dropped.
    struct Written(std::path::PathBuf);

    impl std::ops::Deref for Written {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Written {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write(text: &str) -> Written {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-config-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Written(path)
    }

    #[test]
    fn keys_map_to_their_variables_and_remember_their_line() {
        let path = write(
            "# comment\n[limits]\nmax_payload_bytes = 1024\n\n[auth]\napi_keys = [\"a\", \"b\"]\n",
        );
        let file = FileSettings::read(&path).unwrap();
        assert_eq!(
            file.get("SWITCHBOARD_MAX_PAYLOAD_BYTES").as_deref(),
            Some("1024")
        );
        assert_eq!(file.get("SWITCHBOARD_API_KEYS").as_deref(), Some("a,b"));
        assert!(file
            .origin("SWITCHBOARD_MAX_PAYLOAD_BYTES")
            .unwrap()
            .contains(":3 [limits] max_payload_bytes"));
    }

    #[test]
    fn channel_rules_are_read_in_order_and_checked() {
        let path = write("[[channels]]\npattern = \"support/*\"\njoin = \"authenticated\"\n\n[[channels]]\npattern = \"news\"\nsend = \"nobody\"\npresence = false\n");
        let rules = FileSettings::read(&path).unwrap().rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].join, JoinPolicy::Authenticated);
        assert_eq!(
            (rules[1].send, rules[1].presence),
            (SendPolicy::Nobody, false)
        );
        let bad = FileSettings::read(&write("[[channels]]\npattern = \"a\"\n\n[[channels]]\npattern = \"b\"\nsend = \"everybody\"\n")).unwrap_err();
        assert!(
            bad.contains(":4 [[channels]] #2: send = \"everybody\""),
            "{bad}"
        );
        let unknown =
            FileSettings::read(&write("[[channels]]\npattern = \"a\"\nwho = 1\n")).unwrap_err();
        assert!(
            unknown.contains("[[channels]] #1") && unknown.contains("who"),
            "{unknown}"
        );
    }

    #[test]
    fn moved_keys_name_where_they_went() {
        let moved = FileSettings::read(&write("[history]\nengine = \"memory\"\n")).unwrap_err();
        assert!(
            moved.contains(":2: [history] engine was moved: write it as [engine] kind"),
            "{moved}"
        );
        let cluster =
            FileSettings::read(&write("[cluster]\nredis_url = \"redis://x\"\n")).unwrap_err();
        assert!(cluster.contains("[engine] redis_url"), "{cluster}");
    }

    #[test]
    fn unknown_keys_and_bad_syntax_name_the_line() {
        let unknown = FileSettings::read(&write("[limits]\nmax_paylod_bytes = 1\n")).unwrap_err();
        assert!(
            unknown.contains(":2: unknown setting [limits] max_paylod_bytes"),
            "{unknown}"
        );
        let syntax = FileSettings::read(&write("[limits\nx = 1\n")).unwrap_err();
        assert!(syntax.contains("line 1"), "{syntax}");
    }
}
