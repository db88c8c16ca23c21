//! Text rendering of values for a reader who pays per token. It only formats
//! what the decoder produced; it never reads memory and never shows a value
//! the decoder marked unavailable.

use std::borrow::Cow;

use super::Value;

/// Names longer than this have their generic arguments elided in answers.
pub const MAX_NAME_CHARS: usize = 160;

/// A type or function name short enough to read: beyond
/// [`MAX_NAME_CHARS`], generic arguments are elided as `<…>` from the
/// innermost level outwards until it fits (`Vec<Option<HashMap<…>>>`, then
/// `Vec<…>`), and a name still too long keeps its head and tail. A name
/// within the limit is returned as it is.
pub fn shorten_type_name(name: &str) -> Cow<'_, str> {
    if name.chars().count() <= MAX_NAME_CHARS {
        return Cow::Borrowed(name);
    }
    for keep_depth in (0..=2).rev() {
        if let Some(short) = elide_generics(name, keep_depth)
            && short.chars().count() <= MAX_NAME_CHARS
        {
            return Cow::Owned(short);
        }
    }
    let shallow = elide_generics(name, 0).unwrap_or_else(|| name.to_string());
    let chars: Vec<char> = shallow.chars().collect();
    if chars.len() <= MAX_NAME_CHARS {
        return Cow::Owned(shallow);
    }
    let head: String = chars[..MAX_NAME_CHARS * 2 / 3].iter().collect();
    let tail: String = chars[chars.len() - MAX_NAME_CHARS / 4..].iter().collect();
    Cow::Owned(format!("{head}…{tail}"))
}

/// `name` with everything inside `<…>` nested deeper than `keep_depth`
/// levels replaced by `…`; `None` when its angle brackets do not balance
/// (an `operator<` and the like), so the caller falls back to a plain cut.
fn elide_generics(name: &str, keep_depth: usize) -> Option<String> {
    let mut out = String::with_capacity(MAX_NAME_CHARS * 2);
    let mut depth = 0usize;
    let mut prev = '\0';
    for c in name.chars() {
        let is_arrow = c == '>' && prev == '-';
        prev = c;
        match c {
            '<' => {
                depth += 1;
                if depth == keep_depth + 1 {
                    out.push_str("<…");
                    continue;
                }
            }
            '>' if !is_arrow => {
                depth = depth.checked_sub(1)?;
                if depth == keep_depth {
                    out.push('>');
                    continue;
                }
            }
            _ => {}
        }
        if depth <= keep_depth {
            out.push(c);
        }
    }
    (depth == 0).then_some(out)
}

/// The summary the decoder gives an aggregate whose fields are its children.
pub(crate) const AGGREGATE_SUMMARY: &str = "{...}";

/// Bytes of text one top-level value may take; past it, the remaining
/// elements are counted instead of shown.
pub const MAX_VALUE_TEXT: usize = 4096;

/// A value from its JSON form (as snapshots store it), for rendering.
pub fn value_from_json(v: &serde_json::Value) -> Value {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Value {
        name: text("name"),
        type_name: text("type"),
        value: text("value"),
        children: v
            .get("children")
            .and_then(|c| c.as_array())
            .map(|c| c.iter().map(value_from_json).collect()),
        truncated: v
            .get("truncated")
            .and_then(|t| t.as_bool())
            .unwrap_or(false),
        unavailable: v
            .get("unavailable")
            .and_then(|u| u.as_str())
            .map(super::Unavailable::from),
    }
}

/// `name: type = body` for a top-level value.
pub(super) fn render_top(value: &Value, out: &mut String) {
    out.push_str(&value.name);
    if !value.type_name.is_empty() {
        out.push_str(": ");
        out.push_str(&shorten_type_name(&value.type_name));
    }
    out.push_str(" = ");
    let stop_at = out.len() + MAX_VALUE_TEXT;
    render_body(value, out, stop_at);
}

