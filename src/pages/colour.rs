//! The colours people choose for themselves, as the pages may use them: only a checked colour
//! reaches CSS, and text drawn on a person's colour (a cursor's name label) gets the ink that
//! reads on it, so any choice keeps a contrast of at least 4.5:1.

use switchboard_protocol::is_valid_colour;

/// Colour shown for a person whose colour is missing or not a colour.
pub const FALLBACK_COLOUR: &str = "#888888";

/// Text colour on light backgrounds.
const DARK_INK: &str = "#000000";
/// Text colour on dark backgrounds.
const LIGHT_INK: &str = "#ffffff";

/// `colour` if it is one people may choose, else the fallback: the only way a colour reaches
/// the pages' CSS.
pub fn safe_colour(colour: Option<&str>) -> String {
    colour
        .filter(|c| is_valid_colour(c))
        .unwrap_or(FALLBACK_COLOUR)
        .to_string()
}

/// Black or white, whichever reads better on `background` (a colour checked with
/// [`safe_colour`]). One of the two always has a contrast ratio of at least 4.58:1.
pub fn ink_on(background: &str) -> &'static str {
    let luminance = rgb(background).map_or(0.5, relative_luminance);
    // Contrast with black is (L + 0.05) / 0.05, with white 1.05 / (L + 0.05).
    if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) {
        DARK_INK
    } else {
        LIGHT_INK
    }
}

/// Red, green and blue of a colour people may choose.
fn rgb(colour: &str) -> Option<[u8; 3]> {
    if let Some(hex) = colour.strip_prefix('#') {
        let digit = |i: usize| u8::from_str_radix(hex.get(i..=i)?, 16).ok();
        return match hex.len() {
            3 => Some([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17]),
            6 => {
                let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
                Some([byte(0)?, byte(2)?, byte(4)?])
            }
            _ => None,
        };
    }
    let named = match colour.to_ascii_lowercase().as_str() {
        "black" => [0, 0, 0],
        "white" => [255, 255, 255],
        "gray" | "grey" => [128, 128, 128],
        "red" => [255, 0, 0],
        "orange" => [255, 165, 0],
        "yellow" => [255, 255, 0],
        "green" => [0, 128, 0],
        "teal" => [0, 128, 128],
        "blue" => [0, 0, 255],
        "navy" => [0, 0, 128],
        "purple" => [128, 0, 128],
        "pink" => [255, 192, 203],
        "brown" => [165, 42, 42],
        "crimson" => [220, 20, 60],
        "indigo" => [75, 0, 130],
        _ => return None,
    };
    Some(named)
}

/// WCAG 2 relative luminance.
fn relative_luminance([r, g, b]: [u8; 3]) -> f64 {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::COLOUR_NAMES;

    fn contrast(a: &str, b: &str) -> f64 {
        let (la, lb) = (
            relative_luminance(rgb(a).unwrap()),
            relative_luminance(rgb(b).unwrap()),
        );
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn text_on_any_chosen_colour_has_a_contrast_of_at_least_4_5() {
        let mut colours: Vec<String> = COLOUR_NAMES.iter().map(|c| c.to_string()).collect();
        for r in (0..=255).step_by(17) {
            for g in (0..=255).step_by(51) {
                for b in (0..=255).step_by(51) {
                    colours.push(format!("#{r:02x}{g:02x}{b:02x}"));
                }
            }
        }
        colours.extend(["#ffc53d", "#30a46c", "#0090ff", "#fc0", "#F76B15"].map(String::from));
        for colour in colours {
            let ink = ink_on(&colour);
            assert!(contrast(&colour, ink) >= 4.5, "{ink} on {colour}");
        }
    }

    #[test]
    fn light_colours_get_dark_ink_and_dark_ones_light_ink() {
        assert_eq!(ink_on("#ffc53d"), DARK_INK);
        assert_eq!(ink_on("yellow"), DARK_INK);
        assert_eq!(ink_on("navy"), LIGHT_INK);
        assert_eq!(ink_on("#6e56cf"), LIGHT_INK);
    }

    #[test]
    fn only_colours_reach_css() {
        assert_eq!(safe_colour(Some("#3d6cf2")), "#3d6cf2");
        assert_eq!(safe_colour(Some("red;position:fixed")), FALLBACK_COLOUR);
        assert_eq!(safe_colour(None), FALLBACK_COLOUR);
    }
}
