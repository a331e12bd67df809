//! Test harness: starts the real `switchboard` binary on an ephemeral loopback port and
//! connects native clients to it.
// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_client::Client;

/// How long a test waits for a frame that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a frame does not arrive.
pub const QUIET: Duration = Duration::from_millis(300);
/// The HS256 secret test servers are started with.
pub const SECRET: &str = "test-secret-with-enough-entropy-0123456789";

/// A server process; killed when dropped.
pub struct TestServer {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Whether it serves HTTPS and WSS.
    pub tls: bool,
    /// The folder of a history file this server made for itself, removed when it stops.
    own_folder: Option<std::path::PathBuf>,
}

impl TestServer {
    /// Starts a server with default settings (tokens accepted with [`SECRET`]).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `SWITCHBOARD_*` settings and a history file of its own.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let db = temp_db();
        let mut server = Self::start_on(&db, env);
        server.own_folder = db.parent().map(std::path::Path::to_path_buf);
        server
    }

    /// Starts a server on the history file `db` (to restart a server on the same file).
    ///
    /// With `SWITCHBOARD_TEST_ENGINE=redis` the same tests run against the Redis engine: the
    /// server gets this test binary's redis-server and a key prefix named after `db`, so a
    /// restart on the same `db` finds the same history.
    pub fn start_on(db: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        if redis_engine() {
            let prefix = db
                .parent()
                .and_then(|dir| dir.file_name())
                .map_or_else(|| "test".into(), |name| name.to_string_lossy().into_owned());
            command
                .env("SWITCHBOARD_ENGINE", "redis")
                .env(
                    "SWITCHBOARD_REDIS_URL",
                    switchboard_testkit::RedisServer::shared().url(),
                )
                .env("SWITCHBOARD_REDIS_PREFIX", prefix);
        }
        Self::spawn(command, db, env)
    }

    /// Starts one node of a cluster on the Redis at `redis_url`, under `prefix`.
    pub fn start_node(redis_url: &str, prefix: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .env("SWITCHBOARD_ENGINE", "redis")
            .env("SWITCHBOARD_REDIS_URL", redis_url)
            .env("SWITCHBOARD_REDIS_PREFIX", prefix);
        Self::spawn(command, &temp_db(), env)
    }

    fn spawn(mut command: Command, db: &std::path::Path, env: &[(&str, &str)]) -> Self {
        command
            .env("SWITCHBOARD_HISTORY_PATH", db)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "switchboard")
            .env("SWITCHBOARD_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        Self::launch(&mut command)
    }

    /// Starts the server exactly as `command` says and waits until it listens (for tests of
    /// how it reads its settings).
    pub fn launch(command: &mut Command) -> Self {
        Self::launch_logging_to(command, Stdio::inherit())
    }

    /// Starts a server with extra settings whose log (stderr) goes to `log`.
    pub fn start_logging(env: &[(&str, &str)], log: std::fs::File) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .env("SWITCHBOARD_HISTORY_PATH", temp_db())
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_OUTPUT_NAME", "switchboard")
            .env("SWITCHBOARD_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        Self::launch_logging_to(&mut command, Stdio::from(log))
    }

    fn launch_logging_to(command: &mut Command, stderr: Stdio) -> Self {
        command.stdout(Stdio::piped()).stderr(stderr);
        let mut child = command.spawn().expect("the switchboard binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("the server prints where it listens");
        // The server's log goes on to stdout: pass it to the test's output (shown when a test
        // fails) rather than leave the pipe unread.
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        let (addr, tls) = line
            .split_whitespace()
            .find_map(|word| {
                word.strip_prefix("http://")
                    .map(|addr| (addr, false))
                    .or_else(|| word.strip_prefix("https://").map(|addr| (addr, true)))
            })
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"));
        Self {
            child,
            addr: addr.to_string(),
            tls,
            own_folder: None,
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in bytes (from `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .expect("VmRSS in /proc status")
    }

    /// `GET /healthz`, as JSON with the HTTP status under `"http"`.
    pub async fn health(&self) -> serde_json::Value {
        let response = http_get(&self.addr, "/healthz").await;
        let status: u16 = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("{}");
        let mut json: serde_json::Value =
            serde_json::from_str(body.trim()).unwrap_or_else(|_| serde_json::json!({}));
        json["http"] = serde_json::json!(status);
        json
    }

    /// The realtime URL of this server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/rt/test", self.addr)
    }

    /// A new anonymous client.
    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await.expect("client connects")
    }

    /// A new client authenticated with a token for user `id` named `name`.
    pub async fn client_as(&self, id: &str, name: &str) -> Client {
        Client::connect_with_token(&self.url(), Some(&token(id, name, 3600)))
            .await
            .expect("authenticated client connects")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.map(|s| s.success()).unwrap_or(false),
            "kill -TERM {pid}"
        );
        let status = self.child.wait().expect("the server exits");
        status.success()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(folder) = &self.own_folder {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// Whether this run tests the Redis engine (`SWITCHBOARD_TEST_ENGINE=redis`).
pub fn redis_engine() -> bool {
    std::env::var("SWITCHBOARD_TEST_ENGINE").is_ok_and(|engine| engine == "redis")
}

/// A fresh history file path in a folder of its own ([`switchboard_testkit::temp_path`]),
/// neither of which exists yet: the server makes the folder of its history file.
pub fn temp_db() -> std::path::PathBuf {
    switchboard_testkit::temp_path("switchboard-test").join("history.db")
}

/// An HS256 token for `id`, valid for `ttl_seconds` (negative: already expired).
pub fn token(id: &str, name: &str, ttl_seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let claims = serde_json::json!({ "sub": id, "name": name, "colour": "#3d6cf2", "exp": now + ttl_seconds });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token encodes")
}

/// An HS256 token for user `u` (valid for a minute) with extra claims.
pub fn token_with(extra: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut claims = serde_json::json!({ "sub": "u", "name": "U", "exp": now + 60 });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token encodes")
}

/// Runs the server binary as `command` describes and returns its output once it exits; a server
/// that is still running after 10 s (it should have refused to start) is killed and the test
/// fails.
pub fn run_expecting_exit(command: &mut Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child
        .try_wait()
        .expect("the process can be polled")
        .is_none()
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the output can be read")
}

/// A plain HTTP/1.1 exchange with the server; returns the whole response (status line,
/// headers and body).
pub async fn http(addr: &str, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("server reachable");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    response
}

/// `GET path`.
pub async fn http_get(addr: &str, path: &str) -> String {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` with extra header lines (each ending in `\r\n`) and a JSON body.
pub async fn http_post(addr: &str, path: &str, headers: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(addr, request).await
}

/// An HTTP API call: `method path` with `Authorization: Bearer KEY` when given and a JSON body;
/// the status and the JSON answer (`null` when it is not JSON).
pub async fn api(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{body}",
        len = body.len()
    );
    let (status, body) = status_and_body(&http(addr, request).await);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// The status code and the body of a whole HTTP/1.1 response.
pub fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Joins `channel` with presence as `name`; the socket id the server gave `client`, read from
/// the presence list it gets back.
pub async fn join_as(client: &mut Client, channel: &str, name: &str) -> String {
    use switchboard_protocol::Action;
    client
        .request(
            Action::Join,
            switchboard_client::channel_options(channel),
            serde_json::json!({"presence": true, "extras": {"name": name}}),
        )
        .await
        .unwrap();
    let full = client.expect(Action::PresenceFull, WAIT).await.unwrap();
    let me = full.payload["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["extras"]["name"] == name)
        .expect("listed in its own presence");
    me["socketId"].as_str().unwrap().to_string()
}

/// Sends `{"n": n}` to `channel` for each of `numbers`, without waiting for any answer (no
/// ref): a burst that the server finds waiting together.
pub async fn send_numbered(
    client: &mut Client,
    channel: &str,
    numbers: impl IntoIterator<Item = u64>,
) {
    use switchboard_protocol::Action;
    for n in numbers {
        client
            .send(
                Action::Message,
                serde_json::json!({ "channel": channel }),
                serde_json::json!({ "n": n }),
            )
            .await
            .unwrap();
    }
}

/// Writes `count` messages to `channel` before reading any answer (so no refill of a rate
/// limit between round trips can hide it, however slow the machine), then reads until each
/// is answered: (refused as `rate_limited`, relayed back as the sender's own echo).
pub async fn burst(client: &mut Client, channel: &str, count: usize) -> (usize, usize) {
    use switchboard_protocol::{Action, ErrorCode};
    for n in 0..count {
        client
            .send(
                Action::Message,
                serde_json::json!({ "channel": channel }),
                serde_json::json!(n),
            )
            .await
            .unwrap();
    }
    let (mut refused, mut relayed) = (0, 0);
    while refused + relayed < count {
        let frame = client
            .next_frame_within(WAIT)
            .await
            .unwrap()
            .expect("every send is answered");
        match frame.action {
            Action::Error => {
                assert_eq!(frame.error_code(), Some(ErrorCode::RateLimited));
                refused += 1;
            }
            Action::Message => relayed += 1,
            _ => {}
        }
    }
    (refused, relayed)
}

/// The close code the server ends `client`'s socket with (frames before it are skipped).
pub async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, client.next_frame())
            .await
            .expect("the socket is closed in time")
        {
            Ok(_) => continue,
            Err(switchboard_client::ClientError::Closed { code, .. }) => return code,
            Err(other) => panic!("{other}"),
        }
    }
}

/// Every question a [`gate`] was asked (`{"type": "gate.…", "data": {…}}`), in order.
pub type Asked = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A back end's gate on a free loopback port: answers each question with what `answer`
/// returns for it, and keeps every question. Returns its URL and the questions.
pub async fn gate<F>(answer: F) -> (String, Asked)
where
    F: Fn(&serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
{
    use axum::{routing::post, Json, Router};
    let asked = Asked::default();
    let answer = std::sync::Arc::new(answer);
    let kept = asked.clone();
    let app = Router::new().route(
        "/gate",
        post(move |Json(question): Json<serde_json::Value>| {
            let (answer, kept) = (answer.clone(), kept.clone());
            async move {
                let reply = answer(&question);
                kept.lock().unwrap().push(question);
                Json(reply)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

/// The value of the `/metrics` line that starts with `name` (its labels included), if any.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
