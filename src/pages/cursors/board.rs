//! Who is on the board and what they are doing, as this page hears it.
//!
//! Each remote socket's volatile updates (`{"kind": "cursor", x, y, chat?}`) move its cursor
//! and carry its cursor chat, and say it is active; one not heard from for
//! [`IDLE_AFTER_MS`] is idle (its cursor dims), for [`AWAY_AFTER_MS`] away (its cursor hides).
//! Names and colours come from the frame's `client`, never from the payload.
//!
//! The board keeps two speeds apart: positions change up to 30 times a second per cursor and
//! go straight to the drawing loop (see [`Board::positions`]), while what the page's reactive
//! view shows — who is there, their state, their chat — changes rarely, and [`Board::apply`]
//! and [`Board::refresh`] say when it did.

use serde_json::{json, Value};
use switchboard_protocol::{Action, Frame};

use super::motion::{Motion, Point};
use crate::pages::chat::message::Author;
use crate::pages::colour::ink_on;

/// A cursor not heard from for this long is idle.
pub const IDLE_AFTER_MS: f64 = 3000.0;
/// A cursor not heard from for this long is away.
pub const AWAY_AFTER_MS: f64 = 60_000.0;
/// Longest cursor chat, in characters.
pub const CHAT_MAX_CHARS: usize = 64;

/// What a person on the board is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Activity {
    /// Not heard from for a minute: the cursor is hidden.
    Away,
    /// Not heard from for a few seconds: the cursor is dimmed.
    Idle,
    /// Moving or typing.
    Active,
}

impl Activity {
    /// The state of someone last heard from `quiet_ms` ago.
    pub fn after(quiet_ms: f64) -> Self {
        if quiet_ms >= AWAY_AFTER_MS {
            Activity::Away
        } else if quiet_ms >= IDLE_AFTER_MS {
            Activity::Idle
        } else {
            Activity::Active
        }
    }

    /// The word shown for it.
    pub fn label(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Idle => "idle",
            Activity::Away => "away",
        }
    }
}

/// A remote cursor as the view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The socket it belongs to (one per tab).
    pub socket_id: String,
    /// Its person.
    pub author: Author,
    /// The text colour that reads on the person's colour.
    pub ink: &'static str,
    /// What its person is doing.
    pub activity: Activity,
    /// What its person is saying beside it.
    pub chat: Option<String>,
}

/// One remote cursor.
#[derive(Debug, Clone)]
struct Remote {
    mark: Mark,
    motion: Motion,
    heard_at: f64,
}

/// Every remote cursor on the board, and when presence members joined.
#[derive(Debug, Default)]
pub struct Board {
    remotes: Vec<Remote>,
    /// Presence members seen joining, and when (they count as active from then).
    joined: Vec<(String, f64)>,
}

/// The payload of this page's cursor update: where the pointer is and, while the person is
/// typing a cursor chat, what it says.
pub fn update(at: Point, chat: Option<&str>) -> Value {
    let mut update = json!({ "kind": "cursor", "x": at.x, "y": at.y });
    if let Some(chat) = chat {
        update["chat"] = json!(chat);
    }
    update
}

/// A cursor chat as it may be shown: at most [`CHAT_MAX_CHARS`], no control characters.
pub fn clean_chat(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(CHAT_MAX_CHARS)
        .collect()
}

impl Board {
    /// Takes in a frame at `now`; says whether the view's marks changed. Cursors glide
    /// between positions when `smooth`.
    pub fn apply(&mut self, frame: &Frame, now: f64, smooth: bool) -> bool {
        match frame.action {
            Action::Message => self.moved(frame, now, smooth),
            Action::PresenceUpdate => {
                let socket = frame
                    .payload
                    .pointer("/presence/socketId")
                    .and_then(Value::as_str);
                let Some(socket) = socket else {
                    return false;
                };
                self.joined.retain(|(s, _)| s != socket);
                match frame.payload.get("action").and_then(Value::as_str) {
                    Some("join") => {
                        self.joined.push((socket.to_string(), now));
                        false
                    }
                    _ => {
                        let before = self.remotes.len();
                        self.remotes.retain(|r| r.mark.socket_id != socket);
                        before != self.remotes.len()
                    }
                }
            }
            _ => false,
        }
    }

