//! Values of a Rust program (debug build), read from a live process stopped
//! with real ptrace: std pretty printers, enums, tuples, slices, limits and
//! redaction; and expressions checked against gdb.

#[path = "fixtures/values/support.rs"]
mod support;

use liveprobe::eval::read_locals;
use liveprobe::value::{Limits, Redaction, Value};
use support::{Fixture, Stopped, build};

fn find<'a>(values: &'a [Value], name: &str) -> &'a Value {
    values.iter().find(|v| v.name == name).unwrap_or_else(|| {
        panic!(
            "no variable {name} in {:?}",
            values.iter().map(|v| &v.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn rust_locals() {
    let exe = build("rust_values.rs", "rust_values", &["-C", "opt-level=0"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let values =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let mut text = String::new();
    for value in &values {
        value.render_text(&mut text);
        text.push('\n');
    }
    eprintln!("{text}");
    eprintln!(
        "{} bytes of text, {} bytes of JSON",
        text.len(),
        serde_json::to_string(&values).unwrap().len()
    );
    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
    let _ = find(&values, "count");
}

/// Expressions evaluated by liveprobe and printed by gdb on the same
/// stopped fixture.
const RUST_EXPRESSIONS: &[&str] = &[
    "count",
    "count + 1",
    "count * 7 - 2",
    "-count",
    "count % 2",
    "count << 4",
    "small",
    "small as u32",
    "big",
    "negative",
    "ratio",
    "precise",
    "precise * 3.0",
    "flag",
    "letter",
    "tuple.0",
    "tuple.2",
    "point.x",
    "(*point).y",
    "point.x + point.y",
    "array[2]",
    "array[0] + array[3]",
    "boxed.x",
    "count > 2",
    "count == 3 && flag",
    "name",
    "slice_of_str",
    "shadowed",
    "*raw",
    "creds.retries",
    "unit",
    "some",
    "none",
    "ok",
    "level",
    "rect",
    "circle",
    "nothing",
    "rust_values::GLOBAL_COUNTER",
    "rust_values::MUTABLE_COUNTER",
];

/// Spelling differences that are not disagreements: gdb qualifies enum
/// variants with their type path, prints `{radius: 1.5}` without spaces,
/// shows a char as its code and escape, and 1.0 as 1.
fn normalise(text: &str) -> String {
    let text = text.trim();
    if let Some((code, _)) = text.split_once(" '")
        && let Ok(code) = code.parse::<u32>()
        && let Some(c) = char::from_u32(code)
    {
        return format!("'{c}'");
    }
    let mut text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let variant_start = text.find(['(', '{']).unwrap_or(text.len());
    if let Some(path_end) = text[..variant_start].rfind("::") {
        text = text[path_end + 2..].to_string();
    }
    if let Some(whole) = text.strip_suffix(".0")
        && whole.parse::<i64>().is_ok()
    {
        return whole.to_string();
    }
    if let Ok(number) = text.parse::<f64>()
        && text.contains('.')
    {
        return liveprobe::value::format_float(number);
    }
    text
}

#[test]
fn rust_evaluate_agrees_with_gdb() {
    use liveprobe::eval::{compile, evaluate};
    let exe = build("rust_values.rs", "rust_values", &["-C", "opt-level=0"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let limits = Limits::default();
    let redaction = Redaction::default_list();
    let mut ours = Vec::new();
    for expression in RUST_EXPRESSIONS {
        let compiled = compile(expression, &ctx).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let value = evaluate(&compiled, &ctx, &limits, &redaction);
        assert!(value.unavailable.is_none(), "{expression}: {value:?}");
        ours.push(value);
    }
    stopped.detach();
    let theirs = support::gdb_print(fixture.pid, "rust_values::inspect_here", RUST_EXPRESSIONS);
    let mut mismatches = Vec::new();
    for ((expression, value), gdb) in RUST_EXPRESSIONS.iter().zip(&ours).zip(&theirs) {
        let (a, b) = (normalise(&value.value), normalise(gdb));
        if a != b {
            mismatches.push(format!("{expression}: liveprobe {a:?} gdb {b:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "disagreements with gdb:\n{}",
        mismatches.join("\n")
    );
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
}
