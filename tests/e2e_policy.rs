//! The attach policy, observe-only and the audit log, driven over a real
//! MCP stdio session of the real `liveprobe` binary, against fixtures run
//! as root (liveprobe's own user in the tests) and, through `setpriv`, as
//! user `nobody`.

mod common;

use common::*;
use serde_json::{Value, json};

const NOBODY: u32 = 65534;

fn guarded() -> std::path::PathBuf {
    build_fixture("policy/guarded.c", "policy_guarded", &["-O0"])
}

/// The fixture as user nobody: setpriv execs it, so the pid is the same.
fn start_as_nobody(exe: &std::path::Path) -> Fixture {
    let exe = exe.display().to_string();
    Launch::new(std::path::Path::new("/usr/bin/setpriv"))
        .args(&[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            &exe,
        ])
        .start()
}

fn uid_of(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("Uid line")
}

fn row_of(c: &mut McpClient, pid: i32) -> Value {
    let list = c
        .call("list_processes", json!({"query": pid.to_string()}))
        .ok();
    list["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == json!(pid))
        .unwrap_or_else(|| panic!("{pid} not listed: {list}"))
        .clone()
}

fn write_policy(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).expect("write policy");
    path.display().to_string()
}

fn tick_line() -> String {
    let text = std::fs::read_to_string(fixture_src("policy/guarded.c")).expect("source");
    let line = text
        .lines()
        .position(|l| l.contains("counter += step;"))
        .expect("tick body")
        + 1;
    format!("guarded.c:{line}")
}

#[test]
fn by_default_only_processes_of_liveprobes_own_user_are_attachable() {
    let exe = guarded();
    let mut other = start_as_nobody(&exe);
    assert_eq!(uid_of(other.pid), NOBODY);
    let mut own = Fixture::start(&exe);
    assert_eq!(uid_of(own.pid), 0, "the tests run liveprobe as root");
    let mut c = McpClient::start();

    let row = row_of(&mut c, other.pid);
    assert_eq!(row["attachable"], false, "{row}");
    let reason = row["reason"].as_str().expect("reason");
    assert!(
        reason.contains("own user") && reason.contains("--allow-uid 65534"),
        "{reason}"
    );

    let refused = c.call("attach", json!({"pid": other.pid})).err();
    assert!(
        refused.contains("refused by rule") && refused.contains("own user"),
        "{refused}"
    );
    // A refused attach leaves the process untouched.
    assert_eq!(tracer_pid(other.pid), 0);
    other.send("tick");
    assert_eq!(other.expect_line("ticked"), "ticked 42");

    assert_eq!(row_of(&mut c, own.pid)["attachable"], true);
    c.call("attach", json!({"pid": own.pid})).ok();
    assert!(tracer_pid(own.pid) > 0);
    own.send("tick");
    own.expect_line("ticked");
}

#[test]
fn liveprobe_never_attaches_itself_nor_its_parent() {
    let mut c = McpClient::start();
    let itself = c.child.id() as i32;
    let row = row_of(&mut c, itself);
    assert_eq!(row["attachable"], false, "{row}");
    assert!(
        row["reason"].as_str().is_some_and(|r| r.contains("itself")),
        "{row}"
    );
    let refused = c.call("attach", json!({"pid": itself})).err();
    assert!(refused.contains("never liveprobe itself"), "{refused}");
    // Even an explicit allow rule does not open it; the parent is this test.
    drop(c);
    let parent = std::process::id() as i32;
    let mut c = McpClient::start_with_args(&["--allow-pid", &parent.to_string()]);
    let refused = c.call("attach", json!({"pid": parent})).err();
    assert!(refused.contains("never liveprobe's parent"), "{refused}");
    assert_eq!(tracer_pid(parent), 0);
}

