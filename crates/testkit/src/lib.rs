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

/// A fresh path under the system's temp folder, named [`unique`] from `tag` (`TAG-PID-N`),
/// with nothing there: what an earlier run left under the name (a process id is reused sooner
/// or later) is removed, so it cannot decide how this one goes.
///
/// The first call in a process also removes what test processes that have ended left behind:
/// folders outlive their test when a server is killed or restarted on them, and runs would
/// otherwise pile them up.
pub fn temp_path(tag: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_folders_of_ended_runs);
    let path = std::env::temp_dir().join(unique(tag));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// A fresh, empty folder at [`temp_path`].
pub fn temp_folder(tag: &str) -> PathBuf {
    let dir = temp_path(tag);
    std::fs::create_dir_all(&dir).expect("cannot create a folder under the temp folder");
    dir
}

/// Removes `switchboard-…-PID-N` folders (and files) under the temp folder whose process is
/// gone (no `/proc/PID`); nothing where there is no `/proc` to tell.
fn remove_folders_of_ended_runs() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with("switchboard-")) else {
            continue;
        };
        let mut parts = name.rsplit('-');
        let (Some(n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(_), Ok(pid)) = (n.parse::<u32>(), pid.parse::<u32>()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
        }
    }
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
        let dir = temp_folder("switchboard-redis");
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
        let dir = temp_folder("switchboard-redis");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_ended_runs_are_removed_and_live_ones_kept() {
        // A process id that has just ended (a live one is kept whatever its name).
        let mut child = Command::new("true").spawn().unwrap();
        let ended = child.id();
        child.wait().unwrap();
        let temp = std::env::temp_dir();
        let gone = temp.join(format!("switchboard-sweep-{ended}-0"));
        let gone_file = temp.join(format!("switchboard-sweep-{ended}-1"));
        let kept = temp_folder("switchboard-sweep");
        let other = temp.join(format!("other-{ended}-0"));
        for dir in [&gone, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&gone_file, "x").unwrap();
        remove_folders_of_ended_runs();
        assert!(
            !gone.exists() && !gone_file.exists(),
            "an ended run's leftovers stay"
        );
        assert!(kept.exists(), "this run's folder was removed");
        assert!(other.exists(), "a folder that is not ours was removed");
        for dir in [&kept, &other] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
