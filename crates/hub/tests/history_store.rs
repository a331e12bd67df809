//! One test suite that every history store must pass: the in-memory store, SQLite and Redis
//! keep seq, epoch, ranges and retention the same way.

use bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_hub::{
    HistoryStore, HookWrites, MemoryHistory, NewEntry, RedisHistory, Retention, SqliteHistory,
    StoreError,
};
use switchboard_testkit::{temp_path, unique, RedisServer};

const EPOCH: &str = "e1";

fn entry(channel: &str, seq: u64, at_ms: u64) -> NewEntry {
    NewEntry {
        channel: channel.into(),
        epoch: EPOCH.into(),
        seq,
        id: format!("id-{seq}"),
        at_ms,
        frame: Bytes::from(format!("{{\"n\":{seq}}}")),
    }
}

/// Appends a batch with nothing for back ends (these tests are about messages).
fn append(store: &dyn HistoryStore, batch: &[NewEntry]) -> Result<(), StoreError> {
    store.append(batch, &HookWrites::default())
}

fn seqs(frames: Vec<switchboard_hub::StoredFrame>) -> Vec<u64> {
    frames.into_iter().map(|f| f.seq).collect()
}

/// A fresh database path under the system's temp folder, in a folder that does not exist
/// yet (the store makes it).
pub fn temp_db() -> PathBuf {
    temp_path("switchboard-store").join("history.db")
}

fn a_channel_exists_only_once_something_was_stored_in_it(store: &dyn HistoryStore) {
    let first = store.open_channel("room1", 10).unwrap();
    assert_eq!((first.epoch, first.last_seq), (None, 0));
    // Reading never creates it.
    assert_eq!(store.open_channel("room1", 10).unwrap().epoch, None);
    append(store, &[entry("room1", 1, 10), entry("room1", 2, 10)]).unwrap();
    let again = store.open_channel("room1", 10).unwrap();
    assert_eq!(again.epoch.as_deref(), Some(EPOCH));
    assert_eq!(again.last_seq, 2);
    assert_eq!(
        again.recent_ids,
        vec![("id-1".to_string(), 1), ("id-2".to_string(), 2)]
    );
    assert!(!again.more_ids);
    let fewer = store.open_channel("room1", 1).unwrap();
    assert_eq!(fewer.recent_ids, vec![("id-2".to_string(), 2)]);
    assert!(fewer.more_ids, "the store holds older ids than those read");
}

fn a_batch_with_a_stored_seq_is_refused_whole(store: &dyn HistoryStore) {
    append(store, &[entry("c", 1, 0)]).unwrap();
    assert!(append(store, &[entry("c", 2, 0), entry("c", 1, 0)]).is_err());
    assert_eq!(seqs(store.latest("c", None, 10).unwrap()), vec![1]);
}

fn the_store_knows_every_id_it_holds_and_refuses_a_second_copy(store: &dyn HistoryStore) {
    let batch: Vec<_> = (1..=5).map(|n| entry("c", n, 0)).collect();
    append(store, &batch).unwrap();
    assert_eq!(store.seq_of("c", "id-3").unwrap(), Some(3));
    assert_eq!(store.seq_of("c", "id-9").unwrap(), None);
    assert_eq!(store.seq_of("other", "id-3").unwrap(), None);
    let mut resent = entry("c", 6, 0);
    resent.id = "id-2".into();
    assert!(append(store, &[resent]).is_err(), "an id is stored once");
    assert_eq!(store.open_channel("c", 10).unwrap().last_seq, 5);
}

fn clearing_a_channel_drops_its_messages_and_its_epoch(store: &dyn HistoryStore) {
    append(store, &[entry("c", 1, 0), entry("keep", 1, 0)]).unwrap();
    store.clear("c").unwrap();
    let cleared = store.open_channel("c", 10).unwrap();
    assert_eq!((cleared.epoch, cleared.last_seq), (None, 0));
    assert!(store.latest("c", None, 10).unwrap().is_empty());
    assert_eq!(store.seq_of("c", "id-1").unwrap(), None);
    assert_eq!(seqs(store.latest("keep", None, 10).unwrap()), vec![1]);
}

