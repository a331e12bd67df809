//! The admin API over real HTTP against a real server with real clients: what operators see,
//! what they do, that nothing answers without an admin key, that the OpenAPI document matches
//! the routes, and that `/metrics` counts what happened.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{TestServer, WAIT};
use switchboard_client::{channel_options, ClientError};
use switchboard_protocol::Action;

const ADMIN: &str = "admin-key-0123456789";

fn server(extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("SWITCHBOARD_ADMIN_KEYS", ADMIN),
        ("SWITCHBOARD_API_KEYS", "publish-key"),
    ];
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

/// Status and JSON body of an HTTP request, with the admin key unless `key` says otherwise.
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Value) {
    support::api(&server.addr, method, path, key, body).await
}

async fn admin(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, Value) {
    call(server, method, path, Some(ADMIN), body).await
}

/// The socket id the server gave `client`, read from a presence list of `channel`.
async fn socket_of(client: &mut switchboard_client::Client, channel: &str, name: &str) -> String {
    support::join_as(client, channel, name).await
}

#[tokio::test]
async fn without_a_valid_admin_key_nothing_answers_and_nothing_leaks() {
    let server = server(&[]);
    let mut client = server.client().await;
    let socket = socket_of(&mut client, "secret-room", "Hidden").await;
    client.publish("secret-room", json!("kept")).await.unwrap();
    // Every admin route the OpenAPI document names, by every method, as an anonymous caller,
    // with a wrong key and with a publish key.
    let (_, doc) = call(&server, "GET", "/api/openapi.json", None, "").await;
    let mut tried = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/admin/") {
            continue;
        }
        let path = path
            .replace("{channel}", "secret-room")
            .replace("{socketId}", &socket);
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            for key in [None, Some("wrong"), Some("publish-key")] {
                let (status, body) = call(&server, &method, &path, key, "{}").await;
                assert_eq!(status, 401, "{method} {path} with {key:?}");
                assert_eq!(body["error"]["code"], "unauthorized");
                let text = body.to_string();
                assert!(
                    !text.contains("secret-room") && !text.contains(&socket),
                    "{text}"
                );
                tried += 1;
            }
        }
    }
    assert_eq!(tried, 8 * 3, "every admin route was tried");
    // Nothing happened: the socket is still in its channel and the history is whole.
    client
        .publish("secret-room", json!("still here"))
        .await
        .unwrap();
    let (_, room) = admin(&server, "GET", "/api/admin/channels/secret-room", "").await;
    assert_eq!(room["history_size"], 2, "{room}");
    assert_eq!(room["members"][0]["socketId"], socket.as_str());
    let off = TestServer::start();
    let (status, body) = call(&off, "GET", "/api/admin/channels", Some(ADMIN), "").await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin_keys"));
}

