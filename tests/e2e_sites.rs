//! The sites of a location as gdb chooses them, and exact counts: a line probe is armed once per innermost
//! block (not at every line-table row of the line), each site is labelled with its function, every hit says
//! which site it came from, and a count at a line run once per call counts once per call on both engines.
//! Resolved addresses are compared with gdb's `break`/`info breakpoints` (the test fails without gdb).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use liveprobe::debuginfo::{Module, ProcessImage};

/// A fixture build: source under tests/fixtures, output name, compiler flags.
struct Build {
    src: &'static str,
    out: &'static str,
    flags: &'static [&'static str],
}

const C_O0: Build = Build {
    src: "sites/sites.c",
    out: "sites_c_O0",
    flags: &["-O0"],
};
const C_O2: Build = Build {
    src: "sites/sites.c",
    out: "sites_c_O2",
    flags: &["-O2"],
};
const CPP_O0: Build = Build {
    src: "sites/sites.cpp",
    out: "sites_cpp_O0",
    flags: &["-O0"],
};
const CPP_O2: Build = Build {
    src: "sites/sites.cpp",
    out: "sites_cpp_O2",
    flags: &["-O2"],
};
const RUST_RELEASE: Build = Build {
    src: "sites/sites.rs",
    out: "sites_rs_release",
    flags: &["-C", "opt-level=3"],
};

fn build(b: &Build) -> PathBuf {
    build_fixture(b.src, b.out, b.flags)
}

/// The line of the source that carries the comment marker `@name`.
fn marker_line(src: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(fixture_src(src)).expect("read fixture source");
    let tag = format!("@{name}");
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.find(&tag).is_some_and(|i| {
                !l[i + tag.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "marker {tag} in {src}: {found:?}");
    found[0] as u32
}

/// gdb's breakpoint addresses (file addresses of a PIE not yet run) for `break <spec>` of every spec, in one
/// gdb run; a spec gdb refuses (a line past the end of the file) maps to an empty list.
fn gdb_sites(bin: &Path, specs: &[String]) -> Vec<Vec<u64>> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch"]);
    for (i, spec) in specs.iter().enumerate() {
        cmd.arg("-ex").arg(format!("echo @@spec {i}\\n"));
        cmd.arg("-ex").arg(format!("break {spec}"));
    }
    cmd.args(["-ex", "echo @@table\\n", "-ex", "info breakpoints"]);
    let out = cmd
        .arg(bin)
        .output()
        .expect("gdb is needed to check breakpoint sites: install gdb");
    assert!(out.status.success(), "gdb failed");
    let text = String::from_utf8_lossy(&out.stdout);
    // Which breakpoint number each spec got, from "Breakpoint N at ..." after its marker.
    let mut number_of: std::collections::HashMap<u32, usize> = Default::default();
    let mut current: Option<usize> = None;
    let mut lines = text.lines();
    for line in lines.by_ref() {
        if line == "@@table" {
            break;
        }
        if let Some(i) = line.strip_prefix("@@spec ") {
            current = i.trim().parse().ok();
        } else if let (Some(rest), Some(i)) = (line.strip_prefix("Breakpoint "), current)
            && let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            number_of.insert(n, i);
        }
    }
    let mut out: Vec<Vec<u64>> = vec![Vec::new(); specs.len()];
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let Some(n) = first.split('.').next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some(&i) = number_of.get(&n) else {
            continue;
        };
        if let Some(addr) = words
            .filter_map(|w| w.strip_prefix("0x"))
            .find_map(|h| u64::from_str_radix(h, 16).ok())
        {
            out[i].push(addr);
        }
    }
    for addrs in &mut out {
        addrs.sort_unstable();
        addrs.dedup();
    }
    out
}

/// The executable's debug info alone, loaded at its link addresses (so addresses compare with gdb's).
fn static_image(bin: &Path) -> ProcessImage {
    let module = Module::open_file(bin, 0).expect("open fixture");
    ProcessImage::from_modules(0, vec![Arc::new(module)], Some(0))
}

fn our_sites(image: &ProcessImage, spec: &str) -> Vec<u64> {
    let Ok(r) = image.resolve_location(spec) else {
        return Vec::new();
    };
    let mut addrs: Vec<u64> = r.sites.iter().map(|s| s.address.0).collect();
    addrs.sort_unstable();
    addrs
}

