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
