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
mod exec;
mod frame;
mod location;
mod parse;
#[cfg(test)]
mod parse_fuzz;
mod plan;
mod symbolic;

pub use error::EvalError;

use std::sync::{Arc, Mutex, Weak};

use crate::debuginfo::scope::VariableLocation;
use crate::debuginfo::types::{Language, TypeTable, TypeTables};
use crate::debuginfo::{FileAddr, MemorySource, Module, ProcessImage, Registers, RuntimeAddr};
use crate::value::room::{PlanRefusal, ReadRequests, SymAddr};
use crate::value::{Decoder, Limits, Redaction, Unavailable, Unsupported, Value};

use location::LocationEnv;
use plan::{Compiler, Node, Scope, StaticType};

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
    /// The type tables of whoever reads the frame: a probe's or a watch's
    /// own at its hits and samples, [`TypeTables::shared`] for client
    /// requests. Every decode, compile and evaluation at this frame locks
    /// only these, so a hit never waits for a client's decode.
    pub types: &'a TypeTables,
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
    let table = ctx.types.table_for(frame::module_of(ctx)?);
    let mut types = lock(&table);
    let resolved = frame::resolve(ctx, &mut types)?;
    let entry_values = frame::CallerEntryValues { ctx };
    let env = frame::location_env(ctx, &resolved, Some(&entry_values));
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
        if let Some(reason) = frame::not_yet_initialized(ctx, &resolved, variable) {
            let type_name = decoder.type_name(variable.ty);
            values.push(Value::unavailable(name, type_name, reason));
            continue;
        }
        let place = location::place_of(&env, &variable.location);
        let mut value = decoder.decode(&name, variable.ty, &place);
        // Map keys and credential-looking text, before the value is kept.
        value.redact(redaction);
        values.push(value);
    }
    Ok(values)
}

/// The name of the function a frame is in (the inlined callee for an inlined
/// frame) and how many source-level frames share its pc.
pub fn frame_function(ctx: &FrameContext<'_>) -> Result<(String, usize), EvalError> {
    let table = ctx.types.table_for(frame::module_of(ctx)?);
    let mut types = lock(&table);
    let resolved = frame::resolve(ctx, &mut types)?;
    Ok((resolved.scope.function, resolved.scope.inline_frames))
}

/// Locks a type table; a panic elsewhere cannot leave a table half-updated
/// in a way that matters (entries are inserted whole), so poison is ignored.
fn lock(table: &Mutex<TypeTable>) -> std::sync::MutexGuard<'_, TypeTable> {
    match table.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Where a compiled expression was compiled: the frame it reads locals from.
#[derive(Debug)]
struct CompiledFrame {
    lookup_pc: FileAddr,
    inline_depth: usize,
    unit: usize,
    frame_base: VariableLocation,
}

/// An expression parsed, resolved and type-checked once, to be evaluated
/// many times (probe conditions run it at every hit). `Send + Sync`.
///
/// A plan compiled for a frame is tied to that frame's pc: evaluated at
/// another pc it is compiled again on the fly (correct, but slower).
pub struct CompiledExpr {
    source: String,
    plan: Node,
    module: Arc<Module>,
    frame: Option<CompiledFrame>,
    language: Language,
    names: Vec<String>,
    /// The type of every step of the expression (`--redact-type`).
    type_names: Vec<String>,
    type_name: String,
    /// True when the result can serve as a condition (decided at compile
    /// time, with the compiling reader's table).
    scalar: bool,
    /// The module's table of the reader that compiled it (a probe's own for
    /// a probe's expression): evaluation over globals only
    /// ([`evaluate_global`]) uses it; evaluation at a frame uses the
    /// frame's reader's ([`FrameContext::types`]). Held weakly: the reader
    /// owns its tables, and an expression kept after its probe ended (in
    /// results not read yet) must not keep them.
    types: Weak<Mutex<TypeTable>>,
}

impl std::fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledExpr")
            .field("source", &self.source)
            .field("type", &self.type_name)
            .field("frame", &self.frame)
            .finish()
    }
}

impl CompiledExpr {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static type of the result, as the source would spell it.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// True when the result is a boolean or number, so it can serve as a
    /// condition.
    pub fn is_scalar(&self) -> bool {
        self.scalar
    }