/// Every line of `b`'s source (and the given function names) resolves to gdb's breakpoint addresses; the
/// marked lines must have code.
fn agrees_with_gdb(b: &Build, markers: &[&str], functions: &[&str]) {
    let bin = build(b);
    let image = static_image(&bin);
    let base = Path::new(b.src)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let lines = std::fs::read_to_string(fixture_src(b.src))
        .expect("read fixture source")
        .lines()
        .count();
    let mut specs: Vec<String> = (1..=lines).map(|l| format!("{base}:{l}")).collect();
    specs.extend(functions.iter().map(|f| f.to_string()));
    let gdb = gdb_sites(&bin, &specs);
    let mut wrong = Vec::new();
    for (spec, gdb) in specs.iter().zip(&gdb) {
        let ours = our_sites(&image, spec);
        if *gdb != ours {
            wrong.push(format!("{spec}: gdb {gdb:x?}, liveprobe {ours:x?}"));
        }
    }
    for m in markers {
        let spec = format!("{base}:{}", marker_line(b.src, m));
        let i = specs.iter().position(|s| *s == spec).expect("marked line");
        assert!(
            !gdb[i].is_empty(),
            "gdb has no breakpoint at marked line {spec}"
        );
    }
    assert!(
        wrong.is_empty(),
        "{} ({}): {} of {} locations differ:\n{}",
        b.out,
        b.flags.join(" "),
        wrong.len(),
        specs.len(),
        wrong.join("\n")
    );
}

const C_MARKERS: &[&str] = &[
    "inline_body",
    "before_loop",
    "for_line",
    "loop_body",
    "after_loop",
    "two_inlines",
    "after_branch",
];

#[test]
fn c_o0_lines_and_functions_resolve_where_gdb_breaks() {
    agrees_with_gdb(&C_O0, C_MARKERS, &["loop_sum", "branchy", "main", "scaled"]);
}

#[test]
fn c_o2_lines_resolve_where_gdb_breaks() {
    agrees_with_gdb(&C_O2, C_MARKERS, &["loop_sum", "branchy", "main"]);
    let dwarf4 = Build {
        src: "sites/sites.c",
        out: "sites_c_O2_dwarf4",
        flags: &["-O2", "-gdwarf-4"],
    };
    agrees_with_gdb(&dwarf4, C_MARKERS, &["loop_sum", "main"]);
}

#[test]
fn cpp_template_lines_resolve_where_gdb_breaks() {
    agrees_with_gdb(&CPP_O0, CPP_MARKERS, &["main", "label_length"]);
    // The template by its plain name: one site per instance, each named with its arguments.
    let image = static_image(&build(&CPP_O0));
    let r = image.resolve_location("accumulate").expect("accumulate");
    let mut names: Vec<String> = r.sites.iter().filter_map(|s| s.function.clone()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("accumulate<double>"), "{names:?}");
    assert!(names[1].starts_with("accumulate<int>"), "{names:?}");
}

#[test]
fn cpp_o2_lines_with_inlined_library_code_resolve_where_gdb_breaks() {
    agrees_with_gdb(&CPP_O2, CPP_MARKERS, &["label_length"]);
}

const CPP_MARKERS: &[&str] = &[
    "tmpl_body",
    "call_int",
    "string_line",
    "range_for",
    "return_line",
];

#[test]
fn rust_release_lines_resolve_where_gdb_breaks() {
    agrees_with_gdb(
        &RUST_RELEASE,
        &["generic_body", "inlined_body", "first_bump", "work_end"],
        &[],
    );
}

/// The other fixtures of the suite, built optimized: bigger programs with library code inlined everywhere.
#[test]
fn other_optimized_fixtures_resolve_where_gdb_breaks() {
    for b in [
        Build {
            src: "probes/orders.c",
            out: "sites_orders_O2",
            flags: &["-O2"],
        },
        Build {
            src: "e2e/cache.cpp",
            out: "sites_cache_O2",
            flags: &["-O2"],
        },
        Build {
            src: "probes/vectors.cpp",
            out: "sites_vectors_cpp_O2",
            flags: &["-O2"],
        },
        Build {
            src: "e2e/service.rs",
            out: "sites_service_release",
            flags: &["-C", "opt-level=3"],
        },
        Build {
            src: "probes/vectors.rs",
            out: "sites_vectors_rs_release",
            flags: &["-C", "opt-level=3"],
        },
    ] {
        agrees_with_gdb(&b, &[], &[]);
    }
}

