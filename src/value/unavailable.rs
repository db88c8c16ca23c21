//! Why a value is missing, as a kind a program can match on, rendered
//! (Display) as the reason text clients read in a Value's `unavailable`.
//!
//! The JSON stays the contract's string: each kind prints exactly the text
//! it has always printed (`optimized out`, `read error at 0x10`,
//! `unsupported: …`), and reasons built elsewhere as text are sorted into
//! their kind by [`Unavailable::from`], so both ways agree.

use std::borrow::Cow;
use std::fmt;

/// Why a value could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The compiler did not keep the value at this pc (or liveprobe cannot
    /// prove what it was there): `optimized out[: detail]`.
    OptimizedOut {
        /// What exactly is missing, when known.
        detail: Option<String>,
    },
    /// Hidden because its name looks secret.
    Redacted,
    /// The memory holding it could not be read: `read error at 0x…[ (detail)]`.
    ReadError {
        /// The first address that could not be read.
        address: u64,
        /// Why, when more is known (`null pointer`).
        detail: Option<String>,
    },
    /// The variable's scope has begun but its declaration has not run yet:
    /// `not yet initialized: …`.
    NotYetInitialized {
        /// Where it is declared and where the frame is.
        detail: String,
    },
    /// liveprobe cannot show this kind of value (or compute this
    /// expression) yet: `unsupported: …`.
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// The debug info that describes it could not be read:
    /// `unreadable …`.
    UnreadableDebugInfo {
        /// The whole reason, e.g. `unreadable location list: …`.
        reason: String,
    },
    /// A reason of no other kind, as text.
    Other(String),
}

const OPTIMIZED_OUT: &str = "optimized out";
const REDACTED: &str = "redacted";
const READ_ERROR_AT: &str = "read error at ";
const NOT_YET_INITIALIZED: &str = "not yet initialized";
const UNSUPPORTED: &str = "unsupported";
const UNREADABLE: &str = "unreadable ";

impl Unavailable {
    /// Optimized out, with nothing more to say.
    pub const OPTIMIZED_OUT: Unavailable = Unavailable::OptimizedOut { detail: None };

    /// Memory at `address` could not be read.
    pub fn read_error(address: u64) -> Unavailable {
        Unavailable::ReadError {
            address,
            detail: None,
        }
    }

    /// This kind of value or operation is not supported.
    pub fn unsupported(what: impl Into<String>) -> Unavailable {
        Unavailable::Unsupported { what: what.into() }
    }

    /// A machine name of the kind (`optimized_out`, `read_error`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Unavailable::OptimizedOut { .. } => "optimized_out",
            Unavailable::Redacted => "redacted",
            Unavailable::ReadError { .. } => "read_error",
            Unavailable::NotYetInitialized { .. } => "not_yet_initialized",
            Unavailable::Unsupported { .. } => "unsupported",
            Unavailable::UnreadableDebugInfo { .. } => "unreadable_debug_info",
            Unavailable::Other(_) => "other",
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::OptimizedOut { detail: None } => f.write_str(OPTIMIZED_OUT),
            Unavailable::OptimizedOut {
                detail: Some(detail),
            } => write!(f, "{OPTIMIZED_OUT}: {detail}"),
            Unavailable::Redacted => f.write_str(REDACTED),
            Unavailable::ReadError {
                address,
                detail: None,
            } => write!(f, "{READ_ERROR_AT}{address:#x}"),
            Unavailable::ReadError {
                address,
                detail: Some(detail),
            } => write!(f, "{READ_ERROR_AT}{address:#x} ({detail})"),
            Unavailable::NotYetInitialized { detail } => {
                write!(f, "{NOT_YET_INITIALIZED}: {detail}")
            }
            Unavailable::Unsupported { what } => write!(f, "{UNSUPPORTED}: {what}"),
            Unavailable::UnreadableDebugInfo { reason } | Unavailable::Other(reason) => {
                f.write_str(reason)
            }
        }
    }
}

/// `kind` or `kind: detail` → the detail (None for the bare kind); None
/// when `text` is not of this kind.
fn detail_of<'a>(text: &'a str, kind: &str) -> Option<Option<&'a str>> {
    let rest = text.strip_prefix(kind)?;
    if rest.is_empty() {
        return Some(None);
    }
    rest.strip_prefix(": ").map(Some)
}

