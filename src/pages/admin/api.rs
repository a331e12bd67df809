//! The admin API from the browser: one `fetch` per call, the key in the `Authorization`
//! header, and the key itself kept in `sessionStorage` — this tab, until it closes.

use serde_json::Value;

/// Where the key is kept for the tab.
const KEY_STORAGE: &str = "switchboard_admin_key";

/// Why a call did not succeed, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status (0 when the server was not reached).
    pub status: u16,
    /// What went wrong, as a sentence.
    pub message: String,
}

impl Failure {
    /// Whether the key itself was refused (so the console signs out).
    pub fn key_refused(&self) -> bool {
        self.status == 401
    }

    fn unreachable(why: &str) -> Self {
        Failure {
            status: 0,
            message: format!("The server could not be reached ({why}). Is it running?"),
        }
    }
}

/// The key this tab signed in with.
pub fn saved_key() -> Option<String> {
    storage()?.get_item(KEY_STORAGE).ok()?
}

/// Keeps `key` for this tab.
pub fn save_key(key: &str) {
    if let Some(storage) = storage() {
        let _ = storage.set_item(KEY_STORAGE, key);
    }
}

/// Forgets the key.
pub fn forget_key() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(KEY_STORAGE);
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// `path` with `channel` as one path segment (a `/` in a channel name is escaped).
pub fn channel_path(channel: &str, rest: &str) -> String {
    let segment: String = js_sys::encode_uri_component(channel).into();
    format!("/api/admin/channels/{segment}{rest}")
}

/// A query-string value.
pub fn query_value(value: &str) -> String {
    js_sys::encode_uri_component(value).into()
}

/// `method path` with `key`, and a JSON `body`; the JSON answer, or why not.
#[cfg(feature = "hydrate")]
pub async fn call(
    method: &str,
    path: &str,
    key: &str,
    body: Option<String>,
) -> Result<Value, Failure> {
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    let described = |err: JsValue| {
        err.as_string()
            .or_else(|| {
                js_sys::Reflect::get(&err, &"message".into())
                    .ok()?
                    .as_string()
            })
            .unwrap_or_else(|| "no answer".into())
    };
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| Failure::unreachable(&described(e)))?;
    let _ = headers.set("Authorization", &format!("Bearer {key}"));
    if let Some(body) = &body {
        let _ = headers.set("Content-Type", "application/json");
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(path, &init)
        .map_err(|e| Failure::unreachable(&described(e)))?;
    let window = web_sys::window().ok_or_else(|| Failure::unreachable("no window"))?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|e| Failure::unreachable(&described(e)))?
        .unchecked_into();
    let status = response.status();
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if response.ok() {
        return Ok(answer);
    }
    let said = answer["error"]["message"].as_str().unwrap_or_default();
    let message = match status {
        401 => format!("The admin key was refused: {said}."),
        429 => "Too many requests; wait a moment and try again.".to_string(),
        _ if said.is_empty() => format!("The server answered {status}."),
        _ => format!("The server refused: {said}."),
    };
    Err(Failure { status, message })
}

/// On the server nothing is fetched: the console loads in the browser.
#[cfg(not(feature = "hydrate"))]
pub async fn call(
    _method: &str,
    _path: &str,
    _key: &str,
    _body: Option<String>,
) -> Result<Value, Failure> {
    Err(Failure::unreachable("not in a browser"))
}