/// Prints what a location resolves to (debugging aid for the assertions below).
fn describe_sites(image: &ProcessImage, spec: &str) -> String {
    match image.resolve_location(spec) {
        Ok(r) => r
            .sites
            .iter()
            .map(|s| {
                format!(
                    "{:#x} {:?} {:?}:{:?} inlined={} into={:?}",
                    s.address.0, s.function, s.file, s.line, s.inlined, s.inlined_into
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e}"),
    }
}

/// On optimized Rust a function probe lands in the function's own code (not in `black_box` inlined at its
/// entry), an inlined function gets a site in each copy, labelled with the function it was inlined into,
/// and a generic function's instances are told apart.
#[test]
fn rust_release_function_probes_land_in_their_own_code() {
    let bin = build(&RUST_RELEASE);
    let image = static_image(&bin);
    let src = RUST_RELEASE.src;
    // The function body, its closing brace included.
    let own_lines = |from: &str, to: &str| marker_line(src, from)..=marker_line(src, to) + 1;
    // `work` starts with `black_box` inlined at its entry (gdb breaks there, in hint.rs): the probe goes to
    // work's own first statement.
    let work = image.resolve_location("work").expect("work");
    assert_eq!(work.sites.len(), 1, "{}", describe_sites(&image, "work"));
    let site = &work.sites[0];
    assert_eq!(site.function.as_deref(), Some("sites::work"));
    assert!(
        site.file
            .as_deref()
            .is_some_and(|f| f.ends_with("sites/sites.rs")),
        "{site:?}"
    );
    assert!(
        site.line
            .is_some_and(|l| own_lines("first_bump", "work_end").contains(&l)),
        "{}",
        describe_sites(&image, "work")
    );
    assert!(!site.inlined);
    // `bump` exists only inlined: one site per copy, in bump's own line, labelled with its caller.
    let bump = image.resolve_location("bump").expect("bump");
    assert!(!bump.sites.is_empty());
    for s in &bump.sites {
        assert!(s.inlined, "{}", describe_sites(&image, "bump"));
        assert_eq!(s.function.as_deref(), Some("sites::bump"));
        assert_eq!(s.inlined_into.as_deref(), Some("sites::work"));
        assert_eq!(s.line, Some(marker_line(src, "inlined_body")));
    }
    // A generic function: one site per instance, each named with its type arguments, on a line probe too.
    let line = format!("sites.rs:{}", marker_line(src, "generic_body"));
    for spec in ["describe", line.as_str()] {
        let r = image.resolve_location(spec).expect("describe");
        let mut names: Vec<String> = r.sites.iter().filter_map(|s| s.function.clone()).collect();
        names.sort();
        assert_eq!(
            names,
            ["sites::describe<&str>", "sites::describe<u64>"],
            "{spec}: {}",
            describe_sites(&image, spec)
        );
    }
}

// ---- Over MCP, on a running fixture: labels, site choice, per-site counts, exact counts on both engines.

use serde_json::{Value, json};

/// Where the executable is loaded in a running process: the start of its mapping at file offset 0.
fn load_base(pid: i32, exe: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let exe = std::fs::canonicalize(exe).expect("canonical exe path");
    maps.lines()
        .find_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let (range, offset, path) = (parts.first()?, parts.get(2)?, parts.get(5)?);
            (Path::new(path) == exe && u64::from_str_radix(offset, 16).ok()? == 0)
                .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
                .flatten()
        })
        .expect("executable mapping")
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an address: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex address")
}

/// One count probe and how many times its line runs per `call 1` of the fixture.
struct CountCase {
    spec: String,
    per_call: u64,
    /// Compare the resolved addresses with gdb's (function probes that leave an inlined callee do not).
    like_gdb: bool,
}

