//! The answers the engine gives, as plain data. They are serialized as the
//! tools' `structuredContent`, so their field names are the contract of
//! TOOLS.md: add fields freely, never rename or drop one.

use schemars::JsonSchema;
use serde::Serialize;

/// One process on the machine, as `list_processes` shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProcessRow {
    /// Process id.
    pub pid: i32,
    /// Short name (`/proc/PID/comm`).
    pub name: String,
    /// Path of the executable, when it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Command line, arguments separated by spaces.
    pub cmdline: String,
    /// Owner's user name.
    pub user: String,
    /// Whether liveprobe may attach to it.
    pub attachable: bool,
    /// Why it may not be attached, when it may not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True when this liveprobe is attached to it already.
    pub attached: bool,
}

/// Answer of `list_processes`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProcessList {
    /// Matching processes, lowest pid first.
    pub processes: Vec<ProcessRow>,
    /// How many matched before the list was cut to `limit`.
    pub total: usize,
}

/// Where the debug info of the main executable came from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DebugInfoReport {
    /// Whether DWARF was found for the executable.
    pub found: bool,
    /// The file the DWARF was read from (the executable itself, or a separate debug file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What to do when it was not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Answer of `attach`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AttachReport {
    /// The target process.
    pub pid: i32,
    /// Its executable.
    pub exe: String,
    /// GNU build id of the executable, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Number of threads seized.
    pub threads: usize,
    /// Source languages found in the debug info (`c`, `c++`, `rust`, ...),
    /// and `go` for a Go program (detected from its sections or symbols).
    pub languages: Vec<String>,
    /// What the agent must know before trusting answers on this target,
    /// such as a language liveprobe does not support yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Debug info of the executable.
    pub debug_info: DebugInfoReport,
    /// Modules (executable and shared libraries) loaded, and how many of them have DWARF.
    pub modules: usize,
    /// Modules with DWARF.
    pub modules_with_debug_info: usize,
    /// Wall time of the attach, in milliseconds.
    pub attach_ms: f64,
    /// Total time any target thread was held by the attach, in microseconds.
    pub held_us: u64,
    /// True when the target was already attached and this call changed nothing.
    pub already_attached: bool,
}

/// Answer of `detach`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DetachReport {
    /// The process that was released.
    pub pid: i32,
    /// Probes removed from it.
    pub probes_removed: usize,
}

/// One thread of a target, as `list_threads` shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ThreadRow {
    /// Thread id.
    pub tid: i32,
    /// Thread name.
    pub name: String,
    /// Kernel scheduling state (`running`, `sleeping`, `disk-wait`, `stopped`, ...).
    pub state: String,
    /// Function of the innermost frame in the program's own code (not a system
    /// library), or of the innermost frame when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file of that frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line of that frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The innermost function when it differs from `function` (for example the
    /// libc call the thread is blocked in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub innermost: Option<String>,
}

/// Answer of `list_threads`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ThreadList {
    /// The target process.
    pub pid: i32,
    /// Its threads, main thread first.
    pub threads: Vec<ThreadRow>,
}

/// One frame of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FrameRow {
    /// 0 is the innermost frame. Inlined calls are frames of their own.
    pub index: usize,
    /// Program counter, hex. For caller frames, the return address.
    pub pc: String,
    /// Demangled function name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// True for a call that the compiler inlined into the frame below it.
    pub inlined: bool,
    /// Module (executable or shared library) file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// True when the frame is in the program's own code rather than a system library.
    #[serde(skip)]
    pub own_code: bool,
}

/// The stack of one thread.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ThreadStack {
    /// Thread id.
    pub tid: i32,
    /// Thread name.
    pub name: String,
    /// Frames, innermost first.
    pub frames: Vec<FrameRow>,
    /// True when `max_frames` cut the stack.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// How long the thread was held to copy its registers and stack, in microseconds.
    pub held_us: u64,
}

/// Answer of `stack_trace`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StackReport {
    /// The target process.
    pub pid: i32,
    /// One entry per thread asked for.
    pub threads: Vec<ThreadStack>,
}

/// One function that matched a query.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FunctionRow {
    /// Demangled, qualified name.
    pub name: String,
    /// Source file of its declaration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line of its declaration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Entry address in the running process, hex.
    pub address: String,
    /// Parameter types, `(int, std::string const&)`, where the symbol carries
    /// them (C++): tells overloads apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Answer of `find_functions`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FunctionList {
    /// Matches: the program's own functions first (exact name, then prefix,
    /// whole word, substring), standard-library and compiler-generated ones last.
    pub functions: Vec<FunctionRow>,
    /// True when `limit` cut the list.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One source line.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SourceLine {
    /// 1-based line number.
    pub line: u32,
    /// The text, without its newline.
    pub text: String,
    /// True where a probe can go (the line has statement rows in the line table).
    pub code: bool,
}

/// Answer of `list_source`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SourceListing {
    /// Full path of the file as the debug info names it.
    pub file: String,
    /// The lines shown.
    pub lines: Vec<SourceLine>,
    /// Lines in the whole file.
    pub total_lines: usize,
    /// True when the file was modified after the binary was built: lines may not match the code.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// One address a location resolved to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResolvedSiteRow {
    /// Site number: its place in the location's full list of sites (what `sites` chooses, and what each
    /// hit's `site` names).
    pub site: usize,
    /// Runtime address, hex.
    pub address: String,
    /// The function the site belongs to, full name (template arguments, monomorphized Rust path); for an
    /// inlined copy, the inlined function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// For an inlined copy: the function it was inlined into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inlined_into: Option<String>,
    /// Source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// True for an inlined copy.
    pub inlined: bool,
}

/// Answer of `resolve_location`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LocationReport {
    /// The location as asked.
    pub location: String,
    /// Every address it covers (inlined copies, generic instances, several units).
    pub resolved: Vec<ResolvedSiteRow>,
    /// What was adjusted, e.g. "line 41 has no code; using 42".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
