//! One socket's conversation with the hub: it decodes each frame the socket sends, applies the
//! limits and the channel's rules, carries out the request through the broker and queues the
//! answers on the socket's own outbox.
//!
//! Each request has one path, whether this node runs alone or with others: what differs is
//! behind the [`Broker`](crate::broker::Broker). Requests that need I/O (activating a channel,
//! presence across nodes) are awaited, so one socket's frames are handled in order while other
//! sockets go on; store reads are left to the socket's writer as plans (see `outbox`).

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_protocol::{
    decode_client_frame, is_valid_colour, Action, ClientInfo, ClientRequest, CloseCode, ErrorCode,
    Frame, HistoryRequest, JoinRequest, MessageRequest, Relation, Since, Target,
};
use uuid::Uuid;

use crate::access::{authorize, Access, Refusal};
use crate::broker::{Answer, PresenceMember, StoredMessage, Transient};
use crate::channel::{Channel, Locked, Member};
use crate::encode::{self, Stamp};
use crate::hooks::{GateDecision, JoinAsk, LeaveReason, PublishAsk};
use crate::hub::{Hub, Identity};
use crate::outbox::{Outbox, Plan};
use crate::rate::TokenBucket;
use crate::registry::{Order, Orders};
use crate::time::now_ms;

/// Who answers a request that succeeded.
enum Answered {
    /// The session: an ok reply now (if the request had a ref).
    Now,
    /// Someone later: the broker once a message is stored, the writer once history is read.
    Later,
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
    /// What operators ask of this socket, until the transport takes it.
    orders: Option<Orders>,
}

/// Asks one socket's writer for a ping frame ([`Session::pinger`]).
#[derive(Debug, Clone)]
pub struct Pinger(Outbox);

impl Pinger {
    /// Asks for one ping; asking again before it is written asks for one still.
    pub fn ping(&self) {
        self.0.ping();
    }
}

/// A channel this socket is a member of.
struct Joined {
    channel: Arc<Channel>,
    client: Arc<str>,
    /// The channel rule's per-socket message rate, if it sets one.
    rate: Option<TokenBucket>,
}

fn internal(err: impl std::fmt::Display) -> Refusal {
    Refusal::new(ErrorCode::Internal, err.to_string())
}

fn unknown_socket(id: &str, channel: &str) -> Refusal {
    Refusal::new(
        ErrorCode::UnknownSocket,
        format!("no socket {id:?} in channel {channel:?}"),
    )
}

fn not_subscribed(channel: &str) -> Refusal {
    Refusal::new(
        ErrorCode::NotSubscribed,
        format!("this socket has not joined channel {channel:?}: join it first"),
    )
}

