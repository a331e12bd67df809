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

use super::{ChannelHistory, HistoryStore, NewEntry, Retention, StoreError, StoredFrame};

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
/// the message and publishes it, unless a message with the same id is retained (then answers
/// with that one's seq). Returns `{seq, duplicate, epoch}`.
/// KEYS: meta, log, ids, channel set. ARGV: id, at, frame head, frame middle, frame tail,
/// keep, topic, proposed epoch, channel.
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
                pipe.cmd("EVALSHA")
                    .arg(&self.publish_sha)
                    .arg(4)
                    .arg(self.key(message.channel, "meta"))
                    .arg(self.key(message.channel, "log"))
                    .arg(self.key(message.channel, "ids"))
                    .arg(self.channels_key())
                    .arg(message.id)
                    .arg(message.at_ms)
                    .arg(message.head)
                    .arg(message.middle)
                    .arg(message.tail)
                    .arg(message.keep.max(1))
                    .arg(self.topic(message.channel))
                    .arg(message.epoch)
                    .arg(message.channel);
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

    fn append(&self, batch: &[NewEntry]) -> Result<(), StoreError> {
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