    fn secret(&self, redaction: &Redaction) -> bool {
        self.names.iter().any(|name| redaction.is_secret(name))
            || self.secret_type(redaction).is_some()
    }

    /// The first step of the expression whose type (or pointee type: `p->f`
    /// reads through `p`) is hidden by `--redact-type`.
    fn secret_type(&self, redaction: &Redaction) -> Option<&str> {
        self.type_names
            .iter()
            .find(|name| {
                let pointee = name.trim_end_matches(['*', '&', ' ']);
                redaction.is_secret_type(name) || redaction.is_secret_type(pointee)
            })
            .map(String::as_str)
    }

    /// The first name the expression reads whose name looks secret, if any:
    /// the engine refuses such conditions, which would leak a bit per hit.
    pub fn secret_name(&self, redaction: &Redaction) -> Option<&str> {
        self.names
            .iter()
            .find(|name| redaction.is_secret(name))
            .map(String::as_str)
            .or_else(|| self.secret_type(redaction))
    }
}

/// True when a plan's result is a boolean or number (see
/// [`CompiledExpr::is_scalar`]).
fn plan_is_scalar(types: &mut TypeTable, module: &Module, plan: &Node) -> bool {
    match plan.ty {
        StaticType::Text => false,
        StaticType::Dwarf(_) => matches!(
            plan::class_of(types, module, &plan.ty),
            plan::Class::Int { .. }
                | plan::Class::Float { .. }
                | plan::Class::Bool
                | plan::Class::Char { .. }
                | plan::Class::Pointer { .. }
        ),
        _ => true,
    }
}

/// Parses and compiles `expression` for the frame `ctx`: locals and
/// arguments in scope there first, then globals and statics. Errors name the
/// column; an unknown name lists the names in scope.
pub fn compile(expression: &str, ctx: &FrameContext<'_>) -> Result<CompiledExpr, EvalError> {
    match compile_in_frame(expression, ctx) {
        Ok(compiled) => Ok(compiled),
        // The frame may be in a library (a thread blocked in libc) whose
        // debug info, if any, does not know the program's globals: look
        // them up in the executable's units, then the other modules.
        Err(error) if is_lookup_miss(&error) || matches!(error, EvalError::NoDebugInfo { .. }) => {
            match compile_global_in(expression, ctx.image, ctx.types) {
                Ok(compiled) => Ok(compiled),
                Err(global_error) => {
                    let frame_in_main = frame::module_of(ctx).ok().is_some_and(|module| {
                        ctx.image
                            .main_module()
                            .is_some_and(|main| Arc::ptr_eq(main, module))
                    });
                    // The answer that got further wins (the globals knew
                    // every name but a type did not fit); a frame without
                    // debug info says so; between two unknown names,
                    // suggest the program's own names when the frame is
                    // elsewhere.
                    let frame_has_no_dwarf = matches!(error, EvalError::NoDebugInfo { .. });
                    let frame_got_further = !is_lookup_miss(&error) && !frame_has_no_dwarf;
                    let globals_got_further = !is_lookup_miss(&global_error);
                    if frame_got_further {
                        Err(error)
                    } else if globals_got_further {
                        Err(global_error)
                    } else if frame_has_no_dwarf || frame_in_main {
                        Err(error)
                    } else {
                        Err(global_error)
                    }
                }
            }
        }
        Err(error) => Err(error),
    }
}

