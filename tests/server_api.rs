//! The server's edges over real sockets and HTTP: the configuration file, the HTTP publish
//! API, which browser origins may connect, and how many sockets one address may hold.

mod support;

use futures_util::StreamExt;
use serde_json::json;
use support::{TestServer, WAIT};
use switchboard_protocol::Action;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn the_publish_api_needs_a_key_and_delivers_an_event_that_is_stored() {
    let server = TestServer::start_with(&[("SWITCHBOARD_API_KEYS", "key-one,key-two")]);
    let mut member = server.client().await;
    member.join("news", false, false).await.unwrap();
    let path = "/api/channels/news/messages";

    let missing = support::http_post(&server.addr, path, "", r#"{"headline":"x"}"#).await;
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");
    assert!(missing.contains(r#""code":"unauthorized""#), "{missing}");
    let wrong = support::http_post(
        &server.addr,
        path,
        "X-Api-Key: nope\r\n",
        r#"{"headline":"x"}"#,
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let not_json =
        support::http_post(&server.addr, path, "X-Api-Key: key-two\r\n", "headline: x").await;
    assert!(not_json.starts_with("HTTP/1.1 400"), "{not_json}");
    assert!(not_json.contains(r#""code":"bad_json""#), "{not_json}");
    let bad_channel = support::http_post(
        &server.addr,
        "/api/channels/no%20spaces/messages",
        "X-Api-Key: key-two\r\n",
        "1",
    )
    .await;
    assert!(bad_channel.starts_with("HTTP/1.1 400"), "{bad_channel}");
    assert!(member
        .next_frame_within(std::time::Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());

    let ok = support::http_post(
        &server.addr,
        path,
        "Authorization: Bearer key-one\r\n",
        r#"{"headline":"launch"}"#,
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    let event = member.expect(Action::Event, WAIT).await.unwrap();
    assert_eq!(event.payload, json!({"headline": "launch"}));
    assert_eq!(event.seq(), Some(1));
    member
        .request(
            Action::History,
            switchboard_client::channel_options("news"),
            json!(null),
        )
        .await
        .unwrap();
    let history = member.expect(Action::History, WAIT).await.unwrap();
    assert_eq!(
        history.payload["history"][0]["payload"]["headline"],
        "launch"
    );
}

#[tokio::test]
async fn without_keys_the_publish_api_is_off() {
    let server = TestServer::start();
    let response = support::http_post(
        &server.addr,
        "/api/channels/news/messages",
        "X-Api-Key: anything\r\n",
        "1",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("SWITCHBOARD_API_KEYS"), "{response}");
}

async fn open_with_origin(server: &TestServer, origin: &str) -> Result<(), u16> {
    let mut request = server.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            let _ = ws.next().await;
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

#[tokio::test]
async fn browser_origins_other_than_the_servers_own_are_refused_unless_allowed() {
    let server =
        TestServer::start_with(&[("SWITCHBOARD_ALLOWED_ORIGINS", "https://app.example.com")]);
    let own = format!("http://{}", server.addr);
    assert_eq!(open_with_origin(&server, &own).await, Ok(()));
    assert_eq!(
        open_with_origin(&server, "https://app.example.com").await,
        Ok(())
    );
    assert_eq!(
        open_with_origin(&server, "https://evil.example.net").await,
        Err(403)
    );
    // Native clients send no Origin at all.
    server.client().await;
}

#[tokio::test]
async fn one_address_may_hold_only_so_many_sockets() {
    let server = TestServer::start_with(&[("SWITCHBOARD_CONNECTIONS_PER_IP", "2")]);
    let first = server.client().await;
    let _second = server.client().await;
    match switchboard_client::Client::connect(&server.url()).await {
        Err(switchboard_client::ClientError::WebSocket(
            tokio_tungstenite::tungstenite::Error::Http(r),
        )) => {
            assert_eq!(r.status(), 429);
        }
        Err(other) => panic!("expected 429, got {other}"),
        Ok(_) => panic!("a third socket was accepted"),
    }
    first.close().await.unwrap();
    let mut again = None;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(client) = switchboard_client::Client::connect(&server.url()).await {
            again = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a slot frees up when a socket closes");
}

fn config_file(text: &str) -> std::path::PathBuf {
    let path = support::temp_db().with_file_name("switchboard.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn settings_come_from_the_config_file_and_variables_override_them() {
    let path =
        config_file("[limits]\nmax_payload_bytes = 10\n\n[auth]\napi_keys = [\"from-file\"]\n");
    let server = TestServer::start_with(&[("SWITCHBOARD_CONFIG", path.to_str().unwrap())]);
    let mut a = server.client().await;
    a.join("c", false, false).await.unwrap();
    let refused = a.publish("c", json!("longer than ten bytes")).await;
    assert!(matches!(
        refused,
        Err(switchboard_client::ClientError::Refused { .. })
    ));
    let ok = support::http_post(
        &server.addr,
        "/api/channels/c/messages",
        "X-Api-Key: from-file\r\n",
        "1",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");

    let overridden = TestServer::start_with(&[
        ("SWITCHBOARD_CONFIG", path.to_str().unwrap()),
        ("SWITCHBOARD_MAX_PAYLOAD_BYTES", "1000"),
    ]);
    let mut b = overridden.client().await;
    b.join("c", false, false).await.unwrap();
    b.publish("c", json!("longer than ten bytes"))
        .await
        .unwrap();
}

#[test]
fn an_invalid_config_file_stops_start_up_with_the_line_and_the_reason() {
    for (text, expected) in [
        (
            "[limits]\nmax_payload_bytes = \"lots\"\n",
            ":2 [limits] max_payload_bytes",
        ),
        (
            "[limits]\n\nframe_brust = 3\n",
            ":3: unknown setting [limits] frame_brust",
        ),
        ("[limits\n", "line 1"),
    ] {
        let path = config_file(text);
        let output = support::run_expecting_exit(
            std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .args(["--config", path.to_str().unwrap()])
                .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
                .env("LEPTOS_OUTPUT_NAME", "switchboard")
                .env("SWITCHBOARD_ENGINE", "memory"),
        );
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    }
}

#[test]
fn the_example_config_file_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.example.toml"
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", example])
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("LEPTOS_OUTPUT_NAME", "switchboard")
        .env("SWITCHBOARD_ENGINE", "memory")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on"), "{line}");
    assert!(line.contains(example), "{line}");
}

#[tokio::test]
async fn behind_a_trusted_balancer_the_limit_counts_forwarded_clients() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_CONNECTIONS_PER_IP", "1"),
        ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let connect = |forwarded_for: &'static str| {
        let mut request = server.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded_for.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    // Two people behind the balancer (here: the test, on 127.0.0.1) each get their socket...
    let _first = connect("203.0.113.7").await.expect("first client accepted");
    let _second = connect("203.0.113.8")
        .await
        .expect("second client accepted");
    // ...and the limit still holds per person.
    match connect("203.0.113.7").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        Err(other) => panic!("expected 429, got {other}"),
        Ok(_) => panic!("a second socket from 203.0.113.7 was accepted"),
    }
}
