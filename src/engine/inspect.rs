//! `read_locals` and `evaluate`: a thread is held only while its registers
//! and stack are copied; the values are decoded from the copy (and live
//! memory for what lies beyond the stack) after it resumes.

use schemars::JsonSchema;
use serde::Serialize;

use crate::debuginfo::types::TypeTables;
use crate::eval::{self, EvalError, FrameContext};
use crate::value::{Limits, Value};

use super::frames::{CapturedThread, LiveMemory};
use super::{Engine, EngineError, STACK_COPY_BYTES};

/// Frames searched for the asked frame index.
const MAX_INSPECT_FRAMES: usize = 256;

/// Where a frame is.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FrameInfo {
    /// Frame index (0 = innermost; inlined calls count).
    pub index: usize,
    /// Function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Answer of `read_locals`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LocalsReport {
    /// Thread.
    pub tid: i32,
    /// The frame read.
    pub frame: FrameInfo,
    /// Arguments and locals in scope.
    pub variables: Vec<Value>,
    /// How long the thread was held, in microseconds.
    pub held_us: u64,
}

/// Answer of `evaluate`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EvaluateReport {
    /// The expression as asked.
    pub expression: String,
    /// Its value.
    pub value: Value,
    /// The frame it was evaluated in; absent for globals read without holding a thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameInfo>,
    /// Thread held while its registers and stack were copied, in microseconds (0 for globals).
    pub held_us: u64,
}

impl Engine {
    async fn capture_one(&self, pid: i32, tid: Option<i32>) -> Result<CapturedThread, EngineError> {
        let target = self.target(pid)?;
        let tid = tid.unwrap_or(pid);
        let mut threads = self
            .capture(&target, Some(vec![tid]), STACK_COPY_BYTES)
            .await?;
        threads
            .pop()
            .ok_or_else(|| EngineError::Internal(format!("thread {tid} was not captured")))
    }

    /// Runs `f` with the context of frame `index` of a captured thread, for
    /// a client request (with the type tables client requests share).
    pub(super) fn with_frame<R>(
        &self,
        pid: i32,
        thread: &CapturedThread,
        index: usize,
        f: impl FnOnce(&FrameContext, FrameInfo) -> R,
    ) -> Result<R, EngineError> {
        self.with_frame_in(pid, thread, index, TypeTables::shared(), f)
    }

    /// [`Engine::with_frame`] for the reader whose type tables are `types`
    /// (a watch compiles in the frame with its own).
    pub(super) fn with_frame_in<R>(
        &self,
        pid: i32,
        thread: &CapturedThread,
        index: usize,
        types: &TypeTables,
        f: impl FnOnce(&FrameContext, FrameInfo) -> R,
    ) -> Result<R, EngineError> {
        let target = self.target(pid)?;
        let image = &target.image();
        let mut seen = 0usize;
        for frame in image
            .unwind_iter(&thread.regs, &thread.memory)
            .take(MAX_INSPECT_FRAMES)
        {
            let symbols = image.symbolize(frame.pc, frame.is_caller);
            let count = symbols.len().max(1);
            if index < seen + count {
                let depth = index - seen;
                let sym = symbols.get(depth);
                let info = FrameInfo {
                    index,
                    function: sym.and_then(|s| s.function.clone()),
                    file: sym.and_then(|s| s.file.clone()),
                    line: sym.and_then(|s| s.line),
                };
                let ctx = FrameContext {
                    image,
                    pc: frame.pc,
                    regs: &frame.regs,
                    cfa: frame.cfa,
                    is_caller: frame.is_caller,
                    memory: &thread.memory,
                    inline_depth: depth,
                    types,
                };
                return Ok(f(&ctx, info));
            }
            seen += count;
        }
        Err(EngineError::BadArgument(format!(
            "thread {} has {seen} frame(s); frame must be between 0 and {} (stack_trace lists them)",
            thread.tid,
            seen.saturating_sub(1)
        )))
    }

