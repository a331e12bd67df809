//! The chat page's server functions: the room's recent messages for server rendering, and
//! sending a message over HTTP. Both act as the caller — its token from the page's cookie or
//! `Authorization` header — under the same channel rules as a socket, so a members-only room
//! shows nothing to an anonymous visitor and a server-only room takes nothing from a page.

use leptos::prelude::*;

use super::message::ChatMessage;

/// The room's recent chat messages, oldest first (as many as a join's history sends), if the
/// caller may read them.
#[server(endpoint = "chat/recent_messages")]
pub async fn recent_messages(room: String) -> Result<Vec<ChatMessage>, ServerFnError> {
    use crate::server::pages::PageCaller;
    use switchboard_protocol::Frame;
    let caller = PageCaller::of_request().await?;
    let hub = &caller.state.hub;
    let limit = hub.config().history_on_join;
    let frames = hub
        .history(caller.identity.caller(), &room, None, limit)
        .await
        .map_err(|refusal| caller.refused(refusal))?;
    Ok(frames
        .iter()
        .filter_map(|bytes| serde_json::from_slice::<Frame>(bytes).ok())
        .flat_map(|frame| ChatMessage::all_in(&frame))
        .collect())
}

/// Sends a chat message to the room as the caller: stored and delivered like a socket's.
#[server(endpoint = "chat/send_message")]
pub async fn send_message(room: String, message: ChatMessage) -> Result<(), ServerFnError> {
    use crate::server::pages::PageCaller;
    use switchboard_hub::Publisher;
    let caller = PageCaller::of_request().await?;
    caller.take_send()?;
    if let Some(problem) = message.problem() {
        return Err(ServerFnError::new(problem));
    }
    let sender = caller.sender(&message.user)?;
    let payload = ChatMessage {
        author: None,
        ..message
    };
    let payload = serde_json::value::to_raw_value(&payload).map_err(ServerFnError::new)?;
    caller
        .state
        .hub
        .publish(Publisher::Person(&sender), &room, &payload)
        .await
        .map(drop)
        .map_err(|refusal| caller.refused(refusal))
}