fn line_case(b: &Build, marker: &str, per_call: u64) -> CountCase {
    let base = Path::new(b.src)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("name");
    CountCase {
        spec: format!("{base}:{}", marker_line(b.src, marker)),
        per_call,
        like_gdb: true,
    }
}

fn function_case(name: &str, per_call: u64, like_gdb: bool) -> CountCase {
    CountCase {
        spec: name.to_string(),
        per_call,
        like_gdb,
    }
}

const CALLS: u64 = 7;

/// Sets a count at every case with `engine`, runs `call CALLS`, and checks each count is exactly
/// `per_call * CALLS`, the per-site counts add up to it, and the sites are gdb's.
fn counts_are_exact(b: &Build, engine: &str, cases: &[CountCase]) {
    let bin = build(b);
    let mut fx = Fixture::start(&bin);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let base = load_base(fx.pid, &bin);
    let specs: Vec<String> = cases.iter().map(|k| k.spec.clone()).collect();
    let gdb = gdb_sites(&bin, &specs);
    let mut ids = Vec::new();
    for (case, gdb) in cases.iter().zip(&gdb) {
        let set = c
            .call(
                "set_metric",
                json!({"pid": fx.pid, "location": case.spec, "kind": "count", "engine": engine}),
            )
            .ok();
        assert_eq!(set["engine"], engine, "{}: {set}", case.spec);
        let resolved = set["resolved"].as_array().expect("resolved");
        for (i, r) in resolved.iter().enumerate() {
            assert_eq!(r["site"], json!(i), "sites are numbered in order: {set}");
            assert!(
                r["function"].is_string(),
                "every site names its function: {set}"
            );
        }
        if case.like_gdb {
            let mut ours: Vec<u64> = resolved.iter().map(|r| hex(&r["address"]) - base).collect();
            ours.sort_unstable();
            assert_eq!(
                ours, *gdb,
                "{} ({}): liveprobe's sites are not gdb's: {set}",
                case.spec, b.out
            );
        }
        ids.push(set["probe_id"].clone());
    }
    fx.send(&format!("call {CALLS}"));
    fx.expect_line("done");
    let mut wrong = Vec::new();
    for (case, id) in cases.iter().zip(&ids) {
        let r = c
            .call(
                "get_probe_results",
                json!({"probe_id": id, "after": 0, "limit": 10}),
            )
            .ok();
        let count = r["items"][0]["count"].as_u64().unwrap_or(0);
        if count != case.per_call * CALLS {
            wrong.push(format!(
                "{}: count {count}, expected {} ({} per call): {}",
                case.spec,
                case.per_call * CALLS,
                case.per_call,
                r["items"][0]
            ));
        }
        let per_site: u64 = r["items"][0]["per_site"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["hits"].as_u64()).sum())
            .unwrap_or(0);
        assert_eq!(per_site, count, "{}: per-site hits add up: {r}", case.spec);
    }
    assert!(
        wrong.is_empty(),
        "{} on {engine}:\n{}",
        b.out,
        wrong.join("\n")
    );
    fx.send("quit");
    fx.wait_exit();
}

fn c_cases(b: &Build) -> Vec<CountCase> {
    let mut cases = vec![
        line_case(b, "before_loop", 1),
        line_case(b, "for_line", 1),
        line_case(b, "loop_body", 4),
        line_case(b, "after_loop", 1),
        line_case(b, "two_inlines", 1),
        // scaled's body: four times in loop_sum's loop, once in branchy (one of two copies).
        line_case(b, "inline_body", 5),
        function_case("loop_sum", 1, true),
        function_case("branchy", 1, true),
        // At -O2 gdb 13 breaks on scaled's first copy in branchy at the start of its first address range,
        // which is branchy's entry (a load both copies share, run whichever copy a call takes, so a count
        // there counts calls of branchy); a branch lies between it and the copy's DW_AT_entry_pc, so
        // liveprobe breaks at the latter (as gdb does when straight-line code leads from one to the other).
        function_case("scaled", 5, b.flags.contains(&"-O0")),
    ];
    if b.flags.contains(&"-O0") {
        // At -O2 gcc duplicates this line into both arms of the branch and gdb breaks in one of them.
        cases.push(line_case(b, "after_branch", 1));
    }
    cases
}

