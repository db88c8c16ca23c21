//! Value-based secret detection: finds text that looks like a credential
//! wherever it appears (a string value, a map key, a logpoint line, an error
//! message, a log line) so it can be replaced by `<redacted>`.
//!
//! What counts as a credential, and why (documented in `docs/tools.md`, Redaction):
//! - PEM blocks (`-----BEGIN … PRIVATE KEY-----` …), except certificates and
//!   public keys, which are public by design. A block cut by a string limit
//!   is hidden to the end of the text.
//! - JWTs: `eyJ…` (base64url JSON) `.` a second segment, and the signature.
//! - `Bearer <token>` and `Basic <base64 of user:password>`.
//! - Keys whose vendor prefix says what they are: `sk_live_`, `sk_test_`,
//!   `rk_live_`, `whsec_`, `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`,
//!   `github_pat_`, `glpat-`, `xoxb-`/`xoxp-`/…, `AKIA`/`ASIA` + 16, `AIza`,
//!   `npm_`, followed by enough key characters.
//! - `name=value` and `Name: value` where the name is secret by the name
//!   rule (`password=…` in a query string, `Authorization: …` in a header
//!   block, `"token": "…"` in JSON).
//! - Payment card numbers: 13 to 19 digits (single spaces or dashes allowed
//!   between groups) with a card network's prefix and length, passing Luhn.
//! - High-entropy tokens: 20 or more characters of `[A-Za-z0-9+/=_-]` mixing
//!   at least two of lower case, upper case and digits, with the character
//!   entropy and the class changes of random data.
//!
//! Kept visible on purpose (false positives cost the reader the value):
//! hex-only runs (addresses, hashes, build ids, UUIDs: identifiers, not
//! credentials — a hex-encoded key is not caught unless its name or prefix
//! says what it is), identifiers and mangled symbols (`_Z…`, `_R…`),
//! paths, and numbers that fail Luhn or have no card prefix.

use std::borrow::Cow;
use std::ops::Range;

/// What a hidden run of text is replaced by.
pub const REDACTED_TEXT: &str = "<redacted>";

/// Shortest run of characters the high-entropy rule looks at.
const MIN_ENTROPY_LEN: usize = 20;

/// Which detectors run: key-based ones need the name rule, and are skipped
/// where the text is liveprobe's own rendering (`name: type = value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Every detector, `name=value` pairs included.
    All,
    /// Only detectors that look at the secret itself (not at a name before it).
    ContentOnly,
}

/// `text` with every credential-looking run replaced by `<redacted>`;
/// borrowed when nothing was found. `is_secret_key` is the name rule, used
/// for `name=value` pairs.
pub fn scrub<'a>(text: &'a str, scan: Scan, is_secret_key: &dyn Fn(&str) -> bool) -> Cow<'a, str> {
    let ranges = find(text, scan, is_secret_key);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in ranges {
        out.push_str(&text[at..range.start]);
        out.push_str(REDACTED_TEXT);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The byte ranges of `text` to hide, sorted and merged. Every range starts
/// and ends at an ASCII character, so slicing at them is safe.
pub fn find(text: &str, scan: Scan, is_secret_key: &dyn Fn(&str) -> bool) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    if bytes.len() < 8 {
        return Vec::new();
    }
    let mut found = Vec::new();
    pem_blocks(text, &mut found);
    jwts(bytes, &mut found);
    auth_schemes(bytes, &mut found);
    vendor_keys(bytes, &mut found);
    if scan == Scan::All {
        key_values(bytes, is_secret_key, &mut found);
    }
    card_numbers(bytes, &mut found);
    high_entropy(bytes, &mut found);
    merge(found)
}

fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=')
}

/// True when a run may start at `i`: the character before is not part of a word.
fn starts_word(bytes: &[u8], i: usize) -> bool {
    i == 0 || !bytes[i - 1].is_ascii_alphanumeric()
}

/// End of the run of `class` characters starting at `i`.
fn run_end(bytes: &[u8], i: usize, class: fn(u8) -> bool) -> usize {
    let mut end = i;
    while end < bytes.len() && class(bytes[end]) {
        end += 1;
    }
    end
}