fn compile_in_frame(expression: &str, ctx: &FrameContext<'_>) -> Result<CompiledExpr, EvalError> {
    // Syntax errors first, whatever the frame: they need no debug info.
    parse::parse_with_types(expression, &mut |_| false)?;
    let table = ctx.types.table_for(frame::module_of(ctx)?);
    let mut types = lock(&table);
    let resolved = frame::resolve(ctx, &mut types)?;
    let locals: Vec<(
        String,
        Option<crate::debuginfo::types::TypeKey>,
        VariableLocation,
    )> = resolved
        .scope
        .variables
        .iter()
        .filter(|v| !v.shadowed)
        .map(|v| (v.name.clone(), v.ty, v.location.clone()))
        .collect();
    // A local whose declaration has not run yet reads as unavailable.
    let not_yet: Vec<(String, Unavailable)> = resolved
        .scope
        .variables
        .iter()
        .filter(|v| !v.shadowed)
        .filter_map(|v| {
            frame::not_yet_initialized(ctx, &resolved, v).map(|reason| (v.name.clone(), reason))
        })
        .collect();
    let parsed = {
        let module = &resolved.module;
        let unit = Some(resolved.scope.unit);
        let local_names: Vec<&str> = locals.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut is_type =
            |name: &str| plan::names_a_type(&mut types, module, unit, &local_names, name);
        parse::parse_with_types(expression, &mut is_type)?
    };
    let language = resolved.scope.language;
    let scope = Scope {
        locals,
        not_yet,
        module: &resolved.module,
        language,
        unit: Some(resolved.scope.unit),
    };
    let mut compiler = Compiler::new(scope, &mut types);
    let plan = compiler.compile(&parsed)?;
    let names = std::mem::take(&mut compiler.names);
    let mut node_types = Vec::new();
    plan::node_types(&plan, &mut node_types);
    // Type names ride along with the names read; `secret` tells them apart.
    let type_names: Vec<String> = node_types
        .into_iter()
        .map(|t| compiler.type_name(t))
        .collect();
    let type_name = compiler.type_name(&plan.ty);
    drop(compiler);
    let scalar = plan_is_scalar(&mut types, &resolved.module, &plan);
    Ok(CompiledExpr {
        source: expression.to_string(),
        plan,
        module: resolved.module.clone(),
        frame: Some(CompiledFrame {
            lookup_pc: resolved.lookup_pc,
            inline_depth: ctx.inline_depth,
            unit: resolved.scope.unit,
            frame_base: resolved.scope.frame_base.clone(),
        }),
        language,
        names,
        type_names,
        type_name,
        scalar,
        types: Arc::downgrade(&table),
    })
}

/// Evaluates a compiled expression at a frame. A failure (unmapped memory,
/// a register the frame does not have, division by zero) is a value whose
/// `unavailable` says why; values of secret-looking names are redacted.
pub fn evaluate(
    expr: &CompiledExpr,
    ctx: &FrameContext<'_>,
    limits: &Limits,
    redaction: &Redaction,
) -> Value {
    if expr.secret(redaction) {
        return Value::redacted(expr.source.clone(), expr.type_name.clone());
    }
    let mut value = with_operand(expr, ctx, |types, result| match result {
        Ok(operand) => {
            let symbolize = |address: u64| frame::symbolize(ctx.image, address);
            let mut decoder = Decoder::new(
                &expr.module,
                types,
                ctx.memory,
                limits,
                redaction,
                &symbolize,
            );
            exec::render(
                &mut decoder,
                &expr.source,
                operand,
                &expr.plan.ty,
                expr.type_name.clone(),
                expr.language,
            )
        }
        Err(reason) => Value::unavailable(expr.source.clone(), expr.type_name.clone(), reason),
    });
    // Map keys and credential-looking text, before the value is kept.
    value.redact(redaction);
    value
}

/// A probe site as the capture planner sees it: where it is, and its CFA
/// as the site's unwind rule gives it (register + offset), or why not.
pub struct PlanSite<'a> {
    /// The process's modules and debug info.
    pub image: &'a ProcessImage,
    /// The site's address (frame 0, innermost inlined frame).
    pub pc: RuntimeAddr,
    /// The canonical frame address at the site, symbolically.
    pub cfa: Result<SymAddr, PlanRefusal>,
    /// The type tables of the probe being planned (its own: planning at set
    /// time warms them for its hits).
    pub types: &'a TypeTables,
}

/// Memory for resolving a site's scope without reading the target.
struct NoMemory;

impl MemorySource for NoMemory {
    fn read_memory(&self, addr: u64, _buf: &mut [u8]) -> Result<(), crate::debuginfo::MemoryError> {
        Err(crate::debuginfo::MemoryError { addr })
    }
}

