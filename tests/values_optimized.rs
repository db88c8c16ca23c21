//! Values of a C program built at -O2, read from a live process stopped with
//! real ptrace: location lists, registers of caller frames, an inlined
//! frame, entry values recovered from the caller's call site, and values the
//! compiler dropped reported as such — never a wrong number.

#[path = "fixtures/values/support.rs"]
mod support;

use liveprobe::eval::{compile, evaluate, read_locals};
use liveprobe::value::{Limits, Redaction, Unavailable, Value};
use support::{Fixture, Stopped, build};

/// The true values at the stop (main passes a = 6, b = 7).
const TRUTH: &[(&str, &str)] = &[
    ("a", "6"),
    ("b", "7"),
    ("sum", "13"),
    ("product", "42"),
    ("value", "13"),
    ("factor", "3"),
    ("scaled", "39"),
];

fn check_honest(values: &[Value]) {
    for value in values {
        let Some((_, truth)) = TRUTH.iter().find(|(name, _)| *name == value.name) else {
            continue;
        };
        match &value.unavailable {
            Some(reason) => assert!(
                matches!(
                    reason,
                    Unavailable::OptimizedOut { .. } | Unavailable::Unsupported { .. }
                ),
                "{}: unexpected reason {reason}",
                value.name
            ),
            None => assert_eq!(&value.value, truth, "{} is wrong", value.name),
        }
    }
}

#[test]
fn optimized_values_are_right_or_reported_missing() {
    let exe = build("c_optimized.c", "c_optimized_O2", &["-O2"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let limits = Limits::default();
    let redaction = Redaction::default_list();

    // The inlined helper is a frame of its own, at the same pc as compute.
    let scale = stopped.frame("scale");
    let compute = stopped.frame("compute");
    assert_eq!(scale.pc, compute.pc);
    assert_eq!(scale.inline_depth + 1, compute.inline_depth);

    let inlined =
        read_locals(&stopped.context("scale"), &limits, &redaction).expect("read_locals(scale)");
    let outer = read_locals(&stopped.context("compute"), &limits, &redaction)
        .expect("read_locals(compute)");
    let text: Vec<String> = inlined.iter().chain(&outer).map(Value::to_text).collect();
    eprintln!("{}", text.join("\n"));
    check_honest(&inlined);
    check_honest(&outer);
    let names: Vec<&str> = inlined.iter().map(|v| v.name.as_str()).collect();
    assert!(
        names.contains(&"value") && names.contains(&"factor"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"a"),
        "the inlined frame must not show compute's arguments: {names:?}"
    );

    // a and b are dead in registers after the call; their values come from
    // main's call site (DW_OP_entry_value).
    let find = |name: &str| {
        outer
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(find("a").value, "6", "{:?}", find("a"));
    assert_eq!(find("b").value, "7", "{:?}", find("b"));
    assert_eq!(find("product").value, "42");

    // Expressions over optimized locals work the same way.
    let ctx = stopped.context("compute");
    let sum = evaluate(
        &compile("a * 10 + b", &ctx).expect("compile"),
        &ctx,
        &limits,
        &redaction,
    );
    assert_eq!(sum.value, "67", "{sum:?}");
    let through = evaluate(
        &compile("out->left", &ctx).expect("compile"),
        &ctx,
        &limits,
        &redaction,
    );
    assert!(through.unavailable.is_some() || through.value == "0" || !through.value.is_empty());

    stopped.detach();
    let last = fixture.finish();
    assert_eq!(last.trim(), "done 81 13 42");
}

#[test]
fn rust_release_build_is_honest() {
    let exe = build("rust_values.rs", "rust_values_O2", &["-C", "opt-level=2"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let values =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let truth = [
        ("count", "3"),
        ("small", "200"),
        ("negative", "-5"),
        ("flag", "true"),
        ("name", "\"fixture\""),
        ("text", "\"hello\""),
        ("unit", "()"),
        ("some", "Some(5)"),
        ("ok", "Ok(1)"),
        ("rect", "Rect(2, 3)"),
        ("cell", "12"),
    ];
    for (name, expected) in truth {
        let Some(value) = values.iter().find(|v| v.name == name) else {
            continue;
        };
        match &value.unavailable {
            Some(reason) => assert!(
                matches!(reason, Unavailable::OptimizedOut { .. }),
                "{name}: {reason}"
            ),
            None => assert_eq!(value.value, expected, "{name} is wrong"),
        }
    }
    for secret in ["password", "creds"] {
        let value = values.iter().find(|v| v.name == secret).expect(secret);
        assert!(
            !value.to_text().contains("hunter2") && !value.to_text().contains("sk-secret"),
            "{secret}"
        );
    }
    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
}
