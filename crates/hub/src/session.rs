//! One socket's conversation with the hub: it decodes each frame the socket sends, applies the
//! limits, carries out the request and queues the answers on the socket's own outbox.

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_protocol::{
    decode_client_frame, Action, ClientRequest, CloseCode, ErrorCode, HistoryRequest, JoinRequest,
    MessageRequest, Since, Target,
};
use uuid::Uuid;

use crate::channel::{Channel, Locked, Member};
use crate::encode::{self, Position};
use crate::history::NewEntry;
use crate::hub::{Hub, Identity};
use crate::outbox::Outbox;
use crate::persister::{now_ms, Pending};
use crate::rate::TokenBucket;
use crate::{JoinPolicy, SendPolicy};

/// A refusal: the code and the human-readable reason.
type Refusal = (ErrorCode, String);

/// Who answers a request that succeeded.
enum Answered {
    /// The session: an ok reply now (if the request had a ref).
    Now,
    /// The persister, once the message is stored.
    WhenStored,
}

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
    /// The channel rule's per-socket message rate, if it sets one.
    rate: Option<TokenBucket>,
}

fn internal(err: impl std::fmt::Display) -> Refusal {
    (
        ErrorCode::Internal,
        format!("history storage failed: {err}"),
    )
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
            Ok(ClientRequest::Join(join)) => self.join(join).map(|()| Answered::Now),
            Ok(ClientRequest::Leave { channel }) => self.leave(channel).map(|()| Answered::Now),
            Ok(ClientRequest::Message(message)) => self.message(message, decoded.reference),
            Ok(ClientRequest::History(request)) => self.history(request).map(|()| Answered::Now),
        };
        match outcome {
            Ok(Answered::WhenStored) => {}
            Ok(Answered::Now) => self.respond(decoded.channel, decoded.reference, Ok(())),
            Err(refusal) => self.respond(decoded.channel, decoded.reference, Err(refusal)),
        }
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
            if let Some(cluster) = self.hub.inner.cluster.clone() {
                let was_listed = channel
                    .lock()
                    .member_mut(&self.id)
                    .map(|m| std::mem::replace(&mut m.presence, request.presence))
                    .unwrap_or(false);
                let socket = self.id.to_string();
                let listed = cluster
                    .join(
                        request.channel,
                        &socket,
                        request.presence,
                        was_listed,
                        &client,
                    )
                    .map_err(internal)?;
                let locked = channel.lock();
                match (was_listed, request.presence) {
                    (false, true) => locked.announce(&self.id, Action::Join, &client),
                    (true, false) => locked.announce(&self.id, Action::Leave, &client),
                    _ => {}
                }
                if request.presence {
                    let listed = listed.iter().map(String::as_str);
                    self.outbox
                        .push(encode::presence_full(&channel.name, listed));
                }
                return self.catch_up(&locked, &request);
            }
            let mut locked = channel.lock();
            if let Some(member) = locked.member_mut(&self.id) {
                let was_listed = std::mem::replace(&mut member.presence, request.presence);
                match (was_listed, request.presence) {
                    (false, true) => locked.announce(&self.id, Action::Join, &client),
                    (true, false) => locked.announce(&self.id, Action::Leave, &client),
                    _ => {}
                }
            }
            if request.presence {
                self.outbox.push(locked.presence_full());
            }
            return self.catch_up(&locked, &request);
        }
        if self.joined.len() >= config.max_channels_per_socket {
            let why = format!(
                "this socket already joined {} channels, the most allowed",
                config.max_channels_per_socket
            );
            return Err((ErrorCode::TooManyChannels, why));
        }
        let client = self.client_json(request.extras.as_ref(), &config)?;
        let channel = self.hub.channel(request.channel).map_err(internal)?;
        if channel.rule.join == JoinPolicy::Authenticated && !self.identity.authenticated {
            let why = format!(
                "channel {:?} is for signed-in sockets: connect with a token",
                request.channel
            );
            return Err((ErrorCode::AuthRequired, why));
        }
        let request = JoinRequest {
            presence: request.presence && channel.rule.presence,
            ..request
        };
        // On a cluster the member is listed in Redis first; the presence list spans nodes.
        let listed = match &self.hub.inner.cluster {
            Some(cluster) => {
                let socket = self.id.to_string();
                let listed =
                    cluster.join(request.channel, &socket, request.presence, false, &client);
                match listed {
                    Ok(listed) => Some(listed),
                    Err(err) => {
                        self.hub.prune_if_idle(&channel);
                        return Err(internal(err));
                    }
                }
            }
            None => None,
        };
        let mut locked = channel.lock();
        locked.insert(
            self.id,
            Member {
                outbox: self.outbox.clone(),
                client: client.clone(),
                authenticated: self.identity.authenticated,
                presence: request.presence,
            },
        );
        match (request.presence, listed) {
            (false, _) => {}
            (true, Some(listed)) => {
                locked.announce(&self.id, Action::Join, &client);
                let listed = listed.iter().map(String::as_str);
                self.outbox
                    .push(encode::presence_full(&channel.name, listed));
            }
            (true, None) => {
                locked.announce(&self.id, Action::Join, &client);
                self.outbox.push(locked.presence_full());
            }
        }
        let caught_up = self.catch_up(&locked, &request);
        drop(locked);
        let rate = channel
            .rule
            .messages_per_second
            .map(|n| TokenBucket::new(f64::from(n), f64::from(n.max(1))));
        self.joined.insert(
            channel.name.clone(),
            Joined {
                channel,
                client,
                rate,
            },
        );
        caught_up
    }

    /// After a join: the missed messages of a resume (or a gap), or the recent history. Runs
    /// under the channel's lock, so nothing delivered live can slip between the two.
    fn catch_up(&self, locked: &Locked<'_>, request: &JoinRequest<'_>) -> Result<(), Refusal> {
        let store = &self.hub.inner.history;
        let config = self.hub.config();
        let channel = request.channel;
        let delivered = locked.delivered_seq;
        match request.since {
            Some(Since { epoch, seq }) if epoch == &*locked.epoch => {
                if seq >= delivered {
                    return Ok(());
                }
                let missed = store
                    .range(channel, seq, delivered, usize::MAX)
                    .map_err(internal)?;
                let first = missed.first().map_or(delivered + 1, |f| f.seq);
                let keep_from = missed.len().saturating_sub(config.max_resume);
                let first_sent = missed.get(keep_from).map_or(first, |f| f.seq);
                // The gap (if any) goes on the replay lane too, ahead of what is replayed.
                let gap = (first_sent > seq + 1)
                    .then(|| encode::gap(channel, epoch, seq, first_sent - 1));
                let replayed = missed.into_iter().skip(keep_from).map(|f| f.frame);
                self.outbox.replay(gap.into_iter().chain(replayed));
            }
            Some(Since { seq, .. }) => {
                // Another epoch: everything the client had may be gone; say so, then send
                // what the channel holds now.
                self.outbox
                    .push(encode::gap(channel, &locked.epoch, seq, delivered));
                let recent = store
                    .latest(channel, None, config.history_on_join)
                    .map_err(internal)?;
                self.outbox.push(encode::history(channel, &recent));
            }
            None if request.history => {
                let recent = store
                    .latest(channel, None, config.history_on_join)
                    .map_err(internal)?;
                self.outbox.push(encode::history(channel, &recent));
            }
            None => {}
        }
        Ok(())
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
        {
            let mut locked = joined.channel.lock();
            if let Some(member) = locked.remove(&self.id) {
                if member.presence {
                    locked.announce(&self.id, Action::Leave, &joined.client);
                }
                if let Some(cluster) = &self.hub.inner.cluster {
                    let socket = self.id.to_string();
                    let (presence, client) = (member.presence, &joined.client);
                    cluster.leave(&joined.channel.name, &socket, presence, client);
                }
            }
        }
        self.hub.prune_if_idle(&joined.channel);
    }

    fn message(
        &mut self,
        request: MessageRequest<'_>,
        reference: Option<&RawValue>,
    ) -> Result<Answered, Refusal> {
        let authenticated = self.identity.authenticated;
        let joined = self.joined.get_mut(request.channel).ok_or_else(|| {
            let why = format!(
                "this socket has not joined channel {:?}: join it first",
                request.channel
            );
            (ErrorCode::NotSubscribed, why)
        })?;
        let rule = &joined.channel.rule;
        match (rule.send, authenticated) {
            (SendPolicy::Nobody, _) => {
                let why = format!("only the server publishes to channel {:?}", request.channel);
                return Err((ErrorCode::Forbidden, why));
            }
            (SendPolicy::Authenticated, false) => {
                let why = format!(
                    "sending to channel {:?} needs a signed-in socket",
                    request.channel
                );
                return Err((ErrorCode::AuthRequired, why));
            }
            _ => {}
        }
        let config = self.hub.config();
        let limit = rule
            .max_payload_bytes
            .map_or(config.max_payload_bytes, |max| {
                max.min(config.max_payload_bytes)
            });
        let size = request.payload.get().len();
        if size > limit {
            let why =
                format!("payload is {size} bytes; at most {limit} are allowed in this channel");
            return Err((ErrorCode::PayloadTooLarge, why));
        }
        let per_second = rule.messages_per_second;
        if joined.rate.as_mut().is_some_and(|rate| !rate.take()) {
            let why = format!(
                "more than {} messages per second to channel {:?}: slow down",
                per_second.unwrap_or_default(),
                request.channel
            );
            return Err((ErrorCode::RateLimited, why));
        }
        let joined = &*joined;

        if request.volatile && request.target == Target::Everyone {
            // Cursor-style updates: never stored, not echoed to the sender, coalesced per
            // sender in each member's outbox.
            let frame = encode::relayed(request.channel, request.payload, &joined.client);
            let counts = joined.channel.lock().deliver_volatile(&self.id, &frame);
            self.hub.inner.count_volatile(counts);
            if let Some(cluster) = &self.hub.inner.cluster {
                let socket = self.id.to_string();
                cluster.publish(request.channel, b'v', true, Some(&socket), &frame);
            }
            return Ok(Answered::Now);
        }
        if request.target != Target::Everyone {
            // Messages to one socket or to authenticated members are not stored.
            let frame = encode::relayed(request.channel, request.payload, &joined.client);
            if let Some(cluster) = &self.hub.inner.cluster {
                return relay_across(cluster, joined, &request, &frame);
            }
            let delivered = joined.channel.lock().deliver(request.target, &frame);
            return match (delivered, request.target) {
                (true, _) => Ok(Answered::Now),
                (false, Target::Socket(id)) => Err((
                    ErrorCode::UnknownSocket,
                    format!("no socket {id:?} in channel {:?}", request.channel),
                )),
                (false, _) => Ok(Answered::Now),
            };
        }
        let id = request
            .id
            .map_or_else(|| Uuid::new_v4().simple().to_string(), str::to_string);
        if self.hub.inner.cluster.is_some() {
            // Redis hands out the seq (and recognises a resent id); the frame goes with seq 0
            // and is split there.
            let epoch = joined.channel.lock().epoch.clone();
            let at = Position {
                seq: 0,
                id: &id,
                epoch: &epoch,
            };
            let frame =
                encode::stored_message(request.channel, &at, request.payload, &joined.client);
            let pending = Pending {
                channel: joined.channel.clone(),
                entry: NewEntry {
                    channel: request.channel.to_string(),
                    seq: 0,
                    id,
                    at_ms: now_ms(),
                    frame,
                },
                sender: Some(self.outbox.clone()),
                reference: reference.map(ToOwned::to_owned),
                seq_at: Some(encode::seq_offset(Action::Message, request.channel)),
            };
            self.hub.inner.persister.submit(pending)?;
            return Ok(Answered::WhenStored);
        }
        let mut locked = joined.channel.lock();
        if let Some(seq) = locked.seq_of(&id) {
            // A resend of a message already stored (or being stored): same ok, no delivery.
            if let Some(reference) = reference {
                self.outbox
                    .push(encode::reply_stored(request.channel, reference, seq));
            }
            return Ok(Answered::WhenStored);
        }
        let seq = locked.next_seq;
        let epoch = locked.epoch.clone();
        let at = Position {
            seq,
            id: &id,
            epoch: &epoch,
        };
        let frame = encode::stored_message(request.channel, &at, request.payload, &joined.client);
        let pending = Pending {
            channel: joined.channel.clone(),
            entry: NewEntry {
                channel: request.channel.to_string(),
                seq,
                id: id.clone(),
                at_ms: now_ms(),
                frame,
            },
            sender: Some(self.outbox.clone()),
            reference: reference.map(ToOwned::to_owned),
            seq_at: None,
        };
        self.hub.inner.persister.submit(pending)?;
        locked.assign_seq(id);
        Ok(Answered::WhenStored)
    }

    fn history(&self, request: HistoryRequest<'_>) -> Result<(), Refusal> {
        self.joined(request.channel)?;
        let limit = request.limit.unwrap_or(self.hub.config().history_on_join);
        let frames = self
            .hub
            .inner
            .history
            .latest(request.channel, request.before, limit)
            .map_err(internal)?;
        self.outbox.push(encode::history(request.channel, &frames));
        Ok(())
    }
}

