//! What travels on a channel's pub/sub topic, and how it is written.
//!
//! Every frame for a channel is encoded once by the node that accepts it and published once:
//! - `m <seq> <epoch> <frame>` — a stored message (published by the storing script itself);
//! - `a <origin> <frame>` — for authenticated members;
//! - `s <socket> <frame>` — for one socket, on whichever node holds it;
//! - `v <origin> <socket> <frame>` — a volatile update from `socket` (not back to it);
//! - `p <origin> <socket> <frame>` — a presence change of `socket` (not back to it).
//!
//! `origin` is the node that delivered the frame to its own members already and skips it when
//! it comes back; `-` means every node delivers it (e.g. the leave of a dead node's sockets).

use bytes::Bytes;
use uuid::Uuid;

/// A decoded topic message; frames are slices of the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicMessage {
    Stored {
        seq: u64,
        epoch: String,
        frame: Bytes,
    },
    Audience {
        origin: String,
        frame: Bytes,
    },
    Socket {
        socket: Uuid,
        frame: Bytes,
    },
    Volatile {
        origin: String,
        sender: Uuid,
        frame: Bytes,
    },
    Presence {
        origin: String,
        socket: Uuid,
        frame: Bytes,
    },
}

/// The first space-separated word of `rest` and what follows it.
fn word(rest: &Bytes) -> Option<(&str, Bytes)> {
    let space = rest.iter().position(|b| *b == b' ')?;
    let word = std::str::from_utf8(&rest[..space]).ok()?;
    Some((word, rest.slice(space + 1..)))
}

impl TopicMessage {
    /// Reads a received message; `None` for anything malformed.
    pub(crate) fn decode(payload: Bytes) -> Option<Self> {
        let kind = *payload.first()?;
        if payload.get(1) != Some(&b' ') {
            return None;
        }
        let rest = payload.slice(2..);
        match kind {
            b'm' => {
                let (seq, rest) = word(&rest)?;
                let seq = seq.parse().ok()?;
                let (epoch, frame) = word(&rest)?;
                Some(Self::Stored {
                    seq,
                    epoch: epoch.to_string(),
                    frame,
                })
            }
            b'a' => {
                let (origin, frame) = word(&rest)?;
                Some(Self::Audience {
                    origin: origin.to_string(),
                    frame,
                })
            }
            b's' => {
                let (socket, frame) = word(&rest)?;
                Some(Self::Socket {
                    socket: Uuid::try_parse(socket).ok()?,
                    frame,
                })
            }
            b'v' | b'p' => {
                let (origin, rest) = word(&rest)?;
                let origin = origin.to_string();
                let (socket, frame) = word(&rest)?;
                let socket = Uuid::try_parse(socket).ok()?;
                Some(if kind == b'v' {
                    Self::Volatile {
                        origin,
                        sender: socket,
                        frame,
                    }
                } else {
                    Self::Presence {
                        origin,
                        socket,
                        frame,
                    }
                })
            }
            _ => None,
        }
    }

    /// The node that delivered this message itself, if any.
    pub(crate) fn origin(&self) -> Option<&str> {
        match self {
            Self::Audience { origin, .. }
            | Self::Volatile { origin, .. }
            | Self::Presence { origin, .. } => Some(origin),
            Self::Stored { .. } | Self::Socket { .. } => None,
        }
    }
}

/// Writes a transient topic message: kind, origin (none for `s`), socket, frame.
pub(crate) fn encode(
    kind: u8,
    origin: Option<&str>,
    socket: Option<Uuid>,
    frame: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(frame.len() + 80);
    message.push(kind);
    message.push(b' ');
    if let Some(origin) = origin {
        message.extend_from_slice(origin.as_bytes());
        message.push(b' ');
    }
    if let Some(socket) = socket {
        message.extend_from_slice(socket.to_string().as_bytes());
        message.push(b' ');
    }
    message.extend_from_slice(frame);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_frames_keep_their_spaces() {
        let socket = Uuid::new_v4();
        let frame = b"{\"a\": \"b c\"}";
        let volatile = encode(b'v', Some("n1"), Some(socket), frame);
        assert_eq!(
            TopicMessage::decode(Bytes::from(volatile)),
            Some(TopicMessage::Volatile {
                origin: "n1".into(),
                sender: socket,
                frame: Bytes::from_static(frame),
            })
        );
        let direct = encode(b's', None, Some(socket), frame);
        assert_eq!(
            TopicMessage::decode(Bytes::from(direct)),
            Some(TopicMessage::Socket {
                socket,
                frame: Bytes::from_static(frame),
            })
        );
        let stored = Bytes::from_static(b"m 42 ep0ch {\"x\": 1}");
        assert_eq!(
            TopicMessage::decode(stored),
            Some(TopicMessage::Stored {
                seq: 42,
                epoch: "ep0ch".into(),
                frame: Bytes::from_static(b"{\"x\": 1}"),
            })
        );
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for bad in [
            &b""[..],
            b"m",
            b"m x e f",
            b"z a b",
            b"s not-a-uuid f",
            b"mm 1 e f",
        ] {
            assert_eq!(
                TopicMessage::decode(Bytes::from_static(bad)),
                None,
                "{bad:?}"
            );
        }
    }
}
