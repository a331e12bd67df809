//! One module per page, and what the room pages share.

pub mod admin;
pub mod chat;
pub mod colour;
pub mod cursors;
pub mod home;
pub mod refusals;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// The room used when none is named.
pub const DEFAULT_ROOM: &str = "room1";

/// The `{room}` of the current route (`room1` when absent), as a memo so a page can rebuild
/// its room when it changes.
pub fn use_room() -> Memo<String> {
    let params = use_params_map();
    Memo::new(move |_| {
        params
            .read()
            .get("room")
            .unwrap_or_else(|| DEFAULT_ROOM.to_string())
    })
}
