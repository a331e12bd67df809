//! Certificates made at test time (rcgen): a certificate authority of the test's own and the
//! server certificates it issues. Servers under test present an issued certificate; clients
//! trust the authority (a native client's `--ca-file`, Node's `NODE_EXTRA_CA_CERTS`,
//! `SSL_CERT_FILE` for Redis connections), so TLS is checked as strictly as in production.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// A certificate authority that lives as long as the test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// Where [`TestCa::write`] put the files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// The authority's certificate (PEM), for clients to trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new authority with a key of its own.
    pub fn new() -> Self {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty names are valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchboard test authority");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a key pair can be generated");
        let pem = params
            .self_signed(&key)
            .expect("the authority signs itself")
            .pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The authority's certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate and its key (both PEM) for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("names are valid");
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchboard test server");
        let key = KeyPair::generate().expect("a key pair can be generated");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the authority signs the certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the authority and a new server certificate for `names` into `dir` as
    /// `ca.pem`, `cert.pem` and `key.pem` (replacing them: a new certificate for a reload).
    pub fn write(&self, dir: &Path, names: &[&str]) -> CertificateFiles {
        std::fs::create_dir_all(dir).expect("the certificate folder can be created");
        let files = CertificateFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        let (cert, key) = self.issue(names);
        for (path, text) in [
            (&files.ca, self.pem.as_str()),
            (&files.cert, &cert),
            (&files.key, &key),
        ] {
            std::fs::write(path, text).expect("the certificate files can be written");
        }
        files
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
