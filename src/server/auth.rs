//! Connection auth: a JWT, carried in the `Sec-WebSocket-Protocol` slot as Xano's SDK does (or
//! as `?token=`), turns a socket into an authenticated one with a public identity. Tokens are
//! HS256 with the configured secret, or RS256 checked with a public key file or a JWKS file.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use switchboard_hub::Identity;

/// Claims read from a token; anything else in it is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "color")]
    colour: Option<String>,
}

/// Why a WebSocket upgrade was refused before it began.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token failed verification (signature, expiry, shape).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A token was sent but this server has no key to check it with.
    #[error("this server does not accept tokens: configure jwt_secret, jwt_public_key_file or jwks_file")]
    TokensDisabled,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let code = match self {
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokensDisabled => "tokens_disabled",
        };
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }
}

/// The keys tokens are checked with, loaded once at start-up.
#[derive(Clone, Default)]
pub struct Verifier {
    hs256: Option<DecodingKey>,
    /// RS256 keys, with their key id when they came from a JWKS.
    rs256: Vec<(Option<String>, DecodingKey)>,
}

impl Verifier {
    /// Keys from the configured secret and files; a file that cannot be read stops start-up.
    pub fn load(
        secret: Option<&str>,
        public_key: Option<&Path>,
        jwks: Option<&Path>,
    ) -> Result<Self, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|err| format!("cannot read the {what} {}: {err}", path.display()))
        };
        let mut rs256 = Vec::new();
        if let Some(path) = public_key {
            let pem = read(path, "RS256 public key")?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|err| {
                format!("{} is not an RSA public key in PEM: {err}", path.display())
            })?;
            rs256.push((None, key));
        }
        if let Some(path) = jwks {
            let text = read(path, "JWKS file")?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|err| format!("{} is not a JWKS document: {err}", path.display()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|err| format!("{}: a key cannot be used: {err}", path.display()))?;
                rs256.push((jwk.common.key_id.clone(), key));
            }
        }
        Ok(Self {
            hs256: secret.map(|secret| DecodingKey::from_secret(secret.as_bytes())),
            rs256,
        })
    }

    /// The identity a token grants; no token means an anonymous socket.
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = token else {
            return Ok(Identity::default());
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| AuthError::InvalidToken(err.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self
                .rs256
                .iter()
                .find(|(kid, _)| kid.is_none() || header.kid.is_none() || kid == &header.kid)
                .map(|(_, key)| key),
            other => {
                return Err(AuthError::InvalidToken(format!(
                    "algorithm {other:?} is not accepted"
                )))
            }
        };
        let Some(key) = key else {
            return Err(if self.hs256.is_none() && self.rs256.is_empty() {
                AuthError::TokensDisabled
            } else {
                AuthError::InvalidToken(format!("no key here checks {:?} tokens", header.alg))
            });
        };
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|err| AuthError::InvalidToken(err.to_string()))?
            .claims;
        let mut extras = Map::new();
        extras.insert("id".into(), Value::from(claims.sub));
        if let Some(name) = claims.name {
            extras.insert("name".into(), Value::from(name));
        }
        if let Some(colour) = claims.colour {
            extras.insert("colour".into(), Value::from(colour));
        }
        Ok(Identity {
            authenticated: true,
            extras,
        })
    }
}

/// How long a demo token is valid.
const DEMO_TOKEN_HOURS: u64 = 12;

/// A demo HS256 token for `name`, where the `demo_tokens` setting is on: anyone can sign in
/// under any name, so it is for trying the product, never for a real deployment.
pub fn demo_token(
    config: &super::ServerConfig,
    name: &str,
    colour: &str,
) -> Result<(String, crate::pages::chat::message::ChatUser), String> {
    if !config.demo_tokens {
        return Err("sign-in is off on this server (demo_tokens)".into());
    }
    let secret = config
        .jwt_secret
        .as_deref()
        .ok_or("demo tokens need jwt_secret")?;
    let name: String = name
        .trim()
        .chars()
        .take(crate::pages::chat::message::MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        return Err("type your name first".into());
    }
    let id = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|err| err.to_string())?
        .as_secs()
        + DEMO_TOKEN_HOURS * 3600;
    let claims = json!({ "sub": id, "name": name, "colour": colour, "exp": exp });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|err| err.to_string())?;
    let user = crate::pages::chat::message::ChatUser {
        id,
        name,
        colour: colour.to_string(),
    };
    Ok((token, user))
}
