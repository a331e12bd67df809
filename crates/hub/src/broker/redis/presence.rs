//! Presence across nodes: `{prefix}:c:{channel}:members` holds every member (socket → node,
//! presence flag, client object), and `{prefix}:node:{id}` lists each node's memberships so
//! a dead node's members can be found and removed. Lists skip the members of nodes whose
//! heartbeat expired.

use switchboard_protocol::Action;
use uuid::Uuid;

use super::{topic, Link};
use crate::broker::PresenceMember;
use crate::encode;
use crate::history::StoreError;
use crate::time::now_ms;

/// A channel member as other nodes see it.
pub(crate) struct MemberRecord<'a> {
    pub(crate) node: &'a str,
    pub(crate) presence: bool,
    pub(crate) client: &'a str,
}

impl MemberRecord<'_> {
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}",
            self.node,
            u8::from(self.presence),
            self.client
        )
    }

    pub(crate) fn decode(text: &str) -> Option<MemberRecord<'_>> {
        let mut parts = text.splitn(3, '\t');
        Some(MemberRecord {
            node: parts.next()?,
            presence: parts.next()? == "1",
            client: parts.next()?,
        })
    }
}

/// The key of the set of live nodes, scored by when their heartbeat expires.
pub(crate) fn nodes_key(link: &Link) -> String {
    format!("{}:nodes", link.store.prefix())
}

/// The key of the set of a node's memberships (`socket\tchannel`).
pub(crate) fn node_key(link: &Link, node: &str) -> String {
    format!("{}:node:{node}", link.store.prefix())
}

/// Lists a member, announces a presence change to the other nodes (in the same round trip,
/// after listing it, so whoever hears the announcement and reads the list finds it) and
/// returns the presence members of the other live nodes. Blocks: run it off the async threads.
pub(crate) fn join(
    link: &Link,
    channel: &str,
    member: PresenceMember<'_>,
) -> Result<Vec<String>, StoreError> {
    let record = MemberRecord {
        node: &link.node,
        presence: member.presence,
        client: member.client,
    }
    .encode();
    let members = link.store.key(channel, "members");
    let announcement = match (member.was_listed, member.presence) {
        (false, true) => Some(Action::Join),
        (true, false) => Some(Action::Leave),
        _ => None,
    }
    .map(|action| {
        let frame = encode::presence_update(channel, action, member.client);
        topic::encode(b'p', Some(&link.node), Some(member.socket), &frame)
    });
    let (listed, live): (Vec<(String, String)>, Vec<String>) = link.store.with_conn(|conn| {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&members)
            .arg(member.socket.to_string())
            .arg(&record)
            .ignore()
            .cmd("SADD")
            .arg(node_key(link, &link.node))
            .arg(format!("{}\t{channel}", member.socket))
            .ignore();
        if let Some(message) = &announcement {
            pipe.cmd("PUBLISH")
                .arg(link.store.topic(channel))
                .arg(message)
                .ignore();
        }
        pipe.cmd("HGETALL")
            .arg(&members)
            .cmd("ZRANGEBYSCORE")
            .arg(nodes_key(link))
            .arg(now_ms())
            .arg("+inf")
            .query(conn)
    })?;
    Ok(listed
        .iter()
        .filter_map(|(_, record)| MemberRecord::decode(record))
        .filter(|m| m.presence && m.node != link.node && live.iter().any(|n| n == m.node))
        .map(|m| m.client.to_string())
        .collect())
}

/// Removes a member's record and tells the other nodes (queued; never waits).
pub(crate) fn leave(link: &Link, channel: &str, member: PresenceMember<'_>) {
    let socket = member.socket.to_string();
    let mut forget = redis::cmd("HDEL");
    forget.arg(link.store.key(channel, "members")).arg(&socket);
    link.commands.send(forget, socket.len() + channel.len());
    let mut unlist = redis::cmd("SREM");
    unlist
        .arg(node_key(link, &link.node))
        .arg(format!("{socket}\t{channel}"));
    link.commands.send(unlist, socket.len() + channel.len());
    if member.presence {
        announce(
            link,
            channel,
            member.socket,
            Action::Leave,
            member.client,
            true,
        );
    }
}

/// Publishes a presence change of `socket`; `from_here` when this node told its own members.
pub(crate) fn announce(
    link: &Link,
    channel: &str,
    socket: Uuid,
    action: Action,
    client: &str,
    from_here: bool,
) {
    let frame = encode::presence_update(channel, action, client);
    let origin = if from_here { link.node.as_str() } else { "-" };
    let message = topic::encode(b'p', Some(origin), Some(socket), &frame);
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(link.store.topic(channel)).arg(&message);
    link.commands.send(cmd, message.len());
}

/// Whether `socket` is a member of `channel` on any node. Blocks.
pub(crate) fn is_member(link: &Link, channel: &str, socket: Uuid) -> Result<bool, StoreError> {
    let members = link.store.key(channel, "members");
    link.store.with_conn(|conn| {
        redis::cmd("HEXISTS")
            .arg(&members)
            .arg(socket.to_string())
            .query(conn)
    })
}

#[cfg(test)]
mod tests {
    use super::MemberRecord;

    #[test]
    fn member_records_round_trip_with_tabs_in_the_client() {
        let record = MemberRecord {
            node: "n1",
            presence: true,
            client: "{\"extras\":{\"name\":\"a\\tb\"}}",
        }
        .encode();
        let back = MemberRecord::decode(&record).unwrap();
        assert_eq!((back.node, back.presence), ("n1", true));
        assert_eq!(back.client, "{\"extras\":{\"name\":\"a\\tb\"}}");
    }
}
