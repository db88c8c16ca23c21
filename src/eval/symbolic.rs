//! Symbolic evaluation for capture planning: the compiled plan and the DWARF
//! location expressions run on *symbolic* values, so what a hit will read is
//! known when a probe is set.
//!
//! Like gimli's `Evaluation`, which stops with `RequiresMemory` or
//! `RequiresRegister`, every read this makes is a request to a
//! [`ReadRequests`] planner at a [`SymAddr`]: a register plus a constant, the
//! pointer word of an earlier read plus a constant, or a fixed address. A
//! number read from the target is never taken for an address: an index or
//! offset computed from data is refused with [`PlanRefusal`]. The frame's
//! CFA comes in already decided (the site's CFI rule), so nothing is
//! unwound.

use std::sync::Arc;

use gimli::Operation;

use crate::debuginfo::scope::{LocationExpression, VariableLocation};
use crate::debuginfo::types::{Language, TypeKey, TypeKind, TypeTable};
use crate::debuginfo::{DwarfReader, Module, reg};
use crate::value::room::{self, PlanRefusal, ReadRequests, SymAddr, SymBase, SymPlace, ValueRoom};
use crate::value::{Limits, Redaction};

use super::parse::{BinaryOp, UnaryOp};
use super::plan::{BinaryMode, Class, LengthOf, Node, NodeKind, StaticType, class_of};

/// Most operations one location expression may run while planning.
const MAX_OPERATIONS: usize = 256;

/// A value on the planner's stacks: an address it can name, a number known
/// now, or a number only a hit can tell (never followed).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sym {
    Addr(SymAddr),
    Const(i128),
    Data,
}

impl Sym {
    fn as_addr(self) -> Option<SymAddr> {
        match self {
            Sym::Addr(address) => Some(address),
            Sym::Const(value) => Some(SymAddr::absolute(value as u64)),
            Sym::Data => None,
        }
    }
}

/// The frame a location is evaluated in, symbolically.
pub(crate) struct SymLocationEnv<'a> {
    pub module: &'a Module,
    pub unit: Arc<gimli::Unit<DwarfReader>>,
    /// The frame base, evaluated (or why not); `None` outside a function.
    pub frame_base: Option<Result<SymAddr, PlanRefusal>>,
    /// The site's CFA (or why it is not known).
    pub cfa: Result<SymAddr, PlanRefusal>,
}

impl SymLocationEnv<'_> {
    /// Evaluates `DW_AT_frame_base` and keeps it.
    pub fn with_frame_base(
        mut self,
        location: &VariableLocation,
        requests: &mut dyn ReadRequests,
    ) -> Self {
        let base = match place_of(&self, location, requests) {
            Ok(SymPlace::Memory(address) | SymPlace::Value(address)) => Ok(address),
            Ok(_) => Err(PlanRefusal::UnsupportedLocation {
                operation: "a frame base of an unexpected shape".into(),
            }),
            Err(refusal) => Err(refusal),
        };
        self.frame_base = Some(base);
        self
    }
}

/// Where a variable is, symbolically (the planned reads its location
/// expression makes are requested on the way).
pub(crate) fn place_of(
    env: &SymLocationEnv<'_>,
    location: &VariableLocation,
    requests: &mut dyn ReadRequests,
) -> Result<SymPlace, PlanRefusal> {
    match location {
        VariableLocation::Expression(expression) => evaluate(env, expression, requests),
        VariableLocation::Constant(bytes) => Ok(SymPlace::Constant(bytes.clone())),
        VariableLocation::OptimizedOut | VariableLocation::Unsupported(_) => {
            Ok(SymPlace::Unavailable)
        }
    }
}

fn unsupported(operation: impl Into<String>) -> PlanRefusal {
    PlanRefusal::UnsupportedLocation {
        operation: operation.into(),
    }
}

fn register_addr(register: u16, offset: i64) -> Result<SymAddr, PlanRefusal> {
    if usize::from(register) < reg::COUNT {
        Ok(SymAddr::register(register, offset))
    } else {
        Err(PlanRefusal::Register { register })
    }
}

/// Where one location (or piece) ends up when it is not in memory.
enum Located {
    Register(u16),
    Value(Sym),
    Implicit(Vec<u8>),
    Opaque,
}

