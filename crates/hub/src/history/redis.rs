//! History in Redis: one stream per channel, so several nodes share one history.
//!
//! Keys, under a prefix (default `switchboard`) so several deployments can share a Redis:
//! - `{prefix}:c:{channel}:meta` — hash: `seq` (the last seq handed out) and `epoch`;
//! - `{prefix}:c:{channel}:log` — stream: one entry per message, entry id `{seq}-0`, fields
//!   `f` (the frame), `id` (the message id) and `at` (accepted at, ms since the Unix epoch);
//! - `{prefix}:c:{channel}:ids` — sorted set of the ids of retained messages, scored by seq,
//!   so a resend is recognised by every node;
//! - `{prefix}:channels` — set of channel names, walked by trimming.
//!
//! Entry ids are the seq itself, so a resume is one `XRANGE` and paging one `XREVRANGE`.
//! On a cluster the seq is handed out by a Lua script that also stores and publishes the
//! message (see [`RedisHistory::publish_batch`]): one atomic step, so every node sees a
//! channel's messages in seq order and no seq is ever used twice.

use bytes::Bytes;
use redis::{Connection, RedisResult, Value};
use std::sync::Mutex;
use std::time::Duration;

use super::{
    ChannelHistory, ChannelStats, HistoryStore, HookWrites, NewEntry, Retention, StoreError,
    StoredFrame,
};
use crate::hooks::{EventType, HookOutbox, OutboxEvent, OutboxStats, PendingEvent};

