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
use crate::hooks::{membership_event, EventType, LeaveReason};
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

/// Lists a member: its record, the announcement of a presence change (after the record, so
/// whoever hears it and reads the list finds the member), and — for a new membership — its
/// webhook events, `channel.occupied` first when no other live member is there, all in one
/// atomic step. Returns every member record and the live nodes.
/// KEYS: members, this node's set, nodes; then the outboxes for `member.joined` (ARGV[8] of
/// them), then those for `channel.occupied`.
/// ARGV: socket, record, entry, now, topic, announcement or '', new ('1'), joined outboxes,
/// joined id, joined body, occupied id, occupied body, channel.
const JOIN: &str = r"
local now = tonumber(ARGV[4])
local others = 0
if ARGV[7] == '1' then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] then
      local expires = redis.call('ZSCORE', KEYS[3], string.match(all[i + 1], '^([^\t]*)'))
      if expires and tonumber(expires) >= now then others = others + 1 end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
if ARGV[7] == '1' then
  local n = tonumber(ARGV[8])
  if others == 0 then
    for i = 4 + n, #KEYS do
      redis.call('XADD', KEYS[i], '*', 'id', ARGV[11], 'channel', ARGV[13],
        'kind', 'channel.occupied', 'body', ARGV[12], 'created', ARGV[4])
    end
  end
  for i = 4, 3 + n do
    redis.call('XADD', KEYS[i], '*', 'id', ARGV[9], 'channel', ARGV[13],
      'kind', 'member.joined', 'body', ARGV[10], 'created', ARGV[4])
  end
end
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf')}
";

/// Removes a member: its record, the announcement of its leave, and its webhook events —
/// `channel.vacated` after it when no live member is left — in one atomic step (once: a
/// member already removed is not announced or reported again).
/// KEYS: members, the member's node's set, nodes; then the outboxes for `member.left` (ARGV[6]
/// of them), then those for `channel.vacated`.
/// ARGV: socket, entry, now, topic, announcement or '', left outboxes, left id, left body,
/// vacated id, vacated body, channel.
const LEAVE: &str = r"
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if existed == 0 then return 0 end
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
local n = tonumber(ARGV[6])
for i = 4, 3 + n do
  redis.call('XADD', KEYS[i], '*', 'id', ARGV[7], 'channel', ARGV[11],
    'kind', 'member.left', 'body', ARGV[8], 'created', ARGV[3])
end
if #KEYS > 3 + n then
  local now = tonumber(ARGV[3])
  local others = 0
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local expires = redis.call('ZSCORE', KEYS[3], string.match(all[i + 1], '^([^\t]*)'))
    if expires and tonumber(expires) >= now then others = others + 1 end
  end
  if others == 0 then
    for i = 4 + n, #KEYS do
      redis.call('XADD', KEYS[i], '*', 'id', ARGV[9], 'channel', ARGV[11],
        'kind', 'channel.vacated', 'body', ARGV[10], 'created', ARGV[3])
    end
  end
end
return 1
";

/// A membership event's id and body (the same for every endpoint that wants it).
fn event_parts(
    kind: EventType,
    channel: &str,
    client: Option<&str>,
    reason: Option<LeaveReason>,
    now: u64,
) -> (String, Vec<u8>) {
    let event = membership_event("", kind, channel, client, reason, now);
    (event.id, event.body.to_vec())
}