    /// Arguments and locals of one frame.
    pub async fn read_locals(
        &self,
        pid: i32,
        tid: Option<i32>,
        frame: usize,
        limits: Limits,
    ) -> Result<LocalsReport, EngineError> {
        let thread = self.capture_one(pid, tid).await?;
        let limits = limits.clamped();
        let redaction = self.redaction.clone();
        let (variables, info) = self.with_frame(pid, &thread, frame, |ctx, info| {
            (eval::read_locals(ctx, &limits, &redaction), info)
        })?;
        let variables = variables.map_err(|e| EngineError::BadArgument(e.to_string()))?;
        Ok(LocalsReport {
            tid: thread.tid,
            frame: info,
            variables,
            held_us: thread.held_us,
        })
    }

    /// Evaluates an expression in a frame, or over globals without holding anything.
    pub async fn evaluate(
        &self,
        pid: i32,
        expression: &str,
        tid: Option<i32>,
        frame: Option<usize>,
        limits: Limits,
        globals_only: bool,
    ) -> Result<EvaluateReport, EngineError> {
        let target = self.target(pid)?;
        let limits = limits.clamped();
        if expression.trim().is_empty() {
            return Err(EngineError::BadArgument(
                "expression is empty: give e.g. `count`, `req->user.name` or `items[0]`".into(),
            ));
        }
        // Globals and statics need no thread: try that first when the
        // client named no frame.
        if globals_only || (tid.is_none() && frame.is_none()) {
            match eval::compile_global(expression, &target.image()) {
                Ok(compiled) => {
                    let value = eval::evaluate_global(
                        &compiled,
                        &target.image(),
                        &LiveMemory(&target.memory),
                        &limits,
                        &self.redaction,
                    );
                    return Ok(EvaluateReport {
                        expression: expression.to_string(),
                        value,
                        frame: None,
                        held_us: 0,
                    });
                }
                Err(e)
                    if globals_only
                        || matches!(e, EvalError::Syntax { .. } | EvalError::Refused { .. }) =>
                {
                    return Err(EngineError::BadArgument(e.to_string()));
                }
                Err(_) => {}
            }
        }
        let thread = self.capture_one(pid, tid).await?;
        let redaction = self.redaction.clone();
        let (value, info) = self.with_frame(pid, &thread, frame.unwrap_or(0), |ctx, info| {
            let value = eval::compile(expression, ctx)
                .map(|compiled| eval::evaluate(&compiled, ctx, &limits, &redaction));
            (value, info)
        })?;
        let value = value.map_err(|e| {
            EngineError::BadArgument(program_names_first(&target.image(), e).to_string())
        })?;
        Ok(EvaluateReport {
            expression: expression.to_string(),
            value,
            frame: Some(info),
            held_us: thread.held_us,
        })
    }
}

/// An unknown name's suggestions with the program's own close names first:
/// a thread asleep in libc has libc's scope, whose internals
/// (`__pthread_mutex_cond_lock::max_cnt`) are not what a person misspelt;
/// the executable's globals and statics within a few edits are.
pub(super) fn program_names_first(
    image: &crate::debuginfo::ProcessImage,
    error: EvalError,
) -> EvalError {
    let EvalError::UnknownName {
        name,
        column,
        in_scope,
    } = error
    else {
        return error;
    };
    let Some(main) = image.main_module() else {
        return EvalError::UnknownName {
            name,
            column,
            in_scope,
        };
    };
    let wanted = name
        .rsplit("::")
        .next()
        .unwrap_or(&name)
        .to_ascii_lowercase();
    let most = 2.max(wanted.len() / 3);
    let mut close: Vec<(usize, String)> = crate::debuginfo::scope::GlobalIndex::of(main)
        .names()
        .filter_map(|g| {
            let last = g.rsplit("::").next().unwrap_or(g).to_ascii_lowercase();
            let d = edit_distance(&last, &wanted);
            (d <= most || (wanted.len() >= 3 && last.contains(&wanted))).then(|| (d, g.to_string()))
        })
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    let mut ranked: Vec<String> = close.into_iter().take(5).map(|(_, n)| n).collect();
    for n in in_scope {
        if !ranked.contains(&n) {
            ranked.push(n);
        }
    }
    EvalError::UnknownName {
        name,
        column,
        in_scope: ranked,
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
