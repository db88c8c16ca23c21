//! The value room: what a variable's bytes mean and how they are shown.
//!
//! Owns the value model ([`Value`]), the load limits ([`Limits`]), redaction by
//! name, type and value ([`Redaction`]), the decoder that turns typed bytes into values
//! (C, C++ and Rust, with pretty printers for the Rust std and libstdc++
//! containers) and the text rendering for a reader who pays per token.
//!
//! It must never call ptrace or know where bytes come from: every read goes
//! through [`crate::debuginfo::MemorySource`], so the same code runs on a live
//! process, on bytes copied at a probe hit, or on a recording in a test. It
//! must never let a value whose name looks secret leave unredacted, and never
//! let target data (lengths, pointers, cycles) make it loop or allocate
//! without bound.

mod decode;
pub mod layout;
mod memory;
mod printers;
mod redact;
mod render;
pub mod room;
pub mod secrets;
mod unavailable;

pub use decode::{
    Decoder, MAX_NODES, MAX_TOTAL_NODES, Place, format_float, long_double_to_f64, quote_bytes,
    quote_char, sign_extend,
};
pub use memory::PageCache;
pub use redact::Redaction;
pub use render::{MAX_NAME_CHARS, MAX_VALUE_TEXT, shorten_type_name, value_from_json};
pub use unavailable::{
    CallSiteValue, Corruption, DebugInfoPart, EntryValueProblem, NotCaptured, NotYetInitialized,
    NullKind, OptimizedOut, Unavailable, Unsupported,
};

use serde::{Deserialize, Deserializer, Serialize};

/// How much of a value to load and show: nesting depth, bytes of a string,
/// elements of an array or container.
///
/// Every cut a limit makes is marked `truncated` on the value it cut. Large
/// requests are clamped (depth 32, max_string 1 MiB, max_items 10000) so a
/// client cannot make liveprobe read or hold an unbounded amount of target
/// memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Limits {
    /// Levels of children expanded below a top-level value (0 = summary only; default 3).
    #[serde(deserialize_with = "lenient_u32")]
    pub depth: u32,
    /// Bytes of a string shown before it is cut (default 256).
    #[serde(deserialize_with = "lenient_u32")]
    pub max_string: u32,
    /// Elements of an array, container or struct shown before the rest is cut (default 50).
    #[serde(deserialize_with = "lenient_u32")]
    pub max_items: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 3,
            max_string: 256,
            max_items: 50,
        }
    }
}

impl Limits {
    /// Largest depth honoured; deeper requests are cut here.
    pub const MAX_DEPTH: u32 = 32;
    /// Largest string length honoured, in bytes.
    pub const MAX_STRING: u32 = 1 << 20;
    /// Largest element count honoured per container.
    pub const MAX_ITEMS: u32 = 10_000;

    /// These limits with every field brought within the hard ceilings, so a
    /// request for a billion elements still holds memory bounded.
    pub fn clamped(&self) -> Limits {
        Limits {
            depth: self.depth.min(Self::MAX_DEPTH),
            max_string: self.max_string.min(Self::MAX_STRING),
            max_items: self.max_items.min(Self::MAX_ITEMS),
        }
    }
}

/// Accepts `42` or `"42"`: some MCP clients send numbers as strings.
fn lenient_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    let parsed = match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => n,
        NumberOrText::Text(text) => text.trim().parse::<u64>().map_err(|_| {
            serde::de::Error::custom(format!("expected a non-negative number, got {text:?}"))
        })?,
    };
    Ok(u32::try_from(parsed).unwrap_or(u32::MAX))
}

/// One variable, field, element or expression result, as TOOLS.md's Value:
/// `{name, type, value, children?, truncated?, unavailable?}`.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Value {
    /// Variable or field name, `[i]` for an element, `[key]` for a map entry,
    /// `*p` for what a pointer points at.
    pub name: String,
    /// The type as the source would spell it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// One-line summary: `42`, `"alice"`, `0x7ffd1234`, `Vec(len 3)`, `{...}`.
    pub value: String,
    /// Expanded fields or elements, when the limits allowed expanding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<Value>>,
    /// True where a limit cut this value (string length, element count, depth).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Why the value could not be had: `optimized out`, `redacted`,
    /// `read error at 0x…`, `unsupported: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Unavailable>,
}