fn evaluate(
    env: &SymLocationEnv<'_>,
    expression: &LocationExpression,
    requests: &mut dyn ReadRequests,
) -> Result<SymPlace, PlanRefusal> {
    let mut operations = expression.clone().operations(env.unit.encoding());
    let mut stack: Vec<Sym> = Vec::new();
    let mut located: Option<Located> = None;
    let mut pieces = 0usize;
    let pop = |stack: &mut Vec<Sym>| {
        stack
            .pop()
            .ok_or_else(|| unsupported("an operation on an empty stack"))
    };
    for _ in 0..MAX_OPERATIONS {
        let operation = match operations.next() {
            Ok(Some(operation)) => operation,
            Ok(None) => return finish(pieces, located, stack.last().copied()),
            Err(error) => return Err(unsupported(format!("an unreadable operation ({error})"))),
        };
        match operation {
            Operation::Register { register } => located = Some(Located::Register(register.0)),
            Operation::RegisterOffset {
                register, offset, ..
            } => stack.push(Sym::Addr(register_addr(register.0, offset)?)),
            Operation::FrameOffset { offset } => {
                let base = match &env.frame_base {
                    Some(Ok(base)) => *base,
                    Some(Err(refusal)) => return Err(refusal.clone()),
                    None => return Err(unsupported("a frame base outside a function")),
                };
                stack.push(Sym::Addr(base.plus(offset)));
            }
            Operation::CallFrameCFA => stack.push(Sym::Addr(env.cfa.clone()?)),
            Operation::Address { address } => stack.push(Sym::Const(i128::from(
                address.wrapping_add(env.module.bias()),
            ))),
            Operation::AddressIndex { index } | Operation::ConstantIndex { index } => {
                let relocate = matches!(operation, Operation::AddressIndex { .. });
                let dwarf = env
                    .module
                    .dwarf()
                    .ok_or_else(|| unsupported("an indexed address without DWARF"))?;
                let address = dwarf
                    .address(&env.unit, index)
                    .map_err(|e| unsupported(format!("an unreadable .debug_addr entry ({e})")))?;
                let address = if relocate {
                    address.wrapping_add(env.module.bias())
                } else {
                    address
                };
                stack.push(Sym::Const(i128::from(address)));
            }
            Operation::UnsignedConstant { value } => stack.push(Sym::Const(i128::from(value))),
            Operation::SignedConstant { value } => stack.push(Sym::Const(i128::from(value))),
            Operation::PlusConstant { value } => {
                let top = pop(&mut stack)?;
                stack.push(match top {
                    Sym::Addr(address) => Sym::Addr(address.plus(value as i64)),
                    Sym::Const(c) => Sym::Const(c.wrapping_add(i128::from(value))),
                    Sym::Data => Sym::Data,
                });
            }
            Operation::Plus | Operation::Minus => {
                let right = pop(&mut stack)?;
                let left = pop(&mut stack)?;
                let minus = matches!(operation, Operation::Minus);
                stack.push(match (left, right) {
                    (Sym::Addr(a), Sym::Const(c)) => {
                        Sym::Addr(a.plus(if minus { -(c as i64) } else { c as i64 }))
                    }
                    (Sym::Const(c), Sym::Addr(a)) if !minus => Sym::Addr(a.plus(c as i64)),
                    (Sym::Const(a), Sym::Const(b)) => Sym::Const(if minus {
                        a.wrapping_sub(b)
                    } else {
                        a.wrapping_add(b)
                    }),
                    _ => Sym::Data,
                });
            }
            Operation::And
            | Operation::Or
            | Operation::Xor
            | Operation::Mul
            | Operation::Div
            | Operation::Mod
            | Operation::Shl
            | Operation::Shr
            | Operation::Shra
            | Operation::Eq
            | Operation::Ne
            | Operation::Lt
            | Operation::Le
            | Operation::Gt
            | Operation::Ge => {
                pop(&mut stack)?;
                pop(&mut stack)?;
                stack.push(Sym::Data);
            }
            Operation::Neg | Operation::Not | Operation::Abs => {
                let top = pop(&mut stack)?;
                stack.push(match (top, &operation) {
                    (Sym::Const(c), Operation::Neg) => Sym::Const(c.wrapping_neg()),
                    _ => Sym::Data,
                });
            }
            Operation::Convert { .. } | Operation::Reinterpret { .. } | Operation::Nop => {}
            Operation::Drop => {
                pop(&mut stack)?;
            }
            Operation::Pick { index } => {
                let at = stack
                    .len()
                    .checked_sub(usize::from(index) + 1)
                    .ok_or_else(|| unsupported("DW_OP_pick past the stack"))?;
                stack.push(stack[at]);
            }
            Operation::Swap => {
                let a = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                stack.push(a);
                stack.push(b);
            }
            Operation::Rot => {
                let a = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let c = pop(&mut stack)?;
                stack.push(a);
                stack.push(c);
                stack.push(b);
            }
            Operation::Deref { size, space, .. } => {
                if space {
                    return Err(unsupported("DW_OP_xderef"));
                }
                let top = pop(&mut stack)?;
                let address = top
                    .as_addr()
                    .ok_or_else(|| PlanRefusal::DataDependentAddress {
                        what: "an address in a variable's location".into(),
                    })?;
                let size = u64::from(size).clamp(1, 8);
                let (read, at) = requests.read(address, size)?;
                stack.push(if size == 8 {
                    Sym::Addr(SymAddr {
                        base: SymBase::Word { read, at },
                        offset: 0,
                    })
                } else {
                    Sym::Data
                });
            }
            Operation::StackValue => {
                let top = pop(&mut stack)?;
                located = Some(Located::Value(top));
            }
            Operation::ImplicitValue { data } => {
                use gimli::Reader;
                let bytes = data
                    .to_slice()
                    .map(|b| b.to_vec())
                    .map_err(|e| unsupported(format!("an unreadable implicit value ({e})")))?;
                located = Some(Located::Implicit(bytes));
            }
            Operation::ImplicitPointer { .. } => located = Some(Located::Opaque),
            Operation::EntryValue { .. } => stack.push(Sym::Data),
            Operation::TypedLiteral { .. } => stack.push(Sym::Data),
            Operation::TLS => return Err(PlanRefusal::ThreadLocal),
            Operation::Piece { size_in_bits, .. } => {
                // A piece in memory is read; pieces from registers are in
                // hand. The assembled value cannot be followed.
                if located.take().is_none()
                    && let Some(sym) = stack.pop()
                {
                    piece_read(sym, size_in_bits, requests)?;
                }
                stack.clear();
                pieces += 1;
            }
            Operation::Bra { .. } | Operation::Skip { .. } => {
                return Err(unsupported("a branch (DW_OP_bra/DW_OP_skip)"));
            }
            other => return Err(unsupported(format!("{other:?}"))),
        }
    }
    Err(unsupported(format!(
        "more than {MAX_OPERATIONS} operations"
    )))
}

