//! The admin HTTP API (`/api/admin/…`) from a terminal or a script: what `switchboard-cli
//! webhooks` does. The server's address is taken from the realtime URL the other commands use
//! (`ws://host:port/rt/…` → `http://host:port`, `wss://` → `https://`), so one `--url` serves
//! every command; an `http://` or `https://` URL is taken as it is.

use serde_json::Value;

use crate::{tls, ClientError};

/// An admin-key holder's view of one server.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// `scheme://host[:port]` of the HTTP API behind `url`.
pub fn http_base(url: &str) -> Result<String, ClientError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        ClientError::Protocol(format!("{url:?} is not a URL (ws://host:port/… expected)"))
    })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => {
            return Err(ClientError::Protocol(format!(
                "{other}:// is not a scheme the server speaks (ws, wss, http or https)"
            )))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ClientError::Protocol(format!("{url:?} names no host")));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// An HTTP client for `base` (`http://` or `https://`, trusting what the sockets trust).
fn http_client(base: &str) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("switchboard-cli/", env!("CARGO_PKG_VERSION")));
    if base.starts_with("https://") {
        let config = tls::client_config()?;
        builder = builder.use_preconfigured_tls((*config).clone());
    }
    builder
        .build()
        .map_err(|err| ClientError::Tls(err.to_string()))
}

/// The text of `GET /metrics` of the server behind `url` (`ws://`, `wss://`, `http://` or
/// `https://`).
pub async fn metrics_text(url: &str) -> Result<String, ClientError> {
    let base = http_base(url)?;
    let response = http_client(&base)?
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|err| ClientError::Protocol(format!("{base}/metrics: {err}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ClientError::Protocol(format!(
            "{base}/metrics answered HTTP {status}"
        )));
    }
    response
        .text()
        .await
        .map_err(|err| ClientError::Protocol(err.to_string()))
}

impl Admin {
    /// An admin client for the server behind `url`, presenting `key`.
    pub fn new(url: &str, key: &str) -> Result<Self, ClientError> {
        let base = http_base(url)?;
        let http = http_client(&base)?;
        Ok(Self {
            http,
            base,
            key: key.to_string(),
        })
    }

    /// `GET /api/admin/webhooks`: every endpoint with its pending, dead and delivered counts.
    pub async fn webhooks(&self) -> Result<Value, ClientError> {
        self.call(self.http.get(format!("{}/api/admin/webhooks", self.base)))
            .await
    }

    /// `POST /api/admin/webhooks/replay`: dead events of `endpoint` (of every endpoint when
    /// `None`) are delivered again, in order. Answers `{"replayed": n}`.
    pub async fn replay_webhooks(&self, endpoint: Option<&str>) -> Result<Value, ClientError> {
        let body = match endpoint {
            Some(name) => serde_json::json!({ "endpoint": name }),
            None => serde_json::json!({}),
        };
        let request = self
            .http
            .post(format!("{}/api/admin/webhooks/replay", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.call(request).await
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|err| ClientError::Protocol(format!("{}: {err}", self.base)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            ClientError::Protocol(format!(
                "HTTP {status} with a body that is not JSON: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let field = |name: &str| body["error"][name].as_str().unwrap_or_default().to_string();
        Err(ClientError::Http {
            status: status.as_u16(),
            code: field("code"),
            message: field("message"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::http_base;

    #[test]
    fn the_http_api_is_found_from_the_realtime_url() {
        assert_eq!(
            http_base("ws://127.0.0.1:3000/rt/cli").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            http_base("WSS://chat.example.com/rt/cli?x=1").unwrap(),
            "https://chat.example.com"
        );
        assert_eq!(
            http_base("https://chat.example.com:8443").unwrap(),
            "https://chat.example.com:8443"
        );
        assert!(http_base("ftp://example.com").is_err());
        assert!(http_base("ws:///rt/cli").is_err());
        assert!(http_base("chat.example.com").is_err());
    }
}
