//! The typed plan: a parsed expression with every name resolved to a
//! variable's location and every operation type-checked, once; then
//! evaluated as often as needed against a frame's registers and memory.
//!
//! Compilation does the slow work (scope walk, name lookup, DWARF types)
//! and reports errors with columns. Evaluation only evaluates locations,
//! reads memory and does arithmetic; a failure there (unmapped memory, a
//! register not saved) is a value that says why, never a panic.

use std::sync::Arc;

use crate::debuginfo::Module;
use crate::debuginfo::scope::{GlobalIndex, VariableLocation};
use crate::debuginfo::types::{
    AggregateKind, BaseEncoding, Language, MemberOffset, TypeKey, TypeKind, TypeTable,
};
use crate::value::Place;

use super::EvalError;
use super::parse::{BinaryOp, Expr, ExprKind, SizeOfOperand, TypeSyntax, UnaryOp};

/// The static type of a plan node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StaticType {
    /// A type from the debug info.
    Dwarf(TypeKey),
    /// A computed integer.
    Int { bytes: u8, signed: bool },
    /// A computed float.
    Float { bytes: u8 },
    /// A computed boolean.
    Bool,
    /// A character literal (`bytes` 1 for C, 4 for Rust).
    Char { bytes: u8 },
    /// An address computed by `&x` or pointer arithmetic.
    Pointer(Option<TypeKey>),
    /// A string literal.
    Text,
    /// One row of a multi-dimensional array: elements of `element`, with
    /// `dims` (outermost first) left.
    SubArray {
        element: TypeKey,
        dims: Vec<Option<u64>>,
    },
}

/// How a static type behaves in operations.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Class {
    Int {
        bytes: u8,
        signed: bool,
    },
    Float {
        bytes: u8,
    },
    Bool,
    Char {
        bytes: u8,
    },
    Pointer {
        pointee: Option<TypeKey>,
    },
    /// An array; `element` is a DWARF type or, for a multi-dimensional
    /// array, the sub-array one level down.
    Array {
        element: Option<StaticType>,
        count: Option<u64>,
        stride: Option<u64>,
    },
    Aggregate,
    Text,
    Other(String),
}

impl Class {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Class::Int { .. } | Class::Float { .. } | Class::Bool | Class::Char { .. }
        )
    }
}

/// A plan node: what to compute, its static type and source column.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub ty: StaticType,
    pub column: usize,
}

/// What a node computes.
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// A local or argument of the frame.
    Local(VariableLocation),
    /// A local whose value cannot be had at this frame, and why (its
    /// declaration has not run yet).
    Unavailable(crate::value::Unavailable),
    /// A global or static, with the unit its location belongs to.
    Global {
        location: VariableLocation,
        unit: usize,
    },
    /// A literal number.
    Number(Number),
    /// A string literal.
    Text(Vec<u8>),
    /// A data member `offset` bytes in (after dereferencing the base when
    /// `through_pointer`); bit-fields carry `(bit_offset, bit_size)`.
    Member {
        base: Box<Node>,
        through_pointer: bool,
        offset: u64,
        bits: Option<(u64, u64)>,
    },
    /// `*p` (also a C++ reference's referent).
    Deref(Box<Node>),
    /// `&x`.
    AddressOf(Box<Node>),
    /// `a[i]` on an array (bounds-checked when the length is known) or a
    /// pointer.
    Index {
        base: Box<Node>,
        index: Box<Node>,
        stride: u64,
        bound: Option<u64>,
        through_pointer: bool,
    },
    /// A unary operator on a number.
    Unary { op: UnaryOp, operand: Box<Node> },
    /// A binary operator.
    Binary {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        mode: BinaryMode,
    },
    /// A cast to a base type.
    Cast(Box<Node>),
    /// `len(x)`.
    Len { operand: Box<Node>, how: LengthOf },
}

/// A computed number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Int(i128),
    Float(f64),
    Bool(bool),
}

impl Number {
    pub fn as_i128(self) -> i128 {
        match self {
            Number::Int(i) => i,
            Number::Float(f) => f as i128,
            Number::Bool(b) => i128::from(b),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
            Number::Bool(b) => f64::from(u8::from(b)),
        }
    }

    pub fn truthy(self) -> bool {
        match self {
            Number::Int(i) => i != 0,
            Number::Float(f) => f != 0.0,
            Number::Bool(b) => b,
        }
    }
}

/// How a binary operator computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinaryMode {
    /// Integer arithmetic, result wrapped to this width.
    Int { bytes: u8, signed: bool },
    /// Float arithmetic.
    Float,
    /// Comparison of numbers (floats if either is a float).
    Compare { float: bool },
    /// `&&` / `||`.
    Logic,
    /// pointer ± integer, scaled by the pointee size.
    PointerOffset { stride: u64 },
    /// pointer − pointer, in elements.
    PointerDifference { stride: u64 },
    /// Comparison of addresses.
    PointerCompare,
    /// Comparison of a string-like value with a string literal.
    TextCompare,
}

/// How `len(x)` is found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LengthOf {
    /// A fixed-size array.
    Constant(u64),
    /// A NUL-terminated C string (bounded).
    CString,
    /// Whatever the pretty printer of the value's type counts.
    Printer,
}

/// Limits on a compiled plan, so a hostile expression cannot make
/// compilation or evaluation expensive.
const MAX_PLAN_NODES: usize = 512;

/// Name resolution for one compile.
pub(crate) struct Scope<'a> {
    /// Frame variables in scope (not shadowed), if a frame is given.
    pub locals: Vec<(String, Option<TypeKey>, VariableLocation)>,
    /// Locals whose declaration has not run yet at the frame's line, with
    /// the reason their value is unavailable.
    pub not_yet: Vec<(String, crate::value::Unavailable)>,
    /// The frame's (or the main) module.
    pub module: &'a Arc<Module>,
    /// The language of the frame's unit (literal types, names).
    pub language: Language,
    /// The `.debug_info` offset of the frame's unit, where type names used
    /// in casts and `sizeof` are looked up.
    pub unit: Option<usize>,
}

/// Compiles a parsed expression into a plan.
pub(crate) struct Compiler<'a> {
    pub scope: Scope<'a>,
    pub types: &'a mut TypeTable,
    /// Names read (variables and fields), for redaction at evaluation.
    pub names: Vec<String>,
    nodes: usize,
}

fn type_error(column: usize, message: impl Into<String>) -> EvalError {
    EvalError::Type {
        column,
        message: message.into(),
    }
}