/// Lists a member, announces a presence change to the other nodes and records its webhook
/// events (one atomic step), and returns the presence members of the other live nodes.
/// Blocks: run it off the async threads.
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
    let announcement = match (member.was_listed, member.presence) {
        (false, true) => Some(Action::Join),
        (true, false) => Some(Action::Leave),
        _ => None,
    }
    .map(|action| {
        let frame = encode::presence_update(channel, action, member.client);
        topic::encode(b'p', Some(&link.node), Some(member.socket), &frame)
    })
    .unwrap_or_default();
    let now = now_ms();
    let (joined, occupied) = if member.is_new {
        (
            link.routes.wanting(EventType::MemberJoined, channel),
            link.routes.wanting(EventType::ChannelOccupied, channel),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let (joined_id, joined_body) = event_parts(
        EventType::MemberJoined,
        channel,
        Some(member.client),
        None,
        now,
    );
    let (occupied_id, occupied_body) =
        event_parts(EventType::ChannelOccupied, channel, None, None, now);
    let join_script = redis::Script::new(JOIN);
    let mut script = join_script.prepare_invoke();
    script
        .key(link.store.key(channel, "members"))
        .key(node_key(link, &link.node))
        .key(nodes_key(link));
    for endpoint in joined.iter().chain(&occupied) {
        script.key(link.store.outbox_key(endpoint));
    }
    script
        .arg(member.socket.to_string())
        .arg(&record)
        .arg(format!("{}\t{channel}", member.socket))
        .arg(now)
        .arg(link.store.topic(channel))
        .arg(announcement)
        .arg(if member.is_new { "1" } else { "0" })
        .arg(joined.len())
        .arg(joined_id)
        .arg(joined_body)
        .arg(occupied_id)
        .arg(occupied_body)
        .arg(channel);
    let (listed, live): (Vec<String>, Vec<String>) =
        link.store.with_conn(|conn| script.invoke(conn))?;
    if !joined.is_empty() || !occupied.is_empty() {
        link.hooks_recorded.notify_one();
    }
    Ok(listed
        .chunks(2)
        .filter_map(|pair| MemberRecord::decode(pair.get(1)?))
        .filter(|m| m.presence && m.node != link.node && live.iter().any(|n| n == m.node))
        .map(|m| m.client.to_string())
        .collect())
}

/// The command that removes a member of `node` (see [`LEAVE`]); `announce_from` is the origin
/// of its presence announcement (`None`: not listed, no announcement).
pub(crate) fn leave_command(
    link: &Link,
    node: &str,
    channel: &str,
    socket: &str,
    client: &str,
    announce_from: Option<&str>,
    reason: LeaveReason,
) -> redis::Cmd {
    let now = now_ms();
    let announcement = announce_from
        .and_then(|origin| {
            let socket = Uuid::try_parse(socket).ok()?;
            let frame = encode::presence_update(channel, Action::Leave, client);
            Some(topic::encode(b'p', Some(origin), Some(socket), &frame))
        })
        .unwrap_or_default();
    let left = link.routes.wanting(EventType::MemberLeft, channel);
    let vacated = link.routes.wanting(EventType::ChannelVacated, channel);
    let (left_id, left_body) = event_parts(
        EventType::MemberLeft,
        channel,
        Some(client),
        Some(reason),
        now,
    );
    let (vacated_id, vacated_body) =
        event_parts(EventType::ChannelVacated, channel, None, None, now);
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(LEAVE)
        .arg(3 + left.len() + vacated.len())
        .arg(link.store.key(channel, "members"))
        .arg(node_key(link, node))
        .arg(nodes_key(link));
    for endpoint in left.iter().chain(&vacated) {
        cmd.arg(link.store.outbox_key(endpoint));
    }
    cmd.arg(socket)
        .arg(format!("{socket}\t{channel}"))
        .arg(now)
        .arg(link.store.topic(channel))
        .arg(announcement)
        .arg(left.len())
        .arg(left_id)
        .arg(left_body)
        .arg(vacated_id)
        .arg(vacated_body)
        .arg(channel);
    cmd
}

/// Removes a socket's membership, tells the other nodes and records the webhook events
/// (queued; never waits).
pub(crate) fn leave(link: &Link, channel: &str, member: PresenceMember<'_>, reason: LeaveReason) {
    let socket = member.socket.to_string();
    let origin = member.presence.then_some(link.node.as_str());
    let cmd = leave_command(
        link,
        &link.node,
        channel,
        &socket,
        member.client,
        origin,
        reason,
    );
    let size = member.client.len() * 3 + 1024;
    if !link.commands.send(cmd, size) {
        tracing::warn!("the leave of {socket} from {channel:?} could not be queued for Redis");
        link.lost_commands
            .store(true, std::sync::atomic::Ordering::Release);
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
