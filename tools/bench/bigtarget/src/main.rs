//! The target of `tools/bench/attach.py`: a debug build with a lot of DWARF whose
//! threads keep a heartbeat, so the driver can see how long a debugger held them.
//!
//! - At start it runs `exercise_dependencies` once, so code from every big dependency
//!   is really linked in (an archive member that nothing references is left out by the
//!   linker, and its DWARF with it), starts a small tokio runtime that idles like a
//!   service would, and starts the heartbeat thread.
//! - The heartbeat thread sleeps `--tick-us` (200 µs) in a loop and records every gap
//!   between ticks. A thread stopped by ptrace cannot tick, so a stop shows as one
//!   long gap. (The driver runs the target under SCHED_FIFO so that other load on
//!   the machine does not delay the wake-ups as much.)
//! - The main thread blocks reading stdin. On the line `stats` it prints one JSON line
//!   with the heartbeat figures since the last `stats` and resets them; on `ready?` it
//!   prints `ready`; on end of input it exits.
//!
//! It must never print anything but those answers on stdout: the driver parses them.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

mod endpoints;

#[derive(Parser, Debug)]
#[command(about = "liveprobe benchmark target: heartbeat thread plus a lot of DWARF")]
struct Options {
    /// Sleep between heartbeat ticks, in microseconds.
    #[arg(long, default_value_t = 200)]
    tick_us: u64,
    /// A gap this much longer than the tick counts as a stall (the thread was held
    /// or descheduled), not as ordinary sleep overshoot.
    #[arg(long, default_value_t = 1000)]
    stall_threshold_us: u64,
    /// Tokio worker threads of the idle runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// What the heartbeat saw since the last reset.
#[derive(Debug, Default, Clone, Serialize)]
struct HeartbeatStats {
    /// Ticks counted.
    ticks: u64,
    /// Length of the window these figures cover.
    window_us: u64,
    /// The longest time between two ticks.
    max_gap_us: u64,
    /// Sum over all ticks of (gap - tick): every microsecond the thread ran late.
    excess_us: u64,
    /// Sum of (gap - tick) over the gaps longer than tick + stall threshold only:
    /// time the thread was held or descheduled, without the usual sleep overshoot.
    stall_us: u64,
    /// How many gaps were longer than tick + stall threshold.
    stalls: u64,
}

struct Heartbeat {
    stats: HeartbeatStats,
    window_start: Instant,
}

fn heartbeat_loop(tick: Duration, stall_threshold: Duration, shared: Arc<Mutex<Heartbeat>>) {
    let mut last = Instant::now();
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        let gap = now.saturating_duration_since(last);
        last = now;
        let excess = gap.saturating_sub(tick);
        let Ok(mut beat) = shared.lock() else { return };
        let stats = &mut beat.stats;
        stats.ticks += 1;
        stats.max_gap_us = stats.max_gap_us.max(gap.as_micros() as u64);
        stats.excess_us += excess.as_micros() as u64;
        if excess > stall_threshold {
            stats.stall_us += excess.as_micros() as u64;
            stats.stalls += 1;
        }
    }
}

/// Answers one command line from the driver. The driver resolves the line marked
/// `BENCH-RESOLVE-LINE` below (it finds the marker, so edits above it are harmless).
fn handle_command(
    command: &str,
    shared: &Mutex<Heartbeat>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match command.trim() {
        "stats" => {
            let snapshot = match shared.lock() {
                Ok(mut beat) => {
                    let mut stats = std::mem::take(&mut beat.stats); // BENCH-RESOLVE-LINE
                    stats.window_us = beat.window_start.elapsed().as_micros() as u64;
                    beat.window_start = Instant::now();
                    stats
                }
                Err(_) => HeartbeatStats::default(),
            };
            let line = serde_json::to_string(&snapshot)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            writeln!(out, "{line}")?;
        }
        "ready?" => writeln!(out, "ready")?,
        other => writeln!(out, "{{\"error\":\"unknown command {other:?}\"}}")?,
    }
    out.flush()
}

