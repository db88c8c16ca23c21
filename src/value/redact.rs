//! Redaction: decides whether a variable, field or map key name looks like
//! it holds a secret (the name rule), whether a type is secret (the type
//! rule, `--redact-type`), and hides credential-looking text wherever it
//! appears (the value rule, [`super::secrets`]). A configured pattern is
//! never bypassed by case or by how the name is joined (`user_password`,
//! `userPassword`, `USER_PASSWORD`, `userpassword` are all the same here).

use std::borrow::Cow;

use super::secrets::{self, Scan};

/// The patterns hidden by default (issue 3, item 6).
const DEFAULT_PATTERNS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "cookie",
    "session_key",
    "private_key",
    "credential",
];

/// Built-in words that are secret only in context: `token` is a credential
/// in `token`, `m_token`, `access_token`, `csrf_token`, `tokenValue`, but a
/// parking ticket in `park_token` and a lexer's unit in `next_token` or
/// `token_count`. A configured `--redact-name token` is not qualified.
const QUALIFIED_WORDS: &[&str] = &["token"];

/// Word parts that make a following qualified word a credential.
const CREDENTIAL_QUALIFIERS: &[&str] = &[
    "access", "api", "app", "auth", "bearer", "bot", "client", "csrf", "device", "github", "id",
    "jwt", "login", "oauth", "oidc", "personal", "private", "refresh", "reset", "saml", "secret",
    "security", "service", "session", "sso", "xsrf",
];

/// Word parts that may follow a qualified word and still name the credential
/// itself (`token_value`, `tokenStr`), not something about it (`token_count`).
const VALUE_SUFFIXES: &[&str] = &[
    "value", "str", "string", "data", "buf", "buffer", "bytes", "raw", "text", "header", "hdr",
];

/// A single-word pattern at least this long also matches inside a longer
/// word (`userpassword`, `secretkey`); shorter ones match whole words only,
/// so `auth` hides `authToken` and `oauth_auth` but not `author`, and `token`
/// hides `csrf_token` but not `tokenizer`.
const MIN_EMBEDDED_LEN: usize = 6;

#[derive(Clone, Debug)]
struct Pattern {
    parts: Vec<String>,
    /// Matches only in a credential context (see [`QUALIFIED_WORDS`]).
    qualified: bool,
}

/// Which names, types and texts count as secret.
///
/// The name rule: a name is cut into segments at path punctuation (`.`,
/// `->`, `::`, brackets, quotes, `=`, `/`, `?`, `,`) so that each field of
/// `self.inner.token` or each map key `["X-Auth-Token"]` is judged alone;
/// a segment is split into word parts at `_`, `-`, spaces, digit boundaries
/// and camelCase humps (`APIKey` → `api`, `key`). A pattern, split the same
/// way, matches when its parts equal consecutive parts of a segment,
/// case-insensitively. The last pattern part also matches its plural
/// (`tokens`, `credentials`), and a one-part pattern of six or more letters
/// also matches inside a single part (`userpassword`). The built-in `token`
/// is qualified: it counts when nothing but member prefixes (`m`, `g`, `s`,
/// `p`, `my`, `the`, `self`, `this`, digits) or a credential word (`access`,
/// `auth`, `csrf`, `refresh`, `session`, …) come before it and nothing but a
/// value word (`value`, `str`, `data`, `buf`, …) after it.
#[derive(Clone, Debug)]
pub struct Redaction {
    patterns: Vec<Pattern>,
    /// `--redact-type` names: every value of one of these types is hidden.
    types: Vec<String>,
    /// Whether credential-looking text is hidden (on unless `none()`).
    values: bool,
}

impl Redaction {
    /// The default list: password, passwd, secret, token, api_key, apikey,
    /// auth, authorization, cookie, session_key, private_key, credential.
    pub fn default_list() -> Redaction {
        Redaction::default_with(Vec::new())
    }

    /// The built-in list plus `extra` (an owner's own secret names).
    pub fn default_with(extra: Vec<String>) -> Redaction {
        let mut redaction = Redaction::with_patterns(extra);
        let built_in = DEFAULT_PATTERNS.iter().map(|pattern| Pattern {
            parts: word_parts(pattern),
            qualified: QUALIFIED_WORDS.contains(pattern),
        });
        redaction.patterns.extend(built_in);
        redaction
    }

    /// A redaction over exactly these patterns (for a command-line list);
    /// empty patterns are ignored. Credential-looking values are still hidden.
    pub fn with_patterns(patterns: Vec<String>) -> Redaction {
        let patterns = patterns
            .iter()
            .map(|pattern| word_parts(pattern))
            .filter(|parts| !parts.is_empty())
            .map(|parts| Pattern {
                parts,
                qualified: false,
            })
            .collect();
        Redaction {
            patterns,
            types: Vec::new(),
            values: true,
        }
    }

