//! History in a SQLite file: the embedded default. WAL mode, one writer connection that commits
//! whole batches, and a reader connection so history reads do not wait for commits.
//!
//! `synchronous = FULL`: a batch is on disk before its senders get their ok, so an acknowledged
//! message survives the process being killed and the machine losing power.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{
    ChannelHistory, ChannelStats, HistoryStore, HookWrites, MemberChange, NewEntry, Orphan,
    Retention, StoreError, StoredFrame,
};
use crate::hooks::{EventType, HookOutbox, OutboxEvent, OutboxStats, PendingEvent};

/// Bumped when the schema changes; a file with another version is refused.
const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (channel, id);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (at_ms);
CREATE TABLE IF NOT EXISTS hook_outbox (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hook_outbox_waiting ON hook_outbox (endpoint, dead, key);
CREATE TABLE IF NOT EXISTS hook_members (
    channel TEXT NOT NULL,
    socket TEXT NOT NULL,
    client TEXT NOT NULL,
    PRIMARY KEY (channel, socket)
) WITHOUT ROWID;
";

/// Reader connections kept open: history reads run in parallel with each other and with
/// commits (WAL), each on a blocking thread of its own.
const READERS: usize = 4;

/// A SQLite history file.
pub struct SqliteHistory {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory")
            .field("path", &self.path)
            .finish()
    }
}

/// A failure to open or check the file, with what the operator should do.
fn open_failure(path: &Path, what: &str, err: rusqlite::Error) -> StoreError {
    StoreError(format!(
        "history database {}: {what}: {err}. Move the file aside or restore it from a backup, then start again",
        path.display()
    ))
}

/// Opens the writer connection: WAL, `synchronous = FULL`.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let fail = |what: &str, err| open_failure(path, what, err);
    let writer = Connection::open(path).map_err(|e| fail("cannot open", e))?;
    writer
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| fail("cannot read it as a SQLite database", e))?;
    writer
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
        .map_err(|e| fail("cannot configure", e))?;
    // Another process holding the file (a backup) makes a commit wait this long before it
    // fails and is retried; senders get no ok meanwhile.
    writer
        .busy_timeout(std::time::Duration::from_secs(1))
        .map_err(|e| fail("cannot configure", e))?;
    Ok(writer)
}

