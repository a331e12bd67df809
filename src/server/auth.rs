//! Connection auth: an HS256 JWT, carried in the `Sec-WebSocket-Protocol` slot as Xano's SDK
//! does (or as `?token=`), turns a socket into an authenticated one with a public identity.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};
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
    /// A token was sent but this server has no secret to check it with.
    #[error("this server does not accept tokens: set SWITCHBOARD_JWT_SECRET")]
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

/// The identity a token grants; no token means an anonymous socket.
pub fn identify(token: Option<&str>, secret: Option<&str>) -> Result<Identity, AuthError> {
    let Some(token) = token else {
        return Ok(Identity::default());
    };
    let secret = secret.ok_or(AuthError::TokensDisabled)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
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
