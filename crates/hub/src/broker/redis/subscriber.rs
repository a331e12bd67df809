//! A node's subscriptions: one topic per channel active here, subscribed and unsubscribed in
//! the order the registry asks (so a channel that leaves and comes back is never left
//! unsubscribed), and the delivery of what arrives to this node's members. When the
//! connection drops it reconnects, resubscribes every active channel and catches each up from
//! its stream.

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_protocol::Target;
use tokio::sync::{mpsc, oneshot};

use super::topic::TopicMessage;
use super::Link;
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
                Some(decoded) => dispatch(&live, channel, decoded),
                None => tracing::debug!("ignored a malformed frame on {channel:?}"),
            }
        }
        let Some(live) = link.upgrade() else {
            return;
        };
        let _ = live.subscriptions.send(SubscriptionCommand::Lost);
        live.registry.metrics.redis_reconnects.inc();
        tracing::warn!("lost the Redis subscription connection; reconnecting");
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
/// (excluded); takes a new epoch if Redis lost the channel's history.
pub(crate) fn catch_up(link: &Link, channel: &Channel, before: u64) {
    let now = match link.store.open_channel(&channel.name, 0) {
        Ok(now) => now,
        Err(err) => {
            tracing::warn!("catching up {:?} from Redis: {err}", channel.name);
            return;
        }
    };
    let (epoch, from) = {
        let locked = channel.lock();
        (locked.epoch.clone(), locked.delivered_seq)
    };
    let Some(current) = now.epoch else {
        return;
    };
    let from = if epoch.as_deref() == Some(current.as_str()) {
        from
    } else {
        tracing::warn!(
            "channel {:?} has a new history epoch in Redis (its data was lost or cleared)",
            channel.name
        );
        0
    };
    // Up to where the stream stood now at most: the subscription is back, so anything newer
    // arrives live (and a channel busier than a page per round trip cannot keep this going).
    let before = before.min(now.last_seq.saturating_add(1));
    // A page at a time, so a long gap is never read into memory whole.
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
        let full = missed.len() == CATCH_UP_PAGE_MESSAGES;
        let mut locked = channel.lock();
        if after != from && locked.epoch.as_deref() != Some(current.as_str()) {
            // The history was reset between pages: what follows belongs to the new epoch,
            // which the next live message catches up on.
            return;
        }
        for frame in missed {
            locked.deliver_stored(frame.seq, &current, &frame.frame, Writes::Queued);
        }
        drop(locked);
        if !full {
            return;
        }
        after = last;
    }
}

/// Messages read from a channel's stream per page of a catch-up.
const CATCH_UP_PAGE_MESSAGES: usize = 256;

fn dispatch(link: &Arc<Link>, name: &str, message: TopicMessage) {
    // Audience, volatile and presence frames name their origin, which delivered them to its
    // own members already.
    if message.origin() == Some(link.node.as_str()) {
        return;
    }
    let Some(channel) = link.registry.get(name) else {
        if let TopicMessage::Stored { seq, epoch, frame } = message {
            // Kept for the members of a channel being activated, if it is.
            link.registry
                .deliver_stored(name, seq, &epoch, &frame, Writes::Queued);
        }
        return;
    };
    match message {
        TopicMessage::Stored { seq, epoch, frame } => {
            let behind = {
                let locked = channel.lock();
                locked.epoch.as_deref() == Some(epoch.as_str())
                    && seq > locked.delivered_seq.saturating_add(1)
            };
            if behind {
                // A dropped subscription lost some: read them before this one (on the Redis
                // thread, which keeps the order of what follows).
                catch_up(link, &channel, seq);
            }
            let started = std::time::Instant::now();
            let queued = channel
                .lock()
                .deliver_stored(seq, &epoch, &frame, Writes::Queued);
            let metrics = &link.registry.metrics;
            metrics
                .fanout_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.deliveries.inc_by(queued as u64);
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
}
