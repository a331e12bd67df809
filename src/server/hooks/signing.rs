//! Standard Webhooks signatures (standardwebhooks.com), so receivers check them with the
//! libraries they already use (`standardwebhooks`, `svix`): a `whsec_` secret (base64 of the
//! key), and `webhook-signature: v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing key read from a `whsec_…` secret.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// The key of a `whsec_`-prefixed base64 secret.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(
            "a webhook secret starts with whsec_ followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)",
        )?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|err| format!("the part after whsec_ must be base64: {err}"))?;
        if key.len() < 16 {
            return Err("a webhook secret must hold at least 16 bytes".into());
        }
        Hmac::<Sha256>::new_from_slice(&key)
            .map(Self)
            .map_err(|err| format!("the key cannot be used: {err}"))
    }

    /// The `webhook-signature` header of a message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        assert!(SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::from_secret("whsec_not base64!").is_err());
        assert!(SigningKey::from_secret("whsec_c2hvcnQ=").is_err());
    }
}
