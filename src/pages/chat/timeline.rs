//! The room's messages as the reader sees them: every stored entry the page has (rendered with
//! the page, from the join's history, live, or paged back with "Load earlier") folded into
//! posts in the room's order — edits give the latest text, a deletion leaves a stub, and
//! reactions are counted per emoji with who reacted.
//!
//! Entries may come in any order and more than once (an older page arrives after newer
//! messages; the join's history repeats what the server rendered), so the timeline orders
//! them by `seq` and keeps each id once; an edit or reaction whose message is not loaded yet
//! waits and applies when the message arrives. A room whose history was reset starts a new
//! epoch, whose seqs start again at 1: its messages come after the older epoch's.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::message::{Author, Entry, Said};

/// Where an entry sits: the epoch's rank (in order of first sight), its seq, its arrival.
type Place = (usize, u64, u64);

/// One person's reaction, for the "who reacted" tooltip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactor {
    /// User id (or guest id).
    pub id: String,
    /// Signed in.
    pub verified: bool,
    /// Display name.
    pub name: String,
}

/// The people who reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    /// The emoji.
    pub emoji: String,
    /// Who reacted with it, in the order they did.
    pub people: Vec<Reactor>,
}

/// A message as shown: its latest text, whether it was edited or deleted, its reactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// The stored message's id.
    pub id: String,
    /// Its place in the room's order.
    pub seq: Option<u64>,
    /// When the server stored it (ms since the Unix epoch).
    pub at: Option<i64>,
    /// Who wrote it.
    pub author: Author,
    /// The socket that sent it.
    pub socket: Option<String>,
    /// Its text: the latest edit's, or empty once deleted.
    pub text: String,
    /// Its author changed the text (and did not delete it).
    pub edited: bool,
    /// Its author deleted it.
    pub deleted: bool,
    /// Reactions, per emoji, in the order each emoji was first used.
    pub reactions: Vec<Reactions>,
}

/// Every chat entry the page holds, folded on demand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Epochs in the order first seen.
    epochs: Vec<String>,
    /// New messages by place.
    messages: BTreeMap<Place, Entry>,
    /// Edits, deletions and reactions by the id of the message they change, by place.
    changes: HashMap<String, BTreeMap<Place, Entry>>,
    /// Ids of every entry held, so a repeat is dropped.
    ids: HashSet<String>,
    arrivals: u64,
}

impl Timeline {
    /// A timeline of `entries`.
    pub fn of(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut timeline = Self::default();
        for entry in entries {
            timeline.add(entry);
        }
        timeline
    }

    /// Takes in one entry (a repeat of one already held is ignored).
    pub fn add(&mut self, entry: Entry) {
        if !self.ids.insert(entry.id.clone()) {
            return;
        }
        let epoch = self.rank(entry.epoch.as_deref());
        let place = (epoch, entry.seq.unwrap_or(u64::MAX), self.arrivals);
        self.arrivals += 1;
        match &entry.said {
            Said::Message { .. } => {
                self.messages.insert(place, entry);
            }
            Said::Edit { target, .. }
            | Said::Retraction { target }
            | Said::Reaction { target, .. } => {
                self.changes
                    .entry(target.clone())
                    .or_default()
                    .insert(place, entry);
            }
        }
    }

