//! What back ends hear and decide: webhook events recorded in an outbox beside the history
//! (a stored message's event in the same commit as the message, so none is lost), and the
//! synchronous gates a back end may put in front of joins and sends.
//!
//! The engine records; delivering (HTTP, signatures, retries) belongs to the server, which
//! reads the outbox through [`HookOutbox`] and answers gates through [`Gates`].

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use switchboard_protocol::Target;

use crate::encode::{push_json_str, StoredTemplate};
use crate::history::StoreError;
use crate::time::iso8601;

/// The kinds of event a back end can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A message (or server event) was stored.
    MessageStored,
    /// A socket joined a channel.
    MemberJoined,
    /// A socket left a channel (it left, disconnected, or its node died).
    MemberLeft,
    /// A channel got its first member.
    ChannelOccupied,
    /// A channel lost its last member.
    ChannelVacated,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 5] = [
        EventType::MessageStored,
        EventType::MemberJoined,
        EventType::MemberLeft,
        EventType::ChannelOccupied,
        EventType::ChannelVacated,
    ];

    /// The type's name in events and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageStored => "message.stored",
            EventType::MemberJoined => "member.joined",
            EventType::MemberLeft => "member.left",
            EventType::ChannelOccupied => "channel.occupied",
            EventType::ChannelVacated => "channel.vacated",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It sent a `leave`.
    Left,
    /// Its socket closed.
    Disconnected,
    /// The node it was on stopped (crashed, or restarted without a clean shutdown).
    NodeDied,
    /// An operator removed it.
    Removed,
}

impl LeaveReason {
    /// The reason's name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::NodeDied => "node_died",
            LeaveReason::Removed => "removed",
        }
    }
}

/// One webhook endpoint, as the engine needs to know it: which events of which channels it
/// wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEndpoint {
    /// Its stable name (the outbox is kept per name).
    pub name: String,
    /// The types it wants; empty: all.
    pub events: Vec<EventType>,
    /// Channel patterns (an exact name, or a prefix ending in `*`); empty: all.
    pub channels: Vec<String>,
}

impl HookEndpoint {
    /// Whether it wants `event` of `channel`.
    pub fn wants(&self, event: EventType, channel: &str) -> bool {
        let kind = self.events.is_empty() || self.events.contains(&event);
        let place = self.channels.is_empty()
            || self
                .channels
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => channel.starts_with(prefix),
                    None => channel == pattern,
                });
        kind && place
    }
}

/// Every endpoint; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HookRoutes(Arc<Vec<HookEndpoint>>);

impl HookRoutes {
    /// Routes to these endpoints.
    pub fn new(endpoints: Vec<HookEndpoint>) -> Self {
        Self(Arc::new(endpoints))
    }

    /// The endpoints that want `event` of `channel`.
    pub fn wanting(&self, event: EventType, channel: &str) -> Vec<Arc<str>> {
        self.0
            .iter()
            .filter(|e| e.wants(event, channel))
            .map(|e| Arc::from(e.name.as_str()))
            .collect()
    }

    /// Whether any endpoint wants membership events (joins, leaves, occupancy).
    pub fn wants_members(&self) -> bool {
        self.0
            .iter()
            .any(|e| e.events.is_empty() || e.events.iter().any(|t| *t != EventType::MessageStored))
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> &[HookEndpoint] {
        &self.0
    }
}

/// An event for one endpoint, as recorded in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The `webhook-id`: stable across retries and restarts (a stored message's is derived
    /// from its epoch and seq).
    pub id: String,
    /// The endpoint it goes to.
    pub endpoint: String,
    /// The channel it is about (its events are delivered in order).
    pub channel: String,
    /// Its type.
    pub kind: EventType,
    /// The body, `{"type", "timestamp", "data"}`.
    pub body: Bytes,
    /// When it happened, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// For a `message.stored` event recorded in the same append as its message, that
    /// message's seq: a store that keeps the message may keep this reference instead of a
    /// second copy of the body, and build the body from the message when it is delivered.
    /// `None` otherwise.
    pub message_seq: Option<u64>,
}

