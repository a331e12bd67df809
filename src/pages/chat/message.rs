//! A chat message as the chat page sends it and reads it back from any frame that carries one.
//!
//! What a message says comes from its payload; who wrote it comes from the server — the
//! frame's `client` (the sender's token claims, or the name it joined with), never from the
//! payload — so nobody can post under somebody else's name, and signed-in authors are marked.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{is_valid_colour, Action, ClientInfo, Frame};

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// Who wrote a message, as chosen on the page and remembered in the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUser {
    /// Stable per browser, so several tabs of one person count once.
    pub id: String,
    /// Display name.
    pub name: String,
    /// CSS colour of the name.
    pub colour: String,
}

/// Colour shown for an author whose colour is missing or not a colour.
pub const FALLBACK_COLOUR: &str = "#888888";

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
}

/// `colour` if it is one people may choose, else the fallback: the only way a colour reaches
/// the page's CSS.
pub fn safe_colour(colour: Option<&str>) -> String {
    colour
        .filter(|c| is_valid_colour(c))
        .unwrap_or(FALLBACK_COLOUR)
        .to_string()
}

/// The payload of a chat message: `{id, text, user, sent_at}`, and the author the server
/// named for it once received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique id chosen by the sender; duplicates (history after a rejoin) are shown once.
    pub id: String,
    /// What was written, shown as text, never as HTML.
    pub text: String,
    /// The author as the sender described itself; shown only through [`ChatMessage::author`].
    pub user: ChatUser,
    /// When it was sent, ISO 8601 UTC.
    pub sent_at: String,
    /// Who wrote it, from the frame that carried it (never from the payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
}

impl ChatMessage {
    /// Why this message cannot be sent, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if self.text.trim().is_empty() {
            Some("the message is empty")
        } else if self.text.chars().count() > MAX_TEXT_CHARS {
            Some("the message is longer than 2000 characters")
        } else if self.user.name.trim().is_empty()
            || self.user.name.chars().count() > MAX_NAME_CHARS
        {
            Some("the name must have 1 to 40 characters")
        } else if !is_valid_colour(&self.user.colour) {
            Some("the colour must be #rgb, #rrggbb or a colour name")
        } else if self.id.is_empty() || self.id.len() > 64 {
            Some("the message id must have 1 to 64 characters")
        } else {
            None
        }
    }

    /// The chat message a frame carries, with its author taken from the frame.
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        let mut message: Self = serde_json::from_value(frame.payload.clone()).ok()?;
        // The payload's own claims are kept only in a shape that cannot reach CSS.
        message.user.colour = safe_colour(Some(&message.user.colour));
        message.author = Some(match (frame.action, &frame.client) {
            (Action::Message, Some(client)) => Author::of(client),
            (Action::Event, _) => Author::server(),
            _ => return None,
        });
        Some(message)
    }

    /// Who wrote it (the server's word; unknown until received).
    pub fn author(&self) -> Author {
        self.author.clone().unwrap_or_else(|| Author {
            id: String::new(),
            name: "Unknown".into(),
            colour: FALLBACK_COLOUR.into(),
            verified: false,
        })
    }

    /// Every chat message a frame carries: one for `message`/`event`, many for `history`.
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

/// Adds messages not already in `list` (by id), keeping arrival order.
pub fn merge(list: &mut Vec<ChatMessage>, incoming: Vec<ChatMessage>) {
    for message in incoming {
        if !list.iter().any(|m| m.id == message.id) {
            list.push(message);
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
    fn history_frames_yield_every_stored_message() {
        let frame = frame(json!({
            "action": "history",
            "options": {"channel": "room1"},
            "payload": {"history": [
                {"action": "message", "payload": message("a"), "client": client("Ann", "#f00", false)},
                {"action": "event", "payload": message("b")},
                {"action": "message", "payload": {"not": "chat"}, "client": client("Ann", "#f00", false)},
            ]},
        }));
        let all = ChatMessage::all_in(&frame);
        let ids: Vec<_> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(all[1].author().name, "Server");
    }

    #[test]
    fn the_author_comes_from_the_frame_not_from_the_payload() {
        let mut payload = message("a");
        payload["user"]["name"] = json!("The Boss");
        payload["author"] =
            json!({"id": "boss", "name": "The Boss", "colour": "#000", "verified": true});
        let received = ChatMessage::from_frame(&frame(json!({
            "action": "message",
            "options": {"channel": "room1"},
            "payload": payload,
            "client": client("Mallory", "red;position:fixed;inset:0", false),
        })))
        .unwrap();
        let author = received.author();
        assert_eq!(author.name, "Mallory");
        assert!(!author.verified);
        assert_eq!(author.colour, FALLBACK_COLOUR);
        let signed_in = ChatMessage::from_frame(&frame(json!({
            "action": "message",
            "payload": message("b"),
            "client": client("Ann", "#3d6cf2", true),
        })))
        .unwrap();
        assert!(signed_in.author().verified);
        assert_eq!(signed_in.author().colour, "#3d6cf2");
    }

    #[test]
    fn merge_skips_messages_already_shown() {
        let a: ChatMessage = serde_json::from_value(message("a")).unwrap();
        let b: ChatMessage = serde_json::from_value(message("b")).unwrap();
        let mut list = vec![a.clone()];
        merge(&mut list, vec![a, b]);
        assert_eq!(list.len(), 2);
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
