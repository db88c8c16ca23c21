//! Executable patterns of `--allow-exe`, `--deny-exe` and policy files.

/// A pattern over an executable's path.
///
/// With `*` (any run of characters, `/` included), `?` (one character) or
/// `[...]` (one character of a set, `[!...]` not of it, `a-z` ranges) it
/// must match the whole path. Without any of them it matches anywhere in
/// the path, which is what `--allow-exe` always did: `--allow-exe server`
/// keeps allowing `/srv/app/server-2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExePattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Substring,
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// An empty pattern would match every path.
    #[error(
        "an empty executable pattern would match every process; give a path or a glob like */bin/server"
    )]
    Empty,
    /// `[` without its `]`.
    #[error("`[` at character {0} of {1:?} has no closing `]`")]
    UnclosedSet(usize, String),
}

impl ExePattern {
    /// Parses `text`; see the type for its meaning.
    pub fn parse(text: &str) -> Result<ExePattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if !text.contains(['*', '?', '[']) {
            return Ok(ExePattern {
                text: text.to_string(),
                kind: PatternKind::Substring,
            });
        }
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '[' => {
                    let start = i;
                    i += 1;
                    let negated = matches!(chars.get(i), Some('!' | '^'));
                    if negated {
                        i += 1;
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err(PatternError::UnclosedSet(start + 1, text.to_string()));
                        };
                        // A `]` first in the set is a member, as in shells.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.get(i + 1) == Some(&'-')
                            && chars.get(i + 2).is_some_and(|&e| e != ']')
                        {
                            items.push((c, chars[i + 2]));
                            i += 3;
                        } else {
                            items.push((c, c));
                            i += 1;
                        }
                    }
                    tokens.push(Token::Set { negated, items });
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Ok(ExePattern {
            text: text.to_string(),
            kind: PatternKind::Glob(tokens),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            PatternKind::Substring => path.contains(self.text.as_str()),
            PatternKind::Glob(tokens) => {
                let path: Vec<char> = path.chars().collect();
                glob_match(tokens, &path)
            }
        }
    }
}

/// Iterative matching with one backtrack point per `*`: linear in practice,
/// never exponential on patterns like `*a*a*a*b`.
fn glob_match(tokens: &[Token], text: &[char]) -> bool {
    let (mut t, mut s) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while s < text.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                resume = Some((t, s));
                t += 1;
                continue;
            }
            Some(token) if one_matches(token, text[s]) => {
                t += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        match resume {
            Some((rt, rs)) => {
                t = rt + 1;
                s = rs + 1;
                resume = Some((rt, rs + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::AnyRun)
}

fn one_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyOne => true,
        Token::AnyRun => false,
        Token::Set { negated, items } => {
            items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        ExePattern::parse(pattern)
            .map(|p| p.matches(path))
            .unwrap_or(false)
    }

    #[test]
    fn plain_text_is_a_substring_as_before() {
        assert!(m("server", "/srv/app/server-2"));
        assert!(m("/usr/bin/python3", "/usr/bin/python3.11"));
        assert!(!m("nginx", "/usr/sbin/apache2"));
    }

    #[test]
    fn globs_match_the_whole_path() {
        assert!(m("*/bin/bash", "/usr/bin/bash"));
        assert!(!m("*/bin/bash", "/usr/bin/bash5"));
        assert!(m("/srv/*/server", "/srv/a/b/server"));
        assert!(m("/usr/bin/python3.1?", "/usr/bin/python3.11"));
        assert!(!m("/usr/bin/python3.1?", "/usr/bin/python3.1"));
        assert!(m("*/app-[0-9]", "/x/app-7"));
        assert!(!m("*/app-[!0-9]", "/x/app-7"));
        assert!(m("*", "/anything"));
        assert!(m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert_eq!(ExePattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            ExePattern::parse("/bin/[ab"),
            Err(PatternError::UnclosedSet(6, _))
        ));
    }
}