fn pem_blocks(text: &str, found: &mut Vec<Range<usize>>) {
    const BEGIN: &str = "-----BEGIN ";
    let mut from = 0;
    while let Some(offset) = text[from..].find(BEGIN) {
        let start = from + offset;
        let label_start = start + BEGIN.len();
        let Some(label_len) = text[label_start..].find("-----") else {
            return;
        };
        let label = &text[label_start..label_start + label_len];
        let after_label = label_start + label_len + 5;
        if label.contains("CERTIFICATE") || label.contains("PUBLIC KEY") || label.len() > 64 {
            from = after_label;
            continue;
        }
        let end = match text[after_label..].find("-----END ") {
            Some(e) => {
                let end_label = after_label + e + "-----END ".len();
                match text[end_label..].find("-----") {
                    Some(close) => end_label + close + 5,
                    None => text.len(),
                }
            }
            // Cut by a string limit: hide what is there.
            None => text.len(),
        };
        found.push(start..end);
        from = end;
    }
}

fn jwts(bytes: &[u8], found: &mut Vec<Range<usize>>) {
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] != b"eyJ" || (i > 0 && is_b64url(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let header_end = run_end(bytes, i, is_b64url);
        let mut end = header_end;
        let mut segments = 1;
        while end < bytes.len() && bytes[end] == b'.' && segments < 3 {
            let next = run_end(bytes, end + 1, is_b64url);
            if next == end + 1 {
                break;
            }
            end = next;
            segments += 1;
        }
        // A header of at least `{"alg":""}` and a payload: a token, even
        // when the signature was cut off.
        if header_end - i >= 10 && segments >= 2 {
            found.push(i..end);
        }
        i = end.max(i + 1);
    }
}

fn auth_schemes(bytes: &[u8], found: &mut Vec<Range<usize>>) {
    for (scheme, check_basic) in [(&b"bearer"[..], false), (&b"basic"[..], true)] {
        let mut i = 0;
        while i + scheme.len() < bytes.len() {
            let candidate = &bytes[i..i + scheme.len()];
            if !candidate.eq_ignore_ascii_case(scheme) || !starts_word(bytes, i) {
                i += 1;
                continue;
            }
            let mut token_start = i + scheme.len();
            let spaces = token_start;
            while token_start < bytes.len() && bytes[token_start] == b' ' {
                token_start += 1;
            }
            let token_end = run_end(bytes, token_start, |b| {
                is_token_char(b) || b == b'.' || b == b'~'
            });
            let token = &bytes[token_start..token_end];
            let plausible = token_start > spaces
                && token.len() >= 8
                && token != REDACTED_TEXT.as_bytes()
                && (!check_basic || basic_credentials(token));
            if plausible {
                found.push(token_start..token_end);
            }
            i = token_end.max(i + 1);
        }
    }
}

