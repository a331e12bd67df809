//! One socket's conversation with the hub: it decodes each frame the socket sends, applies the
//! limits, carries out the request and queues the answers on the socket's own outbox.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_protocol::{
    decode_client_frame, Action, ClientRequest, CloseCode, ErrorCode, JoinRequest, MessageRequest,
    Target,
};
use uuid::Uuid;

use crate::channel::{Channel, Member};
use crate::encode;
use crate::hub::{Hub, Identity};
use crate::outbox::Outbox;
use crate::rate::TokenBucket;

/// A refusal: the code and the human-readable reason.
type Refusal = (ErrorCode, String);

/// The hub side of one connected socket. Dropping it leaves every channel it joined.
pub struct Session {
    hub: Hub,
    id: Uuid,
    identity: Identity,
    outbox: Outbox,
    joined: HashMap<Arc<str>, Joined>,
    frames: TokenBucket,
    violations: TokenBucket,
}

/// A channel this socket is a member of.
struct Joined {
    channel: Arc<Channel>,
    client: Arc<str>,
}

impl Session {
    pub(crate) fn new(hub: Hub, id: Uuid, identity: Identity, outbox: Outbox) -> Self {
        let config = hub.config();
        let rate = f64::from(config.frames_per_second);
        let frames = TokenBucket::new(rate, f64::from(config.frame_burst));
        let violations = TokenBucket::new(rate / 10.0, f64::from(config.rate_violation_burst));
        Self {
            hub,
            id,
            identity,
            outbox,
            joined: HashMap::new(),
            frames,
            violations,
        }
    }

    /// The socket's id, as others see it in `client.socketId`.
    pub fn socket_id(&self) -> Uuid {
        self.id
    }

    /// Tells the socket's writer to close with `code` (e.g. a frame over the hard limit).
    pub fn close(&self, code: CloseCode) {
        self.outbox.close(code);
    }

    /// Handles one text frame from the socket.
    pub fn handle_text(&mut self, text: &str) {
        let decoded = decode_client_frame(text);
        if !self.frames.take() {
            if self.violations.take() {
                let why = "too many frames: slow down and retry".to_string();
                self.respond(
                    decoded.channel,
                    decoded.reference,
                    Err((ErrorCode::RateLimited, why)),
                );
            } else {
                self.outbox.close(CloseCode::PolicyViolation);
            }
            return;
        }
        let outcome = match decoded.request {
            Err(refusal) => Err(refusal),
            Ok(ClientRequest::Join(join)) => self.join(join),
            Ok(ClientRequest::Leave { channel }) => self.leave(channel),
            Ok(ClientRequest::Message(message)) => self.message(message),
            Ok(ClientRequest::History { channel }) => self.history(channel),
        };
        self.respond(decoded.channel, decoded.reference, outcome);
    }

    /// Queues the outcome: a `reply` when the request had a ref, an `error` when it failed
    /// without one, nothing for a success without one (what Xano's SDK expects).
    fn respond(
        &self,
        channel: Option<&str>,
        reference: Option<&RawValue>,
        outcome: Result<(), Refusal>,
    ) {
        let frame = match (reference, &outcome) {
            (Some(reference), _) => {
                let outcome = outcome
                    .as_ref()
                    .map(|_| ())
                    .map_err(|(c, m)| (*c, m.as_str()));
                encode::reply(channel, reference, outcome)
            }
            (None, Err((code, message))) => encode::error(channel, *code, message),
            (None, Ok(())) => return,
        };
        self.outbox.push(frame);
    }

    fn joined(&self, channel: &str) -> Result<&Joined, Refusal> {
        self.joined.get(channel).ok_or_else(|| {
            let why = format!("this socket has not joined channel {channel:?}: join it first");
            (ErrorCode::NotSubscribed, why)
        })
    }