/// Stores entries whose seq the caller chose, all or none (the [`HistoryStore`] contract).
/// KEYS: per entry meta, log, ids, then the channel set. ARGV: per entry seq, id, at, frame,
/// epoch, channel.
const APPEND: &str = r"
local last = {}
local n = (#KEYS - 1) / 3
for i = 1, n do
  local meta = KEYS[i * 3 - 2]
  local seq = tonumber(ARGV[i * 6 - 5])
  local current = last[meta] or tonumber(redis.call('HGET', meta, 'seq') or '0')
  if seq <= current or redis.call('ZSCORE', KEYS[i * 3], ARGV[i * 6 - 4]) then
    return redis.error_reply('seq ' .. seq .. ' is already stored in ' .. meta)
  end
  last[meta] = seq
end
for i = 1, n do
  local seq = ARGV[i * 6 - 5]
  redis.call('HSETNX', KEYS[i * 3 - 2], 'epoch', ARGV[i * 6 - 1])
  redis.call('XADD', KEYS[i * 3 - 1], seq .. '-0', 'f', ARGV[i * 6 - 2], 'id', ARGV[i * 6 - 4],
    'at', ARGV[i * 6 - 3])
  redis.call('ZADD', KEYS[i * 3], seq, ARGV[i * 6 - 4])
  redis.call('SADD', KEYS[#KEYS], ARGV[i * 6])
end
for meta, seq in pairs(last) do
  redis.call('HSET', meta, 'seq', seq)
end
return n
";

/// Takes the channel's next seq (and its epoch, recording `ARGV[8]` if it has none), stores
/// the message, publishes it and records its webhook events, unless a message with the same id
/// is retained (then answers with that one's seq). Returns `{seq, duplicate, epoch}`.
/// KEYS: meta, log, ids, channel set, then the outboxes of the endpoints that want it.
/// ARGV: id, at, frame head, frame middle, frame tail, keep, topic, proposed epoch, channel,
/// event head, event middle, event tail.
const PUBLISH: &str = r"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[8])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local known = redis.call('ZSCORE', KEYS[3], ARGV[1])
if known then
  return {tonumber(known), 1, epoch}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[3] .. seq .. ARGV[4] .. epoch .. ARGV[5]
local keep = tonumber(ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, seq .. '-0', 'f', frame, 'id', ARGV[1],
  'at', ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
if seq > keep then
  -- The stream trims approximately: forget exactly the ids it no longer holds.
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if first then
    local oldest = tonumber(string.match(first[1], '^(%d+)'))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
  end
end
redis.call('SADD', KEYS[4], ARGV[9])
redis.call('PUBLISH', ARGV[7], 'm ' .. seq .. ' ' .. epoch .. ' ' .. frame)
-- Webhook events of the message, in the same step: KEYS[5..] are the endpoints' outboxes.
if #KEYS > 4 then
  local body = ARGV[10] .. seq .. ARGV[11] .. epoch .. ARGV[12]
  for i = 5, #KEYS do
    redis.call('XADD', KEYS[i], '*', 'id', 'msg_' .. ARGV[9] .. '_' .. epoch .. '_' .. seq, 'channel', ARGV[9],
      'kind', 'message.stored', 'body', body, 'created', ARGV[2])
  end
end
return {seq, 0, epoch}
";

/// Forgets a channel whose stream is empty (trimmed to nothing): its next message starts a new
/// epoch. KEYS: meta, log, ids, channel set. ARGV: channel.
const FORGET_IF_EMPTY: &str = r"
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('SREM', KEYS[4], ARGV[1])
  return 1
end
return 0
";

/// A message for [`RedisHistory::publish_batch`]: its frame split around the seq and the
/// epoch, which Redis splices in.
pub(crate) struct Publish<'a> {
    pub(crate) channel: &'a str,
    pub(crate) id: &'a str,
    pub(crate) at_ms: u64,
    /// The frame up to its seq digits.
    pub(crate) head: &'a [u8],
    /// The frame between the seq and the epoch.
    pub(crate) middle: &'a [u8],
    /// The frame after the epoch.
    pub(crate) tail: &'a [u8],
    /// Messages the channel keeps.
    pub(crate) keep: u64,
    /// The epoch recorded if the channel has none yet.
    pub(crate) epoch: &'a str,
    /// The endpoints that want its webhook event, and the event's body split like the frame.
    pub(crate) hooks: &'a [std::sync::Arc<str>],
    pub(crate) hook_body: Option<&'a crate::encode::StoredTemplate>,
}

/// What Redis answered for one published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The message's seq (the original one for a resend).
    pub(crate) seq: u64,
    /// The id was already stored: a resend, not stored or published again.
    pub(crate) duplicate: bool,
    /// The channel's epoch.
    pub(crate) epoch: String,
}

/// History kept in Redis streams, shared by every node that uses the same Redis and prefix.
pub struct RedisHistory {
    client: redis::Client,
    /// The URL without its password, for messages.
    shown: String,
    prefix: String,
    idle: Mutex<Vec<Connection>>,
    append_sha: String,
    publish_sha: String,
    forget_sha: String,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisHistory({}, prefix {})", self.shown, self.prefix)
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl RedisHistory {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`) and checks it answers.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let shown = hide_password(url);
        let client = redis::Client::open(url)
            .map_err(|err| StoreError(format!("invalid Redis URL {shown}: {err}")))?;
        let store = Self {
            client,
            shown,
            prefix: prefix.to_string(),
            idle: Mutex::new(Vec::new()),
            append_sha: redis::Script::new(APPEND).get_hash().to_string(),
            publish_sha: redis::Script::new(PUBLISH).get_hash().to_string(),
            forget_sha: redis::Script::new(FORGET_IF_EMPTY).get_hash().to_string(),
        };
        store.with_conn(|conn| redis::cmd("PING").query::<String>(conn))?;
        Ok(store)
    }

    /// `url` with its password hidden, for messages and logs.
    pub fn shown_url(url: &str) -> String {
        hide_password(url)
    }

    /// The Redis URL, password hidden.
    pub fn url(&self) -> &str {
        &self.shown
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn key(&self, channel: &str, part: &str) -> String {
        format!("{}:c:{channel}:{part}", self.prefix)
    }

    /// The set of every channel with stored messages, walked by trimming.
    fn channels_key(&self) -> String {
        format!("{}:channels", self.prefix)
    }

    /// An endpoint's outbox: a stream of events waiting to be delivered.
    pub(crate) fn outbox_key(&self, endpoint: &str) -> String {
        format!("{}:hooks:{endpoint}", self.prefix)
    }

    /// Commands that add `events` to their endpoints' outboxes.
    pub(crate) fn record_commands(&self, events: &[OutboxEvent]) -> Vec<redis::Cmd> {
        events
            .iter()
            .map(|event| {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(self.outbox_key(&event.endpoint))
                    .arg("*")
                    .arg("id")
                    .arg(&event.id)
                    .arg("channel")
                    .arg(&event.channel)
                    .arg("kind")
                    .arg(event.kind.as_str())
                    .arg("body")
                    .arg(&event.body[..])
                    .arg("created")
                    .arg(event.created_ms);
                cmd
            })
            .collect()
    }

    /// The pub/sub topic of a channel.
    pub(crate) fn topic(&self, channel: &str) -> String {
        format!("{}:t:{channel}", self.prefix)
    }

    /// The channel a topic belongs to.
    pub(crate) fn channel_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(&self.prefix)?.strip_prefix(":t:")
    }

    /// Runs `work` on an idle connection (or a new one); a connection that failed is dropped
    /// and the work retried once on a fresh one, so a restarted Redis is picked up again.
    pub(crate) fn with_conn<T>(
        &self,
        mut work: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut last_error = None;
        for _ in 0..2 {
            let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(conn) => {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
                        conn
                    }
                    Err(err) => {
                        last_error = Some(err);
                        continue;
                    }
                },
            };
            match work(&mut conn) {
                Ok(value) => {
                    self.idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(conn);
                    return Ok(value);
                }
                Err(err) if err.is_unrecoverable_error() || err.is_io_error() => {
                    last_error = Some(err);
                }
                Err(err) => {
                    self.idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(conn);
                    return Err(self.failed(&err));
                }
            }
        }
        let err = last_error.map_or_else(|| "no connection".to_string(), |e| e.to_string());
        Err(StoreError(format!(
            "Redis at {} is unreachable: {err} (is redis-server running?)",
            self.shown
        )))
    }

    fn failed(&self, err: &redis::RedisError) -> StoreError {
        StoreError(format!("Redis at {}: {err}", self.shown))
    }

    /// Runs a loaded script, loading it first when Redis does not know it (a restarted Redis
    /// forgets scripts).
    fn eval<T: redis::FromRedisValue>(
        conn: &mut Connection,
        source: &str,
        sha: &str,
        keys: &[String],
        args: &[&[u8]],
    ) -> RedisResult<T> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
        match cmd.query(conn) {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(source)
                    .query::<String>(conn)?;
                cmd.query(conn)
            }
            other => other,
        }
    }

    /// Stores and publishes messages, each given its seq (and its channel's epoch) by Redis;
    /// one round trip for the batch.
    pub(crate) fn publish_batch(
        &self,
        batch: &[Publish<'_>],
    ) -> Result<Vec<Published>, StoreError> {
        self.with_conn(|conn| {
            let mut pipe = redis::pipe();
            for message in batch {
                let hooks = match message.hook_body {
                    Some(_) => message.hooks,
                    None => &[],
                };
                pipe.cmd("EVALSHA")
                    .arg(&self.publish_sha)
                    .arg(4 + hooks.len())
                    .arg(self.key(message.channel, "meta"))
                    .arg(self.key(message.channel, "log"))
                    .arg(self.key(message.channel, "ids"))
                    .arg(self.channels_key());
                for endpoint in hooks {
                    pipe.arg(self.outbox_key(endpoint));
                }
                pipe.arg(message.id)
                    .arg(message.at_ms)
                    .arg(message.head)
                    .arg(message.middle)
                    .arg(message.tail)
                    .arg(message.keep.max(1))
                    .arg(self.topic(message.channel))
                    .arg(message.epoch)
                    .arg(message.channel);
                if let Some(body) = message.hook_body {
                    pipe.arg(body.head()).arg(body.middle()).arg(body.tail());
                }
            }
            match pipe.query::<Vec<(u64, u64, String)>>(conn) {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(PUBLISH)
                        .query::<String>(conn)?;
                    pipe.query::<Vec<(u64, u64, String)>>(conn)
                }
                other => other,
            }
        })
        .map(|answers| {
            answers
                .into_iter()
                .map(|(seq, duplicate, epoch)| Published {
                    seq,
                    duplicate: duplicate == 1,
                    epoch,
                })
                .collect()
        })
    }

    fn parse_entries(value: Value) -> Vec<StoredFrame> {
        // [[id, [field, value, ...]], ...]
        let Value::Array(entries) = value else {
            return Vec::new();
        };
        let mut frames = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop();
            let id = parts.pop();
            let seq = match id {
                Some(Value::BulkString(id)) => std::str::from_utf8(&id)
                    .ok()
                    .and_then(|id| id.split('-').next()?.parse::<u64>().ok()),
                _ => None,
            };
            let Some(seq) = seq else { continue };
            let Some(Value::Array(fields)) = fields else {
                continue;
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                if let (Value::BulkString(name), Value::BulkString(value)) = (name, value) {
                    if name == b"f" {
                        frames.push(StoredFrame {
                            seq,
                            frame: Bytes::from(value),
                        });
                        break;
                    }
                }
            }
        }
        frames
    }

    /// Drops entries of `channel` older than `cutoff_ms`; returns how many.
    fn trim_by_age(
        &self,
        conn: &mut Connection,
        channel: &str,
        cutoff_ms: u64,
    ) -> RedisResult<u64> {
        let log = self.key(channel, "log");
        let mut first_kept: Option<String> = None;
        let mut start = "-".to_string();
        'pages: loop {
            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&log)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(200)
                .query(conn)?;
            if page.is_empty() {
                break;
            }
            for (id, fields) in &page {
                let at = fields
                    .iter()
                    .find(|(name, _)| name == "at")
                    .and_then(|(_, value)| value.parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                if at >= cutoff_ms {
                    first_kept = Some(id.clone());
                    break 'pages;
                }
            }
            let last = &page[page.len() - 1].0;
            start = format!("({last}");
        }
        match first_kept {
            Some(id) => redis::cmd("XTRIM")
                .arg(&log)
                .arg("MINID")
                .arg(id)
                .query(conn),
            // Everything is too old.
            None => redis::cmd("XTRIM")
                .arg(&log)
                .arg("MAXLEN")
                .arg(0)
                .query(conn),
        }
    }
}

impl HistoryStore for RedisHistory {
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError> {
        let meta = self.key(channel, "meta");
        let asked = recent_ids.saturating_add(1).min(i64::MAX as usize) as i64;
        let (epoch, seq, mut ids): (Option<String>, Option<u64>, Vec<(String, u64)>) = self
            .with_conn(|conn| {
                redis::pipe()
                    .cmd("HGET")
                    .arg(&meta)
                    .arg("epoch")
                    .cmd("HGET")
                    .arg(&meta)
                    .arg("seq")
                    .cmd("ZRANGE")
                    .arg(self.key(channel, "ids"))
                    .arg(-asked)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(conn)
            })?;
        let more_ids = ids.len() > recent_ids;
        if more_ids {
            ids.remove(0);
        }
        Ok(ChannelHistory {
            last_seq: if epoch.is_some() { seq.unwrap_or(0) } else { 0 },
            epoch,
            recent_ids: ids,
            more_ids,
        })
    }

    fn append(&self, batch: &[NewEntry], hooks: &HookWrites) -> Result<(), StoreError> {
        if !hooks.events.is_empty() {
            let commands = self.record_commands(&hooks.events);
            self.with_conn(|conn| {
                let mut pipe = redis::pipe();
                for cmd in &commands {
                    pipe.add_command(cmd.clone()).ignore();
                }
                pipe.query::<()>(conn)
            })?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(batch.len() * 3 + 1);
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(batch.len() * 6);
        for entry in batch {
            keys.push(self.key(&entry.channel, "meta"));
            keys.push(self.key(&entry.channel, "log"));
            keys.push(self.key(&entry.channel, "ids"));
            args.push(entry.seq.to_string().into_bytes());
            args.push(entry.id.clone().into_bytes());
            args.push(entry.at_ms.to_string().into_bytes());
            args.push(entry.frame.to_vec());
            args.push(entry.epoch.clone().into_bytes());
            args.push(entry.channel.clone().into_bytes());
        }
        keys.push(self.channels_key());
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.with_conn(|conn| Self::eval::<u64>(conn, APPEND, &self.append_sha, &keys, &args))?;
        Ok(())
    }

    fn seq_of(&self, channel: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let ids = self.key(channel, "ids");
        self.with_conn(|conn| {
            redis::cmd("ZSCORE")
                .arg(&ids)
                .arg(id)
                .query::<Option<u64>>(conn)
        })
    }

    fn range(
        &self,
        channel: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        if up_to <= after || limit == 0 {
            return Ok(Vec::new());
        }
        let log = self.key(channel, "log");
        let end = if up_to == u64::MAX {
            "+".to_string()
        } else {
            up_to.to_string()
        };
        let value = self.with_conn(|conn| {
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&log).arg(format!("({after}-0")).arg(&end);
            if limit < usize::MAX {
                cmd.arg("COUNT").arg(limit.min(i64::MAX as usize));
            }
            cmd.query::<Value>(conn)
        })?;
        Ok(Self::parse_entries(value))
    }

    fn latest(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let end = match before {
            Some(0 | 1) => return Ok(Vec::new()),
            Some(before) => (before - 1).to_string(),
            None => "+".to_string(),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let log = self.key(channel, "log");
        let value = self.with_conn(|conn| {
            redis::cmd("XREVRANGE")
                .arg(&log)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(limit.min(i64::MAX as usize))
                .query::<Value>(conn)
        })?;
        let mut frames = Self::parse_entries(value);
        frames.reverse();
        Ok(frames)
    }

    fn trim(&self, retention: &dyn Fn(&str) -> Retention, now_ms: u64) -> Result<u64, StoreError> {
        let channels: Vec<String> =
            self.with_conn(|conn| redis::cmd("SMEMBERS").arg(self.channels_key()).query(conn))?;
        let mut dropped = 0;
        for channel in channels {
            let keep = retention(&channel);
            let cutoff = now_ms.saturating_sub(keep.max_age.as_millis() as u64);
            dropped += self.with_conn(|conn| {
                let log = self.key(&channel, "log");
                let by_count: u64 = redis::cmd("XTRIM")
                    .arg(&log)
                    .arg("MAXLEN")
                    .arg(keep.count)
                    .query(conn)?;
                let by_age = self.trim_by_age(conn, &channel, cutoff)?;
                // Forget the ids of messages no longer kept.
                let first: Vec<(String, Value)> = redis::cmd("XRANGE")
                    .arg(&log)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query(conn)?;
                let ids = self.key(&channel, "ids");
                match first.first() {
                    Some((id, _)) => {
                        let seq: u64 = id
                            .split('-')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        redis::cmd("ZREMRANGEBYSCORE")
                            .arg(&ids)
                            .arg("-inf")
                            .arg(format!("({seq}"))
                            .query::<u64>(conn)?;
                    }
                    None => {
                        redis::cmd("DEL").arg(&ids).query::<u64>(conn)?;
                    }
                }
                Ok(by_count + by_age)
            })?;
            let keys = [
                self.key(&channel, "meta"),
                self.key(&channel, "log"),
                self.key(&channel, "ids"),
                self.channels_key(),
            ];
            self.with_conn(|conn| {
                Self::eval::<u64>(
                    conn,
                    FORGET_IF_EMPTY,
                    &self.forget_sha,
                    &keys,
                    &[channel.as_bytes()],
                )
            })?;
        }
        Ok(dropped)
    }

    fn channel_stats(&self, channel: &str, now_ms: u64) -> Result<ChannelStats, StoreError> {
        let log = self.key(channel, "log");
        let (seq, stored, newest): (Option<u64>, u64, Value) = self.with_conn(|conn| {
            redis::pipe()
                .cmd("HGET")
                .arg(self.key(channel, "meta"))
                .arg("seq")
                .cmd("XLEN")
                .arg(&log)
                .cmd("XREVRANGE")
                .arg(&log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1000)
                .query(conn)
        })?;
        let since = now_ms.saturating_sub(60_000);
        let last_minute = match newest {
            Value::Array(entries) => entries
                .iter()
                .filter(|entry| {
                    let Value::Array(parts) = entry else {
                        return false;
                    };
                    let Some(Value::Array(fields)) = parts.get(1) else {
                        return false;
                    };
                    fields.chunks(2).any(|pair| match pair {
                        [Value::BulkString(name), Value::BulkString(at)] if name == b"at" => {
                            std::str::from_utf8(at)
                                .ok()
                                .and_then(|at| at.parse::<u64>().ok())
                                .is_some_and(|at| at >= since)
                        }
                        _ => false,
                    })
                })
                .count() as u64,
            _ => 0,
        };
        Ok(ChannelStats {
            last_seq: seq.unwrap_or(0),
            stored,
            last_minute,
        })
    }

    fn clear(&self, channel: &str) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            redis::pipe()
                .cmd("DEL")
                .arg(self.key(channel, "meta"))
                .arg(self.key(channel, "log"))
                .arg(self.key(channel, "ids"))
                .ignore()
                .cmd("SREM")
                .arg(self.channels_key())
                .arg(channel)
                .ignore()
                .query::<()>(conn)
        })
    }
}

/// One outbox entry as `XRANGE` returns it.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

fn text(value: Option<&[u8]>) -> Option<String> {
    String::from_utf8(value?.to_vec()).ok()
}

impl RedisHistory {
    fn retry_key(&self, endpoint: &str) -> String {
        format!("{}:hooks:{endpoint}:retry", self.prefix)
    }

    fn dead_key(&self, endpoint: &str) -> String {
        format!("{}:hooks:{endpoint}:dead", self.prefix)
    }

    fn event_of(endpoint: &str, fields: &[(String, Vec<u8>)]) -> Option<OutboxEvent> {
        let body = Bytes::from(field(fields, "body")?.to_vec());
        Some(OutboxEvent {
            id: text(field(fields, "id"))?,
            endpoint: endpoint.to_string(),
            channel: text(field(fields, "channel"))?,
            kind: EventType::parse(&text(field(fields, "kind"))?)?,
            body,
            created_ms: text(field(fields, "created"))?.parse().ok()?,
            message_seq: None,
        })
    }
}

impl HookOutbox for RedisHistory {
    fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        let outbox = self.outbox_key(endpoint);
        let (entries, retries): (Vec<StreamEntry>, std::collections::HashMap<String, String>) =
            self.with_conn(|conn| {
                redis::pipe()
                    .cmd("XRANGE")
                    .arg(&outbox)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit.min(i64::MAX as usize))
                    .cmd("HGETALL")
                    .arg(self.retry_key(endpoint))
                    .query(conn)
            })?;
        Ok(entries
            .into_iter()
            .filter_map(|(key, fields)| {
                let event = Self::event_of(endpoint, &fields)?;
                let (attempts, next) = retries
                    .get(&key)
                    .and_then(|r| r.split_once(':'))
                    .and_then(|(a, n)| Some((a.parse().ok()?, n.parse().ok()?)))
                    .unwrap_or((0, 0));
                Some(PendingEvent {
                    key,
                    event,
                    attempts,
                    next_attempt_ms: next,
                })
            })
            .collect())
    }

    fn delivered_all(&self, endpoint: &str, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with_conn(|conn| {
            redis::pipe()
                .cmd("XDEL")
                .arg(self.outbox_key(endpoint))
                .arg(keys)
                .ignore()
                .cmd("HDEL")
                .arg(self.retry_key(endpoint))
                .arg(keys)
                .ignore()
                .query::<()>(conn)
        })
    }

    fn retry_later(
        &self,
        endpoint: &str,
        key: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            redis::cmd("HSET")
                .arg(self.retry_key(endpoint))
                .arg(key)
                .arg(format!("{attempts}:{next_attempt_ms}"))
                .query::<()>(conn)
        })
    }

    fn give_up(&self, endpoint: &str, key: &str) -> Result<(), StoreError> {
        let outbox = self.outbox_key(endpoint);
        let entries: Vec<StreamEntry> = self.with_conn(|conn| {
            redis::cmd("XRANGE")
                .arg(&outbox)
                .arg(key)
                .arg(key)
                .query(conn)
        })?;
        let Some((_, fields)) = entries.into_iter().next() else {
            return Ok(());
        };
        self.with_conn(|conn| {
            let mut add = redis::cmd("XADD");
            add.arg(self.dead_key(endpoint)).arg("*");
            for (name, value) in &fields {
                add.arg(name).arg(value);
            }
            redis::pipe()
                .atomic()
                .add_command(add)
                .ignore()
                .cmd("XDEL")
                .arg(&outbox)
                .arg(key)
                .ignore()
                .cmd("HDEL")
                .arg(self.retry_key(endpoint))
                .arg(key)
                .ignore()
                .query::<()>(conn)
        })
    }

    fn replay_dead(&self, endpoint: Option<&str>) -> Result<u64, StoreError> {
        let endpoints: Vec<String> = match endpoint {
            Some(endpoint) => vec![endpoint.to_string()],
            None => {
                let pattern = format!("{}:hooks:*:dead", self.prefix);
                let mut keys: Vec<String> = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, found): (u64, Vec<String>) = self.with_conn(|conn| {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(500)
                            .query(conn)
                    })?;
                    keys.extend(found);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                keys.iter()
                    .filter_map(|k| {
                        k.strip_prefix(&format!("{}:hooks:", self.prefix))?
                            .strip_suffix(":dead")
                            .map(str::to_string)
                    })
                    .collect()
            }
        };
        let mut replayed = 0;
        for endpoint in endpoints {
            let dead = self.dead_key(&endpoint);
            let entries: Vec<StreamEntry> = self.with_conn(|conn| {
                redis::cmd("XRANGE")
                    .arg(&dead)
                    .arg("-")
                    .arg("+")
                    .query(conn)
            })?;
            for (key, fields) in entries {
                self.with_conn(|conn| {
                    let mut add = redis::cmd("XADD");
                    add.arg(self.outbox_key(&endpoint)).arg("*");
                    for (name, value) in &fields {
                        add.arg(name).arg(value);
                    }
                    redis::pipe()
                        .atomic()
                        .add_command(add)
                        .ignore()
                        .cmd("XDEL")
                        .arg(&dead)
                        .arg(&key)
                        .ignore()
                        .query::<()>(conn)
                })?;
                replayed += 1;
            }
        }
        Ok(replayed)
    }

    fn outbox_stats(&self, endpoint: &str) -> Result<OutboxStats, StoreError> {
        let (pending, dead, first): (u64, u64, Vec<StreamEntry>) = self.with_conn(|conn| {
            redis::pipe()
                .cmd("XLEN")
                .arg(self.outbox_key(endpoint))
                .cmd("XLEN")
                .arg(self.dead_key(endpoint))
                .cmd("XRANGE")
                .arg(self.outbox_key(endpoint))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(conn)
        })?;
        let oldest_pending_ms = first
            .first()
            .and_then(|(_, fields)| text(field(fields, "created"))?.parse().ok());
        Ok(OutboxStats {
            pending,
            dead,
            oldest_pending_ms,
        })
    }

    fn take_lease(
        &self,
        endpoint: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        // Taken when free, renewed when already ours: one node delivers an endpoint at a time.
        let key = format!("{}:hooks:{endpoint}:lease", self.prefix);
        let ttl = ttl.as_millis().max(1) as u64;
        self.with_conn(|conn| {
            redis::Script::new(
                r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
            )
            .key(&key)
            .arg(holder)
            .arg(ttl)
            .invoke::<u64>(conn)
        })
        .map(|taken| taken == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::hide_password;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            hide_password("redis://app:s3cret@db:6379/0"),
            "redis://app:***@db:6379/0"
        );
        assert_eq!(
            hide_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(hide_password("redis://:pw@h"), "redis://:***@h");
    }
}