/// Plans the reads of evaluating `expr` as a condition or a number at
/// `site`. Both sides of `&&` and `||` are planned: a hit may take either.
pub fn plan_number(
    expr: &CompiledExpr,
    site: &PlanSite<'_>,
    requests: &mut dyn ReadRequests,
) -> Result<(), PlanRefusal> {
    with_symbolic(expr, site, requests, |executor, plan| {
        executor.plan_number(plan)
    })
}

/// Plans the reads of evaluating `expr` at `site` and rendering its value
/// under `limits` (as [`evaluate`] does at a hit).
pub fn plan_evaluate(
    expr: &CompiledExpr,
    site: &PlanSite<'_>,
    limits: &Limits,
    redaction: &Redaction,
    requests: &mut dyn ReadRequests,
) -> Result<(), PlanRefusal> {
    if expr.secret(redaction) {
        return Ok(());
    }
    let language = expr.language;
    with_symbolic(expr, site, requests, |executor, plan| {
        executor.plan_render(plan, limits, redaction, language)
    })
}

/// Plans the reads of [`read_locals`] at `site` (frame 0, innermost
/// inlined frame) under `limits`.
pub fn plan_locals(
    site: &PlanSite<'_>,
    limits: &Limits,
    redaction: &Redaction,
    requests: &mut dyn ReadRequests,
) -> Result<(), PlanRefusal> {
    plan_each_local(site, limits, redaction, requests, true)
}

/// Plans the reads of each local at `site` on its own, going on past one
/// that cannot be planned, for what planning leaves in `site.types`: the
/// scope and the types a read of the locals decodes. A probe whose capture
/// cannot be planned warms its own tables so when it is set, so its first
/// hit (with a thread held) does not decode them.
pub fn warm_locals(
    site: &PlanSite<'_>,
    limits: &Limits,
    redaction: &Redaction,
    requests: &mut dyn ReadRequests,
) {
    // Refusals were already reported by planning; this only fills tables.
    let _ = plan_each_local(site, limits, redaction, requests, false);
}

fn plan_each_local(
    site: &PlanSite<'_>,
    limits: &Limits,
    redaction: &Redaction,
    requests: &mut dyn ReadRequests,
    stop_at_refusal: bool,
) -> Result<(), PlanRefusal> {
    let regs = Registers::default();
    let ctx = site_context(site, &regs);
    let Ok(module) = frame::module_of(&ctx) else {
        return Ok(());
    };
    let table = site.types.table_for(module);
    let mut types = lock(&table);
    let Ok(resolved) = frame::resolve(&ctx, &mut types) else {
        return Ok(());
    };
    let env = symbolic::SymLocationEnv {
        module: &resolved.module,
        unit: resolved.unit.clone(),
        frame_base: None,
        cfa: site.cfa.clone(),
    }
    .with_frame_base(&resolved.scope.frame_base, requests);
    for variable in &resolved.scope.variables {
        if redaction.is_secret(&variable.name)
            || frame::not_yet_initialized(&ctx, &resolved, variable).is_some()
        {
            continue;
        }
        let planned = symbolic::place_of(&env, &variable.location, requests).and_then(|place| {
            let mut room = crate::value::room::ValueRoom {
                module: &resolved.module,
                types: &mut types,
                limits,
                redaction,
                requests,
            };
            room.value(&variable.name, variable.ty, &place, limits.depth)
        });
        if stop_at_refusal {
            planned?;
        }
    }
    Ok(())
}

/// A frame context of the site for scope lookups only (no registers, no
/// memory: nothing is read).
fn site_context<'a>(site: &PlanSite<'a>, regs: &'a Registers) -> FrameContext<'a> {
    FrameContext {
        image: site.image,
        pc: site.pc,
        regs,
        cfa: None,
        is_caller: false,
        inline_depth: 0,
        memory: &NoMemory,
        types: site.types,
    }
}