#[test]
fn allow_and_deny_flags_decide_and_name_their_rule() {
    let exe = guarded();
    let denied_exe = build_fixture("policy/guarded.c", "policy_denied", &["-O0"]);
    let allowed = start_as_nobody(&exe);
    let denied = start_as_nobody(&denied_exe);
    let own = Fixture::start(&exe);
    let mut c =
        McpClient::start_with_args(&["--allow-uid", "65534", "--deny-exe", "*/policy_denied*"]);

    c.call("attach", json!({"pid": allowed.pid})).ok();
    assert!(tracer_pid(allowed.pid) > 0);

    let refused = c.call("attach", json!({"pid": denied.pid})).err();
    assert!(refused.contains("--deny-exe */policy_denied*"), "{refused}");
    assert_eq!(tracer_pid(denied.pid), 0);
    assert_eq!(row_of(&mut c, denied.pid)["attachable"], false);

    // An allow rule replaces the default: root's own process is not listed.
    let refused = c.call("attach", json!({"pid": own.pid})).err();
    assert!(
        refused.contains("allow list") && refused.contains("--allow-uid 65534"),
        "{refused}"
    );
    assert_eq!(tracer_pid(own.pid), 0);
}

#[test]
fn allow_exe_without_glob_characters_still_matches_a_substring() {
    let exe = guarded();
    let other_exe = build_fixture("policy/guarded.c", "policy_other", &["-O0"]);
    let by_name = start_as_nobody(&exe);
    let other = Fixture::start(&other_exe);
    let mut c = McpClient::start_with_args(&["--allow-exe", "policy_guarded"]);
    c.call("attach", json!({"pid": by_name.pid})).ok();
    let refused = c.call("attach", json!({"pid": other.pid})).err();
    assert!(refused.contains("--allow-exe policy_guarded"), "{refused}");
    assert_eq!(tracer_pid(other.pid), 0);
    // The same name as a glob must match the whole path.
    drop(c);
    let mut c = McpClient::start_with_args(&["--allow-exe", "policy_guarded*"]);
    let refused = c.call("attach", json!({"pid": by_name.pid})).err();
    assert!(refused.contains("allow list"), "{refused}");
}

#[test]
fn a_policy_file_limits_tools_per_rule_and_names_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(
        &dir,
        "# readers may look, never patch\n[[allow]]\nname = \"nobody readers\"\nuid = 65534\ntools = [\"read\"]\n\n[[allow]]\nname = \"own\"\nuid = \"self\"\ndeny_tools = [\"set_metric\"]\n",
    );
    let exe = guarded();
    let mut reader = start_as_nobody(&exe);
    let own = Fixture::start(&exe);
    let mut c = McpClient::start_with_args(&["--policy", &policy]);

    c.call("attach", json!({"pid": reader.pid})).ok();
    let value = c
        .call(
            "evaluate",
            json!({"pid": reader.pid, "expression": "counter", "globals_only": true}),
        )
        .ok();
    assert!(value.to_string().contains("41"), "{value}");
    c.call("stack_trace", json!({"pid": reader.pid})).ok();
    let refused = c
        .call(
            "set_logpoint",
            json!({"pid": reader.pid, "location": tick_line(), "message": "n={counter}"}),
        )
        .err();
    assert!(
        refused.contains("\"nobody readers\"") && refused.contains("policy.toml line 2"),
        "{refused}"
    );
    assert!(
        c.call("list_probes", json!({})).ok()["probes"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    );
    reader.send("tick");
    assert_eq!(reader.expect_line("ticked"), "ticked 42");

    c.call("attach", json!({"pid": own.pid})).ok();
    let refused = c
        .call(
            "set_metric",
            json!({"pid": own.pid, "location": tick_line(), "kind": "count"}),
        )
        .err();
    assert!(
        refused.contains("\"own\"") && refused.contains("set_metric"),
        "{refused}"
    );
    let probe = c
        .call(
            "set_logpoint",
            json!({"pid": own.pid, "location": tick_line(), "message": "n={counter}"}),
        )
        .ok();
    assert!(probe["probe_id"].as_u64().is_some(), "{probe}");
}

