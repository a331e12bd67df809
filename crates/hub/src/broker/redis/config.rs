//! Where and how a node joins the others on one Redis.

use std::time::Duration;

/// Where and how a node joins a cluster.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// Prefix of every key and topic, so deployments can share one Redis.
    pub prefix: String,
    /// A node that has not beaten for this long counts as dead and its sockets leave presence.
    pub node_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            prefix: "switchboard".into(),
            node_ttl: Duration::from_secs(10),
        }
    }
}
