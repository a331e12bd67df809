//! A native Rust client for Switchboard on tokio-tungstenite.
//!
//! Used by the integration tests, the CLI and the load generator, over `ws://` or `wss://`
//! (see [`tls`] for which servers it trusts). It speaks the same frames as
//! the browser: [`Client::request`] sends a frame with a fresh `options.ref` and waits for the
//! server's `reply`, keeping every other frame that arrives meanwhile for [`Client::next_frame`].

pub mod admin;
pub mod cli;
pub mod tls;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_protocol::{Action, ErrorCode, Frame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long [`Client::request`] waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket connection could not be opened or broke.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server closed the socket (close code, if it sent one).
    #[error("connection closed by the server (code {code:?}: {reason})")]
    Closed {
        /// The close code, when the server sent a close frame.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server sent something that is not a protocol frame.
    #[error("unexpected data from the server: {0}")]
    Protocol(String),
    /// TLS could not be set up (no trusted authorities, an unreadable CA file).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the request.
    #[error("refused: {code} ({message})")]
    Refused {
        /// The protocol's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The HTTP API answered with an error (`{"error": {"code", "message"}}`).
    #[error("{message} (HTTP {status}, {code})")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The error's code, e.g. `unauthorized`.
        code: String,
        /// The server's explanation.
        message: String,
    },
}

/// One connection to a Switchboard server.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Frame>,
    next_ref: u64,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:3000/rt/demo` or `wss://host/rt/demo`) without a
    /// token.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with_token(url, None).await
    }

    /// Connects to `url`, passing `token` in the `Sec-WebSocket-Protocol` slot as Xano's SDK does.
    pub async fn connect_with_token(url: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let mut request = url.into_client_request()?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(token).map_err(|_| {
                ClientError::Protocol("the token has characters a header cannot carry".into())
            })?;
            request
                .headers_mut()
                .insert("sec-websocket-protocol", value);
        }
        let connector = tls::connector_for(url)?;
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await?;
        Ok(Self {
            ws,
            pending: VecDeque::new(),
            next_ref: 1,
        })
    }

    /// Sends a text frame as is (for tests of malformed input).
    pub async fn send_raw(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.ws.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Sends a frame without a ref: no reply comes for a success.
    pub async fn send(
        &mut self,
        action: Action,
        options: Value,
        payload: Value,
    ) -> Result<(), ClientError> {
        let frame = json!({ "action": action, "options": options, "payload": payload });
        self.send_raw(frame.to_string()).await
    }

    /// Sends a frame with a fresh `options.ref` and waits for its `reply`; other frames that
    /// arrive meanwhile stay queued for [`Client::next_frame`].
    pub async fn request(
        &mut self,
        action: Action,
        mut options: Map<String, Value>,
        payload: Value,
    ) -> Result<(), ClientError> {
        let reference = Value::from(format!("r{}", self.next_ref));
        self.next_ref += 1;
        options.insert("ref".into(), reference.clone());
        self.send(action, Value::Object(options), payload).await?;
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        let mut held = VecDeque::new();
        let outcome = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = match tokio::time::timeout(left, self.read_frame()).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(err)) => break Err(err),
                Err(_) => break Err(ClientError::Timeout(REPLY_TIMEOUT)),
            };
            if frame.action == Action::Reply && frame.reference() == Some(&reference) {
                break match frame.error_code() {
                    None => Ok(()),
                    Some(code) => Err(ClientError::Refused {
                        code,
                        message: frame.payload["message"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    }),
                };
            }
            held.push_back(frame);
        };
        self.pending.extend(held);
        outcome
    }

    /// Joins `channel`, waiting for the server's ok.
    pub async fn join(
        &mut self,
        channel: &str,
        presence: bool,
        history: bool,
    ) -> Result<(), ClientError> {
        let payload = json!({ "presence": presence, "history": history });
        self.request(Action::Join, channel_options(channel), payload)
            .await
    }

    /// Leaves `channel`, waiting for the server's ok.
    pub async fn leave(&mut self, channel: &str) -> Result<(), ClientError> {
        self.request(Action::Leave, channel_options(channel), Value::Null)
            .await
    }

    /// Sends `payload` to everyone in `channel`, waiting for the server's ok.
    pub async fn publish(&mut self, channel: &str, payload: Value) -> Result<(), ClientError> {
        self.request(Action::Message, channel_options(channel), payload)
            .await
    }

    /// The next frame from the server, waiting as long as it takes.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        match self.pending.pop_front() {
            Some(frame) => Ok(frame),
            None => self.read_frame().await,
        }
    }

    /// The next frame, or `None` when nothing arrives within `wait`.
    pub async fn next_frame_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Frame>, ClientError> {
        match tokio::time::timeout(wait, self.next_frame()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The next frame with this action, skipping others; fails after `wait`.
    pub async fn expect(&mut self, action: Action, wait: Duration) -> Result<Frame, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame_within(left).await? {
                Some(frame) if frame.action == action => return Ok(frame),
                Some(_) => continue,
                None => return Err(ClientError::Timeout(wait)),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        Ok(())
    }

    async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.ws.next().await {
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: String::new(),
                    })
                }
                Some(Err(err)) => return Err(err.into()),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|err| ClientError::Protocol(format!("{err}: {}", text.as_str())));
                }
                Some(Ok(Message::Close(close))) => {
                    return Err(ClientError::Closed {
                        code: close.as_ref().map(|c| u16::from(c.code)),
                        reason: close.map(|c| c.reason.to_string()).unwrap_or_default(),
                    })
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// `{"channel": channel}`, the options of most requests.
pub fn channel_options(channel: &str) -> Map<String, Value> {
    let mut options = Map::new();
    options.insert("channel".into(), Value::from(channel));
    options
}
