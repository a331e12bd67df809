//! Who a caller is: a JWT — in the `Sec-WebSocket-Protocol` slot as Xano's SDK sends it (or
//! `?token=`) for sockets, in `Authorization: Bearer` or the `switchboard_token` cookie for
//! pages and server functions — turns a caller into a signed-in one with a public identity.
//!
//! Tokens are HS256 with the configured secret, or signed with a public key: a PEM file, a JWKS
//! file, or the JWKS of an identity provider fetched over HTTPS (cached, and fetched again —
//! at most every [`JWKS_MIN_REFETCH`] — when a token names a key id it does not know, so key
//! rotation needs no restart). `exp` and `nbf` are checked with a configurable leeway, `iss`
//! and `aud` against the accepted values, so tokens of Auth0, Clerk, Supabase, Keycloak or
//! Firebase work as they come.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchboard_hub::Identity;
use switchboard_protocol::is_valid_colour;

use super::config::JwtSettings;

/// The cookie a signed-in page carries its token in (for server rendering and server
/// functions; the socket sends the same token as its subprotocol).
pub const TOKEN_COOKIE: &str = "switchboard_token";

/// A fetched JWKS is used this long before it is fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// A token with an unknown key id fetches the JWKS again, but not more often than this.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// Without any key (the provider did not answer), the JWKS is tried again after this long.
const JWKS_RETRY: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// Claims read from a token; anything else in it is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "color")]
    colour: Option<String>,
}

/// Why a caller's token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token failed verification (signature, expiry, issuer, audience, shape).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A token was sent but this server has no key to check it with.
    #[error("this server does not accept tokens: configure jwt_secret, jwt_public_key_file, jwks_file or jwks_url")]
    TokensDisabled,
}

impl AuthError {
    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokensDisabled => "tokens_disabled",
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }
}

/// A key that checks signatures, with its id and algorithm when its source says so.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// The JWKS of an identity provider, fetched over HTTPS and cached.
struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<(Vec<PublicKey>, Option<Instant>)>,
    /// When a token's unknown key id last made us fetch (the only fetches that are limited).
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

/// Checks tokens; loaded once at start-up, cheap to clone.
#[derive(Clone, Default)]
pub struct Verifier {
    inner: Arc<Keys>,
}

#[derive(Default)]
struct Keys {
    hs256: Option<DecodingKey>,
    /// Keys from the PEM and JWKS files.
    public: Vec<PublicKey>,
    remote: Option<RemoteJwks>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
}

fn keys_of(set: &JwkSet, source: &str) -> Result<Vec<PublicKey>, String> {
    set.keys
        .iter()
        .filter(|jwk| !is_symmetric(jwk))
        .map(|jwk| {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|err| format!("{source}: a key cannot be used: {err}"))?;
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            Ok(PublicKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}

/// Shared secrets never come from a JWKS: a published "secret" would let anyone sign.
fn is_symmetric(jwk: &Jwk) -> bool {
    matches!(
        jwk.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    )
}

impl RemoteJwks {
    async fn fetch(&self) -> Result<Vec<PublicKey>, String> {
        let failed = |err: &dyn std::fmt::Display| format!("fetching the JWKS {}: {err}", self.url);
        // reqwest's own message hides the cause ("error sending request"): name it.
        let cause = |err: &reqwest::Error| {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            text
        };
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| failed(&cause(&err)))?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| failed(&cause(&err)))? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(failed(&"the document is larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|err| failed(&err))?;
        keys_of(&set, &self.url)
    }

    /// The cached keys, fetched first when there are none yet or they are old.
    async fn current(&self) -> Vec<PublicKey> {
        let stale = {
            let (keys, fetched) = &*self.keys.read().unwrap_or_else(|e| e.into_inner());
            // Without keys (the provider was down), try again, but not on every token.
            let retry_after = if keys.is_empty() {
                JWKS_RETRY
            } else {
                JWKS_MAX_AGE
            };
            fetched.is_none_or(|at| at.elapsed() > retry_after)
        };
        if stale {
            let _one_at_a_time = self.fetching.lock().await;
            self.store(self.fetch().await);
        }
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Fetches the keys again because a token names a key id we do not know — unless an
    /// unknown key id did that less than [`JWKS_MIN_REFETCH`] ago (made-up key ids must not
    /// turn into requests to the provider).
    async fn refetch_for_unknown_key(&self) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_MIN_REFETCH) {
            return;
        }
        *last = Some(Instant::now());
        self.store(self.fetch().await);
    }

    fn store(&self, fetched: Result<Vec<PublicKey>, String>) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(fresh) => {
                tracing::info!("loaded {} keys from the JWKS {}", fresh.len(), self.url);
                *keys = (fresh, Some(Instant::now()));
            }
            Err(err) => {
                tracing::warn!("{err}");
                // Keep the keys we had until the next try.
                keys.1 = Some(Instant::now());
            }
        }
    }
}