    fn moved(&mut self, frame: &Frame, now: f64, smooth: bool) -> bool {
        let payload = &frame.payload;
        if payload.get("kind").and_then(Value::as_str) != Some("cursor") {
            return false;
        }
        let (Some(client), Some(x), Some(y)) = (
            frame.client.as_ref(),
            payload.get("x").and_then(Value::as_f64),
            payload.get("y").and_then(Value::as_f64),
        ) else {
            return false;
        };
        let to = Point {
            x: x.clamp(0.0, 1.0),
            y: y.clamp(0.0, 1.0),
        };
        let chat = payload
            .get("chat")
            .and_then(Value::as_str)
            .map(clean_chat)
            .filter(|c| !c.trim().is_empty());
        match self
            .remotes
            .iter_mut()
            .find(|r| r.mark.socket_id == client.socket_id)
        {
            Some(remote) => {
                remote.motion.add(to, now);
                remote.heard_at = now;
                let changed = remote.mark.activity != Activity::Active || remote.mark.chat != chat;
                remote.mark.activity = Activity::Active;
                remote.mark.chat = chat;
                changed
            }
            None => {
                let author = Author::of(client);
                self.remotes.push(Remote {
                    mark: Mark {
                        socket_id: client.socket_id.clone(),
                        ink: ink_on(&author.colour),
                        author,
                        activity: Activity::Active,
                        chat,
                    },
                    motion: Motion::new(to, now, smooth),
                    heard_at: now,
                });
                true
            }
        }
    }

    /// Brings every cursor's state up to `now`; says whether any changed.
    pub fn refresh(&mut self, now: f64) -> bool {
        let mut changed = false;
        for remote in &mut self.remotes {
            let activity = Activity::after(now - remote.heard_at);
            if activity != remote.mark.activity {
                remote.mark.activity = activity;
                changed = true;
            }
        }
        changed
    }

    /// The marks the view shows, in the order the cursors appeared.
    pub fn marks(&self) -> Vec<Mark> {
        self.remotes.iter().map(|r| r.mark.clone()).collect()
    }

    /// What a socket is doing at `now`: from its cursor, else from when it joined (a member
    /// already here when this page came and has not moved since is idle).
    pub fn activity_of(&self, socket: &str, now: f64) -> Activity {
        let heard = self
            .remotes
            .iter()
            .find(|r| r.mark.socket_id == socket)
            .map(|r| r.heard_at)
            .or_else(|| {
                self.joined
                    .iter()
                    .find(|(s, _)| s == socket)
                    .map(|(_, at)| *at)
            });
        heard.map_or(Activity::Idle, |at| Activity::after(now - at))
    }