/// True when `token` is base64 of `user:password` (so `Basic usage` is not).
fn basic_credentials(token: &[u8]) -> bool {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut decoded = Vec::new();
    for &b in token {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return false,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            decoded.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    decoded.contains(&b':') && decoded.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

/// Vendor prefixes and the fewest key characters that must follow.
const VENDOR_PREFIXES: &[(&str, usize)] = &[
    ("sk_live_", 10),
    ("sk_test_", 10),
    ("rk_live_", 10),
    ("rk_test_", 10),
    ("whsec_", 16),
    ("ghp_", 20),
    ("gho_", 20),
    ("ghu_", 20),
    ("ghs_", 20),
    ("ghr_", 20),
    ("github_pat_", 20),
    ("glpat-", 16),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("AKIA", 16),
    ("ASIA", 16),
    ("AIza", 30),
    ("npm_", 30),
];

fn vendor_keys(bytes: &[u8], found: &mut Vec<Range<usize>>) {
    for &(prefix, min_rest) in VENDOR_PREFIXES {
        let prefix = prefix.as_bytes();
        let mut i = 0;
        while i + prefix.len() <= bytes.len() {
            if &bytes[i..i + prefix.len()] != prefix || !starts_word(bytes, i) {
                i += 1;
                continue;
            }
            let end = run_end(bytes, i + prefix.len(), is_b64url);
            if end - (i + prefix.len()) >= min_rest {
                found.push(i..end);
            }
            i = end.max(i + 1);
        }
    }
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// `name=value`, `name: value`, `"name": "value"` with a secret name.
fn key_values(bytes: &[u8], is_secret_key: &dyn Fn(&str) -> bool, found: &mut Vec<Range<usize>>) {
    for (sep_at, &sep) in bytes.iter().enumerate() {
        if sep != b'=' && sep != b':' {
            continue;
        }
        if sep == b':'
            && (bytes.get(sep_at + 1) == Some(&b':') || sep_at > 0 && bytes[sep_at - 1] == b':')
        {
            continue; // a C++ or Rust path, not a header
        }
        if sep == b'=' && bytes.get(sep_at + 1) == Some(&b'=') {
            continue; // a comparison
        }
        // The name: just before the separator, or inside quotes just before it.
        let mut key_end = sep_at;
        if key_end > 0 && bytes[key_end - 1] == b'"' {
            key_end -= 1;
            if key_end > 0 && bytes[key_end - 1] == b'\\' {
                continue;
            }
        }
        let mut key_start = key_end;
        while key_start > 0 && is_key_char(bytes[key_start - 1]) {
            key_start -= 1;
        }
        if key_start == key_end {
            continue;
        }
        // Lossless: the key is ASCII by construction.
        let Ok(key) = std::str::from_utf8(&bytes[key_start..key_end]) else {
            continue;
        };
        // The value: after spaces and an opening quote (plain or escaped).
        let mut value_start = sep_at + 1;
        while value_start < bytes.len() && bytes[value_start] == b' ' {
            value_start += 1;
        }
        if bytes[value_start..].starts_with(b"\\\"") {
            value_start += 2;
        } else if value_start < bytes.len() && matches!(bytes[value_start], b'"' | b'\'') {
            value_start += 1;
        }
        if bytes[value_start..].starts_with(REDACTED_TEXT.as_bytes()) {
            continue;
        }
        let value_end = if sep == b':' {
            // A header value runs to the end of its line.
            let mut end = value_start;
            while end < bytes.len()
                && !matches!(bytes[end], b'\r' | b'\n' | b'"' | b'\\' | b',' | b'}')
            {
                end += 1;
            }
            end
        } else {
            let mut end = value_start;
            while end < bytes.len()
                && !matches!(
                    bytes[end],
                    b'&' | b';'
                        | b','
                        | b' '
                        | b'"'
                        | b'\''
                        | b'\\'
                        | b'<'
                        | b'>'
                        | b')'
                        | b']'
                        | b'}'
                        | b'\r'
                        | b'\n'
                        | b'\t'
                )
            {
                end += 1;
            }
            end
        };
        if value_end > value_start && is_secret_key(key) {
            found.push(value_start..value_end);
        }
    }
}

fn card_numbers(bytes: &[u8], found: &mut Vec<Range<usize>>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut digits = Vec::new();
        let mut end = i;
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                end += 1;
            } else if (b == b' ' || b == b'-')
                && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
                && end > i
                && bytes[end - 1].is_ascii_digit()
            {
                end += 1;
            } else {
                break;
            }
            if digits.len() > 19 {
                break;
            }
        }
        let bounded = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if bounded && is_card_number(&digits) {
            found.push(i..end);
        }
        i = end.max(i + 1);
    }
}

