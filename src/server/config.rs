//! Server settings: the defaults of the settings table, then a TOML file (if given), then
//! `SWITCHBOARD_*` environment variables, each overriding the one before. A bad value stops
//! start-up with the variable (or the file, line and key) and what is wrong with it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use switchboard_hub::{HubConfig, RedisConfig};

use super::hooks::{GateSettings, OnFailure, WebhookSettings};
use super::settings;
use super::tls::TlsFiles;

/// Where messages are ordered and stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    /// One node, history in a SQLite file (the default), created on first run.
    Sqlite(PathBuf),
    /// One node, history in process memory: nothing survives a restart.
    Memory,
    /// Several nodes sharing channels, presence and history through one Redis.
    Redis(RedisSettings),
}

/// The Redis engine's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The Redis URL.
    pub url: String,
    /// Prefix of every key and topic.
    pub prefix: String,
    /// A node silent this long is dead.
    pub node_ttl: Duration,
}

impl RedisSettings {
    /// The hub's view of these settings.
    pub fn hub_config(&self) -> RedisConfig {
        RedisConfig {
            redis_url: self.url.clone(),
            prefix: self.prefix.clone(),
            node_ttl: self.node_ttl,
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtSettings {
    /// Secret for HS256 tokens.
    pub secret: Option<String>,
    /// PEM file of the RSA public key that checks RS256 tokens.
    pub public_key_file: Option<PathBuf>,
    /// JWKS file whose keys check RS256 tokens (matched by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of an identity provider, cached and fetched again for an unknown `kid`.
    pub jwks_url: Option<String>,
    /// Accepted issuers (`iss`); empty: any.
    pub issuers: Vec<String>,
    /// Accepted audiences (`aud`); empty: tokens must carry none.
    pub audiences: Vec<String>,
    /// Clock difference allowed when checking `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtSettings {
    /// Whether any key is configured (otherwise tokens are refused).
    pub fn has_keys(&self) -> bool {
        self.secret.is_some()
            || self.public_key_file.is_some()
            || self.jwks_file.is_some()
            || self.jwks_url.is_some()
    }
}

/// Every setting of the server process.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits of the realtime engine.
    pub hub: HubConfig,
    /// Where messages are ordered and stored.
    pub engine: Engine,
    /// How often each socket is pinged; a socket silent for two intervals is dropped.
    pub ping_interval: Duration,
    /// Longest a write to a socket may take before the connection is dropped.
    pub write_timeout: Duration,
    /// Largest WebSocket message read at all; larger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Read buffer per socket.
    pub read_buffer_bytes: usize,
    /// How long a graceful shutdown waits for sockets to close.
    pub shutdown_grace: Duration,
    /// How tokens are checked.
    pub jwt: JwtSettings,
    /// Keys accepted by the HTTP publish API; empty turns the API off.
    pub api_keys: Vec<String>,
    /// Keys of the admin API and console; empty turns them off.
    pub admin_keys: Vec<String>,
    /// Origins (e.g. `https://app.example.com`) whose pages may open sockets besides the
    /// server's own; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Most open sockets from one IP address.
    pub connections_per_ip: usize,
    /// Load balancers whose `X-Forwarded-For` names the client (for the per-IP limits).
    pub trusted_proxies: Vec<IpAddr>,
    /// Most open sockets of one signed-in user (token `sub`).
    pub sockets_per_user: usize,
    /// HTTP API requests per second per key and per client address.
    pub api_requests_per_second: u32,
    /// Server function calls per second per client address.
    pub page_requests_per_second: u32,
    /// Let the chat page's "Sign in (demo account)" issue tokens for any name.
    pub demo_tokens: bool,
    /// Webhook endpoints (`[hooks]` / `SWITCHBOARD_WEBHOOK_*`, then `[[webhooks]]`).
    pub webhooks: Vec<WebhookSettings>,
    /// Undelivered webhook events older than this are kept as dead.
    pub webhook_give_up: Duration,
    /// The synchronous gates.
    pub gates: GateSettings,
    /// Certificate and key when the server terminates TLS itself (HTTPS and WSS).
    pub tls: Option<TlsFiles>,
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        match Self::from_lookup(|_| None) {
            Ok(config) => config,
            Err(err) => unreachable!("the settings table's defaults are valid: {err}"),
        }
    }
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Reads settings by variable name: what `lookup` says, else the table's default.
struct Reader<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn raw(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).or_else(|| settings::default_of(variable).map(str::to_string))
    }

