//! Backend hooks: signed webhooks delivered from the engine's outbox, and the synchronous
//! gates a back end may put before connects, joins and sends.
//!
//! The engine records every event in its outbox (a stored message's in the same commit as the
//! message); [`delivery`] takes them from there to each endpoint — at least once, in order per
//! channel, with backoff, and on a cluster from one node at a time — so none is lost to a
//! crash or to a receiver that is down for hours. [`gates`] asks a back end, per request, and
//! follows its answer.

pub mod delivery;
pub mod gates;
pub mod signing;

use std::time::Duration;
pub use switchboard_hub::iso8601;
use switchboard_hub::{EventType, HookEndpoint, HookRoutes};

use signing::SigningKey;

/// One webhook endpoint as configured.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Its name: the outbox is kept per name (default: derived from the URL).
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Signs every delivery.
    pub key: SigningKey,
    /// The types it wants; empty: all.
    pub events: Vec<EventType>,
    /// Channel patterns; empty: all.
    pub channels: Vec<String>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

impl WebhookSettings {
    /// An endpoint from its written settings; what is wrong says which setting and why.
    pub fn new(
        name: Option<&str>,
        url: &str,
        secret: &str,
        events: &[String],
        channels: &[String],
        timeout_ms: Option<u64>,
    ) -> Result<Self, String> {
        let url = url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("url {url:?}: expected an http:// or https:// URL"));
        }
        let key = SigningKey::from_secret(secret).map_err(|why| format!("secret: {why}"))?;
        let events = events
            .iter()
            .map(|name| {
                EventType::parse(name.trim()).ok_or_else(|| {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    format!(
                        "events: {name:?} is not an event type; expected {}",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for pattern in channels {
            let body = pattern.strip_suffix('*').unwrap_or(pattern);
            if pattern.is_empty() || body.contains('*') {
                return Err(format!(
                    "channels: {pattern:?}: use an exact name or a prefix ending in *"
                ));
            }
        }
        let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name)
                if name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                name.to_string()
            }
            Some(name) => {
                return Err(format!(
                    "name {name:?}: use letters, digits, - and _ (it names the endpoint's outbox)"
                ))
            }
            None => default_name(url),
        };
        Ok(Self {
            name,
            url: url.to_string(),
            key,
            events,
            channels: channels.to_vec(),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(10_000).max(100)),
        })
    }
}

/// A stable name for an endpoint configured without one: its host and path, made safe.
fn default_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut name: String = rest
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(80);
    name.trim_matches('-').to_string()
}

/// The engine's view of the endpoints: which events of which channels each wants.
pub fn routes(endpoints: &[WebhookSettings]) -> HookRoutes {
    HookRoutes::new(
        endpoints
            .iter()
            .map(|e| HookEndpoint {
                name: e.name.clone(),
                events: e.events.clone(),
                channels: e.channels.clone(),
            })
            .collect(),
    )
}

/// What to do when a gate's back end does not answer (or answers nonsense).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse the request (the default: a gate exists because the back end must decide).
    Refuse,
    /// Let it through.
    Allow,
}

/// The synchronous gates, as configured.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Asked before a socket is accepted.
    pub connect_url: Option<String>,
    /// Asked before a join.
    pub join_url: Option<String>,
    /// Asked before a message is sent (sockets and pages; the API key is the server side).
    pub publish_url: Option<String>,
    /// Signs every question.
    pub key: Option<SigningKey>,
    /// How long a question may take.
    pub timeout: Duration,
    /// What an unanswered question means.
    pub on_failure: OnFailure,
}

impl GateSettings {
    /// Whether any gate is configured.
    pub fn any(&self) -> bool {
        self.connect_url.is_some() || self.join_url.is_some() || self.publish_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn endpoints_are_checked_and_named() {
        let ok = WebhookSettings::new(
            None,
            "https://hooks.example.com/switchboard",
            SECRET,
            &["message.stored".into()],
            &["support/*".into()],
            None,
        )
        .unwrap();
        assert_eq!(ok.name, "hooks-example-com-switchboard");
        assert_eq!(ok.events, [EventType::MessageStored]);
        let bad_event = WebhookSettings::new(
            None,
            "https://x",
            SECRET,
            &["message.sent".into()],
            &[],
            None,
        )
        .unwrap_err();
        assert!(
            bad_event.contains("events: \"message.sent\""),
            "{bad_event}"
        );
        assert!(WebhookSettings::new(None, "ftp://x", SECRET, &[], &[], None).is_err());
        assert!(WebhookSettings::new(None, "https://x", "secret", &[], &[], None).is_err());
        assert!(WebhookSettings::new(Some("a b"), "https://x", SECRET, &[], &[], None).is_err());
    }
}