/// The place a finished expression describes.
fn finish(
    pieces: usize,
    located: Option<Located>,
    top: Option<Sym>,
) -> Result<SymPlace, PlanRefusal> {
    if pieces > 0 {
        return Ok(SymPlace::Opaque);
    }
    Ok(match located {
        Some(Located::Register(register)) if usize::from(register) < reg::COUNT => {
            SymPlace::Value(SymAddr::register(register, 0))
        }
        // Vector registers: the renderer says it does not capture them.
        Some(Located::Register(_)) | Some(Located::Opaque) => SymPlace::Opaque,
        Some(Located::Value(Sym::Addr(address))) => SymPlace::Value(address),
        Some(Located::Value(Sym::Const(value))) => {
            SymPlace::Constant((value as u64).to_le_bytes().to_vec())
        }
        Some(Located::Value(Sym::Data)) => SymPlace::Opaque,
        Some(Located::Implicit(bytes)) => SymPlace::Constant(bytes),
        None => match top {
            None => SymPlace::Unavailable,
            Some(sym) => SymPlace::Memory(sym.as_addr().ok_or_else(|| {
                PlanRefusal::DataDependentAddress {
                    what: "a variable's location".into(),
                }
            })?),
        },
    })
}

fn piece_read(
    sym: Sym,
    size_in_bits: u64,
    requests: &mut dyn ReadRequests,
) -> Result<(), PlanRefusal> {
    let address = sym
        .as_addr()
        .ok_or_else(|| PlanRefusal::DataDependentAddress {
            what: "a piece of a variable's location".into(),
        })?;
    let bytes = size_in_bits.div_ceil(8);
    if bytes > 0 {
        requests.read(address, bytes)?;
    }
    Ok(())
}

/// An evaluated operand, symbolically (as `exec::Operand`).
enum SymOperand {
    Object {
        place: SymPlace,
        ty: TypeKey,
    },
    Number {
        value: Sym,
        ty: StaticType,
    },
    Text,
    SubArray {
        place: SymPlace,
        element: TypeKey,
        dims: Vec<Option<u64>>,
    },
    /// The real evaluation fails here before reading anything more (an
    /// optimized-out local): nothing further to plan.
    Failed,
}

/// Plans a compiled plan's reads.
pub(crate) struct SymExecutor<'a> {
    pub module: &'a Module,
    pub types: &'a mut TypeTable,
    pub frame: Option<&'a SymLocationEnv<'a>>,
    pub requests: &'a mut dyn ReadRequests,
    /// The expression as written, for refusals.
    pub source: &'a str,
}

