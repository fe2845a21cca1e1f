//! Character rules of free-text fields, each kept as one definition that
//! the check and `/v1/openapi.json` (as a regular expression) both use.
//!
//! A pattern is built from the same character ranges the check tests, so the
//! two cannot disagree; the tests walk every `char` to prove that the ranges
//! are what their names say (Rust's `char::is_whitespace`, control characters).

/// Inclusive character ranges.
pub type Ranges = &'static [(char, char)];

/// What `char::is_whitespace` (and so `str::trim`) treats as whitespace: the
/// Unicode `White_Space` property.
pub const WHITESPACE: Ranges = &[
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// Characters an email address may not hold: whitespace, control characters
/// and the byte-order mark (which some regex dialects count as a space).
pub const EMAIL_EXCLUDED: Ranges = &[
    ('\u{0}', ' '),
    ('\u{7f}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
    ('\u{feff}', '\u{feff}'),
];

fn within(ranges: Ranges, c: char) -> bool {
    ranges.iter().any(|(a, b)| (*a..=*b).contains(&c))
}

/// `s` holds something other than whitespace (what `trim` leaves non-empty).
pub fn not_blank(s: &str) -> bool {
    s.chars().any(|c| !within(WHITESPACE, c))
}

/// An email address as the server takes it: a non-empty part before the
/// first `@`, a non-empty part after it, and none of `EMAIL_EXCLUDED`.
pub fn looks_like_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
        && !s.chars().any(|c| within(EMAIL_EXCLUDED, c))
}

/// Characters of a webhook URL's path and query (RFC 3986 unreserved,
/// sub-delims, `:@/?%`); no fragment, no spaces.
const URL_REST: &str = "A-Za-z0-9._~!$&'()*+,;=:@/?%-";
const URL_REST_EXTRA: &[u8] = b"._~!$&'()*+,;=:@/?%-";

/// A webhook endpoint URL as the server takes it: `http://` or `https://`;
/// a host of `[A-Za-z0-9.-]`, or over `http://` also an IPv6 address in
/// brackets (`https://` needs a name for the certificate); an optional port
/// of 1 to 5 digits; and an optional path or query of `URL_REST` characters
/// (the dispatcher's `Uri` parses all of these). Whether the host may be
/// reached is the SSRF policy's to say (`webhooks::net`).
pub fn webhook_url(s: &str) -> bool {
    let (rest, ipv6_allowed) = match (s.strip_prefix("http://"), s.strip_prefix("https://")) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        (None, None) => return false,
    };
    let host_end = match rest.strip_prefix('[') {
        Some(inside) if ipv6_allowed => match inside.find(']') {
            Some(close)
                if close > 0 && inside[..close].bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                close + 2
            }
            _ => return false,
        },
        Some(_) => return false,
        None => rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).unwrap_or(rest.len()),
    };
    if host_end == 0 {
        return false;
    }
    let mut rest = &rest[host_end..];
    if let Some(port) = rest.strip_prefix(':') {
        let digits = port.find(|c: char| !c.is_ascii_digit()).unwrap_or(port.len());
        if !(1..=5).contains(&digits) {
            return false;
        }
        rest = &port[digits..];
    }
    rest.is_empty()
        || (rest.starts_with(['/', '?'])
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || URL_REST_EXTRA.contains(&b)))
}

/// The pattern of `webhook_url`.
pub fn webhook_url_pattern() -> String {
    format!(
        "^(http://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])|https://[A-Za-z0-9.-]+)(:[0-9]{{1,5}})?([/?][{URL_REST}]*)?$"
    )
}

/// A regex character class body (`\uXXXX` escapes; ECMA-262 and Python alike).
fn class(ranges: Ranges) -> String {
    let esc = |c: char| format!("\\u{:04x}", c as u32);
    ranges.iter().map(|(a, b)| if a == b { esc(*a) } else { format!("{}-{}", esc(*a), esc(*b)) }).collect()
}

/// The pattern of `not_blank` (unanchored: some character outside whitespace).
pub fn not_blank_pattern() -> String {
    format!("[^{}]", class(WHITESPACE))
}

/// The pattern of `looks_like_email`.
pub fn email_pattern() -> String {
    let x = class(EMAIL_EXCLUDED);
    format!("^[^@{x}]+@[^{x}]+$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_are_what_their_names_say() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            assert_eq!(within(WHITESPACE, c), c.is_whitespace(), "{:?}", c);
            let excluded = c.is_whitespace() || c.is_control() || c == '\u{feff}';
            assert_eq!(within(EMAIL_EXCLUDED, c), excluded, "{:?}", c);
        }
    }

    #[test]
    fn checks() {
        assert!(not_blank(" a ") && !not_blank(" \u{3000}\t") && !not_blank(""));
        assert_eq!(not_blank("\u{a0}x"), !"\u{a0}x".trim().is_empty());
        for ok in ["a@b", "a@b@c", "é@ü.example"] {
            assert!(looks_like_email(ok), "{ok}");
        }
        for bad in ["", "@b", "a@", "ab", "a @b", "a@b\n", "a@b\u{feff}", "a\u{1}@b"] {
            assert!(!looks_like_email(bad), "{bad:?}");
        }
        assert_eq!(
            not_blank_pattern(),
            "[^\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028-\\u2029\\u202f\\u205f\\u3000]"
        );
        assert!(email_pattern().starts_with("^[^@\\u0000-\\u0020"));
        for ok in [
            "http://a",
            "http://x.example:8080/h?a=1&b=%41",
            "http://1.2.3.4:99999",
            "http://-?",
            "http://a/~!$&'()*+,;=:@/?%",
            "https://hooks.example/x",
            "http://[::1]:9/hooks",
            "http://[::ffff:127.0.0.1]/h",
        ] {
            assert!(webhook_url(ok), "{ok}");
            let uri: awc::http::Uri = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(matches!(uri.scheme_str(), Some("http" | "https")));
        }
        for bad in [
            "",
            "http://",
            "https://[::1]/h",
            "http://[]/h",
            "http://[::1/h",
            "ftp://a",
            "HTTP://a",
            "http://a b",
            "http://a#f",
            "http://a:",
            "http://a:123456",
            "http://a/\u{e9}",
        ] {
            assert!(!webhook_url(bad), "{bad}");
        }
        assert!(URL_REST_EXTRA.iter().all(|b| URL_REST.contains(*b as char)));
    }
}