    /// What the command line asked for: the built-in list unless
    /// `no_default`, plus `names`; every value of one of `types` hidden.
    pub fn configured(no_default: bool, names: Vec<String>, types: Vec<String>) -> Redaction {
        let redaction = if no_default {
            Redaction::with_patterns(names)
        } else {
            Redaction::default_with(names)
        };
        redaction.with_types(types)
    }

    /// This redaction, also hiding every value of the types named `types`
    /// (`Credentials`, `ns::Secret`, `Secret<String>`: see [`Self::is_secret_type`]).
    pub fn with_types(mut self, types: Vec<String>) -> Redaction {
        self.types.extend(
            types
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        );
        self
    }

    /// A redaction that hides nothing (tests, or an owner who opted out).
    pub fn none() -> Redaction {
        Redaction {
            patterns: Vec::new(),
            types: Vec::new(),
            values: false,
        }
    }

    /// True when `name` looks like it holds a secret.
    pub fn is_secret(&self, name: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        // Fast reject (this runs for every field of every value): a name
        // that contains no pattern's first word, in any case, cannot match.
        let lower = name.to_lowercase();
        if !self
            .patterns
            .iter()
            .any(|pattern| lower.contains(pattern.parts[0].as_str()))
        {
            return false;
        }
        name.split(is_segment_break)
            .filter(|segment| !segment.is_empty())
            .any(|segment| {
                let parts = word_parts(segment);
                self.patterns
                    .iter()
                    .any(|pattern| matches_pattern(&parts, pattern))
            })
    }

    /// True when values of the type named `type_name` are hidden by a
    /// `--redact-type` rule. A rule matches the type's name without
    /// `const`/`volatile`/`struct`/`class`/`union`/`enum`, without its
    /// template or generic arguments, or its last path component:
    /// `Secret` matches `struct Secret`, `app::Secret`, `const Secret`,
    /// `app::Secret<String>`; `app::Secret` matches `app::Secret<T>` but not
    /// `other::Secret`.
    pub fn is_secret_type(&self, type_name: &str) -> bool {
        if self.types.is_empty() {
            return false;
        }
        let mut name = type_name.trim();
        loop {
            let stripped = [
                "const ",
                "volatile ",
                "struct ",
                "class ",
                "union ",
                "enum ",
            ]
            .iter()
            .find_map(|word| name.strip_prefix(word));
            match stripped {
                Some(rest) => name = rest.trim_start(),
                None => break,
            }
        }
        // Pointers and references are not the type itself: their pointee is
        // judged when it is decoded.
        if name.ends_with('*') || name.ends_with('&') || name.starts_with('&') {
            return false;
        }
        let base = name.split('<').next().unwrap_or(name).trim();
        let last = base.rsplit("::").next().unwrap_or(base);
        self.types
            .iter()
            .any(|rule| rule == name || rule == base || rule == last)
    }

    /// `text` with credential-looking runs replaced by `<redacted>`, every
    /// detector on (`password=…` pairs included): for values, logpoint
    /// lines, error messages, audit and log lines.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values {
            return Cow::Borrowed(text);
        }
        secrets::scrub(text, Scan::All, &|key| self.is_secret(key))
    }

    /// [`Self::scrub`] without the `name=value` detector, for liveprobe's own
    /// renderings (`password: char * = <redacted>` is not a header).
    pub fn scrub_content<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values {
            return Cow::Borrowed(text);
        }
        secrets::scrub(text, Scan::ContentOnly, &|key| self.is_secret(key))
    }

    /// Replaces `text` in place when it holds a credential; true if it did.
    pub fn scrub_in_place(&self, text: &mut String) -> bool {
        match self.scrub(text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(clean) => {
                *text = clean;
                true
            }
        }
    }
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::default_list()
    }
}

/// Punctuation between the parts of a path or the quotes of a key; `_`,
/// `-` and spaces join the words of one name instead.
fn is_segment_break(c: char) -> bool {
    matches!(
        c,
        '.' | ':'
            | '>'
            | '<'
            | '['
            | ']'
            | '('
            | ')'
            | '*'
            | '&'
            | '"'
            | '\''
            | ','
            | '='
            | ';'
            | '/'
            | '?'
            | '{'
            | '}'
    )
}

fn matches_pattern(name: &[String], pattern: &Pattern) -> bool {
    if pattern.qualified {
        return matches_qualified(name, &pattern.parts);
    }
    matches_parts(name, &pattern.parts)
}

fn matches_parts(name: &[String], pattern: &[String]) -> bool {
    if pattern.len() > name.len() {
        return false;
    }
    let last = pattern.len() - 1;
    name.windows(pattern.len()).any(|window| {
        window
            .iter()
            .zip(pattern)
            .enumerate()
            .all(|(i, (part, want))| {
                part == want
                    || (i == last && part.strip_suffix('s') == Some(want.as_str()))
                    || (pattern.len() == 1
                        && want.len() >= MIN_EMBEDDED_LEN
                        && part.contains(want.as_str()))
            })
    })
}

