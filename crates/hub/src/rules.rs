//! Channel rules: who may join a channel, who may send to it, whether it has presence, how much
//! history it keeps, and its payload and rate limits. Rules match channel names by pattern
//! (an exact name, or a prefix ending in `*`, like `room*` or `support/*`); the first match
//! wins, and channels no rule matches get the default.

use std::time::Duration;

/// Who may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPolicy {
    /// Any socket, with or without a token.
    Anyone,
    /// Only sockets with a valid token.
    Authenticated,
}

/// Who may send messages (the HTTP API and server functions always may).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPolicy {
    /// No socket: the server side only.
    Nobody,
    /// Only sockets with a valid token.
    Authenticated,
    /// Any member.
    Anyone,
}

/// The rule for the channels a pattern matches.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRule {
    /// An exact channel name, or a prefix followed by `*`.
    pub pattern: String,
    /// Who may join.
    pub join: JoinPolicy,
    /// Who may send.
    pub send: SendPolicy,
    /// Whether joins with `presence: true` get presence.
    pub presence: bool,
    /// Messages kept (instead of the server-wide count).
    pub history_keep: Option<u64>,
    /// Largest payload (instead of the server-wide limit, if smaller).
    pub max_payload_bytes: Option<usize>,
    /// Messages one socket may send to the channel per second.
    pub messages_per_second: Option<u32>,
}

impl ChannelRule {
    /// The rule for everything: anyone joins and sends, presence on, server-wide limits.
    pub fn open(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
            join: JoinPolicy::Anyone,
            send: SendPolicy::Anyone,
            presence: true,
            history_keep: None,
            max_payload_bytes: None,
            messages_per_second: None,
        }
    }

    /// Whether this rule applies to `channel`.
    pub fn matches(&self, channel: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.pattern,
        }
    }
}

/// The rules, in order, and the default.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRules {
    rules: Vec<ChannelRule>,
    default: ChannelRule,
}

impl Default for ChannelRules {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl ChannelRules {
    /// Rules tried in order; channels none matches are open.
    pub fn new(rules: Vec<ChannelRule>) -> Self {
        Self {
            rules,
            default: ChannelRule::open("*"),
        }
    }

    /// The first rule matching `channel`, or the default.
    pub fn for_channel(&self, channel: &str) -> &ChannelRule {
        self.rules
            .iter()
            .find(|rule| rule.matches(channel))
            .unwrap_or(&self.default)
    }

    /// The retention of `channel`: its rule's count, or the server-wide one.
    pub fn retention(
        &self,
        channel: &str,
        keep: u64,
        max_age: Duration,
    ) -> crate::history::Retention {
        crate::history::Retention {
            count: self.for_channel(channel).history_keep.unwrap_or(keep),
            max_age,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefixes_match_and_the_first_match_wins() {
        let mut support = ChannelRule::open("support/*");
        support.join = JoinPolicy::Authenticated;
        let mut announcements = ChannelRule::open("announcements");
        announcements.send = SendPolicy::Nobody;
        let mut everything = ChannelRule::open("*");
        everything.presence = false;
        let rules = ChannelRules::new(vec![support, announcements, everything]);
        assert_eq!(
            rules.for_channel("support/billing").join,
            JoinPolicy::Authenticated
        );
        assert_eq!(rules.for_channel("announcements").send, SendPolicy::Nobody);
        assert_eq!(
            rules.for_channel("announcements-2").send,
            SendPolicy::Anyone
        );
        assert!(!rules.for_channel("room1").presence);
        assert!(ChannelRules::default().for_channel("anything").presence);
    }
}
