//! "Ada is typing…": who in the room is writing right now.
//!
//! A page that is being typed into says so on the volatile lane (never stored, not echoed,
//! coalesced per sender; delivered without a seq), at most every [`PING_EVERY_MS`], and says
//! it stopped when its message is sent, its draft emptied, or [`QUIET_AFTER_MS`] after the
//! last keystroke. The others show everyone who said so, and forget a typist who stops saying
//! it (a closed laptop) after [`FORGET_AFTER_MS`], or at once when that socket posts or leaves.

use serde_json::{json, Value};
use switchboard_protocol::{Action, Frame};

use super::message::Author;

/// Least time between two "typing" pings of one page.
pub const PING_EVERY_MS: f64 = 2000.0;
/// A page says it stopped typing this long after the last keystroke.
pub const QUIET_AFTER_MS: f64 = 5000.0;
/// A typist not heard from for this long is forgotten: a ping is at most [`PING_EVERY_MS`]
/// older than the last keystroke, and the stop comes [`QUIET_AFTER_MS`] after it.
pub const FORGET_AFTER_MS: f64 = PING_EVERY_MS + QUIET_AFTER_MS + 1000.0;

/// The payload a page sends to say whether it is typing.
pub fn ping(typing: bool) -> Value {
    json!({ "kind": "typing", "typing": typing })
}

/// One socket whose person is typing.
#[derive(Debug, Clone, PartialEq)]
struct Typist {
    socket: String,
    author: Author,
    heard_at: f64,
}

/// Everyone typing in the room, as this page heard it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Typists {
    typing: Vec<Typist>,
}

impl Typists {
    /// Takes in a frame: a typing ping starts or stops a typist; a stored message from a
    /// socket, or its leaving, stops it.
    pub fn apply(&mut self, frame: &Frame, now: f64) {
        match frame.action {
            Action::Message => {
                let Some(client) = &frame.client else {
                    return;
                };
                // A stored message (it has a seq) from a typist means they sent what they typed.
                if frame.seq().is_some() {
                    self.stop(&client.socket_id);
                    return;
                }
                let payload = &frame.payload;
                if payload.get("kind").and_then(Value::as_str) != Some("typing") {
                    return;
                }
                match payload.get("typing").and_then(Value::as_bool) {
                    Some(true) => {
                        self.stop(&client.socket_id);
                        self.typing.push(Typist {
                            socket: client.socket_id.clone(),
                            author: Author::of(client),
                            heard_at: now,
                        });
                    }
                    _ => self.stop(&client.socket_id),
                }
            }
            Action::PresenceUpdate
                if frame.payload.get("action").and_then(Value::as_str) == Some("leave") =>
            {
                if let Some(gone) = frame
                    .payload
                    .pointer("/presence/socketId")
                    .and_then(Value::as_str)
                {
                    self.stop(gone);
                }
            }
            _ => {}
        }
    }

    /// Forgets typists not heard from for [`FORGET_AFTER_MS`].
    pub fn forget_quiet(&mut self, now: f64) {
        self.typing.retain(|t| now - t.heard_at < FORGET_AFTER_MS);
    }

    fn stop(&mut self, socket: &str) {
        self.typing.retain(|t| t.socket != socket);
    }

    /// "Ada is typing…", "Ada and Ben are typing…", "Ada, Ben and Cy are typing…",
    /// "Several people are typing…" — each person once however many tabs they type in, and
    /// never the reader (`me`: the reader's id and whether signed in).
    pub fn sentence(&self, me: (&str, bool)) -> Option<String> {
        let mut names: Vec<&str> = Vec::new();
        let mut people: Vec<(&str, bool)> = Vec::new();
        for typist in &self.typing {
            let who = (typist.author.id.as_str(), typist.author.verified);
            if who == me || people.contains(&who) {
                continue;
            }
            people.push(who);
            names.push(&typist.author.name);
        }
        match names.as_slice() {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [one, two] => Some(format!("{one} and {two} are typing…")),
            [one, two, three] => Some(format!("{one}, {two} and {three} are typing…")),
            _ => Some("Several people are typing…".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(socket: &str, user: &str, name: &str, payload: Value, volatile: bool) -> Frame {
        let options = match volatile {
            true => json!({"channel": "room1"}),
            false => json!({"channel": "room1", "seq": 7, "id": "m7"}),
        };
        serde_json::from_value(json!({
            "action": "message",
            "options": options,
            "payload": payload,
            "client": {"socketId": socket, "extras": {"id": user, "name": name}, "permissions": {}},
        }))
        .unwrap()
    }

    #[test]
    fn one_two_three_and_more_typists_are_summarised() {
        let mut typists = Typists::default();
        let me = ("u-me", false);
        assert_eq!(typists.sentence(me), None);
        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        assert_eq!(typists.sentence(me).unwrap(), "Ada is typing…");
        typists.apply(&from("s2", "u2", "Ben", ping(true), true), 0.0);
        assert_eq!(typists.sentence(me).unwrap(), "Ada and Ben are typing…");
        typists.apply(&from("s3", "u3", "Cy", ping(true), true), 0.0);
        assert_eq!(typists.sentence(me).unwrap(), "Ada, Ben and Cy are typing…");
        typists.apply(&from("s4", "u4", "Dee", ping(true), true), 0.0);
        assert_eq!(typists.sentence(me).unwrap(), "Several people are typing…");
    }

    #[test]
    fn a_person_typing_in_two_tabs_counts_once_and_the_reader_never() {
        let mut typists = Typists::default();
        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        typists.apply(&from("s2", "u1", "Ada", ping(true), true), 0.0);
        typists.apply(&from("s3", "u-me", "Me", ping(true), true), 0.0);
        assert_eq!(typists.sentence(("u-me", false)).unwrap(), "Ada is typing…");
    }

    #[test]
    fn a_typist_stops_on_a_stop_ping_a_stored_message_leaving_or_silence() {
        let me = ("u-me", false);
        let mut typists = Typists::default();
        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        typists.apply(&from("s1", "u1", "Ada", ping(false), true), 1.0);
        assert!(typists.typing.is_empty());

        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        typists.apply(&from("s1", "u1", "Ada", json!({"text": "hi"}), false), 1.0);
        assert!(typists.typing.is_empty());

        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        let leave: Frame = serde_json::from_value(json!({
            "action": "presence_update",
            "payload": {"action": "leave", "presence": {"socketId": "s1"}},
        }))
        .unwrap();
        typists.apply(&leave, 1.0);
        assert!(typists.typing.is_empty());

        typists.apply(&from("s1", "u1", "Ada", ping(true), true), 0.0);
        typists.forget_quiet(FORGET_AFTER_MS - 1.0);
        assert_eq!(typists.sentence(me).unwrap(), "Ada is typing…");
        typists.forget_quiet(FORGET_AFTER_MS);
        assert!(typists.typing.is_empty());
    }

    #[test]
    fn cursor_updates_in_the_same_room_are_not_typing() {
        let mut typists = Typists::default();
        let cursor = json!({"kind": "cursor", "x": 0.5, "y": 0.5});
        typists.apply(&from("s1", "u1", "Ada", cursor, true), 0.0);
        assert!(typists.typing.is_empty());
    }
}
