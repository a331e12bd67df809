//! A chat message as the chat page sends it and reads it back from any frame that carries one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{Action, Frame};

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

/// The payload of a chat message: `{id, text, user, sent_at}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique id chosen by the sender; duplicates (history after a rejoin) are shown once.
    pub id: String,
    /// What was written, shown as text, never as HTML.
    pub text: String,
    /// The author.
    pub user: ChatUser,
    /// When it was sent, ISO 8601 UTC.
    pub sent_at: String,
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
        } else if self.id.is_empty() || self.id.len() > 64 {
            Some("the message id must have 1 to 64 characters")
        } else {
            None
        }
    }

    /// The chat message a payload carries, if it is one.
    pub fn from_payload(payload: &Value) -> Option<Self> {
        serde_json::from_value(payload.clone()).ok()
    }

    /// Every chat message a frame carries: one for `message`/`event`, many for `history`.
    pub fn all_in(frame: &Frame) -> Vec<Self> {
        match frame.action {
            Action::Message | Action::Event => {
                Self::from_payload(&frame.payload).into_iter().collect()
            }
            Action::History => frame
                .payload
                .get("history")
                .and_then(Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|entry| entry.get("payload").and_then(Self::from_payload))
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

    #[test]
    fn history_frames_yield_every_stored_message() {
        let frame: Frame = serde_json::from_value(json!({
            "action": "history",
            "options": {"channel": "room1"},
            "payload": {"history": [
                {"action": "message", "payload": message("a")},
                {"action": "event", "payload": message("b")},
                {"action": "message", "payload": {"not": "chat"}},
            ]},
        }))
        .unwrap();
        let ids: Vec<_> = ChatMessage::all_in(&frame)
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn merge_skips_messages_already_shown() {
        let a = ChatMessage::from_payload(&message("a")).unwrap();
        let b = ChatMessage::from_payload(&message("b")).unwrap();
        let mut list = vec![a.clone()];
        merge(&mut list, vec![a, b]);
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn empty_or_oversized_messages_have_a_problem() {
        let mut m = ChatMessage::from_payload(&message("a")).unwrap();
        assert_eq!(m.problem(), None);
        m.text = "  ".into();
        assert!(m.problem().is_some());
        m.text = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(m.problem().is_some());
    }
}
