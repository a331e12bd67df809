//! History in a SQLite file: the embedded default. WAL mode, one writer connection that commits
//! whole batches, and a reader connection so history reads do not wait for commits.
//!
//! `synchronous = FULL`: a batch is on disk before its senders get their ok, so an acknowledged
//! message survives the process being killed and the machine losing power.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{ChannelHistory, HistoryStore, NewEntry, Retention, StoreError, StoredFrame};

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
";

/// A SQLite history file.
pub struct SqliteHistory {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteHistory {
    /// Opens (or creates) the history file at `path` and checks it. A file that is not a
    /// Switchboard history database, or is damaged, is refused: the server must not start
    /// empty over data it cannot read.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |what: &str, err: rusqlite::Error| {
            StoreError(format!(
                "history database {}: {what}: {err}. Move the file aside or restore it from a backup, then start again",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| {
                StoreError(format!(
                    "cannot create the folder {} for the history database: {err}",
                    dir.display()
                ))
            })?;
        }
        let writer = Connection::open(path).map_err(|e| fail("cannot open", e))?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("cannot read it as a SQLite database", e))?;
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
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
            .map_err(|e| fail("cannot configure", e))?;
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
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| fail("cannot open a reader", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn store_error(err: rusqlite::Error) -> StoreError {
    StoreError(format!("history database: {err}"))
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

fn frames(rows: Vec<(i64, Vec<u8>)>) -> Vec<StoredFrame> {
    rows.into_iter()
        .map(|(seq, frame)| StoredFrame {
            seq: seq as u64,
            frame: bytes::Bytes::from(frame),
        })
        .collect()
}

impl HistoryStore for SqliteHistory {
    fn open_channel(&self, channel: &str, recent_ids: usize) -> Result<ChannelHistory, StoreError> {
        let db = self.writer();
        let existing: Option<(String, i64)> = db
            .query_row(
                "SELECT epoch, last_seq FROM channels WHERE name = ?1",
                [channel],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(store_error)?;
        let (epoch, last_seq) = match existing {
            Some(found) => found,
            None => {
                let epoch = new_epoch();
                db.execute(
                    "INSERT INTO channels (name, epoch, last_seq) VALUES (?1, ?2, 0)",
                    params![channel, epoch],
                )
                .map_err(store_error)?;
                (epoch, 0)
            }
        };
        let mut statement = db
            .prepare_cached(
                "SELECT id, seq FROM messages WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(store_error)?;
        let mut ids: Vec<(String, u64)> = statement
            .query_map(params![channel, recent_ids as i64], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })
            .map_err(store_error)?
            .collect::<Result<_, _>>()
            .map_err(store_error)?;
        ids.reverse();
        Ok(ChannelHistory {
            epoch,
            last_seq: last_seq as u64,
            recent_ids: ids,
        })
    }

    fn append(&self, batch: &[NewEntry]) -> Result<(), StoreError> {
        let mut db = self.writer();
        let tx = db.transaction().map_err(store_error)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO messages (channel, seq, id, at_ms, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(store_error)?;
            let mut advance = tx
                .prepare_cached("UPDATE channels SET last_seq = max(last_seq, ?2) WHERE name = ?1")
                .map_err(store_error)?;
            for entry in batch {
                insert
                    .execute(params![
                        entry.channel,
                        entry.seq as i64,
                        entry.id,
                        entry.at_ms as i64,
                        &entry.frame[..]
                    ])
                    .map_err(store_error)?;
                advance
                    .execute(params![entry.channel, entry.seq as i64])
                    .map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
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
                params![channel, after as i64, up_to as i64, limit as i64],
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
        let before = before.map_or(i64::MAX, |b| b as i64);
        let mut statement = db
            .prepare_cached(
                "SELECT seq, frame FROM messages WHERE channel = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(store_error)?;
        let mut rows = statement
            .query_map(params![channel, before, limit as i64], |row| {
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
            let floor = last_seq - retention.count.min(i64::MAX as u64) as i64;
            let oldest_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64) as i64;
            dropped += delete
                .execute(params![channel, floor, oldest_ms])
                .map_err(store_error)? as u64;
        }
        Ok(dropped)
    }
}