    /// Whether an entry with this id is held.
    pub fn holds(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// The rank of an epoch; an entry without one belongs to the latest.
    fn rank(&mut self, epoch: Option<&str>) -> usize {
        let Some(epoch) = epoch else {
            return self.epochs.len().saturating_sub(1);
        };
        match self.epochs.iter().position(|e| e == epoch) {
            Some(rank) => rank,
            None => {
                self.epochs.push(epoch.to_string());
                self.epochs.len() - 1
            }
        }
    }

    /// The lowest seq held in the latest epoch: where "Load earlier" continues from.
    pub fn oldest_seq(&self) -> Option<u64> {
        let latest = self.epochs.len().saturating_sub(1);
        let changes = self.changes.values().flat_map(BTreeMap::keys);
        self.messages
            .keys()
            .chain(changes)
            .filter(|(epoch, seq, _)| *epoch == latest && *seq != u64::MAX)
            .map(|(_, seq, _)| *seq)
            .min()
    }

    /// The posts, in the room's order.
    pub fn posts(&self) -> Vec<Post> {
        self.messages
            .values()
            .map(|entry| fold(entry, self.changes.get(&entry.id)))
            .collect()
    }
}

/// `entries` (in the room's order) without the text their authors took back: a deleted
/// message's text and its edits, and every edit but the latest (whose text the message then
/// carries). What the server renders into the page, so a visitor's copy of it never holds a
/// deleted or corrected text; entries about messages not among them are kept as they are.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub fn without_withdrawn_text(entries: Vec<Entry>) -> Vec<Entry> {
    let mut deleted: HashSet<String> = HashSet::new();
    let mut latest: HashMap<String, (String, String)> = HashMap::new();
    let message_ids: HashSet<String> = {
        let messages: HashMap<&str, &Entry> = entries
            .iter()
            .filter(|e| matches!(e.said, Said::Message { .. }))
            .map(|e| (e.id.as_str(), e))
            .collect();
        let by_author = |change: &Entry, target: &str| {
            messages
                .get(target)
                .is_some_and(|message| same_author(message, change))
        };
        for entry in &entries {
            match &entry.said {
                Said::Retraction { target } if by_author(entry, target) => {
                    deleted.insert(target.clone());
                }
                Said::Edit { target, text } if by_author(entry, target) => {
                    latest.insert(target.clone(), (entry.id.clone(), text.clone()));
                }
                _ => {}
            }
        }
        messages.keys().map(|id| id.to_string()).collect()
    };
    entries
        .into_iter()
        .filter_map(|mut entry| {
            match &mut entry.said {
                Said::Message { text } if deleted.contains(&entry.id) => text.clear(),
                Said::Message { text } => {
                    if let Some((_, newest)) = latest.get(&entry.id) {
                        text.clone_from(newest);
                    }
                }
                Said::Edit { target, .. } if message_ids.contains(target.as_str()) => {
                    let kept = !deleted.contains(target)
                        && latest.get(target).is_some_and(|(id, _)| *id == entry.id);
                    if !kept {
                        return None;
                    }
                }
                _ => {}
            }
            Some(entry)
        })
        .collect()
}

/// Whether `change` comes from the author of `message`: the same person, and for guests (whom
/// the server knows only by socket) the same socket. The server checks this before storing an
/// edit or deletion; the page does not take a stored frame's word for it either.
fn same_author(message: &Entry, change: &Entry) -> bool {
    message.author.key() == change.author.key()
        && (message.author.verified || message.socket == change.socket)
}