impl<'a> Compiler<'a> {
    pub fn new(scope: Scope<'a>, types: &'a mut TypeTable) -> Compiler<'a> {
        Compiler {
            scope,
            types,
            names: Vec::new(),
            nodes: 0,
        }
    }

    fn module(&self) -> &'a Module {
        self.scope.module
    }

    /// The display name of a static type.
    pub fn type_name(&mut self, ty: &StaticType) -> String {
        static_type_name(self.types, self.scope.module, ty, self.scope.language)
    }

    /// How a static type behaves in operations (typedefs, qualifiers and
    /// references looked through).
    pub fn class(&mut self, ty: &StaticType) -> Class {
        class_of(self.types, self.scope.module, ty)
    }

    pub fn compile(&mut self, expr: &Expr) -> Result<Node, EvalError> {
        self.nodes += 1;
        if self.nodes > MAX_PLAN_NODES {
            return Err(type_error(expr.column, "expression is too large"));
        }
        let column = expr.column;
        match &expr.kind {
            ExprKind::Name { segments, absolute } => self.name(segments, *absolute, column),
            ExprKind::Int { value, suffix } => {
                let (bytes, signed) =
                    literal_int_type(*value, suffix.as_deref(), self.scope.language);
                let value = i128::try_from(*value).unwrap_or(i128::MAX);
                Ok(Node {
                    kind: NodeKind::Number(Number::Int(value)),
                    ty: StaticType::Int { bytes, signed },
                    column,
                })
            }
            ExprKind::Float { value, single } => Ok(Node {
                kind: NodeKind::Number(Number::Float(*value)),
                ty: StaticType::Float {
                    bytes: if *single { 4 } else { 8 },
                },
                column,
            }),
            ExprKind::Char(code) => Ok(Node {
                kind: NodeKind::Number(Number::Int(i128::from(*code))),
                ty: StaticType::Char {
                    bytes: if self.scope.language == Language::Rust {
                        4
                    } else {
                        1
                    },
                },
                column,
            }),
            ExprKind::Str(bytes) => Ok(Node {
                kind: NodeKind::Text(bytes.clone()),
                ty: StaticType::Text,
                column,
            }),
            ExprKind::Bool(b) => Ok(Node {
                kind: NodeKind::Number(Number::Bool(*b)),
                ty: StaticType::Bool,
                column,
            }),
            ExprKind::Field { base, field } => self.field(base, field, false, column),
            ExprKind::Arrow { base, field } => self.field(base, field, true, column),
            ExprKind::Index { base, index } => self.index(base, index, column),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, column),
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, column),
            ExprKind::Cast { target, operand } => self.cast(target, operand, column),
            ExprKind::Len(operand) => self.len(operand, column),
            ExprKind::SizeOf(operand) => self.size_of(operand, column),
        }
    }

    fn name(
        &mut self,
        segments: &[String],
        absolute: bool,
        column: usize,
    ) -> Result<Node, EvalError> {
        let joined = segments.join("::");
        if let Some(last) = segments.last() {
            self.names.push(last.clone());
        }
        if segments.len() == 1
            && !absolute
            && let Some((_, ty, location)) = self
                .scope
                .locals
                .iter()
                .rev()
                .find(|(name, _, _)| *name == joined)
        {
            let ty = ty.ok_or_else(|| {
                type_error(column, format!("`{joined}` has no type in the debug info"))
            })?;
            if let Some((_, reason)) = self.scope.not_yet.iter().find(|(n, _)| *n == joined) {
                return Ok(Node {
                    kind: NodeKind::Unavailable(reason.clone()),
                    ty: StaticType::Dwarf(ty),
                    column,
                });
            }
            return Ok(Node {
                kind: NodeKind::Local(location.clone()),
                ty: StaticType::Dwarf(ty),
                column,
            });
        }
        // C++: after locals, the members of `*this` (bases included), then
        // its class's statics, then globals.
        if segments.len() == 1
            && !absolute
            && self.scope.language == Language::Cpp
            && let Some(node) = self.member_of_this(&joined, column)?
        {
            return Ok(node);
        }
        let index = GlobalIndex::of(self.scope.module);
        let found = index.lookup(segments);
        match found.as_slice() {
            [global] => {
                let ty = global.ty.ok_or_else(|| {
                    type_error(column, format!("`{joined}` has no type in the debug info"))
                })?;
                Ok(Node {
                    kind: NodeKind::Global {
                        location: global.location.clone(),
                        unit: global.unit,
                    },
                    ty: StaticType::Dwarf(ty),
                    column,
                })
            }
            [] => {
                let mut candidates: Vec<String> = self
                    .scope
                    .locals
                    .iter()
                    .map(|(n, _, _)| n.clone())
                    .collect();
                candidates.dedup();
                let mut globals: Vec<&str> = index.names().collect();
                globals.sort_by_key(|g| edit_distance(g.rsplit("::").next().unwrap_or(g), &joined));
                candidates.sort_by_key(|c| edit_distance(c, &joined));
                candidates.extend(globals.into_iter().take(8).map(str::to_string));
                Err(EvalError::UnknownName {
                    name: joined,
                    column,
                    in_scope: candidates,
                })
            }
            many => {
                // Prefer the executable's own definition when several units
                // define the same static (C `static` in two files).
                let names: Vec<String> = many.iter().map(|g| g.name.clone()).collect();
                let mut unique = names.clone();
                unique.dedup();
                if unique.len() == 1 {
                    let global = many[0];
                    let ty = global.ty.ok_or_else(|| {
                        type_error(column, format!("`{joined}` has no type in the debug info"))
                    })?;
                    return Ok(Node {
                        kind: NodeKind::Global {
                            location: global.location.clone(),
                            unit: global.unit,
                        },
                        ty: StaticType::Dwarf(ty),
                        column,
                    });
                }
                let shown: Vec<&str> = unique.iter().take(8).map(String::as_str).collect();
                let more = unique.len().saturating_sub(shown.len());
                let tail = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                Err(type_error(
                    column,
                    format!(
                        "`{joined}` is ambiguous: {}{tail}; write the qualified name",
                        shown.join(", ")
                    ),
                ))
            }
        }
    }

    /// The object pointer C++ name lookup reads members through: the local
    /// `this` (a member function's object pointer, or gcc's capture of it
    /// in a lambda's body), or, when `this` is the closure object itself
    /// (clang), the closure's captured `this`.
    fn this_object(&mut self, column: usize) -> Option<Node> {
        let (_, ty, location) = self
            .scope
            .locals
            .iter()
            .rev()
            .find(|(name, _, _)| name == "this")?
            .clone();
        let node = Node {
            kind: NodeKind::Local(location),
            ty: StaticType::Dwarf(ty?),
            column,
        };
        let Class::Pointer {
            pointee: Some(pointee),
        } = self.class(&node.ty)
        else {
            return None;
        };
        let (class_key, _) = self.types.strip(self.module(), pointee)?;
        if !crate::debuginfo::scope::is_closure_class(self.module(), self.types, class_key) {
            return Some(node);
        }
        ["__this", "this"].into_iter().find_map(|capture| {
            find_member(self.types, self.module(), class_key, capture)?;
            self.field_of(node.clone(), capture, true, column, 0).ok()
        })
    }

    /// A name C++ finds in the class of `this`: a data member of the object
    /// (`this->name`, through base classes), else a static member of the
    /// class or a base (`Class::name`). `None` when there is no `this` or
    /// it has no such member.
    fn member_of_this(&mut self, name: &str, column: usize) -> Result<Option<Node>, EvalError> {
        let Some(this) = self.this_object(column) else {
            return Ok(None);
        };
        let Class::Pointer {
            pointee: Some(pointee),
        } = self.class(&this.ty)
        else {
            return Ok(None);
        };
        let Some((mut class_key, class)) = self.types.strip(self.module(), pointee) else {
            return Ok(None);
        };
        if class
            .aggregate()
            .is_some_and(|a| a.declaration && a.members.is_empty())
            && let Some(definition) = self.types.definition_of(self.module(), class_key)
        {
            class_key = definition;
        }
        if find_member(self.types, self.module(), class_key, name).is_some() {
            return self.field_of(this, name, true, column, 0).map(Some);
        }
        // Statics: `Class::name` for the class and each base, nearest first.
        let index = GlobalIndex::of(self.scope.module);
        for class_name in self.class_and_bases(class_key) {
            let found = index.lookup(&[class_name, name.to_string()]);
            let mut names: Vec<&str> = found.iter().map(|g| g.name.as_str()).collect();
            names.dedup();
            if let ([global, ..], [_]) = (found.as_slice(), names.as_slice()) {
                let ty = global.ty.ok_or_else(|| {
                    type_error(column, format!("`{name}` has no type in the debug info"))
                })?;
                return Ok(Some(Node {
                    kind: NodeKind::Global {
                        location: global.location.clone(),
                        unit: global.unit,
                    },
                    ty: StaticType::Dwarf(ty),
                    column,
                }));
            }
        }
        Ok(None)
    }

    /// The names of a class and its base classes, breadth first.
    fn class_and_bases(&mut self, key: TypeKey) -> Vec<String> {
        let mut names = Vec::new();
        let mut queue = std::collections::VecDeque::from([key]);
        while let Some(current) = queue.pop_front() {
            if names.len() >= 32 {
                break;
            }
            let Some((current, ty)) = self.types.strip(self.module(), current) else {
                continue;
            };
            let ty = match ty.aggregate() {
                Some(a) if a.declaration && a.members.is_empty() => {
                    match self.types.definition_of(self.module(), current) {
                        Some(definition) => self.types.get(self.module(), definition),
                        None => ty,
                    }
                }
                _ => ty,
            };
            let Some(aggregate) = ty.aggregate() else {
                continue;
            };
            if !ty.short_name.is_empty() {
                names.push(ty.short_name.clone());
            }
            queue.extend(
                aggregate
                    .members
                    .iter()
                    .filter(|m| m.is_base)
                    .filter_map(|m| m.ty),
            );
        }
        names
    }

    /// Looks through pointers/references for `.`, or requires one for `->`.
    fn field(
        &mut self,
        base: &Expr,
        field: &str,
        arrow: bool,
        column: usize,
    ) -> Result<Node, EvalError> {
        if !arrow && let Some(node) = self.precise_capture(base, field, column)? {
            return Ok(node);
        }
        let base_node = self.compile(base)?;
        self.field_of(base_node, field, arrow, column, 0)
    }

    /// A Rust closure captures only the field paths it uses (precise
    /// capture) and rustc names such a capture by the path joined with
    /// `__` (`req.id` is the variable `req__id`). So `a.b.c`, where `a` is
    /// not a local, reads the longest captured prefix (`a__b`) and then the
    /// rest of the path as fields.
    fn precise_capture(
        &mut self,
        base: &Expr,
        field: &str,
        column: usize,
    ) -> Result<Option<Node>, EvalError> {
        let mut path = vec![field.to_string()];
        let mut at = base;
        let root = loop {
            match &at.kind {
                ExprKind::Field { base, field } => {
                    path.push(field.clone());
                    at = base;
                }
                ExprKind::Name {
                    segments,
                    absolute: false,
                } if segments.len() == 1 => break segments[0].clone(),
                _ => return Ok(None),
            }
        };
        path.push(root);
        path.reverse();
        let is_local = |name: &str, scope: &Scope| scope.locals.iter().any(|(n, _, _)| n == name);
        if is_local(&path[0], &self.scope) {
            return Ok(None);
        }
        for taken in (2..=path.len()).rev() {
            let captured = path[..taken].join("__");
            if !is_local(&captured, &self.scope) {
                continue;
            }
            let mut node = self.name(std::slice::from_ref(&captured), false, column)?;
            for rest in &path[taken..] {
                node = self.field_of(node, rest, false, column, 0)?;
            }
            return Ok(Some(node));
        }
        Ok(None)
    }

    /// What a Rust smart pointer (`Box`, `Rc`, `Arc`, a newtype around
    /// one) at `object` points at, as Rust's `Deref` gives it; `None` for
    /// anything else.
    fn smart_deref(&mut self, object: &Node) -> Option<Node> {
        let StaticType::Dwarf(key) = object.ty else {
            return None;
        };
        let smart = crate::value::layout::smart_pointer(self.types, self.module(), key)?;
        let column = object.column;
        let pointer = Node {
            kind: NodeKind::Member {
                base: Box::new(object.clone()),
                through_pointer: false,
                offset: smart.pointer_offset,
                bits: None,
            },
            ty: StaticType::Pointer(Some(smart.target)),
            column,
        };
        Some(Node {
            kind: NodeKind::Member {
                base: Box::new(pointer),
                through_pointer: true,
                offset: smart.target_offset,
                bits: None,
            },
            ty: StaticType::Dwarf(smart.target),
            column,
        })
    }

    fn field_of(
        &mut self,
        base_node: Node,
        field: &str,
        arrow: bool,
        column: usize,
        auto_derefs: usize,
    ) -> Result<Node, EvalError> {
        let mut through_pointer = false;
        let mut target = match &base_node.ty {
            StaticType::Dwarf(key) => *key,
            StaticType::Pointer(Some(key)) => {
                through_pointer = true;
                *key
            }
            other => {
                let name = self.type_name(&other.clone());
                return Err(type_error(column, format!("`{name}` has no fields")));
            }
        };
        // References are transparent; pointers are followed once for `->`
        // (and for `.`, as gdb allows, since the intent is unambiguous).
        let (stripped_key, stripped) = self
            .types
            .strip(self.module(), target)
            .ok_or_else(|| type_error(column, "`void` has no fields"))?;
        match &stripped.kind {
            TypeKind::Pointer(Some(pointee)) if !through_pointer => {
                through_pointer = true;
                target = *pointee;
            }
            TypeKind::Reference {
                target: Some(referent),
                ..
            } => target = *referent,
            TypeKind::Pointer(None) => {
                return Err(type_error(
                    column,
                    "cannot take a field of a `void *`; cast it first",
                ));
            }
            _ => {
                if arrow && !through_pointer {
                    let name = stripped.name.clone();
                    return Err(type_error(
                        column,
                        format!("`->` needs a pointer, but this is `{name}`; use `.` instead"),
                    ));
                }
                target = stripped_key;
            }
        }
        let (mut aggregate_key, mut aggregate_ty) = self
            .types
            .strip(self.module(), target)
            .ok_or_else(|| type_error(column, "`void` has no fields"))?;
        // `struct handle;` here, defined in another compilation unit.
        if aggregate_ty
            .aggregate()
            .is_some_and(|a| a.declaration && a.members.is_empty())
            && let Some(definition) = self.types.definition_of(self.module(), aggregate_key)
        {
            aggregate_key = definition;
            aggregate_ty = self.types.get(self.module(), definition);
        }
        if let TypeKind::Reference {
            target: Some(referent),
            ..
        } = aggregate_ty.kind
        {
            // A pointer to a reference is not a thing in C++; a Rust `&&T` is a pointer.
            let _ = referent;
        }
        // Rust auto-derefs any number of pointer levels (`&&T`, and `Box<T>`,
        // which rustc describes as a pointer type).
        if let TypeKind::Pointer(Some(pointee)) = aggregate_ty.kind
            && aggregate_ty.language == Language::Rust
            && auto_derefs < 8
        {
            let object = if through_pointer {
                Node {
                    kind: NodeKind::Deref(Box::new(base_node)),
                    ty: StaticType::Dwarf(aggregate_key),
                    column,
                }
            } else {
                base_node
            };
            let target = Node {
                kind: NodeKind::Deref(Box::new(object)),
                ty: StaticType::Dwarf(pointee),
                column,
            };
            return self.field_of(target, field, false, column, auto_derefs + 1);
        }
        let TypeKind::Aggregate(aggregate) = &aggregate_ty.kind else {
            return Err(type_error(
                column,
                format!("`{}` has no fields", aggregate_ty.name),
            ));
        };
        let wanted = if aggregate_ty.language == Language::Rust
            && field.chars().all(|c| c.is_ascii_digit())
        {
            format!("__{field}")
        } else {
            field.to_string()
        };
        self.names.push(field.to_string());
        let found = find_member(self.types, self.module(), aggregate_key, &wanted);
        if found.is_none() && auto_derefs < 8 {
            // Rust's auto-deref: `conf.route_prefix` with `conf: Arc<Config>`.
            let object = if through_pointer {
                Node {
                    kind: NodeKind::Deref(Box::new(base_node.clone())),
                    ty: StaticType::Dwarf(aggregate_key),
                    column,
                }
            } else {
                Node {
                    ty: StaticType::Dwarf(aggregate_key),
                    ..base_node.clone()
                }
            };
            if let Some(target) = self.smart_deref(&object) {
                return self.field_of(target, field, false, column, auto_derefs + 1);
            }
        }
        let Some(found) = found else {
            let mut fields: Vec<String> = aggregate
                .members
                .iter()
                .filter_map(|m| m.name.clone())
                .map(|n| {
                    if aggregate_ty.language == Language::Rust {
                        n.trim_start_matches("__").to_string()
                    } else {
                        n
                    }
                })
                .collect();
            if aggregate.variant_part.is_some() {
                return Err(type_error(
                    column,
                    format!(
                        "`{}` is an enum; evaluate it whole to see the active variant and its fields",
                        aggregate_ty.name
                    ),
                ));
            }
            fields.truncate(20);
            let kind = match aggregate.kind {
                AggregateKind::Union => "union",
                AggregateKind::Class => "class",
                AggregateKind::Struct => "struct",
            };
            return Err(type_error(
                column,
                format!(
                    "{kind} `{}` has no field `{field}`; its fields are: {}",
                    aggregate_ty.name,
                    fields.join(", ")
                ),
            ));
        };
        let ty = found.ty.ok_or_else(|| {
            type_error(
                column,
                format!("field `{field}` has no type in the debug info"),
            )
        })?;
        Ok(Node {
            kind: NodeKind::Member {
                base: Box::new(base_node),
                through_pointer,
                offset: found.offset,
                bits: found.bits,
            },
            ty: StaticType::Dwarf(ty),
            column,
        })
    }

    fn index(&mut self, base: &Expr, index: &Expr, column: usize) -> Result<Node, EvalError> {
        let base_node = self.compile(base)?;
        let index_node = self.compile(index)?;
        let index_class = self.class(&index_node.ty);
        if !matches!(
            index_class,
            Class::Int { .. } | Class::Char { .. } | Class::Bool
        ) {
            let name = self.type_name(&index_node.ty);
            return Err(type_error(
                index.column,
                format!("an index must be an integer, not `{name}`"),
            ));
        }
        match self.class(&base_node.ty) {
            Class::Array {
                element: Some(element),
                count,
                stride: Some(stride),
            } => Ok(Node {
                kind: NodeKind::Index {
                    base: Box::new(base_node),
                    index: Box::new(index_node),
                    stride,
                    bound: count,
                    through_pointer: false,
                },
                ty: element,
                column,
            }),
            Class::Pointer {
                pointee: Some(pointee),
            } => {
                let stride = self.types.size_of(self.module(), pointee).ok_or_else(|| {
                    type_error(column, "cannot index a pointer to a type of unknown size")
                })?;
                Ok(Node {
                    kind: NodeKind::Index {
                        base: Box::new(base_node),
                        index: Box::new(index_node),
                        stride,
                        bound: None,
                        through_pointer: true,
                    },
                    ty: StaticType::Dwarf(pointee),
                    column,
                })
            }
            Class::Aggregate => {
                // Slices, Vec and std::vector: index through their data pointer.
                let StaticType::Dwarf(key) = base_node.ty else {
                    return Err(type_error(column, "this value cannot be indexed"));
                };
                let key = self.referent(key);
                match crate::value::layout::element_access(self.types, self.module(), key) {
                    Some(access) => Ok(Node {
                        kind: NodeKind::Index {
                            base: Box::new(Node {
                                kind: NodeKind::Member {
                                    base: Box::new(base_node),
                                    through_pointer: false,
                                    offset: access.pointer_offset,
                                    bits: None,
                                },
                                ty: StaticType::Pointer(Some(access.element)),
                                column,
                            }),
                            index: Box::new(index_node),
                            stride: access.stride,
                            bound: None,
                            through_pointer: true,
                        },
                        ty: StaticType::Dwarf(access.element),
                        column,
                    }),
                    None => {
                        let name = self.type_name(&base_node.ty);
                        Err(type_error(column, format!("`{name}` cannot be indexed")))
                    }
                }
            }
            _ => {
                let name = self.type_name(&base_node.ty);
                Err(type_error(
                    column,
                    format!(
                        "`{name}` cannot be indexed; only arrays, pointers, slices and vectors"
                    ),
                ))
            }
        }
    }

    fn unary(&mut self, op: UnaryOp, operand: &Expr, column: usize) -> Result<Node, EvalError> {
        let node = self.compile(operand)?;
        let class = self.class(&node.ty);
        if op == UnaryOp::Deref
            && class == Class::Aggregate
            && let Some(target) = self.smart_deref(&node)
        {
            return Ok(target);
        }
        let ty = match op {
            UnaryOp::Deref => match class {
                Class::Pointer {
                    pointee: Some(pointee),
                } => StaticType::Dwarf(pointee),
                Class::Pointer { pointee: None } => {
                    return Err(type_error(column, "cannot dereference a `void *`"));
                }
                Class::Array {
                    element: Some(element),
                    ..
                } => {
                    // *array is its first element.
                    return Ok(Node {
                        kind: NodeKind::Index {
                            base: Box::new(node),
                            index: Box::new(Node {
                                kind: NodeKind::Number(Number::Int(0)),
                                ty: StaticType::Int {
                                    bytes: 8,
                                    signed: true,
                                },
                                column,
                            }),
                            stride: 0,
                            bound: None,
                            through_pointer: false,
                        },
                        ty: element,
                        column,
                    });
                }
                _ => {
                    let name = self.type_name(&node.ty);
                    return Err(type_error(
                        column,
                        format!("cannot dereference `{name}`: it is not a pointer"),
                    ));
                }
            },
            UnaryOp::AddrOf => {
                if !is_place(&node) {
                    return Err(type_error(
                        column,
                        "`&` needs a variable, field or element, not a computed value",
                    ));
                }
                match &node.ty {
                    StaticType::Dwarf(key) => StaticType::Pointer(Some(*key)),
                    _ => return Err(type_error(column, "`&` needs a variable, field or element")),
                }
            }
            UnaryOp::Neg => match class {
                Class::Int { bytes, .. } => StaticType::Int {
                    bytes: bytes.max(4),
                    signed: true,
                },
                Class::Char { .. } | Class::Bool => StaticType::Int {
                    bytes: 4,
                    signed: true,
                },
                Class::Float { bytes } => StaticType::Float { bytes },
                _ => return Err(self.not_numeric(&node, column, "-")),
            },
            UnaryOp::BitNot => match class {
                Class::Int { bytes, signed } => StaticType::Int {
                    bytes: bytes.max(4),
                    signed,
                },
                Class::Char { .. } | Class::Bool => StaticType::Int {
                    bytes: 4,
                    signed: true,
                },
                _ => return Err(self.not_numeric(&node, column, "~")),
            },
            UnaryOp::Not => match class {
                // Rust's `!` on an integer is bitwise.
                Class::Int { bytes, signed } if self.scope.language == Language::Rust => {
                    StaticType::Int { bytes, signed }
                }
                Class::Int { .. }
                | Class::Float { .. }
                | Class::Bool
                | Class::Char { .. }
                | Class::Pointer { .. } => StaticType::Bool,
                _ => return Err(self.not_numeric(&node, column, "!")),
            },
        };
        let kind = match op {
            UnaryOp::Deref => NodeKind::Deref(Box::new(node)),
            UnaryOp::AddrOf => NodeKind::AddressOf(Box::new(node)),
            _ => NodeKind::Unary {
                op,
                operand: Box::new(node),
            },
        };
        Ok(Node { kind, ty, column })
    }

    /// C's array-to-pointer conversion: an array object where a pointer is
    /// expected (a cast, pointer arithmetic, a comparison) is the address of
    /// its first element, typed as a pointer to the element (so a `char`
    /// array cast to `char *` reads as a string). Rust arrays do not decay,
    /// and a multi-dimensional array's row has no DWARF type to point at:
    /// those, and anything not an array in memory, stay as they are.
    fn decay(&mut self, node: Node) -> Node {
        if self.scope.language == Language::Rust || !is_place(&node) {
            return node;
        }
        let Class::Array {
            element: Some(StaticType::Dwarf(element)),
            ..
        } = self.class(&node.ty)
        else {
            return node;
        };
        let column = node.column;
        Node {
            kind: NodeKind::AddressOf(Box::new(node)),
            ty: StaticType::Pointer(Some(element)),
            column,
        }
    }

    fn not_numeric(&mut self, node: &Node, column: usize, operator: &str) -> EvalError {
        let name = self.type_name(&node.ty);
        type_error(
            column,
            format!("`{operator}` needs a number, but this is `{name}`"),
        )
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
        column: usize,
    ) -> Result<Node, EvalError> {
        let mut left = self.compile(lhs)?;
        let mut right = self.compile(rhs)?;
        let mut left_class = self.class(&left.ty);
        let mut right_class = self.class(&right.ty);
        // Arrays decay to pointers in arithmetic and comparisons, but a
        // char array compared with a string literal is compared as text.
        if !matches!(left_class, Class::Text) && !matches!(right_class, Class::Text) {
            left = self.decay(left);
            right = self.decay(right);
            left_class = self.class(&left.ty);
            right_class = self.class(&right.ty);
        }
        let comparison = matches!(
            op,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        );
        let (mode, ty) = if matches!(op, BinaryOp::And | BinaryOp::Or) {
            for (class, node) in [(&left_class, &left), (&right_class, &right)] {
                if !class.is_numeric() && !matches!(class, Class::Pointer { .. }) {
                    let name = self.type_name(&node.ty);
                    return Err(type_error(
                        node.column,
                        format!("`{}` needs a condition, not `{name}`", op.symbol()),
                    ));
                }
            }
            (BinaryMode::Logic, StaticType::Bool)
        } else if matches!(left_class, Class::Text) || matches!(right_class, Class::Text) {
            if !matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
                return Err(type_error(
                    column,
                    "strings can only be compared with == and !=",
                ));
            }
            let other = if matches!(left_class, Class::Text) {
                &right
            } else {
                &left
            };
            if !self.is_string_like(&other.ty) {
                let name = self.type_name(&other.ty);
                return Err(type_error(
                    other.column,
                    format!("cannot compare `{name}` with a string literal"),
                ));
            }
            (BinaryMode::TextCompare, StaticType::Bool)
        } else if let (Class::Pointer { pointee }, true) = (&left_class, right_class.is_numeric()) {
            match op {
                BinaryOp::Add | BinaryOp::Sub => {
                    let stride = pointee
                        .and_then(|p| self.types.size_of(self.module(), p))
                        .unwrap_or(1)
                        .max(1);
                    (
                        BinaryMode::PointerOffset { stride },
                        StaticType::Pointer(*pointee),
                    )
                }
                _ if comparison => (BinaryMode::PointerCompare, StaticType::Bool),
                _ => {
                    return Err(type_error(
                        column,
                        format!("`{}` does not apply to a pointer", op.symbol()),
                    ));
                }
            }
        } else if let (true, Class::Pointer { .. }) = (left_class.is_numeric(), &right_class) {
            if comparison {
                (BinaryMode::PointerCompare, StaticType::Bool)
            } else {
                return Err(type_error(
                    column,
                    "put the pointer on the left of pointer arithmetic",
                ));
            }
        } else if let (Class::Pointer { pointee }, Class::Pointer { .. }) =
            (&left_class, &right_class)
        {
            match op {
                BinaryOp::Sub => {
                    let stride = pointee
                        .and_then(|p| self.types.size_of(self.module(), p))
                        .unwrap_or(1)
                        .max(1);
                    (
                        BinaryMode::PointerDifference { stride },
                        StaticType::Int {
                            bytes: 8,
                            signed: true,
                        },
                    )
                }
                _ if comparison => (BinaryMode::PointerCompare, StaticType::Bool),
                _ => {
                    return Err(type_error(
                        column,
                        format!("`{}` does not apply to two pointers", op.symbol()),
                    ));
                }
            }
        } else if left_class.is_numeric() && right_class.is_numeric() {
            let float = matches!(left_class, Class::Float { .. })
                || matches!(right_class, Class::Float { .. });
            if comparison {
                (BinaryMode::Compare { float }, StaticType::Bool)
            } else if float {
                if matches!(
                    op,
                    BinaryOp::Shl
                        | BinaryOp::Shr
                        | BinaryOp::BitAnd
                        | BinaryOp::BitOr
                        | BinaryOp::BitXor
                        | BinaryOp::Rem
                ) {
                    return Err(type_error(
                        column,
                        format!("`{}` needs integers, not floats", op.symbol()),
                    ));
                }
                let bytes = match (&left_class, &right_class) {
                    (Class::Float { bytes: 4 }, Class::Float { bytes: 4 }) => 4,
                    _ => 8,
                };
                (BinaryMode::Float, StaticType::Float { bytes })
            } else {
                let (bytes, signed) = arithmetic_type(&left_class, &right_class);
                (
                    BinaryMode::Int { bytes, signed },
                    StaticType::Int { bytes, signed },
                )
            }
        } else {
            let (bad, node) = if !left_class.is_numeric() {
                (&left_class, &left)
            } else {
                (&right_class, &right)
            };
            let name = self.type_name(&node.ty);
            let hint = match bad {
                Class::Aggregate => " (pick a field)",
                Class::Array { .. } => " (pick an element)",
                _ => "",
            };
            return Err(type_error(
                node.column,
                format!(
                    "`{}` needs numbers, but this is `{name}`{hint}",
                    op.symbol()
                ),
            ));
        };
        Ok(Node {
            kind: NodeKind::Binary {
                op,
                lhs: Box::new(left),
                rhs: Box::new(right),
                mode,
            },
            ty,
            column,
        })
    }

    /// The type a C++ reference (through typedefs and qualifiers) refers
    /// to; the type itself for anything else.
    fn referent(&mut self, key: TypeKey) -> TypeKey {
        let mut current = key;
        for _ in 0..8 {
            match self.types.strip(self.module(), current) {
                Some((_, ty))
                    if matches!(
                        ty.kind,
                        TypeKind::Reference {
                            target: Some(_),
                            ..
                        }
                    ) =>
                {
                    let TypeKind::Reference {
                        target: Some(target),
                        ..
                    } = ty.kind
                    else {
                        break;
                    };
                    current = target;
                }
                _ => break,
            }
        }
        current
    }

    /// Strings that can be compared with a literal: C char pointers and
    /// arrays, Rust `&str`/`String`, C++ `std::string`.
    fn is_string_like(&mut self, ty: &StaticType) -> bool {
        match ty {
            StaticType::Dwarf(key) => {
                crate::value::layout::string_kind(self.types, self.module(), *key).is_some()
            }
            // A computed pointer (`(char *)obj->ptr`, `name + 1`).
            StaticType::Pointer(Some(pointee)) => {
                crate::value::layout::is_c_char(self.types, self.module(), *pointee)
            }
            _ => false,
        }
    }

    /// A type named in the expression: a DWARF type of the frame's unit,
    /// else of any unit of the module (a `void *` is often cast to a type
    /// the current file never mentions), else a base type by its usual name
    /// (base types are always known, declared or not).
    fn named_type(&mut self, target: &TypeSyntax) -> Option<StaticType> {
        if let Some(key) = find_type(self.types, self.scope.module, self.scope.unit, &target.base) {
            return Some(StaticType::Dwarf(key));
        }
        base_type_named(&target.base)
    }

    /// A DWARF base type of the same size and encoding as a synthesized
    /// one, under any of the names compilers give it.
    fn same_shape_base_type(&mut self, shape: &StaticType) -> Option<TypeKey> {
        let names: &[&str] = match shape {
            StaticType::Int {
                bytes: 1,
                signed: true,
            } => &["char", "signed char", "i8"],
            StaticType::Int {
                bytes: 1,
                signed: false,
            } => &["unsigned char", "u8"],
            StaticType::Int {
                bytes: 2,
                signed: true,
            } => &["short int", "short", "i16"],
            StaticType::Int {
                bytes: 2,
                signed: false,
            } => &["short unsigned int", "unsigned short", "u16"],
            StaticType::Int {
                bytes: 4,
                signed: true,
            } => &["int", "i32"],
            StaticType::Int {
                bytes: 4,
                signed: false,
            } => &["unsigned int", "u32"],
            StaticType::Int {
                bytes: 8,
                signed: true,
            } => &["long int", "long", "i64", "isize", "long long int"],
            StaticType::Int {
                bytes: 8,
                signed: false,
            } => &[
                "long unsigned int",
                "unsigned long",
                "u64",
                "usize",
                "long long unsigned int",
            ],
            StaticType::Int {
                bytes: 16,
                signed: true,
            } => &["__int128", "i128"],
            StaticType::Int {
                bytes: 16,
                signed: false,
            } => &["__int128 unsigned", "unsigned __int128", "u128"],
            StaticType::Float { bytes: 4 } => &["float", "f32"],
            StaticType::Float { bytes: 8 } => &["double", "f64"],
            StaticType::Bool => &["_Bool", "bool"],
            _ => &[],
        };
        let wanted = class_of(self.types, self.scope.module, shape);
        for name in names {
            if let Some(key) = find_type(self.types, self.scope.module, self.scope.unit, name)
                && class_of(self.types, self.scope.module, &StaticType::Dwarf(key)) == wanted
            {
                return Some(key);
            }
        }
        None
    }

    /// The error for a cast or `sizeof` naming a type nobody declares, with
    /// the closest type names of the module.
    fn unknown_type(&mut self, target: &TypeSyntax) -> EvalError {
        let wanted = target.base.as_str();
        let mut names = self.types.type_names(self.scope.module, 50_000);
        names.sort_by_key(|n| edit_distance(n.rsplit("::").next().unwrap_or(n), wanted));
        names.truncate(5);
        let hint = if names.is_empty() {
            String::new()
        } else {
            format!("; closest type names: {}", names.join(", "))
        };
        type_error(
            target.column,
            format!(
                "no type named `{wanted}` in the debug info (searched every unit of the module){hint}"
            ),
        )
    }

    fn cast(
        &mut self,
        target: &TypeSyntax,
        operand: &Expr,
        column: usize,
    ) -> Result<Node, EvalError> {
        let node = self.compile(operand)?;
        let node = self.decay(node);
        let class = self.class(&node.ty);
        if target.pointer_depth > 0 {
            if target.pointer_depth > 1 {
                return Err(type_error(
                    target.column,
                    "casts to pointers to pointers are not supported",
                ));
            }
            let pointee = match self.named_type(target) {
                Some(StaticType::Dwarf(key)) => Some(key),
                _ if target.base == "void" => None,
                // A base type no unit names this way (`u64` in C, `size_t`
                // when unused): any base type of the same shape will do.
                Some(shape) => match self.same_shape_base_type(&shape) {
                    Some(key) => Some(key),
                    None => return Err(self.unknown_type(target)),
                },
                None => return Err(self.unknown_type(target)),
            };
            if !matches!(class, Class::Pointer { .. } | Class::Int { .. }) {
                let name = self.type_name(&node.ty);
                return Err(type_error(
                    column,
                    format!("cannot cast `{name}` to a pointer"),
                ));
            }
            return Ok(Node {
                kind: NodeKind::Cast(Box::new(node)),
                ty: StaticType::Pointer(pointee),
                column,
            });
        }
        let ty = match self.named_type(target) {
            Some(ty @ StaticType::Dwarf(key)) => {
                // A typedef, enum or pointer type by name (`(sds)p`,
                // `(enum color)2`): the result is an object of that type, so
                // it renders and compares as a variable of it would.
                let target_class = self.class(&ty);
                let scalar =
                    target_class.is_numeric() || matches!(target_class, Class::Pointer { .. });
                if !scalar {
                    let name = self.type_name(&ty);
                    return Err(type_error(
                        target.column,
                        format!(
                            "cannot cast to `{name}`: only numbers and pointers can be cast (cast a pointer to `{name} *` and dereference it)"
                        ),
                    ));
                }
                if self.types.size_of(self.module(), key).is_none() {
                    return Err(type_error(
                        target.column,
                        "the size of this type is unknown",
                    ));
                }
                ty
            }
            Some(ty) => ty,
            None if base_type_named(&target.base).is_none()
                && !C_BASE_WORDS
                    .iter()
                    .any(|w| target.base.split(' ').any(|t| t == *w)) =>
            {
                return Err(self.unknown_type(target));
            }
            None => {
                return Err(type_error(
                    target.column,
                    format!(
                        "`{}` is not a base type; casts go to int, unsigned long, double, u64, f32, bool, …",
                        target.base
                    ),
                ));
            }
        };
        if !class.is_numeric() && !matches!(class, Class::Pointer { .. }) {
            let name = self.type_name(&node.ty);
            return Err(type_error(
                column,
                format!("cannot cast `{name}` to `{}`", target.base),
            ));
        }
        Ok(Node {
            kind: NodeKind::Cast(Box::new(node)),
            ty,
            column,
        })
    }

    fn len(&mut self, operand: &Expr, column: usize) -> Result<Node, EvalError> {
        let mut node = self.compile(operand)?;
        // Through references to containers (`&Vec<T>`, `&IntoIter<T>`) and
        // smart pointers (`Rc<Vec<T>>`), as Rust's auto-deref does.
        for _ in 0..8 {
            match self.class(&node.ty) {
                Class::Pointer {
                    pointee: Some(pointee),
                } if !crate::value::layout::is_c_char(self.types, self.module(), pointee)
                    && matches!(self.class(&StaticType::Dwarf(pointee)), Class::Aggregate) =>
                {
                    node = Node {
                        kind: NodeKind::Deref(Box::new(node)),
                        ty: StaticType::Dwarf(pointee),
                        column,
                    };
                }
                Class::Aggregate => {
                    let StaticType::Dwarf(key) = node.ty else {
                        break;
                    };
                    let key = self.referent(key);
                    if crate::value::layout::has_length(self.types, self.module(), key) {
                        break;
                    }
                    match self.smart_deref(&node) {
                        Some(target) => node = target,
                        None => break,
                    }
                }
                _ => break,
            }
        }
        let how = match self.class(&node.ty) {
            Class::Array {
                count: Some(count), ..
            } => LengthOf::Constant(count),
            Class::Text => match &node.kind {
                NodeKind::Text(bytes) => LengthOf::Constant(bytes.len() as u64),
                _ => LengthOf::Printer,
            },
            Class::Pointer {
                pointee: Some(pointee),
            } => {
                let is_char = matches!(
                    self.types
                        .strip(self.module(), pointee)
                        .map(|(_, t)| t.kind.clone()),
                    Some(TypeKind::Base(
                        BaseEncoding::SignedChar | BaseEncoding::UnsignedChar
                    ))
                );
                if !is_char {
                    return Err(type_error(
                        column,
                        "len() of a pointer needs a char pointer (a C string)",
                    ));
                }
                LengthOf::CString
            }
            Class::Aggregate => {
                let StaticType::Dwarf(key) = node.ty else {
                    return Err(type_error(column, "len() needs a container"));
                };
                // `const M &m` with `using M = std::multimap<…>`.
                let key = self.referent(key);
                if !crate::value::layout::has_length(self.types, self.module(), key) {
                    let name = self.type_name(&node.ty);
                    return Err(type_error(
                        column,
                        format!("len() does not know how to count a `{name}`"),
                    ));
                }
                LengthOf::Printer
            }
            _ => {
                let name = self.type_name(&node.ty);
                return Err(type_error(
                    column,
                    format!("len() needs an array, string or container, not `{name}`"),
                ));
            }
        };
        Ok(Node {
            kind: NodeKind::Len {
                operand: Box::new(node),
                how,
            },
            ty: StaticType::Int {
                bytes: 8,
                signed: false,
            },
            column,
        })
    }

    fn size_of(&mut self, operand: &SizeOfOperand, column: usize) -> Result<Node, EvalError> {
        let size = match operand {
            SizeOfOperand::Type(target) => {
                if target.pointer_depth > 0 {
                    8
                } else {
                    match self.named_type(target) {
                        Some(StaticType::Dwarf(key)) => {
                            self.types.size_of(self.module(), key).ok_or_else(|| {
                                type_error(target.column, "the size of this type is unknown")
                            })?
                        }
                        Some(
                            StaticType::Int { bytes, .. }
                            | StaticType::Float { bytes }
                            | StaticType::Char { bytes },
                        ) => u64::from(bytes),
                        Some(StaticType::Bool) => 1,
                        _ => return Err(self.unknown_type(target)),
                    }
                }
            }
            SizeOfOperand::Expr(expr) => {
                let node = self.compile(expr)?;
                match node.ty {
                    StaticType::Dwarf(key) => self
                        .types
                        .size_of(self.module(), key)
                        .ok_or_else(|| type_error(column, "the size of this type is unknown"))?,
                    StaticType::Int { bytes, .. }
                    | StaticType::Float { bytes }
                    | StaticType::Char { bytes } => u64::from(bytes),
                    StaticType::Bool => 1,
                    StaticType::Pointer(_) => 8,
                    StaticType::SubArray { element, ref dims } => {
                        let element_size =
                            self.types.size_of(self.module(), element).ok_or_else(|| {
                                type_error(column, "the size of this type is unknown")
                            })?;
                        dims.iter()
                            .try_fold(element_size, |acc, d| d.and_then(|d| acc.checked_mul(d)))
                            .ok_or_else(|| {
                                type_error(column, "the size of this array is unknown")
                            })?
                    }
                    StaticType::Text => match node.kind {
                        NodeKind::Text(bytes) => bytes.len() as u64 + 1,
                        _ => 0,
                    },
                }
            }
        };
        Ok(Node {
            kind: NodeKind::Number(Number::Int(i128::from(size))),
            ty: StaticType::Int {
                bytes: 8,
                signed: false,
            },
            column,
        })
    }
}

