//! Helpers for tests that need real services: a `redis-server` of its own, on a free loopback
//! port, with its data in a temporary folder, stopped when dropped (plain, or speaking TLS
//! only); and certificates made at test time ([`tls`]).

pub mod tls;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; taken by whoever binds it first).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}

/// A unique name for this process and call, for key prefixes and folders.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `redis-server` with append-only persistence, fsync on every write (what makes an
/// acknowledged message survive a Redis crash).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Set when it speaks TLS only.
    tls: Option<tls::CertificateFiles>,
}

impl RedisServer {
    /// Starts one; panics with what to do when `redis-server` is missing.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("switchboard-redis"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the Redis data folder");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            tls: None,
        };
        server.spawn();
        server
    }

    /// Starts one that speaks TLS only, presenting a certificate for `localhost` from `ca`
    /// (clients must trust `ca`; [`RedisServer::url`] is then `rediss://localhost:PORT`).
    pub fn start_tls(ca: &tls::TestCa) -> Self {
        let dir = std::env::temp_dir().join(unique("switchboard-redis"));
        let _ = std::fs::remove_dir_all(&dir);
        let files = ca.write(&dir.join("tls"), &["localhost"]);
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            tls: Some(files),
        };
        server.spawn();
        server
    }

    /// One server for the whole test binary, started on first use. It runs until the test
    /// process exits (the kernel stops it then: it is started from a thread that never ends,
    /// with a parent-death signal).
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(Self::start());
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("redis-server started")
        })
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to stop the child when
        // the thread that started it ends, so no server outlives its tests.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match &self.tls {
            None => command
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(self.port.to_string()),
            Some(files) => command
                .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&files.cert)
                .arg("--tls-key-file")
                .arg(&files.key)
                .arg("--tls-ca-cert-file")
                .arg(&files.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}): install it with scripts/setup or apt-get install redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` when it speaks TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// Kills it at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