impl Verifier {
    /// Keys from the configured secret, files and URL; a file that cannot be read stops
    /// start-up. An identity provider that does not answer is tried again on the first token.
    pub async fn load(settings: &JwtSettings) -> Result<Self, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|err| format!("cannot read the {what} {}: {err}", path.display()))
        };
        let mut public = Vec::new();
        if let Some(path) = &settings.public_key_file {
            let pem = read(path, "RS256 public key")?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|err| {
                format!("{} is not an RSA public key in PEM: {err}", path.display())
            })?;
            public.push(PublicKey {
                kid: None,
                algorithm: None,
                key,
            });
        }
        if let Some(path) = &settings.jwks_file {
            let text = read(path, "JWKS file")?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|err| format!("{} is not a JWKS document: {err}", path.display()))?;
            public.extend(keys_of(&set, &path.display().to_string())?);
        }
        let remote = match &settings.jwks_url {
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|err| format!("cannot make an HTTPS client for the JWKS: {err}"))?;
                let remote = RemoteJwks {
                    url: url.clone(),
                    client,
                    keys: RwLock::new((Vec::new(), None)),
                    fetching: tokio::sync::Mutex::new(None),
                };
                remote.current().await;
                Some(remote)
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Keys {
                hs256: settings
                    .secret
                    .as_deref()
                    .map(|secret| DecodingKey::from_secret(secret.as_bytes())),
                public,
                remote,
                issuers: settings.issuers.clone(),
                audiences: settings.audiences.clone(),
                leeway: settings.leeway.as_secs(),
            }),
        })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let keys = &self.inner;
        let mut validation = Validation::new(algorithm);
        validation.leeway = keys.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if keys.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&keys.issuers);
            required.push("iss");
        }
        if keys.audiences.is_empty() {
            validation.aud = None;
        } else {
            validation.set_audience(&keys.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The identity a token grants; no token means an anonymous caller.
    pub async fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = token else {
            return Ok(Identity::default());
        };
        let invalid = |err: &dyn std::fmt::Display| AuthError::InvalidToken(err.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|err| invalid(&err))?;
        let keys = &self.inner;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = keys.hs256.as_ref().ok_or_else(|| self.no_key(header.alg))?;
                self.decode(token, key, header.alg)?
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA => self.decode_public(token, &header).await?,
            other => {
                return Err(AuthError::InvalidToken(format!(
                    "algorithm {other:?} is not accepted"
                )))
            }
        };
        let mut extras = Map::new();
        extras.insert("id".into(), Value::from(claims.sub));
        if let Some(name) = claims.name {
            extras.insert("name".into(), Value::from(name));
        }
        // A colour reaches pages' CSS: only real colours are kept.
        if let Some(colour) = claims.colour.filter(|c| is_valid_colour(c)) {
            extras.insert("colour".into(), Value::from(colour));
        }
        Ok(Identity {
            authenticated: true,
            extras,
        })
    }

    fn no_key(&self, algorithm: Algorithm) -> AuthError {
        let keys = &self.inner;
        if keys.hs256.is_none() && keys.public.is_empty() && keys.remote.is_none() {
            AuthError::TokensDisabled
        } else {
            AuthError::InvalidToken(format!("no key here checks {algorithm:?} tokens"))
        }
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, key, &self.validation(alg))
            .map(|data| data.claims)
            .map_err(|err| AuthError::InvalidToken(err.to_string()))
    }

    /// Checks a token signed with a public key: the keys that match its key id (or, without
    /// one, every key of its algorithm); a key id nobody knows fetches the provider's JWKS
    /// again first.
    async fn decode_public(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<Claims, AuthError> {
        let keys = &self.inner;
        let mut candidates = keys.public.clone();
        if let Some(remote) = &keys.remote {
            candidates.extend(remote.current().await);
            let known = |c: &[PublicKey]| c.iter().any(|k| k.kid == header.kid);
            if header.kid.is_some() && !known(&candidates) {
                remote.refetch_for_unknown_key().await;
                candidates = keys.public.clone();
                candidates.extend(remote.current().await);
            }
        }
        let usable: Vec<&PublicKey> = candidates
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .filter(|k| k.algorithm.is_none_or(|a| a == header.alg))
            .collect();
        if usable.is_empty() {
            return Err(match &header.kid {
                Some(kid) if !candidates.is_empty() => {
                    AuthError::InvalidToken(format!("no key with id {kid:?} checks this token"))
                }
                _ => self.no_key(header.alg),
            });
        }
        let mut last = None;
        for candidate in usable {
            match self.decode(token, &candidate.key, header.alg) {
                Ok(claims) => return Ok(claims),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| self.no_key(header.alg)))
    }
}

