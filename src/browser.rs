//! Browser APIs the pages use: local storage, random ids, the clock and the reader's time
//! zone and language, and their motion preference. Call them only from event handlers,
//! effects and components that exist only in the browser — never during server rendering.

use wasm_bindgen::JsValue;

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

/// Removes a value from `localStorage`, where storage is allowed.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn local_remove(key: &str) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.remove_item(key);
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

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// How many minutes the reader's time zone is ahead of UTC at `ms` (summer time included).
pub fn local_offset_minutes(ms: i64) -> i64 {
    -(date(ms).get_timezone_offset() as i64)
}

/// The clock time at `ms` as the reader's language writes it ("09:05", "9:05 AM").
pub fn local_clock(ms: i64) -> String {
    let options = js_sys::Object::new();
    set(&options, "hour", "2-digit");
    set(&options, "minute", "2-digit");
    date(ms)
        .to_locale_time_string_with_options(&language(), &options)
        .into()
}

/// The date at `ms` as the reader's language writes it ("Monday 2 March", "Monday, March 2"),
/// with the year when asked.
pub fn local_date(ms: i64, with_year: bool) -> String {
    let options = js_sys::Object::new();
    set(&options, "weekday", "long");
    set(&options, "day", "numeric");
    set(&options, "month", "long");
    if with_year {
        set(&options, "year", "numeric");
    }
    date(ms).to_locale_date_string(&language(), &options).into()
}

/// The date and time at `ms`, in full, for a tooltip.
pub fn local_date_time(ms: i64) -> String {
    date(ms)
        .to_locale_string(&language(), &JsValue::UNDEFINED)
        .into()
}

/// Whether the page's tab is in the background (the reader is not looking at it).
pub fn tab_hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden())
}

/// Whether the reader asked the system for less motion.
pub fn prefers_reduced_motion() -> bool {
    web_sys::window()
        .and_then(|w| {
            w.match_media("(prefers-reduced-motion: reduce)")
                .ok()
                .flatten()
        })
        .is_some_and(|query| query.matches())
}

fn date(ms: i64) -> js_sys::Date {
    js_sys::Date::new(&JsValue::from_f64(ms as f64))
}

/// The reader's language, as the browser reports it.
fn language() -> String {
    web_sys::window()
        .and_then(|w| w.navigator().language())
        .unwrap_or_else(|| "en".into())
}

fn set(options: &js_sys::Object, key: &str, value: &str) {
    let _ = js_sys::Reflect::set(options, &key.into(), &value.into());
}
