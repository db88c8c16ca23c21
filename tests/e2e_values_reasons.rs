//! Why a value is missing, over a real MCP session: debug info that cannot
//! be read is said as such (`unreadable location list: …`), not as
//! something liveprobe does not support, and the values it does not affect
//! still read right. The program is the -O2 values fixture with its
//! `.debug_loclists` overwritten: the same code, a broken description.

mod common;

use common::*;
use serde_json::{Value, json};

fn frame_index(stack: &Value, function: &str) -> u64 {
    stack["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == function)
        .unwrap_or_else(|| panic!("{function} not on the stack: {stack}"))["index"]
        .as_u64()
        .expect("index")
}

/// `exe` copied to `to` with every entry of its `.debug_loclists` made an
/// unknown entry kind (0xff), past the section's 12-byte header.
fn with_unreadable_location_lists(exe: &std::path::Path, to: &std::path::Path) {
    use object::{Object, ObjectSection};
    let mut bytes = std::fs::read(exe).expect("read the fixture");
    let range = {
        let file = object::File::parse(&*bytes).expect("parse the fixture");
        let section = file
            .section_by_name(".debug_loclists")
            .expect("gcc 12 writes DWARF 5 location lists at -O2");
        let (start, len) = section.file_range().expect("in the file");
        start as usize..(start + len) as usize
    };
    assert!(range.len() > 12, "{range:?}");
    bytes[range.start + 12..range.end].fill(0xff);
    std::fs::copy(exe, to).expect("copy the fixture (mode included)");
    std::fs::write(to, &bytes).expect("write the broken fixture");
}

#[test]
fn unreadable_location_lists_are_unreadable_debug_info() {
    let exe = build_fixture("values/c_optimized.c", "reasons_c_optimized_O2", &["-O2"]);
    let broken = exe.with_file_name("reasons_c_optimized_O2_broken_loclists");
    with_unreadable_location_lists(&exe, &broken);
    let mut fx = Fixture::start(&broken);
    let pid = fx.pid;
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": pid})).ok();
    let stack = c.call("stack_trace", json!({"pid": pid})).ok();
    let frame = frame_index(&stack, "compute");
    let locals = c
        .call("read_locals", json!({"pid": pid, "frame": frame}))
        .ok();
    let variables = locals["variables"].as_array().expect("variables");
    let reasons: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["unavailable"].as_str())
        .collect();
    let unreadable: Vec<&&str> = reasons
        .iter()
        .filter(|r| r.starts_with("unreadable location list: "))
        .collect();
    assert!(!unreadable.is_empty(), "{locals}");
    assert!(
        !reasons
            .iter()
            .any(|r| r.starts_with("unsupported: unreadable")),
        "unreadable debug info is not 'unsupported': {locals}"
    );
    // The summary says the same reason as `unavailable`.
    for v in variables {
        if let Some(reason) = v["unavailable"].as_str() {
            assert_eq!(v["value"], format!("<{reason}>"), "{v}");
        }
    }
    // An expression over such a local says the same reason.
    let sum = c
        .call(
            "evaluate",
            json!({"pid": pid, "frame": frame, "expression": "a + b"}),
        )
        .ok();
    assert!(
        sum["value"]["unavailable"]
            .as_str()
            .is_some_and(|r| r.starts_with("unreadable location list: ")),
        "{sum}"
    );
    // What the debug info still describes reads right: a global's address
    // is no location list.
    let sink = c
        .call("evaluate", json!({"pid": pid, "expression": "sink"}))
        .ok();
    assert_eq!(sink["value"]["value"], "0", "{sink}");
    c.call("detach", json!({"pid": pid})).ok();
    let last = fx.finish();
    assert_eq!(last.trim(), "done 81 13 42", "the program is undisturbed");
}
