//! Tool arguments, as clients send them. Field names are the contract of
//! TOOLS.md. Numbers are also accepted as numeric strings: some clients send
//! `"42"` where a number is expected.

use lenient::*;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::engine::MetricKind;
use crate::value::Limits;

/// Deserializers that take a number or a numeric string.
mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(i64),
        Str(String),
    }

    fn to_i64<'de, D: Deserializer<'de>>(v: NumOrString) -> Result<i64, D::Error> {
        match v {
            NumOrString::Num(n) => Ok(n),
            NumOrString::Str(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| D::Error::custom(format!("expected a whole number, got \"{s}\""))),
        }
    }

    /// A required i32.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let n = to_i64::<D>(NumOrString::deserialize(d)?)?;
        i32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range")))
    }

    /// An optional i32.
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        match Option::<NumOrString>::deserialize(d)? {
            None => Ok(None),
            Some(v) => {
                let n = to_i64::<D>(v)?;
                i32::try_from(n)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("{n} is out of range")))
            }
        }
    }

    /// A required non-negative id.
    pub fn u64_id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = to_i64::<D>(NumOrString::deserialize(d)?)?;
        u64::try_from(n).map_err(|_| D::Error::custom(format!("{n} is not a valid id")))
    }

    /// An optional non-negative 64-bit number.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<NumOrString>::deserialize(d)? {
            None => Ok(None),
            Some(v) => {
                let n = to_i64::<D>(v)?;
                u64::try_from(n)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("{n} is negative: give 0 or more")))
            }
        }
    }

    /// An optional non-negative count.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match Option::<NumOrString>::deserialize(d)? {
            None => Ok(None),
            Some(v) => {
                let n = to_i64::<D>(v)?;
                u32::try_from(n).map(Some).map_err(|_| {
                    D::Error::custom(format!(
                        "{n} is out of range: give a number from 0 to {}",
                        u32::MAX
                    ))
                })
            }
        }
    }
}

/// Arguments of `list_processes`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListProcessesArgs {
    /// Substring of the process name, executable path, command line, or a pid.
    #[serde(default)]
    pub query: Option<String>,
    /// Most processes to return (default 100).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub limit: Option<u32>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of tools that take only a target.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PidArgs {
    /// Target process id.
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
}

