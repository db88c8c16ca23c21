//! Helpers shared by the probe tests (tests/e2e_probes.rs, tests/e2e_engines.rs).

use serde_json::{Value, json};

use super::{McpClient, build_fixture, fixture_src};

/// The multi-threaded orders fixture.
pub fn orders() -> std::path::PathBuf {
    build_fixture("probes/orders.c", "probes_orders", &["-O0"])
}

/// The line of orders.c that contains `needle`.
pub fn line_of(needle: &str) -> u64 {
    let text = std::fs::read_to_string(fixture_src("probes/orders.c")).expect("source");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in orders.c"))
}

/// `get_probe_results` of probe `id` after `after`, waiting up to `wait_ms`.
/// With the largest byte budget: these tests count every result of one
/// call (paging within the default budget is tested in e2e_mcp_shape).
pub fn results(c: &mut McpClient, id: &Value, after: u64, wait_ms: u64) -> Value {
    c.call(
        "get_probe_results",
        json!({"probe_id": id, "after": after, "limit": 100, "wait_ms": wait_ms,
               "max_bytes": 1_048_576}),
    )
    .ok()
}

/// The list_probes row of probe `id`.
pub fn row_of(c: &mut McpClient, id: &Value) -> Value {
    let listed = c.call("list_probes", json!({})).ok();
    listed["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["probe_id"] == *id)
        .unwrap_or_else(|| panic!("probe {id} not listed: {listed}"))
        .clone()
}

/// The byte at `addr` in the target, read from /proc/PID/mem.
pub fn byte_at(pid: i32, addr: &str) -> u8 {
    use std::io::{Read, Seek, SeekFrom};
    let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).expect("hex address");
    let mut f = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    f.seek(SeekFrom::Start(addr)).expect("seek");
    let mut b = [0u8; 1];
    f.read_exact(&mut b).expect("read");
    b[0]
}