    /// Where each visible cursor is drawn at `now`, and whether any is still moving.
    pub fn positions(&mut self, now: f64) -> (Vec<(&str, Point)>, bool) {
        let mut moving = false;
        let positions = self
            .remotes
            .iter_mut()
            .filter(|r| r.mark.activity != Activity::Away)
            .map(|remote| {
                let (at, still) = remote.motion.at(now);
                moving |= still;
                (remote.mark.socket_id.as_str(), at)
            })
            .collect();
        (positions, moving)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(socket: &str, name: &str, payload: Value) -> Frame {
        serde_json::from_value(json!({
            "action": "message",
            "options": {"channel": "board", "volatile": true},
            "payload": payload,
            "client": {"socketId": socket, "extras": {"id": format!("u-{name}"), "name": name, "colour": "#ffc53d"}, "permissions": {}},
        }))
        .unwrap()
    }

    fn presence(action: &str, socket: &str) -> Frame {
        serde_json::from_value(json!({
            "action": "presence_update",
            "payload": {"action": action, "presence": {"socketId": socket}},
        }))
        .unwrap()
    }

    #[test]
    fn a_first_update_adds_a_cursor_later_ones_only_move_it() {
        let mut board = Board::default();
        assert!(board.apply(
            &cursor("s1", "Ada", update(Point { x: 0.2, y: 0.3 }, None)),
            0.0,
            true
        ));
        assert!(!board.apply(
            &cursor("s1", "Ada", update(Point { x: 0.4, y: 0.3 }, None)),
            33.0,
            true
        ));
        let marks = board.marks();
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].author.name, "Ada");
        assert_eq!(marks[0].ink, "#000000", "dark text on a light colour");
        let (positions, moving) = board.positions(33.0);
        assert_eq!(positions, [("s1", Point { x: 0.2, y: 0.3 })]);
        assert!(moving);
    }

    #[test]
    fn positions_outside_the_board_are_kept_on_it() {
        let mut board = Board::default();
        board.apply(
            &cursor("s1", "Ada", json!({"kind": "cursor", "x": 7.0, "y": -3.0})),
            0.0,
            true,
        );
        assert_eq!(board.positions(0.0).0, [("s1", Point { x: 1.0, y: 0.0 })]);
    }

    #[test]
    fn quiet_cursors_go_idle_then_away_and_come_back_when_they_move() {
        let mut board = Board::default();
        board.apply(
            &cursor("s1", "Ada", update(Point { x: 0.5, y: 0.5 }, None)),
            0.0,
            true,
        );
        assert!(!board.refresh(IDLE_AFTER_MS - 1.0));
        assert!(board.refresh(IDLE_AFTER_MS));
        assert_eq!(board.marks()[0].activity, Activity::Idle);
        assert!(board.refresh(AWAY_AFTER_MS));
        assert_eq!(board.marks()[0].activity, Activity::Away);
        assert!(
            board.positions(AWAY_AFTER_MS).0.is_empty(),
            "away cursors are not drawn"
        );
        assert!(board.apply(
            &cursor("s1", "Ada", update(Point { x: 0.6, y: 0.5 }, None)),
            AWAY_AFTER_MS + 1.0,
            true
        ));
        assert_eq!(board.marks()[0].activity, Activity::Active);
    }

    #[test]
    fn cursor_chat_comes_with_the_cursor_and_goes_when_an_update_has_none() {
        let mut board = Board::default();
        let here = Point { x: 0.5, y: 0.5 };
        board.apply(&cursor("s1", "Ada", update(here, None)), 0.0, true);
        assert!(board.apply(
            &cursor("s1", "Ada", update(here, Some("hello"))),
            10.0,
            true
        ));
        assert_eq!(board.marks()[0].chat.as_deref(), Some("hello"));
        assert!(!board.apply(
            &cursor("s1", "Ada", update(here, Some("hello"))),
            20.0,
            true
        ));
        let long = "x".repeat(100) + "\u{7}";
        board.apply(&cursor("s1", "Ada", update(here, Some(&long))), 30.0, true);
        assert_eq!(
            board.marks()[0].chat.as_ref().map(|c| c.chars().count()),
            Some(CHAT_MAX_CHARS)
        );
        assert!(board.apply(&cursor("s1", "Ada", update(here, None)), 40.0, true));
        assert_eq!(board.marks()[0].chat, None);
    }

    #[test]
    fn a_socket_that_leaves_takes_its_cursor_with_it() {
        let mut board = Board::default();
        board.apply(
            &cursor("s1", "Ada", update(Point { x: 0.5, y: 0.5 }, None)),
            0.0,
            true,
        );
        assert!(board.apply(&presence("leave", "s1"), 1.0, true));
        assert!(board.marks().is_empty());
    }

    #[test]
    fn members_count_as_active_from_when_they_joined_until_they_go_quiet() {
        let mut board = Board::default();
        board.apply(&presence("join", "s2"), 100.0, true);
        assert_eq!(board.activity_of("s2", 200.0), Activity::Active);
        assert_eq!(
            board.activity_of("s2", 100.0 + IDLE_AFTER_MS),
            Activity::Idle
        );
        assert_eq!(board.activity_of("here-before-me", 0.0), Activity::Idle);
    }

    #[test]
    fn other_updates_in_the_room_are_not_cursors() {
        let mut board = Board::default();
        assert!(!board.apply(
            &cursor("s1", "Ada", json!({"kind": "typing", "typing": true})),
            0.0,
            true
        ));
        assert!(board.marks().is_empty());
    }
}
