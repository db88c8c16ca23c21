//! The `--policy FILE` format (TOML). Everything in it can also be said
//! with flags, except per-rule tool limits:
//!
//! ```toml
//! observe_only = false            # true: no tool may write into any target
//!
//! [[allow]]
//! name = "payments"               # how refusals and audit lines cite it
//! uid = 1000                      # or "self": liveprobe's own user
//! exe = "/srv/payments/bin/*"     # glob; text without * ? [ is a substring
//! pid = 4242
//! tools = ["read"]                # only these: tool names, "read", "probe"
//! deny_tools = ["set_snapshot"]
//! observe_only = true
//!
//! [[deny]]
//! name = "no shells"
//! exe = "*/bash"
//! ```
//!
//! A rule matches when all its fields match. With no `[[allow]]` rule (and no
//! `--allow-*` flag) the default rule applies: liveprobe's own user only.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::glob::ExePattern;
use super::rules::{AttachRules, Rule, ToolLimits, UidMatch};

/// A policy file that cannot be used; start-up stops with it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    observe_only: bool,
    #[serde(default)]
    allow: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    deny: Vec<Spanned<RuleSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Option<String>,
    uid: Option<Spanned<UidSpec>>,
    pid: Option<i32>,
    exe: Option<Spanned<String>>,
    tools: Option<Spanned<Vec<String>>>,
    deny_tools: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    observe_only: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UidSpec {
    Number(u32),
    Word(String),
}

/// Reads `path` into `rules` (appended to what flags already gave).
/// `known_tools` are the tool names a limit may name.
pub fn load(
    path: &Path,
    rules: &mut AttachRules,
    known_tools: &[String],
) -> Result<(), PolicyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown, rules, known_tools)
}

/// [`load`] on text already read; `shown` names the file in errors.
pub fn parse(
    text: &str,
    shown: &str,
    rules: &mut AttachRules,
    known_tools: &[String],
) -> Result<(), PolicyFileError> {
    let invalid = |offset: usize, reason: String| PolicyFileError::Invalid {
        path: shown.to_string(),
        line: line_of(text, offset),
        reason,
    };
    let spec: FileSpec = toml::from_str(text).map_err(|e| {
        invalid(
            e.span().map(|s| s.start).unwrap_or(0),
            e.message().trim().to_string(),
        )
    })?;
    if spec.observe_only {
        rules.observe_only = true;
        rules.observe_only_origin = format!("observe_only = true in {shown}");
    }
    for (kind, list, target) in [
        ("allow", spec.allow, &mut rules.allow),
        ("deny", spec.deny, &mut rules.deny),
    ] {
        for (index, spanned) in list.into_iter().enumerate() {
            let at = spanned.span().start;
            let line = line_of(text, at);
            let r = spanned.into_inner();
            let uid = match r.uid {
                None => None,
                Some(u) => {
                    let u_at = u.span().start;
                    match u.into_inner() {
                        UidSpec::Number(n) => Some(UidMatch::Uid(n)),
                        UidSpec::Word(w) if w == "self" => Some(UidMatch::Own),
                        UidSpec::Word(w) => {
                            return Err(invalid(
                                u_at,
                                format!("uid {w:?} is neither a number nor \"self\""),
                            ));
                        }
                    }
                }
            };
            let exe = match r.exe {
                None => None,
                Some(e) => {
                    let e_at = e.span().start;
                    Some(
                        ExePattern::parse(e.get_ref())
                            .map_err(|err| invalid(e_at, err.to_string()))?,
                    )
                }
            };
            if uid.is_none() && r.pid.is_none() && exe.is_none() {
                return Err(invalid(
                    at,
                    format!(
                        "this [[{kind}]] rule matches nothing in particular: give it uid, pid or exe \
                         (uid = \"self\" for liveprobe's own user)"
                    ),
                ));
            }
            let check_tools = |list: Option<Spanned<Vec<String>>>| -> Result<Option<Vec<String>>, PolicyFileError> {
                let Some(list) = list else { return Ok(None) };
                let l_at = list.span().start;
                let names = list.into_inner();
                if let Some(bad) = names
                    .iter()
                    .find(|n| !matches!(n.as_str(), "read" | "probe") && !known_tools.contains(n))
                {
                    return Err(invalid(
                        l_at,
                        format!(
                            "{bad:?} is not a tool: use \"read\", \"probe\" or one of {}",
                            known_tools.join(", ")
                        ),
                    ));
                }
                Ok(Some(names))
            };
            let only = check_tools(r.tools)?;
            let deny_tools = check_tools(r.deny_tools)?.unwrap_or_default();
            if kind == "deny" && (only.is_some() || !deny_tools.is_empty() || r.observe_only) {
                return Err(invalid(
                    at,
                    "a [[deny]] rule refuses the attach itself; tool limits belong in an [[allow]] rule"
                        .into(),
                ));
            }
            target.push(Rule {
                name: r
                    .name
                    .unwrap_or_else(|| format!("{kind} rule {} of {shown}", index + 1)),
                origin: format!("{shown} line {line}"),
                uid,
                pid: r.pid,
                exe,
                limits: ToolLimits {
                    only,
                    deny: deny_tools,
                    observe_only: r.observe_only,
                },
            });
        }
    }
    Ok(())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset.min(text.len()))
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<String> {
        ["evaluate", "set_snapshot", "stack_trace"]
            .map(String::from)
            .to_vec()
    }

    fn error_of(text: &str) -> String {
        let mut rules = AttachRules::default();
        match parse(text, "p.toml", &mut rules, &tools()) {
            Ok(()) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_file_loads() {
        let mut rules = AttachRules::default();
        let text = "observe_only = false\n\n[[allow]]\nname = \"app\"\nuid = \"self\"\nexe = \"*/app\"\ntools = [\"read\"]\n\n[[deny]]\nexe = \"bash\"\n";
        parse(text, "p.toml", &mut rules, &tools()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.allow.len(), 1);
        assert_eq!(rules.allow[0].origin, "p.toml line 3");
        assert_eq!(rules.allow[0].uid, Some(UidMatch::Own));
        assert_eq!(rules.deny[0].name, "deny rule 1 of p.toml");
        assert!(!rules.observe_only);
    }

    #[test]
    fn errors_give_the_line_and_reason() {
        assert!(
            error_of("[[allow]]\nuid = 1\nusr = 2\n").starts_with("p.toml:3: unknown field `usr`")
        );
        assert!(error_of("\n\n[[allow]\n").starts_with("p.toml:3:"));
        assert!(
            error_of("[[allow]]\nname = \"x\"\n")
                .contains("p.toml:1: this [[allow]] rule matches nothing")
        );
        let bad_tool = error_of("[[allow]]\nuid = 1\n\ntools = [\"read\", \"set_snapshott\"]\n");
        assert!(
            bad_tool.starts_with("p.toml:4: \"set_snapshott\" is not a tool"),
            "{bad_tool}"
        );
        assert!(error_of("[[allow]]\nexe = \"/bin/[x\"\n").starts_with("p.toml:2: `[`"));
        assert!(error_of("[[allow]]\nuid = \"root\"\n").starts_with("p.toml:2: uid \"root\""));
        assert!(
            error_of("[[deny]]\nuid = 0\ntools = [\"read\"]\n")
                .starts_with("p.toml:1: a [[deny]] rule")
        );
    }
}
