//! The server terminating TLS itself, with certificates made at test time: native clients and
//! the CLI over `wss://`, pages over HTTPS, the certificate reloaded on SIGHUP without closing
//! open sockets, graceful shutdown (1012) as over plain TCP, a bad certificate refused at start
//! (exit 78) and kept out on reload, and a cluster node reaching Redis over `rediss://`.

mod support;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{TestServer, WAIT};
use switchboard_client::{cli, ClientError};
use switchboard_protocol::Action;
use switchboard_testkit::tls::{CertificateFiles, TestCa};
use switchboard_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A folder of the test's own.
fn folder() -> PathBuf {
    switchboard_testkit::temp_folder("switchboard-tls")
}

/// A server terminating TLS with a certificate for localhost and 127.0.0.1 from `ca`.
fn tls_server(ca: &TestCa, dir: &Path) -> (TestServer, CertificateFiles) {
    let files = ca.write(dir, &["localhost", "127.0.0.1"]);
    // Every wss:// client of this test process trusts the test authorities.
    switchboard_client::tls::add_ca_file(&files.ca).unwrap();
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_TLS_CERT_FILE", files.cert.to_str().unwrap()),
        ("SWITCHBOARD_TLS_KEY_FILE", files.key.to_str().unwrap()),
    ]);
    (server, files)
}

/// One HTTPS request to `addr`, trusting `ca`; the response and the certificate presented.
async fn https_get(addr: &str, path: &str, ca: &Path) -> (String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the handshake succeeds");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify ends the read with an error; what came is kept.
    let _ = tls.read_to_end(&mut response).await;
    (String::from_utf8_lossy(&response).into_owned(), presented)
}

/// The DER of the first certificate in a PEM file.
fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

fn hang_up(server: &TestServer) {
    let sent = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test]
async fn wss_clients_share_a_channel_with_a_server_that_terminates_tls() {
    let ca = TestCa::new();
    let (server, _) = tls_server(&ca, &folder());
    assert!(
        server.url().starts_with("wss://127.0.0.1:"),
        "{}",
        server.url()
    );
    let (mut alice, mut bob) = (server.client().await, server.client().await);
    alice.join("room1", false, false).await.unwrap();
    bob.join("room1", false, false).await.unwrap();
    alice
        .publish("room1", json!({"text": "over tls"}))
        .await
        .unwrap();
    let frame = bob.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(frame.payload, json!({"text": "over tls"}));
    // The CLI's commands take wss:// URLs too.
    let outcome = cli::send(&server.url(), None, "room1", r#"{"text":"from the cli"}"#)
        .await
        .unwrap();
    assert_eq!(outcome, json!({"status": "ok"}));
    let frame = bob.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(frame.payload, json!({"text": "from the cli"}));
}

#[tokio::test]
async fn pages_and_health_are_served_over_https_and_plain_http_gets_no_answer() {
    let ca = TestCa::new();
    let dir = folder();
    let (server, files) = tls_server(&ca, &dir);
    let (page, presented) = https_get(&server.addr, "/", &files.ca).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Switchboard</title>"), "{page}");
    assert_eq!(presented, der(&files.cert));
    let (health, _) = https_get(&server.addr, "/healthz", &files.ca).await;
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let plain = support::http_get(&server.addr, "/healthz").await;
    assert!(!plain.contains("HTTP/1.1 200"), "{plain}");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_sockets_stay_open() {
    let ca = TestCa::new();
    let dir = folder();
    let (server, files) = tls_server(&ca, &dir);
    let first = der(&files.cert);
    let (mut alice, mut bob) = (server.client().await, server.client().await);
    alice.join("room1", false, false).await.unwrap();
    bob.join("room1", false, false).await.unwrap();

    // A key that cannot be read leaves the old certificate in place.
    std::fs::write(&files.key, "not a key").unwrap();
    hang_up(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        https_get(&server.addr, "/healthz", &files.ca).await.1,
        first
    );

    let renewed = ca.write(&dir, &["localhost", "127.0.0.1"]);
    let second = der(&renewed.cert);
    assert_ne!(first, second);
    hang_up(&server);
    let deadline = Instant::now() + WAIT;
    while https_get(&server.addr, "/healthz", &files.ca).await.1 != second {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not presented"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sockets opened under the old certificate still carry messages.
    alice.publish("room1", json!("after reload")).await.unwrap();
    let frame = bob.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(frame.payload, json!("after reload"));
}

#[tokio::test]
async fn sigterm_closes_wss_sockets_with_1012_and_exits_cleanly() {
    let ca = TestCa::new();
    let (mut server, _) = tls_server(&ca, &folder());
    let mut client = server.client().await;
    client.join("room1", false, false).await.unwrap();
    let stopped = std::thread::spawn(move || server.terminate());
    let code = loop {
        match tokio::time::timeout(WAIT, client.next_frame()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(ClientError::Closed { code, .. })) => break code,
            Ok(Err(other)) => panic!("expected a close frame, got {other}"),
            Err(_) => panic!("the socket was not closed"),
        }
    };
    assert_eq!(code, Some(1012));
    assert!(stopped.join().unwrap(), "the server exits cleanly");
}

#[test]
fn an_unreadable_certificate_stops_start_up_with_exit_78() {
    let output = support::run_expecting_exit(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_ENGINE", "memory")
            .env("SWITCHBOARD_TLS_CERT_FILE", "/nonexistent/cert.pem")
            .env("SWITCHBOARD_TLS_KEY_FILE", "/nonexistent/key.pem"),
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
    let only_cert = support::run_expecting_exit(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_ENGINE", "memory")
            .env("SWITCHBOARD_TLS_CERT_FILE", "/etc/hostname"),
    );
    assert_eq!(only_cert.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&only_cert.stderr);
    assert!(stderr.contains("SWITCHBOARD_TLS_KEY_FILE"), "{stderr}");
}

#[tokio::test]
async fn a_cluster_node_reaches_redis_over_rediss() {
    let ca = TestCa::new();
    let redis = RedisServer::start_tls(&ca);
    assert!(redis.url().starts_with("rediss://localhost:"));
    let dir = folder();
    let ca_file = dir.join("redis-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // The node trusts the test authority the way an operator's would trust a private one.
    let node = TestServer::start_node(
        &redis.url(),
        &switchboard_testkit::unique("rediss"),
        &[("SSL_CERT_FILE", ca_file.to_str().unwrap())],
    );
    let health = support::http_get(&node.addr, "/healthz").await;
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let (mut alice, mut bob) = (node.client().await, node.client().await);
    alice.join("room1", false, false).await.unwrap();
    bob.join("room1", false, false).await.unwrap();
    alice
        .publish("room1", json!("through rediss"))
        .await
        .unwrap();
    let frame = bob.expect(Action::Message, WAIT).await.unwrap();
    assert_eq!(frame.payload, json!("through rediss"));
}