#[test]
fn c_o0_counts_are_exact_uprobe() {
    counts_are_exact(&C_O0, "uprobe", &c_cases(&C_O0));
}

#[test]
fn c_o0_counts_are_exact_ptrace() {
    counts_are_exact(&C_O0, "ptrace", &c_cases(&C_O0));
}

#[test]
fn c_o2_counts_are_exact_uprobe() {
    counts_are_exact(&C_O2, "uprobe", &c_cases(&C_O2));
}

#[test]
fn c_o2_counts_are_exact_ptrace() {
    counts_are_exact(&C_O2, "ptrace", &c_cases(&C_O2));
}

fn rust_cases() -> Vec<CountCase> {
    vec![
        line_case(&RUST_RELEASE, "generic_body", 2),
        line_case(&RUST_RELEASE, "inlined_body", 1),
        // gdb breaks in `black_box` inlined at work's entry (labelled hint.rs); liveprobe at work's own
        // first statement, where work's variables are in scope (issue 9, item 4).
        function_case("work", 1, false),
        // gdb knows it by its path only; it breaks where liveprobe does, at the start of the copy.
        function_case("sites::bump", 1, true),
        // gdb knows it only by an instance's name (`describe<u64>`); both instances' sites are the
        // generic_body line's, checked against gdb above.
        function_case("describe", 2, false),
    ]
}

#[test]
fn rust_release_counts_are_exact_uprobe() {
    counts_are_exact(&RUST_RELEASE, "uprobe", &rust_cases());
}

#[test]
fn rust_release_counts_are_exact_ptrace() {
    counts_are_exact(&RUST_RELEASE, "ptrace", &rust_cases());
}

