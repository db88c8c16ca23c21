//! Text rendering of values for a reader who pays per token. It only formats
//! what the decoder produced; it never reads memory and never shows a value
//! the decoder marked unavailable.

use super::Value;

/// The summary the decoder gives an aggregate whose fields are its children.
pub(crate) const AGGREGATE_SUMMARY: &str = "{...}";

/// `name: type = body` for a top-level value.
pub(super) fn render_top(value: &Value, out: &mut String) {
    out.push_str(&value.name);
    if !value.type_name.is_empty() {
        out.push_str(": ");
        out.push_str(&value.type_name);
    }
    out.push_str(" = ");
    render_body(value, out);
}

fn render_body(value: &Value, out: &mut String) {
    if let Some(reason) = &value.unavailable {
        out.push('<');
        out.push_str(reason);
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
        render_body(only, out);
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
    for (i, child) in children.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if !positional {
            out.push_str(&child.name);
            out.push_str(" = ");
        }
        render_body(child, out);
    }
    if value.truncated {
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
                Value::unavailable("n", "int", "optimized out"),
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