    fn join(&mut self, request: JoinRequest<'_>) -> Result<(), Refusal> {
        let config = self.hub.config().clone();
        if let Some(joined) = self.joined.get(request.channel) {
            let (channel, client) = (joined.channel.clone(), joined.client.clone());
            let mut members = channel.lock();
            if let Some(member) = members.get_mut(&self.id) {
                let was_listed = std::mem::replace(&mut member.presence, request.presence);
                match (was_listed, request.presence) {
                    (false, true) => members.announce(&self.id, Action::Join, &client),
                    (true, false) => members.announce(&self.id, Action::Leave, &client),
                    _ => {}
                }
            }
            if request.presence {
                self.outbox.push(members.presence_full());
            }
            drop(members);
            self.send_history_on_join(&request, &config);
            return Ok(());
        }
        if self.joined.len() >= config.max_channels_per_socket {
            let why = format!(
                "this socket already joined {} channels, the most allowed",
                config.max_channels_per_socket
            );
            return Err((ErrorCode::TooManyChannels, why));
        }
        let client = self.client_json(request.extras.as_ref(), &config)?;
        let member = Member {
            outbox: self.outbox.clone(),
            client: client.clone(),
            authenticated: self.identity.authenticated,
            presence: request.presence,
        };
        let channel = self.hub.with_channel(request.channel, |channel| {
            let mut members = channel.lock();
            members.insert(self.id, member);
            if request.presence {
                members.announce(&self.id, Action::Join, &client);
                self.outbox.push(members.presence_full());
            }
            channel.clone()
        });
        self.joined
            .insert(channel.name.clone(), Joined { channel, client });
        self.send_history_on_join(&request, &config);
        Ok(())
    }

    fn send_history_on_join(&self, request: &JoinRequest<'_>, config: &crate::HubConfig) {
        if request.history {
            let frames = self
                .hub
                .inner
                .history
                .recent(request.channel, config.history_on_join);
            self.outbox.push(encode::history(request.channel, &frames));
        }
    }

    /// The socket's client object for a channel: identity from its token when it has one,
    /// otherwise the extras it sent with the join.
    fn client_json(
        &self,
        join_extras: Option<&Map<String, Value>>,
        config: &crate::HubConfig,
    ) -> Result<Arc<str>, Refusal> {
        let extras = match join_extras {
            Some(extras) if !self.identity.authenticated => extras,
            _ => &self.identity.extras,
        };
        let extras = Value::Object(extras.clone()).to_string();
        if extras.len() > config.max_extras_bytes {
            let why = format!(
                "join extras are {} bytes; at most {} are allowed",
                extras.len(),
                config.max_extras_bytes
            );
            return Err((ErrorCode::PayloadTooLarge, why));
        }
        let permissions = json!({ "authenticated": self.identity.authenticated });
        let client = format!(
            r#"{{"socketId":"{}","extras":{},"permissions":{}}}"#,
            self.id, extras, permissions
        );
        Ok(Arc::from(client))
    }

    fn leave(&mut self, channel: &str) -> Result<(), Refusal> {
        self.joined(channel)?;
        if let Some(joined) = self.joined.remove(channel) {
            self.remove_membership(&joined);
        }
        Ok(())
    }

    fn remove_membership(&self, joined: &Joined) {
        self.hub
            .with_channel_then_prune(&joined.channel, |channel| {
                let mut members = channel.lock();
                if let Some(member) = members.remove(&self.id) {
                    if member.presence {
                        members.announce(&self.id, Action::Leave, &joined.client);
                    }
                }
                members.is_empty()
            });
    }

    fn message(&mut self, request: MessageRequest<'_>) -> Result<(), Refusal> {
        let joined = self.joined(request.channel)?;
        let config = self.hub.config();
        let size = request.payload.get().len();
        if size > config.max_payload_bytes {
            let why = format!(
                "payload is {size} bytes; at most {} are allowed",
                config.max_payload_bytes
            );
            return Err((ErrorCode::PayloadTooLarge, why));
        }
        let frame: Bytes = encode::relayed(request.channel, request.payload, &joined.client);
        let members = joined.channel.lock();
        if request.target == Target::Everyone {
            self.hub.inner.history.append(
                request.channel,
                frame.clone(),
                config.history_per_channel,
            );
        }
        if members.deliver(request.target, &frame) {
            Ok(())
        } else {
            let why = format!(
                "no socket {:?} in channel {:?}",
                match request.target {
                    Target::Socket(id) => id,
                    _ => "",
                },
                request.channel
            );
            Err((ErrorCode::UnknownSocket, why))
        }
    }

    fn history(&self, channel: &str) -> Result<(), Refusal> {
        self.joined(channel)?;
        let limit = self.hub.config().history_per_channel;
        let frames = self.hub.inner.history.recent(channel, limit);
        self.outbox.push(encode::history(channel, &frames));
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, joined) in std::mem::take(&mut self.joined) {
            self.remove_membership(&joined);
        }
        self.hub.forget_socket(&self.id);
    }
}
