//! Browser APIs the pages use: local storage, random ids and the clock. Call them only from
//! event handlers and effects, which run in the browser and never during server rendering.

/// A value from `localStorage`, if the browser allows storage.
pub fn local_get(key: &str) -> Option<String> {
    web_sys::window()?
        .local_storage()
        .ok()??
        .get_item(key)
        .ok()?
}

/// Saves a value in `localStorage`; silently does nothing where storage is blocked.
pub fn local_set(key: &str, value: &str) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.set_item(key, value);
    }
}

/// A random UUID v4 from the browser's CSPRNG (works on plain http, unlike randomUUID).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        for byte in &mut bytes {
            *byte = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Now, as an ISO 8601 UTC timestamp.
pub fn now_iso() -> String {
    js_sys::Date::new_0().to_iso_string().into()
}

/// `HH:MM` in the browser's time zone for an ISO timestamp; empty when it cannot be read.
pub fn local_time(iso: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(iso));
    if date.get_time().is_nan() {
        return String::new();
    }
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}
