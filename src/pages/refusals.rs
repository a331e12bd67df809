//! What the server's refusals mean to the person at the page. The protocol's error codes are
//! stable words for programs; people get a sentence that says what happened and what to do,
//! never the server's developer message or a framework's.

use leptos::prelude::*;
use switchboard_protocol::ErrorCode;

use crate::realtime::{Channel, ConnectionStatus};

/// What the person was doing when the server said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Sending a message.
    Send,
    /// Editing, deleting or reacting to a message.
    Change,
    /// Entering the room.
    Join,
    /// Loading earlier messages.
    LoadEarlier,
}

/// Why the page is not in its room, while it is not: the server's refusal of the join, as a
/// sentence (its code stays on the element for programs).
#[component]
pub fn JoinRefusal(channel: Channel) -> impl IntoView {
    move || {
        let connected = channel.status.get() == ConnectionStatus::Connected;
        channel
            .last_error
            .get()
            .filter(|_| !connected)
            .map(|error| {
                view! {
                    <p class="send-error" role="alert" data-code=error.code.to_string()>
                        {explain(error.code, &error.message, Attempt::Join)}
                    </p>
                }
            })
    }
}

/// A sentence for a person about a refusal with `code` while doing `attempt`.
pub fn sentence(code: ErrorCode, attempt: Attempt) -> &'static str {
    use Attempt::*;
    use ErrorCode::*;
    match (code, attempt) {
        (NotSubscribed, Join | LoadEarlier) => {
            "This page is not in the room yet. Wait a moment and try again."
        }
        (NotSubscribed, _) => "This page has not joined that room, so nothing was sent there.",
        (UnknownMessage, _) => "That message is no longer in this room's history.",
        (Forbidden, Change) => "Only the person who wrote a message can edit or delete it.",
        (Forbidden, _) => {
            "This room does not take messages from people; only the service posts here."
        }
        (AuthRequired, Join) => "This room is for signed-in members. Sign in to enter it.",
        (AuthRequired, _) => "Only signed-in members can write in this room.",
        (RateLimited, _) => "You are going too fast. Wait a moment and try again.",
        (PayloadTooLarge, _) => "This is too long to send. Shorten it and try again.",
        (Overloaded, _) => "The server is busy right now. Try again in a moment.",
        (Internal, LoadEarlier) => {
            "The server could not read the earlier messages. Try again later."
        }
        (Internal, _) => "The server could not save this. Try again in a moment.",
        (TooManyChannels, _) => "This page has too many rooms open. Close some and try again.",
        (UnknownSocket, _) => "That person has left the room.",
        (BadJson | InvalidFrame | UnknownAction | MissingChannel | InvalidChannel, _) => {
            "The page sent something the server could not read. Reload the page and try again."
        }
    }
}

/// A sentence for a person about a refusal, with the server's own words where they are meant
/// for people: a `forbidden` join or send carries the channel rule's or the back end's reason
/// ("closed for the night"), which says more than any fixed sentence could.
pub fn explain(code: ErrorCode, message: &str, attempt: Attempt) -> String {
    match (code, attempt) {
        (ErrorCode::Forbidden, Attempt::Join | Attempt::Send) if !message.trim().is_empty() => {
            as_sentence(message)
        }
        _ => sentence(code, attempt).to_string(),
    }
}

/// A message from a server function as a sentence: starts with a capital, ends with a stop.
pub fn as_sentence(text: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let mut sentence: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return "Something went wrong. Try again.".into(),
    };
    if !sentence.ends_with(['.', '!', '?']) {
        sentence.push('.');
    }
    sentence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reads_as_a_sentence() {
        let codes = [
            ErrorCode::BadJson,
            ErrorCode::InvalidFrame,
            ErrorCode::UnknownAction,
            ErrorCode::MissingChannel,
            ErrorCode::InvalidChannel,
            ErrorCode::NotSubscribed,
            ErrorCode::UnknownSocket,
            ErrorCode::UnknownMessage,
            ErrorCode::PayloadTooLarge,
            ErrorCode::TooManyChannels,
            ErrorCode::RateLimited,
            ErrorCode::AuthRequired,
            ErrorCode::Forbidden,
            ErrorCode::Overloaded,
            ErrorCode::Internal,
        ];
        let attempts = [
            Attempt::Send,
            Attempt::Change,
            Attempt::Join,
            Attempt::LoadEarlier,
        ];
        for code in codes {
            for attempt in attempts {
                let said = sentence(code, attempt);
                assert!(said.starts_with(char::is_uppercase), "{said}");
                assert!(said.ends_with('.'), "{said}");
                assert!(!said.contains('_'), "no wire codes in {said}");
            }
        }
    }

    #[test]
    fn server_function_messages_become_sentences() {
        assert_eq!(as_sentence("type your name first"), "Type your name first.");
        assert_eq!(as_sentence("Done!"), "Done!");
        assert_eq!(as_sentence("  "), "Something went wrong. Try again.");
    }
}