/// A template instantiated twice: the line has one site per instance, each named with its template
/// arguments; `function` and `sites` choose among them; every snapshot and logpoint item says which site it
/// came from, and list_probes counts hits per site.
fn template_instances_are_labelled_and_chosen(engine: &str) {
    let bin = build(&CPP_O0);
    let mut fx = Fixture::start(&bin);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let line = format!("sites.cpp:{}", marker_line(CPP_O0.src, "tmpl_body"));
    let answer = c.call("resolve_location", json!({"pid": fx.pid, "location": line}));
    assert!(answer.text.contains("site 1: 0x"), "{}", answer.text);
    let all = answer.ok();
    let sites = all["resolved"].as_array().expect("resolved").clone();
    assert_eq!(sites.len(), 2, "{all}");
    let number_of = |needle: &str| -> u64 {
        sites
            .iter()
            .find(|s| s["function"].as_str().is_some_and(|f| f.contains(needle)))
            .and_then(|s| s["site"].as_u64())
            .unwrap_or_else(|| panic!("no site in {needle}: {all}"))
    };
    let (int_site, double_site) = (
        number_of("accumulate<int>"),
        number_of("accumulate<double>"),
    );
    assert_ne!(int_site, double_site);

    // Chosen by function: one site, keeping its number.
    let chosen = c
        .call(
            "resolve_location",
            json!({"pid": fx.pid, "location": line, "function": "accumulate<double>"}),
        )
        .ok();
    assert_eq!(
        chosen["resolved"].as_array().map(Vec::len),
        Some(1),
        "{chosen}"
    );
    assert_eq!(chosen["resolved"][0]["site"], json!(double_site));
    let count = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": line, "kind": "count", "engine": engine,
                   "function": "accumulate<int>"}),
        )
        .ok();
    assert_eq!(
        count["resolved"].as_array().map(Vec::len),
        Some(1),
        "{count}"
    );
    assert_eq!(count["resolved"][0]["site"], json!(int_site));
    // Chosen by number.
    let log = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": line, "engine": engine, "sites": [double_site],
                   "message": "a={a} b={b}"}),
        )
        .ok();
    assert_eq!(log["resolved"].as_array().map(Vec::len), Some(1), "{log}");
    let snap = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": line, "engine": engine, "max_hits": 6,
                   "expressions": ["b"]}),
        )
        .ok();
    fx.send("call 3");
    fx.expect_line("done");

    let counted = c
        .call(
            "get_probe_results",
            json!({"probe_id": count["probe_id"], "after": 0}),
        )
        .ok();
    assert_eq!(counted["items"][0]["count"], json!(3), "{counted}");
    let answer = c.call(
        "get_probe_results",
        json!({"probe_id": log["probe_id"], "after": 0, "limit": 50}),
    );
    assert!(
        answer.text.contains(&format!("site {double_site} a=")),
        "{}",
        answer.text
    );
    let logs = answer.ok();
    let log_items = logs["items"].as_array().expect("items");
    assert_eq!(log_items.len(), 3, "{logs}");
    for item in log_items {
        assert_eq!(item["site"], json!(double_site), "{item}");
        assert!(
            item["text"].as_str().is_some_and(|t| t.ends_with("b=0.5")),
            "{item}"
        );
    }
    let snaps = c
        .call(
            "get_probe_results",
            json!({"probe_id": snap["probe_id"], "after": 0, "limit": 50}),
        )
        .ok();
    let snap_items = snaps["items"].as_array().expect("items");
    assert_eq!(snap_items.len(), 6, "{snaps}");
    for item in snap_items {
        // Each hit says its site, and the site's instance is the one whose `b` it read.
        let b = item["expressions"][0]["value"].as_str().unwrap_or("?");
        let site = item["site"]
            .as_u64()
            .unwrap_or_else(|| panic!("no site: {item}"));
        let expected = if site == int_site { "2" } else { "0.5" };
        assert_eq!(b, expected, "site {site}: {item}");
    }
    let listed = c.call("list_probes", json!({})).ok();
    let row = listed["probes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["probe_id"] == snap["probe_id"]))
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    let per_site: Vec<(u64, u64)> = row["per_site"]
        .as_array()
        .expect("per_site")
        .iter()
        .map(|s| {
            (
                s["site"].as_u64().unwrap_or(99),
                s["hits"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(per_site.len(), 2, "{row}");
    assert!(
        per_site.iter().all(|&(_, hits)| hits == 3),
        "three hits at each instance: {row}"
    );

    // Choices that match nothing say what there is.
    let err = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": line, "kind": "count", "sites": [7]}),
        )
        .err();
    assert!(
        err.contains("2 site(s)") && err.contains("accumulate"),
        "{err}"
    );
    let err = c
        .call(
            "resolve_location",
            json!({"pid": fx.pid, "location": line, "function": "no_such_fn"}),
        )
        .err();
    assert!(
        err.contains("no site") && err.contains("accumulate<int>"),
        "{err}"
    );
    fx.send("quit");
    fx.wait_exit();
}

#[test]
fn template_instances_are_labelled_and_chosen_uprobe() {
    template_instances_are_labelled_and_chosen("uprobe");
}

#[test]
fn template_instances_are_labelled_and_chosen_ptrace() {
    template_instances_are_labelled_and_chosen("ptrace");
}

/// Each site of a line is labelled with the function the line is in: a caller's line whose first address
/// starts an inlined call is the caller's (gdb says the callee's there), and an inlined function's line is
/// the inlined function's, with the function it was inlined into.
#[test]
fn c_o2_sites_are_labelled_with_their_own_function() {
    let bin = build(&C_O2);
    let image = static_image(&bin);
    let at = |marker: &str| {
        let spec = format!("sites.c:{}", marker_line(C_O2.src, marker));
        image.resolve_location(&spec).expect("resolve").sites
    };
    let body = at("loop_body");
    assert_eq!(body.len(), 1, "{body:?}");
    assert_eq!(body[0].function.as_deref(), Some("loop_sum"), "{body:?}");
    assert!(!body[0].inlined, "{body:?}");
    assert_eq!(body[0].line, Some(marker_line(C_O2.src, "loop_body")));
    let inline = at("inline_body");
    let mut into: Vec<&str> = inline
        .iter()
        .map(|s| {
            assert_eq!(s.function.as_deref(), Some("scaled"), "{inline:?}");
            assert!(s.inlined, "{inline:?}");
            assert_eq!(s.line, Some(marker_line(C_O2.src, "inline_body")));
            s.inlined_into.as_deref().unwrap_or("?")
        })
        .collect();
    into.sort_unstable();
    assert_eq!(into, ["branchy", "branchy", "loop_sum"], "{inline:?}");
}