/// A card network's prefix and length, and the Luhn check.
pub fn is_card_number(digits: &[u8]) -> bool {
    let len = digits.len();
    if !(13..=19).contains(&len) {
        return false;
    }
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let network = match digits[0] {
        4 => matches!(len, 13 | 16 | 19),                     // Visa
        5 => (51..=55).contains(&prefix(2)) && len == 16,     // Mastercard
        2 => (2221..=2720).contains(&prefix(4)) && len == 16, // Mastercard 2-series
        3 => matches!(prefix(2), 34 | 37) && len == 15 || prefix(2) == 35 && len == 16, // Amex, JCB
        6 => (prefix(4) == 6011 || prefix(2) == 65) && (16..=19).contains(&len), // Discover
        _ => false,
    };
    network && luhn(digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn high_entropy(bytes: &[u8], found: &mut Vec<Range<usize>>) {
    let mut i = 0;
    while i < bytes.len() {
        if !is_token_char(bytes[i]) {
            i += 1;
            continue;
        }
        let end = run_end(bytes, i, is_token_char);
        // A run inside a dotted or slashed name (`index.crates.io-1949cf8c/
        // tokio-1.54.1/src`) is a path: its components are judged one by one.
        let in_path = bytes[i..end].contains(&b'/')
            && ((i > 0 && matches!(bytes[i - 1], b'.' | b'/'))
                || bytes.get(end).is_some_and(|b| matches!(b, b'.' | b'/')));
        if in_path {
            let mut start = i;
            for part in bytes[i..end].split(|b| *b == b'/') {
                if looks_random(part) {
                    found.push(start..start + part.len());
                }
                start += part.len() + 1;
            }
        } else if looks_random(&bytes[i..end]) {
            found.push(i..end);
        }
        i = end;
    }
}

/// True for a run that looks like random key material rather than a word,
/// an identifier, a path, a hash or a number.
pub fn looks_random(token: &[u8]) -> bool {
    let token = trim_padding(token);
    let len = token.len();
    if len < MIN_ENTROPY_LEN {
        return false;
    }
    // Paths and mangled symbols.
    if token[0] == b'/' || token.starts_with(b"_Z") || token.starts_with(b"_R") {
        return false;
    }
    // Hex (addresses, hashes, build ids, UUIDs) stays visible.
    if token
        .iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b'-' || *b == b'_')
    {
        return false;
    }
    // A name tagged with a hash (`serde-1a2b3c4d5e6f7a8b`, cargo's build and
    // registry directories) stays visible too.
    if let Some(cut) = token.iter().rposition(|b| *b == b'-' || *b == b'_') {
        let (name, hash) = (&token[..cut], &token[cut + 1..]);
        if hash.len() >= 8
            && hash.iter().all(u8::is_ascii_hexdigit)
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            && !looks_random(name)
        {
            return false;
        }
    }
    let lower = token.iter().filter(|b| b.is_ascii_lowercase()).count();
    let upper = token.iter().filter(|b| b.is_ascii_uppercase()).count();
    let digit = token.iter().filter(|b| b.is_ascii_digit()).count();
    if [lower, upper, digit].iter().filter(|n| **n > 0).count() < 2 {
        return false;
    }
    let class = |b: u8| -> u8 {
        if b.is_ascii_lowercase() {
            0
        } else if b.is_ascii_uppercase() {
            1
        } else if b.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let changes = token
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    // Random base62/base64 changes class about 60% of the time; words and
    // camelCase identifiers far less.
    if (changes as f64) < 0.4 * (len - 1) as f64 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in token {
        counts[b as usize] += 1;
    }
    let entropy: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / len as f64;
            -p * p.log2()
        })
        .sum();
    entropy >= 0.8 * (len.min(64) as f64).log2()
}

