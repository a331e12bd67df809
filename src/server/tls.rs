//! TLS termination, so the server itself speaks HTTPS and WSS where clients need it: Xano's SDK
//! always dials `wss://<hostname>/rt/...` on port 443, and with `tls_cert_file` and
//! `tls_key_file` set it connects straight to Switchboard, with no proxy in between.
//!
//! [`Listener`] is what `axum::serve` accepts connections from: plain TCP, or TCP followed by a
//! TLS handshake. Handshakes run in tasks of their own (bounded in number and time), so a
//! client that stalls mid-handshake holds up nobody else. TCP_NODELAY is set on every accepted
//! socket before anything is written. The certificate is reloaded on SIGHUP: new connections
//! get the new one, open connections keep theirs, and a file that cannot be used leaves the
//! old certificate in place and says why in the log.

use super::plain::{PlainSocket, PlainStream};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond that are closed at once.
const MAX_HANDSHAKES: usize = 1024;

/// Where the certificate chain and its private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path} holds no {what} in PEM form ({reason})")]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// The parser's words.
        reason: String,
    },
    /// The key is of a kind the server cannot sign with.
    #[error("{path}: the private key cannot be used: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The certificate the server presents, swapped on reload.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Reads and checks the certificate chain and key.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified_key(files)?)),
            files: files.clone(),
        }))
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    /// The acceptor that runs handshakes with the current certificate.
    fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::BadKey {
                path: self.files.key_file.clone(),
                reason: err.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // HTTP/1.1 only: browsers then open WebSockets with a plain upgrade, which is what the
        // realtime route answers (WebSockets over HTTP/2 need a CONNECT route).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Reads `files` into a certificate the server can present.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read(&files.cert_file)?;
    let certs = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|certs| match certs.is_empty() {
            true => Err(pem::Error::NoItemsFound),
            false => Ok(certs),
        })
        .map_err(|err| TlsError::NotPem {
            path: files.cert_file.clone(),
            what: "certificate",
            reason: err.to_string(),
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(&read(&files.key_file)?).map_err(|err| TlsError::NotPem {
            path: files.key_file.clone(),
            what: "private key",
            reason: err.to_string(),
        })?;
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| TlsError::BadKey {
            path: files.key_file.clone(),
            reason: err.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: files.cert_file.clone(),
                key: files.key_file.clone(),
            })
        }
        _ => Ok(certified),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// One accepted connection.
