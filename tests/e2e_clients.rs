//! Client compatibility: the official Python MCP SDK (2.x) and the MCP
//! Inspector CLI drive the real binary unmodified. `tools/test.sh` installs
//! both; run it, or `pip install 'mcp>=2,<3'` and
//! `npm install -g @modelcontextprotocol/inspector`, before `cargo test`.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn python_sdk_client_lists_attaches_and_reads_stacks() {
    let exe = build_fixture("e2e/threads.c", "e2e_threads", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_sdk.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_liveprobe"))
        .arg(fx.pid.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python SDK client failed (is `mcp` 2.x installed? tools/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("client printed JSON");
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"attach") && tools.contains(&"stack_trace"),
        "{tools:?}"
    );
    assert_eq!(seen["threads"], 4);
    let functions: Vec<&str> = seen["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        functions.contains(&"worker_idle") && functions.contains(&"main"),
        "{functions:?}"
    );
    assert_eq!(seen["bad_pid_is_error"], true);
    assert_eq!(seen["detached"], fx.pid);
    assert_eq!(tracer_pid(fx.pid), 0);
    fx.send("run 1");
    fx.expect_line("checksum");
}

#[test]
fn mcp_inspector_cli_lists_tools_and_calls_one() {
    let inspector = ["mcp-inspector", "/usr/local/bin/mcp-inspector"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--help").output().is_ok())
        .expect("the MCP Inspector CLI is not installed: run tools/test.sh, or npm install -g @modelcontextprotocol/inspector");
    let out = std::process::Command::new(inspector)
        .args([
            "--cli",
            env!("CARGO_BIN_EXE_liveprobe"),
            "--method",
            "tools/list",
        ])
        .output()
        .expect("run inspector");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("inspector printed JSON");
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"list_threads"), "{names:?}");

    let out = std::process::Command::new(inspector)
        .args([
            "--cli",
            env!("CARGO_BIN_EXE_liveprobe"),
            "--method",
            "tools/call",
            "--tool-name",
            "list_processes",
            "--tool-arg",
            "query=init",
        ])
        .output()
        .expect("run inspector");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let called: Value = serde_json::from_slice(&out.stdout).expect("inspector printed JSON");
    assert!(
        called["structuredContent"]["processes"].is_array(),
        "{called}"
    );
}
