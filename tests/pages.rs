//! The pages' ways in — server rendering and server functions over HTTP — held to the same
//! rules as sockets: the caller is who its token (cookie or bearer) says, members-only rooms
//! show nothing to anonymous visitors, server-only rooms take nothing from pages, authors are
//! the server's word, colours are colours, and a page that sends too fast is refused.

mod support;

use serde_json::{json, Value};
use support::{TestServer, WAIT};
use switchboard_protocol::Action;

const RULES: &str = r#"
[[channels]]
pattern = "members-*"
join = "authenticated"

[[channels]]
pattern = "news"
send = "nobody"

[[channels]]
pattern = "slow-*"
messages_per_second = 1
"#;

fn server(extra: &[(&str, &str)]) -> TestServer {
    let path = support::temp_db().with_file_name("pages.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, RULES).unwrap();
    let config: &'static str = Box::leak(path.to_str().unwrap().to_string().into_boxed_str());
    let mut env = vec![("SWITCHBOARD_CONFIG", config)];
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

/// Status and body of a form POST, with an optional token cookie.
async fn post_form(
    server: &TestServer,
    path: &str,
    form: &str,
    token: Option<&str>,
) -> (u16, String) {
    let cookie = token.map_or(String::new(), |t| {
        format!("Cookie: switchboard_token={t}\r\n")
    });
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n{cookie}Content-Length: {len}\r\n\r\n{form}",
        addr = server.addr,
        len = form.len()
    );
    let response = support::http(&server.addr, request).await;
    split(&response)
}

async fn get_page(server: &TestServer, path: &str, token: Option<&str>) -> (u16, String) {
    let cookie = token.map_or(String::new(), |t| {
        format!("Cookie: switchboard_token={t}\r\n")
    });
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}\r\n",
        addr = server.addr
    );
    split(&support::http(&server.addr, request).await)
}

fn split(response: &str) -> (u16, String) {
    support::status_and_body(response)
}

fn message_form(room: &str, id: &str, text: &str, name: &str, colour: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "room={}&message[id]={}&message[text]={}&message[user][id]=guest-1&message[user][name]={}&message[user][colour]={}&message[sent_at]=2026-11-30T10:00:00Z",
        enc(room),
        enc(id),
        enc(text),
        enc(name),
        enc(colour)
    )
}

#[tokio::test]
async fn a_members_only_room_shows_nothing_to_an_anonymous_visitor() {
    let server = server(&[]);
    let mut member = server.client_as("m1", "Mona").await;
    member.join("members-lounge", false, false).await.unwrap();
    member
        .publish("members-lounge", json!({"id": "s1", "text": "the secret plan", "user": {"id": "m1", "name": "Mona", "colour": "#e5484d"}, "sent_at": "2026-11-30T10:00:00Z"}))
        .await
        .unwrap();

    let (status, body) = post_form(
        &server,
        "/api/chat/recent_messages",
        "room=members-lounge",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("secret plan"), "{body}");
    let (_, page) = get_page(&server, "/chat/members-lounge", None).await;
    assert!(
        !page.contains("secret plan"),
        "server rendering obeys the rule too"
    );

    let token = support::token("m2", "Milo", 600);
    let (status, body) = post_form(
        &server,
        "/api/chat/recent_messages",
        "room=members-lounge",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("the secret plan"), "{body}");
    let (_, page) = get_page(&server, "/chat/members-lounge", Some(&token)).await;
    assert!(page.contains("the secret plan"));
    let (status, _) = post_form(
        &server,
        "/api/chat/recent_messages",
        "room=members-lounge",
        Some("not.a.token"),
    )
    .await;
    assert_eq!(
        status, 401,
        "a bad token is refused, not taken for anonymous"
    );
}