/// True when a node denotes an object with an address (so `&` applies).
/// The static type of every node of a plan, for the type rule of redaction:
/// reading a field of a hidden type, or casting its address, reads the type.
pub(crate) fn node_types<'n>(node: &'n Node, out: &mut Vec<&'n StaticType>) {
    out.push(&node.ty);
    match &node.kind {
        NodeKind::Index { base, index, .. } => {
            node_types(base, out);
            node_types(index, out);
        }
        NodeKind::Binary { lhs, rhs, .. } => {
            node_types(lhs, out);
            node_types(rhs, out);
        }
        NodeKind::Member { base, .. } => node_types(base, out),
        NodeKind::Deref(inner) | NodeKind::AddressOf(inner) | NodeKind::Cast(inner) => {
            node_types(inner, out)
        }
        NodeKind::Unary { operand, .. } | NodeKind::Len { operand, .. } => node_types(operand, out),
        NodeKind::Local(_)
        | NodeKind::Unavailable(_)
        | NodeKind::Global { .. }
        | NodeKind::Number(_)
        | NodeKind::Text(_) => {}
    }
}

fn is_place(node: &Node) -> bool {
    matches!(
        node.kind,
        NodeKind::Local(_)
            | NodeKind::Unavailable(_)
            | NodeKind::Global { .. }
            | NodeKind::Deref(_)
            | NodeKind::Index { .. }
    ) || matches!(node.kind, NodeKind::Member { bits: None, .. })
}

