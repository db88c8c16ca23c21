//! Values of a C++ program (-O0, libstdc++), read from a live process stopped
//! with real ptrace: libstdc++ printers, classes with bases, references;
//! expressions checked against gdb.

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
fn cpp_locals() {
    let exe = build("cpp_values.cpp", "cpp_values_O0", &["-O0", "-std=c++17"]);
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
    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
    let _ = find(&values, "count");
}

/// Expressions evaluated by liveprobe and printed by gdb on the same
/// stopped fixture.
const CPP_EXPRESSIONS: &[&str] = &[
    "count",
    "count + 1",
    "count_ref",
    "count_ref * 2",
    "widget_ref.price",
    "widget_ref.id",
    "widget_ptr->price",
    "widget_ptr->label",
    "(*widget_ptr).id",
    "status",
    "pair.first + pair.second",
    "session.retries",
    "session.active",
    "local_widget.price * 2",
    "as_base.id",
    "shop::global_total",
    "shop::Cache::instances",
    "short_text",
    "sizeof(pair)",
    "count > 1 && pair.second == 6",
    "local_widget.label",
    "session.user",
    "numbers[2]",
    "names[1]",
];

/// gdb spells references as `(int &) @0x…: 3` and qualifies enumerators.
fn normalise(text: &str) -> String {
    let mut text = text.trim();
    if text.starts_with('(')
        && let Some((_, rest)) = text.split_once(": ")
        && text.contains(") @0x")
    {
        text = rest;
    }
    if !text.starts_with('"')
        && let Some(path_end) = text.rfind("::")
    {
        return text[path_end + 2..].to_string();
    }
    text.to_string()
}

#[test]
fn cpp_evaluate_agrees_with_gdb() {
    use liveprobe::eval::{compile, evaluate};
    let exe = build("cpp_values.cpp", "cpp_values_O0", &["-O0", "-std=c++17"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let limits = Limits::default();
    let redaction = Redaction::default_list();
    let mut ours = Vec::new();
    for expression in CPP_EXPRESSIONS {
        let compiled = compile(expression, &ctx).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let value = evaluate(&compiled, &ctx, &limits, &redaction);
        assert!(value.unavailable.is_none(), "{expression}: {value:?}");
        ours.push(value);
    }
    stopped.detach();
    let theirs = support::gdb_print(fixture.pid, "inspect_here", CPP_EXPRESSIONS);
    let mut mismatches = Vec::new();
    for ((expression, value), gdb) in CPP_EXPRESSIONS.iter().zip(&ours).zip(&theirs) {
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
