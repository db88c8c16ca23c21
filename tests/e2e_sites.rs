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

/// gdb's breakpoint addresses (file addresses of a PIE not yet run) for `break <spec>`.
fn gdb_sites(bin: &Path, spec: &str) -> Vec<u64> {
    let out = Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            &format!("break {spec}"),
            "-ex",
            "info breakpoints",
        ])
        .arg(bin)
        .output()
        .expect("gdb is needed to check breakpoint sites: install gdb");
    assert!(out.status.success(), "gdb failed on {spec}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs: Vec<u64> = text
        .lines()
        .skip_while(|l| !l.starts_with("Num"))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix("0x"))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .collect();
    addrs.sort_unstable();
    assert!(
        !addrs.is_empty(),
        "gdb set no breakpoint at {spec}:\n{text}"
    );
    addrs
}

/// The executable's debug info alone, loaded at its link addresses (so addresses compare with gdb's).
fn static_image(bin: &Path) -> ProcessImage {
    let module = Module::open_file(bin, 0).expect("open fixture");
    ProcessImage::from_modules(0, vec![Arc::new(module)], Some(0))
}

fn our_sites(image: &ProcessImage, spec: &str) -> Vec<u64> {
    let r = image
        .resolve_location(spec)
        .unwrap_or_else(|e| panic!("resolve {spec}: {e}"));
    let mut addrs: Vec<u64> = r.sites.iter().map(|s| s.address.0).collect();
    addrs.sort_unstable();
    addrs
}

/// Every marked line of `b` (and the given function names) resolves to gdb's breakpoint addresses.
fn agrees_with_gdb(b: &Build, markers: &[&str], functions: &[&str]) {
    let bin = build(b);
    let image = static_image(&bin);
    let base = Path::new(b.src)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let mut specs: Vec<String> = markers
        .iter()
        .map(|m| format!("{base}:{}", marker_line(b.src, m)))
        .collect();
    specs.extend(functions.iter().map(|f| f.to_string()));
    let mut wrong = Vec::new();
    for spec in &specs {
        let gdb = gdb_sites(&bin, spec);
        let ours = our_sites(&image, spec);
        if gdb != ours {
            wrong.push(format!("{spec}: gdb {:x?}, liveprobe {:x?}", gdb, ours));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} ({}):\n{}",
        b.out,
        b.flags.join(" "),
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
    agrees_with_gdb(&C_O2, C_MARKERS, &["loop_sum", "main"]);
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