/// Arguments of `stack_trace`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StackTraceArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// Thread id (default: the main thread, tid == pid).
    #[serde(default, deserialize_with = "opt_int")]
    #[schemars(with = "Option<i32>")]
    pub tid: Option<i32>,
    /// Most frames per thread (default 64).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_frames: Option<u32>,
    /// Stacks of every thread instead of one.
    #[serde(default)]
    pub all_threads: Option<bool>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `find_functions`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FindFunctionsArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// Part of a function name, case-insensitive: `handle`, `Cache::get`, `my_crate::cache::Cache::get`, or a mangled name.
    pub query: String,
    /// Most functions to return (default 50).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub limit: Option<u32>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `list_source`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListSourceArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// Source file: a base name (`orders.c`) or a path suffix (`src/cache.rs`).
    pub file: String,
    /// Line to centre on (default: the top of the file).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub line: Option<u32>,
    /// Lines either side of `line` (default 10), or lines from the top when no line is given (default 60).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub context: Option<u32>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `resolve_location`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ResolveLocationArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// `file.c:42` (base name or path suffix), a function name (plain, qualified or mangled), or `*0xADDR`.
    pub location: String,
    /// Only the sites in functions named like this: the full name as `resolved` shows it (template arguments,
    /// generic instance), else any part of it. For a line or function with several instances or copies.
    #[serde(default)]
    pub function: Option<String>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `read_locals`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadLocalsArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// Thread id (default: the main thread, tid == pid).
    #[serde(default, deserialize_with = "opt_int")]
    #[schemars(with = "Option<i32>")]
    pub tid: Option<i32>,
    /// Frame index from stack_trace (0 = innermost; inlined calls count as frames).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub frame: Option<u32>,
    /// How much of each value to load (default depth 3, max_string 256, max_items 50).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `evaluate`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EvaluateArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// C/Rust-flavoured expression: names, `a.b`, `p->f`, `a[i]`, `*p`, `&x`, arithmetic, comparisons, `&&`, `||`, casts, `len(x)`. No calls, no assignment.
    pub expression: String,
    /// Thread id (default: the main thread). Ignored when `globals_only`.
    #[serde(default, deserialize_with = "opt_int")]
    #[schemars(with = "Option<i32>")]
    pub tid: Option<i32>,
    /// Frame index (default 0).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub frame: Option<u32>,
    /// How much of the value to load.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Read globals and statics only, without holding any thread (default: false; an expression naming only
    /// globals is read this way anyway when no tid or frame is given).
    #[serde(default)]
    pub globals_only: Option<bool>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments shared by every `set_*` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProbeCommonArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// `file.c:42` (base name or path suffix), a function name (plain, qualified or mangled), or `*0xADDR`.
    pub location: String,
    /// Only hits where this expression is true (type-checked when the probe is set).
    #[serde(default)]
    pub condition: Option<String>,
    /// Seconds before the probe expires (default 600).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub ttl_s: Option<u64>,
    /// Text expected on the source line; if absent there, the nearest line within ±10 that has it is used.
    #[serde(default)]
    pub source_contains: Option<String>,
    /// Resolve and check only: nothing is armed; the variables in scope are returned.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Only the sites in functions named like this: the full name as `resolved` shows it (template arguments,
    /// generic instance), else any part of it. For a line or function with several instances or copies.
    #[serde(default)]
    pub function: Option<String>,
    /// Only these sites, by the `site` numbers `resolve_location` (or a dry run) lists.
    #[serde(default)]
    pub sites: Option<Vec<usize>>,
    /// How hits reach the probe: `auto` (default: a kernel uprobe whose BPF program copies what the probe reads, so the thread is never stopped, where the kernel allows it and the capture can be planned; else ptrace), `uprobe` (refuse if not possible) or `ptrace` (the hitting thread is held while liveprobe reads).
    #[serde(default)]
    pub engine: Option<crate::engine::EngineChoice>,
    /// Over HTTP only: keep the probe after the session that set it ends (until removed or its TTL); any client with the
    /// token can then list and remove it. Default false: a session's probes are removed when it ends.
    #[serde(default)]
    pub keep: Option<bool>,
}

/// Arguments of `set_snapshot`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SetSnapshotArgs {
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub common: ProbeCommonArgs,
    /// Hits to capture before the probe is done (default 1).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub max_hits: Option<u64>,
    /// Frames whose locals are captured, from the probe's frame outwards (default 1).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub frames: Option<u32>,
    /// Extra expressions to evaluate at each hit.
    #[serde(default)]
    pub expressions: Option<Vec<String>>,
    /// How much of each value to load.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// Arguments of `set_logpoint`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SetLogpointArgs {
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub common: ProbeCommonArgs,
    /// Template: text with `{expression}` holes, e.g. `order {o->id} total={total}`; `{{` and `}}` are literal braces.
    pub message: String,
    /// Lines to record before the probe is done (default 1000).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub max_hits: Option<u64>,
}

/// Arguments of `set_metric`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SetMetricArgs {
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub common: ProbeCommonArgs,
    /// `count` of hits, `histogram` of `expression`, or `duration` from `location` to `end_location` (µs).
    pub kind: MetricKind,
    /// The number to summarize (histogram).
    #[serde(default)]
    pub expression: Option<String>,
    /// Where a duration ends (default: every return of the function containing `location`).
    #[serde(default)]
    pub end_location: Option<String>,
    /// Observations before the metric is done (default 10,000,000).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub max_hits: Option<u64>,
}

/// Arguments of `list_probes`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListProbesArgs {
    /// Only the probes of this process.
    #[serde(default, deserialize_with = "opt_int")]
    #[schemars(with = "Option<i32>")]
    pub pid: Option<i32>,
}