#[tokio::test]
async fn pages_cannot_send_where_sockets_cannot() {
    let server = server(&[]);
    let mut reader = server.client().await;
    reader.join("news", false, false).await.unwrap();
    let token = support::token("m1", "Mona", 600);
    for who in [None, Some(token.as_str())] {
        let form = message_form("news", "n1", "fake news", "Mona", "#e5484d");
        let (status, body) = post_form(&server, "/api/chat/send_message", &form, who).await;
        assert_eq!(status, 403, "{body}");
    }
    let form = message_form("members-lounge", "n2", "let me in", "Gil", "#888888");
    let (status, _) = post_form(&server, "/api/chat/send_message", &form, None).await;
    assert_eq!(status, 401);
    assert!(reader
        .next_frame_within(std::time::Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_page_sends_under_the_identity_the_server_gives_it() {
    let server = server(&[]);
    let mut reader = server.client().await;
    reader.join("room1", false, false).await.unwrap();
    let token = support::token("m1", "Mona", 600);
    let form = message_form("room1", "x1", "hello", "The Boss", "#000000");
    let (status, body) = post_form(&server, "/api/chat/send_message", &form, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let frame = reader.expect(Action::Message, WAIT).await.unwrap();
    let client = frame.client.unwrap();
    assert_eq!(
        client.extras["name"], "Mona",
        "the token's name, not the payload's"
    );
    assert!(client.authenticated());

    let form = message_form("room1", "x2", "hi", "Gil", "#30a46c");
    let (status, _) = post_form(&server, "/api/chat/send_message", &form, None).await;
    assert_eq!(status, 200);
    let frame = reader.expect(Action::Message, WAIT).await.unwrap();
    let client = frame.client.unwrap();
    assert_eq!(client.extras["name"], "Gil");
    assert!(
        !client.authenticated(),
        "a guest is never shown as signed in"
    );
}

#[tokio::test]
async fn a_colour_that_is_not_a_colour_never_reaches_the_served_html() {
    let server = server(&[]);
    let evil = "red;position:fixed;inset:0";
    let form = message_form("paint", "c1", "look at me", "Mal", evil);
    let (status, _) = post_form(&server, "/api/chat/send_message", &form, None).await;
    assert_eq!(status, 400, "refused as a person's mistake, not stored");
    let mut socket = server.client().await;
    let refused = socket
        .request(
            Action::Join,
            switchboard_client::channel_options("paint"),
            json!({"extras": {"name": "Mal", "colour": evil}}),
        )
        .await;
    assert!(refused.is_err());
    // A token may carry any claim: the colour is dropped, the message still goes out.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "mal", "name": "Mal", "colour": evil, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
    )
    .unwrap();
    let mut signed_in = switchboard_client::Client::connect_with_token(&server.url(), Some(&token))
        .await
        .unwrap();
    signed_in.join("paint", true, false).await.unwrap();
    signed_in
        .publish("paint", json!({"id": "c2", "text": "styled?", "user": {"id": "mal", "name": "Mal", "colour": evil}, "sent_at": "2026-11-30T10:00:00Z"}))
        .await
        .unwrap();
    let (_, page) = get_page(&server, "/chat/paint", None).await;
    assert!(page.contains("styled?"), "the message is rendered");
    assert!(!page.contains("position:fixed"), "the colour is not");
}

#[tokio::test]
async fn a_page_is_held_to_a_channels_messages_per_second_as_a_socket_is() {
    let server = server(&[]);
    let send = |n: u32, room: &'static str| {
        let form = message_form(room, &format!("m{n}"), "hello", "Sam", "#30a46c");
        let server = &server;
        async move { post_form(server, "/api/chat/send_message", &form, None).await }
    };
    assert_eq!(send(1, "slow-room").await.0, 200);
    let (status, body) = send(2, "slow-room").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("messages per second"), "{body}");
    // Per person: another guest from the same address is not slowed by the first.
    let other = message_form("slow-room", "o1", "me too", "Oli", "#30a46c")
        .replace("message[user][id]=guest-1", "message[user][id]=guest-2");
    let (status, body) = post_form(&server, "/api/chat/send_message", &other, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        send(3, "room1").await.0,
        200,
        "a channel without the rule is not slowed"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(send(4, "slow-room").await.0, 200, "a second later it may");
}

/// A back end whose connect gate refuses the user `banned`, whose join gate closes `closed`
/// and names everyone in `vip`, and whose publish gate refuses spam.
async fn deciding_gate() -> (String, support::Asked) {
    support::gate(|question| {
        let data = &question["data"];
        match question["type"].as_str() {
            Some("gate.connect") if data["extras"]["id"] == "banned" => {
                json!({"allow": false, "reason": "banned from here"})
            }
            Some("gate.join") if data["channel"] == "closed" => {
                json!({"allow": false, "reason": "closed for the night"})
            }
            Some("gate.join") if data["channel"] == "vip" => {
                json!({"allow": true, "extras": {"name": "Guest of honour"}})
            }
            Some("gate.publish") if data["payload"].to_string().contains("spam") => {
                json!({"allow": false, "reason": "no spam, thank you"})
            }
            _ => json!({"allow": true}),
        }
    })
    .await
}

#[tokio::test]
async fn the_back_ends_gates_decide_for_pages_as_they_do_for_sockets() {
    let (gate, asked) = deciding_gate().await;
    let server = server(&[
        ("SWITCHBOARD_GATE_CONNECT_URL", &gate),
        ("SWITCHBOARD_GATE_JOIN_URL", &gate),
        ("SWITCHBOARD_GATE_PUBLISH_URL", &gate),
    ]);
    let mut member = server.client().await;
    member
        .request(
            Action::Join,
            switchboard_client::channel_options("vip"),
            json!({}),
        )
        .await
        .unwrap();

    // The join gate: a closed room shows and takes nothing from a page either.
    let (status, body) = post_form(&server, "/api/chat/recent_messages", "room=closed", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("closed for the night"), "{body}");
    let form = message_form("closed", "c1", "let me in", "Gil", "#30a46c");
    let (status, body) = post_form(&server, "/api/chat/send_message", &form, None).await;
    assert_eq!(status, 403, "{body}");

    // The publish gate, and the join gate's name for the person.
    let form = message_form("vip", "v1", "buy spam", "Gil", "#30a46c");
    let (status, body) = post_form(&server, "/api/chat/send_message", &form, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no spam, thank you"), "{body}");
    let form = message_form("vip", "v2", "good evening", "Gil", "#30a46c");
    assert_eq!(
        post_form(&server, "/api/chat/send_message", &form, None)
            .await
            .0,
        200
    );
    let frame = member.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(frame.payload["text"], "good evening");
    let author = frame.client.expect("a person's message names its author");
    assert_eq!(author.extras["name"], "Guest of honour");

    // The connect gate: a user it refuses gets nothing through a page or a socket.
    let banned = support::token("banned", "Bo", 600);
    let (status, body) = post_form(
        &server,
        "/api/chat/recent_messages",
        "room=vip",
        Some(&banned),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("banned from here"), "{body}");
    let form = message_form("vip", "v3", "let me back", "Bo", "#30a46c");
    let (status, body) = post_form(&server, "/api/chat/send_message", &form, Some(&banned)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("banned from here"), "{body}");
    let upgrade =
        tokio_tungstenite::connect_async(format!("{}?token={banned}", server.url())).await;
    match upgrade {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a socket of a refused user was not refused: {other:?}"),
    }
    let kinds: Vec<String> = asked
        .lock()
        .unwrap()
        .iter()
        .map(|q| q["type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "gate.connect").count() >= 4,
        "{kinds:?}"
    );
}

/// Rendering a room's page asks the back end as a server function does, within the API's
/// rate for the address (a page load is no `/api/` request the limit would count otherwise);
/// the page itself is still served.
#[tokio::test]
async fn page_loads_ask_the_gates_no_faster_than_the_api_rate() {
    let (gate, asked) = deciding_gate().await;
    let server = server(&[
        ("SWITCHBOARD_GATE_CONNECT_URL", &gate),
        ("SWITCHBOARD_GATE_JOIN_URL", &gate),
        ("SWITCHBOARD_API_REQUESTS_PER_SECOND", "2"),
    ]);
    let (status, page) = get_page(&server, "/chat/closed", None).await;
    assert_eq!(status, 200, "a refused history still serves the page");
    assert!(page.contains("closed"), "{page}");
    for _ in 0..12 {
        let (status, _) = get_page(&server, "/chat/lobby", None).await;
        assert_eq!(status, 200);
    }
    let connects = asked
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q["type"] == "gate.connect")
        .count();
    assert!(
        (2..=7).contains(&connects),
        "13 page loads at 2 per second (bursts of 4) asked the connect gate {connects} times"
    );
}

#[tokio::test]
async fn a_page_that_sends_too_fast_is_refused_with_429() {
    let server = server(&[("SWITCHBOARD_PAGE_REQUESTS_PER_SECOND", "2")]);
    let mut statuses = Vec::new();
    for n in 0..8 {
        let form = message_form("room1", &format!("f{n}"), "spam", "Sam", "#30a46c");
        statuses.push(
            post_form(&server, "/api/chat/send_message", &form, None)
                .await
                .0,
        );
    }
    assert_eq!(
        &statuses[..4],
        [200, 200, 200, 200],
        "a burst of twice the rate"
    );
    assert!(statuses[4..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn the_publish_api_refuses_a_key_or_an_address_over_its_rate_limit() {
    let server = server(&[
        ("SWITCHBOARD_API_KEYS", "k1"),
        ("SWITCHBOARD_API_REQUESTS_PER_SECOND", "3"),
    ]);
    let mut statuses = Vec::new();
    let mut retry_after = false;
    for n in 0..12 {
        let response = support::http_post(
            &server.addr,
            "/api/channels/room1/messages",
            "X-Api-Key: k1\r\n",
            &json!({"n": n}).to_string(),
        )
        .await;
        let (status, _) = split(&response);
        retry_after |= status == 429 && response.to_ascii_lowercase().contains("retry-after: 1");
        statuses.push(status);
    }
    assert_eq!(&statuses[..6], [202; 6], "{statuses:?}");
    assert!(statuses.contains(&429) && retry_after, "{statuses:?}");
    let body: Value = serde_json::from_str(
        &split(
            &support::http_post(
                &server.addr,
                "/api/channels/room1/messages",
                "X-Api-Key: k1\r\n",
                "1",
            )
            .await,
        )
        .1,
    )
    .unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

/// `/api/auth/options` says only which ways of signing in the server offers: anyone may ask
/// (the sign-in form needs it before anyone is signed in), a forged cookie changes nothing,
/// and the answer carries no channel, member or key.
#[tokio::test]
async fn anyone_may_ask_which_sign_in_the_server_offers_and_learns_nothing_else() {
    let off = server(&[]);
    let on = server(&[("SWITCHBOARD_DEMO_TOKENS", "true")]);
    for (server, demo) in [(&off, false), (&on, true)] {
        for cookie in [None, Some("forged.token.value")] {
            let (status, body) = post_form(server, "/api/auth/options", "", cookie).await;
            assert_eq!(status, 200, "{body}");
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(answer, serde_json::json!({ "demo": demo }), "{body}");
        }
    }
}