#[test]
fn a_malformed_policy_file_stops_start_up_with_line_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, expected) in [
        (
            "[[allow]]\nuid = 1000\nexe_path = \"x\"\n",
            ":3: unknown field `exe_path`",
        ),
        (
            "[[allow]]\nuid = 1000\ntools = [\"read\", \"set_snapshott\"]\n",
            ":3: \"set_snapshott\" is not a tool",
        ),
        (
            "\n[[deny]]\nname = \"nothing\"\n",
            ":2: this [[deny]] rule matches nothing",
        ),
        ("observe_only = yes\n", ":1:"),
    ] {
        let policy = write_policy(&dir, text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
            .args(["--policy", &policy])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run liveprobe");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(
            stderr.contains(&format!("{policy}{expected}")),
            "{text:?}: {stderr}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .args(["--allow-uid", "nobody"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run liveprobe");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a uid"));
}

fn assert_observe_only(c: &mut McpClient, fx: &mut Fixture, origin: &str) {
    c.call("attach", json!({"pid": fx.pid})).ok();
    for (tool, args) in [
        (
            "set_snapshot",
            json!({"pid": fx.pid, "location": tick_line()}),
        ),
        (
            "set_logpoint",
            json!({"pid": fx.pid, "location": tick_line(), "message": "x"}),
        ),
        (
            "set_metric",
            json!({"pid": fx.pid, "location": tick_line(), "kind": "count"}),
        ),
    ] {
        let refused = c.call(tool, args).err();
        assert!(
            refused.contains("observe-only") && refused.contains(origin),
            "{refused}"
        );
    }
    assert!(
        c.call("list_probes", json!({})).ok()["probes"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    );
    let value = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "expression": "counter + 1", "globals_only": true}),
        )
        .ok();
    assert!(value.to_string().contains("42"), "{value}");
    c.call("read_locals", json!({"pid": fx.pid})).ok();
    c.call("stack_trace", json!({"pid": fx.pid})).ok();
    c.call(
        "resolve_location",
        json!({"pid": fx.pid, "location": tick_line()}),
    )
    .ok();
    // Nothing was written into the code: the tick runs as before.
    fx.send("tick");
    assert_eq!(fx.expect_line("ticked"), "ticked 42");
}

#[test]
fn observe_only_refuses_probes_and_allows_reads() {
    let mut fx = Fixture::start(&guarded());
    let mut c = McpClient::start_with_args(&["--observe-only"]);
    assert_observe_only(&mut c, &mut fx, "--observe-only");
}

