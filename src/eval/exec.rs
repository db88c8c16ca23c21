//! Evaluation of a compiled plan against one frame (or no frame, for
//! globals): locations evaluated, memory read, arithmetic done, the result
//! handed to the value decoder. Every failure is a typed [`Unavailable`] that ends
//! up in the result's `unavailable`; nothing here panics on target data.

use crate::debuginfo::types::{Language, TypeKey, TypeKind, TypeTable};
use crate::debuginfo::{MemorySource, Module};
use crate::value::layout::{LengthField, LibcxxChars, StringKind};
use crate::value::{
    Corruption, Decoder, NullKind, OptimizedOut, Place, Unavailable, Unsupported, Value,
    format_float, quote_bytes, quote_char,
};

use super::location::{LocationEnv, place_of};
use super::parse::{BinaryOp, UnaryOp};
use super::plan::{
    BinaryMode, Class, LengthOf, Node, NodeKind, Number, StaticType, class_of, offset_place,
};

/// Longest C string `len()` will scan.
pub(crate) const MAX_STRLEN: u64 = 1 << 20;

/// An evaluated operand.
pub(crate) enum Operand {
    /// An object of a DWARF type somewhere.
    Object { place: Place, ty: TypeKey },
    /// A computed number of a static type.
    Number { value: Number, ty: StaticType },
    /// A string literal.
    Text(Vec<u8>),
    /// A row of a multi-dimensional array.
    SubArray {
        place: Place,
        element: TypeKey,
        dims: Vec<Option<u64>>,
    },
}

/// Evaluates plan nodes.
pub(crate) struct Executor<'a> {
    pub module: &'a Module,
    pub types: &'a mut TypeTable,
    pub memory: &'a dyn MemorySource,
    /// The frame's location environment (locals); `None` for globals.
    pub frame: Option<&'a LocationEnv<'a>>,
    /// Builds the environment for a global of unit `unit`.
    pub global_env: &'a dyn Fn(usize) -> Option<LocationEnv<'a>>,
}

