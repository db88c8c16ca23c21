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
