//! Which servers `wss://` connections trust: the system's certificate authorities — read by
//! rustls-native-certs, so `SSL_CERT_FILE` and `SSL_CERT_DIR` replace them as they do for
//! OpenSSL — plus any authority added with [`add_ca_file`] (the CLI's and the load
//! generator's `--ca-file`: a private authority, or a test's). Like the system store, the set
//! is one per process.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_tungstenite::Connector;

use crate::ClientError;

/// Authorities added to the system's, and the configuration built from both (made once).
struct Trust {
    added: Vec<CertificateDer<'static>>,
    built: Option<Arc<rustls::ClientConfig>>,
}

static TRUST: Mutex<Trust> = Mutex::new(Trust {
    added: Vec::new(),
    built: None,
});

/// Trusts the certificate authorities in the PEM file at `path` too, for every later `wss://`
/// connection of this process.
pub fn add_ca_file(path: &Path) -> Result<(), ClientError> {
    let unusable =
        |reason: String| ClientError::Tls(format!("CA file {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|err| unusable(err.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unusable(err.to_string()))?;
    if certs.is_empty() {
        return Err(unusable("no PEM certificate in it".into()));
    }
    let mut trust = TRUST.lock().unwrap_or_else(|e| e.into_inner());
    trust.added.extend(certs);
    trust.built = None;
    Ok(())
}

/// The TLS settings of a `wss://` connection.
pub fn connector() -> Result<Connector, ClientError> {
    client_config().map(Connector::Rustls)
}

/// The TLS client settings every connection of this process uses (`wss://` and `https://`).
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut trust = TRUST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(config) = &trust.built {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    let (usable, _) = roots.add_parsable_certificates(system.certs);
    for cert in &trust.added {
        roots
            .add(cert.clone())
            .map_err(|err| ClientError::Tls(format!("an added CA cannot be used: {err}")))?;
    }
    if usable == 0 && trust.added.is_empty() {
        let why = system
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |err| err.to_string());
        return Err(ClientError::Tls(format!(
            "no trusted certificate authorities ({why}); install ca-certificates or pass --ca-file"
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    trust.built = Some(config.clone());
    Ok(config)
}

/// The connector for `url`: TLS settings for `wss://`, none for `ws://`.
pub fn connector_for(url: &str) -> Result<Option<Connector>, ClientError> {
    match url.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("wss://") => connector().map(Some),
        _ => Ok(None),
    }
}