/// Runs `f` on a symbolic executor of `expr`'s plan at `site` (compiling
/// the expression again when it was compiled for another pc, as
/// evaluation would).
fn with_symbolic(
    expr: &CompiledExpr,
    site: &PlanSite<'_>,
    requests: &mut dyn ReadRequests,
    f: impl FnOnce(&mut symbolic::SymExecutor<'_>, &Node) -> Result<(), PlanRefusal>,
) -> Result<(), PlanRefusal> {
    with_symbolic_at(expr, site, requests, f, true)
}

fn with_symbolic_at(
    expr: &CompiledExpr,
    site: &PlanSite<'_>,
    requests: &mut dyn ReadRequests,
    f: impl FnOnce(&mut symbolic::SymExecutor<'_>, &Node) -> Result<(), PlanRefusal>,
    may_recompile: bool,
) -> Result<(), PlanRefusal> {
    let table = site.types.table_for(&expr.module);
    let mut types = lock(&table);
    let Some(compiled_frame) = &expr.frame else {
        let mut executor = symbolic::SymExecutor {
            module: &expr.module,
            types: &mut types,
            frame: None,
            requests,
            source: &expr.source,
        };
        return f(&mut executor, &expr.plan);
    };
    let same_frame = site
        .image
        .module_for(site.pc)
        .is_some_and(|m| Arc::ptr_eq(m, &expr.module))
        && expr.module.to_file(site.pc) == compiled_frame.lookup_pc
        && compiled_frame.inline_depth == 0;
    if !same_frame {
        drop(types);
        if !may_recompile {
            return Ok(());
        }
        let regs = Registers::default();
        let ctx = site_context(site, &regs);
        return match compile(&expr.source, &ctx) {
            Ok(recompiled) => with_symbolic_at(&recompiled, site, requests, f, false),
            // Evaluation at the hit fails the same way: nothing to read.
            Err(_) => Ok(()),
        };
    }
    let Some(unit) = expr
        .module
        .unit_at(gimli::DebugInfoOffset(compiled_frame.unit))
    else {
        return Ok(());
    };
    let env = symbolic::SymLocationEnv {
        module: &expr.module,
        unit,
        frame_base: None,
        cfa: site.cfa.clone(),
    }
    .with_frame_base(&compiled_frame.frame_base, requests);
    let mut executor = symbolic::SymExecutor {
        module: &expr.module,
        types: &mut types,
        frame: Some(&env),
        requests,
        source: &expr.source,
    };
    f(&mut executor, &expr.plan)
}

/// Evaluates a compiled expression as a condition (probes evaluate it at
/// every hit, with the thread held): true when it is a non-zero number, a
/// true boolean or a non-null pointer. No value is built or rendered.
/// Conditions read the frame without redaction because their result never
/// leaves liveprobe as a value.
pub fn evaluate_condition(expr: &CompiledExpr, ctx: &FrameContext<'_>) -> Result<bool, EvalError> {
    evaluate_number_inner(expr, ctx).map(|number| number.truthy())
}

/// Evaluates a compiled expression to a number (for histograms).
pub fn evaluate_number(expr: &CompiledExpr, ctx: &FrameContext<'_>) -> Result<f64, EvalError> {
    evaluate_number_inner(expr, ctx).map(|number| number.as_f64())
}

fn evaluate_number_inner(
    expr: &CompiledExpr,
    ctx: &FrameContext<'_>,
) -> Result<plan::Number, EvalError> {
    let unavailable = |reason: Unavailable| EvalError::Unavailable {
        expression: expr.source.clone(),
        reason,
    };
    with_operand(expr, ctx, |types, result| {
        let operand = result.map_err(unavailable)?;
        exec::operand_number(&expr.module, types, ctx.memory, operand).map_err(unavailable)
    })
}

/// Evaluates the plan at `ctx` (compiling again if `ctx` is another pc)
/// and hands the operand, with the type table, to `finish`.
fn with_operand<T>(
    expr: &CompiledExpr,
    ctx: &FrameContext<'_>,
    finish: impl FnOnce(&mut TypeTable, Result<exec::Operand, Unavailable>) -> T,
) -> T {
    // The frame's reader's table, not the compiler's: a client rendering a
    // probe's copy must not lock the table the probe's hits use.
    let table = ctx.types.table_for(&expr.module);
    let mut types = lock(&table);
    let Some(compiled_frame) = &expr.frame else {
        let result = run_plan(
            expr,
            &mut types,
            ctx.image,
            ctx.memory,
            None,
            Some(ctx.regs),
        );
        return finish(&mut types, result);
    };
    let pc = frame::lookup_pc(ctx);
    let same_frame = ctx
        .image
        .module_for(pc)
        .is_some_and(|m| Arc::ptr_eq(m, &expr.module))
        && expr.module.to_file(pc) == compiled_frame.lookup_pc
        && ctx.inline_depth == compiled_frame.inline_depth;
    if !same_frame {
        drop(types);
        return match compile(&expr.source, ctx) {
            Ok(recompiled) => with_operand(&recompiled, ctx, finish),
            Err(error) => {
                let mut scratch = TypeTable::new();
                let error = error.to_string();
                finish(
                    &mut scratch,
                    Err(Unsupported::NotCompilableHere { error }.into()),
                )
            }
        };
    }
    let entry_values = frame::CallerEntryValues { ctx };
    let Some(unit) = expr
        .module
        .unit_at(gimli::DebugInfoOffset(compiled_frame.unit))
    else {
        return finish(&mut types, Err(Unsupported::FrameUnitUnreadable.into()));
    };
    let mut env = LocationEnv {
        module: &expr.module,
        unit,
        regs: Some(ctx.regs),
        cfa: ctx.cfa,
        frame_base: None,
        memory: ctx.memory,
        entry_values: Some(&entry_values),
        tls: ctx.regs.fs_base().map(|fs_base| (ctx.image, fs_base)),
    };
    env.frame_base = Some(location::frame_base_of(&env, &compiled_frame.frame_base));
    let result = run_plan(
        expr,
        &mut types,
        ctx.image,
        ctx.memory,
        Some(&env),
        Some(ctx.regs),
    );
    finish(&mut types, result)
}

/// Compiles an expression over globals and statics only (no thread needs to
/// be stopped) for a client request (with [`TypeTables::shared`]): names are
/// looked up in the executable first, then in the other modules with debug
/// info.
pub fn compile_global(expression: &str, image: &ProcessImage) -> Result<CompiledExpr, EvalError> {
    compile_global_in(expression, image, TypeTables::shared())
}

/// [`compile_global`] for the reader whose tables are `tables` (a watch
/// compiles with its own).
pub fn compile_global_in(
    expression: &str,
    image: &ProcessImage,
    tables: &TypeTables,
) -> Result<CompiledExpr, EvalError> {
    parse::parse_with_types(expression, &mut |_| false)?;
    let mut modules: Vec<&Arc<Module>> = Vec::new();
    if let Some(main) = image.main_module() {
        modules.push(main);
    }
    for module in image.modules() {
        if !modules.iter().any(|m| Arc::ptr_eq(m, module)) {
            modules.push(module);
        }
    }
    let mut first_error = None;
    for module in modules {
        if module.dwarf().is_none() {
            continue;
        }
        let table = tables.table_for(module);
        let mut types = lock(&table);
        let parsed = parse::parse_with_types(expression, &mut |name: &str| {
            plan::names_a_type(&mut types, module, None, &[], name)
        })?;
        let language = Language::C;
        let scope = Scope {
            locals: Vec::new(),
            not_yet: Vec::new(),
            module,
            language,
            unit: None,
        };
        let mut compiler = Compiler::new(scope, &mut types);
        match compiler.compile(&parsed) {
            Ok(plan) => {
                let names = std::mem::take(&mut compiler.names);
                let mut node_types = Vec::new();
                plan::node_types(&plan, &mut node_types);
                // Type names ride along with the names read; `secret` tells them apart.
                let type_names: Vec<String> = node_types
                    .into_iter()
                    .map(|t| compiler.type_name(t))
                    .collect();
                let language = plan_language(&mut types, module, &plan).unwrap_or(language);
                let type_name = plan::static_type_name(&mut types, module, &plan.ty, language);
                let scalar = plan_is_scalar(&mut types, module, &plan);
                return Ok(CompiledExpr {
                    source: expression.to_string(),
                    plan,
                    module: module.clone(),
                    frame: None,
                    language,
                    names,
                    type_names,
                    type_name,
                    scalar,
                    types: Arc::downgrade(&table),
                });
            }
            // A name unknown here, or ambiguous in a library, may still be
            // found in another module; the executable's answer comes first.
            Err(error @ (EvalError::UnknownName { .. } | EvalError::Type { .. }))
                if is_lookup_miss(&error) =>
            {
                first_error.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(first_error.unwrap_or_else(|| EvalError::NoDebugInfo {
        pc: 0,
        detail: "no module of the process has DWARF debug info; rebuild with -g or install debug symbols".to_string(),
    }))
}

/// True for errors that mean "not (only) here": an unknown name, or a
/// name several statics share.
fn is_lookup_miss(error: &EvalError) -> bool {
    match error {
        EvalError::UnknownName { .. } => true,
        EvalError::Type { message, .. } => message.contains("is ambiguous"),
        _ => false,
    }
}

/// The language of the first DWARF-typed operand of a plan.
fn plan_language(types: &mut TypeTable, module: &Module, plan: &Node) -> Option<Language> {
    match &plan.ty {
        StaticType::Dwarf(key) => Some(types.get(module, *key).language),
        _ => None,
    }
}

/// Evaluates an expression over globals with no thread stopped: memory is
/// read live, anything that needs registers is reported unavailable.
pub fn evaluate_global(
    expr: &CompiledExpr,
    image: &ProcessImage,
    memory: &dyn MemorySource,
    limits: &Limits,
    redaction: &Redaction,
) -> Value {
    if expr.secret(redaction) {
        return Value::redacted(expr.source.clone(), expr.type_name.clone());
    }
    // The compiling reader's table, or (that reader gone) client requests'.
    let table = expr
        .types
        .upgrade()
        .unwrap_or_else(|| TypeTables::shared().table_for(&expr.module));
    let mut types = lock(&table);
    let result = run_plan(expr, &mut types, image, memory, None, None);
    let mut value = match result {
        Ok(operand) => {
            let symbolize = |address: u64| frame::symbolize(image, address);
            let mut decoder = Decoder::new(
                &expr.module,
                &mut types,
                memory,
                limits,
                redaction,
                &symbolize,
            );
            exec::render(
                &mut decoder,
                &expr.source,
                operand,
                &expr.plan.ty,
                expr.type_name.clone(),
                expr.language,
            )
        }
        Err(reason) => Value::unavailable(expr.source.clone(), expr.type_name.clone(), reason),
    };
    value.redact(redaction);
    value
}

/// Runs the plan's nodes; globals get an environment of their own unit.
fn run_plan(
    expr: &CompiledExpr,
    types: &mut TypeTable,
    image: &ProcessImage,
    memory: &dyn MemorySource,
    frame_env: Option<&LocationEnv<'_>>,
    regs: Option<&Registers>,
) -> Result<exec::Operand, Unavailable> {
    let module = &expr.module;
    let tls = regs
        .and_then(|r| r.fs_base())
        .map(|fs_base| (image, fs_base));
    let global_env = |unit: usize| -> Option<LocationEnv<'_>> {
        Some(LocationEnv {
            module,
            unit: module.unit_at(gimli::DebugInfoOffset(unit))?,
            regs,
            cfa: None,
            frame_base: None,
            memory,
            entry_values: None,
            tls,
        })
    };
    let mut executor = exec::Executor {
        module,
        types,
        memory,
        frame: frame_env,
        global_env: &global_env,
    };
    executor.eval(&expr.plan)
}

/// The names and types of the arguments and locals in scope at `pc` (a
/// probe site, frame 0), without reading the target: for `dry_run` answers
/// and for suggesting what a condition can use.
pub fn variables_in_scope(image: &ProcessImage, pc: RuntimeAddr) -> Vec<(String, String)> {
    let Some(module) = image.module_for(pc) else {
        return Vec::new();
    };
    // A dry run's answer: a client request.
    let table = TypeTables::shared().table_for(module);
    let mut types = lock(&table);
    let Ok(scope) = crate::debuginfo::scope::frame_scope(module, &mut types, module.to_file(pc), 0)
    else {
        return Vec::new();
    };
    scope
        .variables
        .iter()
        .filter(|v| !v.shadowed)
        .map(|v| {
            let type_name = match v.ty {
                Some(ty) => types.get(module, ty).name.clone(),
                None => "void".to_string(),
            };
            (v.name.clone(), type_name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes keep compiled conditions in shared state across threads.
    #[test]
    fn compiled_expressions_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledExpr>();
        assert_send_sync::<EvalError>();
    }
}