pub enum Stream {
    /// Plain TCP.
    Plain(PlainStream),
    /// TCP after a finished TLS handshake.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The way for fan-outs to write frames straight to this connection once it is a
    /// WebSocket: plain TCP only.
    pub fn plain_socket(&self) -> Option<PlainSocket> {
        match self {
            Stream::Plain(plain) => Some(plain.socket()),
            Stream::Tls(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Who a request came in from, as every handler sees it (`ConnectInfo<Peer>`).
#[derive(Clone)]
pub struct Peer {
    /// The connection's remote address.
    pub addr: SocketAddr,
    /// The way for fan-outs to write to the connection once it is a WebSocket: plain TCP only.
    pub plain: Option<PlainSocket>,
}

impl Peer {
    pub fn ip(&self) -> std::net::IpAddr {
        self.addr.ip()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            plain: stream.io().plain_socket(),
        }
    }
}

/// The listening socket `axum::serve` takes connections from.
pub struct Listener {
    local_addr: std::io::Result<SocketAddr>,
    accepted: Accepted,
}

enum Accepted {
    /// Connections are taken straight from the socket.
    Plain(TcpListener),
    /// A task accepts and runs handshakes; finished connections arrive here.
    Tls {
        finished: mpsc::Receiver<(Stream, SocketAddr)>,
        tasks: [JoinHandle<()>; 2],
    },
}

impl Listener {
    /// Serves `tcp` as it is, or with TLS when `certificates` are given (then SIGHUP reloads
    /// them while this listener lives).
    pub fn new(
        tcp: TcpListener,
        certificates: Option<Arc<Certificates>>,
    ) -> Result<Self, TlsError> {
        let local_addr = tcp.local_addr();
        let Some(certificates) = certificates else {
            return Ok(Self {
                local_addr,
                accepted: Accepted::Plain(tcp),
            });
        };
        let acceptor = certificates.acceptor()?;
        let (finished_tx, finished) = mpsc::channel(256);
        let tasks = [
            tokio::spawn(accept_and_handshake(tcp, acceptor, finished_tx)),
            tokio::spawn(reload_on_hangup(certificates)),
        ];
        Ok(Self {
            local_addr,
            accepted: Accepted::Tls { finished, tasks },
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Accepted::Tls { tasks, .. } = &self.accepted {
            for task in tasks {
                task.abort();
            }
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match &mut self.accepted {
            Accepted::Plain(tcp) => loop {
                match TcpListener::accept(tcp).await {
                    Ok((stream, peer)) => {
                        // Small realtime frames must not wait for Nagle's algorithm.
                        let _ = stream.set_nodelay(true);
                        return (Stream::Plain(PlainStream::new(stream)), peer);
                    }
                    Err(err) => accept_failed(err).await,
                }
            },
            Accepted::Tls { finished, .. } => match finished.recv().await {
                Some(connection) => connection,
                // The accepting task only ends with this listener.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local_addr {
            Ok(addr) => Ok(*addr),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        }
    }
}

/// Accepts connections and runs each handshake in a task of its own.
async fn accept_and_handshake(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    finished: mpsc::Sender<(Stream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                accept_failed(err).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(
                "{MAX_HANDSHAKES} TLS handshakes in progress; closing the connection from {peer}"
            );
            continue;
        };
        let acceptor = acceptor.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = finished.send((Stream::Tls(Box::new(tls)), peer)).await;
                }
                Ok(Err(err)) => tracing::debug!("TLS handshake with {peer} failed: {err}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} took too long"),
            }
        });
    }
}

/// Errors from `accept` that concern one connection are skipped; others (out of file
/// descriptors) are waited out, as axum's own listener does.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        tracing::error!("accepting a connection failed: {err}; trying again in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads the certificate files again on every SIGHUP.
async fn reload_on_hangup(certificates: Arc<Certificates>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::warn!("cannot listen for SIGHUP ({err}); restart to load a new certificate");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match certificates.reload() {
            Ok(()) => tracing::info!(
                "SIGHUP: reloaded the TLS certificate from {}",
                certificates.files.cert_file.display()
            ),
            Err(err) => tracing::warn!("SIGHUP: kept the current TLS certificate: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A new certificate for `localhost`, written to `dir`.
    fn write_certificate(dir: &Path) -> TlsFiles {
        let files = switchboard_testkit::tls::TestCa::new().write(dir, &["localhost"]);
        TlsFiles {
            cert_file: files.cert,
            key_file: files.key,
        }
    }

    fn presented(certificates: &Certificates) -> Vec<u8> {
        certificates.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let files = write_certificate(&folder());
        let certificates = Certificates::load(&files).unwrap();
        assert!(certificates.acceptor().is_ok());
    }

    #[test]
    fn missing_files_and_wrong_contents_are_named() {
        let dir = folder();
        let files = write_certificate(&dir);
        let missing = TlsFiles {
            cert_file: dir.join("nope.pem"),
            ..files.clone()
        };
        let err = Certificates::load(&missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let swapped = TlsFiles {
            cert_file: files.key_file.clone(),
            key_file: files.cert_file.clone(),
        };
        let err = Certificates::load(&swapped).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NotPem {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let files = write_certificate(&folder());
        let other = write_certificate(&folder());
        let mixed = TlsFiles {
            cert_file: files.cert_file,
            key_file: other.key_file,
        };
        assert!(matches!(
            Certificates::load(&mixed).unwrap_err(),
            TlsError::Mismatch { .. }
        ));
    }

    #[test]
    fn reload_swaps_the_certificate_and_a_bad_file_keeps_the_old_one() {
        let dir = folder();
        let files = write_certificate(&dir);
        let certificates = Certificates::load(&files).unwrap();
        let first = presented(&certificates);
        write_certificate(&dir);
        certificates.reload().unwrap();
        let second = presented(&certificates);
        assert_ne!(first, second);
        std::fs::write(&files.key_file, "not a key").unwrap();
        assert!(certificates.reload().is_err());
        assert_eq!(presented(&certificates), second);
    }
}
