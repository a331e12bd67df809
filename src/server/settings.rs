//! Every setting of the server, declared once: where it is written in the configuration file,
//! the environment variable that overrides it, its default and what it does. The file reader,
//! the environment, the defaults and the example configuration (`switchboard --example-config`,
//! checked against `config/switchboard.example.toml` by a test) all come from this table.

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The file's `[section]`.
    pub section: &'static str,
    /// The key in that section.
    pub key: &'static str,
    /// The environment variable that wins over the file.
    pub variable: &'static str,
    /// The default, written as in the environment; empty means unset.
    pub default: &'static str,
    /// What it does, in a line.
    pub doc: &'static str,
    /// A list: written as an array in the file, comma-separated in the environment.
    pub list: bool,
    /// Shown commented out in the example (no default, or a secret to choose).
    pub example: Option<&'static str>,
}

const fn setting(
    section: &'static str,
    key: &'static str,
    variable: &'static str,
    default: &'static str,
    doc: &'static str,
) -> Setting {
    Setting {
        section,
        key,
        variable,
        default,
        doc,
        list: false,
        example: None,
    }
}

const fn list(setting: Setting, example: &'static str) -> Setting {
    Setting {
        list: true,
        example: Some(example),
        ..setting
    }
}

const fn example(setting: Setting, example: &'static str) -> Setting {
    Setting {
        example: Some(example),
        ..setting
    }
}

/// The sections, in the order the example file shows them, with what each is about.
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "server",
        "HTTPS and WSS terminated by the server itself (the address is set in Leptos.toml, LEPTOS_SITE_ADDR or PORT).",
    ),
    (
        "engine",
        "Where messages are ordered and stored: one node, or several on one Redis.",
    ),
    (
        "limits",
        "What one client may cost the server, and how sockets are kept alive.",
    ),
    ("history", "How much history each channel keeps and sends."),
    ("auth", "Who may connect, sign in and publish."),
    (
        "hooks",
        "Back ends: one webhook endpoint here (more as [[webhooks]] entries), and the gates asked before connects, joins and sends.",
    ),
];

