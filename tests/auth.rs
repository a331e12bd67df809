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
    let deadline = std::time::Instant::now() + support::WAIT;
    while std::time::Instant::now() < deadline {
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
            .env("SWITCHBOARD_ENGINE", "memory")
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

fn rs256_token_with(key_file: &str, kid: &str, claims: serde_json::Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{key_file}")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn in_ten_minutes() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

#[tokio::test]
async fn issuer_and_audience_are_checked_as_identity_providers_set_them() {
    let jwks = format!("{FIXTURES}/jwks.json");
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_JWKS_FILE", &jwks),
        ("SWITCHBOARD_JWT_ISSUER", "https://idp.example.com/"),
        (
            "SWITCHBOARD_JWT_AUDIENCE",
            "chat-app,https://chat.example.com",
        ),
    ]);
    let token =
        |claims: serde_json::Value| rs256_token_with("rs256-private.pem", "test-key-1", claims);
    let exp = in_ten_minutes();
    let auth0_like = token(serde_json::json!({
        "sub": "auth0|42", "name": "Ines", "exp": exp,
        "iss": "https://idp.example.com/", "aud": ["https://chat.example.com", "https://idp.example.com/userinfo"],
    }));
    assert_signed_in_as(status_of(&server, &auth0_like).await.unwrap(), "Ines").await;
    let other_audience = token(serde_json::json!({
        "sub": "u", "exp": exp, "iss": "https://idp.example.com/", "aud": "another-app",
    }));
    assert_eq!(status_of(&server, &other_audience).await.err(), Some(401));
    let other_issuer = token(serde_json::json!({
        "sub": "u", "exp": exp, "iss": "https://evil.example.com/", "aud": "chat-app",
    }));
    assert_eq!(status_of(&server, &other_issuer).await.err(), Some(401));
    let no_audience =
        token(serde_json::json!({"sub": "u", "exp": exp, "iss": "https://idp.example.com/"}));
    assert_eq!(status_of(&server, &no_audience).await.err(), Some(401));
}

#[tokio::test]
async fn a_token_with_an_audience_needs_jwt_audience_to_be_set() {
    let server = TestServer::start();
    let with_audience = support::token_with(serde_json::json!({"aud": "chat-app"}));
    assert_eq!(status_of(&server, &with_audience).await.err(), Some(401));
    let server = TestServer::start_with(&[("SWITCHBOARD_JWT_AUDIENCE", "chat-app")]);
    assert!(status_of(&server, &with_audience).await.is_ok());
}

/// An identity provider's JWKS endpoint on loopback: serves whatever `keys` holds now and
/// counts the fetches.
struct Provider {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Provider {
    async fn start(first: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let keys = std::sync::Arc::new(std::sync::Mutex::new(first.to_string()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (serving, counting) = (keys.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = serving.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        Self { url, keys, fetches }
    }
}

// Multi-threaded: the provider must answer while the test waits for the server to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_providers_jwks_url_and_a_rotated_key_is_fetched_when_first_seen() {
    let first = std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap();
    let rotated = std::fs::read_to_string(format!("{FIXTURES}/jwks-rotated.json")).unwrap();
    let provider = Provider::start(&first).await;
    let server = TestServer::start_with(&[("SWITCHBOARD_JWKS_URL", &provider.url)]);
    let claims = serde_json::json!({"sub": "kc-7", "name": "Kai", "exp": in_ten_minutes()});
    let old_key = rs256_token_with("rs256-private.pem", "test-key-1", claims.clone());
    assert_signed_in_as(status_of(&server, &old_key).await.unwrap(), "Kai").await;
    let fetched = provider.fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetched >= 1);
    // Tokens keep using the cached keys.
    for _ in 0..5 {
        assert!(status_of(&server, &old_key).await.is_ok());
    }
    assert_eq!(
        provider.fetches.load(std::sync::atomic::Ordering::SeqCst),
        fetched
    );
    // The provider rotates its key: the first token with the new key id fetches the set again.
    *provider.keys.lock().unwrap() = rotated;
    let new_key = rs256_token_with("rs256-rotated-private.pem", "test-key-2", claims);
    assert_signed_in_as(status_of(&server, &new_key).await.unwrap(), "Kai").await;
    // An unknown key id does not make the server fetch again and again.
    let unknown = rs256_token_with(
        "rs256-rotated-private.pem",
        "nobody-knows",
        serde_json::json!({"sub": "x", "exp": in_ten_minutes()}),
    );
    let before = provider.fetches.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(status_of(&server, &unknown).await.err(), Some(401));
    }
    assert!(provider.fetches.load(std::sync::atomic::Ordering::SeqCst) <= before + 1);
}
