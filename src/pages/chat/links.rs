//! Links in message text. A message is always text; the addresses in it (`http://` and
//! `https://` only, so no `javascript:` or `data:` can ever become a link) are cut out as
//! pieces the page renders as links that open in a new tab without handing it the chat's
//! window (`rel="noopener noreferrer"`). Everything else stays literal.

/// A piece of a message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// A web address, exactly as written.
    Link(&'a str),
}

/// `text` cut into literal pieces and web addresses, in order.
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    // ASCII lowercasing keeps every byte where it was, so offsets agree with `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut text_from = 0;
    let mut search_from = 0;
    while let Some(start) = next_link_start(text, &lower, search_from) {
        let candidate = &text[start..];
        let end = candidate
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(candidate.len());
        let link = trim_trailing(&candidate[..end]);
        search_from = start + link.len();
        if link.ends_with("://") {
            continue;
        }
        if start > text_from {
            out.push(Piece::Text(&text[text_from..start]));
        }
        out.push(Piece::Link(link));
        text_from = search_from;
    }
    if text_from < text.len() {
        out.push(Piece::Text(&text[text_from..]));
    }
    out
}

/// Where the next `http://` or `https://` at a word boundary starts, at or after `from`.
fn next_link_start(text: &str, lower: &str, from: usize) -> Option<usize> {
    let mut from = from;
    while let Some(found) = lower[from..].find("http") {
        let at = from + found;
        let after = &lower[at..];
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary && (after.starts_with("http://") || after.starts_with("https://")) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Drops punctuation that ends a sentence rather than the address, and a closing bracket
/// that has no opening one inside the address.
fn trim_trailing(link: &str) -> &str {
    let mut link = link;
    loop {
        let Some(last) = link.chars().next_back() else {
            return link;
        };
        let unbalanced = match last {
            ')' => link.matches('(').count() < link.matches(')').count(),
            ']' => link.matches('[').count() < link.matches(']').count(),
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            _ => false,
        };
        if !unbalanced {
            return link;
        }
        link = &link[..link.len() - last.len_utf8()];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Piece::*;

    #[test]
    fn web_addresses_become_links_and_the_rest_stays_text() {
        assert_eq!(
            pieces("see https://example.com/a?b=1 and http://x.org."),
            [
                Text("see "),
                Link("https://example.com/a?b=1"),
                Text(" and "),
                Link("http://x.org"),
                Text("."),
            ]
        );
        assert_eq!(pieces("no links here"), [Text("no links here")]);
    }

    #[test]
    fn only_http_and_https_are_links() {
        for text in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "ftp://x.org",
            "xhttp://x.org",
        ] {
            assert!(pieces(text).iter().all(|p| matches!(p, Text(_))), "{text}");
        }
    }

    #[test]
    fn brackets_and_quotes_around_an_address_are_not_part_of_it() {
        assert_eq!(
            pieces("(https://en.wikipedia.org/wiki/Rust_(language))"),
            [
                Text("("),
                Link("https://en.wikipedia.org/wiki/Rust_(language)"),
                Text(")"),
            ]
        );
        assert_eq!(
            pieces("<https://x.org>"),
            [Text("<"), Link("https://x.org"), Text(">")]
        );
        assert_eq!(
            pieces("\"https://x.org/\"onmouseover=\"alert(1)"),
            [
                Text("\""),
                Link("https://x.org/"),
                Text("\"onmouseover=\"alert(1)"),
            ]
        );
    }

    #[test]
    fn a_bare_scheme_is_text() {
        assert_eq!(pieces("https:// nothing"), [Text("https:// nothing")]);
    }
}