fn huge_positions_from_clients_read_nothing_instead_of_failing(store: &dyn HistoryStore) {
    let batch: Vec<_> = (1..=3).map(|n| entry("c", n, 0)).collect();
    append(store, &batch).unwrap();
    assert!(store
        .range("c", u64::MAX, u64::MAX, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(
        seqs(store.range("c", 1, u64::MAX, usize::MAX).unwrap()),
        vec![2, 3]
    );
    assert_eq!(
        seqs(store.latest("c", Some(u64::MAX), usize::MAX).unwrap()),
        vec![1, 2, 3]
    );
    assert!(store.latest("c", Some(0), 10).unwrap().is_empty());
}

fn ranges_and_pages_come_oldest_first(store: &dyn HistoryStore) {
    let batch: Vec<_> = (1..=10).map(|n| entry("c", n, 0)).collect();
    append(store, &batch).unwrap();
    assert_eq!(seqs(store.range("c", 3, 7, 100).unwrap()), vec![4, 5, 6, 7]);
    assert_eq!(seqs(store.range("c", 3, 10, 2).unwrap()), vec![4, 5]);
    assert_eq!(seqs(store.latest("c", None, 3).unwrap()), vec![8, 9, 10]);
    assert_eq!(seqs(store.latest("c", Some(8), 3).unwrap()), vec![5, 6, 7]);
    assert!(store.latest("other", None, 3).unwrap().is_empty());
}

fn trimming_keeps_the_newest_by_count_and_age(store: &dyn HistoryStore) {
    let batch: Vec<_> = (1..=10).map(|n| entry("c", n, n * 1000)).collect();
    append(store, &batch).unwrap();
    let by_count = Retention {
        count: 4,
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(store.trim(&|_| by_count, 10_000).unwrap(), 6);
    assert_eq!(
        seqs(store.latest("c", None, 100).unwrap()),
        vec![7, 8, 9, 10]
    );
    let by_age = Retention {
        count: 100,
        max_age: Duration::from_secs(2),
    };
    store.trim(&|_| by_age, 10_500).unwrap();
    assert_eq!(seqs(store.latest("c", None, 100).unwrap()), vec![9, 10]);
    // Trimming never rewinds the channel's seq while anything of it is kept...
    assert_eq!(store.open_channel("c", 10).unwrap().last_seq, 10);
    // ...and a channel trimmed to nothing is forgotten: its next message starts a new epoch.
    let everything = Retention {
        count: 100,
        max_age: Duration::from_millis(1),
    };
    store.trim(&|_| everything, 1_000_000).unwrap();
    assert_eq!(store.open_channel("c", 10).unwrap().epoch, None);
}

fn each_channel_is_trimmed_to_its_own_retention(store: &dyn HistoryStore) {
    for channel in ["small", "large"] {
        let batch: Vec<_> = (1..=10).map(|n| entry(channel, n, 0)).collect();
        append(store, &batch).unwrap();
    }
    let retention = |channel: &str| Retention {
        count: if channel == "small" { 2 } else { 8 },
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(store.trim(&retention, 0).unwrap(), 8 + 2);
    assert_eq!(seqs(store.latest("small", None, 100).unwrap()), vec![9, 10]);
    assert_eq!(store.latest("large", None, 100).unwrap().len(), 8);
}

macro_rules! store_suite {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn a_channel_exists_only_once_something_was_stored_in_it() {
                super::a_channel_exists_only_once_something_was_stored_in_it(&$make);
            }

            #[test]
            fn a_batch_with_a_stored_seq_is_refused_whole() {
                super::a_batch_with_a_stored_seq_is_refused_whole(&$make);
            }

            #[test]
            fn the_store_knows_every_id_it_holds_and_refuses_a_second_copy() {
                super::the_store_knows_every_id_it_holds_and_refuses_a_second_copy(&$make);
            }

            #[test]
            fn clearing_a_channel_drops_its_messages_and_its_epoch() {
                super::clearing_a_channel_drops_its_messages_and_its_epoch(&$make);
            }

            #[test]
            fn huge_positions_from_clients_read_nothing_instead_of_failing() {
                super::huge_positions_from_clients_read_nothing_instead_of_failing(&$make);
            }

            #[test]
            fn the_outbox_keeps_events_in_order_until_delivered_and_dead_ones_can_be_replayed() {
                super::the_outbox_keeps_events_in_order_until_delivered_and_dead_ones_can_be_replayed(&$make);
            }

            #[test]
            fn ranges_and_pages_come_oldest_first() {
                super::ranges_and_pages_come_oldest_first(&$make);
            }

            #[test]
            fn trimming_keeps_the_newest_by_count_and_age() {
                super::trimming_keeps_the_newest_by_count_and_age(&$make);
            }

            #[test]
            fn each_channel_is_trimmed_to_its_own_retention() {
                super::each_channel_is_trimmed_to_its_own_retention(&$make);
            }
        }
    };
}

store_suite!(memory, MemoryHistory::default());
store_suite!(sqlite, SqliteHistory::open(&temp_db()).unwrap());
store_suite!(redis, redis_store());

/// A store on this test binary's own redis-server, under a prefix no other test uses.
fn redis_store() -> RedisHistory {
    RedisHistory::connect(&RedisServer::shared().url(), &unique("suite")).unwrap()
}

#[test]
fn sqlite_history_survives_reopening_the_file() {
    let path = temp_db();
    {
        let store = SqliteHistory::open(&path).unwrap();
        append(&store, &[entry("room1", 1, 0), entry("room1", 2, 0)]).unwrap();
    }
    let store = SqliteHistory::open(&path).unwrap();
    let reopened = store.open_channel("room1", 10).unwrap();
    assert_eq!(
        (reopened.epoch.as_deref(), reopened.last_seq),
        (Some(EPOCH), 2)
    );
    assert_eq!(seqs(store.latest("room1", None, 10).unwrap()), vec![1, 2]);
}

#[test]
fn a_file_that_is_not_a_history_database_is_refused() {
    let path = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"this is not a database, but it is someone's data").unwrap();
    let err = SqliteHistory::open(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("Move the file aside"), "{err}");
    let untouched = std::fs::read(&path).unwrap();
    assert_eq!(
        untouched,
        b"this is not a database, but it is someone's data"
    );
}

fn event(endpoint: &str, channel: &str, n: u64) -> switchboard_hub::OutboxEvent {
    switchboard_hub::OutboxEvent {
        id: format!("evt_{n}"),
        endpoint: endpoint.into(),
        channel: channel.into(),
        kind: switchboard_hub::EventType::MemberJoined,
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        created_ms: 1000 + n,
        message_seq: None,
    }
}

fn the_outbox_keeps_events_in_order_until_delivered_and_dead_ones_can_be_replayed(
    store: &dyn HistoryStore,
) {
    let writes = HookWrites {
        events: vec![
            event("a", "c1", 1),
            event("b", "c1", 2),
            event("a", "c2", 3),
        ],
        members: vec![],
    };
    store.append(&[entry("c1", 1, 0)], &writes).unwrap();
    let pending = store.pending("a", 10).unwrap();
    let ids: Vec<_> = pending.iter().map(|p| p.event.id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_3"]);
    assert_eq!(pending[0].event.body, Bytes::from_static(b"{\"n\":1}"));
    let stats = store.outbox_stats("a").unwrap();
    assert_eq!(
        (stats.pending, stats.dead, stats.oldest_pending_ms),
        (2, 0, Some(1001))
    );
    store.retry_later("a", &pending[0].key, 3, 5000).unwrap();
    let again = store.pending("a", 10).unwrap();
    assert_eq!((again[0].attempts, again[0].next_attempt_ms), (3, 5000));
    store.delivered("a", &pending[1].key).unwrap();
    store.give_up("a", &pending[0].key).unwrap();
    assert!(store.pending("a", 10).unwrap().is_empty());
    assert_eq!(store.outbox_stats("a").unwrap().dead, 1);
    assert_eq!(
        store.outbox_stats("b").unwrap().pending,
        1,
        "endpoints are apart"
    );
    assert_eq!(store.replay_dead(Some("a")).unwrap(), 1);
    let replayed = store.pending("a", 10).unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (replayed[0].event.id.as_str(), replayed[0].attempts),
        ("evt_1", 0)
    );

    // Several deliveries forgotten at once; the endpoint's others and other endpoints' stay.
    let more = HookWrites {
        events: (10..14).map(|n| event("a", "c3", n)).collect(),
        members: vec![],
    };
    store.append(&[entry("c3", 1, 0)], &more).unwrap();
    let waiting = store.pending("a", 10).unwrap();
    assert_eq!(waiting.len(), 5);
    let taken: Vec<String> = waiting[1..4].iter().map(|p| p.key.clone()).collect();
    store.delivered_all("a", &taken).unwrap();
    store.delivered_all("a", &[]).unwrap();
    let left: Vec<_> = store
        .pending("a", 10)
        .unwrap()
        .iter()
        .map(|p| p.event.id.clone())
        .collect();
    assert_eq!(left, ["evt_1", "evt_13"]);
    assert_eq!(store.outbox_stats("b").unwrap().pending, 1);
}