/// On a cluster: a message for authenticated members or one socket, through Redis so it
/// reaches members on every node.
fn relay_across(
    cluster: &crate::cluster::Cluster,
    joined: &Joined,
    request: &MessageRequest<'_>,
    frame: &bytes::Bytes,
) -> Result<Answered, Refusal> {
    let Target::Socket(id) = request.target else {
        joined.channel.lock().deliver(request.target, frame);
        cluster.publish(request.channel, b'a', true, None, frame);
        return Ok(Answered::Now);
    };
    let unknown = || {
        let why = format!("no socket {id:?} in channel {:?}", request.channel);
        (ErrorCode::UnknownSocket, why)
    };
    let socket = Uuid::try_parse(id).map_err(|_| unknown())?;
    let locked = joined.channel.lock();
    if locked.has_member(&socket) {
        locked.deliver(request.target, frame);
        return Ok(Answered::Now);
    }
    drop(locked);
    let socket = socket.to_string();
    if !cluster
        .is_member(request.channel, &socket)
        .map_err(internal)?
    {
        return Err(unknown());
    }
    cluster.publish(request.channel, b's', false, Some(&socket), frame);
    Ok(Answered::Now)
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, joined) in std::mem::take(&mut self.joined) {
            self.remove_membership(&joined);
        }
        self.hub.forget_socket(&self.id);
    }
}
