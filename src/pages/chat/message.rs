//! A chat message as the chat page sends it, and what any stored frame says to the chat: a new
//! message, an edit, a deletion or a reaction (the protocol's `replaces`, `retracts` and
//! `reactsTo` extensions).
//!
//! What a message says comes from its payload; who wrote it, when and where it sits in the
//! room's order come from the server — the frame's `client` (the sender's token claims, or
//! the name it joined with), `options.id`, `seq` and `at`, never from the payload — so nobody
//! can post under somebody else's name, and signed-in authors are marked.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{is_valid_colour, Action, ClientInfo, Frame};

use super::time;
use crate::pages::colour::{safe_colour, FALLBACK_COLOUR};

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// The reactions the page offers (others may arrive from other clients).
pub const REACTIONS: [(&str, &str); 6] = [
    ("👍", "thumbs up"),
    ("❤️", "heart"),
    ("😂", "laughing"),
    ("🎉", "party"),
    ("😮", "surprised"),
    ("👀", "eyes"),
];
/// Longest reaction accepted from a frame, in bytes (a flag or a family emoji fits).
const MAX_REACTION_BYTES: usize = 32;

/// Who wrote a message, as chosen on the page and remembered in the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUser {
    /// Stable per browser, so several tabs of one person count once.
    pub id: String,
    /// Display name.
    pub name: String,
    /// CSS colour of the person's mark.
    pub colour: String,
}

/// Who wrote a message, as the server vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The user id (token `sub`), or the id an anonymous page joined with.
    pub id: String,
    /// Display name.
    pub name: String,
    /// A colour checked with [`is_valid_colour`].
    pub colour: String,
    /// Signed in: the name comes from a token the server checked.
    pub verified: bool,
}

impl Author {
    /// The author a frame's `client` names.
    pub fn of(client: &ClientInfo) -> Self {
        let text = |key: &str| {
            client
                .extras
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let name: String = text("name")
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Anonymous".into())
            .chars()
            .take(MAX_NAME_CHARS)
            .collect();
        Self {
            id: text("id").unwrap_or_else(|| client.socket_id.clone()),
            name,
            colour: safe_colour(text("colour").as_deref()),
            verified: client.authenticated(),
        }
    }

    /// The author of messages the back end published (no sending socket).
    pub fn server() -> Self {
        Self {
            id: "server".into(),
            name: "Server".into(),
            colour: FALLBACK_COLOUR.into(),
            verified: true,
        }
    }

    /// The person, as one key: a guest can never pass for a signed-in person with the same id.
    pub fn key(&self) -> (&str, bool) {
        (&self.id, self.verified)
    }
}

/// The payload of a chat message: `{id, text, user, sent_at}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique id chosen by the sender, also sent as the message's `options.id`.
    pub id: String,
    /// What was written, shown as text, never as HTML.
    pub text: String,
    /// The author as the sender described itself; never shown (the frame's `client` is).
    pub user: ChatUser,
    /// When it was sent by the sender's clock, ISO 8601 UTC; shown only for messages that
    /// carry no server time.
    pub sent_at: String,
}

impl ChatMessage {
    /// Why this message cannot be sent, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if self.text.trim().is_empty() {
            Some("The message is empty.")
        } else if self.text.chars().count() > MAX_TEXT_CHARS {
            Some("The message is longer than 2000 characters.")
        } else if self.user.name.trim().is_empty()
            || self.user.name.chars().count() > MAX_NAME_CHARS
        {
            Some("Your name must have 1 to 40 characters.")
        } else if !is_valid_colour(&self.user.colour) {
            Some("Choose a colour such as #3d6cf2.")
        } else if self.id.is_empty() || self.id.len() > 64 {
            Some("This message has no valid id. Reload the page and try again.")
        } else {
            None
        }
    }
}

/// What a stored frame says to the chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Said {
    /// A new message.
    Message {
        /// Its text.
        text: String,
    },
    /// The author's new text for an earlier message.
    Edit {
        /// The id of the message edited.
        target: String,
        /// Its new text.
        text: String,
    },
    /// The author withdrew an earlier message.
    Retraction {
        /// The id of the message deleted.
        target: String,
    },
    /// Someone added (`on`) or took back a reaction to an earlier message.
    Reaction {
        /// The id of the message reacted to.
        target: String,
        /// The reaction, an emoji.
        emoji: String,
        /// Added, or taken back.
        on: bool,
    },
}