fn main() {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let summary = workload::exercise_dependencies();
    tracing::info!(summary = %summary, "dependencies exercised");

    // An idle async runtime, as a service has: more threads for the debugger to seize.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers.max(1))
        .enable_all()
        .build();
    let _runtime = match runtime {
        Ok(rt) => {
            rt.spawn(workload::idle_service());
            Some(rt)
        }
        Err(e) => {
            eprintln!("bigtarget: no tokio runtime: {e}");
            None
        }
    };

    let shared = Arc::new(Mutex::new(Heartbeat {
        stats: HeartbeatStats::default(),
        window_start: Instant::now(),
    }));
    let tick = Duration::from_micros(options.tick_us.max(1));
    let stall_threshold = Duration::from_micros(options.stall_threshold_us);
    let beat = Arc::clone(&shared);
    let spawned = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || heartbeat_loop(tick, stall_threshold, beat));
    if let Err(e) = spawned {
        eprintln!("bigtarget: cannot start the heartbeat thread: {e}");
        std::process::exit(1);
    }

    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if handle_command(&line, &shared, &mut out).is_err() {
            break;
        }
    }
}

/// Code that touches each big dependency once, so the linker keeps it (and its DWARF).
mod workload {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Order {
        id: u64,
        customer: String,
        items: Vec<Item>,
        tags: BTreeMap<String, String>,
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Item {
        sku: String,
        quantity: u32,
        price_cents: i64,
    }

