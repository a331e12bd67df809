//! A node's subscriptions: one topic per channel active here, subscribed and unsubscribed in
//! the order the registry asks (so a channel that leaves and comes back is never left
//! unsubscribed), and the delivery of what arrives to this node's members. When the
//! connection drops it reconnects, resubscribes every active channel and catches each up from
//! its stream.

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_protocol::Target;
use tokio::sync::{mpsc, oneshot};

use super::topic::TopicMessage;
use super::Link;
use crate::broker::deliverer::{hand_off, Handoff};
use crate::broker::{Accepted, Answer};
use crate::channel::{Channel, Writes};
use crate::history::HistoryStore;

/// Asked of the subscription task.
pub(crate) enum SubscriptionCommand {
    /// Subscribe to a topic; answers once Redis confirmed (or why not).
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    /// Unsubscribe from a topic.
    Unsubscribe(String),
    /// A new connection, already subscribed to every active channel.
    Replace(PubSubSink),
    /// The connection dropped.
    Lost,
}

/// Carries out subscription commands in order.
pub(crate) async fn run_subscriptions(
    sink: PubSubSink,
    mut commands: mpsc::UnboundedReceiver<SubscriptionCommand>,
) {
    let mut sink = Some(sink);
    while let Some(command) = commands.recv().await {
        match command {
            SubscriptionCommand::Subscribe(topic, done) => {
                let outcome = match sink.as_mut() {
                    Some(live) => live.subscribe(topic).await.map_err(|err| err.to_string()),
                    None => Err("reconnecting".to_string()),
                };
                let _ = done.send(outcome);
            }
            SubscriptionCommand::Unsubscribe(topic) => {
                if let Some(live) = sink.as_mut() {
                    let _ = live.unsubscribe(topic).await;
                }
            }
            SubscriptionCommand::Replace(fresh) => sink = Some(fresh),
            SubscriptionCommand::Lost => sink = None,
        }
    }
}

/// Receives the node's subscriptions and delivers to local members; reconnects when the
/// connection drops.
pub(crate) async fn receive(link: Weak<Link>, mut stream: PubSubStream) {
    loop {
        let mut fell_behind = false;
        while let Some(message) = stream.next().await {
            let Some(live) = link.upgrade() else {
                return;
            };
            let topic = message.get_channel_name();
            if topic == super::admin::control_topic(&live) {
                if let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) {
                    super::admin::obey(&live, text);
                }
                continue;
            }
            let Some(channel) = live.store.channel_of(topic) else {
                continue;
            };
            let payload = bytes::Bytes::from(message.get_payload_bytes().to_vec());
            match TopicMessage::decode(payload) {
                Some(decoded) => {
                    if !dispatch(&live, channel, decoded).await {
                        fell_behind = true;
                        break;
                    }
                }
                None => tracing::debug!("ignored a malformed frame on {channel:?}"),
            }
        }
        // What the connection still holds goes with it; the streams have all of it.
        drop(stream);
        let Some(live) = link.upgrade() else {
            return;
        };
        let _ = live.subscriptions.send(SubscriptionCommand::Lost);
        live.registry.metrics.redis_reconnects.inc();
        if fell_behind {
            tracing::warn!(
                "this node delivers slower than Redis sends (its deliverer was {} s behind); \
                 dropping the subscription connection to catch up from the channels' streams",
                HAND_OVER_LIMIT.as_secs()
            );
        } else {
            tracing::warn!("lost the Redis subscription connection; reconnecting");
        }
        let client = live.store.client().clone();
        drop(live);
        let mut backoff = Duration::from_millis(100);
        stream = loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let Some(live) = link.upgrade() else {
                return;
            };
            let Ok(pubsub) = client.get_async_pubsub().await else {
                continue;
            };
            let (mut sink, stream) = pubsub.split();
            let active = live.registry.all();
            let mut topics: Vec<String> =
                active.iter().map(|c| live.store.topic(&c.name)).collect();
            topics.push(super::admin::control_topic(&live));
            if !topics.is_empty() && sink.subscribe(topics).await.is_err() {
                continue;
            }
            let _ = live.subscriptions.send(SubscriptionCommand::Replace(sink));
            let caught_up = live.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for channel in &active {
                    catch_up(&caught_up, channel, u64::MAX);
                }
            })
            .await;
            tracing::info!(
                "Redis subscription back; {} channels caught up",
                live.registry.len()
            );
            break stream;
        };
    }
}

