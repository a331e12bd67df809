//! Several nodes behind one Redis: each test starts its own `redis-server` (append-only, fsync
//! always) on a free loopback port and two or three real `switchboard` nodes on it, and
//! connects clients to different nodes.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{http_get, http_post, TestServer, WAIT};
use switchboard_client::{channel_options, Client, ClientError};
use switchboard_protocol::{Action, ErrorCode, Frame};
use switchboard_testkit::{unique, RedisServer};

const FAST: [(&str, &str); 3] = [
    ("SWITCHBOARD_FRAMES_PER_SECOND", "1000000"),
    ("SWITCHBOARD_FRAME_BURST", "1000000"),
    ("SWITCHBOARD_API_KEYS", "cluster-key"),
];

/// `count` nodes sharing `redis` under one fresh prefix.
fn nodes(redis: &RedisServer, count: usize, env: &[(&str, &str)]) -> Vec<TestServer> {
    let prefix = unique("cluster");
    let env: Vec<(&str, &str)> = FAST.iter().chain(env).copied().collect();
    (0..count)
        .map(|_| TestServer::start_node(&redis.url(), &prefix, &env))
        .collect()
}

/// The next `message` or `event` frame.
async fn next_message(client: &mut Client) -> Frame {
    loop {
        let frame = client
            .next_frame_within(WAIT)
            .await
            .unwrap()
            .expect("a message arrives");
        if matches!(frame.action, Action::Message | Action::Event) {
            return frame;
        }
    }
}