/// A member found by name, through base classes and anonymous members.
pub(crate) struct FoundMember {
    pub offset: u64,
    pub ty: Option<TypeKey>,
    pub bits: Option<(u64, u64)>,
}

/// Breadth-first search for a member named `name` in the aggregate at
/// `key`, its base classes and its anonymous struct/union members.
pub(crate) fn find_member(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    name: &str,
) -> Option<FoundMember> {
    let mut queue = std::collections::VecDeque::from([(key, 0u64)]);
    let mut visited = 0;
    while let Some((current, base_offset)) = queue.pop_front() {
        visited += 1;
        if visited > 256 {
            return None;
        }
        let (_, ty) = types.strip(module, current)?;
        let TypeKind::Aggregate(aggregate) = &ty.kind else {
            continue;
        };
        for member in &aggregate.members {
            let MemberOffset::Bytes(offset) = member.offset else {
                continue;
            };
            if member.name.as_deref() == Some(name) {
                let bits = match (member.bit_offset, member.bit_size) {
                    (Some(bit_offset), Some(bit_size)) => Some((bit_offset, bit_size)),
                    _ => None,
                };
                return Some(FoundMember {
                    offset: base_offset + offset,
                    ty: member.ty,
                    bits,
                });
            }
            if (member.is_base || member.name.is_none())
                && let Some(inner) = member.ty
            {
                queue.push_back((inner, base_offset + offset));
            }
        }
    }
    None
}