#[test]
fn observe_only_is_also_a_policy_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let global = write_policy(&dir, "observe_only = true\n");
    let mut fx = Fixture::start(&guarded());
    let mut c = McpClient::start_with_args(&["--policy", &global]);
    assert_observe_only(&mut c, &mut fx, "observe_only = true");
    drop(c);
    drop(fx);
    let per_rule = write_policy(
        &dir,
        "[[allow]]\nname = \"watch only\"\nuid = \"self\"\nobserve_only = true\n",
    );
    let mut fx = Fixture::start(&guarded());
    let mut c = McpClient::start_with_args(&["--policy", &per_rule]);
    assert_observe_only(&mut c, &mut fx, "\"watch only\"");
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (up to a minute, for a loaded machine) until the audit log at
/// `path` has a line `matching`.
fn wait_for_audit_line(path: &std::path::Path, matching: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if audit_lines(path).iter().any(&matching) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "no such line in the audit log:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[test]
fn the_audit_log_has_every_call_and_every_probe_state_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let mut fx = Fixture::start(&guarded());
    let mut c = McpClient::start_with_args(&["--audit-log", &log.display().to_string()]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    // A secret-named argument (an unknown one: the call fails) is audited
    // redacted.
    c.call(
        "list_threads",
        json!({"pid": fx.pid, "password": "hunter2-in-an-argument"}),
    );
    let probe = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": tick_line(), "message": "n={counter}", "max_hits": 1}),
        )
        .ok();
    let id = probe["probe_id"].as_u64().expect("probe_id");
    fx.send("tick");
    fx.expect_line("ticked");
    // The hit ends the probe (max_hits 1): a state change no call made,
    // audited from the engine's announcement before any other call.
    wait_for_audit_line(&log, |l| {
        l["event"] == "probe_state" && l["state"] == "done"
    });
    let results = c
        .call(
            "get_probe_results",
            json!({"probe_id": id, "wait_ms": 10000}),
        )
        .ok();
    assert_eq!(results["state"], "done", "{results}");
    // Reading the results as a resource is audited like a tool call, and
    // so is a read of a resource that does not exist.
    let uri = format!("probe://{id}/results");
    let read = c.request("resources/read", json!({"uri": uri}));
    assert!(read.get("result").is_some(), "{read}");
    let missing = c.request("resources/read", json!({"uri": "probe://999999/results"}));
    assert!(missing.get("error").is_some(), "{missing}");
    c.call("remove_probe", json!({"probe_id": id})).ok();
    assert_eq!(c.shutdown(), Some(0));

    let text = std::fs::read_to_string(&log).expect("audit log");
    assert!(!text.contains("hunter2"), "{text}");
    let lines = audit_lines(&log);
    let calls: Vec<&Value> = lines.iter().filter(|l| l["event"] == "tool_call").collect();
    let results: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "tool_result")
        .collect();
    let tools: Vec<&str> = results.iter().filter_map(|l| l["tool"].as_str()).collect();
    assert_eq!(
        tools,
        [
            "attach",
            "list_threads",
            "set_logpoint",
            "get_probe_results",
            "remove_probe"
        ],
        "{text}"
    );
    assert_eq!(calls.len(), results.len(), "{text}");
    for l in &results {
        assert_eq!(l["client"]["name"], "liveprobe-tests", "{l}");
        assert_eq!(l["transport"], "stdio", "{l}");
        assert!(l["session"].as_str().is_some_and(|s| !s.is_empty()), "{l}");
        assert!(l["time_unix_ms"].as_u64().is_some(), "{l}");
    }
    assert_eq!(results[0]["arguments"]["pid"], json!(fx.pid));
    assert_eq!(results[0]["outcome"], "ok");
    assert_eq!(results[1]["arguments"]["password"], "<redacted>");
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "probe_state" && l["probe_id"] == json!(id))
        .filter_map(|l| l["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"armed"), "{text}");
    assert!(states.contains(&"done"), "{text}");
    let reads: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "resource_read")
        .collect();
    assert_eq!(reads.len(), 2, "{text}");
    assert_eq!(reads[0]["uri"], json!(uri), "{text}");
    assert_eq!(reads[0]["outcome"], "ok", "{text}");
    assert_eq!(reads[0]["client"]["name"], "liveprobe-tests", "{text}");
    assert_eq!(reads[1]["outcome"], "error", "{text}");
    assert!(
        reads[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("999999")),
        "{text}"
    );
}

#[test]
fn a_call_that_cannot_be_audited_is_refused_and_leaves_the_target_untouched() {
    let fx = Fixture::start(&guarded());
    let mut c = McpClient::start_with_args(&["--audit-log", "/dev/full"]);
    let refused = c.call("attach", json!({"pid": fx.pid})).err();
    assert!(
        refused.contains("did not run attach") && refused.contains("No call runs unaudited"),
        "{refused}"
    );
    assert_eq!(tracer_pid(fx.pid), 0);
    // A log that cannot even be opened stops start-up.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .args(["--audit-log", "/nonexistent-dir/audit.jsonl"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run liveprobe");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot write to the audit log /nonexistent-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of every manifest, as JSON (PyYAML comes with
/// kubernetes-validate).
fn manifests() -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import glob, json, sys, yaml\n\
             docs = [d for f in sorted(glob.glob(sys.argv[1] + '/*.yaml'))\n\
                     for d in yaml.safe_load_all(open(f)) if d]\n\
             print(json.dumps(docs))",
        ])
        .arg(deploy_dir().join("kubernetes"))
        .output()
        .expect("run python3 (tools/test.sh installs PyYAML with kubernetes-validate)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("manifests as JSON")
}