fn socket_ids(full: &Frame) -> Vec<String> {
    let mut ids: Vec<String> = full.payload["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["socketId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn clients_on_three_nodes_share_messages_in_order_and_one_presence_list() {
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 3, &[]);
    let mut clients = Vec::new();
    for node in &cluster {
        clients.push(node.client().await);
    }
    // Each joiner's list is everyone before it plus itself, so its own id is the new one.
    let mut ids: Vec<String> = Vec::new();
    let mut own = Vec::new();
    for client in &mut clients {
        client.join("room1", true, false).await.unwrap();
        let full = client.expect(Action::PresenceFull, WAIT).await.unwrap();
        let listed = socket_ids(&full);
        own.push(listed.iter().find(|id| !ids.contains(id)).unwrap().clone());
        ids = listed;
    }
    // The last joiner's list holds all three sockets, whichever node they are on.
    assert_eq!(ids.len(), 3, "{ids:?}");
    // The first one hears the two later joins, from the other nodes.
    for _ in 0..2 {
        let update = clients[0]
            .expect(Action::PresenceUpdate, WAIT)
            .await
            .unwrap();
        assert_eq!(update.payload["action"], "join");
    }

    // All three send at once; every node delivers the same order, seq 1..=60 without holes.
    for round in 0..20 {
        for (n, client) in clients.iter_mut().enumerate() {
            client
                .send(
                    Action::Message,
                    json!({"channel": "room1"}),
                    json!({"from": n, "round": round}),
                )
                .await
                .unwrap();
        }
    }
    let mut orders = Vec::new();
    for client in &mut clients {
        let mut order = Vec::new();
        for _ in 0..60 {
            let frame = next_message(client).await;
            order.push((frame.seq().unwrap(), frame.payload.clone()));
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let seqs: Vec<u64> = orders[0].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    for n in 0..3 {
        let rounds: Vec<&Value> = orders[0]
            .iter()
            .filter(|(_, p)| p["from"] == n)
            .map(|(_, p)| &p["round"])
            .collect();
        let expected: Vec<Value> = (0..20).map(|r| json!(r)).collect();
        assert_eq!(rounds, expected.iter().collect::<Vec<_>>(), "sender {n}");
    }

    // A message for one socket reaches it on its node and nobody else.
    let mut options = channel_options("room1");
    options.insert("socketId".into(), json!(own[2]));
    clients[0]
        .request(Action::Message, options, json!("just for you"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut clients[2]).await.payload,
        json!("just for you")
    );
    for client in &mut clients[..2] {
        let extra = client
            .next_frame_within(Duration::from_millis(300))
            .await
            .unwrap();
        assert!(extra.is_none(), "{extra:?}");
    }
    let mut options = channel_options("room1");
    options.insert(
        "socketId".into(),
        json!("00000000-0000-0000-0000-000000000000"),
    );
    let refused = clients[1]
        .request(Action::Message, options, json!("nobody"))
        .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::UnknownSocket,
                ..
            })
        ),
        "{refused:?}"
    );

    // A server-side publish on one node reaches members of every node.
    let posted = http_post(
        &cluster[1].addr,
        "/api/channels/room1/messages",
        "Authorization: Bearer cluster-key\r\n",
        r#"{"payload":{"notice":"from the API"}}"#,
    )
    .await;
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    for client in &mut clients {
        let event = next_message(client).await;
        assert_eq!(event.action, Action::Event);
        assert_eq!(event.seq(), Some(61));
    }

    // Volatile updates cross nodes too, and never come back to their sender.
    let mut options = channel_options("room1");
    options.insert("volatile".into(), json!(true));
    clients[2]
        .send(Action::Message, Value::Object(options), json!({"x": 0.5}))
        .await
        .unwrap();
    for client in &mut clients[..2] {
        assert_eq!(next_message(client).await.payload, json!({"x": 0.5}));
    }
    assert!(clients[2]
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[]);
    let mut sender = cluster[1].client().await;
    sender.join("room1", false, false).await.unwrap();
    let mut away = cluster[0].client().await;
    away.join("room1", false, false).await.unwrap();
    for n in 1..=5 {
        sender.publish("room1", json!({"n": n})).await.unwrap();
    }
    let mut last = None;
    for _ in 1..=5 {
        last = Some(next_message(&mut away).await);
    }
    let last = last.unwrap();
    drop(away);
    for n in 6..=300 {
        sender.publish("room1", json!({"n": n})).await.unwrap();
    }
    // Back through the other node, from where it left off.
    let mut back = cluster[1].client().await;
    let mut options = channel_options("room1");
    options.insert(
        "since".into(),
        json!({"epoch": last.epoch().unwrap(), "seq": last.seq().unwrap()}),
    );
    back.request(Action::Join, options, json!({}))
        .await
        .unwrap();
    sender.publish("room1", json!({"n": "live"})).await.unwrap();
    let mut received = Vec::new();
    for _ in 6..=301 {
        received.push(next_message(&mut back).await.payload["n"].clone());
    }
    let mut expected: Vec<Value> = (6..=300).map(|n| json!(n)).collect();
    expected.push(json!("live"));
    assert_eq!(received, expected);
    assert!(back
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_node_whose_subscription_drops_during_a_burst_delivers_all_it_missed_in_order() {
    missed_burst_is_caught_up(&[]).await;
}

#[tokio::test]
async fn a_catch_up_larger_than_a_small_outbox_reaches_every_member_that_reads() {
    // An operator's small outbox (16 frames) against a catch-up of 600 messages, read from
    // Redis 256 at a time: each node hands what it reads to its sockets in turns of a quarter
    // of an outbox, which they write in between, so members that read are not cut off with
    // 1013 for the size of a page (with a page delivered at once, they are). One runtime
    // worker, so the sockets' tasks run between the turns.
    missed_burst_is_caught_up(&[
        ("SWITCHBOARD_OUTBOX_CAPACITY", "16"),
        ("TOKIO_WORKER_THREADS", "1"),
    ])
    .await;
}

/// Two nodes on `env` take a burst of 300 messages through their subscriptions, then miss one
/// of 600 while their subscriptions are down and catch up from the channel's stream: a member
/// on each gets all of them, once and in order, and each node reads back from Redis exactly
/// what it missed (none of the first burst is taken for a gap while it is on its way).
async fn missed_burst_is_caught_up(env: &[(&str, &str)]) {
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 2, env);
    let mut sender = cluster[0].client().await;
    sender.join("burst", false, false).await.unwrap();
    let mut reader = cluster[1].client().await;
    reader.join("burst", false, false).await.unwrap();
    support::send_numbered(&mut sender, "burst", 1..300).await;
    // Its ok comes once it is stored, and so are the 299 before it.
    sender.publish("burst", json!({"n": 300})).await.unwrap();
    let (mut sender, reader) = both_read(sender, reader, 1..=300).await;
    for node in &cluster {
        assert_eq!(caught_up(node).await, 0, "read back what was never missed");
    }
    // Every node's subscription connection is cut, and may not subscribe again until the
    // burst is stored: 600 messages (the writer's connection is no subscription), all of them
    // missed by both nodes. Once allowed, each node resubscribes (its backoff is at most 2 s)
    // and reads what it missed from the channel's stream, a page at a time.
    redis_cli(&redis, &["ACL", "SETUSER", "default", "-subscribe"]);
    redis_cli(&redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    support::send_numbered(&mut sender, "burst", 301..900).await;
    sender.publish("burst", json!({"n": 900})).await.unwrap();
    redis_cli(&redis, &["ACL", "SETUSER", "default", "+subscribe"]);
    let (_, mut reader) = both_read(sender, reader, 301..=900).await;
    while let Some(frame) = reader
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        assert_ne!(frame.action, Action::Message, "delivered twice: {frame:?}");
    }
    for node in &cluster {
        assert_eq!(caught_up(node).await, 600, "read back just what was missed");
    }
}