    /// A number of at least `min`.
    fn number<T: FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        variable: &'static str,
        min: T,
    ) -> Result<T, ConfigError> {
        let value = self.raw(variable).unwrap_or_default();
        match value.trim().parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            Ok(_) => Err(invalid(
                variable,
                &value,
                format!("expected at least {min}"),
            )),
            Err(_) => Err(invalid(variable, &value, "expected a whole number")),
        }
    }

    fn millis(&self, variable: &'static str, min: u64) -> Result<Duration, ConfigError> {
        self.number::<u64>(variable, min).map(Duration::from_millis)
    }

    /// Text, or none when unset or blank.
    fn text(&self, variable: &'static str) -> Option<String> {
        self.raw(variable)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    }

    fn list(&self, variable: &'static str) -> Vec<String> {
        self.raw(variable)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn flag(&self, variable: &'static str) -> Result<bool, ConfigError> {
        let value = self.raw(variable).unwrap_or_default();
        match value.trim() {
            "" | "false" | "0" => Ok(false),
            "true" | "1" => Ok(true),
            _ => Err(invalid(variable, &value, "expected true or false")),
        }
    }
}

impl ServerConfig {
    /// Defaults, then the file at `path` (if any), then the `SWITCHBOARD_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        for (old, new) in settings::REPLACED_VARIABLES {
            if std::env::var_os(old).is_some() {
                return Err(format!("{old} is no longer read: use {new}"));
            }
        }
        let file = match path {
            Some(path) => super::config_file::FileSettings::read(path)?,
            None => Default::default(),
        };
        let env = |name: &str| std::env::var(name).ok();
        let secrets =
            super::secrets::read_files(env, |name| file.get(name)).map_err(|e| e.to_string())?;
        let lookup = |name: &str| {
            let secret = secrets.get(name).cloned();
            secret.or_else(|| env(name)).or_else(|| file.get(name))
        };
        let mut config = Self::from_lookup(lookup).map_err(|err| {
            match (env(err.variable), file.origin(err.variable)) {
                (None, Some(origin)) => {
                    format!("config file {origin} = {:?}: {}", err.value, err.reason)
                }
                _ => format!("invalid setting {err}"),
            }
        })?;
        config.hub.rules = switchboard_hub::ChannelRules::new(file.rules);
        config.webhooks.extend(file.webhooks);
        let mut names = std::collections::HashSet::new();
        for endpoint in &config.webhooks {
            if !names.insert(endpoint.name.as_str()) {
                return Err(format!(
                    "two webhook endpoints are named {:?}: give each a name of its own (name = \"…\")",
                    endpoint.name
                ));
            }
        }
        Ok(config)
    }

    /// The settings table's defaults overridden by `lookup(variable)` for each setting.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = Reader { lookup };
        let u32_at_least_1 = |variable| read.number::<u32>(variable, 1);
        let hub = HubConfig {
            max_payload_bytes: read.number("SWITCHBOARD_MAX_PAYLOAD_BYTES", 1)?,
            max_channels_per_socket: read.number("SWITCHBOARD_MAX_CHANNELS_PER_SOCKET", 1)?,
            outbox_capacity: read.number("SWITCHBOARD_OUTBOX_CAPACITY", 1)?,
            outbox_bytes: read.number("SWITCHBOARD_OUTBOX_BYTES", 1024)?,
            frames_per_second: u32_at_least_1("SWITCHBOARD_FRAMES_PER_SECOND")?,
            frame_burst: u32_at_least_1("SWITCHBOARD_FRAME_BURST")?,
            rate_violation_burst: u32_at_least_1("SWITCHBOARD_RATE_VIOLATION_BURST")?,
            history_keep: read.number("SWITCHBOARD_HISTORY_KEEP", 1)?,
            history_max_age: read.millis("SWITCHBOARD_HISTORY_MAX_AGE_MS", 0)?,
            history_trim_interval: read.millis("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", 10)?,
            history_on_join: read.number("SWITCHBOARD_HISTORY_ON_JOIN", 0)?,
            max_resume: read.number("SWITCHBOARD_MAX_RESUME", 0)?,
            store_queue: read.number("SWITCHBOARD_STORE_QUEUE", 1)?,
            store_queue_bytes: read.number("SWITCHBOARD_STORE_QUEUE_BYTES", 1024)?,
            ..HubConfig::default()
        };
        let engine = match read.text("SWITCHBOARD_ENGINE").as_deref() {
            Some("sqlite") => Engine::Sqlite(PathBuf::from(
                read.text("SWITCHBOARD_HISTORY_PATH").unwrap_or_default(),
            )),
            Some("memory") => Engine::Memory,
            Some("redis") => {
                let prefix = read.text("SWITCHBOARD_REDIS_PREFIX").unwrap_or_default();
                if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                    return Err(invalid(
                        "SWITCHBOARD_REDIS_PREFIX",
                        &prefix,
                        "expected a word without spaces, e.g. switchboard",
                    ));
                }
                Engine::Redis(RedisSettings {
                    url: read.text("SWITCHBOARD_REDIS_URL").unwrap_or_default(),
                    prefix,
                    // The node beats every third of it.
                    node_ttl: read.millis("SWITCHBOARD_NODE_TTL_MS", 300)?,
                })
            }
            other => {
                return Err(invalid(
                    "SWITCHBOARD_ENGINE",
                    other.unwrap_or_default(),
                    "expected sqlite (one node, history in a file), memory (one node, history in memory) or redis (several nodes sharing a Redis)",
                ))
            }
        };
        let mut trusted_proxies = Vec::new();
        for proxy in read.list("SWITCHBOARD_TRUSTED_PROXIES") {
            let address = proxy.parse().map_err(|_| {
                invalid(
                    "SWITCHBOARD_TRUSTED_PROXIES",
                    &proxy,
                    "expected IP addresses, e.g. 10.0.0.2,10.0.0.3",
                )
            })?;
            trusted_proxies.push(address);
        }
        let jwks_url = read.text("SWITCHBOARD_JWKS_URL");
        if let Some(url) = &jwks_url {
            if !url.starts_with("https://") && !loopback_http(url) {
                return Err(invalid(
                    "SWITCHBOARD_JWKS_URL",
                    url,
                    "expected an https:// URL (plain http is accepted only on this machine's loopback address)",
                ));
            }
        }
        let mut config = Self {
            hub,
            engine,
            ping_interval: read.millis("SWITCHBOARD_PING_INTERVAL_MS", 10)?,
            write_timeout: read.millis("SWITCHBOARD_WRITE_TIMEOUT_MS", 100)?,
            max_frame_bytes: read.number("SWITCHBOARD_MAX_FRAME_BYTES", 1024)?,
            read_buffer_bytes: read.number("SWITCHBOARD_READ_BUFFER_BYTES", 256)?,
            shutdown_grace: read.millis("SWITCHBOARD_SHUTDOWN_GRACE_MS", 0)?,
            jwt: JwtSettings {
                secret: read.text("SWITCHBOARD_JWT_SECRET"),
                public_key_file: read
                    .text("SWITCHBOARD_JWT_PUBLIC_KEY_FILE")
                    .map(PathBuf::from),
                jwks_file: read.text("SWITCHBOARD_JWKS_FILE").map(PathBuf::from),
                jwks_url,
                issuers: read.list("SWITCHBOARD_JWT_ISSUER"),
                audiences: read.list("SWITCHBOARD_JWT_AUDIENCE"),
                leeway: Duration::from_secs(read.number("SWITCHBOARD_JWT_LEEWAY_SECONDS", 0)?),
            },
            api_keys: read.list("SWITCHBOARD_API_KEYS"),
            admin_keys: read.list("SWITCHBOARD_ADMIN_KEYS"),
            allowed_origins: read.list("SWITCHBOARD_ALLOWED_ORIGINS"),
            connections_per_ip: read.number("SWITCHBOARD_CONNECTIONS_PER_IP", 1)?,
            trusted_proxies,
            sockets_per_user: read.number("SWITCHBOARD_SOCKETS_PER_USER", 1)?,
            api_requests_per_second: u32_at_least_1("SWITCHBOARD_API_REQUESTS_PER_SECOND")?,
            page_requests_per_second: u32_at_least_1("SWITCHBOARD_PAGE_REQUESTS_PER_SECOND")?,
            demo_tokens: read.flag("SWITCHBOARD_DEMO_TOKENS")?,
            webhooks: Vec::new(),
            webhook_give_up: Duration::from_secs(24 * 3600),
            gates: GateSettings {
                connect_url: None,
                join_url: None,
                publish_url: None,
                key: None,
                timeout: Duration::from_secs(2),
                on_failure: OnFailure::Refuse,
            },
            tls: None,
        };
        if let Some(url) = read.text("SWITCHBOARD_WEBHOOK_URL") {
            let secret = read.text("SWITCHBOARD_WEBHOOK_SECRET").ok_or_else(|| {
                invalid(
                    "SWITCHBOARD_WEBHOOK_SECRET",
                    "",
                    "a webhook endpoint needs a signing secret (whsec_…)",
                )
            })?;
            let timeout = read.number::<u64>("SWITCHBOARD_WEBHOOK_TIMEOUT_MS", 100)?;
            let endpoint = WebhookSettings::new(
                Some("default"),
                &url,
                &secret,
                &read.list("SWITCHBOARD_WEBHOOK_EVENTS"),
                &read.list("SWITCHBOARD_WEBHOOK_CHANNELS"),
                Some(timeout),
            )
            .map_err(|why| invalid("SWITCHBOARD_WEBHOOK_URL", &url, why))?;
            config.webhooks.push(endpoint);
        }
        config.webhook_give_up = read.millis("SWITCHBOARD_WEBHOOK_GIVE_UP_MS", 1000)?;
        let gate_url = |variable: &'static str| -> Result<Option<String>, ConfigError> {
            match read.text(variable) {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    Ok(Some(url))
                }
                Some(url) => Err(invalid(
                    variable,
                    &url,
                    "expected an http:// or https:// URL",
                )),
                None => Ok(None),
            }
        };
        config.gates = GateSettings {
            connect_url: gate_url("SWITCHBOARD_GATE_CONNECT_URL")?,
            join_url: gate_url("SWITCHBOARD_GATE_JOIN_URL")?,
            publish_url: gate_url("SWITCHBOARD_GATE_PUBLISH_URL")?,
            key: match read.text("SWITCHBOARD_GATE_SECRET") {
                Some(secret) => Some(
                    super::hooks::signing::SigningKey::from_secret(&secret)
                        .map_err(|why| invalid("SWITCHBOARD_GATE_SECRET", "…", why))?,
                ),
                None => None,
            },
            timeout: read.millis("SWITCHBOARD_GATE_TIMEOUT_MS", 10)?,
            on_failure: match read.text("SWITCHBOARD_GATE_ON_FAILURE").as_deref() {
                Some("refuse") | None => OnFailure::Refuse,
                Some("allow") => OnFailure::Allow,
                Some(other) => {
                    return Err(invalid(
                        "SWITCHBOARD_GATE_ON_FAILURE",
                        other,
                        "expected refuse or allow",
                    ))
                }
            },
        };
        config.tls = match (
            read.text("SWITCHBOARD_TLS_CERT_FILE").map(PathBuf::from),
            read.text("SWITCHBOARD_TLS_KEY_FILE").map(PathBuf::from),
        ) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
            }),
            (Some(_), None) => {
                return Err(invalid(
                    "SWITCHBOARD_TLS_KEY_FILE",
                    "",
                    "tls_cert_file is set: set tls_key_file (SWITCHBOARD_TLS_KEY_FILE) to its private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "SWITCHBOARD_TLS_CERT_FILE",
                    "",
                    "tls_key_file is set: set tls_cert_file (SWITCHBOARD_TLS_CERT_FILE) to its certificate chain too",
                ))
            }
        };
        if config.demo_tokens && config.jwt.secret.is_none() {
            return Err(invalid(
                "SWITCHBOARD_DEMO_TOKENS",
                "true",
                "demo tokens are signed with jwt_secret (SWITCHBOARD_JWT_SECRET): set it too",
            ));
        }
        Ok(config)
    }
}

