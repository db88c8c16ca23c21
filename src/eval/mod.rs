//! The eval room: the expression language of TOOLS.md and everything needed
//! to look at one frame — parse an expression into a typed plan once, then
//! evaluate it many times against registers and memory; read the arguments
//! and locals in scope at a frame.
//!
//! It must never call ptrace or reach into the tracer, engine, MCP or policy
//! rooms: it reads the target only through [`crate::debuginfo::MemorySource`]
//! and [`crate::debuginfo::Registers`]. It never runs target code and never
//! writes target memory: calls and assignments are refused at parse time.

mod error;
mod frame;
mod location;
mod parse;

pub use error::EvalError;

use crate::debuginfo::types::TypeTable;
use crate::debuginfo::{MemorySource, ProcessImage, Registers, RuntimeAddr};
use crate::value::{Decoder, Limits, Redaction, Value};

/// Everything needed to look at one frame of a stopped (or copied) thread.
pub struct FrameContext<'a> {
    /// The process's modules and debug info.
    pub image: &'a ProcessImage,
    /// The frame's pc: for frame 0 the thread's pc, for callers the return
    /// address (see `is_caller`).
    pub pc: RuntimeAddr,
    /// The frame's registers (for callers, as recovered by the unwinder:
    /// callee-saved registers known, the others unknown).
    pub regs: &'a Registers,
    /// The frame's canonical frame address, from the unwinder.
    pub cfa: Option<u64>,
    /// True for frames > 0: `pc` is a return address and `pc - 1` is used
    /// for scope and location lookups.
    pub is_caller: bool,
    /// Which source-level frame at this pc: 0 = the innermost inlined call,
    /// then its inlining callers, the last being the out-of-line function.
    pub inline_depth: usize,
    /// The target's memory (live, or copied at a probe hit).
    pub memory: &'a dyn MemorySource,
}

/// The arguments and locals in scope at a frame, each rendered under
/// `limits` and `redaction`. Arguments come first, then locals from the
/// outermost block inwards; a variable hidden by an inner one of the same
/// name is listed as `name (shadowed)`. A value that cannot be read says why
/// (`optimized out`, `read error at 0x…`, `unsupported: …`) instead of
/// failing the call.
pub fn read_locals(
    ctx: &FrameContext<'_>,
    limits: &Limits,
    redaction: &Redaction,
) -> Result<Vec<Value>, EvalError> {
    let mut types = TypeTable::new();
    let resolved = frame::resolve(ctx, &mut types)?;
    let env = frame::location_env(ctx, &resolved, None);
    let image = ctx.image;
    let symbolize = |address: u64| frame::symbolize(image, address);
    let mut decoder = Decoder::new(
        &resolved.module,
        &mut types,
        ctx.memory,
        limits,
        redaction,
        &symbolize,
    );
    let mut values = Vec::with_capacity(resolved.scope.variables.len());
    for variable in &resolved.scope.variables {
        let name = if variable.shadowed {
            format!("{} (shadowed)", variable.name)
        } else {
            variable.name.clone()
        };
        if redaction.is_secret(&variable.name) {
            let type_name = decoder.type_name(variable.ty);
            values.push(Value::redacted(name, type_name));
            continue;
        }
        let place = location::place_of(&env, &variable.location);
        values.push(decoder.decode(&name, variable.ty, &place));
    }
    Ok(values)
}

/// The name of the function a frame is in (the inlined callee for an inlined
/// frame) and how many source-level frames share its pc.
pub fn frame_function(ctx: &FrameContext<'_>) -> Result<(String, usize), EvalError> {
    let mut types = TypeTable::new();
    let resolved = frame::resolve(ctx, &mut types)?;
    Ok((resolved.scope.function, resolved.scope.inline_frames))
}