/// A node that stops for seconds (a paused VM, a stalled process) delivers everything sent
/// meanwhile once it runs again: in order, once, and then live as before; the other node's
/// members never wait for it.
#[tokio::test]
async fn a_node_paused_for_seconds_delivers_all_it_missed_in_order_once_it_runs_again() {
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[]);
    let mut sender = cluster[0].client().await;
    sender.join("paused", false, false).await.unwrap();
    let mut reader = cluster[1].client().await;
    reader.join("paused", false, false).await.unwrap();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), cluster[1].pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    };
    signal("STOP");
    support::send_numbered(&mut sender, "paused", 1..200).await;
    sender.publish("paused", json!({"n": 200})).await.unwrap();
    for n in 1..=200u64 {
        let got = next_message(&mut sender).await.payload["n"].clone();
        assert_eq!(
            got, n,
            "the running node's members get everything meanwhile"
        );
    }
    // Longer than the two seconds a node's deliverer may fall behind before it reads back
    // from the channels' streams instead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal("CONT");
    for n in 1..=200u64 {
        let got = next_message(&mut reader).await.payload["n"].clone();
        assert_eq!(got, n, "in order, once, after the pause");
    }
    while let Some(frame) = reader
        .next_frame_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        assert_ne!(frame.action, Action::Message, "delivered twice: {frame:?}");
    }
    sender.publish("paused", json!({"n": 201})).await.unwrap();
    assert_eq!(
        next_message(&mut reader).await.payload["n"],
        201,
        "live again"
    );
}

/// The sender and the reader each read `numbers`, once and in order, at the same time (as
/// members do).
async fn both_read(
    mut sender: Client,
    mut reader: Client,
    numbers: std::ops::RangeInclusive<u64>,
) -> (Client, Client) {
    let expected = numbers.clone();
    let reading = tokio::spawn(async move {
        for n in expected {
            let got = next_message(&mut reader).await.payload["n"].clone();
            assert_eq!(got, n, "in order, once (reader)");
        }
        reader
    });
    for n in numbers {
        let got = next_message(&mut sender).await.payload["n"].clone();
        assert_eq!(got, n, "in order, once (sender)");
    }
    (sender, reading.await.unwrap())
}

/// How many stored messages `node` read back from Redis because its subscription missed them.
async fn caught_up(node: &TestServer) -> u64 {
    let text = http_get(&node.addr, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_redis_caught_up_messages_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no catch-up count in {text}"))
}

/// Runs `redis-cli` against `redis`; panics with its output when it fails.
fn redis_cli(redis: &RedisServer, args: &[&str]) {
    let url = redis.url();
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url.as_str()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !said.starts_with("ERR"),
        "redis-cli {args:?}: {output:?}"
    );
}

