//! Errors of the eval room, with messages that say what to do next. A value
//! that cannot be read is not an error (it is a [`crate::value::Value`] with
//! `unavailable` set); these are for expressions that cannot be compiled and
//! frames that cannot be looked at at all.

/// Why an expression could not be compiled or a frame could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The expression is not well formed.
    #[error("syntax error at column {column}: {message}")]
    Syntax {
        /// 1-based column of the offending character.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A name is neither a local, an argument nor a global.
    #[error("{}", unknown_name_message(name, in_scope))]
    UnknownName {
        /// The name as written.
        name: String,
        /// 1-based column where the name starts.
        column: usize,
        /// Names that are in scope, closest matches first.
        in_scope: Vec<String>,
    },
    /// The expression asks for something liveprobe never does (calls,
    /// assignment).
    #[error("refused at column {column}: {reason}")]
    Refused {
        /// 1-based column of the refused construct.
        column: usize,
        /// Why it is refused and what to do instead.
        reason: String,
    },
    /// The expression is well formed but its types do not fit.
    #[error("type error at column {column}: {message}")]
    Type {
        /// 1-based column of the offending sub-expression.
        column: usize,
        /// What does not fit and what would.
        message: String,
    },
    /// The code at this pc has no usable debug info.
    #[error("no debug info for the code at {pc:#x}: {detail}")]
    NoDebugInfo {
        /// The runtime pc that was looked up.
        pc: u64,
        /// Which module, and what to install or rebuild.
        detail: String,
    },
    /// The expression compiled but could not be evaluated here (unmapped
    /// memory, a register the frame does not have, division by zero).
    #[error("cannot evaluate `{expression}`: {reason}")]
    Unavailable {
        /// The expression as written.
        expression: String,
        /// Why: `read error at 0x…`, `optimized out`, `unsupported: …`.
        reason: crate::value::Unavailable,
    },
    /// The debug info is present but could not be read.
    #[error("cannot read the debug info: {0}")]
    Dwarf(String),
}

fn unknown_name_message(name: &str, in_scope: &[String]) -> String {
    if in_scope.is_empty() {
        return format!("no variable, argument or global named `{name}` is visible here");
    }
    let shown: Vec<&str> = in_scope.iter().take(12).map(String::as_str).collect();
    let more = in_scope.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    format!(
        "no variable, argument or global named `{name}` is visible here; in scope: {}{tail}",
        shown.join(", ")
    )
}