/// A one-word qualified pattern (`token`) in a credential context.
fn matches_qualified(name: &[String], pattern: &[String]) -> bool {
    let [word] = pattern else {
        return matches_parts(name, pattern);
    };
    let is_filler = |part: &String| {
        part.len() == 1
            || part.chars().all(|c| c.is_ascii_digit())
            || matches!(part.as_str(), "my" | "the" | "self" | "this")
    };
    name.iter().enumerate().any(|(i, part)| {
        let is_word = part == word || part.strip_suffix('s') == Some(word.as_str());
        if !is_word {
            return false;
        }
        let before = &name[..i];
        let after = &name[i + 1..];
        let qualified_before = before.iter().all(is_filler)
            || before
                .last()
                .is_some_and(|p| CREDENTIAL_QUALIFIERS.contains(&p.as_str()));
        let value_after = after
            .iter()
            .all(|p| VALUE_SUFFIXES.contains(&p.as_str()) || is_filler(p));
        qualified_before && value_after
    })
}

/// Lower-cased word parts of an identifier.
fn word_parts(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut parts = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) {
            let next = chars.get(i + 1).copied();
            let hump = (prev.is_lowercase() || prev.is_ascii_digit()) && c.is_uppercase();
            // "APIKey": the K starts a new word because a lowercase letter follows it.
            let acronym_end =
                prev.is_uppercase() && c.is_uppercase() && next.is_some_and(|n| n.is_lowercase());
            let digit_edge = prev.is_ascii_digit() != c.is_ascii_digit();
            if (hump || acronym_end || digit_edge) && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_identifiers_into_words() {
        assert_eq!(word_parts("user_password"), ["user", "password"]);
        assert_eq!(word_parts("authToken"), ["auth", "token"]);
        assert_eq!(word_parts("APIKey"), ["api", "key"]);
        assert_eq!(word_parts("API_KEY"), ["api", "key"]);
        assert_eq!(word_parts("m_sessionKey2"), ["m", "session", "key", "2"]);
        assert_eq!(word_parts("self.inner.token"), ["self", "inner", "token"]);
    }

    #[test]
    fn default_list_hides_secret_names() {
        let redaction = Redaction::default_list();
        for secret in [
            "password",
            "user_password",
            "userPassword",
            "USER_PASSWORD",
            "userpassword",
            "passwd",
            "db_secret",
            "secretKey",
            "authToken",
            "auth",
            "oauth_token",
            "refresh_tokens",
            "token",
            "tokens",
            "m_token",
            "auth_token",
            "access_token",
            "csrf_token",
            "tokenValue",
            "self.inner.token",
            "req->session_token",
            "[\"X-Auth-Token\"]",
            "[\"password\"]",
            "[\"api-key\"]",
            "API_KEY",
            "apiKey",
            "apikey",
            "Authorization",
            "cookie",
            "cookies",
            "sessionKey",
            "session_key",
            "private_key",
            "privateKey",
            "credentials",
            "aws_credential",
        ] {
            assert!(redaction.is_secret(secret), "{secret} should be redacted");
        }
    }

    #[test]
    fn default_list_keeps_ordinary_names() {
        let redaction = Redaction::default_list();
        for plain in [
            "author",
            "authors",
            "tokenizer",
            "park_token",
            "parkToken",
            "next_token",
            "token_count",
            "[\"park_token\"]",
            "count",
            "session",
            "key",
            "api",
            "private",
            "name",
            "__0",
            "",
        ] {
            assert!(
                !redaction.is_secret(plain),
                "{plain} should not be redacted"
            );
        }
    }

    #[test]
    fn configured_patterns_replace_the_default() {
        let redaction =
            Redaction::with_patterns(vec!["ssn".into(), "card_number".into(), String::new()]);
        assert!(redaction.is_secret("customer_ssn"));
        assert!(redaction.is_secret("cardNumber"));
        assert!(!redaction.is_secret("password"));
        assert!(!Redaction::none().is_secret("password"));
    }

    #[test]
    fn type_rule_matches_the_named_type_only() {
        let redaction = Redaction::none().with_types(vec!["Secret".into(), "app::Key".into()]);
        for hidden in [
            "Secret",
            "struct Secret",
            "const Secret",
            "ns::Secret",
            "Secret<alloc::string::String>",
            "app::Key",
            "app::Key<u8>",
        ] {
            assert!(redaction.is_secret_type(hidden), "{hidden}");
        }
        for shown in [
            "SecretSauce",
            "Secret *",
            "&Secret",
            "other::Key",
            "Key",
            "int",
        ] {
            assert!(!redaction.is_secret_type(shown), "{shown}");
        }
    }
}
