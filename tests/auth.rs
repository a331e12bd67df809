//! Socket tokens over real sockets: RS256 tokens checked with a public key file or a JWKS file,
//! tokens no key can check, and the limit of sockets per signed-in user.

mod support;

use support::TestServer;
use switchboard_client::{Client, ClientError};
use switchboard_protocol::Action;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn rs256_token(sub: &str, kid: Option<&str>) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/rs256-private.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": sub, "name": "Rita", "exp": exp });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn status_of(server: &TestServer, token: &str) -> Result<Client, u16> {
    match Client::connect_with_token(&server.url(), Some(token)).await {
        Ok(client) => Ok(client),
        Err(ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

async fn assert_signed_in_as(mut client: Client, name: &str) {
    client.join("room1", true, false).await.unwrap();
    let full = client
        .expect(Action::PresenceFull, support::WAIT)
        .await
        .unwrap();
    assert_eq!(full.payload["presence"][0]["extras"]["name"], name);
    assert_eq!(
        full.payload["presence"][0]["permissions"]["authenticated"],
        true
    );
}

#[tokio::test]
async fn rs256_tokens_are_checked_with_the_public_key_file() {
    let key = format!("{FIXTURES}/rs256-public.pem");
    let server = TestServer::start_with(&[("SWITCHBOARD_JWT_PUBLIC_KEY_FILE", &key)]);
    let client = status_of(&server, &rs256_token("u9", None)).await.unwrap();
    assert_signed_in_as(client, "Rita").await;
    // An HS256 token signed with the test secret still works beside it.
    assert!(status_of(&server, &support::token("u1", "Hana", 60))
        .await
        .is_ok());
    let mut tampered = rs256_token("u9", None);
    tampered.pop();
    assert_eq!(status_of(&server, &tampered).await.err(), Some(401));
}

#[tokio::test]
async fn rs256_tokens_are_checked_with_the_jwks_file_by_key_id() {
    let jwks = format!("{FIXTURES}/jwks.json");
    let server = TestServer::start_with(&[("SWITCHBOARD_JWKS_FILE", &jwks)]);
    let client = status_of(&server, &rs256_token("u9", Some("test-key-1")))
        .await
        .unwrap();
    assert_signed_in_as(client, "Rita").await;
}

#[tokio::test]
async fn tokens_no_key_can_check_are_refused() {
    let server = TestServer::start_with(&[("SWITCHBOARD_JWT_SECRET", "")]);
    assert_eq!(
        status_of(&server, &support::token("u1", "Hana", 60))
            .await
            .err(),
        Some(401)
    );
    // Anonymous sockets are still welcome.
    server.client().await;
}

#[tokio::test]
async fn one_user_may_hold_only_so_many_sockets() {
    let server = TestServer::start_with(&[("SWITCHBOARD_SOCKETS_PER_USER", "2")]);
    let token = support::token("u1", "Hana", 60);
    let first = status_of(&server, &token).await.unwrap();
    let _second = status_of(&server, &token).await.unwrap();
    assert_eq!(status_of(&server, &token).await.err(), Some(429));
    // Another user is not affected.
    assert!(status_of(&server, &support::token("u2", "Ivo", 60))
        .await
        .is_ok());
    first.close().await.unwrap();
    let mut freed = false;
    for _ in 0..50 {
        if status_of(&server, &token).await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(freed, "closing a socket frees its slot");
}

#[test]
fn an_unreadable_key_file_stops_start_up() {
    let output = support::run_expecting_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env(
                "SWITCHBOARD_JWKS_FILE",
                format!("{FIXTURES}/rs256-public.pem"),
            )
            .env("SWITCHBOARD_HISTORY", "memory")
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "switchboard"),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a JWKS document"), "{stderr}");
}

#[tokio::test]
async fn a_token_may_also_come_as_a_query_parameter() {
    let server = TestServer::start();
    let url = format!(
        "{}?token={}",
        server.url(),
        support::token("u7", "Quinn", 60)
    );
    let client = Client::connect(&url).await.unwrap();
    assert_signed_in_as(client, "Quinn").await;
    let expired = format!(
        "{}?token={}",
        server.url(),
        support::token("u7", "Quinn", -120)
    );
    match Client::connect(&expired).await {
        Err(ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 401)
        }
        Err(other) => panic!("expected 401, got {other}"),
        Ok(_) => panic!("an expired token was accepted"),
    }
}