#[test]
fn kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let files: Vec<String> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate (tools/test.sh installs it from PyPI)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_daemonset_has_only_what_liveprobe_needs() {
    let docs = manifests();
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let mut added: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    added.sort();
    assert_eq!(added, ["BPF", "PERFMON", "SYS_PTRACE"]);
    // The token comes from a Secret, never from the manifest.
    let token = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "LIVEPROBE_TOKEN")
        .expect("LIVEPROBE_TOKEN");
    assert!(token.get("value").is_none(), "{token}");
    assert!(token["valueFrom"]["secretKeyRef"]["name"].is_string());
    // The entry point is the image's liveprobe binary.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let entry = c["command"][0].as_str().expect("command");
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [\"{entry}\"]")),
        "the DaemonSet runs {entry}, the Dockerfile another entry point"
    );
    assert!(dockerfile.contains(&format!("COPY --from=build /liveprobe {entry}")));
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for flag in ["--http", "--allow-remote", "--policy", "--audit-log"] {
        assert!(args.contains(&flag), "{flag} missing from {args:?}");
    }
    // The policy file it loads is the ConfigMap's, mounted where --policy
    // points.
    let policy_arg = args[args
        .iter()
        .position(|a| *a == "--policy")
        .expect("--policy")
        + 1];
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| policy_arg.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .expect("a mount holding the policy file");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the policy volume");
    let configmap = volume["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap volume");
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == configmap)
    );
}

/// The DaemonSet's own arguments start liveprobe serving HTTP, with its
/// environment expanded as the kubelet does and its files where it mounts
/// them (here: temporary ones), on a loopback port instead of 7777.
#[test]
fn the_daemonsets_arguments_start_liveprobe() {
    let docs = manifests();
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["policy.toml"].as_str())
        .expect("a ConfigMap with policy.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy).expect("write policy");
    let audit_path = dir.path().join("audit.jsonl");
    let mut args: Vec<String> = Vec::new();
    let given: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut i = 0;
    while i < given.len() {
        let flag = given[i];
        args.push(flag.to_string());
        let value = given.get(i + 1).copied();
        match (flag, value) {
            ("--http", Some(_)) => args.push("127.0.0.1:0".into()),
            ("--policy", Some(_)) => args.push(policy_path.display().to_string()),
            ("--audit-log", Some(_)) => args.push(audit_path.display().to_string()),
            (_, Some(v)) if !v.starts_with("--") => args.push(v.replace("$(POD_IP)", "10.1.2.3")),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .args(&args)
        .env("LIVEPROBE_TOKEN", "k8s-secret-token-of-forty-characters-xx")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start liveprobe");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving MCP on http://127.0.0.1:") {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("wait");
    assert!(
        seen.contains("serving MCP on http://127.0.0.1:"),
        "liveprobe did not start with the DaemonSet's arguments {args:?} ({status}):\n{seen}"
    );
}

#[test]
fn the_policy_in_the_configmap_is_one_liveprobe_loads() {
    let docs = manifests();
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["policy.toml"].as_str())
        .expect("a ConfigMap with policy.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(&dir, policy);
    // Loaded at start-up: the session starts and lists tools.
    let mut c = McpClient::start_with_args(&["--policy", &path]);
    let own = Fixture::start(&guarded());
    // The shipped policy allows uid 1000 only: root's process is refused.
    let refused = c.call("attach", json!({"pid": own.pid})).err();
    assert!(refused.contains("allow list"), "{refused}");
    assert_eq!(c.shutdown(), Some(0));
}

#[test]
fn calls_refused_by_policy_are_audited_as_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let fx = Fixture::start(&guarded());
    let other = start_as_nobody(&guarded());
    let mut c =
        McpClient::start_with_args(&["--observe-only", "--audit-log", &log.display().to_string()]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    c.call(
        "set_snapshot",
        json!({"pid": fx.pid, "location": tick_line()}),
    )
    .err();
    c.call("attach", json!({"pid": other.pid})).err();
    // A write watch is refused as set_watch is; a sampling one only reads.
    let refused = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write"}),
        )
        .err();
    assert!(
        refused.contains("watch_expression") && refused.contains("observe-only"),
        "{refused}"
    );
    let sampled = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "sample", "duration_s": 1}),
        )
        .ok();
    c.call("remove_probe", json!({"probe_id": sampled["probe_id"]}))
        .ok();
    assert_eq!(c.shutdown(), Some(0));
    let meta = std::fs::metadata(&log).expect("audit log");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let results: Vec<Value> = audit_lines(&log)
        .into_iter()
        .filter(|l| l["event"] == "tool_result")
        .collect();
    let outcomes: Vec<(&str, &str)> = results
        .iter()
        .map(|l| {
            (
                l["tool"].as_str().unwrap_or("?"),
                l["outcome"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("attach", "ok"),
            ("set_snapshot", "refused"),
            ("attach", "refused"),
            ("watch_expression", "refused"),
            ("watch_expression", "ok"),
            ("remove_probe", "ok")
        ],
        "{results:?}"
    );
    assert!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("observe-only"))
    );
    assert!(
        results[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("own user"))
    );
}

