//! Server settings: embedded defaults, then a TOML file (if given), then `SWITCHBOARD_*`
//! environment variables, each overriding the one before. A bad value stops start-up with the
//! variable (or the file, line and key) and what is wrong with it.

use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_hub::{ClusterConfig, HubConfig};

use super::tls::TlsFiles;

/// Where message history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEngine {
    /// A SQLite file (the default), created on first run.
    Sqlite(PathBuf),
    /// Process memory: nothing survives a restart.
    Memory,
}

/// Every setting of the server process.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits of the realtime engine.
    pub hub: HubConfig,
    /// How often each socket is pinged; a socket silent for two intervals is dropped.
    pub ping_interval: Duration,
    /// Largest WebSocket message read at all; larger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Read buffer per socket.
    pub read_buffer_bytes: usize,
    /// Secret for HS256 tokens; without it tokens are refused and every socket is anonymous.
    pub jwt_secret: Option<String>,
    /// How long a graceful shutdown waits for sockets to close.
    pub shutdown_grace: Duration,
    /// Where history is kept (when the node runs alone).
    pub history: HistoryEngine,
    /// Set when the engine is Redis: this node shares fan-out, presence and history with
    /// every node on the same Redis and prefix (and `history` is not used).
    pub cluster: Option<ClusterConfig>,
    /// Keys accepted by the HTTP publish API; empty turns the API off.
    pub api_keys: Vec<String>,
    /// Origins (e.g. `https://app.example.com`) whose pages may open sockets besides the
    /// server's own; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Most open sockets from one IP address.
    pub connections_per_ip: usize,
    /// Load balancers whose `X-Forwarded-For` names the client (for the per-IP limit).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most open sockets of one signed-in user (token `sub`).
    pub sockets_per_user: usize,
    /// PEM file of the RSA public key that checks RS256 tokens.
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file whose keys check RS256 tokens (matched by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Let the chat page's "Sign in (demo account)" issue tokens for any name.
    pub demo_tokens: bool,
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
        Self {
            hub: HubConfig::default(),
            ping_interval: Duration::from_secs(25),
            max_frame_bytes: 2 * 1024 * 1024,
            read_buffer_bytes: 1024,
            jwt_secret: None,
            shutdown_grace: Duration::from_secs(5),
            history: HistoryEngine::Sqlite(PathBuf::from("data/switchboard.db")),
            cluster: None,
            api_keys: Vec::new(),
            allowed_origins: Vec::new(),
            connections_per_ip: 1000,
            trusted_proxies: Vec::new(),
            sockets_per_user: 100,
            jwt_public_key_file: None,
            jwks_file: None,
            demo_tokens: false,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Defaults, then the file at `path` (if any), then the `SWITCHBOARD_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
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
        Ok(config)
    }

    /// Defaults overridden by `lookup(name)` for each setting.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let hub = &mut config.hub;
        let read = |variable: &'static str, target: &mut usize| -> Result<(), ConfigError> {
            if let Some(value) = lookup(variable) {
                *target = value.trim().parse().map_err(|_| ConfigError {
                    variable,
                    value: value.clone(),
                    reason: "expected a whole number".into(),
                })?;
            }
            Ok(())
        };
        read("SWITCHBOARD_MAX_PAYLOAD_BYTES", &mut hub.max_payload_bytes)?;
        read(
            "SWITCHBOARD_MAX_CHANNELS_PER_SOCKET",
            &mut hub.max_channels_per_socket,
        )?;
        read("SWITCHBOARD_OUTBOX_CAPACITY", &mut hub.outbox_capacity)?;
        let mut keep = hub.history_keep as usize;
        read("SWITCHBOARD_HISTORY_KEEP", &mut keep)?;
        hub.history_keep = keep as u64;
        read("SWITCHBOARD_HISTORY_ON_JOIN", &mut hub.history_on_join)?;
        read("SWITCHBOARD_MAX_RESUME", &mut hub.max_resume)?;
        read("SWITCHBOARD_STORE_QUEUE", &mut hub.store_queue)?;
        read("SWITCHBOARD_MAX_FRAME_BYTES", &mut config.max_frame_bytes)?;
        read(
            "SWITCHBOARD_READ_BUFFER_BYTES",
            &mut config.read_buffer_bytes,
        )?;
        let mut rate = [
            hub.frames_per_second as usize,
            hub.frame_burst as usize,
            hub.rate_violation_burst as usize,
        ];
        read("SWITCHBOARD_FRAMES_PER_SECOND", &mut rate[0])?;
        read("SWITCHBOARD_FRAME_BURST", &mut rate[1])?;
        read("SWITCHBOARD_RATE_VIOLATION_BURST", &mut rate[2])?;
        let to_u32 = |variable: &'static str, n: usize| {
            u32::try_from(n).ok().filter(|n| *n > 0).ok_or(ConfigError {
                variable,
                value: n.to_string(),
                reason: "expected a number from 1 to 4294967295".into(),
            })
        };
        hub.frames_per_second = to_u32("SWITCHBOARD_FRAMES_PER_SECOND", rate[0])?;
        hub.frame_burst = to_u32("SWITCHBOARD_FRAME_BURST", rate[1])?;
        hub.rate_violation_burst = to_u32("SWITCHBOARD_RATE_VIOLATION_BURST", rate[2])?;
        let mut millis = [
            config.ping_interval.as_millis() as usize,
            config.shutdown_grace.as_millis() as usize,
            config.hub.history_max_age.as_millis() as usize,
            config.hub.history_trim_interval.as_millis() as usize,
        ];
        read("SWITCHBOARD_PING_INTERVAL_MS", &mut millis[0])?;
        read("SWITCHBOARD_SHUTDOWN_GRACE_MS", &mut millis[1])?;
        read("SWITCHBOARD_HISTORY_MAX_AGE_MS", &mut millis[2])?;
        read("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", &mut millis[3])?;
        config.ping_interval = Duration::from_millis(millis[0].max(10) as u64);
        config.shutdown_grace = Duration::from_millis(millis[1] as u64);
        config.hub.history_max_age = Duration::from_millis(millis[2] as u64);
        config.hub.history_trim_interval = Duration::from_millis(millis[3].max(10) as u64);
        config.history = match lookup("SWITCHBOARD_HISTORY").as_deref().map(str::trim) {
            None | Some("sqlite") => match lookup("SWITCHBOARD_HISTORY_PATH") {
                Some(path) if !path.trim().is_empty() => HistoryEngine::Sqlite(PathBuf::from(path)),
                _ => config.history,
            },
            Some("memory") => HistoryEngine::Memory,
            Some(other) => {
                return Err(ConfigError {
                    variable: "SWITCHBOARD_HISTORY",
                    value: other.to_string(),
                    reason: "expected sqlite or memory".into(),
                })
            }
        };
        config.cluster = match lookup("SWITCHBOARD_ENGINE").as_deref().map(str::trim) {
            None | Some("memory") => None,
            Some("redis") => {
                let mut cluster = ClusterConfig::default();
                if let Some(url) = lookup("SWITCHBOARD_REDIS_URL").filter(|u| !u.trim().is_empty())
                {
                    cluster.redis_url = url.trim().to_string();
                }
                if let Some(prefix) = lookup("SWITCHBOARD_REDIS_PREFIX") {
                    let prefix = prefix.trim().to_string();
                    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                        return Err(ConfigError {
                            variable: "SWITCHBOARD_REDIS_PREFIX",
                            value: prefix,
                            reason: "expected a word without spaces, e.g. switchboard".into(),
                        });
                    }
                    cluster.prefix = prefix;
                }
                let mut ttl = cluster.node_ttl.as_millis() as usize;
                read("SWITCHBOARD_NODE_TTL_MS", &mut ttl)?;
                if ttl < 300 {
                    return Err(ConfigError {
                        variable: "SWITCHBOARD_NODE_TTL_MS",
                        value: ttl.to_string(),
                        reason: "expected at least 300 (the node beats every third of it)".into(),
                    });
                }
                cluster.node_ttl = Duration::from_millis(ttl as u64);
                Some(cluster)
            }
            Some(other) => {
                return Err(ConfigError {
                    variable: "SWITCHBOARD_ENGINE",
                    value: other.to_string(),
                    reason: "expected memory (one node) or redis (several nodes sharing a Redis)"
                        .into(),
                })
            }
        };
        config.jwt_secret = lookup("SWITCHBOARD_JWT_SECRET").filter(|s| !s.is_empty());
        let list = |variable: &str| -> Vec<String> {
            lookup(variable)
                .map(|value| {
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        config.api_keys = list("SWITCHBOARD_API_KEYS");
        config.allowed_origins = list("SWITCHBOARD_ALLOWED_ORIGINS");
        read(
            "SWITCHBOARD_CONNECTIONS_PER_IP",
            &mut config.connections_per_ip,
        )?;
        read("SWITCHBOARD_SOCKETS_PER_USER", &mut config.sockets_per_user)?;
        for proxy in list("SWITCHBOARD_TRUSTED_PROXIES") {
            let address = proxy.parse().map_err(|_| ConfigError {
                variable: "SWITCHBOARD_TRUSTED_PROXIES",
                value: proxy.clone(),
                reason: "expected IP addresses, e.g. 10.0.0.2,10.0.0.3".into(),
            })?;
            config.trusted_proxies.push(address);
        }
        let path = |variable: &str| {
            lookup(variable)
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
        };
        config.jwt_public_key_file = path("SWITCHBOARD_JWT_PUBLIC_KEY_FILE");
        config.jwks_file = path("SWITCHBOARD_JWKS_FILE");
        config.tls = match (
            path("SWITCHBOARD_TLS_CERT_FILE"),
            path("SWITCHBOARD_TLS_KEY_FILE"),
        ) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
            }),
            (cert, _) => {
                let (variable, reason) = match cert {
                    Some(_) => ("SWITCHBOARD_TLS_KEY_FILE", "tls_cert_file is set: set tls_key_file (SWITCHBOARD_TLS_KEY_FILE) to its private key too"),
                    None => ("SWITCHBOARD_TLS_CERT_FILE", "tls_key_file is set: set tls_cert_file (SWITCHBOARD_TLS_CERT_FILE) to its certificate chain too"),
                };
                return Err(ConfigError {
                    variable,
                    value: String::new(),
                    reason: reason.into(),
                });
            }
        };
        config.demo_tokens = match lookup("SWITCHBOARD_DEMO_TOKENS").as_deref().map(str::trim) {
            None | Some("false") | Some("0") | Some("") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: "SWITCHBOARD_DEMO_TOKENS",
                    value: other.to_string(),
                    reason: "expected true or false".into(),
                })
            }
        };
        if config.demo_tokens && config.jwt_secret.is_none() {
            return Err(ConfigError {
                variable: "SWITCHBOARD_DEMO_TOKENS",
                value: "true".into(),
                reason:
                    "demo tokens are signed with jwt_secret (SWITCHBOARD_JWT_SECRET): set it too"
                        .into(),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_keep_the_defaults() {
        let config = ServerConfig::from_lookup(|_| None).unwrap();
        assert_eq!(config.hub.max_payload_bytes, 64 * 1024);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
        assert_eq!(
            config.history,
            HistoryEngine::Sqlite(PathBuf::from("data/switchboard.db"))
        );
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
        .cluster
        .unwrap();
        assert_eq!(clustered.redis_url, "redis://10.0.0.5:6380/2");
        assert_eq!(clustered.prefix, "switchboard");
        assert_eq!(clustered.node_ttl, Duration::from_secs(3));
        let engine = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_ENGINE").then(|| "etcd".to_string())
        })
        .unwrap_err();
        assert!(engine.to_string().contains("expected memory"), "{engine}");
        let err = ServerConfig::from_lookup(|name| {
            (name == "SWITCHBOARD_FRAMES_PER_SECOND").then(|| "fast".to_string())
        })
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("SWITCHBOARD_FRAMES_PER_SECOND=\"fast\""));
    }
}
