//! Colours people choose for themselves (name, cursor): the only values the server and the
//! pages let reach CSS. A colour is `#rgb` or `#rrggbb`, or a name from a short fixed list;
//! anything else (`red;position:fixed`, `url(...)`, `expression(...)`) is refused.

/// Colour names accepted besides hex notation.
pub const COLOUR_NAMES: [&str; 16] = [
    "black", "white", "gray", "grey", "red", "orange", "yellow", "green", "teal", "blue", "navy",
    "purple", "pink", "brown", "crimson", "indigo",
];

/// Whether `value` is a colour people may choose: `#rgb`, `#rrggbb` or a name in
/// [`COLOUR_NAMES`] (any case).
pub fn is_valid_colour(value: &str) -> bool {
    match value.strip_prefix('#') {
        Some(hex) => matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => COLOUR_NAMES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_listed_names_are_colours() {
        for ok in ["#fff", "#3D6CF2", "#e5484d", "Teal", "grey"] {
            assert!(is_valid_colour(ok), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_carry_css_is_not() {
        for bad in [
            "red;position:fixed;inset:0",
            "#ff",
            "#ggg",
            "#1234567",
            "url(https://x)",
            "expression(alert(1))",
            "",
            "rgb(1,2,3)",
            "red ",
            "#fff;",
        ] {
            assert!(!is_valid_colour(bad), "{bad}");
        }
    }
}