impl Executor<'_> {
    pub fn eval(&mut self, node: &Node) -> Result<Operand, Unavailable> {
        let operand = self.eval_raw(node)?;
        self.settle(operand)
    }

    /// A C++ reference stands for its referent.
    fn settle(&mut self, operand: Operand) -> Result<Operand, Unavailable> {
        let mut operand = operand;
        for _ in 0..8 {
            let Operand::Object { place, ty } = &operand else {
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
            let address = self.read_u64(place)?;
            operand = Operand::Object {
                place: Place::Memory(address),
                ty: target,
            };
        }
        Ok(operand)
    }

    fn eval_raw(&mut self, node: &Node) -> Result<Operand, Unavailable> {
        match &node.kind {
            NodeKind::Local(location) => {
                let env = self
                    .frame
                    .ok_or(Unavailable::Unsupported(Unsupported::LocalWithoutFrame))?;
                let ty = dwarf_type(&node.ty)?;
                Ok(Operand::Object {
                    place: available(place_of(env, location))?,
                    ty,
                })
            }
            NodeKind::Unavailable(reason) => Err(reason.clone()),
            NodeKind::Global { location, unit } => {
                let env = (self.global_env)(*unit)
                    .ok_or(Unavailable::Unsupported(Unsupported::GlobalUnitUnreadable))?;
                let ty = dwarf_type(&node.ty)?;
                Ok(Operand::Object {
                    place: available(place_of(&env, location))?,
                    ty,
                })
            }
            NodeKind::Number(value) => Ok(Operand::Number {
                value: *value,
                ty: node.ty.clone(),
            }),
            NodeKind::Text(bytes) => Ok(Operand::Text(bytes.clone())),
            NodeKind::Member {
                base,
                through_pointer,
                offset,
                bits,
            } => {
                let base_operand = self.eval(base)?;
                let base_place = if *through_pointer {
                    Place::Memory(self.address_of_pointer(base_operand)?)
                } else {
                    match base_operand {
                        Operand::Object { place, .. } => place,
                        _ => return Err(Unsupported::FieldOfComputedValue.into()),
                    }
                };
                // A container's data pointer, typed by its element.
                if let StaticType::Pointer(_) = node.ty {
                    let address = self.read_u64(&offset_place(&base_place, *offset, Some(8)))?;
                    return Ok(Operand::Number {
                        value: Number::Int(i128::from(address)),
                        ty: node.ty.clone(),
                    });
                }
                let ty = dwarf_type(&node.ty)?;
                if let Some((bit_offset, bit_size)) = bits {
                    return self.bit_field(&base_place, *offset, *bit_offset, *bit_size, ty);
                }
                let size = self.types.size_of(self.module, ty);
                Ok(Operand::Object {
                    place: offset_place(&base_place, *offset, size),
                    ty,
                })
            }
            NodeKind::Deref(base) => {
                let operand = self.eval(base)?;
                let address = self.address_of_pointer(operand)?;
                if address == 0 {
                    return Err(Unavailable::null(NullKind::Pointer));
                }
                Ok(Operand::Object {
                    place: Place::Memory(address),
                    ty: dwarf_type(&node.ty)?,
                })
            }
            NodeKind::AddressOf(base) => match self.eval(base)? {
                Operand::Object {
                    place: Place::Memory(address),
                    ..
                } => Ok(Operand::Number {
                    value: Number::Int(i128::from(address)),
                    ty: node.ty.clone(),
                }),
                Operand::Object { .. } => Err(Unsupported::AddressOfRegisterValue.into()),
                _ => Err(Unsupported::AddressOfComputedValue.into()),
            },
            NodeKind::Index {
                base,
                index,
                stride,
                bound,
                through_pointer,
            } => {
                let index_value = self.number(index)?.as_i128();
                if let Some(bound) = bound
                    && (index_value < 0 || index_value >= i128::from(*bound))
                {
                    return Err(Unsupported::IndexOutOfRange {
                        index: i64::try_from(index_value).ok(),
                        length: *bound,
                    }
                    .into());
                }
                let offset = i128::from(*stride)
                    .checked_mul(index_value)
                    .ok_or(Unavailable::Unsupported(Unsupported::IndexOverflows))?;
                let base_operand = self.eval(base)?;
                let place = if *through_pointer {
                    let address = self.address_of_pointer(base_operand)?;
                    Place::Memory((i128::from(address) + offset) as u64)
                } else {
                    let place = match base_operand {
                        Operand::Object { place, .. } | Operand::SubArray { place, .. } => place,
                        _ => return Err(Unsupported::IndexOfComputedValue.into()),
                    };
                    offset_place(&place, offset as u64, None)
                };
                match &node.ty {
                    StaticType::SubArray { element, dims } => Ok(Operand::SubArray {
                        place,
                        element: *element,
                        dims: dims.clone(),
                    }),
                    other => Ok(Operand::Object {
                        place,
                        ty: dwarf_type(other)?,
                    }),
                }
            }
            NodeKind::Unary { op, operand } => {
                let value = self.number(operand)?;
                let result = match (op, &node.ty) {
                    (UnaryOp::Neg, StaticType::Float { bytes }) => {
                        Number::Float(round_float(-value.as_f64(), *bytes))
                    }
                    (UnaryOp::Neg, StaticType::Int { bytes, signed }) => {
                        Number::Int(wrap(value.as_i128().wrapping_neg(), *bytes, *signed))
                    }
                    (UnaryOp::BitNot | UnaryOp::Not, StaticType::Int { bytes, signed }) => {
                        Number::Int(wrap(!value.as_i128(), *bytes, *signed))
                    }
                    (UnaryOp::Not, _) => Number::Bool(!value.truthy()),
                    _ => return Err(Unsupported::OperatorOnType.into()),
                };
                Ok(Operand::Number {
                    value: result,
                    ty: node.ty.clone(),
                })
            }
            NodeKind::Binary { op, lhs, rhs, mode } => self.binary(*op, lhs, rhs, *mode, &node.ty),
            NodeKind::Cast(operand) => {
                let value = self.number(operand)?;
                if let StaticType::Dwarf(key) = node.ty {
                    // A cast to a named type (`(sds)p`): the value's bytes
                    // as an object of that type, decoded like a variable.
                    let size = self
                        .types
                        .size_of(self.module, key)
                        .unwrap_or(8)
                        .clamp(1, 16) as usize;
                    let bytes = value.as_i128().to_le_bytes()[..size].to_vec();
                    return Ok(Operand::Object {
                        place: Place::Bytes {
                            bytes,
                            missing: Vec::new(),
                        },
                        ty: key,
                    });
                }
                let result = match &node.ty {
                    StaticType::Pointer(_) => Number::Int(wrap(value.as_i128(), 8, false)),
                    StaticType::Int { bytes, signed } => {
                        Number::Int(wrap(value.as_i128(), *bytes, *signed))
                    }
                    StaticType::Float { bytes } => {
                        Number::Float(round_float(value.as_f64(), *bytes))
                    }
                    StaticType::Bool => Number::Bool(value.truthy()),
                    _ => value,
                };
                Ok(Operand::Number {
                    value: result,
                    ty: node.ty.clone(),
                })
            }
            NodeKind::Len { operand, how } => {
                let length = match how {
                    LengthOf::Constant(n) => *n,
                    LengthOf::CString => {
                        let operand = self.eval(operand)?;
                        let address = self.address_of_pointer(operand)?;
                        self.strlen(address)?
                    }
                    LengthOf::Printer => match self.eval(operand)? {
                        Operand::Object { place, ty } => self.container_length(&place, ty)?,
                        Operand::Text(bytes) => bytes.len() as u64,
                        Operand::SubArray { dims, .. } => {
                            dims.first().copied().flatten().unwrap_or(0)
                        }
                        Operand::Number { .. } => {
                            return Err(Unsupported::LenOfNumber.into());
                        }
                    },
                };
                Ok(Operand::Number {
                    value: Number::Int(i128::from(length)),
                    ty: node.ty.clone(),
                })
            }
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Node,
        rhs: &Node,
        mode: BinaryMode,
        ty: &StaticType,
    ) -> Result<Operand, Unavailable> {
        let number = |value| {
            Ok(Operand::Number {
                value,
                ty: ty.clone(),
            })
        };
        match mode {
            BinaryMode::Logic => {
                let left = self.number(lhs)?.truthy();
                let result = match op {
                    BinaryOp::And => left && self.number(rhs)?.truthy(),
                    _ => left || self.number(rhs)?.truthy(),
                };
                number(Number::Bool(result))
            }
            BinaryMode::TextCompare => {
                let (text, other) = match (&lhs.kind, &rhs.kind) {
                    (NodeKind::Text(bytes), _) => (bytes.clone(), rhs),
                    (_, NodeKind::Text(bytes)) => (bytes.clone(), lhs),
                    _ => return Err(Unsupported::StringComparisonWithoutLiteral.into()),
                };
                let operand = self.eval(other)?;
                let actual = self.string_bytes(operand, text.len() as u64 + 1)?;
                let equal = actual == text;
                number(Number::Bool(if op == BinaryOp::Eq {
                    equal
                } else {
                    !equal
                }))
            }
            BinaryMode::Compare { float } => {
                let left = self.number(lhs)?;
                let right = self.number(rhs)?;
                let ordering = if float {
                    left.as_f64().partial_cmp(&right.as_f64())
                } else {
                    Some(left.as_i128().cmp(&right.as_i128()))
                };
                number(Number::Bool(compare(op, ordering)))
            }
            BinaryMode::PointerCompare => {
                let left = self.pointer_or_number(lhs)?;
                let right = self.pointer_or_number(rhs)?;
                number(Number::Bool(compare(op, Some(left.cmp(&right)))))
            }
            BinaryMode::PointerOffset { stride } => {
                let address = self.pointer_or_number(lhs)?;
                let count = self.number(rhs)?.as_i128();
                let delta = count.wrapping_mul(i128::from(stride));
                let result = if op == BinaryOp::Sub {
                    i128::from(address).wrapping_sub(delta)
                } else {
                    i128::from(address).wrapping_add(delta)
                };
                number(Number::Int(result & i128::from(u64::MAX)))
            }
            BinaryMode::PointerDifference { stride } => {
                let left = i128::from(self.pointer_or_number(lhs)?);
                let right = i128::from(self.pointer_or_number(rhs)?);
                number(Number::Int((left - right) / i128::from(stride.max(1))))
            }
            BinaryMode::Float => {
                let left = self.number(lhs)?.as_f64();
                let right = self.number(rhs)?.as_f64();
                let result = match op {
                    BinaryOp::Add => left + right,
                    BinaryOp::Sub => left - right,
                    BinaryOp::Mul => left * right,
                    BinaryOp::Div => left / right,
                    _ => return Err(Unsupported::OperatorOnFloats.into()),
                };
                let bytes = match ty {
                    StaticType::Float { bytes } => *bytes,
                    _ => 8,
                };
                number(Number::Float(round_float(result, bytes)))
            }
            BinaryMode::Int { bytes, signed } => {
                let left = wrap(self.number(lhs)?.as_i128(), bytes, signed);
                let right = wrap(self.number(rhs)?.as_i128(), bytes, signed);
                let bits = u32::from(bytes) * 8;
                let result = match op {
                    BinaryOp::Add => left.wrapping_add(right),
                    BinaryOp::Sub => left.wrapping_sub(right),
                    BinaryOp::Mul => left.wrapping_mul(right),
                    BinaryOp::Div | BinaryOp::Rem if right == 0 => {
                        return Err(Unsupported::DivisionByZero.into());
                    }
                    BinaryOp::Div => left.wrapping_div(right),
                    BinaryOp::Rem => left.wrapping_rem(right),
                    BinaryOp::Shl | BinaryOp::Shr if right < 0 || right >= i128::from(bits) => {
                        return Err(Unsupported::ShiftOutOfRange {
                            by: i64::try_from(right).ok(),
                            bits,
                        }
                        .into());
                    }
                    BinaryOp::Shl => left << right,
                    BinaryOp::Shr => left >> right,
                    BinaryOp::BitAnd => left & right,
                    BinaryOp::BitOr => left | right,
                    BinaryOp::BitXor => left ^ right,
                    _ => return Err(Unsupported::OperatorOnIntegers.into()),
                };
                number(Number::Int(wrap(result, bytes, signed)))
            }
        }
    }

    /// Evaluates a node to a number (reading the object if needed).
    pub fn number(&mut self, node: &Node) -> Result<Number, Unavailable> {
        let operand = self.eval(node)?;
        self.number_of(operand)
    }

    fn number_of(&mut self, operand: Operand) -> Result<Number, Unavailable> {
        match operand {
            Operand::Number { value, .. } => Ok(value),
            Operand::Text(_) => Err(Unsupported::StringIsNotANumber.into()),
            Operand::SubArray { .. } => Err(Unsupported::ArrayIsNotANumber.into()),
            Operand::Object { place, ty } => {
                let class = class_of(self.types, self.module, &StaticType::Dwarf(ty));
                let size = match &class {
                    Class::Int { bytes, .. } | Class::Float { bytes } | Class::Char { bytes } => {
                        usize::from(*bytes)
                    }
                    Class::Bool => 1,
                    Class::Pointer { .. } => 8,
                    _ => return Err(Unsupported::NotANumber.into()),
                };
                let size = self
                    .types
                    .size_of(self.module, ty)
                    .map_or(size, |s| s as usize)
                    .clamp(1, 16);
                let bytes = read_place(self.memory, &place, size)?;
                let mut buffer = [0u8; 16];
                buffer[..size].copy_from_slice(&bytes[..size]);
                let raw = u128::from_le_bytes(buffer);
                Ok(match class {
                    Class::Int { signed: true, .. } => {
                        Number::Int(crate::value::sign_extend(raw, size * 8))
                    }
                    Class::Int { .. } | Class::Char { .. } | Class::Pointer { .. } => {
                        Number::Int(raw as i128)
                    }
                    Class::Bool => Number::Bool(raw != 0),
                    Class::Float { .. } => Number::Float(match size {
                        4 => f64::from(f32::from_bits(raw as u32)),
                        8 => f64::from_bits(raw as u64),
                        _ => crate::value::long_double_to_f64(&buffer[..10]),
                    }),
                    _ => return Err(Unsupported::NotANumber.into()),
                })
            }
        }
    }

    fn pointer_or_number(&mut self, node: &Node) -> Result<u64, Unavailable> {
        let operand = self.eval(node)?;
        Ok(self.number_of(operand)?.as_i128() as u64)
    }

    /// The address a pointer operand holds (or an array's own address).
    fn address_of_pointer(&mut self, operand: Operand) -> Result<u64, Unavailable> {
        match operand {
            Operand::Number { value, .. } => Ok(value.as_i128() as u64),
            Operand::Object { place, ty } => {
                if let Some((_, stripped)) = self.types.strip(self.module, ty)
                    && let TypeKind::Array { .. } = stripped.kind
                {
                    return match place {
                        Place::Memory(address) => Ok(address),
                        _ => Err(Unsupported::ArrayInRegister.into()),
                    };
                }
                self.read_u64(&place)
            }
            Operand::SubArray { place, .. } => match place {
                Place::Memory(address) => Ok(address),
                _ => Err(Unsupported::ArrayInRegister.into()),
            },
            Operand::Text(_) => Err(Unsupported::StringLiteralHasNoAddress.into()),
        }
    }

    fn read_u64(&self, place: &Place) -> Result<u64, Unavailable> {
        let bytes = read_place(self.memory, place, 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[..8]);
        Ok(u64::from_le_bytes(word))
    }

    fn bit_field(
        &mut self,
        place: &Place,
        offset: u64,
        bit_offset: u64,
        bit_size: u64,
        ty: TypeKey,
    ) -> Result<Operand, Unavailable> {
        if bit_size == 0 || bit_size > 64 {
            return Err(Unsupported::BitFieldSize { bits: bit_size }.into());
        }
        let start = offset + bit_offset / 8;
        let shift = bit_offset % 8;
        let span = (shift + bit_size).div_ceil(8) as usize;
        let bytes = read_place(self.memory, &offset_place(place, start, None), span)?;
        let mut buffer = [0u8; 16];
        buffer[..span].copy_from_slice(&bytes[..span]);
        let raw = (u128::from_le_bytes(buffer) >> shift) & ((1u128 << bit_size) - 1);
        let signed = matches!(
            class_of(self.types, self.module, &StaticType::Dwarf(ty)),
            Class::Int { signed: true, .. }
        );
        let value = if signed {
            crate::value::sign_extend(raw, bit_size as usize)
        } else {
            raw as i128
        };
        let class = class_of(self.types, self.module, &StaticType::Dwarf(ty));
        let static_type = match class {
            Class::Bool => StaticType::Bool,
            _ => StaticType::Int { bytes: 8, signed },
        };
        let value = if static_type == StaticType::Bool {
            Number::Bool(value != 0)
        } else {
            Number::Int(value)
        };
        Ok(Operand::Number {
            value,
            ty: static_type,
        })
    }

    fn strlen(&self, address: u64) -> Result<u64, Unavailable> {
        let (bytes, ended) = self
            .memory
            .read_string(address, MAX_STRLEN as usize)
            .map_err(|e| Unavailable::read_error(e.addr))?;
        if !ended {
            return Err(if bytes.len() as u64 >= MAX_STRLEN {
                Unsupported::NoNulWithin { bytes: MAX_STRLEN }.into()
            } else {
                Unavailable::read_error(address.wrapping_add(bytes.len() as u64))
            });
        }
        Ok(bytes.len() as u64)
    }

    /// Where a libc++ string's characters are.
    fn libcxx_chars(&self, place: &Place, kind: StringKind) -> Result<LibcxxChars, Unavailable> {
        let StringKind::Libcxx { rep, .. } = kind else {
            return Err(Unsupported::NotALibcxxString.into());
        };
        let bytes = read_place(self.memory, &offset_place(place, rep, Some(24)), 24)?;
        crate::value::layout::libcxx_chars(kind, &bytes).ok_or(Unavailable::Unsupported(
            Unsupported::Corrupt(Corruption::LibcxxString),
        ))
    }

    fn container_length(&mut self, place: &Place, ty: TypeKey) -> Result<u64, Unavailable> {
        if let Some(kind @ StringKind::Libcxx { .. }) =
            crate::value::layout::string_kind(self.types, self.module, ty)
        {
            return match self.libcxx_chars(place, kind)? {
                LibcxxChars::Long { len, .. } | LibcxxChars::Short { len, .. } => Ok(len),
            };
        }
        let field = crate::value::layout::length_field(self.types, self.module, ty)
            .ok_or(Unavailable::Unsupported(Unsupported::LenUnknownLayout))?;
        match field {
            LengthField::Count { offset, size } => {
                let bytes = read_place(
                    self.memory,
                    &offset_place(place, offset, Some(size)),
                    size as usize,
                )?;
                let mut buffer = [0u8; 16];
                let n = bytes.len().min(16);
                buffer[..n].copy_from_slice(&bytes[..n]);
                Ok(u128::from_le_bytes(buffer) as u64)
            }
            LengthField::PointerRange {
                start,
                finish,
                stride,
            } => {
                let start = self.read_u64(&offset_place(place, start, Some(8)))?;
                let finish = self.read_u64(&offset_place(place, finish, Some(8)))?;
                Ok(finish.saturating_sub(start) / stride.max(1))
            }
        }
    }

    /// Up to `max` bytes of the C string at `address` (a comparison needs no
    /// more, and a capture plans no more). A string cut short by unreadable
    /// memory is an error, not a shorter string: the comparison would be a
    /// guess.
    fn c_string_bytes(&self, address: u64, max: u64) -> Result<Vec<u8>, Unavailable> {
        if address == 0 {
            return Err(Unavailable::null(NullKind::Pointer));
        }
        let (bytes, ended) = self
            .memory
            .read_string(address, max as usize)
            .map_err(|e| Unavailable::read_error(e.addr))?;
        if !ended && (bytes.len() as u64) < max {
            return Err(Unavailable::read_error(
                address.wrapping_add(bytes.len() as u64),
            ));
        }
        Ok(bytes)
    }

    /// Up to `max` bytes of a string-like operand.
    fn string_bytes(&mut self, operand: Operand, max: u64) -> Result<Vec<u8>, Unavailable> {
        let (place, ty) = match operand {
            Operand::Object { place, ty } => (place, ty),
            Operand::Text(bytes) => return Ok(bytes),
            Operand::Number {
                value,
                ty: StaticType::Pointer(Some(_)),
            } => return self.c_string_bytes(value.as_i128() as u64, max),
            Operand::Number { .. } | Operand::SubArray { .. } => {
                return Err(Unsupported::NotAString.into());
            }
        };
        let kind = crate::value::layout::string_kind(self.types, self.module, ty)
            .ok_or(Unavailable::Unsupported(Unsupported::NotAString))?;
        match kind {
            StringKind::CharPointer => {
                let address = self.read_u64(&place)?;
                self.c_string_bytes(address, max)
            }
            StringKind::CharArray { len } => {
                let bytes = read_place(self.memory, &place, len.min(max) as usize)?;
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                Ok(bytes[..end].to_vec())
            }
            StringKind::Counted {
                pointer_offset,
                length_offset,
            } => {
                let address = self.read_u64(&offset_place(&place, pointer_offset, Some(8)))?;
                let length = self.read_u64(&offset_place(&place, length_offset, Some(8)))?;
                read_place(
                    self.memory,
                    &Place::Memory(address),
                    length.min(max) as usize,
                )
            }
            StringKind::Libcxx { .. } => match self.libcxx_chars(&place, kind)? {
                LibcxxChars::Long { address, len } => {
                    read_place(self.memory, &Place::Memory(address), len.min(max) as usize)
                }
                LibcxxChars::Short { offset, len } => read_place(
                    self.memory,
                    &offset_place(&place, offset, None),
                    len.min(max) as usize,
                ),
            },
        }
    }
}

/// The number an evaluated operand holds (conditions, histograms).
pub(crate) fn operand_number(
    module: &Module,
    types: &mut TypeTable,
    memory: &dyn MemorySource,
    operand: Operand,
) -> Result<Number, Unavailable> {
    let no_globals = |_: usize| -> Option<LocationEnv<'_>> { None };
    let mut executor = Executor {
        module,
        types,
        memory,
        frame: None,
        global_env: &no_globals,
    };
    let operand = executor.settle(operand)?;
    executor.number_of(operand)
}

/// The result of evaluation as a [`Value`].
pub(crate) fn render(
    decoder: &mut Decoder<'_>,
    name: &str,
    operand: Operand,
    static_type: &StaticType,
    type_name: String,
    language: Language,
) -> Value {
    match operand {
        Operand::Object { place, ty } => decoder.decode(name, Some(ty), &place),
        Operand::SubArray {
            place,
            element,
            dims,
        } => decoder.decode_array(name, type_name, element, &dims, &place),
        Operand::Text(bytes) => Value::leaf(name, type_name, quote_bytes(&bytes, language)),
        Operand::Number { value, ty } => {
            let text = match (&ty, value) {
                (StaticType::Bool, value) => value.truthy().to_string(),
                (StaticType::Float { .. }, value) => format_float(value.as_f64()),
                (StaticType::Char { .. }, value) => {
                    let code = u32::try_from(value.as_i128()).unwrap_or(u32::MAX);
                    if language == Language::Rust {
                        quote_char(code, language)
                    } else {
                        format!("{} {}", value.as_i128(), quote_char(code, language))
                    }
                }
                (StaticType::Pointer(pointee), value) => {
                    let address = value.as_i128() as u64;
                    return decoder.decode_pointer(name, type_name, *pointee, address, language);
                }
                (_, value) => value.as_i128().to_string(),
            };
            let _ = static_type;
            Value::leaf(name, type_name, text)
        }
    }
}

fn dwarf_type(ty: &StaticType) -> Result<TypeKey, Unavailable> {
    match ty {
        StaticType::Dwarf(key) => Ok(*key),
        _ => Err(Unsupported::NotDebugInfoTyped.into()),
    }
}

fn available(place: Place) -> Result<Place, Unavailable> {
    match place {
        Place::Unavailable(reason) => Err(reason),
        other => Ok(other),
    }
}

/// Reads `len` bytes from a place.
pub(crate) fn read_place(
    memory: &dyn MemorySource,
    place: &Place,
    len: usize,
) -> Result<Vec<u8>, Unavailable> {
    match place {
        Place::Memory(address) => {
            let mut buffer = vec![0u8; len];
            memory
                .read_memory(*address, &mut buffer)
                .map_err(|e| Unavailable::read_failed(e.addr, len))?;
            Ok(buffer)
        }
        Place::Bytes { bytes, missing } => {
            if missing.iter().any(|r| r.start < len) {
                return Err(OptimizedOut::MissingPieces.into());
            }
            if bytes.len() < len {
                return Err(Unsupported::ValueSmallerThanType.into());
            }
            Ok(bytes[..len].to_vec())
        }
        Place::Unavailable(reason) => Err(reason.clone()),
    }
}

/// Wraps an integer to `bytes` wide, signed or not.
fn wrap(value: i128, bytes: u8, signed: bool) -> i128 {
    let bits = u32::from(bytes.clamp(1, 16)) * 8;
    if bits >= 128 {
        return value;
    }
    let mask = (1i128 << bits) - 1;
    let low = value & mask;
    if signed && low >> (bits - 1) & 1 == 1 {
        low - (1i128 << bits)
    } else {
        low
    }
}

fn round_float(value: f64, bytes: u8) -> f64 {
    if bytes == 4 {
        f64::from(value as f32)
    } else {
        value
    }
}

fn compare(op: BinaryOp, ordering: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (op, ordering) {
        (BinaryOp::Eq, Some(Equal)) => true,
        (BinaryOp::Ne, Some(Equal)) => false,
        (BinaryOp::Ne, _) => true,
        (BinaryOp::Lt, Some(Less)) => true,
        (BinaryOp::Le, Some(Less | Equal)) => true,
        (BinaryOp::Gt, Some(Greater)) => true,
        (BinaryOp::Ge, Some(Greater | Equal)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_follows_the_width() {
        assert_eq!(wrap(300, 1, false), 44);
        assert_eq!(wrap(200, 1, true), -56);
        assert_eq!(wrap(-1, 4, false), 0xffff_ffff);
        assert_eq!(wrap(i128::from(u64::MAX), 8, true), -1);
    }
}