pub(crate) fn class_of(types: &mut TypeTable, module: &Module, ty: &StaticType) -> Class {
    match ty {
        StaticType::Int { bytes, signed } => Class::Int {
            bytes: *bytes,
            signed: *signed,
        },
        StaticType::Float { bytes } => Class::Float { bytes: *bytes },
        StaticType::Bool => Class::Bool,
        StaticType::Char { bytes } => Class::Char { bytes: *bytes },
        StaticType::Pointer(pointee) => Class::Pointer { pointee: *pointee },
        StaticType::Text => Class::Text,
        StaticType::SubArray { element, dims } => array_class(types, module, Some(*element), dims),
        StaticType::Dwarf(key) => {
            let Some((_, stripped)) = types.strip(module, *key) else {
                return Class::Other("void".to_string());
            };
            let size = stripped.size.unwrap_or(0).min(16) as u8;
            match &stripped.kind {
                TypeKind::Base(BaseEncoding::Signed) => Class::Int {
                    bytes: size,
                    signed: true,
                },
                TypeKind::Base(BaseEncoding::Unsigned) => Class::Int {
                    bytes: size,
                    signed: false,
                },
                TypeKind::Base(BaseEncoding::SignedChar) => Class::Int {
                    bytes: size,
                    signed: true,
                },
                TypeKind::Base(BaseEncoding::UnsignedChar) => Class::Int {
                    bytes: size,
                    signed: false,
                },
                TypeKind::Base(BaseEncoding::Utf) => Class::Char { bytes: size },
                TypeKind::Base(BaseEncoding::Float) => Class::Float { bytes: size },
                TypeKind::Base(BaseEncoding::Bool) => Class::Bool,
                TypeKind::Base(BaseEncoding::Other) => Class::Other(stripped.name.clone()),
                TypeKind::Enum { signed, .. } => Class::Int {
                    bytes: size.max(1),
                    signed: *signed,
                },
                TypeKind::Pointer(pointee) => Class::Pointer { pointee: *pointee },
                TypeKind::Reference {
                    target: Some(target),
                    ..
                } => {
                    let target = *target;
                    class_of(types, module, &StaticType::Dwarf(target))
                }
                TypeKind::Array { element, dims } => {
                    let (element, dims) = (*element, dims.clone());
                    array_class(types, module, element, &dims)
                }
                TypeKind::Aggregate(_) => Class::Aggregate,
                other => Class::Other(format!("{other:?}")),
            }
        }
    }
}