impl Value {
    /// A leaf value with a summary and nothing cut.
    pub fn leaf(
        name: impl Into<String>,
        type_name: impl Into<String>,
        value: impl Into<String>,
    ) -> Value {
        Value {
            name: name.into(),
            type_name: type_name.into(),
            value: value.into(),
            children: None,
            truncated: false,
            unavailable: None,
        }
    }

    /// A value that cannot be had, with the reason (`optimized out`, …),
    /// typed where it was decided (text from a room that has not typed its
    /// reasons is kept as [`Unavailable::Other`]).
    pub fn unavailable(
        name: impl Into<String>,
        type_name: impl Into<String>,
        reason: impl Into<Unavailable>,
    ) -> Value {
        let reason = reason.into();
        Value {
            name: name.into(),
            type_name: type_name.into(),
            value: format!("<{reason}>"),
            children: None,
            truncated: false,
            unavailable: Some(reason),
        }
    }

    /// A value hidden because its name looks secret; its type stays visible
    /// because a type is not a secret and helps the reader.
    pub fn redacted(name: impl Into<String>, type_name: impl Into<String>) -> Value {
        Value::unavailable(name, type_name, Unavailable::Redacted)
    }

    /// The "read error at 0x…" value for memory the target does not map.
    pub fn read_error(
        name: impl Into<String>,
        type_name: impl Into<String>,
        address: u64,
    ) -> Value {
        Value::unavailable(name, type_name, Unavailable::read_error(address))
    }

    /// Applies every redaction rule, in place, to this value and its
    /// descendants: a secret name or a `--redact-type` type hides the whole
    /// value (a map entry `["password"]` is judged by its key), and
    /// credential-looking text in a name or a summary is replaced by
    /// `<redacted>`. The decoder already hides secret names and types as it
    /// goes; this runs on every value before it is stored or answered.
    pub fn redact(&mut self, redaction: &Redaction) {
        if self.unavailable == Some(Unavailable::Redacted) {
            return;
        }
        if redaction.is_secret(&self.name) || redaction.is_secret_type(&self.type_name) {
            let mut name = std::mem::take(&mut self.name);
            redaction.scrub_in_place(&mut name);
            *self = Value::redacted(name, std::mem::take(&mut self.type_name));
            return;
        }
        redaction.scrub_in_place(&mut self.name);
        redaction.scrub_in_place(&mut self.value);
        if let Some(children) = self.children.as_mut() {
            for child in children {
                child.redact(redaction);
            }
        }
    }

    /// Appends a compact rendering, e.g. `p = {x = 1, y = 2}`, for a reader
    /// who pays per token: the top level shows `name: type = …`, nested
    /// values `name = …`, sequences `[a, b, …]`, cuts `…`.
    pub fn render_text(&self, out: &mut String) {
        render::render_top(self, out);
    }

    /// [`Value::render_text`] into a new string.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.render_text(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_lenient_numbers() {
        let limits: Limits = serde_json::from_str(r#"{"depth": "5", "max_items": 7}"#).unwrap();
        assert_eq!(
            limits,
            Limits {
                depth: 5,
                max_string: 256,
                max_items: 7
            }
        );
        let err = serde_json::from_str::<Limits>(r#"{"depth": "deep"}"#).unwrap_err();
        assert!(err.to_string().contains("non-negative number"), "{err}");
        let huge: Limits = serde_json::from_str(r#"{"max_items": 100000000000}"#).unwrap();
        assert_eq!(huge.clamped().max_items, Limits::MAX_ITEMS);
    }

    #[test]
    fn value_serializes_as_the_contract_says() {
        let value = Value::leaf("x", "int", "42");
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"name":"x","type":"int","value":"42"}"#
        );
        let hidden = Value::redacted("password", "char *");
        assert_eq!(
            serde_json::to_string(&hidden).unwrap(),
            r#"{"name":"password","type":"char *","value":"<redacted>","unavailable":"redacted"}"#
        );
    }

    #[test]
    fn redact_walks_children() {
        let mut value = Value::leaf("user", "struct user", "{...}");
        value.children = Some(vec![
            Value::leaf("name", "char *", "\"alice\""),
            Value::leaf("apiKey", "char *", "\"sk-123\""),
        ]);
        value.redact(&Redaction::default_list());
        let children = value.children.unwrap();
        assert_eq!(children[0].value, "\"alice\"");
        assert_eq!(children[1].unavailable, Some(Unavailable::Redacted));
    }
}
