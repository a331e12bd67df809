//! Synchronous gates: before a connect, a join or a send, the server asks the back end — a
//! signed POST in the Standard Webhooks format, `{"type": "gate.join", "timestamp", "data"}` —
//! and follows its answer:
//!
//! ```json
//! {"allow": true, "extras": {"name": "…"}, "payload": {…}, "cache_seconds": 0}
//! {"allow": false, "reason": "the room is closed"}
//! ```
//!
//! `extras` (joins) replaces the member's public identity; `payload` (sends) replaces what is
//! sent. A back end that does not answer in time, or answers anything else, gets the
//! configured outcome (refuse, by default). Answers are not remembered unless the back end
//! says for how long (`cache_seconds`).

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard_hub::{GateDecision, Gates, Identity, JoinAsk, PublishAsk};
use switchboard_protocol::Target;

use super::{iso8601, GateSettings, OnFailure};

/// Most remembered answers; beyond it, the expired go first.
const MAX_CACHED: usize = 10_000;
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// What a back end answers.
#[derive(Debug, Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    extras: Option<Map<String, Value>>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    cache_seconds: Option<u64>,
}

/// The gates of this server, over HTTP.
pub struct HttpGates {
    settings: GateSettings,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, (GateDecision, Instant)>>,
}

impl std::fmt::Debug for HttpGates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGates")
            .field("settings", &self.settings)
            .finish()
    }
}

impl HttpGates {
    /// Gates with these settings.
    pub fn new(settings: GateSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
            .map_err(|err| format!("cannot make the HTTP client for gates: {err}"))?;
        if settings.key.is_none() {
            tracing::warn!(
                "the gates' questions go out unsigned: set gate_secret (SWITCHBOARD_GATE_SECRET) \
                 so the back end can check that they come from this server"
            );
        }
        Ok(Self {
            settings,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks the back end at `url` about `kind`; `cache_key` names the question for answers
    /// the back end lets us remember, and `data` is made only when it has to be asked.
    async fn ask(
        &self,
        url: &str,
        kind: &str,
        cache_key: Key,
        data: impl FnOnce() -> Value,
    ) -> GateDecision {
        let Key {
            name: cache_key,
            keeps_rewrites,
        } = cache_key;
        if let Some(decision) = self.cached(&cache_key) {
            return decision;
        }
        let data = data();
        let id = format!("gate_{}", uuid::Uuid::new_v4().simple());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let body = json!({
            "type": kind,
            "timestamp": iso8601(now.as_millis() as u64),
            "data": data,
        })
        .to_string();
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.as_secs().to_string());
        if let Some(key) = &self.settings.key {
            request = request.header(
                "webhook-signature",
                key.sign(&id, now.as_secs(), body.as_bytes()),
            );
        }
        let answered = async {
            let response = request.body(body).send().await.map_err(|err| {
                if err.is_timeout() {
                    format!("no answer within {:?}", self.settings.timeout)
                } else {
                    format!("unreachable: {err}")
                }
            })?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            let mut response = response;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err("answered more than 1 MiB".to_string());
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice::<Answer>(&body)
                .map_err(|err| format!("answered something else than {{\"allow\": …}}: {err}"))
        }
        .await;
        match answered {
            Ok(answer) => {
                let decision = if answer.allow {
                    GateDecision::Allow {
                        extras: answer.extras,
                        payload: answer.payload,
                    }
                } else {
                    GateDecision::Refuse(
                        answer
                            .reason
                            .unwrap_or_else(|| "refused by the application".into()),
                    )
                };
                let rewrites = matches!(
                    decision,
                    GateDecision::Allow {
                        payload: Some(_),
                        ..
                    }
                );
                if let Some(seconds) = answer.cache_seconds.filter(|s| *s > 0) {
                    if keeps_rewrites || !rewrites {
                        self.remember(cache_key, &decision, Duration::from_secs(seconds));
                    }
                }
                decision
            }
            Err(why) => {
                tracing::warn!(gate = kind, "the application's gate failed: {why}");
                match self.settings.on_failure {
                    OnFailure::Allow => GateDecision::allow(),
                    OnFailure::Refuse => GateDecision::Refuse(
                        "the application could not decide; try again shortly".into(),
                    ),
                }
            }
        }
    }

    fn cached(&self, key: &str) -> Option<GateDecision> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(decision, _)| decision.clone())
    }