/// The class of an array of `element` with `dims` (outermost first).
fn array_class(
    types: &mut TypeTable,
    module: &Module,
    element: Option<TypeKey>,
    dims: &[Option<u64>],
) -> Class {
    let stride = element.and_then(|e| {
        let element_size = types.size_of(module, e)?;
        dims.get(1..)?
            .iter()
            .try_fold(element_size, |acc, d| d.and_then(|d| acc.checked_mul(d)))
    });
    let element_type = element.map(|e| {
        if dims.len() > 1 {
            StaticType::SubArray {
                element: e,
                dims: dims[1..].to_vec(),
            }
        } else {
            StaticType::Dwarf(e)
        }
    });
    Class::Array {
        element: element_type,
        count: dims.first().copied().flatten(),
        stride,
    }
}

pub(crate) fn static_type_name(
    types: &mut TypeTable,
    module: &Module,
    ty: &StaticType,
    language: Language,
) -> String {
    let rust = language == Language::Rust;
    match ty {
        StaticType::Dwarf(key) => types.get(module, *key).name.clone(),
        StaticType::Int { bytes, signed } => match (rust, bytes, signed) {
            (true, n, true) => format!("i{}", u32::from(*n) * 8),
            (true, n, false) => format!("u{}", u32::from(*n) * 8),
            (false, 1, true) => "signed char".to_string(),
            (false, 1, false) => "unsigned char".to_string(),
            (false, 2, true) => "short".to_string(),
            (false, 2, false) => "unsigned short".to_string(),
            (false, 4, true) => "int".to_string(),
            (false, 4, false) => "unsigned int".to_string(),
            (false, 8, true) => "long".to_string(),
            (false, 8, false) => "unsigned long".to_string(),
            (false, n, true) => format!("int{}_t", u32::from(*n) * 8),
            (false, n, false) => format!("uint{}_t", u32::from(*n) * 8),
        },
        StaticType::Float { bytes: 4 } => if rust { "f32" } else { "float" }.to_string(),
        StaticType::Float { .. } => if rust { "f64" } else { "double" }.to_string(),
        StaticType::Bool => "bool".to_string(),
        StaticType::Char { .. } => "char".to_string(),
        StaticType::Pointer(pointee) => {
            let inner = match pointee {
                Some(key) => types.get(module, *key).name.clone(),
                None => "void".to_string(),
            };
            if rust {
                format!("*const {inner}")
            } else {
                format!("{inner} *")
            }
        }
        StaticType::Text => if rust { "&str" } else { "const char *" }.to_string(),
        StaticType::SubArray { element, dims } => {
            let base = types.get(module, *element).name.clone();
            let dims: String = dims
                .iter()
                .map(|d| format!("[{}]", d.unwrap_or(0)))
                .collect();
            format!("{base} {dims}")
        }
    }
}

