//! Channel names: what a client may name a channel, checked the same way in browser and server.

use crate::ErrorCode;

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 128;

/// Checks a channel name: 1 to 128 ASCII letters, digits or `_ - . : /`, not starting or
/// ending with `/`. Wildcards (`*`) belong to channel rules, never to a channel's own name.
pub fn validate_channel_name(name: &str) -> Result<(), (ErrorCode, &'static str)> {
    if name.is_empty() {
        return Err((ErrorCode::InvalidChannel, "channel name is empty"));
    }
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return Err((
            ErrorCode::InvalidChannel,
            "channel name is longer than 128 bytes",
        ));
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/');
    if !name.bytes().all(allowed) {
        return Err((
            ErrorCode::InvalidChannel,
            "channel name may only contain ASCII letters, digits and _ - . : /",
        ));
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Err((
            ErrorCode::InvalidChannel,
            "channel name must not start or end with /",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["room1", "support/billing", "team:42.general", "a-b_c"] {
            assert_eq!(validate_channel_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn empty_long_wildcard_and_spaced_names_are_invalid_channel() {
        let long = "x".repeat(MAX_CHANNEL_NAME_LEN + 1);
        for name in [
            "",
            long.as_str(),
            "room*",
            "room 1",
            "/room",
            "room/",
            "chätt",
        ] {
            let err = validate_channel_name(name).unwrap_err();
            assert_eq!(err.0, ErrorCode::InvalidChannel, "{name}");
        }
    }
}
