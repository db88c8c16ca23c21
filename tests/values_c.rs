//! Values of a C program at -O0, read from a live process stopped with real
//! ptrace: read_locals and evaluate, checked against known values and gdb.

#[path = "fixtures/values/support.rs"]
mod support;

use liveprobe::eval::read_locals;
use liveprobe::value::{Limits, Redaction, Unavailable, Value};
use support::{Fixture, Stopped};

fn find<'a>(values: &'a [Value], name: &str) -> &'a Value {
    values.iter().find(|v| v.name == name).unwrap_or_else(|| {
        panic!(
            "no variable {name} in {:?}",
            values.iter().map(|v| &v.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn c_locals_at_o0() {
    let exe = support::build_many(
        &["c_values.c", "c_values_handle.c"],
        "c_values_O0",
        &["-O0"],
    );
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

/// Expressions evaluated by liveprobe and printed by gdb on the same stopped
/// fixture; liveprobe's value, normalised to gdb's spelling, must agree.
const C_EXPRESSIONS: &[&str] = &[
    "count",
    "count + 1",
    "count * 7 - 2",
    "-count",
    "count / 2",
    "count % 2",
    "count << 3",
    "p.x",
    "p.y",
    "p.x - p.y",
    "where->x",
    "where->y * 2",
    "(*where).x",
    "numbers[2]",
    "numbers[0] + numbers[3]",
    "first.next->value",
    "first.next->next->value",
    "second.next->value",
    "c",
    "fl.level",
    "fl.mode",
    "fl.ready",
    "f * 2",
    "d / 2",
    "s",
    "us",
    "l",
    "ull",
    "small_c",
    "byte",
    "negative_c",
    "global_counter",
    "global_counter * 2",
    "global_origin.y",
    "global_matrix[1][2]",
    "file_static",
    "calls",
    "ticks + 1",
    "acct.balance",
    "acct.home.x",
    "acct.tag",
    "sh.corners[1].y",
    "sh.fill",
    "sh.ratio",
    "inner_only",
    "shadow",
    "count > 2 && p.x == 1",
    "count < 2 || p.y < 0",
    "!yes",
    "(unsigned char)300",
    "(long)d",
    "sizeof(struct point)",
    "*to_global",
    "num.as_int",
    "num.as_float",
    "yes",
];

fn normalise_gdb(text: &str) -> String {
    let text = strip_char(text.trim());
    // gdb prints doubles with up to 17 significant digits; liveprobe prints
    // the shortest text that reads back to the same number.
    if let Ok(number) = text.parse::<f64>()
        && text.contains('.')
    {
        return liveprobe::value::format_float(number);
    }
    text.to_string()
}

/// `97 'a'` → `97`: gdb shows a number cast to a char type with its
/// character, liveprobe shows it for char-typed variables; compare numbers.
fn strip_char(text: &str) -> &str {
    match text.split_once(" '") {
        Some((number, character)) if character.ends_with('\'') && number.parse::<i64>().is_ok() => {
            number
        }
        _ => text,
    }
}

fn normalise_liveprobe(value: &Value) -> String {
    let text = strip_char(value.value.trim());
    // C comparisons give int: gdb prints them as 1 and 0 (a `_Bool`
    // variable it prints as true/false, as liveprobe does).
    if value.type_name == "bool" {
        match text {
            "true" => return "1".to_string(),
            "false" => return "0".to_string(),
            _ => {}
        }
    }
    if let Some(stripped) = text.strip_suffix(".0")
        && stripped.parse::<i64>().is_ok()
    {
        // gdb prints 3.0 as 3.
        return stripped.to_string();
    }
    text.to_string()
}

#[test]
fn c_evaluate_agrees_with_gdb() {
    use liveprobe::eval::{compile, evaluate};
    let exe = support::build_many(
        &["c_values.c", "c_values_handle.c"],
        "c_values_O0",
        &["-O0"],
    );
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let limits = Limits::default();
    let redaction = Redaction::default_list();
    let mut ours = Vec::new();
    for expression in C_EXPRESSIONS {
        let compiled = compile(expression, &ctx).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let value = evaluate(&compiled, &ctx, &limits, &redaction);
        assert!(value.unavailable.is_none(), "{expression}: {value:?}");
        ours.push(value);
    }
    stopped.detach();
    let theirs = support::gdb_print(fixture.pid, "inspect_here", C_EXPRESSIONS);
    let mut mismatches = Vec::new();
    for ((expression, value), gdb) in C_EXPRESSIONS.iter().zip(&ours).zip(&theirs) {
        let (a, b) = (normalise_liveprobe(value), normalise_gdb(gdb));
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

#[test]
fn c_globals_without_a_stopped_thread_and_thread_locals() {
    use liveprobe::debuginfo::ProcessImage;
    use liveprobe::eval::{compile, compile_global, evaluate, evaluate_global};
    let exe = support::build_many(
        &["c_values.c", "c_values_handle.c"],
        "c_values_O0",
        &["-O0"],
    );
    let mut fixture = Fixture::start(&exe);
    let limits = Limits::default();
    let redaction = Redaction::default_list();
    // No ptrace at all: globals are read live through process_vm_readv.
    let image = ProcessImage::load(fixture.pid).expect("load image");
    let memory = support::LiveMemory { pid: fixture.pid };
    let global = |expression: &str| {
        let compiled =
            compile_global(expression, &image).unwrap_or_else(|e| panic!("{expression}: {e}"));
        evaluate_global(&compiled, &image, &memory, &limits, &redaction)
    };
    assert_eq!(global("global_counter").value, "42");
    assert_eq!(global("global_counter * 2 + 1").value, "85");
    assert_eq!(global("global_origin.y").value, "4");
    assert_eq!(global("global_matrix[1][2]").value, "6");
    assert_eq!(global("file_static").value, "-7");
    assert!(
        global("global_greeting")
            .value
            .ends_with("\"hello, world\"")
    );
    assert_eq!(global("inspect_here::calls").value, "1");
    assert_eq!(global("len(global_greeting)").value, "12");
    assert_eq!(global("api_key").unavailable, Some(Unavailable::Redacted));
    let matrix = global("global_matrix");
    assert_eq!(
        matrix.to_text(),
        "global_matrix: int [2][3] = [[1, 2, 3], [4, 5, 6]]"
    );
    // A thread-local needs a thread: without one it says so.
    let tls = global("tls_counter");
    assert!(
        tls.unavailable
            .as_ref()
            .is_some_and(|r| r.to_string().contains("thread")),
        "{tls:?}"
    );
    match compile_global("count", &image) {
        Err(liveprobe::eval::EvalError::UnknownName { .. }) => {}
        other => panic!("a local is not a global: {other:?}"),
    }
    // With the thread stopped, the thread-local reads through fs_base.
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let tls = evaluate(
        &compile("tls_counter", &ctx).expect("compile"),
        &ctx,
        &limits,
        &redaction,
    );
    assert_eq!(tls.value, "11", "{tls:?}");
    // The pointee's type is only declared in this unit; its definition is
    // in c_values_handle.c.
    let opaque = evaluate(
        &compile("opaque", &ctx).expect("compile"),
        &ctx,
        &limits,
        &redaction,
    );
    let text = opaque.to_text();
    assert!(
        text.contains("<the_handle> {magic = 16962, tag = 0x") && text.ends_with("\"handle\"}"),
        "{text}"
    );
    let magic = evaluate(
        &compile("opaque->magic", &ctx).expect("compile"),
        &ctx,
        &limits,
        &redaction,
    );
    assert_eq!(magic.value, "16962");
    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
}
