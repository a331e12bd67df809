//! What operators see and do across the cluster: every live channel and its members (read
//! from the member records, skipping dead nodes), and orders to a socket on another node,
//! carried by the cluster's control topic to the node that holds it.

use super::presence::{node_key, nodes_key, MemberRecord};
use super::Link;
use crate::broker::{live_channel, LiveChannel, MemberView};
use crate::history::StoreError;
use crate::registry::Order;
use crate::time::now_ms;
use uuid::Uuid;

/// The nodes whose heartbeat has not expired.
fn live_nodes(link: &Link) -> Result<Vec<String>, StoreError> {
    link.store.with_conn(|conn| {
        redis::cmd("ZRANGEBYSCORE")
            .arg(nodes_key(link))
            .arg(now_ms())
            .arg("+inf")
            .query(conn)
    })
}

/// Every key matching `pattern` (SCAN, so Redis is never blocked).
fn scan(link: &Link, pattern: &str) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = link.store.with_conn(|conn| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(conn)
        })?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The members of `channel` on live nodes. Blocks.
pub(crate) fn members(link: &Link, channel: &str) -> Result<Vec<MemberView>, StoreError> {
    let live = live_nodes(link)?;
    let records: Vec<(String, String)> = link.store.with_conn(|conn| {
        redis::cmd("HGETALL")
            .arg(link.store.key(channel, "members"))
            .query(conn)
    })?;
    Ok(records
        .iter()
        .filter_map(|(socket, record)| {
            let member = MemberRecord::decode(record)?;
            live.iter().any(|n| n == member.node).then(|| MemberView {
                socket: socket.clone(),
                presence: member.presence,
                client: member.client.to_string(),
                node: Some(member.node.to_string()),
            })
        })
        .collect())
}

/// Every channel with members on a live node. Blocks.
pub(crate) fn live_channels(link: &Link) -> Result<Vec<LiveChannel>, StoreError> {
    let prefix = format!("{}:c:", link.store.prefix());
    let mut channels = Vec::new();
    for key in scan(link, &format!("{prefix}*:members"))? {
        let Some(name) = key
            .strip_prefix(&prefix)
            .and_then(|k| k.strip_suffix(":members"))
        else {
            continue;
        };
        let members = members(link, name)?;
        let live = live_channel(name.to_string(), members.iter().map(|m| m.client.as_str()));
        if live.sockets > 0 {
            channels.push(live);
        }
    }
    Ok(channels)
}

/// The node that holds `socket`, if a live one does. Blocks.
fn node_of(link: &Link, socket: &Uuid) -> Result<Option<String>, StoreError> {
    let pattern = format!("{socket}\t*");
    for node in live_nodes(link)? {
        let (_, found): (u64, Vec<String>) = link.store.with_conn(|conn| {
            redis::cmd("SSCAN")
                .arg(node_key(link, &node))
                .arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(100_000)
                .query(conn)
        })?;
        if !found.is_empty() {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

/// The cluster's control topic, which every node listens to.
pub(crate) fn control_topic(link: &Link) -> String {
    format!("{}:control", link.store.prefix())
}

/// Sends `order` to the node that holds `socket`; false when no live node does. Blocks.
pub(crate) fn order_elsewhere(link: &Link, socket: Uuid, order: Order) -> Result<bool, StoreError> {
    let Some(node) = node_of(link, &socket)? else {
        return Ok(false);
    };
    let message = match &order {
        Order::Disconnect => format!("d {node} {socket}"),
        Order::Remove { channel } => format!("r {node} {socket} {channel}"),
    };
    link.store.with_conn(|conn| {
        redis::cmd("PUBLISH")
            .arg(control_topic(link))
            .arg(&message)
            .query::<u64>(conn)
    })?;
    Ok(true)
}

/// Carries out a control message meant for this node.
pub(crate) fn obey(link: &Link, message: &str) {
    let mut words = message.splitn(4, ' ');
    let (Some(kind), Some(node), Some(socket)) = (words.next(), words.next(), words.next()) else {
        return;
    };
    if node != link.node {
        return;
    }
    let Ok(socket) = Uuid::try_parse(socket) else {
        return;
    };
    let order = match (kind, words.next()) {
        ("d", _) => Order::Disconnect,
        ("r", Some(channel)) => Order::Remove {
            channel: channel.to_string(),
        },
        _ => return,
    };
    link.registry.order(&socket, order);
}
