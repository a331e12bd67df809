//! What the `switchboard-cli` commands do, as functions that write to any output, so scripts
//! and tests get the same behaviour as a person at a terminal.

use serde_json::{json, Value};
use std::io::Write;
use switchboard_protocol::Action;

use crate::{channel_options, Client, ClientError};

/// `listen`: joins `channel` and writes every frame from the server as one JSON line until the
/// connection ends or `limit` frames were written.
pub async fn listen(
    url: &str,
    token: Option<&str>,
    channel: &str,
    presence: bool,
    limit: Option<usize>,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let mut client = Client::connect_with_token(url, token).await?;
    client.join(channel, presence, false).await?;
    let mut written = 0;
    while limit.is_none_or(|limit| written < limit) {
        let frame = client.next_frame().await?;
        let line =
            serde_json::to_string(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| ClientError::Protocol(e.to_string()))?;
        out.flush()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        written += 1;
    }
    Ok(())
}

/// `send`: joins `channel`, sends `payload` with a ref and returns the outcome as a JSON line:
/// `{"status":"ok"}` or `{"status":"error","code":...,"message":...}`.
pub async fn send(
    url: &str,
    token: Option<&str>,
    channel: &str,
    payload: &str,
) -> Result<Value, ClientError> {
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| ClientError::Protocol(format!("the message is not JSON: {e}")))?;
    let mut client = Client::connect_with_token(url, token).await?;
    client.join(channel, false, false).await?;
    let outcome = match client
        .request(Action::Message, channel_options(channel), payload)
        .await
    {
        Ok(()) => json!({ "status": "ok" }),
        Err(ClientError::Refused { code, message }) => {
            json!({ "status": "error", "code": code, "message": message })
        }
        Err(other) => return Err(other),
    };
    let _ = client.close().await;
    Ok(outcome)
}