/// A message with its changes applied in order.
fn fold(message: &Entry, changes: Option<&BTreeMap<Place, Entry>>) -> Post {
    let mut text = match &message.said {
        Said::Message { text } => text.clone(),
        _ => String::new(),
    };
    let (mut edited, mut deleted) = (false, false);
    let mut reactions: Vec<Reactions> = Vec::new();
    for change in changes.into_iter().flat_map(BTreeMap::values) {
        match &change.said {
            Said::Edit { text: new, .. } if same_author(message, change) && !deleted => {
                text.clone_from(new);
                edited = true;
            }
            Said::Retraction { .. } if same_author(message, change) => deleted = true,
            Said::Reaction { emoji, on, .. } => {
                let who = &change.author;
                let index = match reactions.iter().position(|r| &r.emoji == emoji) {
                    Some(index) => index,
                    None => {
                        reactions.push(Reactions {
                            emoji: emoji.clone(),
                            people: Vec::new(),
                        });
                        reactions.len() - 1
                    }
                };
                let people = &mut reactions[index].people;
                people.retain(|p| (p.id.as_str(), p.verified) != who.key());
                if *on {
                    people.push(Reactor {
                        id: who.id.clone(),
                        verified: who.verified,
                        name: who.name.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    reactions.retain(|r| !r.people.is_empty());
    if deleted {
        text.clear();
        reactions.clear();
        edited = false;
    }
    Post {
        id: message.id.clone(),
        seq: message.seq,
        at: message.at,
        author: message.author.clone(),
        socket: message.socket.clone(),
        text,
        edited,
        deleted,
        reactions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, name: &str) -> Author {
        Author {
            id: id.into(),
            name: name.into(),
            colour: "#e5484d".into(),
            verified: false,
        }
    }

    fn entry(id: &str, seq: u64, by: &Author, said: Said) -> Entry {
        Entry {
            id: id.into(),
            seq: Some(seq),
            epoch: Some("e1".into()),
            at: Some(1_772_355_900_000 + seq as i64),
            author: by.clone(),
            socket: Some(format!("socket-of-{}", by.id)),
            said,
        }
    }

    fn text(id: &str, seq: u64, by: &Author, text: &str) -> Entry {
        entry(id, seq, by, Said::Message { text: text.into() })
    }

    fn texts(timeline: &Timeline) -> Vec<String> {
        timeline.posts().into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn posts_are_in_the_rooms_order_once_whatever_order_they_arrive_in() {
        let ada = person("ada", "Ada");
        let mut timeline = Timeline::default();
        timeline.add(text("c", 3, &ada, "three"));
        timeline.add(text("d", 4, &ada, "four"));
        timeline.add(text("a", 1, &ada, "one"));
        timeline.add(text("b", 2, &ada, "two"));
        timeline.add(text("c", 3, &ada, "three"));
        assert_eq!(texts(&timeline), ["one", "two", "three", "four"]);
        assert_eq!(timeline.oldest_seq(), Some(1));
    }

    #[test]
    fn the_authors_latest_edit_wins_and_nobody_elses_counts() {
        let (ada, ben) = (person("ada", "Ada"), person("ben", "Ben"));
        let edit = |id: &str, seq, by: &Author, new: &str| {
            entry(
                id,
                seq,
                by,
                Said::Edit {
                    target: "a".into(),
                    text: new.into(),
                },
            )
        };
        let mut timeline = Timeline::default();
        timeline.add(text("a", 1, &ada, "helo"));
        timeline.add(edit("e2", 3, &ada, "hello!"));
        timeline.add(edit("e1", 2, &ada, "hello"));
        timeline.add(edit("e3", 4, &ben, "Ben was here"));
        let post = &timeline.posts()[0];
        assert_eq!(post.text, "hello!");
        assert!(post.edited);

        // A guest is known by socket: the same name and id from another socket is not them.
        let mut impostor = entry(
            "e4",
            5,
            &ada,
            Said::Edit {
                target: "a".into(),
                text: "pwned".into(),
            },
        );
        impostor.socket = Some("another-socket".into());
        timeline.add(impostor);
        assert_eq!(timeline.posts()[0].text, "hello!");
    }

    #[test]
    fn a_deleted_message_leaves_a_stub_without_text_or_reactions() {
        let (ada, ben) = (person("ada", "Ada"), person("ben", "Ben"));
        let mut timeline = Timeline::default();
        timeline.add(text("a", 1, &ada, "oops"));
        timeline.add(entry(
            "r1",
            2,
            &ben,
            Said::Reaction {
                target: "a".into(),
                emoji: "😂".into(),
                on: true,
            },
        ));
        timeline.add(entry(
            "x1",
            3,
            &ben,
            Said::Retraction { target: "a".into() },
        ));
        assert!(!timeline.posts()[0].deleted, "only the author may delete");
        timeline.add(entry(
            "x2",
            4,
            &ada,
            Said::Retraction { target: "a".into() },
        ));
        let post = &timeline.posts()[0];
        assert!(post.deleted);
        assert_eq!(post.text, "");
        assert!(post.reactions.is_empty());
    }

    #[test]
    fn reactions_are_counted_per_emoji_once_per_person_and_can_be_taken_back() {
        let (ada, ben, cy) = (
            person("ada", "Ada"),
            person("ben", "Ben"),
            person("cy", "Cy"),
        );
        let react = |id: &str, seq, by: &Author, emoji: &str, on| {
            entry(
                id,
                seq,
                by,
                Said::Reaction {
                    target: "a".into(),
                    emoji: emoji.into(),
                    on,
                },
            )
        };
        let mut timeline = Timeline::default();
        timeline.add(text("a", 1, &ada, "lunch?"));
        timeline.add(react("r1", 2, &ben, "👍", true));
        timeline.add(react("r2", 3, &cy, "👍", true));
        timeline.add(react("r3", 4, &cy, "👍", true));
        timeline.add(react("r4", 5, &ada, "🎉", true));
        timeline.add(react("r5", 6, &ben, "👍", false));
        let reactions = &timeline.posts()[0].reactions;
        assert_eq!(reactions.len(), 2);
        assert_eq!(reactions[0].emoji, "👍");
        let names: Vec<_> = reactions[0]
            .people
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["Cy"]);
        assert_eq!(reactions[1].people.len(), 1);
        timeline.add(react("r6", 7, &ada, "🎉", false));
        assert_eq!(timeline.posts()[0].reactions.len(), 1);
    }

    #[test]
    fn changes_loaded_before_their_message_apply_when_it_arrives() {
        let ada = person("ada", "Ada");
        let mut timeline = Timeline::default();
        timeline.add(entry(
            "e1",
            60,
            &ada,
            Said::Edit {
                target: "a".into(),
                text: "edited later".into(),
            },
        ));
        timeline.add(text("z", 61, &ada, "newest"));
        assert_eq!(texts(&timeline), ["newest"]);
        assert_eq!(timeline.oldest_seq(), Some(60));
        timeline.add(text("a", 5, &ada, "first draft"));
        assert_eq!(texts(&timeline), ["edited later", "newest"]);
    }

    #[test]
    fn the_rendered_page_holds_no_deleted_or_corrected_text_and_shows_the_same() {
        let (ada, ben) = (person("ada", "Ada"), person("ben", "Ben"));
        let edit = |id: &str, seq, target: &str, new: &str| {
            entry(
                id,
                seq,
                &ada,
                Said::Edit {
                    target: target.into(),
                    text: new.into(),
                },
            )
        };
        let entries = vec![
            text("a", 1, &ada, "teh plan"),
            text("b", 2, &ada, "secret"),
            edit("e1", 3, "a", "the plna"),
            edit("e2", 4, "a", "the plan"),
            edit("e3", 5, "b", "still secret"),
            entry("x1", 6, &ada, Said::Retraction { target: "b".into() }),
            entry(
                "r1",
                7,
                &ben,
                Said::Reaction {
                    target: "a".into(),
                    emoji: "👍".into(),
                    on: true,
                },
            ),
            edit("e4", 8, "older", "about a message further back"),
        ];
        let all = Timeline::of(entries.clone()).posts();
        let rendered = without_withdrawn_text(entries.clone());
        let words = format!("{rendered:?}");
        for gone in ["teh plan", "the plna", "secret"] {
            assert!(!words.contains(gone), "{gone} is still in {words}");
        }
        assert!(words.contains("about a message further back"));
        assert_eq!(Timeline::of(rendered.clone()).posts(), all);
        // The rest arrives over the socket later: the same again.
        let mut later = Timeline::of(rendered);
        entries.into_iter().for_each(|e| later.add(e));
        assert_eq!(later.posts(), all);
    }

    #[test]
    fn a_reset_rooms_new_epoch_comes_after_the_old_one() {
        let ada = person("ada", "Ada");
        let mut timeline = Timeline::default();
        timeline.add(text("a", 41, &ada, "before the reset"));
        let mut after = text("b", 1, &ada, "after the reset");
        after.epoch = Some("e2".into());
        timeline.add(after);
        assert_eq!(texts(&timeline), ["before the reset", "after the reset"]);
        assert_eq!(timeline.oldest_seq(), Some(1));
    }
}