#[tokio::test]
async fn operators_see_live_channels_their_members_and_history() {
    let server = server(&[]);
    let mut ann = server.client_as("u-ann", "Ann").await;
    let mut guest = server.client().await;
    let ann_socket = socket_of(&mut ann, "support/1", "Ann").await;
    socket_of(&mut guest, "support/1", "Guest").await;
    guest.join("lobby", false, false).await.unwrap();
    for n in 1..=3 {
        ann.publish("support/1", json!({"n": n})).await.unwrap();
    }
    let (status, list) = admin(&server, "GET", "/api/admin/channels", "").await;
    assert_eq!(status, 200, "{list}");
    let support = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "support/1")
        .cloned()
        .unwrap();
    assert_eq!(
        (support["members"].as_u64(), support["sockets"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(support["last_seq"], 3);
    assert_eq!(support["history_size"], 3);
    assert_eq!(support["messages_last_minute"], 3);
    let (_, filtered) = admin(&server, "GET", "/api/admin/channels?filter=lob", "").await;
    let names: Vec<&str> = filtered["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["channel"].as_str())
        .collect();
    assert_eq!(names, ["lobby"]);
    let (_, first) = admin(&server, "GET", "/api/admin/channels?limit=1", "").await;
    assert_eq!(first["channels"].as_array().unwrap().len(), 1);
    let after = first["next"].as_str().expect("a next page").to_string();
    let (_, second) = admin(
        &server,
        "GET",
        &format!("/api/admin/channels?limit=1&after={after}"),
        "",
    )
    .await;
    assert_ne!(
        second["channels"][0]["channel"],
        first["channels"][0]["channel"]
    );

    let (status, detail) = admin(
        &server,
        "GET",
        "/api/admin/channels/support%2F1?limit=2",
        "",
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let members = detail["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let ann_row = members
        .iter()
        .find(|m| m["socketId"] == ann_socket.as_str())
        .unwrap();
    assert_eq!(ann_row["signedIn"], true);
    assert_eq!(ann_row["extras"]["name"], "Ann");
    let seqs: Vec<u64> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["options"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    let (_, older) = admin(
        &server,
        "GET",
        "/api/admin/channels/support%2F1?before=2",
        "",
    )
    .await;
    assert_eq!(older["history"].as_array().unwrap().len(), 1);
    assert_eq!(detail["rule"]["join"], "anyone");
}

#[tokio::test]
async fn operators_publish_disconnect_remove_and_clear() {
    let server = server(&[]);
    let mut ann = server.client().await;
    let mut ben = server.client().await;
    let ann_socket = socket_of(&mut ann, "room", "Ann").await;
    let ben_socket = socket_of(&mut ben, "room", "Ben").await;

    let (status, accepted) = admin(
        &server,
        "POST",
        "/api/admin/channels/room/messages",
        r#"{"notice":"maintenance at noon"}"#,
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let event = ann.expect(Action::Event, WAIT).await.unwrap();
    assert_eq!(event.payload["notice"], "maintenance at noon");

    // Removed from one channel: told so, the others see it leave, the socket stays open.
    let (status, _) = admin(
        &server,
        "DELETE",
        &format!("/api/admin/channels/room/members/{ann_socket}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let told = loop {
        let frame = ann.expect(Action::Event, WAIT).await.unwrap();
        if frame.seq().is_none() {
            break frame;
        }
    };
    assert_eq!(told.payload["kind"], "removed");
    let left = ben.expect(Action::PresenceUpdate, WAIT).await.unwrap();
    assert_eq!(left.payload["action"], "leave");
    let refused = ann.publish("room", json!("still here?")).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { .. })),
        "{refused:?}"
    );
    ann.join("elsewhere", false, false).await.unwrap();
    let (status, gone) = admin(
        &server,
        "DELETE",
        &format!("/api/admin/channels/room/members/{ann_socket}"),
        "",
    )
    .await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (404, Some("unknown_socket"))
    );

    // Disconnected: 4001, not to reconnect at once.
    let (status, _) = admin(
        &server,
        "DELETE",
        &format!("/api/admin/sockets/{ben_socket}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let closed = support::close_code(&mut ben).await;
    assert_eq!(closed, Some(4001));
    let unknown = uuid_like();
    let (status, _) = admin(
        &server,
        "DELETE",
        &format!("/api/admin/sockets/{unknown}"),
        "",
    )
    .await;
    assert_eq!(status, 404);

    // Cleared: a client resuming from the old epoch hears of the gap.
    let mut writer = server.client().await;
    writer.join("cleared", false, false).await.unwrap();
    writer.publish("cleared", json!("old")).await.unwrap();
    let old = writer.expect(Action::Message, WAIT).await.unwrap();
    let (status, _) = admin(&server, "DELETE", "/api/admin/channels/cleared/history", "").await;
    assert_eq!(status, 200);
    writer.publish("cleared", json!("new")).await.unwrap();
    // Delivered live on this node too (on a cluster the ok can come first), so the channel
    // here stands in the new epoch.
    let new = writer.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(new.payload, "new");
    let mut resuming = server.client().await;
    let mut options = channel_options("cleared");
    options.insert("since".into(), json!({"epoch": old.epoch(), "seq": 1}));
    resuming
        .request(Action::Join, options, json!({}))
        .await
        .unwrap();
    let gap = resuming.expect(Action::Gap, WAIT).await.unwrap();
    assert_ne!(gap.payload["epoch"].as_str(), old.epoch());
    let history = resuming.expect(Action::History, WAIT).await.unwrap();
    assert_eq!(history.payload["history"][0]["payload"], "new");
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

#[tokio::test]
async fn the_openapi_document_names_every_route_and_every_route_answers() {
    let server = server(&[]);
    let (status, doc) = call(&server, "GET", "/api/openapi.json", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = switchboard::server::admin::api_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    for (method, path) in documented {
        let concrete = path
            .replace("{channel}", "room")
            .replace("{socketId}", &uuid_like());
        let key = if path.starts_with("/api/admin") {
            ADMIN
        } else {
            "publish-key"
        };
        let body = if method == "post" { "{}" } else { "" };
        let (status, answer) =
            call(&server, &method.to_uppercase(), &concrete, Some(key), body).await;
        assert!(
            answer.is_object() && status != 405,
            "{method} {path} is not served: {status} {answer}"
        );
    }
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let server = server(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "1"),
        ("SWITCHBOARD_FRAME_BURST", "4"),
    ]);
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join("counted", false, false).await.unwrap();
    b.join("counted", false, false).await.unwrap();
    a.publish("counted", json!(1)).await.unwrap();
    // An unjoined send, then more than the burst of 4 frames (the join and three sends
    // went before): refusals by code.
    let _ = a.publish("elsewhere", json!(2)).await;
    // What the client was told is what the metrics must say, however fast this machine is.
    let (mut stored, mut limited) = (1.0, 0.0);
    for _ in 0..5 {
        match a.publish("counted", json!(3)).await {
            Ok(_) => stored += 1.0,
            Err(error) if error.to_string().contains("rate_limited") => limited += 1.0,
            Err(error) => panic!("unexpected refusal: {error}"),
        }
    }
    assert!(
        limited >= 1.0,
        "a burst of 4 at 1 frame/s let 8 frames through"
    );
    // Message 1 reached both members (on a cluster, after its ok).
    for client in [&mut a, &mut b] {
        let first = client.expect(Action::Message, WAIT).await.unwrap();
        assert_eq!(first.payload, 1);
    }
    let text = support::http_get(&server.addr, "/metrics").await;
    let value = |name: &str| -> f64 {
        support::metric(&text, name).unwrap_or_else(|| panic!("{name} not in {text}"))
    };
    assert!(value("switchboard_messages_received_total") >= 3.0);
    assert_eq!(value("switchboard_messages_stored_total"), stored);
    assert!(value("switchboard_messages_delivered_total") >= 2.0);
    assert_eq!(
        value("switchboard_deliveries_total"),
        value("switchboard_messages_delivered_total"),
        "the earlier name counts the same"
    );
    assert_eq!(
        value("switchboard_refusals_total{code=\"not_subscribed\"}"),
        1.0
    );
    assert_eq!(
        value("switchboard_refusals_total{code=\"rate_limited\"}"),
        limited
    );
    assert_eq!(value("switchboard_sockets"), 2.0);
    assert_eq!(value("switchboard_channels"), 1.0);
    assert!(value("switchboard_store_commit_seconds_count") >= 1.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(text.contains("switchboard_build_info{"), "{text}");
    assert!(text.contains("# TYPE switchboard_fanout_seconds histogram"));
}

/// Every way in counts what it received and what it refused, by code: the publish API, the
/// admin API, socket upgrades and the pages' server functions, not only socket frames.
#[tokio::test]
async fn refusals_and_messages_are_counted_on_every_path() {
    let server = server(&[]);
    let publish = |key: &'static str, body: &'static str| {
        let addr = server.addr.clone();
        async move {
            let header = format!("X-Api-Key: {key}\r\n");
            let response =
                support::http_post(&addr, "/api/channels/room/messages", &header, body).await;
            support::status_and_body(&response).0
        }
    };
    assert_eq!(publish("publish-key", r#"{"n": 1}"#).await, 202);
    assert_eq!(publish("wrong-key", r#"{"n": 2}"#).await, 401);
    assert_eq!(publish("publish-key", "{not json").await, 400);
    assert_eq!(publish("publish-key", "1").await, 202);
    let (status, _) = call(&server, "GET", "/api/admin/channels", None, "").await;
    assert_eq!(status, 401);
    let (status, body) = admin(&server, "GET", "/api/admin/channels?limit=abc", "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_query", "{body}");
    let (status, body) = admin(&server, "PUT", "/api/admin/channels", "").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let upgrade =
        tokio_tungstenite::connect_async(format!("{}?token=not.a.token", server.url())).await;
    assert!(upgrade.is_err(), "a bad token was let in");
    let form = "room=room&message[id]=m1&message[text]=hi&message[user][id]=g1&message[user][name]=Gil&message[user][colour]=red%3Bposition%3Afixed&message[sent_at]=2026-12-01T10:00:00Z";
    let request = format!(
        "POST /api/chat/send_message HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n{form}",
        addr = server.addr,
        len = form.len()
    );
    let response = support::http(&server.addr, request).await;
    assert_eq!(support::status_and_body(&response).0, 400, "{response}");

    let text = support::http_get(&server.addr, "/metrics").await;
    let value = |name: &str| -> f64 {
        support::metric(&text, name).unwrap_or_else(|| panic!("{name} not in {text}"))
    };
    let refused = |code: &str| value(&format!("switchboard_refusals_total{{code=\"{code}\"}}"));
    assert_eq!(value("switchboard_messages_received_total"), 2.0);
    assert_eq!(value("switchboard_messages_stored_total"), 2.0);
    assert_eq!(
        refused("unauthorized"),
        2.0,
        "a wrong API key and no admin key"
    );
    assert_eq!(refused("bad_json"), 1.0);
    assert_eq!(refused("bad_query"), 1.0);
    assert_eq!(refused("invalid_token"), 1.0);
    assert_eq!(refused("bad_input"), 1.0);
}

/// With `SWITCHBOARD_LOG_FORMAT=json` every log line is a JSON object with fields: refused
/// upgrades and admin requests, admin actions and disconnects by rule are logged at info with
/// their reason and the socket's id, address and user — never a token or a key.
#[tokio::test]
async fn logs_are_structured_and_never_carry_secrets() {
    let dir = support::temp_db();
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let server = TestServer::start_logging(
        &[
            ("SWITCHBOARD_ADMIN_KEYS", ADMIN),
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("SWITCHBOARD_FRAMES_PER_SECOND", "1"),
            ("SWITCHBOARD_FRAME_BURST", "1"),
            ("SWITCHBOARD_RATE_VIOLATION_BURST", "1"),
        ],
        std::fs::File::create(&log_path).unwrap(),
    );
    // A signed-in socket cut off by the frame-rate rule.
    let token = support::token("user-7", "Seven", 3600);
    let mut abuser = switchboard_client::Client::connect_with_token(&server.url(), Some(&token))
        .await
        .unwrap();
    for _ in 0..20 {
        if abuser.send_raw("{}").await.is_err() {
            break;
        }
    }
    let _ = abuser.expect(Action::Message, WAIT).await;
    // A refused upgrade (a bad token) and an admin request with a wrong key.
    let bad = "not-a-token-but-secret-looking";
    assert!(
        switchboard_client::Client::connect_with_token(&server.url(), Some(bad))
            .await
            .is_err()
    );
    let wrong = "wrong-admin-key-never-logged";
    assert_eq!(
        call(&server, "GET", "/api/admin/channels", Some(wrong), "")
            .await
            .0,
        401
    );
    // An admin action.
    let (status, _) = admin(&server, "DELETE", "/api/admin/channels/logged/history", "").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let find = |message: &str| -> &Value {
        lines
            .iter()
            .find(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message))
            })
            .unwrap_or_else(|| panic!("no {message:?} line in {text}"))
    };
    let cut = find("kept sending past its frame rate");
    assert_eq!(cut["level"], "INFO");
    assert_eq!(cut["span"]["user"], "user-7", "{cut}");
    assert_eq!(cut["span"]["ip"], "127.0.0.1", "{cut}");
    assert!(
        cut["span"]["socket"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{cut}"
    );
    let closed = find("closing the socket");
    assert_eq!(closed["fields"]["code"], 1008, "{closed}");
    let refused = find("refused a socket");
    assert!(refused["fields"]["reason"].is_string(), "{refused}");
    let admin_refused = find("admin request without a valid key");
    assert_eq!(admin_refused["level"], "INFO");
    let action = find("admin: clear history");
    assert_eq!(action["fields"]["channel"], "logged", "{action}");
    assert_eq!(action["span"]["key"], 1, "{action}");
    for secret in [bad, wrong, ADMIN, token.as_str()] {
        assert!(!text.contains(secret), "a secret reached the log: {text}");
    }
}

/// The Grafana dashboard shipped in `docs/grafana` charts only metrics the server exports,
/// under the names it exports them.
#[tokio::test]
async fn the_grafana_dashboard_charts_only_metrics_the_server_exports() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana/switchboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let server = server(&[
        (
            "SWITCHBOARD_WEBHOOK_URL",
            "http://127.0.0.1:9/nothing-listens-here",
        ),
        (
            "SWITCHBOARD_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
    ]);
    // Something for the families labelled by code: a refusal, and a close sent (4001).
    let mut client = server.client().await;
    let socket = socket_of(&mut client, "charted", "Chart").await;
    let _ = client.publish("not-joined", json!(1)).await;
    let (status, _) = admin(
        &server,
        "DELETE",
        &format!("/api/admin/sockets/{socket}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    // The close is counted before it is sent.
    assert_eq!(support::close_code(&mut client).await, Some(4001));
    let text = support::http_get(&server.addr, "/metrics").await;
    let exported = |name: &str| {
        text.lines().any(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
    };
    let mut charted = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("switchboard_") || word.starts_with("process_") {
                    charted.push(word.to_string());
                }
            }
        }
    }
    assert!(charted.len() > 20, "{charted:?}");
    let missing: Vec<&String> = charted.iter().filter(|name| !exported(name)).collect();
    assert!(
        missing.is_empty(),
        "charted but not exported: {missing:?}\n{text}"
    );
}

/// An admin key over its rate is refused with 429 and `Retry-After` even when its requests come
/// from many addresses (through a trusted proxy), and another key is not slowed by it.
#[tokio::test]
async fn an_admin_key_over_its_rate_is_refused_from_any_address() {
    let keys = format!("{ADMIN},second-admin-key-0123456789");
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_ADMIN_KEYS", &keys),
        ("SWITCHBOARD_API_REQUESTS_PER_SECOND", "3"),
        ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let get = |n: u32, key: &'static str| {
        let addr = server.addr.clone();
        async move {
            let request = format!(
                "GET /api/admin/channels HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nX-Forwarded-For: 10.0.0.{n}\r\n\r\n"
            );
            support::http(&addr, request).await
        }
    };
    let mut statuses = Vec::new();
    let mut refusal = String::new();
    for n in 0..12 {
        let response = get(n, ADMIN).await;
        let (status, body) = support::status_and_body(&response);
        if status == 429 {
            refusal = response.to_ascii_lowercase();
            assert!(body.contains("rate_limited"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        &statuses[..6],
        [200; 6],
        "a burst of twice the rate: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(refusal.contains("retry-after: 1"), "{refusal}");
    let other = get(99, "second-admin-key-0123456789").await;
    assert_eq!(support::status_and_body(&other).0, 200, "{other}");
}
