//! The one place that decides whether a caller may join a channel, read its history or send
//! to it. Sockets, server functions, server rendering, the HTTP API and hooks all ask here, so
//! a channel's rules cannot be bypassed by taking another way in.

use std::fmt;
use switchboard_protocol::ErrorCode;

use crate::rules::{ChannelRule, JoinPolicy, SendPolicy};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A person, through a socket or a page: signed in (a valid token) or not.
    Person {
        /// The caller presented a valid token.
        authenticated: bool,
    },
    /// The back end, with an API key (the HTTP API): may always read and send.
    Server,
}

/// What the caller wants to do in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Become a member (and receive its messages).
    Join,
    /// Read its stored messages.
    ReadHistory,
    /// Send a message to it.
    Send,
}

/// Why a request was refused: a stable code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The protocol's error code.
    pub code: ErrorCode,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl Refusal {
    /// A refusal with this code and explanation.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

/// Decides whether `caller` may do `access` in `channel`, whose rule is `rule`.
///
/// Reading history needs the same right as joining: whoever may not be in a channel may not
/// read what was said there. Sending needs both the right to be there and the channel's send
/// policy; the server side (API keys) may always.
pub fn authorize(
    rule: &ChannelRule,
    caller: Caller,
    access: Access,
    channel: &str,
) -> Result<(), Refusal> {
    let authenticated = match caller {
        Caller::Server => return Ok(()),
        Caller::Person { authenticated } => authenticated,
    };
    if rule.join == JoinPolicy::Authenticated && !authenticated {
        let what = match access {
            Access::Join => "joining",
            Access::ReadHistory => "reading the history of",
            Access::Send => "sending to",
        };
        return Err(Refusal::new(
            ErrorCode::AuthRequired,
            format!("{what} channel {channel:?} needs a signed-in caller: connect with a token"),
        ));
    }
    if access != Access::Send {
        return Ok(());
    }
    match (rule.send, authenticated) {
        (SendPolicy::Nobody, _) => Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("only the server publishes to channel {channel:?}"),
        )),
        (SendPolicy::Authenticated, false) => Err(Refusal::new(
            ErrorCode::AuthRequired,
            format!("sending to channel {channel:?} needs a signed-in socket"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANONYMOUS: Caller = Caller::Person {
        authenticated: false,
    };
    const SIGNED_IN: Caller = Caller::Person {
        authenticated: true,
    };

    #[test]
    fn members_only_channels_refuse_anonymous_joins_reads_and_sends() {
        let mut rule = ChannelRule::open("staff/*");
        rule.join = JoinPolicy::Authenticated;
        for access in [Access::Join, Access::ReadHistory, Access::Send] {
            let refused = authorize(&rule, ANONYMOUS, access, "staff/a").unwrap_err();
            assert_eq!(refused.code, ErrorCode::AuthRequired, "{access:?}");
            assert!(authorize(&rule, SIGNED_IN, access, "staff/a").is_ok());
            assert!(authorize(&rule, Caller::Server, access, "staff/a").is_ok());
        }
    }

    #[test]
    fn server_only_channels_refuse_every_person_but_let_them_read() {
        let mut rule = ChannelRule::open("news");
        rule.send = SendPolicy::Nobody;
        let refused = authorize(&rule, SIGNED_IN, Access::Send, "news").unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(authorize(&rule, ANONYMOUS, Access::ReadHistory, "news").is_ok());
        assert!(authorize(&rule, Caller::Server, Access::Send, "news").is_ok());
    }

    #[test]
    fn signed_in_senders_only_refuses_anonymous_sends() {
        let mut rule = ChannelRule::open("members-speak");
        rule.send = SendPolicy::Authenticated;
        let refused = authorize(&rule, ANONYMOUS, Access::Send, "members-speak").unwrap_err();
        assert_eq!(refused.code, ErrorCode::AuthRequired);
        assert!(authorize(&rule, ANONYMOUS, Access::Join, "members-speak").is_ok());
        assert!(authorize(&rule, SIGNED_IN, Access::Send, "members-speak").is_ok());
    }
}