impl From<&str> for Unavailable {
    /// Sorts a reason written as text into its kind. The text printed back
    /// is the text given (a unit test holds every kind to that).
    fn from(text: &str) -> Unavailable {
        if let Some(detail) = detail_of(text, OPTIMIZED_OUT) {
            return Unavailable::OptimizedOut {
                detail: detail.map(str::to_string),
            };
        }
        if text == REDACTED {
            return Unavailable::Redacted;
        }
        if let Some(rest) = text.strip_prefix(READ_ERROR_AT) {
            let (hex, detail) = match rest.split_once(' ') {
                Some((hex, detail)) => (hex, Some(detail)),
                None => (rest, None),
            };
            let detail = match detail {
                None => Some(None),
                Some(d) => d
                    .strip_prefix('(')
                    .and_then(|d| d.strip_suffix(')'))
                    .map(|d| Some(d.to_string())),
            };
            if let (Some(digits), Some(detail)) = (hex.strip_prefix("0x"), detail)
                && let Ok(address) = u64::from_str_radix(digits, 16)
                && format!("{address:#x}") == hex
            {
                return Unavailable::ReadError { address, detail };
            }
        }
        if let Some(Some(detail)) = detail_of(text, NOT_YET_INITIALIZED) {
            return Unavailable::NotYetInitialized {
                detail: detail.to_string(),
            };
        }
        if let Some(Some(what)) = detail_of(text, UNSUPPORTED) {
            return Unavailable::unsupported(what);
        }
        if text.starts_with(UNREADABLE) {
            return Unavailable::UnreadableDebugInfo {
                reason: text.to_string(),
            };
        }
        Unavailable::Other(text.to_string())
    }
}

impl From<String> for Unavailable {
    fn from(text: String) -> Unavailable {
        Unavailable::from(text.as_str())
    }
}

impl From<&String> for Unavailable {
    fn from(text: &String) -> Unavailable {
        Unavailable::from(text.as_str())
    }
}

impl serde::Serialize for Unavailable {
    /// As its reason text: the contract's `unavailable` is a string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Unavailable {
    fn schema_name() -> Cow<'static, str> {
        "Unavailable".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reasons as liveprobe writes them, one or more of each kind.
    const REASONS: &[(&str, &str)] = &[
        ("optimized out", "optimized_out"),
        (
            "optimized out: register rbx is not known in this frame",
            "optimized_out",
        ),
        ("redacted", "redacted"),
        ("read error at 0x10", "read_error"),
        ("read error at 0x0 (null pointer)", "read_error"),
        (
            "not yet initialized: declared at line 12, the frame is at line 10",
            "not_yet_initialized",
        ),
        ("unsupported: pointers to members", "unsupported"),
        (
            "unreadable location list: bad offset",
            "unreadable_debug_info",
        ),
        ("the process exited", "other"),
        // Near misses stay text, never a wrong kind.
        ("read error at 0x00ff", "other"),
        ("read error at 16", "other"),
        ("unsupported", "other"),
        ("optimized outside", "other"),
        ("redacted twice", "other"),
    ];

    #[test]
    fn every_reason_prints_back_as_written_and_has_its_kind() {
        for (text, kind) in REASONS {
            let reason = Unavailable::from(*text);
            assert_eq!(reason.to_string(), *text, "{reason:?}");
            assert_eq!(reason.kind(), *kind, "{text}");
        }
    }

    #[test]
    fn typed_reasons_print_as_clients_read_them() {
        assert_eq!(Unavailable::OPTIMIZED_OUT.to_string(), "optimized out");
        assert_eq!(
            Unavailable::read_error(0x7ffd_1000).to_string(),
            "read error at 0x7ffd1000"
        );
        assert_eq!(
            Unavailable::ReadError {
                address: 0,
                detail: Some("null pointer".into())
            }
            .to_string(),
            "read error at 0x0 (null pointer)"
        );
        assert_eq!(
            Unavailable::unsupported("array of void").to_string(),
            "unsupported: array of void"
        );
        assert_eq!(
            Unavailable::from("read error at 0x10"),
            Unavailable::read_error(0x10)
        );
        assert_eq!(
            serde_json::to_value(Unavailable::Redacted).ok(),
            Some(serde_json::json!("redacted"))
        );
    }
}
