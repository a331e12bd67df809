//! The chat page's server functions: the room's recent history for server rendering, and
//! sending a message over HTTP. Both act as the caller — its token from the page's cookie or
//! `Authorization` header — under the same channel rules as a socket, so a members-only room
//! shows nothing to an anonymous visitor and a server-only room takes nothing from a page.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::message::{ChatMessage, Entry};

/// What the server renders a room with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// The room's latest stored entries, oldest first.
    pub entries: Vec<Entry>,
    /// The server's clock when it read them (ms since the Unix epoch): the page shows days
    /// relative to it until it knows the reader's own clock and time zone.
    pub now: i64,
}

/// The room's recent chat entries, oldest first (as many as a join's history sends), without
/// the text their authors deleted or corrected, if the caller may read them.
#[server(endpoint = "chat/recent_messages")]
pub async fn recent_messages(room: String) -> Result<Recent, ServerFnError> {
    use super::timeline::without_withdrawn_text;
    use crate::server::pages::PageCaller;
    use switchboard_hub::Actor;
    use switchboard_protocol::Frame;
    let caller = PageCaller::of_request().await?;
    caller.admit().await?;
    let hub = &caller.state.hub;
    let limit = hub.config().history_on_join;
    let frames = hub
        .history(
            Actor::Person(&caller.identity, Some(caller.ip)),
            &room,
            None,
            limit,
        )
        .await
        .map_err(|refusal| caller.refused(refusal))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let entries = frames
        .iter()
        .filter_map(|bytes| serde_json::from_slice::<Frame>(bytes).ok())
        .flat_map(|frame| Entry::all_in(&frame))
        .collect();
    Ok(Recent {
        entries: without_withdrawn_text(entries),
        now,
    })
}

/// Sends a chat message to the room as the caller: stored and delivered like a socket's.
#[server(endpoint = "chat/send_message")]
pub async fn send_message(room: String, message: ChatMessage) -> Result<(), ServerFnError> {
    use crate::server::pages::PageCaller;
    use switchboard_hub::Actor;
    let caller = PageCaller::of_request().await?;
    caller.take_send()?;
    if let Some(problem) = message.problem() {
        return Err(crate::server::pages::bad_input(problem));
    }
    caller.admit().await?;
    let sender = caller.sender(&message.user)?;
    let payload = serde_json::value::to_raw_value(&message).map_err(ServerFnError::new)?;
    caller
        .state
        .hub
        .publish(Actor::Person(&sender, Some(caller.ip)), &room, &payload)
        .await
        .map(drop)
        .map_err(|refusal| caller.refused(refusal))
}