#[tokio::test]
async fn a_killed_node_takes_its_sockets_out_of_presence_within_the_node_ttl() {
    let redis = RedisServer::start();
    // The back end hears of it too: a `member.left` webhook saying the node died.
    let (hooks, heard) = support::gate(|_| json!({})).await;
    let mut cluster = nodes(
        &redis,
        2,
        &[
            ("SWITCHBOARD_NODE_TTL_MS", "1500"),
            ("SWITCHBOARD_WEBHOOK_URL", &hooks),
            (
                "SWITCHBOARD_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("SWITCHBOARD_WEBHOOK_EVENTS", "member.left"),
        ],
    );
    let mut doomed = cluster[0].client().await;
    doomed.join("room1", true, false).await.unwrap();
    let mut survivor = cluster[1].client().await;
    survivor.join("room1", true, false).await.unwrap();
    let full = survivor.expect(Action::PresenceFull, WAIT).await.unwrap();
    assert_eq!(socket_ids(&full).len(), 2);
    let doomed_id = doomed
        .expect(Action::PresenceFull, WAIT)
        .await
        .map(|f| socket_ids(&f))
        .unwrap()[0]
        .clone();

    let killed = Instant::now();
    cluster[0].kill();
    // (The doomed socket's own join may still arrive first: the node that accepted it tells
    // the others asynchronously; presence updates are idempotent by socketId.)
    let leave = loop {
        let update = survivor
            .expect(Action::PresenceUpdate, Duration::from_secs(8))
            .await
            .unwrap();
        if update.payload["action"] != "join" {
            break update;
        }
    };
    let took = killed.elapsed();
    assert_eq!(leave.payload["action"], "leave");
    assert_eq!(leave.payload["presence"]["socketId"], json!(doomed_id));
    // node_ttl (1.5 s) plus one beat (0.5 s), with room for a busy machine; well under the
    // default node_ttl (10 s), so the setting is what decided.
    assert!(took < Duration::from_secs(6), "took {took:?}");

    let mut newcomer = cluster[1].client().await;
    newcomer.join("room1", true, false).await.unwrap();
    let full = newcomer.expect(Action::PresenceFull, WAIT).await.unwrap();
    assert_eq!(socket_ids(&full).len(), 2, "survivor and newcomer only");
    assert!(!socket_ids(&full).contains(&doomed_id));

    // One node at a time delivers webhooks, under a lease the survivor takes over once it
    // lapses (up to about 13 s when the killed node held it).
    let left = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found = heard.lock().unwrap().iter().find_map(|event| {
                (event["type"] == "member.left"
                    && event["data"]["client"]["socketId"] == json!(doomed_id))
                .then(|| event.clone())
            });
            if let Some(event) = found {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no member.left webhook for the killed node's socket");
    assert_eq!(left["data"]["reason"], "node_died", "{left}");
    assert_eq!(left["data"]["channel"], "room1", "{left}");
}

#[tokio::test]
async fn after_a_redis_crash_nodes_recover_and_no_acknowledged_message_is_lost() {
    let mut redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[]);
    let mut sender = cluster[0].client().await;
    sender.join("ledger", false, false).await.unwrap();
    let mut reader = cluster[1].client().await;
    reader.join("ledger", false, false).await.unwrap();
    let mut acked = Vec::new();
    for n in 1..=30 {
        sender.publish("ledger", json!({"n": n})).await.unwrap();
        acked.push(n);
    }

    let healthy = http_get(&cluster[1].addr, "/healthz").await;
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");
    assert!(healthy.contains("\"node\""), "{healthy}");

    redis.kill();
    // While Redis is down a send is refused with a clear code, not acknowledged, and the node
    // tells its load balancer.
    let unhealthy = http_get(&cluster[1].addr, "/healthz").await;
    assert!(unhealthy.starts_with("HTTP/1.1 503"), "{unhealthy}");
    assert!(unhealthy.contains("redis_unreachable"), "{unhealthy}");
    let refused = sender.publish("ledger", json!({"n": "down"})).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::Internal,
                ..
            })
        ),
        "{refused:?}"
    );
    redis.restart();

    // The nodes reconnect on their own; sends succeed again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 31;
    while n <= 40 {
        match sender.publish("ledger", json!({"n": n})).await {
            Ok(()) => {
                acked.push(n);
                n += 1;
            }
            Err(err) => {
                assert!(Instant::now() < deadline, "nodes did not recover: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    let healthy = http_get(&cluster[1].addr, "/healthz").await;
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");

    // The reader (on the other node) got every acknowledged message once, in order, and
    // history on either node holds them all.
    let mut received = Vec::new();
    while received.len() < acked.len() {
        let frame = next_message(&mut reader).await;
        received.push(frame.payload["n"].as_i64().unwrap());
    }
    assert_eq!(received, acked);
    // The sender's node has delivered the last one too: a history page ends at what its node
    // has delivered, and each node's subscriber catches up on its own.
    while next_message(&mut sender).await.payload["n"] != 40 {}
    let mut fresh = cluster[0].client().await;
    let mut options = channel_options("ledger");
    options.insert("limit".into(), json!(100));
    fresh.join("ledger", false, false).await.unwrap();
    fresh
        .request(Action::History, options, Value::Null)
        .await
        .unwrap();
    let page = fresh.expect(Action::History, WAIT).await.unwrap();
    let stored: Vec<i64> = page.payload["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, acked);
    let seqs: Vec<u64> = page.payload["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["options"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_node_refuses_to_start_without_its_redis_and_says_where_it_looked() {
    let port = switchboard_testkit::free_port();
    let output = support::run_expecting_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("SWITCHBOARD_ENGINE", "redis")
            .env(
                "SWITCHBOARD_REDIS_URL",
                format!("redis://app:hunter2@127.0.0.1:{port}"),
            )
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "switchboard"),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("redis_url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

#[tokio::test]
async fn the_shipped_cluster_config_starts_a_node() {
    let redis = RedisServer::start();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cluster.toml");
    // The variables point the file's settings at this test's Redis (a variable wins).
    let node = TestServer::start_node(
        &redis.url(),
        &unique("shipped"),
        &[("SWITCHBOARD_CONFIG", config)],
    );
    let mut client = node.client().await;
    client.join("room1", true, false).await.unwrap();
    client.publish("room1", json!("hello")).await.unwrap();
    assert_eq!(next_message(&mut client).await.seq(), Some(1));
}

#[tokio::test]
async fn a_node_stopped_with_sigterm_takes_its_sockets_out_of_presence_at_once() {
    let redis = RedisServer::start();
    // The default node_ttl (10 s): only a clean departure explains a quick leave.
    let mut cluster = nodes(&redis, 2, &[]);
    let mut leaving = cluster[0].client().await;
    leaving.join("room1", true, false).await.unwrap();
    let mut staying = cluster[1].client().await;
    staying.join("room1", true, false).await.unwrap();
    assert_eq!(
        socket_ids(&staying.expect(Action::PresenceFull, WAIT).await.unwrap()).len(),
        2
    );
    let stopped = Instant::now();
    assert!(cluster[0].terminate(), "the node exits cleanly");
    let leave = staying
        .expect(Action::PresenceUpdate, Duration::from_secs(6))
        .await
        .unwrap();
    assert_eq!(leave.payload["action"], "leave");
    // Well under the default node_ttl (10 s), with room for a busy machine's shutdown.
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let mut newcomer = cluster[1].client().await;
    newcomer.join("room1", true, false).await.unwrap();
    let full = newcomer.expect(Action::PresenceFull, WAIT).await.unwrap();
    assert_eq!(socket_ids(&full).len(), 2, "staying and newcomer only");
}

#[tokio::test]
async fn a_leave_lost_while_redis_was_down_is_made_good_once_it_is_back() {
    let mut redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[("SWITCHBOARD_NODE_TTL_MS", "3000")]);
    let mut gone = cluster[0].client().await;
    gone.join("room1", true, false).await.unwrap();
    let mut staying = cluster[1].client().await;
    staying.join("room1", true, false).await.unwrap();
    assert_eq!(
        socket_ids(&staying.expect(Action::PresenceFull, WAIT).await.unwrap()).len(),
        2
    );
    redis.kill();
    gone.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    // The node lists its members again at its next heartbeat, and says who left meanwhile.
    let leave = staying
        .expect(Action::PresenceUpdate, Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(leave.payload["action"], "leave");
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let mut probe = cluster[1].client().await;
        if probe.join("room1", true, false).await.is_ok() {
            let full = probe.expect(Action::PresenceFull, WAIT).await.unwrap();
            if socket_ids(&full).len() == 2 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the lost leave was never made good"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn shared_history_is_trimmed_to_the_retention_by_one_node_at_a_time() {
    let redis = RedisServer::start();
    let cluster = nodes(
        &redis,
        2,
        &[
            ("SWITCHBOARD_HISTORY_KEEP", "5"),
            ("SWITCHBOARD_HISTORY_TRIM_INTERVAL_MS", "50"),
        ],
    );
    let mut sender = cluster[0].client().await;
    sender.join("room1", false, false).await.unwrap();
    for n in 1..=20 {
        sender.publish("room1", json!({"n": n})).await.unwrap();
    }
    let mut reader = cluster[1].client().await;
    reader.join("room1", false, false).await.unwrap();
    // Trimming runs every 50 ms on whichever node takes the turn: ask until it caught up.
    let deadline = tokio::time::Instant::now() + WAIT;
    let kept = loop {
        let mut options = channel_options("room1");
        options.insert("limit".into(), json!(100));
        reader
            .request(Action::History, options, Value::Null)
            .await
            .unwrap();
        let page = reader.expect(Action::History, WAIT).await.unwrap();
        let kept: Vec<u64> = page.payload["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["options"]["seq"].as_u64().unwrap())
            .collect();
        if kept.len() <= 5 || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept, vec![16, 17, 18, 19, 20]);
}

#[tokio::test]
async fn a_node_without_members_publishes_server_events_to_the_others() {
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[]);
    let mut member = cluster[0].client().await;
    member.join("news", false, false).await.unwrap();
    member.publish("news", json!("first")).await.unwrap();
    assert_eq!(next_message(&mut member).await.seq(), Some(1));
    // Node 1 has nobody in "news": it still stores and publishes, in the same seq order.
    for n in 2..=3 {
        let posted = http_post(
            &cluster[1].addr,
            "/api/channels/news/messages",
            "Authorization: Bearer cluster-key\r\n",
            &format!(r#"{{"n":{n}}}"#),
        )
        .await;
        assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
        let event = next_message(&mut member).await;
        assert_eq!(event.action, Action::Event);
        assert_eq!(
            (event.seq(), event.payload["n"].as_u64()),
            (Some(n), Some(n))
        );
    }
    let health = http_get(&cluster[1].addr, "/healthz").await;
    assert!(
        health.contains("\"channels\":0"),
        "nothing stays active: {health}"
    );
}

#[tokio::test]
async fn any_node_answers_the_admin_api_for_the_whole_cluster() {
    const KEY: &str = "cluster-admin-key-0123";
    let redis = RedisServer::start();
    let cluster = nodes(&redis, 2, &[("SWITCHBOARD_ADMIN_KEYS", KEY)]);
    let (a, b) = (&cluster[0].addr, &cluster[1].addr);
    let mut ada = cluster[0].client().await;
    let mut ben = cluster[1].client().await;
    let ada_id = support::join_as(&mut ada, "ops", "Ada").await;
    let ben_id = support::join_as(&mut ben, "ops", "Ben").await;
    ada.publish("ops", json!("from node A")).await.unwrap();

    // Either node lists the channel with both members, on both nodes, and its history.
    for node in [a, b] {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, list) =
                support::api(node, "GET", "/api/admin/channels?filter=ops", Some(KEY), "").await;
            assert_eq!(status, 200, "{list}");
            let ops = list["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["channel"] == "ops")
                .cloned();
            if ops
                .as_ref()
                .is_some_and(|c| c["members"] == 2 && c["sockets"] == 2)
            {
                assert_eq!(ops.unwrap()["last_seq"], 1);
                break;
            }
            assert!(Instant::now() < deadline, "node {node} listed {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, channel) =
            support::api(node, "GET", "/api/admin/channels/ops", Some(KEY), "").await;
        assert_eq!(status, 200, "{channel}");
        let mut listed: Vec<String> = channel["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["socketId"].as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let mut expected = vec![ada_id.clone(), ben_id.clone()];
        expected.sort();
        assert_eq!(listed, expected, "node {node}: {channel}");
        let nodes_of: std::collections::HashSet<&str> = channel["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["node"].as_str())
            .collect();
        assert_eq!(nodes_of.len(), 2, "members are on two nodes: {channel}");
        assert_eq!(channel["history"][0]["payload"], "from node A");
    }

    // Node B removes Ada (on node A) from the channel: she is told, Ben sees her leave.
    let path = format!("/api/admin/channels/ops/members/{ada_id}");
    let (status, answer) = support::api(b, "DELETE", &path, Some(KEY), "").await;
    assert_eq!(status, 200, "{answer}");
    let told = loop {
        let frame = ada.expect(Action::Event, WAIT).await.unwrap();
        if frame.seq().is_none() {
            break frame;
        }
    };
    assert_eq!(told.payload["kind"], "removed");
    let left = ben.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    assert_eq!(left.payload["action"], "leave");
    assert_eq!(left.payload["presence"]["socketId"], ada_id.as_str());

    // Node A disconnects Ben (on node B): his socket closes with 4001.
    let path = format!("/api/admin/sockets/{ben_id}");
    let (status, answer) = support::api(a, "DELETE", &path, Some(KEY), "").await;
    assert_eq!(status, 200, "{answer}");
    let closed = support::close_code(&mut ben).await;
    assert_eq!(closed, Some(4001));
    // Once its node has let it go, no node finds it, whichever is asked.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, answer) = support::api(b, "DELETE", &path, Some(KEY), "").await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still found: {status} {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Node B clears the history Node A's client wrote.
    let (status, _) = support::api(
        b,
        "DELETE",
        "/api/admin/channels/ops/history",
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (_, channel) = support::api(a, "GET", "/api/admin/channels/ops", Some(KEY), "").await;
    assert_eq!(channel["history"], json!([]), "{channel}");
}