fn trim_padding(token: &[u8]) -> &[u8] {
    let mut end = token.len();
    while end > 0 && matches!(token[end - 1], b'=' | b'-' | b'_') {
        end -= 1;
    }
    &token[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_rule(name: &str) -> bool {
        crate::value::Redaction::default_list().is_secret(name)
    }

    fn scrubbed(text: &str) -> String {
        scrub(text, Scan::All, &key_rule).into_owned()
    }

    #[test]
    fn hides_credentials() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        for (text, secret) in [
            (format!("token {jwt} end"), jwt),
            (
                "Authorization: Bearer abcDEF123ghiJKL456".to_string(),
                "abcDEF123ghiJKL456",
            ),
            (
                "hdr bearer 0123456789abcdef".to_string(),
                "0123456789abcdef",
            ),
            (
                "Basic dXNlcjpodW50ZXIy".to_string(),
                "dXNlcjpodW50ZXIy",
            ),
            (
                "key=sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_string(),
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            ("AKIAIOSFODNN7EXAMPLE".to_string(), "AKIAIOSFODNN7EXAMPLE"),
            (
                "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".to_string(),
                "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",
            ),
            (
                "\"GET /login?user=bob&password=hunter2 HTTP/1.1\"".to_string(),
                "hunter2",
            ),
            ("{\"api_key\": \"s3cr3t-v4lue\"}".to_string(), "s3cr3t-v4lue"),
            (
                "\"Cookie: sid=abc; theme=dark\\r\\n\"".to_string(),
                "sid=abc; theme=dark",
            ),
            ("card 4111 1111 1111 1111 ok".to_string(), "4111 1111 1111 1111"),
            ("card=5500-0000-0000-0004".to_string(), "5500-0000-0000-0004"),
            (
                "random 9fQ2xL7vB3nK8tR1wZ5mH4cJ6dP0sY ok".to_string(),
                "9fQ2xL7vB3nK8tR1wZ5mH4cJ6dP0sY",
            ),
            (
                "\"-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----\"".to_string(),
                "MIIEpAIBAAKCAQEA",
            ),
            (
                "\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAA…".to_string(),
                "b3BlbnNzaC1rZXktdjEAAAA",
            ),
        ] {
            let out = scrubbed(&text);
            assert!(!out.contains(secret), "{text:?} -> {out:?}");
            assert!(out.contains(REDACTED_TEXT), "{text:?} -> {out:?}");
        }
    }

    #[test]
    fn keeps_ordinary_text() {
        for text in [
            "0x7ffd5a3c2b10",
            "\"hello, world\"",
            "d41d8cd98f00b204e9800998ecf8427e",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "123e4567-e89b-12d3-a456-426614174000",
            "_ZN4core3fmt9Formatter3pad17h3f9e2b1c0a8d7e6fE",
            "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE",
            "std::map<std::__cxx11::basic_string<char>, int>",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/park.rs",
            "target/release/build/serde-1a2b3c4d5e6f7a8b/out/private.rs",
            "deps/liveprobe-0123456789abcdef.d",
            "tests/fixtures/e2e/redaction_server.cpp",
            "getHTTPResponseCodeForRequestHandler",
            "1733450000000000000",
            "4111111111111112",
            "18446744073709551615",
            "Basic usage of the parser",
            "bearer of bad news",
            "x == y && a::b::c",
            "park_token=12",
            "order 42 total=99.5 customer=\"alice\"",
        ] {
            assert_eq!(scrubbed(text), text);
        }
    }

    #[test]
    fn content_only_skips_name_value_pairs() {
        assert_eq!(
            scrub("password=hunter2", Scan::ContentOnly, &key_rule),
            "password=hunter2"
        );
        assert_eq!(scrubbed("password=hunter2"), "password=<redacted>");
        let rendering = "password: char * = <redacted>";
        assert_eq!(scrub(rendering, Scan::ContentOnly, &key_rule), rendering);
        assert_eq!(
            scrubbed("token: abc def\r\nx: 1"),
            "token: <redacted>\r\nx: 1"
        );
    }

    #[test]
    fn luhn_and_networks() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(is_card_number(&digits("4111111111111111")));
        assert!(is_card_number(&digits("378282246310005")));
        assert!(is_card_number(&digits("6011111111111117")));
        assert!(!is_card_number(&digits("4111111111111112")));
        assert!(
            !is_card_number(&digits("1234567812345670")),
            "no network prefix"
        );
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        /// Any text scrubs without a panic: ranges always fall on character
        /// boundaries, whatever the text.
        #[test]
        fn scrubbing_any_text_is_safe(text in prop_oneof![
            any::<String>(),
            "[ -~]{0,300}",
            prop::collection::vec(prop::sample::select(&[
                "password=", "token: ", "Bearer ", "Basic ", "eyJ", ".", "-----BEGIN ",
                "PRIVATE KEY-----", "-----END ", "sk_live_", "AKIA", "4111", " ", "-", "é",
                "\\\"", "\"", "abcDEF123ghiJKL456", "\r\n", "=", ":", "€",
            ][..]), 0..40).prop_map(|p| p.concat()),
        ]) {
            let rule = crate::value::Redaction::default_list();
            let once = rule.scrub(&text).into_owned();
            let _ = rule.scrub_content(&text);
            let _ = rule.scrub(&once);
        }

        /// A credential between any words is hidden, whatever surrounds it.
        #[test]
        fn a_planted_credential_is_always_hidden(
            before in "[ -~]{0,60}",
            after in "[ -~]{0,60}",
            which in 0usize..4,
        ) {
            let secret = [
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "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",
                "9fQ2xL7vB3nK8tR1wZ5mH4cJ6dP0sY",
            ][which];
            let text = format!("{before} {secret} {after}");
            let rule = crate::value::Redaction::default_list();
            let out = rule.scrub(&text);
            prop_assert!(!out.contains(secret), "{:?} -> {:?}", text, out);
        }
    }
}
