//! History in a SQLite file: the embedded default. WAL mode, one writer connection that commits
//! whole batches, and reader connections so history reads do not wait for commits.
//!
//! `synchronous = FULL`: a batch is on disk before its senders get their ok, so an acknowledged
//! message survives the process being killed and the machine losing power.
//!
//! The webhook outbox lives beside the messages and is written in their commits. A
//! `message.stored` event is a small row that refers to its message (the body is built from the
//! stored frame when it is read, and copied into the row before the message is trimmed or
//! cleared); deliveries are forgotten by the next commit; dead events wait in `hook_dead`.
//!
//! Checkpoints (copying the log into the database file) run on a thread of their own, never in
//! a commit: see [`Checkpointer`].

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    ChannelHistory, ChannelStats, HistoryStore, HookWrites, MemberChange, NewEntry, Orphan,
    Retention, StoreError, StoredFrame,
};
use crate::hooks::{
    message_body_from_frame, EventType, HookOutbox, OutboxEvent, OutboxStats, PendingEvent,
};

/// Bumped when the schema changes; a file of an older version is brought up to date when it is
/// opened (see [`migrate`]), one of a newer version is refused.
const SCHEMA_VERSION: &str = "2";

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
    endpoint TEXT NOT NULL,
    key INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    seq INTEGER,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hook_dead (
    endpoint TEXT NOT NULL,
    key INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;
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

/// Bytes of messages committed after which the log is checkpointed.
const CHECKPOINT_BYTES: usize = 1024 * 1024;

/// Copies committed pages from the write-ahead log into the database file on a thread of its
/// own. SQLite's default runs a checkpoint inside the commit that fills the log (every 1,000
/// pages): that commit, and every message waiting behind it, then waits for megabytes to be
/// written and synced — at 10,000 messages a second, stalls of 50–200 ms every second or so.
/// The thread sleeps until a megabyte of messages was committed (an idle node never wakes it)
/// and runs a passive checkpoint, which never blocks the writer.
struct Checkpointer {
    /// Bytes committed since the last checkpoint was asked for.
    pending: std::sync::atomic::AtomicUsize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path).map_err(|e| open_failure(path, "cannot open", e))?;
        db.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(|e| open_failure(path, "cannot configure", e))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("switchboard-checkpoint".into())
            .spawn(move || loop {
                std::thread::park();
                if stopping.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                if let Err(err) = db.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(
                        "checkpointing the history database {shown} failed (its log grows until one works): {err}"
                    );
                }
            })
            .map_err(|err| StoreError(format!("cannot start the checkpoint thread: {err}")))?;
        Ok(Self {
            pending: Default::default(),
            stop,
            thread: Some(thread),
        })
    }

    /// Counts `bytes` more committed; wakes the thread past [`CHECKPOINT_BYTES`].
    fn committed(&self, bytes: usize) {
        use std::sync::atomic::Ordering;
        if self.pending.fetch_add(bytes, Ordering::AcqRel) + bytes >= CHECKPOINT_BYTES {
            self.pending.store(0, Ordering::Release);
            if let Some(thread) = &self.thread {
                thread.thread().unpark();
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A SQLite history file.
pub struct SqliteHistory {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// The writer may be left at `synchronous = NORMAL` by a failed settle.
    relaxed: std::sync::atomic::AtomicBool,
    /// The next outbox key: keys only grow, so an endpoint's events read back in the order
    /// they were recorded (handed out under the writer's lock).
    next_key: std::sync::atomic::AtomicI64,
    /// Delivered events whose rows are deleted by the next commit: no longer pending, but not
    /// yet written (so a delivery never takes the writer from the persister).
    held: Mutex<std::collections::HashSet<EventKey>>,
    checkpointer: Checkpointer,
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
    // No checkpoint in a commit: the checkpointer thread does them.
    writer
        .execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 0;",
        )
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
            Some(older @ "1") => {
                migrate(&writer, older).map_err(|e| fail("cannot update the schema", e))?;
            }
            Some(other) => {
                return Err(StoreError(format!(
                    "history database {} has schema version {other}; this server reads version {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        let next_key = first_free_key(&writer).map_err(|e| fail("cannot read the outbox", e))?;
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
            relaxed: Default::default(),
            next_key: std::sync::atomic::AtomicI64::new(next_key),
            held: Mutex::default(),
            checkpointer: Checkpointer::start(path)?,
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

/// Brings a file of schema version `from` up to date, in one transaction.
///
/// Version 2 makes recording an event cheap, as it happens in every message commit: the outbox
/// is one B-tree keyed by endpoint and a key the store hands out (no row id, no second index,
/// no AUTOINCREMENT bookkeeping), dead events move to `hook_dead`, and an event may reference
/// the stored message it is about (`seq`, with an empty `body`) instead of holding a copy.
fn migrate(writer: &Connection, from: &str) -> Result<(), rusqlite::Error> {
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        "updating the history database's schema"
    );
    writer.execute_batch(&format!(
        "BEGIN;
         CREATE TABLE hook_outbox_2 (
             endpoint TEXT NOT NULL, key INTEGER NOT NULL, event_id TEXT NOT NULL,
             channel TEXT NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL,
             created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
             next_attempt_ms INTEGER NOT NULL DEFAULT 0, seq INTEGER,
             PRIMARY KEY (endpoint, key)
         ) WITHOUT ROWID;
         INSERT INTO hook_outbox_2
             SELECT endpoint, key, event_id, channel, kind, body, created_ms, attempts,
                    next_attempt_ms, NULL
             FROM hook_outbox WHERE dead = 0;
         INSERT INTO hook_dead
             SELECT endpoint, key, event_id, channel, kind, body, created_ms, attempts
             FROM hook_outbox WHERE dead = 1;
         DROP TABLE hook_outbox;
         ALTER TABLE hook_outbox_2 RENAME TO hook_outbox;
         UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';
         COMMIT;"
    ))
}

/// The outbox key after every one in the file.
fn first_free_key(writer: &Connection) -> Result<i64, rusqlite::Error> {
    writer.query_row(
        "SELECT max(coalesce((SELECT max(key) FROM hook_outbox), 0),
                    coalesce((SELECT max(key) FROM hook_dead), 0)) + 1",
        [],
        |row| row.get(0),
    )
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
        if self.relaxed.load(std::sync::atomic::Ordering::Relaxed) {
            // A settle could not put the sync back: no message is acknowledged unsynced.
            db.execute_batch("PRAGMA synchronous = FULL")
                .map_err(store_error)?;
            self.relaxed
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let tx = db.transaction().map_err(store_error)?;
        let held = self.held_deliveries();
        forget_delivered(&tx, &held)?;
        write_hooks(&tx, batch, hooks, &self.next_key)?;
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
        tx.commit().map_err(store_error)?;
        self.release(&held);
        drop(db);
        let bytes: usize = batch.iter().map(|e| e.frame.len() + e.id.len()).sum();
        self.checkpointer.committed(bytes);
        Ok(())
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
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        let channels: Vec<(String, i64)> = {
            let mut statement = tx
                .prepare_cached("SELECT name, last_seq FROM channels")
                .map_err(store_error)?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(store_error)?
                .collect::<Result<_, _>>()
                .map_err(store_error)?;
            rows
        };
        // What each channel keeps: messages above `floor` and not older than `oldest_ms`.
        let kept: Vec<(String, i64, i64)> = channels
            .into_iter()
            .map(|(channel, last_seq)| {
                let retention = retention(&channel);
                let floor = last_seq.saturating_sub(sql_seq(retention.count));
                let oldest_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64) as i64;
                (channel, floor, oldest_ms)
            })
            .collect();
        if has_references(&tx)? {
            let limits: std::collections::HashMap<&str, (i64, i64)> = kept
                .iter()
                .map(|(channel, floor, oldest)| (channel.as_str(), (*floor, *oldest)))
                .collect();
            // One pass over the outbox, then the frames of only the messages about to go.
            let mut references = tx
                .prepare_cached(
                    "SELECT o.endpoint, o.key, o.channel, m.seq, m.at_ms FROM hook_outbox o
                     JOIN messages m ON m.channel = o.channel AND m.seq = o.seq
                     WHERE o.seq IS NOT NULL AND length(o.body) = 0",
                )
                .map_err(store_error)?;
            type Reference = ((String, i64), String, i64, i64);
            let going: Vec<Reference> = references
                .query_map([], |row| {
                    Ok((
                        (row.get(0)?, row.get(1)?),
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .map_err(store_error)?
                .collect::<Result<Vec<Reference>, _>>()
                .map_err(store_error)?
                .into_iter()
                .filter(|(_, channel, seq, at_ms)| {
                    limits
                        .get(channel.as_str())
                        .is_some_and(|(floor, oldest)| seq <= floor || at_ms < oldest)
                })
                .collect();
            let mut frame = tx
                .prepare_cached("SELECT frame FROM messages WHERE channel = ?1 AND seq = ?2")
                .map_err(store_error)?;
            let mut rows = Vec::with_capacity(going.len());
            for (event, channel, seq, _) in going {
                let bytes: Vec<u8> = frame
                    .query_row(params![channel, seq], |row| row.get(0))
                    .map_err(store_error)?;
                rows.push((event, bytes));
            }
            keep_bodies(&tx, rows)?;
        }
        let mut dropped = 0;
        {
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM messages WHERE channel = ?1 AND (seq <= ?2 OR at_ms < ?3)",
                )
                .map_err(store_error)?;
            for (channel, floor, oldest_ms) in &kept {
                dropped += delete
                    .execute(params![channel, floor, oldest_ms])
                    .map_err(store_error)? as u64;
            }
        }
        tx.execute(
            "DELETE FROM channels WHERE NOT EXISTS (SELECT 1 FROM messages WHERE channel = name)",
            [],
        )
        .map_err(store_error)?;
        tx.commit().map_err(store_error)?;
        Ok(dropped)
    }

    fn clear(&self, channel: &str) -> Result<(), StoreError> {
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        if has_references(&tx)? {
            let rows = tx
                .prepare_cached(
                    "SELECT o.endpoint, o.key, m.frame FROM hook_outbox o
                     JOIN messages m ON m.channel = o.channel AND m.seq = o.seq
                     WHERE o.seq IS NOT NULL AND length(o.body) = 0 AND o.channel = ?1",
                )
                .map_err(store_error)?
                .query_map([channel], |row| {
                    Ok(((row.get(0)?, row.get(1)?), row.get(2)?))
                })
                .map_err(store_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_error)?;
            keep_bodies(&tx, rows)?;
        }
        tx.execute("DELETE FROM messages WHERE channel = ?1", [channel])
            .map_err(store_error)?;
        tx.execute("DELETE FROM channels WHERE name = ?1", [channel])
            .map_err(store_error)?;
        tx.commit().map_err(store_error)
    }

    fn holds_writes(&self) -> bool {
        !self.held().is_empty()
    }

    fn flush_held(&self) -> Result<(), StoreError> {
        let held = self.held_deliveries();
        if held.is_empty() {
            return Ok(());
        }
        self.settle(|tx| forget_delivered(tx, &held))?;
        self.release(&held);
        Ok(())
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

/// Writes webhook events and membership changes inside the batch's transaction. The event of
/// a message stored in this batch keeps a reference to it (its seq, and an empty body) rather
/// than a second copy: [`HookOutbox::pending`] builds the body from the message, and trimming
/// or clearing the message first copies the body into the event.
fn write_hooks(
    tx: &rusqlite::Transaction<'_>,
    batch: &[NewEntry],
    hooks: &HookWrites,
    next_key: &std::sync::atomic::AtomicI64,
) -> Result<(), StoreError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO hook_outbox (endpoint, key, event_id, channel, kind, body, created_ms, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(store_error)?;
    for event in &hooks.events {
        // The persister names a message only when it is stored in this same commit.
        let reference = event.message_seq.filter(|_| !batch.is_empty());
        if reference.is_none() && event.body.is_empty() {
            return Err(StoreError(format!(
                "webhook event {} has neither a body nor a message",
                event.id
            )));
        }
        let body: &[u8] = if reference.is_some() {
            &[]
        } else {
            &event.body
        };
        let key = next_key.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        insert
            .execute(params![
                event.endpoint,
                key,
                event.id,
                event.channel,
                event.kind.as_str(),
                body,
                event.created_ms as i64,
                reference.map(sql_seq)
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

impl SqliteHistory {
    /// The deliveries held back so far (they stay held, and so not pending, until
    /// [`SqliteHistory::release`] after the commit that deletes them).
    fn held_deliveries(&self) -> Vec<EventKey> {
        self.held().iter().cloned().collect()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<EventKey>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The commit that deleted these is done.
    fn release(&self, written: &[EventKey]) {
        if written.is_empty() {
            return;
        }
        let mut held = self.held();
        for key in written {
            held.remove(key);
        }
    }

    /// Records what became of delivery attempts in a transaction that is not synced on its
    /// own: the next message commit (`synchronous = FULL`) makes it durable along with
    /// everything before it in the log. Until then a crash forgets it, so an event may be
    /// delivered again — which at-least-once allows — and the persister's commits never wait
    /// behind a sync of the delivery's bookkeeping.
    fn settle(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut db = self.writer();
        self.relaxed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        db.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(store_error)?;
        let settled = db.transaction().map_err(store_error).and_then(|tx| {
            write(&tx)?;
            tx.commit().map_err(store_error)
        });
        let restored = db
            .execute_batch("PRAGMA synchronous = FULL")
            .map_err(store_error);
        if restored.is_ok() {
            self.relaxed
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        settled.and(restored)
    }
}

/// Whether any outbox event still references its message rather than holding its body.
fn has_references(tx: &rusqlite::Transaction<'_>) -> Result<bool, StoreError> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM hook_outbox WHERE seq IS NOT NULL AND length(body) = 0)",
        [],
        |row| row.get(0),
    )
    .map_err(store_error)
}

/// An outbox row: its endpoint and key.
type EventKey = (String, i64);

/// Copies into each event the body built from its message, which is about to be deleted: the
/// event outlives the message's history.
fn keep_bodies(
    tx: &rusqlite::Transaction<'_>,
    rows: Vec<(EventKey, Vec<u8>)>,
) -> Result<(), StoreError> {
    let mut update = tx
        .prepare_cached("UPDATE hook_outbox SET body = ?3 WHERE endpoint = ?1 AND key = ?2")
        .map_err(store_error)?;
    for ((endpoint, key), frame) in rows {
        let body = message_body_from_frame(&frame).map_err(StoreError)?;
        update
            .execute(params![endpoint, key, &body[..]])
            .map_err(store_error)?;
    }
    Ok(())
}

/// Deletes delivered events inside a commit.
fn forget_delivered(tx: &rusqlite::Transaction<'_>, keys: &[EventKey]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM hook_outbox WHERE endpoint = ?1 AND key = ?2")
        .map_err(store_error)?;
    for (endpoint, key) in keys {
        delete
            .execute(params![endpoint, key])
            .map_err(store_error)?;
    }
    Ok(())
}

fn outbox_key(key: &str) -> Result<i64, StoreError> {
    key.parse()
        .map_err(|_| StoreError(format!("no outbox event {key:?}")))
}

impl HookOutbox for SqliteHistory {
    fn builds_message_bodies(&self) -> bool {
        true
    }

    fn pending(&self, endpoint: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT o.key, o.event_id, o.channel, o.kind, o.body, o.created_ms, o.attempts,
                        o.next_attempt_ms, o.seq, m.frame
                 FROM hook_outbox o
                 LEFT JOIN messages m
                   ON length(o.body) = 0 AND m.channel = o.channel AND m.seq = o.seq
                 WHERE o.endpoint = ?1 ORDER BY o.key LIMIT ?2",
            )
            .map_err(store_error)?;
        // Held deliveries are read past (and are at most what one pass delivered).
        let held: std::collections::HashSet<i64> = self
            .held()
            .iter()
            .filter(|(held_for, _)| held_for == endpoint)
            .map(|(_, key)| *key)
            .collect();
        let rows = statement
            .query_map(params![endpoint, sql_count(limit + held.len())], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, Option<i64>>(8)?,
                    row.get::<_, Option<Vec<u8>>>(9)?,
                ))
            })
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| !held.contains(&row.0))
            .take(limit)
            .filter_map(|row| {
                let (key, id, channel, kind, body, created, attempts, next, seq, frame) = row;
                let body = match (body.is_empty(), frame) {
                    (false, _) => bytes::Bytes::from(body),
                    (true, Some(frame)) => match message_body_from_frame(&frame) {
                        Ok(body) => body,
                        Err(err) => {
                            tracing::error!(%channel, event = %id, "webhook event skipped: {err}");
                            return None;
                        }
                    },
                    (true, None) => {
                        tracing::error!(%channel, event = %id, "webhook event skipped: its message is gone");
                        return None;
                    }
                };
                Some(PendingEvent {
                    key: key.to_string(),
                    event: OutboxEvent {
                        id,
                        endpoint: endpoint.to_string(),
                        channel,
                        kind: EventType::parse(&kind)?,
                        body,
                        created_ms: created as u64,
                        message_seq: seq.map(|seq| seq as u64),
                    },
                    attempts: attempts as u32,
                    next_attempt_ms: next as u64,
                })
            })
            .collect())
    }

    fn delivered_all(&self, endpoint: &str, keys: &[String]) -> Result<(), StoreError> {
        let keys = keys
            .iter()
            .map(|key| Ok((endpoint.to_string(), outbox_key(key)?)))
            .collect::<Result<Vec<EventKey>, StoreError>>()?;
        self.held().extend(keys);
        Ok(())
    }

    fn retry_later(
        &self,
        endpoint: &str,
        key: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.settle(|tx| {
            tx.execute(
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
        })
    }

    fn give_up(&self, endpoint: &str, key: &str) -> Result<(), StoreError> {
        let key = outbox_key(key)?;
        self.settle(|tx| {
            // A dead event keeps its own body: the message may be trimmed long before a replay.
            let event: Option<(Vec<u8>, Option<Vec<u8>>)> = tx
                .query_row(
                    "SELECT o.body, m.frame FROM hook_outbox o
                     LEFT JOIN messages m
                       ON length(o.body) = 0 AND m.channel = o.channel AND m.seq = o.seq
                     WHERE o.endpoint = ?1 AND o.key = ?2",
                    params![endpoint, key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(store_error)?;
            let Some((body, frame)) = event else {
                return Ok(());
            };
            let body = match (body.is_empty(), frame) {
                (true, Some(frame)) => message_body_from_frame(&frame)
                    .map_err(StoreError)?
                    .to_vec(),
                _ => body,
            };
            tx.execute(
                "INSERT INTO hook_dead
                     (endpoint, key, event_id, channel, kind, body, created_ms, attempts)
                 SELECT endpoint, key, event_id, channel, kind, ?3, created_ms, attempts
                 FROM hook_outbox WHERE endpoint = ?1 AND key = ?2",
                params![endpoint, key, body],
            )
            .map_err(store_error)?;
            tx.execute(
                "DELETE FROM hook_outbox WHERE endpoint = ?1 AND key = ?2",
                params![endpoint, key],
            )
            .map(drop)
            .map_err(store_error)
        })
    }

    fn replay_dead(&self, endpoint: Option<&str>) -> Result<u64, StoreError> {
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        // Back under their own keys, so they go out in the order they first would have.
        let filter = if endpoint.is_some() {
            "WHERE endpoint = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        let replayed = tx
            .execute(
                &format!(
                    "INSERT INTO hook_outbox
                         (endpoint, key, event_id, channel, kind, body, created_ms, attempts,
                          next_attempt_ms, seq)
                     SELECT endpoint, key, event_id, channel, kind, body, created_ms, 0, 0, NULL
                     FROM hook_dead {filter}"
                ),
                [endpoint],
            )
            .map_err(store_error)?;
        tx.execute(&format!("DELETE FROM hook_dead {filter}"), [endpoint])
            .map_err(store_error)?;
        tx.commit().map_err(store_error)?;
        Ok(replayed as u64)
    }

    fn outbox_stats(&self, endpoint: &str) -> Result<OutboxStats, StoreError> {
        // Counted as the endpoint sees it: what it took is no longer pending.
        self.flush_held()?;
        let db = self.reader();
        let (pending, dead, oldest): (i64, i64, Option<i64>) = db
            .query_row(
                "SELECT (SELECT count(*) FROM hook_outbox WHERE endpoint = ?1),
                        (SELECT count(*) FROM hook_dead WHERE endpoint = ?1),
                        (SELECT min(created_ms) FROM hook_outbox WHERE endpoint = ?1)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{stored_message, Stamp};
    use crate::hooks::message_template;
    use bytes::Bytes;
    use serde_json::value::RawValue;
    use std::time::Duration;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-sqlite-unit-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        dir.join("history.db")
    }

    /// A stored message and its webhook event, as the persister hands them to the store.
    fn message(seq: u64, text: &str) -> (NewEntry, OutboxEvent) {
        let payload = RawValue::from_string(format!("{{\"text\":\"{text}\"}}")).unwrap();
        let client = r#"{"socketId":"s1","extras":{},"permissions":{"authenticated":false}}"#;
        let id = format!("m{seq}");
        let at_ms = 1_000 * seq;
        let stamp = Stamp {
            id: &id,
            at_ms,
            relation: None,
        };
        let frame = stored_message("room", &stamp, &payload, client).fill(seq, "ep");
        let body = message_template("room", &id, at_ms, Some(client), &payload).fill(seq, "ep");
        let entry = NewEntry {
            channel: "room".into(),
            epoch: "ep".into(),
            seq,
            id,
            at_ms,
            frame,
        };
        let event = OutboxEvent {
            id: crate::hooks::message_event_id("room", "ep", seq),
            endpoint: "hooks".into(),
            channel: "room".into(),
            kind: EventType::MessageStored,
            body,
            created_ms: at_ms,
            message_seq: Some(seq),
        };
        (entry, event)
    }

    /// Webhook events alone, as the persister hands them over.
    fn only_events(events: Vec<OutboxEvent>) -> HookWrites {
        HookWrites {
            events,
            members: vec![],
        }
    }

    fn bodies(store: &SqliteHistory) -> Vec<Bytes> {
        let pending = store.pending("hooks", 100).unwrap();
        pending.into_iter().map(|p| p.event.body).collect()
    }

    fn stored_bodies(store: &SqliteHistory) -> Vec<usize> {
        let db = store.reader();
        let mut statement = db
            .prepare("SELECT length(body) FROM hook_outbox ORDER BY key")
            .unwrap();
        let lengths = statement
            .query_map([], |row| row.get::<_, i64>(0))
            .unwrap()
            .map(|n| n.unwrap() as usize)
            .collect();
        lengths
    }

    #[test]
    fn the_log_is_checkpointed_off_the_writer_once_a_megabyte_was_committed() {
        let path = temp_db("checkpoint");
        let store = SqliteHistory::open(&path).unwrap();
        let file_size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = file_size();
        let text = "x".repeat(4000);
        // Commits never checkpoint themselves: under a megabyte, the file keeps its size.
        let small: Vec<NewEntry> = (1..=50).map(|n| message(n, &text).0).collect();
        store.append(&small, &HookWrites::default()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(file_size(), before);
        // Past a megabyte the checkpointer copies the log into the file.
        let large: Vec<NewEntry> = (51..=400).map(|n| message(n, &text).0).collect();
        store.append(&large, &HookWrites::default()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_size() < 1024 * 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(file_size() >= 1024 * 1024, "{} bytes", file_size());
        // Dropping the store stops the thread.
        drop(store);
    }

    #[test]
    fn a_message_event_refers_to_its_message_and_keeps_its_body_when_the_message_goes() {
        let store = SqliteHistory::open(&temp_db("refs")).unwrap();
        let (entries, events): (Vec<_>, Vec<_>) =
            (1..=3).map(|n| message(n, &format!("hi {n}"))).unzip();
        let expected: Vec<Bytes> = events.iter().map(|e| e.body.clone()).collect();
        store.append(&entries, &only_events(events)).unwrap();
        // Recorded as references (no second copy of the body)...
        assert_eq!(stored_bodies(&store), [0, 0, 0]);
        // ...and delivered with the same bytes as a copy would have had.
        assert_eq!(bodies(&store), expected);
        // Trimming the first message copies its body into its event first.
        let keep_two = Retention {
            count: 2,
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(store.trim(&|_| keep_two, 4_000).unwrap(), 1);
        assert_eq!(stored_bodies(&store)[0], expected[0].len());
        assert_eq!(bodies(&store), expected);
        // So does clearing the channel, for the rest.
        store.clear("room").unwrap();
        assert!(store.latest("room", None, 10).unwrap().is_empty());
        assert_eq!(bodies(&store), expected);
        assert!(stored_bodies(&store).iter().all(|n| *n > 0));
    }

    #[test]
    fn delivered_events_are_forgotten_by_the_next_commit_or_when_flushed() {
        let store = SqliteHistory::open(&temp_db("held")).unwrap();
        let (entries, events): (Vec<_>, Vec<_>) =
            (1..=3).map(|n| message(n, &format!("hi {n}"))).unzip();
        store
            .append(&entries[..2], &only_events(events[..2].to_vec()))
            .unwrap();
        let first = store.pending("hooks", 1).unwrap().remove(0);
        store.delivered("hooks", &first.key).unwrap();
        // No longer pending at once, though its row waits for the next commit.
        let ids = |store: &SqliteHistory| -> Vec<String> {
            let pending = store.pending("hooks", 10).unwrap();
            pending.into_iter().map(|p| p.event.id).collect()
        };
        assert_eq!(ids(&store), [events[1].id.clone()]);
        assert_eq!(stored_bodies(&store).len(), 2);
        // A message commit deletes it...
        store
            .append(&entries[2..], &only_events(events[2..].to_vec()))
            .unwrap();
        assert_eq!(stored_bodies(&store).len(), 2);
        assert_eq!(ids(&store), [events[1].id.clone(), events[2].id.clone()]);
        // ...and so does a flush when no commit comes.
        let second = store.pending("hooks", 1).unwrap().remove(0);
        store.delivered("hooks", &second.key).unwrap();
        store.flush_held().unwrap();
        assert_eq!(stored_bodies(&store).len(), 1);
        assert_eq!(store.outbox_stats("hooks").unwrap().pending, 1);
    }

    #[test]
    fn an_event_whose_message_is_not_in_the_batch_keeps_a_copy() {
        let store = SqliteHistory::open(&temp_db("copy")).unwrap();
        let (_, event) = message(9, "elsewhere");
        let body = event.body.clone();
        let writes = only_events(vec![event]);
        store.append(&[], &writes).unwrap();
        assert_eq!(stored_bodies(&store), [body.len()]);
        assert_eq!(bodies(&store), [body]);
    }

    #[test]
    fn a_version_1_file_is_brought_up_to_date_and_keeps_its_events() {
        let path = temp_db("v1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');
                 CREATE TABLE hook_outbox (
                     key INTEGER PRIMARY KEY AUTOINCREMENT,
                     endpoint TEXT NOT NULL, event_id TEXT NOT NULL, channel TEXT NOT NULL,
                     kind TEXT NOT NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL,
                     attempts INTEGER NOT NULL DEFAULT 0,
                     next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                     dead INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO hook_outbox (endpoint, event_id, channel, kind, body, created_ms)
                 VALUES ('hooks', 'evt_1', 'room', 'member.joined', X'7B7D', 5);
                 INSERT INTO hook_outbox (endpoint, event_id, channel, kind, body, created_ms,
                                          attempts, dead)
                 VALUES ('hooks', 'evt_0', 'lobby', 'member.left', X'5B5D', 4, 9, 1);",
            )
            .unwrap();
        }
        let store = SqliteHistory::open(&path).unwrap();
        assert_eq!(bodies(&store), [Bytes::from_static(b"{}")]);
        let version: String = store
            .reader()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.outbox_stats("hooks").unwrap().dead, 1);
        let (entry, event) = message(1, "after the update");
        let writes = only_events(vec![event.clone()]);
        store.append(&[entry], &writes).unwrap();
        assert_eq!(bodies(&store)[1], event.body);
        // The dead event goes back to its place: after the one recorded before it, before the
        // one recorded after the update.
        assert_eq!(store.replay_dead(Some("hooks")).unwrap(), 1);
        let ids: Vec<String> = store
            .pending("hooks", 10)
            .unwrap()
            .into_iter()
            .map(|p| p.event.id)
            .collect();
        assert_eq!(ids, ["evt_1", "evt_0", event.id.as_str()]);
    }

    #[test]
    fn a_dead_event_keeps_its_body_after_its_message_is_trimmed() {
        let store = SqliteHistory::open(&temp_db("dead")).unwrap();
        let (entry, event) = message(1, "kept");
        let body = event.body.clone();
        let writes = only_events(vec![event]);
        store.append(&[entry], &writes).unwrap();
        let key = store.pending("hooks", 1).unwrap()[0].key.clone();
        store.give_up("hooks", &key).unwrap();
        store.clear("room").unwrap();
        assert!(store.pending("hooks", 1).unwrap().is_empty());
        store.replay_dead(None).unwrap();
        assert_eq!(bodies(&store), [body]);
    }
}