/// Arguments of `get_probe_results`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetProbeResultsArgs {
    /// The probe.
    #[serde(deserialize_with = "u64_id")]
    #[schemars(with = "u64")]
    pub probe_id: u64,
    /// Only results with `seq` greater than this (pass the previous answer's `next_after`).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub after: Option<u64>,
    /// Most results to return (default 20).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub limit: Option<u32>,
    /// Wait up to this long for a new result (long-poll; capped at 30000).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub wait_ms: Option<u64>,
    /// Expand one part of one result that an earlier answer cut: the path its `cut` note names (`items[0].frames[0].variables[1]`, or without the `items[0].` prefix), with `after` set to that result's `seq` minus 1. The answer's single item is `{seq, path, value}`.
    #[serde(default)]
    pub path: Option<String>,
    /// With `path`: elements (or a value's children) to leave out from the start, to page through a long list the budget cut (`first 303 of 1000 kept` → skip 303).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub skip: Option<u32>,
    /// Most bytes of this answer, structured content and text each (default 32768, at least 4096, at most 1048576). What does not fit is cut and the answer says what.
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub max_bytes: Option<u32>,
}

/// Arguments of `remove_probe`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RemoveProbeArgs {
    /// The probe.
    #[serde(deserialize_with = "u64_id")]
    #[schemars(with = "u64")]
    pub probe_id: u64,
}

/// Arguments of `watch_expression`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WatchExpressionArgs {
    /// Target process id (must be attached).
    #[serde(deserialize_with = "int")]
    #[schemars(with = "i32")]
    pub pid: i32,
    /// What to follow: a global or static (`requests_served`, `cfg->limit`, `stats.hits[2]`), or, with
    /// `tid`/`frame`, an expression over that frame's locals.
    pub expression: String,
    /// `sample`: evaluate every `interval_ms`. `write` / `access`: a hardware watchpoint on the expression's
    /// address and size, on every thread (also threads created later); each write (access) is an item with
    /// old, new, writer thread and stack.
    pub mode: crate::engine::WatchMode,
    /// Milliseconds between samples (default 100, at least 1, at most 60000).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub interval_ms: Option<u64>,
    /// Seconds the watch runs (default 10, at most `ttl_s`); it then ends with state `done`.
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub duration_s: Option<u64>,
    /// Items recorded before the watch is done (default 100, at most 1000000).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub max_events: Option<u64>,
    /// Keep only samples whose value differs from the previous sample's (default false).
    #[serde(default)]
    pub on_change: Option<bool>,
    /// Only samples where this expression is true (over the same globals or frame as `expression`).
    #[serde(default)]
    pub condition: Option<String>,
    /// Thread whose frame holds the locals (default with `frame`: the main thread). Each sample holds this
    /// thread only while its registers and stack are copied; the watch ends when the frame returns.
    #[serde(default, deserialize_with = "opt_int")]
    #[schemars(with = "Option<i32>")]
    pub tid: Option<i32>,
    /// Frame index in that thread, as `stack_trace` numbers them (default 0).
    #[serde(default, deserialize_with = "opt_u32")]
    #[schemars(with = "Option<u32>")]
    pub frame: Option<u32>,
    /// Seconds before the watch expires (default 600, at most 86400).
    #[serde(default, deserialize_with = "opt_u64")]
    #[schemars(with = "Option<u64>")]
    pub ttl_s: Option<u64>,
    /// How much of each value to load.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// `auto` (default). A sampled watch over globals reads memory with no thread stopped (engine `sampler`);
    /// on locals it holds the frame's thread per sample (engine `ptrace`); `uprobe` is refused for `sample`.
    /// write/access: `auto` uses a perf hardware breakpoint with a BPF program (`perf_breakpoint`, the writer
    /// never stopped) and falls back to `ptrace` where the kernel refuses perf/BPF (`engine_note` says why);
    /// `ptrace` sets the debug registers of every thread through ptrace (the writer held only for the copy;
    /// a SIGKILLed liveprobe leaves them armed, see `engine_note`); `uprobe` is the BPF engine only.
    #[serde(default)]
    pub engine: Option<crate::engine::EngineChoice>,
}