/// `http://127.0.0.1...`, `http://[::1]...` or `http://localhost...`: a URL that never leaves
/// the machine.
fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .filter(|(h, port)| !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_keep_the_defaults() {
        let config = ServerConfig::from_lookup(|_| None).unwrap();
        assert_eq!(config.hub.max_payload_bytes, 64 * 1024);
        assert_eq!(config.hub.outbox_bytes, 4 * 1024 * 1024);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
        assert_eq!(
            config.engine,
            Engine::Sqlite(PathBuf::from("data/switchboard.db"))
        );
        assert_eq!(config.jwt.leeway, Duration::from_secs(60));
    }

    #[test]
    fn set_variables_override_and_bad_ones_name_the_variable() {
        let config = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_OUTBOX_CAPACITY").then(|| "8".to_string())
        })
        .unwrap();
        assert_eq!(config.hub.outbox_capacity, 8);
        let clustered = ServerConfig::from_lookup(|name| match name {
            "SWITCHBOARD_ENGINE" => Some("redis".into()),
            "SWITCHBOARD_REDIS_URL" => Some("redis://10.0.0.5:6380/2".into()),
            "SWITCHBOARD_NODE_TTL_MS" => Some("3000".into()),
            _ => None,
        })
        .unwrap()
        .engine;
        let Engine::Redis(redis) = clustered else {
            panic!("the redis engine")
        };
        assert_eq!(redis.url, "redis://10.0.0.5:6380/2");
        assert_eq!(redis.prefix, "switchboard");
        assert_eq!(redis.node_ttl, Duration::from_secs(3));
        let memory = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_ENGINE").then(|| "memory".to_string())
        })
        .unwrap();
        assert_eq!(memory.engine, Engine::Memory);
        let engine = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_ENGINE").then(|| "etcd".to_string())
        })
        .unwrap_err();
        assert!(engine.to_string().contains("expected sqlite"), "{engine}");
        let err = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_FRAMES_PER_SECOND").then(|| "fast".to_string())
        })
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("SWITCHBOARD_FRAMES_PER_SECOND=\"fast\""));
    }

    #[test]
    fn every_variable_read_is_in_the_settings_table() {
        let asked = std::cell::RefCell::new(Vec::new());
        ServerConfig::from_lookup(|name| {
            asked.borrow_mut().push(name.to_string());
            match name {
                "SWITCHBOARD_ENGINE" => Some("redis".into()),
                "SWITCHBOARD_DEMO_TOKENS" => Some("true".into()),
                "SWITCHBOARD_JWT_SECRET" => Some("s".into()),
                "SWITCHBOARD_WEBHOOK_URL" => Some("https://hooks.example.com/x".into()),
                "SWITCHBOARD_WEBHOOK_SECRET" => {
                    Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into())
                }
                _ => None,
            }
        })
        .unwrap();
        let asked = asked.into_inner();
        for name in &asked {
            assert!(
                settings::by_variable(name).is_some(),
                "{name} is not in SETTINGS"
            );
        }
        for setting in settings::SETTINGS {
            let read = asked.iter().any(|n| n == setting.variable);
            let path_of_another_engine = setting.variable == "SWITCHBOARD_HISTORY_PATH";
            // `…_FILE` secrets are read by `secrets::read_files` before the lookup.
            let secret_file = super::super::secrets::SECRETS
                .iter()
                .any(|(variable, _)| setting.variable == format!("{variable}_FILE"));
            assert!(
                read || path_of_another_engine || secret_file,
                "{} is never read",
                setting.variable
            );
        }
    }

    #[test]
    fn a_jwks_url_must_be_https_unless_it_stays_on_this_machine() {
        let with = |url: &str| {
            let url = url.to_string();
            ServerConfig::from_lookup(move |name| {
                (name == "SWITCHBOARD_JWKS_URL").then(|| url.clone())
            })
        };
        assert!(with("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(with("http://127.0.0.1:8080/jwks").is_ok());
        assert!(with("http://localhost/jwks").is_ok());
        assert!(with("http://idp.example.com/jwks").is_err());
        assert!(with("http://127.0.0.1.evil.example/jwks").is_err());
    }
}