impl Session {
    pub(crate) fn new(
        hub: Hub,
        id: Uuid,
        identity: Identity,
        outbox: Outbox,
        orders: Orders,
    ) -> Self {
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
            orders: Some(orders),
        }
    }

    /// What operators ask of this socket (taken once, by the transport, which hands each order
    /// back to [`Session::obey`] between frames).
    pub fn take_orders(&mut self) -> Option<Orders> {
        self.orders.take()
    }

    /// Carries out an operator's order (see [`Order`]).
    pub fn obey(&mut self, order: Order) {
        match order {
            Order::Disconnect => self.outbox.close(CloseCode::Disconnected),
            Order::Remove { channel } => {
                if let Some(joined) = self.joined.remove(channel.as_str()) {
                    self.remove_membership(&joined, LeaveReason::Removed);
                    self.outbox.push(encode::notice(
                        &channel,
                        "removed",
                        "an operator removed this socket from the channel",
                    ));
                }
            }
        }
    }

    /// This socket's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Tells the socket's writer to close with `code` (e.g. a frame over the hard limit).
    pub fn close(&self, code: CloseCode) {
        self.outbox.close(code);
    }

    /// A handle that asks the socket's writer for ping frames (it sees them as
    /// [`crate::Outbound::Ping`], ahead of queued frames), usable while the session is busy
    /// handling a frame.
    pub fn pinger(&self) -> Pinger {
        Pinger(self.outbox.clone())
    }

    /// Handles one text frame from the socket.
    pub async fn handle_text(&mut self, text: &str) {
        let decoded = decode_client_frame(text);
        if !self.frames.take() {
            if self.violations.take() {
                let why = Refusal::new(
                    ErrorCode::RateLimited,
                    "too many frames: slow down and retry",
                );
                self.hub.metrics().refused(why.code);
                self.respond(decoded.channel, decoded.reference, Err(why));
            } else {
                tracing::info!(socket = %self.id, "closing a socket that kept sending past its frame rate (1008)");
                self.outbox.close(CloseCode::PolicyViolation);
            }
            return;
        }
        let reference = decoded.reference;
        let outcome = match decoded.request {
            Err((code, message)) => Err(Refusal::new(code, message)),
            Ok(ClientRequest::Join(join)) => self.join(join).await.map(|()| Answered::Now),
            Ok(ClientRequest::Leave { channel }) => self.leave(channel).map(|()| Answered::Now),
            Ok(ClientRequest::Message(message)) => {
                self.hub.metrics().messages_received.inc();
                self.message(message, reference).await
            }
            Ok(ClientRequest::History(request)) => self.history(request, reference),
        };
        match outcome {
            Ok(Answered::Later) => {}
            Ok(Answered::Now) => self.respond(decoded.channel, reference, Ok(())),
            Err(refusal) => {
                self.hub.metrics().refused(refusal.code);
                self.respond(decoded.channel, reference, Err(refusal))
            }
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
                    .map_err(|r| (r.code, r.message.as_str()));
                encode::reply(channel, reference, outcome)
            }
            (None, Err(refusal)) => encode::error(channel, refusal.code, &refusal.message),
            (None, Ok(())) => return,
        };
        self.outbox.push(frame);
    }

    async fn join(&mut self, request: JoinRequest<'_>) -> Result<(), Refusal> {
        if self.joined.contains_key(request.channel) {
            return self.rejoin(request).await;
        }
        let config = self.hub.config();
        if self.joined.len() >= config.max_channels_per_socket {
            let why = format!(
                "this socket already joined {} channels, the most allowed",
                config.max_channels_per_socket
            );
            return Err(Refusal::new(ErrorCode::TooManyChannels, why));
        }
        // Decided before anything is opened: a refused join leaves nothing behind.
        let rule = self.hub.rule(request.channel);
        authorize(rule, self.identity.caller(), Access::Join, request.channel)?;
        let presence = request.presence && rule.presence;
        let mut client = self.client_json(request.extras.as_ref())?;
        if let Some(gates) = &self.hub.config().gates.0 {
            let ask = JoinAsk {
                channel: request.channel,
                client: &client,
                presence,
            };
            match gates.join(ask).await {
                GateDecision::Refuse(reason) => {
                    return Err(Refusal::new(ErrorCode::Forbidden, reason))
                }
                GateDecision::Allow {
                    extras: Some(extras),
                    ..
                } => client = self.client_with(&extras)?,
                GateDecision::Allow { .. } => {}
            }
        }
        let broker = self.hub.broker();
        let mut member = PresenceMember {
            socket: self.id,
            presence,
            was_listed: false,
            is_new: true,
            client: &client,
        };
        let channel = loop {
            let channel = self.hub.activate(request.channel).await?;
            let elsewhere = match broker.presence_join(request.channel, member).await {
                Ok(elsewhere) => elsewhere,
                Err(err) => {
                    self.hub.prune_if_idle(&channel);
                    return Err(internal(err));
                }
            };
            // Recorded once, even if the channel has to be opened again.
            member.is_new = false;
            let mut locked = channel.lock();
            if locked.retired {
                // Its last member left while this join was on its way: open it again.
                continue;
            }
            locked.insert(
                self.id,
                Member {
                    outbox: self.outbox.clone(),
                    client: client.clone(),
                    authenticated: self.identity.authenticated,
                    presence,
                },
            );
            if presence {
                // Other nodes were told by `presence_join`.
                locked.announce(&self.id, Action::Join, &client);
                self.outbox.push_first(presence_full(&locked, elsewhere));
            }
            self.catch_up(&locked, &request);
            drop(locked);
            break channel;
        };
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
        Ok(())
    }

    /// Joining a channel already joined: updates the presence flag (announcing the change)
    /// and sends the presence list and history again when asked.
    async fn rejoin(&mut self, request: JoinRequest<'_>) -> Result<(), Refusal> {
        let Some(joined) = self.joined.get(request.channel) else {
            return Err(not_subscribed(request.channel));
        };
        let (channel, client) = (joined.channel.clone(), joined.client.clone());
        let presence = request.presence && channel.rule.presence;
        let was_listed = channel
            .lock()
            .member_mut(&self.id)
            .is_some_and(|m| m.presence);
        let member = PresenceMember {
            socket: self.id,
            presence,
            was_listed,
            is_new: false,
            client: &client,
        };
        let elsewhere = self
            .hub
            .broker()
            .presence_join(request.channel, member)
            .await
            .map_err(internal)?;
        let mut locked = channel.lock();
        if let Some(member) = locked.member_mut(&self.id) {
            member.presence = presence;
        }
        match (was_listed, presence) {
            (false, true) => locked.announce(&self.id, Action::Join, &client),
            (true, false) => locked.announce(&self.id, Action::Leave, &client),
            _ => {}
        }
        if presence {
            self.outbox.push_first(presence_full(&locked, elsewhere));
        }
        self.catch_up(&locked, &request);
        Ok(())
    }

    /// After a join: the missed messages of a resume (or a gap), or the recent history — as
    /// plans in the lane, set under the channel's lock so nothing delivered live can slip
    /// between the two or come twice.
    fn catch_up(&self, locked: &Locked<'_>, request: &JoinRequest<'_>) {
        let config = self.hub.config();
        let channel = &locked.channel_name();
        let delivered = locked.delivered_seq;
        let history = || Plan::History {
            channel: channel.clone(),
            before: Some(delivered.saturating_add(1)),
            limit: config.history_on_join,
            reference: None,
        };
        match (request.since, &locked.epoch) {
            (Some(Since { epoch, seq }), Some(current)) if epoch == &**current => {
                if seq >= delivered {
                    return;
                }
                // Beyond the most a resume replays, the oldest are reported as a gap.
                let after = seq.max(delivered.saturating_sub(config.max_resume as u64));
                if after > seq {
                    self.outbox
                        .push_first(encode::gap(channel, current, seq, after));
                }
                self.outbox.plan(Plan::Resume {
                    channel: channel.clone(),
                    epoch: current.clone(),
                    after,
                    up_to: delivered,
                });
            }
            (Some(Since { seq, .. }), current) => {
                // Another epoch: everything the client had may be gone; say so, then send
                // what the channel holds now.
                let epoch = current.as_deref().unwrap_or_default();
                self.outbox
                    .push_first(encode::gap(channel, epoch, seq, delivered));
                self.outbox.plan(history());
            }
            (None, _) if request.history => {
                self.outbox.plan(history());
            }
            (None, _) => {}
        }
    }

    /// The socket's client object for a channel: identity from its token when it has one,
    /// otherwise the extras it sent with the join (checked: size, colour).
    fn client_json(&self, join_extras: Option<&Map<String, Value>>) -> Result<Arc<str>, Refusal> {
        let extras = match join_extras {
            Some(extras) if !self.identity.authenticated => extras,
            _ => &self.identity.extras,
        };
        self.client_with(extras)
    }

    /// The client object with these extras (checked: size, colour).
    fn client_with(&self, extras: &Map<String, Value>) -> Result<Arc<str>, Refusal> {
        for key in ["colour", "color"] {
            let Some(colour) = extras.get(key) else {
                continue;
            };
            if !colour.as_str().is_some_and(is_valid_colour) {
                return Err(Refusal::new(
                    ErrorCode::InvalidFrame,
                    format!("extras.{key} must be a colour: #rgb, #rrggbb or a colour name"),
                ));
            }
        }
        let extras = Value::Object(extras.clone()).to_string();
        let max = self.hub.config().max_extras_bytes;
        if extras.len() > max {
            let why = format!(
                "join extras are {} bytes; at most {max} are allowed",
                extras.len()
            );
            return Err(Refusal::new(ErrorCode::PayloadTooLarge, why));
        }
        Ok(Arc::from(encode::client(
            &self.id.to_string(),
            &extras,
            self.identity.authenticated,
        )))
    }

    fn leave(&mut self, channel: &str) -> Result<(), Refusal> {
        let joined = self
            .joined
            .remove(channel)
            .ok_or_else(|| not_subscribed(channel))?;
        self.remove_membership(&joined, LeaveReason::Left);
        Ok(())
    }

    fn remove_membership(&self, joined: &Joined, reason: LeaveReason) {
        let mut locked = joined.channel.lock();
        if let Some(member) = locked.remove(&self.id) {
            if member.presence {
                locked.announce(&self.id, Action::Leave, &joined.client);
            }
            drop(locked);
            let member = PresenceMember {
                socket: self.id,
                presence: member.presence,
                was_listed: member.presence,
                is_new: false,
                client: &joined.client,
            };
            self.hub
                .broker()
                .presence_leave(&joined.channel.name, member, reason);
        } else {
            drop(locked);
        }
        self.hub.prune_if_idle(&joined.channel);
    }

    async fn message(
        &mut self,
        request: MessageRequest<'_>,
        reference: Option<&RawValue>,
    ) -> Result<Answered, Refusal> {
        let caller = self.identity.caller();
        let joined = self
            .joined
            .get_mut(request.channel)
            .ok_or_else(|| not_subscribed(request.channel))?;
        let rule = &joined.channel.rule;
        authorize(rule, caller, Access::Send, request.channel)?;
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
            return Err(Refusal::new(ErrorCode::PayloadTooLarge, why));
        }
        if joined.rate.as_mut().is_some_and(|rate| !rate.take()) {
            let why = format!(
                "more than {} messages per second to channel {:?}: slow down",
                rule.messages_per_second.unwrap_or_default(),
                request.channel
            );
            return Err(Refusal::new(ErrorCode::RateLimited, why));
        }
        let Some(joined) = self.joined.get(request.channel) else {
            return Err(not_subscribed(request.channel));
        };
        let broker = self.hub.broker();
        let relayed = request.volatile || request.target != Target::Everyone;
        if let (false, Some(relation)) = (relayed, request.relation) {
            self.check_relation(request.channel, relation).await?;
        }
        // A socket id that cannot be one is refused before the back end is asked about it.
        if let Target::Socket(id) = request.target {
            if Uuid::try_parse(id).is_err() {
                return Err(unknown_socket(id, request.channel));
            }
        }
        // Every send passes the back end's publish gate: stored, volatile or for some members.
        let replaced = self.gate_publish(&request, &joined.client).await?;
        let payload = replaced.as_deref().unwrap_or(request.payload);
        if relayed {
            let frame = encode::relayed(request.channel, payload, &joined.client);
            self.relay(request.channel, joined, request.target, &frame)
                .await?;
            return Ok(Answered::Now);
        }
        let client = joined.client.clone();
        let (id, id_from_sender) = match request.id {
            Some(id) => (id.to_string(), true),
            // Time-ordered, so the index of ids grows at its end rather than in random pages.
            None => (Uuid::now_v7().simple().to_string(), false),
        };
        let at_ms = now_ms();
        let stamp = Stamp {
            id: &id,
            at_ms,
            relation: request.relation,
        };
        let template = encode::stored_message(request.channel, &stamp, payload, &client);
        let (hooks, hook_body) =
            self.hub
                .message_hooks(request.channel, &id, at_ms, Some(&client), payload);
        let message = StoredMessage {
            channel: Arc::from(request.channel),
            id,
            id_from_sender,
            at_ms,
            template,
            keep: config.retention(request.channel).count,
            hooks,
            hook_body,
            answer: Answer::Socket {
                outbox: self.outbox.clone(),
                reference: reference.map(ToOwned::to_owned),
            },
        };
        broker.publish_stored(message)?;
        Ok(Answered::Later)
    }

    /// A message that is not stored: to everyone as a volatile update, to authenticated
    /// members, or to one socket; this node's members first, then the other nodes'.
    async fn relay(
        &self,
        channel: &str,
        joined: &Joined,
        target: Target<'_>,
        frame: &Bytes,
    ) -> Result<(), Refusal> {
        let broker = self.hub.broker();
        match target {
            Target::Everyone => {
                // Cursor-style updates: never stored, not echoed to the sender, coalesced per
                // sender in each member's outbox.
                let counts = joined.channel.lock().deliver_volatile(&self.id, frame);
                self.hub.count_volatile(counts);
                let transient = Transient::Volatile {
                    sender: self.id,
                    frame,
                };
                // One that cannot reach other nodes is dropped, like any volatile update
                // under load.
                let _ = broker.publish_transient(channel, transient).await;
                Ok(())
            }
            Target::Authenticated => {
                let queued = joined.channel.lock().deliver(Target::Authenticated, frame);
                self.hub.metrics().deliveries.inc_by(queued as u64);
                broker
                    .publish_transient(channel, Transient::Audience(frame))
                    .await
            }
            Target::Socket(id) => {
                let socket = Uuid::try_parse(id).map_err(|_| unknown_socket(id, channel))?;
                if joined.channel.lock().deliver(target, frame) > 0 {
                    self.hub.metrics().deliveries.inc();
                    return Ok(());
                }
                let transient = Transient::Socket { socket, frame };
                broker.publish_transient(channel, transient).await
            }
        }
    }

    /// Asks the back end's publish gate, if there is one; the payload it wants sent instead,
    /// if it replaced it.
    async fn gate_publish(
        &self,
        request: &MessageRequest<'_>,
        client: &str,
    ) -> Result<Option<Box<RawValue>>, Refusal> {
        let Some(gates) = &self.hub.config().gates.0 else {
            return Ok(None);
        };
        let ask = PublishAsk {
            channel: request.channel,
            client,
            payload: request.payload,
            volatile: request.volatile,
            target: request.target,
        };
        match gates.publish(ask).await {
            GateDecision::Refuse(reason) => Err(Refusal::new(ErrorCode::Forbidden, reason)),
            GateDecision::Allow { payload, .. } => Ok(payload),
        }
    }

    /// An edit, retraction or reaction must name a message the channel holds; an edit or a
    /// retraction must come from that message's author.
    async fn check_relation(&self, channel: &str, relation: Relation<'_>) -> Result<(), Refusal> {
        let id = relation.target();
        let original = self
            .hub
            .broker()
            .reader()
            .message(channel, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::UnknownMessage,
                    format!("channel {channel:?} holds no message {id:?}"),
                )
            })?;
        if !relation.author_only() {
            return Ok(());
        }
        let original: Frame = serde_json::from_slice(&original.frame).map_err(internal)?;
        if original.client.as_ref().map(author_of) != Some(self.author()) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!(
                    "only the author of message {id:?} may {} it",
                    match relation {
                        Relation::Replaces(_) => "edit",
                        _ => "retract",
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Who this socket is as an author: its user id when signed in, else the socket itself.
    fn author(&self) -> (bool, String) {
        match self.identity.extras.get("id").and_then(Value::as_str) {
            Some(user) if self.identity.authenticated => (true, user.to_string()),
            _ => (false, self.id.to_string()),
        }
    }

    fn history(
        &self,
        request: HistoryRequest<'_>,
        reference: Option<&RawValue>,
    ) -> Result<Answered, Refusal> {
        let joined = self
            .joined
            .get(request.channel)
            .ok_or_else(|| not_subscribed(request.channel))?;
        authorize(
            &joined.channel.rule,
            self.identity.caller(),
            Access::ReadHistory,
            request.channel,
        )?;
        // No further than what was delivered live: a message stored but still on its way to
        // the members would otherwise reach this socket twice, in the page and then live.
        let delivered = joined.channel.lock().delivered_seq;
        let before = match request.before {
            Some(before) => before.min(delivered.saturating_add(1)),
            None => delivered.saturating_add(1),
        };
        let plan = Plan::History {
            channel: joined.channel.name.clone(),
            before: Some(before),
            limit: request.limit.unwrap_or(self.hub.config().history_on_join),
            reference: reference.map(ToOwned::to_owned),
        };
        if !self.outbox.plan(plan) {
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                "an earlier history request of this socket is still being answered: wait for it",
            ));
        }
        Ok(Answered::Later)
    }
}

/// Who wrote a message, as [`Session::author`] names its own socket.
fn author_of(client: &ClientInfo) -> (bool, String) {
    match client.extras.get("id").and_then(Value::as_str) {
        Some(user) if client.authenticated() => (true, user.to_string()),
        _ => (false, client.socket_id.clone()),
    }
}

/// The `presence_full` frame: this node's presence members and those on other nodes.
fn presence_full(locked: &Locked<'_>, elsewhere: Vec<String>) -> Bytes {
    let here = locked.presence_clients();
    let clients = here
        .iter()
        .map(|c| &**c)
        .chain(elsewhere.iter().map(String::as_str));
    encode::presence_full(&locked.channel_name(), clients)
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, joined) in std::mem::take(&mut self.joined) {
            self.remove_membership(&joined, LeaveReason::Disconnected);
        }
        self.hub.forget_socket(&self.id);
    }
}