/// Every setting.
pub const SETTINGS: &[Setting] = &[
    example(
        setting(
            "server",
            "tls_cert_file",
            "SWITCHBOARD_TLS_CERT_FILE",
            "",
            "PEM certificate chain: with tls_key_file, the server speaks HTTPS and WSS (SIGHUP reloads both)",
        ),
        r#""/etc/switchboard/tls/fullchain.pem""#,
    ),
    example(
        setting(
            "server",
            "tls_key_file",
            "SWITCHBOARD_TLS_KEY_FILE",
            "",
            "PEM private key of that certificate",
        ),
        r#""/etc/switchboard/tls/privkey.pem""#,
    ),
    setting(
        "engine",
        "kind",
        "SWITCHBOARD_ENGINE",
        "sqlite",
        "sqlite: one node, history in a file; memory: one node, history lost on restart; redis: several nodes share channels, presence and history through one Redis",
    ),
    setting(
        "engine",
        "path",
        "SWITCHBOARD_HISTORY_PATH",
        "data/switchboard.db",
        "The SQLite history file (kind = sqlite), created on first run",
    ),
    setting(
        "engine",
        "redis_url",
        "SWITCHBOARD_REDIS_URL",
        "redis://127.0.0.1:6379",
        "The Redis of the cluster (kind = redis): redis://[user:password@]host:port/db",
    ),
    example(
        setting(
            "engine",
            "redis_url_file",
            "SWITCHBOARD_REDIS_URL_FILE",
            "",
            "A file holding redis_url (it may carry a password); instead of redis_url",
        ),
        r#""/run/secrets/redis_url""#,
    ),
    setting(
        "engine",
        "prefix",
        "SWITCHBOARD_REDIS_PREFIX",
        "switchboard",
        "Prefix of every Redis key and topic: one cluster per prefix (kind = redis)",
    ),
    setting(
        "engine",
        "node_ttl_ms",
        "SWITCHBOARD_NODE_TTL_MS",
        "10000",
        "A node silent this long is dead and its sockets leave presence (kind = redis)",
    ),
    setting(
        "limits",
        "max_payload_bytes",
        "SWITCHBOARD_MAX_PAYLOAD_BYTES",
        "65536",
        "Largest message payload, in bytes of JSON",
    ),
    setting(
        "limits",
        "max_frame_bytes",
        "SWITCHBOARD_MAX_FRAME_BYTES",
        "2097152",
        "Largest WebSocket message read at all, in bytes (larger: close 1009)",
    ),
    setting(
        "limits",
        "read_buffer_bytes",
        "SWITCHBOARD_READ_BUFFER_BYTES",
        "1024",
        "Read buffer per socket, in bytes (bigger frames take several reads)",
    ),
    setting(
        "limits",
        "max_channels_per_socket",
        "SWITCHBOARD_MAX_CHANNELS_PER_SOCKET",
        "100",
        "Channels one socket may join",
    ),
    setting(
        "limits",
        "outbox_capacity",
        "SWITCHBOARD_OUTBOX_CAPACITY",
        "1024",
        "Frames waiting for one socket before it counts as too slow (close 1013)",
    ),
    setting(
        "limits",
        "outbox_bytes",
        "SWITCHBOARD_OUTBOX_BYTES",
        "4194304",
        "Bytes waiting for one socket before it counts as too slow (close 1013)",
    ),
    setting(
        "limits",
        "frames_per_second",
        "SWITCHBOARD_FRAMES_PER_SECOND",
        "50",
        "Frames one socket may send per second, sustained",
    ),
    setting(
        "limits",
        "frame_burst",
        "SWITCHBOARD_FRAME_BURST",
        "100",
        "Frames one socket may send in a burst",
    ),
    setting(
        "limits",
        "rate_violation_burst",
        "SWITCHBOARD_RATE_VIOLATION_BURST",
        "100",
        "rate_limited answers a socket may earn before it is cut off (close 1008)",
    ),
    setting(
        "limits",
        "ping_interval_ms",
        "SWITCHBOARD_PING_INTERVAL_MS",
        "25000",
        "Ping interval; a socket silent for two intervals is dropped",
    ),
    setting(
        "limits",
        "write_timeout_ms",
        "SWITCHBOARD_WRITE_TIMEOUT_MS",
        "30000",
        "Longest a write to a socket may take before the connection is dropped",
    ),
    setting(
        "limits",
        "shutdown_grace_ms",
        "SWITCHBOARD_SHUTDOWN_GRACE_MS",
        "5000",
        "How long shutdown waits for sockets to close",
    ),
    setting(
        "limits",
        "store_queue",
        "SWITCHBOARD_STORE_QUEUE",
        "65536",
        "Messages waiting to be stored before senders get overloaded",
    ),
    setting(
        "limits",
        "store_queue_bytes",
        "SWITCHBOARD_STORE_QUEUE_BYTES",
        "67108864",
        "Bytes of messages waiting to be stored (or published to Redis) before senders get overloaded",
    ),
    setting(
        "limits",
        "connections_per_ip",
        "SWITCHBOARD_CONNECTIONS_PER_IP",
        "1000",
        "Open sockets per client IP address",
    ),
    setting(
        "limits",
        "sockets_per_user",
        "SWITCHBOARD_SOCKETS_PER_USER",
        "100",
        "Open sockets per signed-in user (token sub)",
    ),
    setting(
        "limits",
        "api_requests_per_second",
        "SWITCHBOARD_API_REQUESTS_PER_SECOND",
        "100",
        "HTTP API requests per second per API key, and per client IP address (bursts of twice as many)",
    ),
    setting(
        "limits",
        "page_requests_per_second",
        "SWITCHBOARD_PAGE_REQUESTS_PER_SECOND",
        "20",
        "Server function calls (pages sending, signing in) per second per client IP address (bursts of twice as many)",
    ),
    list(
        setting(
            "limits",
            "trusted_proxies",
            "SWITCHBOARD_TRUSTED_PROXIES",
            "",
            "Load balancers whose X-Forwarded-For names the client (IP addresses)",
        ),
        r#"["10.0.0.2"]"#,
    ),
    setting(
        "history",
        "keep",
        "SWITCHBOARD_HISTORY_KEEP",
        "1000",
        "Messages kept per channel",
    ),
    setting(
        "history",
        "max_age_ms",
        "SWITCHBOARD_HISTORY_MAX_AGE_MS",
        "2592000000",
        "Messages older than this are trimmed (30 days)",
    ),
    setting(
        "history",
        "trim_interval_ms",
        "SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS",
        "60000",
        "How often trimming runs",
    ),
    setting(
        "history",
        "on_join",
        "SWITCHBOARD_HISTORY_ON_JOIN",
        "50",
        "Messages sent after a join that asks for history",
    ),
    setting(
        "history",
        "max_resume",
        "SWITCHBOARD_MAX_RESUME",
        "10000",
        "Most missed messages replayed on a resume",
    ),
    example(
        setting(
            "auth",
            "jwt_secret",
            "SWITCHBOARD_JWT_SECRET",
            "",
            "HS256 secret for tokens; without a key, tokens are refused",
        ),
        r#""change me: at least 32 random bytes""#,
    ),
    example(
        setting(
            "auth",
            "jwt_secret_file",
            "SWITCHBOARD_JWT_SECRET_FILE",
            "",
            "A file holding jwt_secret; instead of jwt_secret",
        ),
        r#""/run/secrets/jwt_secret""#,
    ),
    example(
        setting(
            "auth",
            "jwt_public_key_file",
            "SWITCHBOARD_JWT_PUBLIC_KEY_FILE",
            "",
            "PEM file of the RSA public key that checks RS256 tokens",
        ),
        r#""/etc/switchboard/jwt-public.pem""#,
    ),
    example(
        setting(
            "auth",
            "jwks_file",
            "SWITCHBOARD_JWKS_FILE",
            "",
            "JWKS file whose keys check RS256 tokens (matched by kid)",
        ),
        r#""/etc/switchboard/jwks.json""#,
    ),
    example(
        setting(
            "auth",
            "jwks_url",
            "SWITCHBOARD_JWKS_URL",
            "",
            "HTTPS URL of your identity provider's JWKS (cached; fetched again for an unknown kid)",
        ),
        r#""https://example.eu.auth0.com/.well-known/jwks.json""#,
    ),
    example(
        setting(
            "auth",
            "jwt_issuer",
            "SWITCHBOARD_JWT_ISSUER",
            "",
            "Accepted token issuers (iss), comma-separated; unset: any",
        ),
        r#""https://example.eu.auth0.com/""#,
    ),
    example(
        setting(
            "auth",
            "jwt_audience",
            "SWITCHBOARD_JWT_AUDIENCE",
            "",
            "Accepted token audiences (aud), comma-separated; unset: tokens must carry none",
        ),
        r#""https://chat.example.com""#,
    ),
    setting(
        "auth",
        "jwt_leeway_seconds",
        "SWITCHBOARD_JWT_LEEWAY_SECONDS",
        "60",
        "Clock difference allowed when checking exp and nbf, in seconds",
    ),
    setting(
        "auth",
        "demo_tokens",
        "SWITCHBOARD_DEMO_TOKENS",
        "false",
        "Let the chat page's demo sign-in issue tokens for any name (trying out only)",
    ),
    list(
        setting(
            "auth",
            "api_keys",
            "SWITCHBOARD_API_KEYS",
            "",
            "Keys for the HTTP publish API (comma-separated)",
        ),
        r#"["a long random key"]"#,
    ),
    example(
        setting(
            "auth",
            "api_keys_file",
            "SWITCHBOARD_API_KEYS_FILE",
            "",
            "A file holding the API keys, one per line; instead of api_keys",
        ),
        r#""/run/secrets/api_keys""#,
    ),
    list(
        setting(
            "auth",
            "admin_keys",
            "SWITCHBOARD_ADMIN_KEYS",
            "",
            "Keys for the admin API and console (/api/admin, /admin), apart from api_keys; none: off",
        ),
        r#"["another long random key"]"#,
    ),
    example(
        setting(
            "auth",
            "admin_keys_file",
            "SWITCHBOARD_ADMIN_KEYS_FILE",
            "",
            "A file holding the admin keys, one per line; instead of admin_keys",
        ),
        r#""/run/secrets/admin_keys""#,
    ),
    list(
        setting(
            "auth",
            "allowed_origins",
            "SWITCHBOARD_ALLOWED_ORIGINS",
            "",
            "Other origins whose pages may open sockets (\"*\": any)",
        ),
        r#"["https://app.example.com"]"#,
    ),
    setting(
        "hooks",
        "url",
        "SWITCHBOARD_WEBHOOK_URL",
        "",
        "A webhook endpoint: events are POSTed here, signed (Standard Webhooks)",
    ),
    example(
        setting(
            "hooks",
            "secret",
            "SWITCHBOARD_WEBHOOK_SECRET",
            "",
            "Its signing secret: whsec_ followed by base64 of at least 16 random bytes",
        ),
        r#""whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
    ),
    example(
        setting(
            "hooks",
            "secret_file",
            "SWITCHBOARD_WEBHOOK_SECRET_FILE",
            "",
            "A file holding the webhook signing secret; instead of secret",
        ),
        r#""/run/secrets/webhook_secret""#,
    ),
    list(
        setting(
            "hooks",
            "events",
            "SWITCHBOARD_WEBHOOK_EVENTS",
            "",
            "The event types it wants (comma-separated); empty: all",
        ),
        r#"["message.stored", "member.joined", "member.left", "channel.occupied", "channel.vacated"]"#,
    ),
    list(
        setting(
            "hooks",
            "channels",
            "SWITCHBOARD_WEBHOOK_CHANNELS",
            "",
            "The channels it wants (patterns as in [[channels]]); empty: all",
        ),
        r#"["support/*"]"#,
    ),
    setting(
        "hooks",
        "timeout_ms",
        "SWITCHBOARD_WEBHOOK_TIMEOUT_MS",
        "10000",
        "How long one delivery may take before it counts as failed",
    ),
    setting(
        "hooks",
        "give_up_after_ms",
        "SWITCHBOARD_WEBHOOK_GIVE_UP_MS",
        "86400000",
        "Events still undelivered after this long are kept as dead (replayable) (24 hours)",
    ),
    example(
        setting(
            "hooks",
            "connect_url",
            "SWITCHBOARD_GATE_CONNECT_URL",
            "",
            "Asked before a socket is accepted (allow or refuse)",
        ),
        r#""https://app.example.com/switchboard/connect""#,
    ),
    example(
        setting(
            "hooks",
            "join_url",
            "SWITCHBOARD_GATE_JOIN_URL",
            "",
            "Asked before a join (allow, refuse, or set the member's extras)",
        ),
        r#""https://app.example.com/switchboard/join""#,
    ),
    example(
        setting(
            "hooks",
            "publish_url",
            "SWITCHBOARD_GATE_PUBLISH_URL",
            "",
            "Asked before a message is sent (allow, refuse, or replace the payload)",
        ),
        r#""https://app.example.com/switchboard/publish""#,
    ),
    example(
        setting(
            "hooks",
            "gate_secret",
            "SWITCHBOARD_GATE_SECRET",
            "",
            "Signs the gates' questions (whsec_…); unset: unsigned",
        ),
        r#""whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
    ),
    example(
        setting(
            "hooks",
            "gate_secret_file",
            "SWITCHBOARD_GATE_SECRET_FILE",
            "",
            "A file holding gate_secret; instead of gate_secret",
        ),
        r#""/run/secrets/gate_secret""#,
    ),
    setting(
        "hooks",
        "gate_timeout_ms",
        "SWITCHBOARD_GATE_TIMEOUT_MS",
        "2000",
        "How long a gate waits for the application's answer",
    ),
    setting(
        "hooks",
        "gate_on_failure",
        "SWITCHBOARD_GATE_ON_FAILURE",
        "refuse",
        "What a gate does when the application does not answer: refuse or allow",
    ),
];