/// An event waiting in the outbox, with where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The store's key for it.
    pub key: String,
    /// The event.
    pub event: OutboxEvent,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this (milliseconds since the Unix epoch).
    pub next_attempt_ms: u64,
}

/// How an endpoint's outbox stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events waiting to be delivered.
    pub pending: u64,
    /// Events given up on (kept, replayable).
    pub dead: u64,
    /// When the oldest waiting event happened.
    pub oldest_pending_ms: Option<u64>,
}

/// Where webhook events wait until their endpoint took them. Implemented by every history
/// store (events of stored messages are written in the same commit as the messages).
pub trait HookOutbox: Send + Sync + 'static {
    /// Up to `limit` waiting events of `endpoint`, oldest first.
    fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError>;
    /// The endpoint took all these events: forget them, in one write. A store may hold the
    /// write back for its next commit of messages (they are no longer pending meanwhile), so
    /// that deliveries never make a message commit wait; a crash before then delivers them
    /// again, as at-least-once allows.
    fn delivered_all(&self, endpoint: &str, keys: &[String]) -> Result<(), StoreError>;
    /// The endpoint took the event: forget it.
    fn delivered(&self, endpoint: &str, key: &str) -> Result<(), StoreError> {
        self.delivered_all(endpoint, &[key.to_string()])
    }
    /// The attempt failed: try again at `next_attempt_ms`.
    fn retry_later(
        &self,
        endpoint: &str,
        key: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError>;
    /// Give up on the event: keep it as dead.
    fn give_up(&self, endpoint: &str, key: &str) -> Result<(), StoreError>;
    /// Puts dead events of `endpoint` (every endpoint when `None`) back in line; how many.
    fn replay_dead(&self, endpoint: Option<&str>) -> Result<u64, StoreError>;
    /// How the endpoint's outbox stands.
    fn outbox_stats(&self, endpoint: &str) -> Result<OutboxStats, StoreError>;
    /// Whether this store builds a `message.stored` event's body from the message stored in the
    /// same commit (see [`OutboxEvent::message_seq`]), so the event may come without one.
    fn builds_message_bodies(&self) -> bool {
        false
    }
    /// Whether `holder` may deliver `endpoint`'s events for the next `ttl` (on a cluster one
    /// node at a time delivers each endpoint; alone, always).
    fn take_lease(
        &self,
        _endpoint: &str,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// The body of an event, `{"type", "timestamp", "data"}`, with `data` already JSON.
pub(crate) fn body(kind: EventType, at_ms: u64, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 80);
    out.push_str(r#"{"type":""#);
    out.push_str(kind.as_str());
    out.push_str(r#"","timestamp":""#);
    out.push_str(&iso8601(at_ms));
    out.push_str(r#"","data":"#);
    out.push_str(data);
    out.push('}');
    Bytes::from(out)
}

/// A membership event for one endpoint.
pub(crate) fn membership_event(
    endpoint: &str,
    kind: EventType,
    channel: &str,
    client: Option<&str>,
    reason: Option<LeaveReason>,
    at_ms: u64,
) -> OutboxEvent {
    let mut data = String::with_capacity(96 + client.map_or(0, str::len));
    data.push_str(r#"{"channel":"#);
    push_json_str(&mut data, channel);
    if let Some(client) = client {
        data.push_str(r#","client":"#);
        data.push_str(client);
    }
    if let Some(reason) = reason {
        data.push_str(r#","reason":""#);
        data.push_str(reason.as_str());
        data.push('"');
    }
    data.push('}');
    OutboxEvent {
        id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
        endpoint: endpoint.to_string(),
        channel: channel.to_string(),
        kind,
        body: body(kind, at_ms, &data),
        created_ms: at_ms,
        message_seq: None,
    }
}

/// The `webhook-id` of a stored message's event, from its channel, epoch and seq: the same for
/// every delivery of it, after any restart. (Channel names are letters, digits and `_-.:/`, so
/// it is a valid header value.)
pub(crate) fn message_event_id(channel: &str, epoch: &str, seq: u64) -> String {
    format!("msg_{channel}_{epoch}_{seq}")
}

/// A stored message's event body before its seq and epoch are known (see [`StoredTemplate`]).
pub(crate) fn message_template(
    channel: &str,
    id: &str,
    at_ms: u64,
    client: Option<&str>,
    payload: &RawValue,
) -> StoredTemplate {
    let mut head = String::with_capacity(payload.get().len() + 200);
    head.push_str(r#"{"type":"message.stored","timestamp":""#);
    head.push_str(&iso8601(at_ms));
    head.push_str(r#"","data":{"channel":"#);
    push_json_str(&mut head, channel);
    head.push_str(r#","seq":"#);
    let seq_at = head.len();
    head.push_str(r#","epoch":""#);
    let epoch_at = head.len();
    head.push_str(r#"","id":"#);
    push_json_str(&mut head, id);
    head.push_str(r#","at":"#);
    head.push_str(&at_ms.to_string());
    head.push_str(r#","client":"#);
    head.push_str(client.unwrap_or("null"));
    head.push_str(r#","payload":"#);
    head.push_str(payload.get());
    head.push_str("}}");
    StoredTemplate::split(Bytes::from(head), seq_at, epoch_at)
}

/// A stored message's event body, rebuilt from the stored frame: the same bytes
/// [`message_template`] gave when the message was stored.
pub(crate) fn message_body_from_frame(frame: &[u8]) -> Result<Bytes, String> {
    #[derive(serde::Deserialize)]
    struct Options<'a> {
        #[serde(borrow)]
        channel: std::borrow::Cow<'a, str>,
        seq: u64,
        #[serde(borrow)]
        epoch: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
        at: u64,
    }
    #[derive(serde::Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        options: Options<'a>,
        #[serde(borrow)]
        payload: &'a RawValue,
        #[serde(borrow, default)]
        client: Option<&'a RawValue>,
    }
    let stored: Stored<'_> = serde_json::from_slice(frame)
        .map_err(|err| format!("a stored message could not be read back: {err}"))?;
    let options = &stored.options;
    let template = message_template(
        &options.channel,
        &options.id,
        options.at,
        stored.client.map(RawValue::get),
        stored.payload,
    );
    Ok(template.fill(options.seq, &options.epoch))
}

/// What a back end decided at a gate.
#[derive(Debug, Clone)]
pub enum GateDecision {
    /// Go ahead, with what the back end changed.
    Allow {
        /// For a join: the member's public extras, replacing its own.
        extras: Option<Map<String, Value>>,
        /// For a send: the payload that goes out instead.
        payload: Option<Box<RawValue>>,
    },
    /// Refused, with the reason the client sees (a `forbidden` error).
    Refuse(String),
}

impl GateDecision {
    /// Go ahead unchanged.
    pub fn allow() -> Self {
        GateDecision::Allow {
            extras: None,
            payload: None,
        }
    }
}

/// A join a back end is asked about.
#[derive(Debug, Clone, Copy)]
pub struct JoinAsk<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The joining socket's client object (JSON).
    pub client: &'a str,
    /// Whether it asked to be listed in presence.
    pub presence: bool,
}

/// A send a back end is asked about.
#[derive(Debug, Clone, Copy)]
pub struct PublishAsk<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The sender's client object (JSON).
    pub client: &'a str,
    /// What it sends.
    pub payload: &'a RawValue,
    /// Sent as a volatile update (never stored; cursor positions and the like).
    pub volatile: bool,
    /// Who it is for: everyone in the channel, only its signed-in members, or one socket.
    pub target: Target<'a>,
}

/// Synchronous decisions of a back end, before a join or a send is carried out. A gate that
/// is not configured allows.
pub trait Gates: Send + Sync + 'static {
    /// May this socket join?
    fn join<'a>(&'a self, ask: JoinAsk<'a>) -> BoxFuture<'a, GateDecision>;
    /// May this be sent (and as what)?
    fn publish<'a>(&'a self, ask: PublishAsk<'a>) -> BoxFuture<'a, GateDecision>;
}

/// The gates of a hub, if any (printable for the hub's settings).
#[derive(Clone, Default)]
pub struct GateHandle(pub Option<Arc<dyn Gates>>);

impl fmt::Debug for GateHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Gates" } else { "NoGates" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_filter_by_type_and_channel_pattern() {
        let routes = HookRoutes::new(vec![
            HookEndpoint {
                name: "all".into(),
                events: vec![],
                channels: vec![],
            },
            HookEndpoint {
                name: "support".into(),
                events: vec![EventType::MessageStored],
                channels: vec!["support/*".into(), "sales".into()],
            },
        ]);
        let names = |kind, channel| -> Vec<String> {
            routes
                .wanting(kind, channel)
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(
            names(EventType::MessageStored, "support/a"),
            ["all", "support"]
        );
        assert_eq!(names(EventType::MessageStored, "sales"), ["all", "support"]);
        assert_eq!(names(EventType::MemberJoined, "support/a"), ["all"]);
        assert_eq!(names(EventType::MessageStored, "salesforce"), ["all"]);
        assert!(routes.wants_members());
    }

    #[test]
    fn a_message_event_rebuilt_from_its_stored_frame_is_the_same_bytes() {
        use crate::encode::{stored_event, stored_message, Stamp};
        use switchboard_protocol::Relation;
        let payload = RawValue::from_string(r#"{"text":"h\u00e9 \"there\""}"#.into()).unwrap();
        let client =
            r#"{"socketId":"s1","extras":{"name":"Ada"},"permissions":{"authenticated":true}}"#;
        let cases = [
            (Some(client), None),
            (Some(client), Some(Relation::Replaces("m0"))),
            (None, None),
        ];
        for (client, relation) in cases {
            let stamp = Stamp {
                id: "0190aa",
                at_ms: 1_700_000_000_123,
                relation,
            };
            let frame = match client {
                Some(client) => stored_message("room \"é\"/1", &stamp, &payload, client),
                None => stored_event("room \"é\"/1", &stamp, &payload),
            }
            .fill(7, "ep0");
            let expected = message_template(
                "room \"é\"/1",
                "0190aa",
                1_700_000_000_123,
                client,
                &payload,
            )
            .fill(7, "ep0");
            assert_eq!(message_body_from_frame(&frame).unwrap(), expected);
        }
        assert!(message_body_from_frame(b"{\"options\":{}}").is_err());
    }

    #[test]
    fn a_message_event_is_valid_json_once_filled() {
        let payload = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let template = message_template("room\"1", "m1", 1_700_000_000_000, Some("{}"), &payload);
        let body: Value = serde_json::from_slice(&template.fill(42, "e1")).unwrap();
        assert_eq!(body["type"], "message.stored");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["data"]["seq"], 42);
        assert_eq!(body["data"]["epoch"], "e1");
        assert_eq!(body["data"]["channel"], "room\"1");
        assert_eq!(body["data"]["payload"]["text"], "hi");
        let left = membership_event(
            "e",
            EventType::MemberLeft,
            "c",
            Some(r#"{"socketId":"s"}"#),
            Some(LeaveReason::NodeDied),
            0,
        );
        let body: Value = serde_json::from_slice(&left.body).unwrap();
        assert_eq!(body["data"]["reason"], "node_died");
        assert_eq!(body["data"]["client"]["socketId"], "s");
    }
}
