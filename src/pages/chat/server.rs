//! The chat page's server functions: the room's recent messages for server rendering, and
//! sending a message over HTTP (it reaches the room through the same hub as socket messages).

use leptos::prelude::*;

use super::message::ChatMessage;

/// The room's recent chat messages, oldest first (as many as a join's history sends).
#[server]
pub async fn recent_messages(room: String) -> Result<Vec<ChatMessage>, ServerFnError> {
    use switchboard_protocol::Frame;
    let hub = expect_context::<switchboard_hub::Hub>();
    let frames = hub
        .recent(&room, hub.config().history_on_join)
        .map_err(|err| ServerFnError::new(err.to_string()))?;
    Ok(frames
        .iter()
        .filter_map(|bytes| serde_json::from_slice::<Frame>(bytes).ok())
        .flat_map(|frame| ChatMessage::from_payload(&frame.payload))
        .collect())
}

/// Publishes a chat message to the room as a server-side `event`, stored like any message.
#[server]
pub async fn send_message(room: String, message: ChatMessage) -> Result<(), ServerFnError> {
    if let Some(problem) = message.problem() {
        return Err(ServerFnError::new(problem));
    }
    let hub = expect_context::<switchboard_hub::Hub>();
    let payload = serde_json::value::to_raw_value(&message)
        .map_err(|err| ServerFnError::new(err.to_string()))?;
    hub.publish_event(&room, &payload)
        .map_err(|err| ServerFnError::new(err.to_string()))
}