/// One stored frame of the room, as the chat reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The stored message's id (`options.id`); what edits, deletions and reactions name.
    pub id: String,
    /// Its place in the room's order (`options.seq`).
    pub seq: Option<u64>,
    /// The room's history epoch it belongs to (`options.epoch`).
    pub epoch: Option<String>,
    /// When the server stored it, ms since the Unix epoch (`options.at`; for frames without
    /// it, the sender's `sent_at`).
    pub at: Option<i64>,
    /// Who sent it (the server's word).
    pub author: Author,
    /// The socket that sent it, if a socket did.
    pub socket: Option<String>,
    /// What it says.
    pub said: Said,
}

impl Entry {
    /// What a stored `message` or `event` frame says to the chat, if it is chat.
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        let option = |key: &str| frame.options.get(key).and_then(Value::as_str);
        let (author, socket) = match (frame.action, &frame.client) {
            (Action::Message, Some(client)) => (Author::of(client), Some(client.socket_id.clone())),
            (Action::Event, _) => (Author::server(), None),
            _ => return None,
        };
        let message = || serde_json::from_value::<ChatMessage>(frame.payload.clone()).ok();
        let mut sent_at = None;
        let said = if let Some(target) = option("replaces") {
            let message = message()?;
            sent_at = Some(message.sent_at);
            Said::Edit {
                target: target.into(),
                text: message.text,
            }
        } else if let Some(target) = option("retracts") {
            Said::Retraction {
                target: target.into(),
            }
        } else if let Some(target) = option("reactsTo") {
            let emoji = frame.payload.get("emoji").and_then(Value::as_str)?;
            let fits = !emoji.is_empty()
                && emoji.len() <= MAX_REACTION_BYTES
                && !emoji.chars().any(|c| c.is_whitespace() || c.is_control());
            if !fits {
                return None;
            }
            Said::Reaction {
                target: target.into(),
                emoji: emoji.into(),
                on: frame
                    .payload
                    .get("on")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            }
        } else {
            let message = message()?;
            sent_at = Some(message.sent_at);
            Said::Message { text: message.text }
        };
        let id = option("id").map(str::to_string).or_else(|| {
            frame
                .payload
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })?;
        let at = frame
            .options
            .get("at")
            .and_then(Value::as_i64)
            .or_else(|| sent_at.as_deref().and_then(time::parse_iso));
        Some(Self {
            id,
            seq: frame.seq(),
            epoch: frame.epoch().map(str::to_string),
            at,
            author,
            socket,
            said,
        })
    }

    /// Everything a frame says to the chat: one entry for `message`/`event`, many for
    /// `history`.
    pub fn all_in(frame: &Frame) -> Vec<Self> {
        match frame.action {
            Action::Message | Action::Event => Self::from_frame(frame).into_iter().collect(),
            Action::History => frame
                .payload
                .get("history")
                .and_then(Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|entry| serde_json::from_value::<Frame>(entry.clone()).ok())
                        .filter_map(|entry| Self::from_frame(&entry))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(id: &str) -> Value {
        json!({"id": id, "text": "hi", "user": {"id": "u", "name": "Ann", "colour": "#f00"}, "sent_at": "2026-01-01T10:00:00Z"})
    }

    fn client(name: &str, colour: &str, signed_in: bool) -> Value {
        json!({"socketId": "s1", "extras": {"id": "u1", "name": name, "colour": colour}, "permissions": {"authenticated": signed_in}})
    }

    fn frame(value: Value) -> Frame {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn history_frames_yield_every_stored_chat_entry() {
        let frame = frame(json!({
            "action": "history",
            "options": {"channel": "room1"},
            "payload": {"history": [
                {"action": "message", "options": {"id": "a", "seq": 1}, "payload": message("a"), "client": client("Ann", "#f00", false)},
                {"action": "event", "options": {"id": "b", "seq": 2}, "payload": message("b")},
                {"action": "message", "options": {"id": "c", "seq": 3}, "payload": {"not": "chat"}, "client": client("Ann", "#f00", false)},
                {"action": "message", "options": {"id": "d", "seq": 4, "reactsTo": "a"}, "payload": {"emoji": "👍", "on": true}, "client": client("Ann", "#f00", false)},
            ]},
        }));
        let all = Entry::all_in(&frame);
        let ids: Vec<_> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"]);
        assert_eq!(all[1].author.name, "Server");
        assert_eq!(
            all[2].said,
            Said::Reaction {
                target: "a".into(),
                emoji: "👍".into(),
                on: true
            }
        );
    }

    #[test]
    fn the_author_comes_from_the_frame_not_from_the_payload() {
        let mut payload = message("a");
        payload["user"]["name"] = json!("The Boss");
        payload["author"] =
            json!({"id": "boss", "name": "The Boss", "colour": "#000", "verified": true});
        let received = Entry::from_frame(&frame(json!({
            "action": "message",
            "options": {"channel": "room1", "id": "a"},
            "payload": payload,
            "client": client("Mallory", "red;position:fixed;inset:0", false),
        })))
        .unwrap();
        assert_eq!(received.author.name, "Mallory");
        assert!(!received.author.verified);
        assert_eq!(received.author.colour, FALLBACK_COLOUR);
        assert_eq!(received.socket.as_deref(), Some("s1"));
        let signed_in = Entry::from_frame(&frame(json!({
            "action": "message",
            "options": {"id": "b"},
            "payload": message("b"),
            "client": client("Ann", "#3d6cf2", true),
        })))
        .unwrap();
        assert!(signed_in.author.verified);
        assert_eq!(signed_in.author.colour, "#3d6cf2");
    }

    #[test]
    fn the_time_is_the_servers_and_the_senders_clock_only_without_it() {
        let stored = Entry::from_frame(&frame(json!({
            "action": "message",
            "options": {"id": "a", "seq": 7, "at": 1_772_355_900_000_i64, "epoch": "e1"},
            "payload": message("a"),
            "client": client("Ann", "#f00", false),
        })))
        .unwrap();
        assert_eq!(stored.at, Some(1_772_355_900_000));
        assert_eq!(stored.seq, Some(7));
        assert_eq!(stored.epoch.as_deref(), Some("e1"));
        let older = Entry::from_frame(&frame(json!({
            "action": "message",
            "options": {"id": "a"},
            "payload": message("a"),
            "client": client("Ann", "#f00", false),
        })))
        .unwrap();
        assert_eq!(older.at, time::parse_iso("2026-01-01T10:00:00Z"));
    }

    #[test]
    fn edits_deletions_and_reactions_name_the_message_they_change() {
        let by = |options: Value, payload: Value| {
            Entry::from_frame(&frame(json!({
                "action": "message", "options": options, "payload": payload,
                "client": client("Ann", "#f00", false),
            })))
            .map(|e| e.said)
        };
        let mut edited = message("e1");
        edited["text"] = json!("better words");
        assert_eq!(
            by(json!({"id": "e1", "replaces": "a"}), edited),
            Some(Said::Edit {
                target: "a".into(),
                text: "better words".into()
            })
        );
        assert_eq!(
            by(json!({"id": "r1", "retracts": "a"}), json!({})),
            Some(Said::Retraction { target: "a".into() })
        );
        assert_eq!(
            by(
                json!({"id": "x1", "reactsTo": "a"}),
                json!({"emoji": "🎉", "on": false})
            ),
            Some(Said::Reaction {
                target: "a".into(),
                emoji: "🎉".into(),
                on: false
            })
        );
        for bad in [
            json!({"emoji": ""}),
            json!({"emoji": "a b"}),
            json!({"emoji": "x".repeat(40)}),
            json!({}),
        ] {
            assert_eq!(
                by(json!({"id": "x2", "reactsTo": "a"}), bad.clone()),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn typing_and_cursor_updates_are_not_chat() {
        for payload in [
            json!({"kind": "typing", "typing": true}),
            json!({"kind": "cursor", "x": 0.5, "y": 0.5}),
        ] {
            let update = frame(json!({
                "action": "message",
                "options": {"channel": "room1"},
                "payload": payload,
                "client": client("Ann", "#f00", false),
            }));
            assert_eq!(Entry::from_frame(&update), None);
        }
    }

    #[test]
    fn empty_or_oversized_messages_have_a_problem() {
        let mut m: ChatMessage = serde_json::from_value(message("a")).unwrap();
        assert_eq!(m.problem(), None);
        m.text = "  ".into();
        assert!(m.problem().is_some());
        m.text = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(m.problem().is_some());
    }
}