/// The token a page request carries: `Authorization: Bearer`, else the token cookie.
pub fn page_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(token) = bearer {
        return Some(token.to_string());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// How long a demo token is valid, in seconds.
pub const DEMO_TOKEN_SECONDS: u64 = 12 * 3600;

/// Why a demo token was not issued.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The server's `demo_tokens` setting is off.
    #[error("sign-in is off on this server")]
    Off,
    /// The name is empty.
    #[error("type your name first")]
    NoName,
    /// The colour is not one people may choose.
    #[error("choose a colour such as #3d6cf2")]
    BadColour,
    /// Signing failed.
    #[error("could not sign the token: {0}")]
    Signing(String),
}

/// A demo HS256 token for `name`, where the `demo_tokens` setting is on: anyone can sign in
/// under any name, so it is for trying the product, never for a real deployment.
pub fn demo_token(
    config: &super::ServerConfig,
    name: &str,
    colour: &str,
) -> Result<(String, crate::pages::chat::message::ChatUser), DemoError> {
    if !config.demo_tokens {
        return Err(DemoError::Off);
    }
    let secret = config.jwt.secret.as_deref().ok_or(DemoError::Off)?;
    let name: String = name
        .trim()
        .chars()
        .take(crate::pages::chat::message::MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        return Err(DemoError::NoName);
    }
    if !is_valid_colour(colour) {
        return Err(DemoError::BadColour);
    }
    let id = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|err| DemoError::Signing(err.to_string()))?
        .as_secs()
        + DEMO_TOKEN_SECONDS;
    let claims = json!({ "sub": id, "name": name, "colour": colour, "exp": exp });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|err| DemoError::Signing(err.to_string()))?;
    let user = crate::pages::chat::message::ChatUser {
        id,
        name,
        colour: colour.to_string(),
    };
    Ok((token, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_comes_from_the_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            "theme=dark; switchboard_token=abc.def.ghi".parse().unwrap(),
        );
        assert_eq!(page_token(&headers).as_deref(), Some("abc.def.ghi"));
        headers.insert("authorization", "Bearer xyz".parse().unwrap());
        assert_eq!(page_token(&headers).as_deref(), Some("xyz"));
        assert_eq!(page_token(&HeaderMap::new()), None);
    }
}
