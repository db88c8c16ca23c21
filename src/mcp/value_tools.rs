//! Tools that read state now: `read_locals` and `evaluate`.

use std::time::Instant;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::args::*;
use super::{LiveprobeServer, budget};
use crate::engine::{EvaluateReport, LocalsReport};

#[tool_router(router = value_tools, vis = "pub(super)")]
impl LiveprobeServer {
    #[tool(
        description = "Arguments and locals in scope at one frame of a thread (default: frame 0 of the main thread), with lexical blocks, inlined calls and shadowing respected. Values are cut to `limits` (default depth 3, max_string 256, max_items 50) and marked `truncated`; secret-looking names are redacted; a value that cannot be read says why. The thread is held only while its registers and stack are copied.",
        output_schema = schema_for_output::<LocalsReport>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_locals(&self, Parameters(a): Parameters<ReadLocalsArgs>) -> CallToolResult {
        let started = Instant::now();
        let budget = budget::budget(a.max_bytes);
        let answer = self
            .engine
            .read_locals(
                a.pid,
                a.tid,
                a.frame.unwrap_or(0) as usize,
                a.limits.unwrap_or_default(),
            )
            .await;
        self.reply_within(
            "read_locals",
            started,
            answer,
            budget,
            "evaluate a cut variable or member by its expression (e.g. `req.headers`, `v[10]`) with its own limits, or raise max_bytes",
        )
    }

    #[tool(
        description = "Evaluate a side-effect-free expression (C/Rust flavoured: names, `a.b`, `p->f`, `a[i]`, `*p`, `&x`, arithmetic, comparisons, `&&`/`||`, casts to base types, literals, `len(x)`; no calls, no assignment) in a frame of a thread, or over globals and statics without holding any thread. A syntax error names the column; an unknown name lists the names in scope.",
        output_schema = schema_for_output::<EvaluateReport>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn evaluate(&self, Parameters(a): Parameters<EvaluateArgs>) -> CallToolResult {
        let started = Instant::now();
        let budget = budget::budget(a.max_bytes);
        let answer = self
            .engine
            .evaluate(
                a.pid,
                &a.expression,
                a.tid,
                a.frame.map(|f| f as usize),
                a.limits.unwrap_or_default(),
                a.globals_only.unwrap_or(false),
            )
            .await;
        self.reply_within(
            "evaluate",
            started,
            answer,
            budget,
            "evaluate the cut member by a longer expression (e.g. `x.field`, `v[10]`, `*p`), or raise max_bytes",
        )
    }
}