impl SymExecutor<'_> {
    fn data_dependent(&self, what: &str) -> PlanRefusal {
        PlanRefusal::DataDependentAddress {
            what: format!("`{}` reads at an address whose {what}", self.source),
        }
    }

    fn eval(&mut self, node: &Node) -> Result<SymOperand, PlanRefusal> {
        let operand = self.eval_raw(node)?;
        self.settle(operand)
    }

    /// A C++ reference stands for its referent.
    fn settle(&mut self, mut operand: SymOperand) -> Result<SymOperand, PlanRefusal> {
        for _ in 0..8 {
            let SymOperand::Object { place, ty } = &operand else {
                return Ok(operand);
            };
            let Some((_, stripped)) = self.types.strip(self.module, *ty) else {
                return Ok(operand);
            };
            let TypeKind::Reference {
                target: Some(target),
                ..
            } = stripped.kind
            else {
                return Ok(operand);
            };
            operand = match room::pointer_at(self.requests, place, self.source)? {
                Some(address) => SymOperand::Object {
                    place: SymPlace::Memory(address),
                    ty: target,
                },
                None => SymOperand::Failed,
            };
        }
        Ok(operand)
    }

    fn global_env<'m>(module: &'m Module, unit: usize) -> Option<SymLocationEnv<'m>> {
        Some(SymLocationEnv {
            module,
            unit: module.unit_at(gimli::DebugInfoOffset(unit))?,
            frame_base: None,
            cfa: Err(PlanRefusal::NoCfaRule {
                why: "a global has no frame".into(),
            }),
        })
    }

    fn object(place: SymPlace, ty: &StaticType) -> SymOperand {
        match (place, ty) {
            (SymPlace::Unavailable, _) => SymOperand::Failed,
            (place, StaticType::Dwarf(ty)) => SymOperand::Object { place, ty: *ty },
            _ => SymOperand::Failed,
        }
    }

    fn eval_raw(&mut self, node: &Node) -> Result<SymOperand, PlanRefusal> {
        match &node.kind {
            NodeKind::Local(location) => {
                let Some(env) = self.frame else {
                    return Ok(SymOperand::Failed);
                };
                let place = place_of(env, location, self.requests)?;
                Ok(Self::object(place, &node.ty))
            }
            NodeKind::Unavailable(_) => Ok(SymOperand::Failed),
            NodeKind::Global { location, unit } => {
                let Some(env) = Self::global_env(self.module, *unit) else {
                    return Ok(SymOperand::Failed);
                };
                let place = place_of(&env, location, self.requests)?;
                Ok(Self::object(place, &node.ty))
            }
            NodeKind::Number(value) => Ok(SymOperand::Number {
                value: Sym::Const(value.as_i128()),
                ty: node.ty.clone(),
            }),
            NodeKind::Text(_) => Ok(SymOperand::Text),
            NodeKind::Member {
                base,
                through_pointer,
                offset,
                bits,
            } => {
                let base_operand = self.eval(base)?;
                let base_place = if *through_pointer {
                    match self.address_of_pointer(base_operand)? {
                        Some(address) => SymPlace::Memory(address),
                        None => return Ok(SymOperand::Failed),
                    }
                } else {
                    match base_operand {
                        SymOperand::Object { place, .. } => place,
                        _ => return Ok(SymOperand::Failed),
                    }
                };
                let place = base_place.at(*offset);
                if let StaticType::Pointer(_) = node.ty {
                    let value = match room::pointer_at(self.requests, &place, self.source)? {
                        Some(address) => Sym::Addr(address),
                        None => return Ok(SymOperand::Failed),
                    };
                    return Ok(SymOperand::Number {
                        value,
                        ty: node.ty.clone(),
                    });
                }
                if let Some((bit_offset, bit_size)) = bits {
                    let bytes = (bit_offset % 8 + bit_size).div_ceil(8).max(1);
                    room::read_place(self.requests, &place.at(bit_offset / 8), bytes.max(8))?;
                    return Ok(SymOperand::Number {
                        value: Sym::Data,
                        ty: node.ty.clone(),
                    });
                }
                Ok(Self::object(place, &node.ty))
            }
            NodeKind::Deref(base) => {
                let operand = self.eval(base)?;
                match self.address_of_pointer(operand)? {
                    Some(address) => Ok(Self::object(SymPlace::Memory(address), &node.ty)),
                    None => Ok(SymOperand::Failed),
                }
            }
            NodeKind::AddressOf(base) => match self.eval(base)? {
                SymOperand::Object {
                    place: SymPlace::Memory(address),
                    ..
                } => Ok(SymOperand::Number {
                    value: Sym::Addr(address),
                    ty: node.ty.clone(),
                }),
                _ => Ok(SymOperand::Failed),
            },
            NodeKind::Index {
                base,
                index,
                stride,
                bound,
                through_pointer,
            } => {
                let index_value = match self.number(index)? {
                    Some(Sym::Const(value)) => value,
                    Some(_) => return Err(self.data_dependent("index is read from the target")),
                    None => return Ok(SymOperand::Failed),
                };
                if let Some(bound) = bound
                    && (index_value < 0 || index_value >= i128::from(*bound))
                {
                    // Out of range: the hit says so without reading.
                    return Ok(SymOperand::Failed);
                }
                let Some(offset) = i128::from(*stride)
                    .checked_mul(index_value)
                    .and_then(|o| i64::try_from(o).ok())
                else {
                    return Ok(SymOperand::Failed);
                };
                let base_operand = self.eval(base)?;
                let place = if *through_pointer {
                    match self.address_of_pointer(base_operand)? {
                        Some(address) => SymPlace::Memory(address.plus(offset)),
                        None => return Ok(SymOperand::Failed),
                    }
                } else {
                    match base_operand {
                        SymOperand::Object { place, .. } | SymOperand::SubArray { place, .. } => {
                            place.at(offset as u64)
                        }
                        _ => return Ok(SymOperand::Failed),
                    }
                };
                match &node.ty {
                    StaticType::SubArray { element, dims } => Ok(SymOperand::SubArray {
                        place,
                        element: *element,
                        dims: dims.clone(),
                    }),
                    other => Ok(Self::object(place, other)),
                }
            }
            NodeKind::Unary { op, operand } => {
                let value = match self.number(operand)? {
                    Some(value) => value,
                    None => return Ok(SymOperand::Failed),
                };
                let value = match (op, value) {
                    (UnaryOp::Neg, Sym::Const(c)) => Sym::Const(c.wrapping_neg()),
                    (UnaryOp::BitNot, Sym::Const(c)) => Sym::Const(!c),
                    _ => Sym::Data,
                };
                Ok(SymOperand::Number {
                    value,
                    ty: node.ty.clone(),
                })
            }
            NodeKind::Binary { op, lhs, rhs, mode } => self.binary(*op, lhs, rhs, *mode, &node.ty),
            NodeKind::Cast(operand) => {
                let value = match self.number(operand)? {
                    Some(value) => value,
                    None => return Ok(SymOperand::Failed),
                };
                if let StaticType::Dwarf(key) = node.ty {
                    let place = match value {
                        Sym::Addr(address) => SymPlace::Value(address),
                        Sym::Const(c) => SymPlace::Constant((c as u64).to_le_bytes().to_vec()),
                        Sym::Data => SymPlace::Opaque,
                    };
                    return Ok(SymOperand::Object { place, ty: key });
                }
                Ok(SymOperand::Number {
                    value,
                    ty: node.ty.clone(),
                })
            }
            NodeKind::Len { operand, how } => {
                let value = match how {
                    LengthOf::Constant(n) => Sym::Const(i128::from(*n)),
                    LengthOf::CString => {
                        let operand = self.eval(operand)?;
                        if let Some(address) = self.address_of_pointer(operand)? {
                            self.requests
                                .read_string(address, super::exec::MAX_STRLEN)?;
                        }
                        Sym::Data
                    }
                    LengthOf::Printer => match self.eval(operand)? {
                        SymOperand::Object { place, ty } => {
                            self.container_length(&place, ty)?;
                            Sym::Data
                        }
                        _ => Sym::Data,
                    },
                };
                Ok(SymOperand::Number {
                    value,
                    ty: node.ty.clone(),
                })
            }
        }
    }

    fn container_length(&mut self, place: &SymPlace, ty: TypeKey) -> Result<(), PlanRefusal> {
        use crate::value::layout::{LengthField, StringKind, length_field, string_kind};
        if let Some(StringKind::Libcxx { .. }) = string_kind(self.types, self.module, ty) {
            return Err(libcxx_string(self.source));
        }
        match length_field(self.types, self.module, ty) {
            Some(LengthField::Count { offset, size }) => {
                room::read_place(self.requests, &place.at(offset), size)
            }
            Some(LengthField::PointerRange { start, finish, .. }) => {
                room::read_place(self.requests, &place.at(start), 8)?;
                room::read_place(self.requests, &place.at(finish), 8)
            }
            None => Ok(()),
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Node,
        rhs: &Node,
        mode: BinaryMode,
        ty: &StaticType,
    ) -> Result<SymOperand, PlanRefusal> {
        let number = |value| {
            Ok(SymOperand::Number {
                value,
                ty: ty.clone(),
            })
        };
        match mode {
            BinaryMode::Logic => {
                // Both sides are planned: a hit may take either.
                self.number(lhs)?;
                self.number(rhs)?;
                number(Sym::Data)
            }
            BinaryMode::TextCompare => {
                let (text, other) = match (&lhs.kind, &rhs.kind) {
                    (NodeKind::Text(bytes), _) => (bytes.len(), rhs),
                    (_, NodeKind::Text(bytes)) => (bytes.len(), lhs),
                    _ => return number(Sym::Data),
                };
                let operand = self.eval(other)?;
                self.string_bytes(operand, text as u64 + 1)?;
                number(Sym::Data)
            }
            BinaryMode::PointerOffset { stride } => {
                let address = self.number(lhs)?;
                let count = self.number(rhs)?;
                let (Some(address), Some(count)) = (address, count) else {
                    return Ok(SymOperand::Failed);
                };
                let Sym::Const(count) = count else {
                    return Err(self.data_dependent("offset is read from the target"));
                };
                let delta = count.wrapping_mul(i128::from(stride)) as i64;
                let delta = if op == BinaryOp::Sub { -delta } else { delta };
                number(match address {
                    Sym::Addr(address) => Sym::Addr(address.plus(delta)),
                    Sym::Const(c) => Sym::Const(c.wrapping_add(i128::from(delta))),
                    Sym::Data => Sym::Data,
                })
            }
            BinaryMode::Int { .. } => {
                let left = self.number(lhs)?;
                let right = self.number(rhs)?;
                let value = match (left, right) {
                    (Some(Sym::Const(a)), Some(Sym::Const(b))) => match op {
                        BinaryOp::Add => Sym::Const(a.wrapping_add(b)),
                        BinaryOp::Sub => Sym::Const(a.wrapping_sub(b)),
                        BinaryOp::Mul => Sym::Const(a.wrapping_mul(b)),
                        BinaryOp::Div if b != 0 => Sym::Const(a.wrapping_div(b)),
                        BinaryOp::Rem if b != 0 => Sym::Const(a.wrapping_rem(b)),
                        _ => Sym::Data,
                    },
                    _ => Sym::Data,
                };
                number(value)
            }
            BinaryMode::Compare { .. }
            | BinaryMode::PointerCompare
            | BinaryMode::PointerDifference { .. }
            | BinaryMode::Float => {
                self.number(lhs)?;
                self.number(rhs)?;
                number(Sym::Data)
            }
        }
    }

    /// The number a node evaluates to (planning the read of an object);
    /// `None` when evaluation fails before any read.
    fn number(&mut self, node: &Node) -> Result<Option<Sym>, PlanRefusal> {
        let operand = self.eval(node)?;
        self.number_of(operand)
    }

    fn number_of(&mut self, operand: SymOperand) -> Result<Option<Sym>, PlanRefusal> {
        match operand {
            SymOperand::Number { value, .. } => Ok(Some(value)),
            SymOperand::Text | SymOperand::SubArray { .. } | SymOperand::Failed => Ok(None),
            SymOperand::Object { place, ty } => {
                let class = class_of(self.types, self.module, &StaticType::Dwarf(ty));
                if let Class::Pointer { .. } = class {
                    return Ok(room::pointer_at(self.requests, &place, self.source)?.map(Sym::Addr));
                }
                let size = match &class {
                    Class::Int { bytes, .. } | Class::Float { bytes } | Class::Char { bytes } => {
                        u64::from(*bytes)
                    }
                    Class::Bool => 1,
                    _ => return Ok(None),
                };
                let size = self
                    .types
                    .size_of(self.module, ty)
                    .unwrap_or(size)
                    .clamp(1, 16);
                room::read_place(self.requests, &place, size)?;
                Ok(Some(match place {
                    SymPlace::Constant(bytes) => {
                        let mut buffer = [0u8; 16];
                        let n = bytes.len().min(size as usize).min(16);
                        buffer[..n].copy_from_slice(&bytes[..n]);
                        Sym::Const(u128::from_le_bytes(buffer) as i128)
                    }
                    _ => Sym::Data,
                }))
            }
        }
    }

    /// The address a pointer operand holds (or an array's own address).
    fn address_of_pointer(&mut self, operand: SymOperand) -> Result<Option<SymAddr>, PlanRefusal> {
        match operand {
            SymOperand::Number { value, .. } => match value {
                Sym::Data => Err(self.data_dependent("value is computed from the target's data")),
                other => Ok(other.as_addr()),
            },
            SymOperand::Object { place, ty } => {
                if let Some((_, stripped)) = self.types.strip(self.module, ty)
                    && let TypeKind::Array { .. } = stripped.kind
                {
                    return Ok(match place {
                        SymPlace::Memory(address) => Some(address),
                        _ => None,
                    });
                }
                room::pointer_at(self.requests, &place, self.source)
            }
            SymOperand::SubArray { place, .. } => Ok(match place {
                SymPlace::Memory(address) => Some(address),
                _ => None,
            }),
            SymOperand::Text | SymOperand::Failed => Ok(None),
        }
    }

    /// Plans up to `max` bytes of a string-like operand.
    fn string_bytes(&mut self, operand: SymOperand, max: u64) -> Result<(), PlanRefusal> {
        use crate::value::layout::{StringKind, string_kind};
        let (place, ty) = match operand {
            SymOperand::Object { place, ty } => (place, ty),
            SymOperand::Number {
                value,
                ty: StaticType::Pointer(Some(_)),
            } => {
                if let Some(address) = value.as_addr() {
                    self.requests.read_string(address, max)?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        match string_kind(self.types, self.module, ty) {
            Some(StringKind::CharPointer) => {
                if let Some(address) = room::pointer_at(self.requests, &place, self.source)? {
                    self.requests.read_string(address, max)?;
                }
                Ok(())
            }
            Some(StringKind::CharArray { len }) => {
                room::read_place(self.requests, &place, len.min(max))
            }
            Some(StringKind::Counted {
                pointer_offset,
                length_offset,
            }) => {
                room::read_place(self.requests, &place.at(length_offset), 8)?;
                if let Some(address) =
                    room::pointer_at(self.requests, &place.at(pointer_offset), self.source)?
                {
                    self.requests.read(address, max)?;
                }
                Ok(())
            }
            Some(StringKind::Libcxx { .. }) => Err(libcxx_string(self.source)),
            None => Ok(()),
        }
    }

    /// Plans evaluating `node` as a number (conditions, histograms).
    pub fn plan_number(&mut self, node: &Node) -> Result<(), PlanRefusal> {
        self.number(node).map(|_| ())
    }

    /// Plans evaluating `node` and rendering its value under `limits`.
    pub fn plan_render(
        &mut self,
        node: &Node,
        limits: &Limits,
        redaction: &Redaction,
        language: Language,
    ) -> Result<(), PlanRefusal> {
        let operand = self.eval(node)?;
        let source = self.source;
        let mut room = ValueRoom {
            module: self.module,
            types: self.types,
            limits,
            redaction,
            requests: self.requests,
        };
        match operand {
            SymOperand::Object { place, ty } => room.value(source, Some(ty), &place, limits.depth),
            SymOperand::SubArray {
                place,
                element,
                dims,
            } => room.array_value(source, element, &dims, &place, limits.depth, language),
            SymOperand::Number {
                value,
                ty: StaticType::Pointer(pointee),
            } => match value {
                Sym::Data => Err(PlanRefusal::DataDependentAddress {
                    what: format!("the pointer `{source}`"),
                }),
                other => match other.as_addr() {
                    Some(address) => {
                        room.pointer_target(source, pointee, address, limits.depth, language)
                    }
                    None => Ok(()),
                },
            },
            SymOperand::Number { .. } | SymOperand::Text | SymOperand::Failed => Ok(()),
        }
    }
}

fn libcxx_string(source: &str) -> PlanRefusal {
    PlanRefusal::DataDependentLayout {
        name: source.to_string(),
        kind: "libc++ std::string (whether it is short or long decides what to read)",
    }
}

#[cfg(test)]
mod tests {
    //! DWARF location operations interpreted symbolically, on hand-made
    //! expressions evaluated in a unit of the C values recording's program.

    use std::path::Path;

    use super::*;
    use crate::debuginfo::SectionBytes;

    /// Records requests; each read is its own, so words are `Word{n, 0}`.
    #[derive(Default)]
    struct Requests(Vec<(SymAddr, u64)>);

    impl ReadRequests for Requests {
        fn read(&mut self, at: SymAddr, len: u64) -> Result<(usize, u64), PlanRefusal> {
            self.0.push((at, len));
            Ok((self.0.len() - 1, 0))
        }

        fn read_string(&mut self, at: SymAddr, max: u64) -> Result<(), PlanRefusal> {
            self.0.push((at, max));
            Ok(())
        }
    }

    fn module() -> Module {
        let program =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recordings/c_values_O0/program");
        Module::open_file(&program, 0x1000).expect("program")
    }

    fn location(bytes: &[u8]) -> VariableLocation {
        let reader = gimli::EndianReader::new(
            SectionBytes::owned(bytes.to_vec()),
            gimli::RunTimeEndian::Little,
        );
        VariableLocation::Expression(gimli::Expression(reader))
    }

    fn place(
        module: &Module,
        cfa: Result<SymAddr, PlanRefusal>,
        bytes: &[u8],
    ) -> (Result<SymPlace, PlanRefusal>, Requests) {
        let mut requests = Requests::default();
        let env = SymLocationEnv {
            module,
            unit: module
                .unit_at(gimli::DebugInfoOffset(0))
                .expect("first unit"),
            frame_base: None,
            cfa,
        }
        // DW_AT_frame_base: DW_OP_call_frame_cfa, as gcc emits it.
        .with_frame_base(&location(&[0x9c]), &mut requests);
        let result = place_of(&env, &location(bytes), &mut requests);
        (result, requests)
    }

    fn word(read: usize, offset: i64) -> SymAddr {
        SymAddr {
            base: SymBase::Word { read, at: 0 },
            offset,
        }
    }

    #[test]
    fn frame_registers_and_pointers_become_symbolic_addresses() {
        let module = module();
        let cfa = || Ok(SymAddr::register(reg::RBP, 16));
        // DW_OP_fbreg -20: the frame base is the CFA.
        let (got, requests) = place(&module, cfa(), &[0x91, 0x6c]);
        assert_eq!(got, Ok(SymPlace::Memory(SymAddr::register(reg::RBP, -4))));
        assert!(requests.0.is_empty());
        // DW_OP_breg7 8; DW_OP_deref; DW_OP_plus_uconst 4: a field behind
        // a pointer saved on the stack.
        let (got, requests) = place(&module, cfa(), &[0x77, 0x08, 0x06, 0x23, 0x04]);
        assert_eq!(got, Ok(SymPlace::Memory(word(0, 4))));
        assert_eq!(requests.0, vec![(SymAddr::register(reg::RSP, 8), 8)]);
        // DW_OP_reg5: the value is rdi's contents.
        let (got, _) = place(&module, cfa(), &[0x55]);
        assert_eq!(got, Ok(SymPlace::Value(SymAddr::register(reg::RDI, 0))));
        // DW_OP_breg7 16; DW_OP_stack_value: a computed address in hand.
        let (got, _) = place(&module, cfa(), &[0x77, 0x10, 0x9f]);
        assert_eq!(got, Ok(SymPlace::Value(SymAddr::register(reg::RSP, 16))));
        // DW_OP_addr 0x4010: a global, relocated by the module's bias.
        let mut addr = vec![0x03];
        addr.extend_from_slice(&0x4010u64.to_le_bytes());
        let (got, _) = place(&module, cfa(), &addr);
        assert_eq!(got, Ok(SymPlace::Memory(SymAddr::absolute(0x5010))));
        // DW_OP_lit5; DW_OP_stack_value: a constant.
        let (got, _) = place(&module, cfa(), &[0x35, 0x9f]);
        assert_eq!(got, Ok(SymPlace::Constant(5u64.to_le_bytes().to_vec())));
        // DW_OP_reg0; DW_OP_piece 8; DW_OP_breg7 0; DW_OP_piece 8: the
        // memory piece is read, the whole cannot be followed.
        let (got, requests) = place(&module, cfa(), &[0x50, 0x93, 0x08, 0x77, 0x00, 0x93, 0x08]);
        assert_eq!(got, Ok(SymPlace::Opaque));
        assert_eq!(requests.0, vec![(SymAddr::register(reg::RSP, 0), 8)]);
    }

    #[test]
    fn what_a_location_cannot_name_is_refused() {
        let module = module();
        let cfa = || Ok(SymAddr::register(reg::RSP, 8));
        // DW_OP_breg0 0; DW_OP_breg1 0; DW_OP_plus: register + register.
        let (got, _) = place(&module, cfa(), &[0x70, 0x00, 0x71, 0x00, 0x22]);
        assert!(
            matches!(got, Err(PlanRefusal::DataDependentAddress { .. })),
            "{got:?}"
        );
        // DW_OP_const8u 16; DW_OP_form_tls_address: a thread-local.
        let mut tls = vec![0x0e];
        tls.extend_from_slice(&16u64.to_le_bytes());
        tls.push(0x9b);
        assert_eq!(place(&module, cfa(), &tls).0, Err(PlanRefusal::ThreadLocal));
        // DW_OP_fbreg -8 where the site's CFA is unknown: the reason is
        // the CFA's.
        let unknown = PlanRefusal::NoCfaRule {
            why: "the CFA is a DWARF expression".into(),
        };
        let (got, _) = place(&module, Err(unknown.clone()), &[0x91, 0x78]);
        assert_eq!(got, Err(unknown));
        // DW_OP_bra: control flow is not interpreted.
        let (got, _) = place(&module, cfa(), &[0x30, 0x28, 0x00, 0x00]);
        assert!(
            matches!(got, Err(PlanRefusal::UnsupportedLocation { .. })),
            "{got:?}"
        );
    }
}