/// Delivers from the stream whatever this node missed of `channel`, up to `before`
/// (excluded); takes a new epoch if Redis lost the channel's history. Blocking: it reads from
/// Redis, and waits while the deliverer is too far behind.
pub(crate) fn catch_up(link: &Link, channel: &Channel, before: u64) {
    let now = match link.store.open_channel(&channel.name, 0) {
        Ok(now) => now,
        Err(err) => {
            tracing::warn!("catching up {:?} from Redis: {err}", channel.name);
            return;
        }
    };
    let Some(current) = now.epoch else {
        return;
    };
    let current: Arc<str> = Arc::from(current);
    let reached = channel.lock().reached(&current);
    let from = reached.unwrap_or_else(|| {
        if channel.lock().epoch.is_some() {
            tracing::warn!(
                "channel {:?} has a new history epoch in Redis (its data was lost or cleared)",
                channel.name
            );
        }
        0
    });
    // Up to where the stream stood now at most: the subscription is back, so anything newer
    // arrives live (and a channel busier than a page per round trip cannot keep this going).
    let before = before.min(now.last_seq.saturating_add(1));
    // A page at a time, so a long gap is never read into memory whole, and each page is
    // delivered in turns like any other messages.
    let mut after = from;
    while before > after.saturating_add(1) {
        let page = link.store.range(
            &channel.name,
            after,
            before.saturating_sub(1),
            CATCH_UP_PAGE_MESSAGES,
        );
        let missed = match page {
            Ok(missed) => missed,
            Err(err) => {
                tracing::warn!("catching up {:?} from Redis: {err}", channel.name);
                return;
            }
        };
        let Some(last) = missed
            .last()
            .map(|frame| frame.seq)
            .filter(|&last| last > after)
        else {
            return;
        };
        // Read after the page: if the history was reset before the page was read, the epoch
        // is no longer this one, and what the page holds belongs to the new epoch (which the
        // next live message catches up on).
        match link.store.open_channel(&channel.name, 0) {
            Ok(still) if still.epoch.as_deref() == Some(&*current) => {}
            Ok(_) => return,
            Err(err) => {
                tracing::warn!("catching up {:?} from Redis: {err}", channel.name);
                return;
            }
        }
        let full = missed.len() == CATCH_UP_PAGE_MESSAGES;
        let metrics = &link.registry.metrics;
        metrics.redis_caught_up.inc_by(missed.len() as u64);
        let frames = missed.into_iter().map(|frame| (frame.seq, frame.frame));
        let handoffs = handoffs(&channel.name, &current, frames);
        match &link.deliverer {
            Some(deliverer) => deliverer.hand_over(handoffs),
            None => hand_off(&link.registry, handoffs, Writes::Queued),
        }
        channel.lock().handed(&current, last);
        if !full {
            return;
        }
        after = last;
    }
}

/// Messages read from a channel's stream per page of a catch-up.
const CATCH_UP_PAGE_MESSAGES: usize = 256;

/// Stored messages of `channel` received from Redis, ready for the deliverer: accepted (and
/// answered) by whichever node took them.
fn handoffs(
    channel: &Arc<str>,
    epoch: &Arc<str>,
    frames: impl IntoIterator<Item = (u64, Bytes)>,
) -> Vec<Handoff> {
    frames
        .into_iter()
        .map(|(seq, frame)| Handoff {
            channel: channel.clone(),
            stored: Some((seq, epoch.clone(), frame)),
            answer: Answer::Elsewhere,
            outcome: Ok(Accepted { seq, resend: false }),
        })
        .collect()
}

/// Longest a received message waits for room in the deliverer. Meanwhile the subscription's
/// connection keeps reading what Redis sends into memory; past this the node lets the
/// connection go instead, and catches up from the streams a page at a time.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(2);

/// Hands a stored message on to be delivered to this node's members: to the deliverer on the
/// node's runtime, which delivers in turns (waiting, without holding up this thread's other
/// tasks, while it is too far behind), or straight when there is none; then notes it handed,
/// on `channel` when it is active here, else in the registry (for a channel being activated).
/// False when the deliverer had no room for it within [`HAND_OVER_LIMIT`]: it was not handed.
async fn hand_on(
    link: &Link,
    name: &str,
    channel: Option<&Channel>,
    epoch: &Arc<str>,
    seq: u64,
    frame: Bytes,
) -> bool {
    let channel_name = channel.map_or_else(|| Arc::from(name), |active| active.name.clone());
    let handoffs = handoffs(&channel_name, epoch, [(seq, frame)]);
    match &link.deliverer {
        Some(deliverer) => {
            let handing = deliverer.hand_over_async(handoffs);
            if tokio::time::timeout(HAND_OVER_LIMIT, handing)
                .await
                .is_err()
            {
                return false;
            }
        }
        None => hand_off(&link.registry, handoffs, Writes::Queued),
    }
    match channel {
        Some(active) => active.lock().handed(epoch, seq),
        None => link.registry.handed(name, epoch, seq),
    }
    true
}

/// Delivers what the subscription received; false when this node fell too far behind to take
/// it (see [`hand_on`]).
async fn dispatch(link: &Arc<Link>, name: &str, message: TopicMessage) -> bool {
    // Audience, volatile and presence frames name their origin, which delivered them to its
    // own members already.
    if message.origin() == Some(link.node.as_str()) {
        return true;
    }
    let Some(channel) = link.registry.get(name) else {
        if let TopicMessage::Stored { seq, epoch, frame } = message {
            // Kept for the members of a channel being activated, if it is.
            return hand_on(link, name, None, &Arc::from(epoch), seq, frame).await;
        }
        return true;
    };
    match message {
        TopicMessage::Stored { seq, epoch, frame } => {
            let epoch: Arc<str> = Arc::from(epoch);
            let reached = channel.lock().reached(&epoch);
            if reached.is_some_and(|reached| seq > reached.saturating_add(1)) {
                // A dropped subscription lost some: read them before this one. Nothing else
                // is received meanwhile, which keeps the order of what follows; the reads
                // block, so they run off this thread, whose other tasks go on.
                let (link, channel) = (link.clone(), channel.clone());
                let _ = tokio::task::spawn_blocking(move || catch_up(&link, &channel, seq)).await;
            }
            return hand_on(link, name, Some(&channel), &epoch, seq, frame).await;
        }
        TopicMessage::Audience { frame, .. } => {
            let queued = channel.lock().deliver(Target::Authenticated, &frame);
            link.registry.metrics.deliveries.inc_by(queued as u64);
        }
        TopicMessage::Socket { socket, frame } => {
            let socket = socket.to_string();
            let queued = channel.lock().deliver(Target::Socket(&socket), &frame);
            link.registry.metrics.deliveries.inc_by(queued as u64);
        }
        TopicMessage::Volatile { sender, frame, .. } => {
            let counts = channel.lock().deliver_volatile(&sender, &frame);
            link.registry.metrics.count_volatile(counts);
        }
        TopicMessage::Presence { socket, frame, .. } => {
            channel.lock().announce_frame(&socket, &frame);
        }
    }
    true
}