/// Keys that were moved, and where to: an old key in a file is refused with this advice.
pub const MOVED: &[(&str, &str, &str)] = &[
    ("history", "engine", "[engine] kind (sqlite or memory)"),
    ("history", "path", "[engine] path"),
    ("cluster", "engine", "[engine] kind = \"redis\""),
    ("cluster", "redis_url", "[engine] redis_url"),
    ("cluster", "prefix", "[engine] prefix"),
    ("cluster", "node_ttl_ms", "[engine] node_ttl_ms"),
];

/// Variables that were replaced: set, they stop start-up with this advice.
pub const REPLACED_VARIABLES: &[(&str, &str)] = &[(
    "SWITCHBOARD_HISTORY",
    "SWITCHBOARD_ENGINE (sqlite, memory or redis)",
)];

/// The setting a variable stands for.
pub fn by_variable(variable: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.variable == variable)
}

/// The default of a variable, if it has one.
pub fn default_of(variable: &str) -> Option<&'static str> {
    by_variable(variable)
        .map(|s| s.default)
        .filter(|d| !d.is_empty())
}

/// The example configuration file: every setting with its default and what it does.
pub fn example_config() -> String {
    let mut out = String::from(
        "# Switchboard settings. Start with: switchboard --config config/switchboard.toml\n\
         # (or SWITCHBOARD_CONFIG=path). Every key can be overridden by the environment variable\n\
         # named beside it; a variable that is set wins over this file. Unknown keys stop start-up.\n\
         # The listen address comes from Leptos.toml (127.0.0.1:3000), LEPTOS_SITE_ADDR or PORT.\n\
         # Generated by `switchboard --example-config`.\n",
    );
    for (section, about) in SECTIONS {
        out.push_str(&format!("\n[{section}]\n# {about}\n"));
        for setting in SETTINGS.iter().filter(|s| s.section == *section) {
            out.push_str(&format!("\n# {}.\n# {}\n", setting.doc, setting.variable));
            let value = if setting.list {
                let items: Vec<String> = setting
                    .default
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(|item| format!("{item:?}"))
                    .collect();
                format!("[{}]", items.join(", "))
            } else if setting.default.parse::<u64>().is_ok()
                || matches!(setting.default, "true" | "false")
            {
                setting.default.to_string()
            } else {
                format!("{:?}", setting.default)
            };
            match setting.example {
                Some(example) => out.push_str(&format!("# {} = {example}\n", setting.key)),
                None => out.push_str(&format!("{} = {value}\n", setting.key)),
            }
        }
    }
    out.push_str(
        "\n# More webhook endpoints: url, secret, events, channels, timeout_ms, name (README,\n\
         # \"Backend hooks\").\n\
         # [[webhooks]]\n\
         # url = \"https://crm.example.com/hooks/switchboard\"\n\
         # secret = \"whsec_…\"\n\
         # events = [\"message.stored\"]\n\
         # channels = [\"support/*\"]\n\
         \n# Channel rules: the first matching pattern wins (PROTOCOL.md, \"Channel rules\").\n\
         # [[channels]]\n\
         # pattern = \"support/*\"\n\
         # join = \"authenticated\"\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_named_once_in_the_file_and_in_the_environment() {
        for (n, a) in SETTINGS.iter().enumerate() {
            assert!(a.variable.starts_with("SWITCHBOARD_"), "{}", a.variable);
            assert!(
                SECTIONS.iter().any(|(s, _)| *s == a.section),
                "{}",
                a.section
            );
            for b in &SETTINGS[n + 1..] {
                assert_ne!(a.variable, b.variable);
                assert!((a.section, a.key) != (b.section, b.key), "{}", a.key);
            }
        }
    }

    #[test]
    fn the_shipped_example_is_the_generated_one() {
        let shipped = include_str!("../../config/switchboard.example.toml");
        assert_eq!(
            shipped,
            example_config(),
            "config/switchboard.example.toml is stale: regenerate it with `switchboard --example-config > config/switchboard.example.toml`"
        );
    }
}