    fn remember(&self, key: String, decision: &GateDecision, ttl: Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= MAX_CACHED {
                return;
            }
        }
        cache.insert(key, (decision.clone(), Instant::now() + ttl));
    }

    /// May this caller connect? `None` when no connect gate is configured.
    pub async fn connect(&self, identity: &Identity, ip: std::net::IpAddr) -> Option<GateDecision> {
        let url = self.settings.connect_url.as_deref()?;
        let who = identity
            .extras
            .get("id")
            .and_then(Value::as_str)
            .filter(|_| identity.authenticated)
            .map_or_else(|| format!("ip:{ip}"), |user| format!("user:{user}"));
        let key = Key::of(format!("connect\t{who}"));
        let data = || {
            json!({
                "ip": ip.to_string(),
                "authenticated": identity.authenticated,
                "extras": identity.extras,
            })
        };
        Some(self.ask(url, "gate.connect", key, data).await)
    }
}

/// What names a question for the answers the back end lets us keep.
struct Key {
    name: String,
    /// Whether an answer that rewrites the payload may be kept under it (not when the key
    /// stands for many payloads).
    keeps_rewrites: bool,
}

impl Key {
    fn of(name: String) -> Self {
        Self {
            name,
            keeps_rewrites: true,
        }
    }
}

/// The cache key of a member: its user id when signed in, else its socket.
fn member_key(client: &Value) -> String {
    let signed_in = client["permissions"]["authenticated"].as_bool() == Some(true);
    match client["extras"]["id"].as_str() {
        Some(user) if signed_in => format!("user:{user}"),
        _ => format!("socket:{}", client["socketId"].as_str().unwrap_or_default()),
    }
}

impl Gates for HttpGates {
    fn join<'a>(&'a self, ask: JoinAsk<'a>) -> BoxFuture<'a, GateDecision> {
        Box::pin(async move {
            let Some(url) = self.settings.join_url.as_deref() else {
                return GateDecision::allow();
            };
            let client: Value = serde_json::from_str(ask.client).unwrap_or(Value::Null);
            let key = Key::of(format!("join\t{}\t{}", ask.channel, member_key(&client)));
            let data = || {
                json!({
                    "channel": ask.channel,
                    "client": client,
                    "presence": ask.presence,
                })
            };
            self.ask(url, "gate.join", key, data).await
        })
    }

    fn publish<'a>(&'a self, ask: PublishAsk<'a>) -> BoxFuture<'a, GateDecision> {
        Box::pin(async move {
            let Some(url) = self.settings.publish_url.as_deref() else {
                return GateDecision::allow();
            };
            let client: Value = serde_json::from_str(ask.client).unwrap_or(Value::Null);
            // How it is sent, in the sender's own words (`options`), when not to everyone.
            let mut options = Map::new();
            if ask.volatile {
                options.insert("volatile".into(), Value::Bool(true));
            }
            match ask.target {
                Target::Everyone => {}
                Target::Authenticated => {
                    options.insert("authenticated".into(), Value::Bool(true));
                }
                Target::Socket(socket) => {
                    options.insert("socketId".into(), Value::String(socket.into()));
                }
            }
            let options = Value::Object(options);
            let asked = format!(
                "publish\t{}\t{}\t{options}",
                ask.channel,
                member_key(&client)
            );
            // A volatile stream (a cursor's positions) never repeats a payload: its answer is
            // kept for the sender, channel and options, so a back end can let a stream through
            // for a while with `cache_seconds`; an answer that rewrites is not kept for it.
            let key = if ask.volatile {
                Key {
                    name: asked,
                    keeps_rewrites: false,
                }
            } else {
                Key::of(format!("{asked}\t{}", ask.payload.get()))
            };
            let data = || {
                let payload: Value = serde_json::from_str(ask.payload.get()).unwrap_or(Value::Null);
                json!({
                    "channel": ask.channel,
                    "client": client,
                    "payload": payload,
                    "options": options,
                })
            };
            self.ask(url, "gate.publish", key, data).await
        })
    }
}
