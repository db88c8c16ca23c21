//! liveprobe: an MCP server that lets AI agents question running native
//! processes — threads, stacks, locals, expressions and non-breaking probes —
//! over ptrace and DWARF, without stopping the service.
//!
//! Rooms and their one-way doors (see DESIGN.md):
//! `mcp -> engine -> tracer`, `engine -> eval -> value -> debuginfo`,
//! `engine -> policy`.

pub mod addr;
pub mod debuginfo;
pub mod engine;
pub mod eval;
pub mod mcp;
pub mod own_tasks;
pub mod policy;
pub mod procmaps;
pub mod tracer;
pub mod value;

/// mimalloc, not glibc's malloc: the tracer task (`tracer::guardian`) must
/// go on allocating after liveprobe's other threads were killed at any
/// instant. glibc locks an arena to free a chunk another thread allocated
/// (the hit worker frees every hit the tracer queues), so a thread killed
/// inside `free` left the tracer blocked forever on that arena's lock, with
/// every target thread stopped. mimalloc's heaps are per thread and a free
/// from another thread is an atomic push: no lock to be left held.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