    /// Waits forever on a socket nobody connects to, with a timer ticking rarely.
    pub async fn idle_service() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let mut interval = tokio::time::interval(std::time::Duration::from_millis(500));
        match listener {
            Ok(listener) => loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((mut stream, _)) = accepted {
                            use tokio::io::AsyncWriteExt;
                            let _ = stream.write_all(b"bigtarget\n").await;
                        }
                    }
                    _ = interval.tick() => {}
                }
            },
            Err(_) => loop {
                interval.tick().await;
            },
        }
    }

    /// Runs every dependency a little and returns a summary line (so nothing is
    /// optimised away and the result is observable in the log).
    pub fn exercise_dependencies() -> String {
        let mut parts: Vec<String> = Vec::new();

        // serde_json + schemars
        let text = r#"{"id":7,"customer":"alice","items":[{"sku":"A-1","quantity":2,"price_cents":1299}],"tags":{"tier":"gold"}}"#;
        match serde_json::from_str::<Order>(text) {
            Ok(order) => parts.push(format!("order {} items {}", order.id, order.items.len())),
            Err(e) => parts.push(format!("json error {e}")),
        }
        let schema = schemars::schema_for!(Order);
        parts.push(format!(
            "schema {}",
            serde_json::to_string(&schema).map(|s| s.len()).unwrap_or(0)
        ));

        // regex-automata, regex-syntax, aho-corasick, memchr
        if let Ok(re) = regex_automata::meta::Regex::new(r"(?i)order\s+(\d+)") {
            parts.push(format!(
                "regex {:?}",
                re.find("see ORDER 42 now").map(|m| m.range())
            ));
        }
        if let Ok(hir) = regex_syntax::parse(r"[a-z]+\d{2,4}") {
            parts.push(format!(
                "hir {}",
                hir.properties().minimum_len().unwrap_or(0)
            ));
        }
        if let Ok(ac) = aho_corasick::AhoCorasick::new(["alpha", "beta", "gamma"]) {
            parts.push(format!(
                "ac {}",
                ac.find_iter("alphabet gamma beta").count()
            ));
        }
        parts.push(format!(
            "memmem {:?}",
            memchr::memmem::find(b"haystack needle", b"needle")
        ));

        // iced-x86: decode and format a few instructions
        let code = [0x55u8, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xc3];
        let mut decoder =
            iced_x86::Decoder::with_ip(64, &code, 0x1000, iced_x86::DecoderOptions::NONE);
        let mut formatter = iced_x86::NasmFormatter::new();
        let mut listing = String::new();
        while decoder.can_decode() {
            let instruction = decoder.decode();
            use iced_x86::Formatter;
            formatter.format(&instruction, &mut listing);
            listing.push(';');
        }
        parts.push(format!("asm {listing}"));

        // object + gimli + addr2line on a small system binary
        let system_binary = std::fs::read("/bin/true").unwrap_or_default();
        if let Ok(file) = object::File::parse(&*system_binary) {
            use object::{Object, ObjectSection};
            parts.push(format!("sections {}", file.sections().count()));
            let endian = gimli::RunTimeEndian::Little;
            let dwarf = gimli::Dwarf::load(
                |id| -> Result<gimli::EndianSlice<'_, gimli::RunTimeEndian>, gimli::Error> {
                    let data = file
                        .section_by_name(id.name())
                        .and_then(|s| s.data().ok())
                        .unwrap_or(&[]);
                    Ok(gimli::EndianSlice::new(data, endian))
                },
            );
            if let Ok(context) = dwarf.and_then(addr2line::Context::from_dwarf) {
                parts.push(format!(
                    "a2l {}",
                    context.find_location(0x1000).ok().flatten().is_some()
                ));
            }
        }

        // syn + quote + proc-macro2
        let source = "fn add(a: i32, b: i32) -> i32 { a + b } struct P { x: f64 }";
        if let Ok(file) = syn::parse_file(source) {
            let tokens = quote::quote!(#file);
            parts.push(format!(
                "syn items {} tokens {}",
                file.items.len(),
                tokens.to_string().len()
            ));
        }
        let stream: proc_macro2::TokenStream = "let x = 1;".parse().unwrap_or_default();
        parts.push(format!("pm2 {}", stream.into_iter().count()));

        // chrono, uuid, sha2, base64, twox-hash, unicode-normalization, demanglers
        parts.push(format!("now {}", chrono::Utc::now().timestamp() > 0));
        parts.push(format!(
            "uuid {:?}",
            uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8")
                .map(|u| u.get_version_num())
        ));
        {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(b"bigtarget");
            parts.push(format!("sha {:02x}{:02x}", digest[0], digest[1]));
        }
        {
            use base64::Engine;
            parts.push(format!(
                "b64 {}",
                base64::engine::general_purpose::STANDARD.encode(b"liveprobe")
            ));
        }
        parts.push(format!(
            "xxh {:x}",
            twox_hash::XxHash64::oneshot(7, b"bigtarget")
        ));
        {
            use unicode_normalization::UnicodeNormalization;
            parts.push(format!("nfc {}", "e\u{301}".nfc().count()));
        }
        parts.push(format!(
            "rust {}",
            rustc_demangle::demangle("_ZN4core3fmt5write17h0123456789abcdefE")
        ));
        if let Ok(symbol) = cpp_demangle::Symbol::new(&b"_ZN5Cache3getERKSs"[..]) {
            parts.push(format!("cpp {}", symbol.demangle().unwrap_or_default()));
        }

        // flate2 and ruzstd round trips
        let payload = b"the quick brown fox jumps over the lazy dog ".repeat(20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let compressed = gz.write_all(&payload).and_then(|()| gz.finish());
        if let Ok(compressed) = compressed {
            let mut back = Vec::new();
            let ok = flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut back)
                .is_ok();
            parts.push(format!("gz {} {}", compressed.len(), ok && back == payload));
        }
        let zstd = ruzstd::encoding::compress_to_vec(
            &payload[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        if let Ok(mut decoder) = ruzstd::decoding::StreamingDecoder::new(&zstd[..]) {
            let mut back = Vec::new();
            let ok = decoder.read_to_end(&mut back).is_ok();
            parts.push(format!("zstd {} {}", zstd.len(), ok && back == payload));
        }

        // indexmap, hashbrown
        let mut ordered: indexmap::IndexMap<&str, usize> = indexmap::IndexMap::new();
        let mut hashed: hashbrown::HashMap<usize, &str, std::hash::RandomState> =
            hashbrown::HashMap::with_hasher(std::hash::RandomState::new());
        for (i, word) in ["x", "y", "z"].into_iter().enumerate() {
            ordered.insert(word, i);
            hashed.insert(i, word);
        }
        parts.push(format!("maps {} {}", ordered.len(), hashed.len()));

        // nix, tempfile
        parts.push(format!("pid {}", nix::unistd::getpid()));
        if let Ok(mut file) = tempfile::tempfile() {
            parts.push(format!("tmp {}", file.write_all(b"x").is_ok()));
        }

        // futures, and an rmcp message as a client would see it
        let joined =
            futures::executor::block_on(async { futures::join!(async { 1 }, async { 2 }) });
        parts.push(format!("futures {}", joined.0 + joined.1));
        let result = rmcp::model::CallToolResult::structured(serde_json::json!({"pid": 1}));
        parts.push(format!(
            "rmcp {}",
            serde_json::to_string(&result).map(|s| s.len()).unwrap_or(0)
        ));

        // every endpoint once, as a service's self-test at start would
        let body = r#"{"id":1,"name":"n","tags":["t"],"limits":{"a":1},"detail":{"weight":0.5,"flags":[1,2,3,4],"note":null}}"#;
        let answered = crate::endpoints::ENDPOINTS
            .iter()
            .filter(|(_, handle, schema)| handle(body).is_ok() && !schema().is_empty())
            .count();
        parts.push(format!(
            "endpoints {answered}/{}",
            crate::endpoints::ENDPOINTS.len()
        ));

        parts.join(", ")
    }
}
