//! Name-based redaction: decides whether a variable or field name looks like
//! it holds a secret. It never looks at values (secret-looking *contents* are
//! the policy room's job) and never lets a configured pattern be bypassed by
//! case or by how the name is joined (`user_password`, `userPassword`,
//! `USER_PASSWORD`, `userpassword` are all the same here).

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

/// A single-word pattern at least this long also matches inside a longer
/// word (`userpassword`, `secretkey`); shorter ones match whole words only,
/// so `auth` hides `authToken` and `oauth_auth` but not `author`, and `token`
/// hides `csrf_token` but not `tokenizer`.
const MIN_EMBEDDED_LEN: usize = 6;

/// Which names count as secret. A name is split into word parts at `_`, `-`,
/// `.`, `:`, spaces, digits boundaries and camelCase humps (`APIKey` →
/// `api`, `key`); a pattern, split the same way, matches when its parts equal
/// consecutive parts of the name, case-insensitively. The last pattern part
/// also matches its plural (`tokens`, `credentials`), and a one-part pattern
/// of six or more letters also matches inside a single part
/// (`userpassword`).
#[derive(Clone, Debug)]
pub struct Redaction {
    patterns: Vec<Vec<String>>,
}

impl Redaction {
    /// The default list: password, passwd, secret, token, api_key, apikey,
    /// auth, authorization, cookie, session_key, private_key, credential.
    pub fn default_list() -> Redaction {
        Redaction::with_patterns(DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect())
    }

    /// The built-in list plus `extra` (an owner's own secret names).
    pub fn default_with(extra: Vec<String>) -> Redaction {
        let mut all: Vec<String> = DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect();
        all.extend(extra);
        Redaction::with_patterns(all)
    }

    /// A redaction over exactly these patterns (for a command-line list);
    /// empty patterns are ignored.
    pub fn with_patterns(patterns: Vec<String>) -> Redaction {
        let patterns = patterns
            .iter()
            .map(|pattern| word_parts(pattern))
            .filter(|parts| !parts.is_empty())
            .collect();
        Redaction { patterns }
    }

    /// A redaction that hides nothing (tests, or an owner who opted out).
    pub fn none() -> Redaction {
        Redaction {
            patterns: Vec::new(),
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
            .any(|pattern| lower.contains(pattern[0].as_str()))
        {
            return false;
        }
        let parts = word_parts(name);
        self.patterns
            .iter()
            .any(|pattern| matches_parts(&parts, pattern))
    }
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::default_list()
    }
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
}