/// Renders `value`; once `out` reaches `stop_at`, elements not yet shown are
/// counted (`… 940 more`) instead of rendered.
fn render_body(value: &Value, out: &mut String, stop_at: usize) {
    if let Some(reason) = &value.unavailable {
        out.push('<');
        out.push_str(&reason.to_string());
        out.push('>');
        return;
    }
    let children = match &value.children {
        Some(children) => children,
        None => {
            out.push_str(&value.value);
            return;
        }
    };
    let is_aggregate = value.value == AGGREGATE_SUMMARY;
    if !is_aggregate {
        out.push_str(&value.value);
    }
    if let [only] = children.as_slice()
        && only.name.starts_with('*')
    {
        out.push_str(" -> ");
        render_body(only, out, stop_at);
        return;
    }
    if children.is_empty() && !value.truncated {
        if is_aggregate {
            out.push_str("{}");
        }
        return;
    }
    if !is_aggregate {
        out.push(' ');
    }
    // Map entries are named `[key]` too; integer keys 0..n must still read
    // as a map.
    let keyed = value.value.to_ascii_lowercase().contains("map(");
    let positional = !keyed
        && children
            .iter()
            .enumerate()
            .all(|(i, child)| child.name == format!("[{i}]"));
    let (open, close) = if positional { ('[', ']') } else { ('{', '}') };
    out.push(open);
    let mut shown = 0;
    for (i, child) in children.iter().enumerate() {
        if out.len() >= stop_at {
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        if !positional {
            out.push_str(&child.name);
            out.push_str(" = ");
        }
        render_body(child, out, stop_at);
        shown += 1;
    }
    if shown < children.len() {
        if shown > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("… {} more", children.len() - shown));
        if value.truncated {
            out.push_str(" and more not loaded");
        }
    } else if value.truncated {
        if !children.is_empty() {
            out.push_str(", ");
        }
        out.push('…');
    }
    out.push(close);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_map_shows_its_first_entries_within_the_text_budget() {
        let children: Vec<Value> = (0..1000)
            .map(|i| Value::leaf(format!("[{i}]"), "int", format!("{}", i * 2)))
            .collect();
        let map = with_children(
            Value::leaf("m", "std::map<int, int>", "std::map(len 1000)"),
            children,
        );
        let text = map.to_text();
        assert!(text.starts_with("m: std::map<int, int> = std::map(len 1000) {[0] = 0, [1] = 2"));
        assert!(text.len() < MAX_VALUE_TEXT + 200, "{}", text.len());
        assert!(text.contains(" more}"), "{text}");
    }

    #[test]
    fn shortens_long_generic_names_from_the_inside() {
        assert_eq!(shorten_type_name("Vec<i32>"), "Vec<i32>");
        let inner = format!("Inner<{}>", "u8, ".repeat(100));
        let long = format!("core::ptr::drop_in_place<alloc::vec::Vec<Option<{inner}>>>");
        let short = shorten_type_name(&long);
        assert!(short.chars().count() <= MAX_NAME_CHARS, "{short}");
        assert_eq!(
            short,
            "core::ptr::drop_in_place<alloc::vec::Vec<Option<…>>>"
        );
        let fn_type = format!("fn(&{}) -> usize", "a".repeat(300));
        assert!(shorten_type_name(&fn_type).chars().count() <= MAX_NAME_CHARS + 1);
    }

    fn with_children(mut value: Value, children: Vec<Value>) -> Value {
        value.children = Some(children);
        value
    }

    #[test]
    fn renders_structs_sequences_pointers_and_cuts() {
        let point = with_children(
            Value::leaf("p", "struct point", AGGREGATE_SUMMARY),
            vec![Value::leaf("x", "int", "1"), Value::leaf("y", "int", "2")],
        );
        assert_eq!(point.to_text(), "p: struct point = {x = 1, y = 2}");

        let mut vec = with_children(
            Value::leaf("v", "Vec<i32>", "Vec(len 3)"),
            vec![
                Value::leaf("[0]", "i32", "1"),
                Value::leaf("[1]", "i32", "2"),
            ],
        );
        vec.truncated = true;
        assert_eq!(vec.to_text(), "v: Vec<i32> = Vec(len 3) [1, 2, …]");

        let pointer = with_children(
            Value::leaf("n", "int *", "0x1000"),
            vec![Value::leaf("*n", "int", "42")],
        );
        assert_eq!(pointer.to_text(), "n: int * = 0x1000 -> 42");

        let hidden = with_children(
            Value::leaf("u", "struct user", AGGREGATE_SUMMARY),
            vec![
                Value::redacted("token", "char *"),
                Value::unavailable("n", "int", super::super::Unavailable::OPTIMIZED_OUT),
            ],
        );
        assert_eq!(
            hidden.to_text(),
            "u: struct user = {token = <redacted>, n = <optimized out>}"
        );

        let mut cut = Value::leaf("deep", "struct node", AGGREGATE_SUMMARY);
        cut.truncated = true;
        assert_eq!(cut.to_text(), "deep: struct node = {...}");
    }
}
