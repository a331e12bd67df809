//! The servers the load generator can drive, behind one small adapter each: Switchboard's own
//! protocol, a plain WebSocket room-broadcast server (Node `ws`) and Socket.IO. Each adapter
//! says how to join a room, how to publish to it, and where a delivered payload is.

use clap::ValueEnum;
use std::time::Duration;
use switchboard_protocol::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::report::now_micros;

/// A load generator's WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket with a 4 KiB read buffer. tungstenite zero-fills its whole read buffer
/// (128 KiB by default) before every read; with thousands of sockets that memset alone took a
/// third of the load generator's core and made it, not the server, the bottleneck.
pub async fn dial(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let connector = switchboard_client::tls::connector_for(url).map_err(|e| e.to_string())?;
    tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// [`dial`], giving up after `timeout` (TCP and WebSocket handshakes together).
pub async fn dial_within(url: &str, timeout: Duration) -> Result<Socket, String> {
    tokio::time::timeout(timeout, dial(url))
        .await
        .unwrap_or_else(|_| Err(format!("no connection within {timeout:?}")))
}

/// A text frame as a protocol frame (`Ok(None)` when it does not parse); `Err(true)` when the
/// connection ended, `Err(false)` for any other message to skip.
pub fn text_frame(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<Frame>, bool> {
    match message {
        Some(Ok(Message::Text(text))) => Ok(serde_json::from_str(text.as_str()).ok()),
        Some(Ok(Message::Close(_)) | Err(_)) | None => Err(true),
        Some(Ok(_)) => Err(false),
    }
}

/// Padding that brings a stamped payload ([`stamped`]) to about `payload` bytes.
pub fn filler(payload: usize) -> String {
    "x".repeat(payload.saturating_sub(48))
}

/// Which protocol the server under test speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Switchboard (Xano realtime frames).
    Switchboard,
    /// `bench/peers/ws-server.js`: `{"join": room}`, `{"room": room, "data": payload}`.
    Ws,
    /// `bench/peers/socketio-server.js`: Socket.IO v4 over its WebSocket transport.
    Socketio,
}

impl Peer {
    /// The WebSocket URL to dial for a server at `base` (`ws://host:port`).
    pub fn url(self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Peer::Switchboard => format!("{base}/rt/loadgen"),
            Peer::Ws => base.to_string(),
            Peer::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// Frames to send right after connecting (Socket.IO's namespace connect).
    pub fn hello(self) -> Option<&'static str> {
        match self {
            Peer::Socketio => Some("40"),
            _ => None,
        }
    }

    /// The frame that joins `room`.
    pub fn join(self, room: &str) -> String {
        match self {
            Peer::Switchboard => {
                format!(r#"{{"action":"join","options":{{"channel":"{room}"}},"payload":{{}}}}"#)
            }
            Peer::Ws => format!(r#"{{"join":"{room}"}}"#),
            Peer::Socketio => format!(r#"42["join","{room}"]"#),
        }
    }

    /// The frame that publishes the JSON `payload` to `room`.
    pub fn publish(self, room: &str, payload: &str) -> String {
        match self {
            Peer::Switchboard => {
                format!(
                    r#"{{"action":"message","options":{{"channel":"{room}"}},"payload":{payload}}}"#
                )
            }
            Peer::Ws => format!(r#"{{"room":"{room}","data":{payload}}}"#),
            Peer::Socketio => format!(r#"42["msg","{room}",{payload}]"#),
        }
    }

    /// The answer a frame needs from the client, if any (Socket.IO's pong).
    pub fn answer(self, text: &str) -> Option<&'static str> {
        (self == Peer::Socketio && text == "2").then_some("3")
    }
}

/// A payload carrying a publish stamp (sequence number `seq`, the send time) and `fill` as
/// padding; [`stamp`] reads it back from a delivered frame.
pub fn stamped(seq: u64, fill: &str) -> String {
    format!(r#"{{"s":{seq},"t":{},"f":"{fill}"}}"#, now_micros())
}

/// The publish stamp in a delivered frame: (sequence number, send time in µs).
pub fn stamp(text: &str) -> Option<(u64, u64)> {
    let number = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        text[at..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .fold(None, |n, b| Some(n.unwrap_or(0) * 10 + u64::from(b - b'0')))
    };
    Some((number("\"s\":")?, number("\"t\":")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_every_peers_frames() {
        let payload = r#"{"s":42,"t":1700000000123456,"f":"xx"}"#;
        for peer in [Peer::Switchboard, Peer::Ws, Peer::Socketio] {
            assert_eq!(
                stamp(&peer.publish("r", payload)),
                Some((42, 1_700_000_000_123_456))
            );
        }
        let (seq, _) = stamp(&Peer::Switchboard.publish("r", &stamped(7, "xx"))).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(stamp(r#"{"action":"reply"}"#), None);
    }
}