/// A minimal MCP stdio client for a liveprobe run as another user
/// (`McpClient` starts the binary itself, as root).
struct ClientAs {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    next_id: u64,
}

impl ClientAs {
    fn start(uid: u32) -> ClientAs {
        use std::io::BufRead;
        let mut child = std::process::Command::new("/usr/bin/setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .args(["--clear-groups", "--", env!("CARGO_BIN_EXE_liveprobe")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start liveprobe through setpriv");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut c = ClientAs {
            child,
            stdin,
            lines,
            next_id: 1,
        };
        let init = c.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "liveprobe-tests-as-user", "version": "0"}}),
        );
        assert!(init.get("result").is_some(), "{init}");
        c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized", "params": {}}));
        c
    }

    fn send(&mut self, msg: &Value) {
        use std::io::Write;
        writeln!(self.stdin, "{msg}").expect("write to liveprobe");
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("an answer from liveprobe");
            let msg: Value = serde_json::from_str(&line).expect("JSON-RPC line");
            if msg["id"] == json!(id) {
                return msg;
            }
        }
    }

    /// (is_error, text) of a tool call.
    fn call(&mut self, tool: &str, args: Value) -> (bool, String, Value) {
        let resp = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let result = &resp["result"];
        let text = result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (
            result["isError"].as_bool().unwrap_or(false),
            text,
            result["structuredContent"].clone(),
        )
    }
}

impl Drop for ClientAs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_liveprobe_run_as_another_user_attaches_that_users_processes_only() {
    let exe = guarded();
    let mut same_user = start_as_nobody(&exe);
    let root_owned = Fixture::start(&exe);
    let mut c = ClientAs::start(NOBODY);

    let (failed, text, _) = c.call("attach", json!({"pid": root_owned.pid}));
    assert!(failed, "{text}");
    assert!(
        text.contains("own user") && text.contains("runs as uid 0 and liveprobe as uid 65534"),
        "{text}"
    );
    assert_eq!(tracer_pid(root_owned.pid), 0);

    let (failed, text, report) = c.call("attach", json!({"pid": same_user.pid}));
    assert!(!failed, "{text}");
    assert_eq!(report["pid"], json!(same_user.pid), "{report}");
    // TracerPid names liveprobe's tracer task: a process of its own that
    // liveprobe started (so that it outlives a SIGKILL of liveprobe).
    let tracer = tracer_pid(same_user.pid);
    let tracer_status =
        std::fs::read_to_string(format!("/proc/{tracer}/status")).expect("tracer status");
    assert!(
        tracer_status.contains(&format!("\nPPid:\t{}\n", c.child.id())),
        "traced by {tracer}, not by a task of liveprobe {}: {tracer_status}",
        c.child.id()
    );
    same_user.send("tick");
    assert_eq!(same_user.expect_line("ticked"), "ticked 42");
}