/// The C "usual arithmetic conversions", simplified: at least int, the
/// wider operand's width, unsigned when an unsigned operand is at least as
/// wide as the signed one.
fn arithmetic_type(left: &Class, right: &Class) -> (u8, bool) {
    let shape = |c: &Class| match c {
        Class::Int { bytes, signed } => (*bytes, *signed),
        Class::Char { bytes } => (*bytes, false),
        _ => (4, true),
    };
    let (lb, ls) = shape(left);
    let (rb, rs) = shape(right);
    let bytes = lb.max(rb).max(4);
    let signed = match (ls, rs) {
        (true, true) => true,
        (false, false) => bytes < 4,
        (true, false) => rb < lb,
        (false, true) => lb < rb,
    };
    (bytes, signed || (bytes == 4 && lb < 4 && rb < 4))
}

/// The type of an integer literal: its suffix, else the smallest of int /
/// long (C) or i32 / i64 (Rust) that holds it.
fn literal_int_type(value: u128, suffix: Option<&str>, language: Language) -> (u8, bool) {
    if let Some(suffix) = suffix {
        return match suffix {
            "u" => (4, false),
            "l" | "ll" => (8, true),
            "ul" | "lu" | "ull" | "llu" => (8, false),
            "i8" => (1, true),
            "u8" => (1, false),
            "i16" => (2, true),
            "u16" => (2, false),
            "i32" => (4, true),
            "u32" => (4, false),
            "i64" | "isize" => (8, true),
            "u64" | "usize" => (8, false),
            "i128" => (16, true),
            "u128" => (16, false),
            _ => (8, true),
        };
    }
    let _ = language;
    if value <= i32::MAX as u128 {
        (4, true)
    } else if value <= i64::MAX as u128 {
        (8, true)
    } else if value <= u64::MAX as u128 {
        (8, false)
    } else {
        (16, false)
    }
}