impl SqliteHistory {
    /// Opens (or creates) the history file at `path` and checks it. A file that is not a
    /// Switchboard history database, or is damaged, is refused: the server must not start
    /// empty over data it cannot read.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |what: &str, err| open_failure(path, what, err);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| {
                StoreError(format!(
                    "cannot create the folder {} for the history database: {err}",
                    dir.display()
                ))
            })?;
        }
        let writer = open_writer(path)?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| fail("integrity check failed", e))?;
        if check != "ok" {
            return Err(StoreError(format!(
                "history database {} is damaged ({check}). Move the file aside or restore it from a backup, then start again",
                path.display()
            )));
        }
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| fail("cannot create the schema", e))?;
        let version: Option<String> = writer
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| fail("cannot read the schema version", e))?;
        match version.as_deref() {
            None => {
                writer
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                        [SCHEMA_VERSION],
                    )
                    .map_err(|e| fail("cannot write the schema version", e))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError(format!(
                    "history database {} has schema version {other}; this server reads version {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        let readers = (0..READERS)
            .map(|_| {
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map(Mutex::new)
                    .map_err(|e| fail("cannot open a reader", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next_reader: Default::default(),
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reader: an idle one if there is one, else the next in turn.
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(idle) = reader.try_lock() {
                return idle;
            }
        }
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[turn % self.readers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

fn store_error(err: rusqlite::Error) -> StoreError {
    StoreError(format!("history database: {err}"))
}

fn frames(rows: Vec<(i64, Vec<u8>)>) -> Vec<StoredFrame> {
    rows.into_iter()
        .map(|(seq, frame)| StoredFrame {
            seq: seq as u64,
            frame: bytes::Bytes::from(frame),
        })
        .collect()
}

/// A seq as SQLite's signed integer; seqs beyond it cannot exist, so they compare as the
/// largest.
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A count as SQLite's signed integer.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl HistoryStore for SqliteHistory {
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError> {
        let db = self.reader();
        let existing: Option<(String, i64)> = db
            .prepare_cached("SELECT epoch, last_seq FROM channels WHERE name = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([channel], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(store_error)?;
        let Some((epoch, last_seq)) = existing else {
            return Ok(ChannelHistory {
                epoch: None,
                last_seq: 0,
                recent_ids: Vec::new(),
                more_ids: false,
            });
        };
        let mut statement = db
            .prepare_cached(
                "SELECT id, seq FROM messages WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(store_error)?;
        // One more than asked for tells whether the store holds older ids.
        let mut ids: Vec<(String, u64)> = statement
            .query_map(
                params![channel, sql_count(recent_ids).saturating_add(1)],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(store_error)?
            .collect::<Result<_, _>>()
            .map_err(store_error)?;
        let more_ids = ids.len() > recent_ids;
        ids.truncate(recent_ids);
        ids.reverse();
        Ok(ChannelHistory {
            epoch: Some(epoch),
            last_seq: last_seq as u64,
            recent_ids: ids,
            more_ids,
        })
    }

    fn append(&self, batch: &[NewEntry], hooks: &HookWrites) -> Result<(), StoreError> {
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        write_hooks(&tx, hooks)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO messages (channel, seq, id, at_ms, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(store_error)?;
            let mut advance = tx
                .prepare_cached(
                    "INSERT INTO channels (name, epoch, last_seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                )
                .map_err(store_error)?;
            for entry in batch {
                insert
                    .execute(params![
                        entry.channel,
                        sql_seq(entry.seq),
                        entry.id,
                        entry.at_ms as i64,
                        &entry.frame[..]
                    ])
                    .map_err(store_error)?;
                advance
                    .execute(params![entry.channel, entry.epoch, sql_seq(entry.seq)])
                    .map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
    }

    fn seq_of(&self, channel: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached("SELECT seq FROM messages WHERE channel = ?1 AND id = ?2")
            .map_err(store_error)?;
        statement
            .query_row(params![channel, id], |row| row.get::<_, i64>(0))
            .optional()
            .map(|seq| seq.map(|seq| seq as u64))
            .map_err(store_error)
    }

    fn range(
        &self,
        channel: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT seq, frame FROM messages WHERE channel = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(store_error)?;
        let rows = statement
            .query_map(
                params![channel, sql_seq(after), sql_seq(up_to), sql_count(limit)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(frames(rows))
    }

    fn latest(
        &self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let db = self.reader();
        let before = before.map_or(i64::MAX, sql_seq);
        let mut statement = db
            .prepare_cached(
                "SELECT seq, frame FROM messages WHERE channel = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(store_error)?;
        let mut rows = statement
            .query_map(params![channel, before, sql_count(limit)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        rows.reverse();
        Ok(frames(rows))
    }

    fn trim(&self, retention: &dyn Fn(&str) -> Retention, now_ms: u64) -> Result<u64, StoreError> {
        let db = self.writer();
        let channels: Vec<(String, i64)> = {
            let mut statement = db
                .prepare_cached("SELECT name, last_seq FROM channels")
                .map_err(store_error)?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(store_error)?
                .collect::<Result<_, _>>()
                .map_err(store_error)?;
            rows
        };
        let mut delete = db
            .prepare_cached("DELETE FROM messages WHERE channel = ?1 AND (seq <= ?2 OR at_ms < ?3)")
            .map_err(store_error)?;
        let mut dropped = 0;
        for (channel, last_seq) in channels {
            let retention = retention(&channel);
            let floor = last_seq.saturating_sub(sql_seq(retention.count));
            let oldest_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64) as i64;
            dropped += delete
                .execute(params![channel, floor, oldest_ms])
                .map_err(store_error)? as u64;
        }
        db.execute(
            "DELETE FROM channels WHERE NOT EXISTS (SELECT 1 FROM messages WHERE channel = name)",
            [],
        )
        .map_err(store_error)?;
        Ok(dropped)
    }

    fn clear(&self, channel: &str) -> Result<(), StoreError> {
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        tx.execute("DELETE FROM messages WHERE channel = ?1", [channel])
            .map_err(store_error)?;
        tx.execute("DELETE FROM channels WHERE name = ?1", [channel])
            .map_err(store_error)?;
        tx.commit().map_err(store_error)
    }

    fn recover(&self) -> Result<(), StoreError> {
        let fresh = open_writer(&self.path)?;
        *self.writer() = fresh;
        Ok(())
    }

    fn channel_stats(&self, channel: &str, now_ms: u64) -> Result<ChannelStats, StoreError> {
        let db = self.reader();
        let last_seq: Option<i64> = db
            .query_row(
                "SELECT last_seq FROM channels WHERE name = ?1",
                [channel],
                |row| row.get(0),
            )
            .optional()
            .map_err(store_error)?;
        let (stored, last_minute): (i64, i64) = db
            .query_row(
                "SELECT count(*), coalesce(sum(at_ms >= ?2), 0) FROM messages WHERE channel = ?1",
                params![channel, now_ms.saturating_sub(60_000) as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(store_error)?;
        Ok(ChannelStats {
            last_seq: last_seq.unwrap_or(0) as u64,
            stored: stored as u64,
            last_minute: last_minute as u64,
        })
    }

    fn orphaned_members(&self) -> Result<Vec<Orphan>, StoreError> {
        let db = self.writer();
        let mut statement = db
            .prepare_cached("SELECT channel, socket, client FROM hook_members")
            .map_err(store_error)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error);
        rows
    }
}

/// Writes webhook events and membership changes inside the batch's transaction.
fn write_hooks(tx: &rusqlite::Transaction<'_>, hooks: &HookWrites) -> Result<(), StoreError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO hook_outbox (endpoint, event_id, channel, kind, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(store_error)?;
    for event in &hooks.events {
        insert
            .execute(params![
                event.endpoint,
                event.id,
                event.channel,
                event.kind.as_str(),
                &event.body[..],
                event.created_ms as i64
            ])
            .map_err(store_error)?;
    }
    for change in &hooks.members {
        match change {
            MemberChange::Joined {
                channel,
                socket,
                client,
            } => tx.execute(
                "INSERT OR REPLACE INTO hook_members (channel, socket, client) VALUES (?1, ?2, ?3)",
                params![channel, socket, client],
            ),
            MemberChange::Left { channel, socket } => tx.execute(
                "DELETE FROM hook_members WHERE channel = ?1 AND socket = ?2",
                params![channel, socket],
            ),
        }
        .map_err(store_error)?;
    }
    Ok(())
}

fn outbox_key(key: &str) -> Result<i64, StoreError> {
    key.parse()
        .map_err(|_| StoreError(format!("no outbox event {key:?}")))
}

impl HookOutbox for SqliteHistory {
    fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT key, event_id, channel, kind, body, created_ms, attempts, next_attempt_ms
                 FROM hook_outbox WHERE endpoint = ?1 AND dead = 0 ORDER BY key LIMIT ?2",
            )
            .map_err(store_error)?;
        let rows = statement
            .query_map(params![endpoint, sql_count(limit)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                ))
            })
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, id, channel, kind, body, created, attempts, next)| {
                Some(PendingEvent {
                    key: key.to_string(),
                    event: OutboxEvent {
                        id,
                        endpoint: endpoint.to_string(),
                        channel,
                        kind: EventType::parse(&kind)?,
                        body: bytes::Bytes::from(body),
                        created_ms: created as u64,
                    },
                    attempts: attempts as u32,
                    next_attempt_ms: next as u64,
                })
            })
            .collect())
    }

    fn delivered_all(&self, endpoint: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut db = self.writer();
        let transaction = db.transaction().map_err(store_error)?;
        {
            let mut statement = transaction
                .prepare_cached("DELETE FROM hook_outbox WHERE endpoint = ?1 AND key = ?2")
                .map_err(store_error)?;
            for key in keys {
                statement
                    .execute(params![endpoint, outbox_key(key)?])
                    .map_err(store_error)?;
            }
        }
        transaction.commit().map_err(store_error)
    }

    fn retry_later(
        &self,
        endpoint: &str,
        key: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.writer()
            .execute(
                "UPDATE hook_outbox SET attempts = ?3, next_attempt_ms = ?4
                 WHERE endpoint = ?1 AND key = ?2",
                params![
                    endpoint,
                    outbox_key(key)?,
                    i64::from(attempts),
                    next_attempt_ms as i64
                ],
            )
            .map(drop)
            .map_err(store_error)
    }

    fn give_up(&self, endpoint: &str, key: &str) -> Result<(), StoreError> {
        self.writer()
            .execute(
                "UPDATE hook_outbox SET dead = 1 WHERE endpoint = ?1 AND key = ?2",
                params![endpoint, outbox_key(key)?],
            )
            .map(drop)
            .map_err(store_error)
    }

    fn replay_dead(&self, endpoint: Option<&str>) -> Result<u64, StoreError> {
        let db = self.writer();
        let replayed = match endpoint {
            Some(endpoint) => db.execute(
                "UPDATE hook_outbox SET dead = 0, attempts = 0, next_attempt_ms = 0
                 WHERE dead = 1 AND endpoint = ?1",
                [endpoint],
            ),
            None => db.execute(
                "UPDATE hook_outbox SET dead = 0, attempts = 0, next_attempt_ms = 0 WHERE dead = 1",
                [],
            ),
        };
        replayed.map(|n| n as u64).map_err(store_error)
    }

    fn outbox_stats(&self, endpoint: &str) -> Result<OutboxStats, StoreError> {
        let db = self.reader();
        let (pending, dead, oldest): (i64, i64, Option<i64>) = db
            .query_row(
                "SELECT coalesce(sum(dead = 0), 0), coalesce(sum(dead = 1), 0),
                        min(CASE WHEN dead = 0 THEN created_ms END)
                 FROM hook_outbox WHERE endpoint = ?1",
                [endpoint],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(store_error)?;
        Ok(OutboxStats {
            pending: pending as u64,
            dead: dead as u64,
            oldest_pending_ms: oldest.map(|ms| ms as u64),
        })
    }
}