/// Words only a C base type is spelled with.
const C_BASE_WORDS: &[&str] = &[
    "char", "short", "int", "long", "unsigned", "signed", "float", "double",
];

/// How compilers spell a C base type in `DW_AT_name` (gcc: `long unsigned
/// int`; clang: `unsigned long`), for a type written either way.
fn dwarf_spellings(name: &str) -> Vec<&str> {
    let group: &[&str] = match name {
        "short" | "short int" | "signed short" | "signed short int" => &["short int", "short"],
        "unsigned short" | "unsigned short int" | "short unsigned int" => {
            &["short unsigned int", "unsigned short"]
        }
        "int" | "signed" | "signed int" => &["int"],
        "unsigned" | "unsigned int" => &["unsigned int"],
        "long" | "long int" | "signed long" | "signed long int" => &["long int", "long"],
        "unsigned long" | "unsigned long int" | "long unsigned int" => {
            &["long unsigned int", "unsigned long"]
        }
        "long long" | "long long int" | "signed long long" => &["long long int", "long long"],
        "unsigned long long" | "unsigned long long int" | "long long unsigned int" => {
            &["long long unsigned int", "unsigned long long"]
        }
        "bool" | "_Bool" => &["_Bool", "bool"],
        _ => return vec![name],
    };
    group.to_vec()
}

/// A type by its source name: in the frame's unit first (its own `point`
/// wins over another file's), then in any unit of the module.
pub(crate) fn find_type(
    types: &mut TypeTable,
    module: &Module,
    unit: Option<usize>,
    name: &str,
) -> Option<TypeKey> {
    let spellings = dwarf_spellings(name);
    if let Some(unit) = unit {
        for spelling in &spellings {
            if let Some(key) = types.find_named(module, unit, spelling) {
                return Some(key);
            }
        }
    }
    spellings
        .iter()
        .find_map(|spelling| types.find_named_anywhere(module, spelling))
}

/// True when `name` names a type and no variable in scope (locals, then
/// the module's globals): how `(name)*p` is told from `name * p`.
pub(crate) fn names_a_type(
    types: &mut TypeTable,
    module: &Arc<Module>,
    unit: Option<usize>,
    locals: &[&str],
    name: &str,
) -> bool {
    if locals.contains(&name) {
        return false;
    }
    let segments: Vec<String> = name.split("::").map(str::to_string).collect();
    if !GlobalIndex::of(module).lookup(&segments).is_empty() {
        return false;
    }
    find_type(types, module, unit, name).is_some() || base_type_named(name).is_some()
}

/// A base type named in a cast.
pub(crate) fn base_type_named(name: &str) -> Option<StaticType> {
    let int = |bytes, signed| Some(StaticType::Int { bytes, signed });
    match name {
        "char" | "signed char" | "int8_t" | "i8" => int(1, true),
        "unsigned char" | "uint8_t" | "u8" => int(1, false),
        "short" | "short int" | "signed short" | "int16_t" | "i16" => int(2, true),
        "unsigned short" | "unsigned short int" | "uint16_t" | "u16" | "char16_t" => int(2, false),
        "int" | "signed" | "signed int" | "int32_t" | "i32" | "wchar_t" => int(4, true),
        "unsigned" | "unsigned int" | "uint32_t" | "u32" | "char32_t" => int(4, false),
        "long" | "long int" | "signed long" | "long long" | "long long int" | "int64_t" | "i64"
        | "isize" | "ssize_t" | "intptr_t" | "ptrdiff_t" => int(8, true),
        "unsigned long"
        | "unsigned long int"
        | "unsigned long long"
        | "unsigned long long int"
        | "uint64_t"
        | "u64"
        | "usize"
        | "size_t"
        | "uintptr_t" => int(8, false),
        "i128" | "__int128" => int(16, true),
        "u128" | "unsigned __int128" => int(16, false),
        "float" | "f32" => Some(StaticType::Float { bytes: 4 }),
        "double" | "f64" | "long double" => Some(StaticType::Float { bytes: 8 }),
        "bool" | "_Bool" => Some(StaticType::Bool),
        _ => None,
    }
}

/// Levenshtein distance, for "did you mean" ordering.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// Offsets a place by `offset` bytes.
pub(crate) fn offset_place(place: &Place, offset: u64, size: Option<u64>) -> Place {
    match place {
        Place::Memory(address) => Place::Memory(address.wrapping_add(offset)),
        Place::Bytes { bytes, missing } => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = size
                .and_then(|s| usize::try_from(s).ok())
                .map_or(bytes.len(), |s| start.saturating_add(s).min(bytes.len()));
            let missing = missing
                .iter()
                .filter(|r| r.start < end && r.end > start)
                .map(|r| r.start.max(start) - start..r.end.min(end) - start)
                .collect();
            Place::Bytes {
                bytes: bytes[start..end].to_vec(),
                missing,
            }
        }
        Place::Unavailable(reason) => Place::Unavailable(reason.clone()),
    }
}
