//! Which bytes a value needs: the decoder's reads, stated from the type and
//! the [`Limits`] alone, before any byte of the target is seen.
//!
//! A kernel-side capture (or a ptrace hit that only copies) must know at
//! probe-set time what the decoder will read when the value is rendered
//! later. This module answers that as read requests at *symbolic*
//! addresses: a register plus a constant, the pointer word found at an
//! offset of an earlier read plus a constant, or a fixed address. It follows
//! what [`super::Decoder`] follows (pointers to the depth the limits allow,
//! C strings up to the string limit, each pretty printer's fields and
//! elements) and refuses, with a [`PlanRefusal`], what only the data can
//! decide (which enum variant, how a hash table or a tree is laid out).
//!
//! Over-reading is harmless (the renderer ignores bytes it does not need);
//! under-reading would show a value as not captured, so every shape here
//! mirrors the decoder and the printers in `printers.rs`.

use crate::debuginfo::Module;
use crate::debuginfo::types::{
    Aggregate, BaseEncoding, Language, Member, MemberOffset, TypeKey, TypeKind, TypeTable,
};

use super::layout::{self, LengthField, StringKind};
use super::{Limits, Redaction};

/// What a planned address is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymBase {
    /// A register of the hitting thread, by DWARF number.
    Register(u16),
    /// The 8-byte word at byte `at` of planned read `read`: a pointer the
    /// target holds in memory.
    Word {
        /// Index of the read, as answered by [`ReadRequests::read`].
        read: usize,
        /// Byte offset of the word inside that read.
        at: u64,
    },
    /// A fixed address (the offset is the address).
    Absolute,
}

/// A symbolic address: `base + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SymAddr {
    /// Where the address comes from.
    pub base: SymBase,
    /// Added to the base.
    pub offset: i64,
}

impl SymAddr {
    /// `register + offset`.
    pub fn register(register: u16, offset: i64) -> SymAddr {
        SymAddr {
            base: SymBase::Register(register),
            offset,
        }
    }

    /// A fixed address.
    pub fn absolute(address: u64) -> SymAddr {
        SymAddr {
            base: SymBase::Absolute,
            offset: address as i64,
        }
    }

    /// This address moved by `delta` bytes (wrapping like the target's
    /// pointer arithmetic does).
    pub fn plus(self, delta: i64) -> SymAddr {
        SymAddr {
            base: self.base,
            offset: self.offset.wrapping_add(delta),
        }
    }
}

/// Where a value's bytes are, as the planner sees them.
#[derive(Clone, Debug, PartialEq)]
pub enum SymPlace {
    /// In target memory at this address: reading it is a planned read.
    Memory(SymAddr),
    /// The value itself is this symbolic word (a register's contents, or a
    /// register plus a constant computed by `DW_OP_stack_value`): in hand
    /// from the captured registers.
    Value(SymAddr),
    /// Bytes from the debug info: nothing to read.
    Constant(Vec<u8>),
    /// Bytes assembled from registers (pieces): in hand, but nothing in
    /// them can be followed as a planned address.
    Opaque,
    /// No value at this pc (optimized out, not yet declared): nothing to
    /// read, the renderer says why.
    Unavailable,
}

impl SymPlace {
    /// The place `offset` bytes into this one.
    pub fn at(&self, offset: u64) -> SymPlace {
        match self {
            SymPlace::Memory(address) => SymPlace::Memory(address.plus(offset as i64)),
            SymPlace::Value(_) if offset == 0 => self.clone(),
            SymPlace::Value(_) | SymPlace::Opaque => SymPlace::Opaque,
            SymPlace::Constant(bytes) => {
                SymPlace::Constant(bytes.get(offset as usize..).unwrap_or_default().to_vec())
            }
            SymPlace::Unavailable => SymPlace::Unavailable,
        }
    }
}

/// Why a capture cannot be planned before a hit. Each says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefusal {
    /// An address depends on a number read from the target.
    #[error(
        "{what} is computed from the target's data, which a capture planned before the hit cannot follow (only registers, pointers read from memory and constant offsets); index with a constant to keep a planned capture, or let the ptrace engine read it live"
    )]
    DataDependentAddress {
        /// The expression or operation whose address it is.
        what: String,
    },
    /// A thread-local variable: the thread pointer is not captured.
    #[error(
        "it reads a thread-local variable, and the thread pointer is not part of a kernel-side capture; the ptrace engine reads it live"
    )]
    ThreadLocal,
    /// Caller frames need the stack walked at the hit.
    #[error(
        "a snapshot of caller frames needs their return addresses, which only a stopped thread gives; ask for frames 1 to keep a planned capture"
    )]
    CallerFrames,
    /// A container whose reads depend on its contents.
    #[error(
        "`{name}` is a {kind}: which memory to read depends on its contents (how many nodes, where they are); leave it out (or show one of its fields) to keep a planned capture"
    )]
    DataDependentLayout {
        /// The value's name.
        name: String,
        /// What kind of container it is.
        kind: &'static str,
    },
    /// An enum with several variants holding data.
    #[error(
        "`{name}` is an enum whose variants hold different data: which bytes to read depends on the variant at the hit; the ptrace engine reads it live"
    )]
    MultiVariantEnum {
        /// The value's name.
        name: String,
    },
    /// A pointer whose value the planner cannot name.
    #[error(
        "`{name}` follows a pointer whose value the planner cannot name (held in pieces of registers, or the value a register had at entry); the ptrace engine reads it live"
    )]
    UnnamedPointer {
        /// The value's name.
        name: String,
    },
    /// A location expression the planner does not interpret.
    #[error(
        "a variable's location uses {operation}, which the capture planner does not interpret; the ptrace engine reads it live"
    )]
    UnsupportedLocation {
        /// The DWARF operation.
        operation: String,
    },
    /// The site's CFA has no register + offset rule.
    #[error(
        "the canonical frame address at this site is not a register plus an offset in the unwind info ({why}); the ptrace engine unwinds it live"
    )]
    NoCfaRule {
        /// What the unwind info says instead.
        why: String,
    },
    /// A register the capture does not hold.
    #[error(
        "a location uses DWARF register {register}, which a capture does not hold; the ptrace engine reads it live"
    )]
    Register {
        /// The DWARF register number.
        register: u16,
    },
    /// A string longer than a capture copies.
    #[error(
        "it reads a string of up to {wanted} bytes (the length of a C string, say), more than a capture copies ({limit}); the ptrace engine reads it live"
    )]
    StringTooLong {
        /// Bytes the read may need.
        wanted: u64,
        /// The plan's string limit.
        limit: u64,
    },
    /// More reads than the plan allows.
    #[error(
        "the capture needs more than {limit} reads; ask for fewer expressions or smaller limits (depth, max_items) to keep a planned capture"
    )]
    TooManyReads {
        /// The plan's read limit.
        limit: usize,
    },
    /// More bytes than the plan allows.
    #[error(
        "the capture would copy {bytes} bytes per hit, more than {limit}; narrow it with smaller limits (max_items, max_string, depth) or fewer expressions"
    )]
    TooManyBytes {
        /// Bytes the plan needs.
        bytes: u64,
        /// The plan's byte limit.
        limit: u64,
    },
    /// The expression cannot be planned for another reason.
    #[error("{0}")]
    Other(String),
}

/// The planner's side of the read-request interface: each request names a
/// symbolic address; a read is answered with where its bytes land, so a
/// pointer inside can be named as the base of a later read.
pub trait ReadRequests {
    /// Plans `len` bytes at `at`; answers (read index, byte offset of `at`
    /// in that read).
    fn read(&mut self, at: SymAddr, len: u64) -> Result<(usize, u64), PlanRefusal>;
    /// Plans a NUL-terminated string of at most `max` bytes at `at`.
    fn read_string(&mut self, at: SymAddr, max: u64) -> Result<(), PlanRefusal>;
}

/// Plans the bytes of `len` at `place` (nothing for bytes already in hand).
pub fn read_place(
    requests: &mut dyn ReadRequests,
    place: &SymPlace,
    len: u64,
) -> Result<(), PlanRefusal> {
    if let SymPlace::Memory(address) = place
        && len > 0
    {
        requests.read(*address, len)?;
    }
    Ok(())
}

/// The pointer word at `place` as a symbolic address (planning its read),
/// `None` when there is nothing there to read (optimized out).
pub fn pointer_at(
    requests: &mut dyn ReadRequests,
    place: &SymPlace,
    name: &str,
) -> Result<Option<SymAddr>, PlanRefusal> {
    match place {
        SymPlace::Memory(address) => {
            let (read, at) = requests.read(*address, 8)?;
            Ok(Some(SymAddr {
                base: SymBase::Word { read, at },
                offset: 0,
            }))
        }
        SymPlace::Value(value) => Ok(Some(*value)),
        SymPlace::Constant(bytes) => {
            let mut word = [0u8; 8];
            let n = bytes.len().min(8);
            word[..n].copy_from_slice(&bytes[..n]);
            Ok(Some(SymAddr::absolute(u64::from_le_bytes(word))))
        }
        SymPlace::Opaque => Err(PlanRefusal::UnnamedPointer {
            name: name.to_string(),
        }),
        SymPlace::Unavailable => Ok(None),
    }
}

/// Plans the reads of rendering values of one module's types.
pub struct ValueRoom<'a> {
    /// The module whose types these are.
    pub module: &'a Module,
    /// Its type table.
    pub types: &'a mut TypeTable,
    /// The render limits (as the decoder will use them).
    pub limits: &'a Limits,
    /// Secret names are not followed (the decoder shows them redacted).
    pub redaction: &'a Redaction,
    /// Where the requests go.
    pub requests: &'a mut dyn ReadRequests,
}

/// Most nested values one plan walks (the decoder's node budget bounds
/// rendering the same way).
const MAX_PLANNED_NODES: usize = super::MAX_NODES;

impl ValueRoom<'_> {
    /// Plans what decoding a value of `ty` at `place` reads, with `depth`
    /// levels of children (as [`super::Decoder::decode`] at the limits'
    /// depth).
    pub fn value(
        &mut self,
        name: &str,
        ty: Option<TypeKey>,
        place: &SymPlace,
        depth: u32,
    ) -> Result<(), PlanRefusal> {
        let mut budget = MAX_PLANNED_NODES;
        self.plan(name, ty, place, depth, &mut budget)
    }

    /// Plans what rendering a pointer value `address` to `pointee` reads
    /// (an expression whose result is a computed pointer).
    pub fn pointer_target(
        &mut self,
        name: &str,
        pointee: Option<TypeKey>,
        address: SymAddr,
        depth: u32,
        language: Language,
    ) -> Result<(), PlanRefusal> {
        let mut budget = MAX_PLANNED_NODES;
        self.pointee(name, pointee, address, depth, language, &mut budget)
    }

    /// Plans an array of `dims` of `element` at `place` (a row of a
    /// multi-dimensional array).
    pub fn array_value(
        &mut self,
        name: &str,
        element: TypeKey,
        dims: &[Option<u64>],
        place: &SymPlace,
        depth: u32,
        language: Language,
    ) -> Result<(), PlanRefusal> {
        let mut budget = MAX_PLANNED_NODES;
        self.array(name, element, dims, place, depth, language, &mut budget)
    }

    fn plan(
        &mut self,
        name: &str,
        ty: Option<TypeKey>,
        place: &SymPlace,
        depth: u32,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        if *budget == 0 || matches!(place, SymPlace::Unavailable) {
            return Ok(());
        }
        *budget -= 1;
        let Some(key) = ty else { return Ok(()) };
        let ty = self.types.get(self.module, key);
        match &ty.kind {
            TypeKind::Typedef(Some(target))
            | TypeKind::Qualified {
                target: Some(target),
                ..
            } => self.plan(name, Some(*target), place, depth, budget),
            // As the decoder reads them: a base type's size, an enum's (4
            // when DWARF gives none).
            TypeKind::Base(_) => read_place(self.requests, place, ty.size.unwrap_or(0)),
            TypeKind::Enum { .. } => read_place(self.requests, place, ty.size.unwrap_or(4)),
            TypeKind::Pointer(pointee) => {
                let Some(address) = pointer_at(self.requests, place, name)? else {
                    return Ok(());
                };
                self.pointee(name, *pointee, address, depth, ty.language, budget)
            }
            TypeKind::Reference { target, .. } => {
                let Some(address) = pointer_at(self.requests, place, name)? else {
                    return Ok(());
                };
                self.plan(name, *target, &SymPlace::Memory(address), depth, budget)
            }
            TypeKind::Array { element, dims } => {
                let Some(element) = *element else {
                    return Ok(());
                };
                let dims = dims.clone();
                self.array(name, element, &dims, place, depth, ty.language, budget)
            }
            TypeKind::Aggregate(aggregate) => {
                if self.printer(name, key, place, depth, budget)? {
                    return Ok(());
                }
                self.aggregate(name, key, ty.size, aggregate, place, depth, budget)
            }
            TypeKind::Typedef(None)
            | TypeKind::Qualified { target: None, .. }
            | TypeKind::Void
            | TypeKind::Function
            | TypeKind::PointerToMember
            | TypeKind::Unknown(_) => Ok(()),
        }
    }

    /// What the decoder reads behind a pointer it shows.
    fn pointee(
        &mut self,
        name: &str,
        pointee: Option<TypeKey>,
        address: SymAddr,
        depth: u32,
        language: Language,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        let Some((target_key, target)) = pointee.and_then(|p| self.types.strip(self.module, p))
        else {
            return Ok(());
        };
        match &target.kind {
            TypeKind::Function | TypeKind::Void => Ok(()),
            TypeKind::Base(BaseEncoding::SignedChar | BaseEncoding::UnsignedChar)
                if target.size == Some(1) && language != Language::Rust =>
            {
                self.requests
                    .read_string(address, u64::from(self.limits.max_string) + 1)
            }
            _ if depth == 0 => Ok(()),
            _ => self.plan(
                &format!("*{name}"),
                Some(target_key),
                &SymPlace::Memory(address),
                depth - 1,
                budget,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn array(
        &mut self,
        name: &str,
        element: TypeKey,
        dims: &[Option<u64>],
        place: &SymPlace,
        depth: u32,
        language: Language,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        let Some(count) = dims.first().copied().flatten() else {
            return Ok(());
        };
        let Some(element_size) = self.types.size_of(self.module, element) else {
            return Ok(());
        };
        let inner = &dims[1..];
        let Some(stride) = inner
            .iter()
            .try_fold(element_size, |acc, d| d.and_then(|d| acc.checked_mul(d)))
        else {
            return Ok(());
        };
        if inner.is_empty()
            && language != Language::Rust
            && element_size == 1
            && layout::is_c_char(self.types, self.module, element)
        {
            let shown = count.min(u64::from(self.limits.max_string).saturating_add(1));
            return read_place(self.requests, place, shown);
        }
        if depth == 0 {
            return Ok(());
        }
        let shown = count.min(u64::from(self.limits.max_items));
        read_place(self.requests, place, stride.saturating_mul(shown))?;
        for i in 0..shown {
            if *budget == 0 {
                break;
            }
            let child = place.at(i * stride);
            let child_name = format!("{name}[{i}]");
            if inner.is_empty() {
                self.plan(&child_name, Some(element), &child, depth - 1, budget)?;
            } else {
                self.array(
                    &child_name,
                    element,
                    inner,
                    &child,
                    depth - 1,
                    language,
                    budget,
                )?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &mut self,
        name: &str,
        key: TypeKey,
        size: Option<u64>,
        aggregate: &Aggregate,
        place: &SymPlace,
        depth: u32,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        if aggregate.declaration && aggregate.members.is_empty() {
            // The decoder goes to the definition; so does the plan.
            return match self.types.definition_of(self.module, key) {
                Some(definition) => self.plan(name, Some(definition), place, depth, budget),
                None => Ok(()),
            };
        }
        if let Some(part) = &aggregate.variant_part {
            // The decoder reads the whole enum, then the variant the
            // discriminant picks: a plan can only cover one with data.
            read_place(self.requests, place, size.unwrap_or(0))?;
            let dataful: Vec<&crate::debuginfo::types::Variant> = part
                .variants
                .iter()
                .filter(|v| self.variant_has_fields(v))
                .collect();
            if dataful.len() > 1 {
                return Err(PlanRefusal::MultiVariantEnum {
                    name: name.to_string(),
                });
            }
            // The arm is the variant's one member; its fields are shown.
            let Some(arm) = dataful
                .first()
                .copied()
                .or(part.variants.first())
                .and_then(|v| v.members.first())
                .cloned()
            else {
                return Ok(());
            };
            let MemberOffset::Bytes(arm_offset) = arm.offset else {
                return Ok(());
            };
            let fields: Vec<Member> = match arm
                .ty
                .and_then(|t| self.types.strip(self.module, t))
                .as_ref()
                .and_then(|(_, t)| t.aggregate())
            {
                Some(inner) => inner
                    .members
                    .iter()
                    .filter(|m| !m.artificial)
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            return self.members(name, &fields, &place.at(arm_offset), depth, budget);
        }
        if depth == 0 {
            return Ok(());
        }
        read_place(self.requests, place, size.unwrap_or(0))?;
        let members = aggregate.members.clone();
        self.members(name, &members, place, depth, budget)
    }

    /// Whether a variant's arm has fields (`Some(x)`, not `None`).
    fn variant_has_fields(&mut self, variant: &crate::debuginfo::types::Variant) -> bool {
        let Some(arm) = variant.members.first() else {
            return false;
        };
        let Some((_, ty)) = arm.ty.and_then(|t| self.types.strip(self.module, t)) else {
            return false;
        };
        match &ty.kind {
            TypeKind::Aggregate(inner) => inner.members.iter().any(|m| !m.artificial),
            _ => false,
        }
    }

    /// The members the decoder shows (anonymous structs flattened), each at
    /// `depth - 1`.
    fn members(
        &mut self,
        name: &str,
        members: &[Member],
        place: &SymPlace,
        depth: u32,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        if depth == 0 {
            return Ok(());
        }
        for member in members.iter().take(self.limits.max_items as usize) {
            let MemberOffset::Bytes(offset) = member.offset else {
                continue;
            };
            let member_name = member.name.clone().unwrap_or_default();
            if self.redaction.is_secret(&member_name) {
                continue;
            }
            let child = place.at(offset);
            if let (Some(bit_size), Some(bit_offset)) = (member.bit_size, member.bit_offset) {
                let bytes = (bit_offset % 8 + bit_size).div_ceil(8).max(1);
                let storage = member
                    .ty
                    .and_then(|t| self.types.size_of(self.module, t))
                    .unwrap_or(0);
                read_place(
                    self.requests,
                    &place.at(offset + bit_offset / 8),
                    bytes.max(storage),
                )?;
                continue;
            }
            if member.name.is_none() && !member.is_base {
                let inner = member.ty.and_then(|key| self.types.strip(self.module, key));
                if let Some((_, inner)) = inner
                    && let TypeKind::Aggregate(inner_aggregate) = &inner.kind
                    && inner_aggregate.variant_part.is_none()
                {
                    let inner_members = inner_aggregate.members.clone();
                    self.members(name, &inner_members, &child, depth, budget)?;
                    continue;
                }
            }
            let member_depth = if member.artificial && member_name.starts_with("_vptr") {
                0
            } else {
                depth - 1
            };
            let full_name = format!("{name}.{member_name}");
            self.plan(&full_name, member.ty, &child, member_depth, budget)?;
        }
        Ok(())
    }

    /// The read shape of the pretty printer of `key`, when one applies:
    /// true when it planned the value (the generic view is not used).
    fn printer(
        &mut self,
        name: &str,
        key: TypeKey,
        place: &SymPlace,
        depth: u32,
        budget: &mut usize,
    ) -> Result<bool, PlanRefusal> {
        let ty = self.types.get(self.module, key);
        let short = ty
            .short_name
            .trim_start_matches("alloc::boxed::")
            .to_string();
        let size = ty.size.unwrap_or(0);
        let refuse = |kind: &'static str| {
            Err(PlanRefusal::DataDependentLayout {
                name: name.to_string(),
                kind,
            })
        };
        match ty.language {
            Language::Rust => {
                if short.starts_with("VecDeque<") {
                    return refuse(
                        "VecDeque (a ring buffer: where its elements are depends on its head)",
                    );
                }
                if short.starts_with("HashMap<") || short.starts_with("HashSet<") {
                    return refuse("hash table");
                }
                if short.starts_with("BTreeMap<") || short.starts_with("BTreeSet<") {
                    return refuse("B-tree");
                }
                let counted = short == "&str"
                    || short == "&mut str"
                    || short.starts_with("Box<str,")
                    || short == "Box<str>"
                    || short == "String";
                if counted {
                    let pointer = match layout::string_kind(self.types, self.module, key) {
                        Some(StringKind::Counted { pointer_offset, .. }) => Some(pointer_offset),
                        _ => layout::member(self.types, self.module, key, "data_ptr")
                            .map(|(offset, _)| offset),
                    };
                    if let Some(pointer) = pointer {
                        return self.counted_text(name, place, size, pointer);
                    }
                }
                let sequence = layout::rust_slice(self.types, self.module, key).or_else(|| {
                    short
                        .starts_with("Vec<")
                        .then(|| layout::rust_vec(self.types, self.module, key))
                        .flatten()
                });
                if let Some((access, LengthField::Count { .. })) = sequence {
                    read_place(self.requests, place, size)?;
                    return self
                        .sequence(name, place, &access, depth, budget)
                        .map(|()| true);
                }
                if short.starts_with("Rc<")
                    || short.starts_with("Arc<")
                    || short.starts_with("Weak<")
                {
                    return self.reference_counted(name, key, place, size, depth, budget);
                }
                let wrapper = ["Cell<", "UnsafeCell<", "SyncUnsafeCell<", "RefCell<"]
                    .iter()
                    .any(|w| short.starts_with(w));
                if wrapper
                    && let Some((offset, inner)) =
                        layout::member(self.types, self.module, key, "value")
                {
                    read_place(self.requests, place, size)?;
                    self.plan(name, inner, &place.at(offset), depth, budget)?;
                    return Ok(true);
                }
                let dyn_pointer = short.starts_with("Box<dyn ")
                    || short.starts_with("&dyn ")
                    || short.starts_with("&mut dyn ");
                if dyn_pointer
                    && layout::member(self.types, self.module, key, "pointer").is_some()
                    && layout::member(self.types, self.module, key, "vtable").is_some()
                {
                    read_place(self.requests, place, size)?;
                    return Ok(true);
                }
                Ok(false)
            }
            Language::Cpp => {
                if short.starts_with("basic_string<char") {
                    return match layout::string_kind(self.types, self.module, key) {
                        Some(StringKind::Libcxx { .. }) => refuse(
                            "libc++ std::string (whether it is short or long decides what to read)",
                        ),
                        Some(StringKind::Counted { pointer_offset, .. }) => {
                            self.counted_text(name, place, size, pointer_offset)
                        }
                        _ => Ok(false),
                    };
                }
                if short.starts_with("vector<") {
                    let Some((access, LengthField::PointerRange { .. })) =
                        layout::std_vector(self.types, self.module, key)
                    else {
                        return Ok(false);
                    };
                    read_place(self.requests, place, size)?;
                    return self
                        .sequence(name, place, &access, depth, budget)
                        .map(|()| true);
                }
                if ["map<", "set<", "multimap<", "multiset<"]
                    .iter()
                    .any(|p| short.starts_with(p))
                {
                    return refuse("tree (std::map or std::set)");
                }
                if short.starts_with("unordered_map<") || short.starts_with("unordered_set<") {
                    return refuse("hash table");
                }
                if short.starts_with("shared_ptr<") || short.starts_with("weak_ptr<") {
                    return self.shared_ptr(name, key, place, size, depth, budget);
                }
                if short.starts_with("unique_ptr<") {
                    let Some((offset, pointer_type)) =
                        layout::pointer_inside(self.types, self.module, key, 0)
                    else {
                        return Ok(false);
                    };
                    let Some((_, pointer)) = self.types.strip(self.module, pointer_type) else {
                        return Ok(false);
                    };
                    let TypeKind::Pointer(target) = pointer.kind else {
                        return Ok(false);
                    };
                    read_place(self.requests, place, size)?;
                    if let Some(address) = pointer_at(self.requests, &place.at(offset), name)? {
                        self.followed(name, target, address, depth, budget)?;
                    }
                    return Ok(true);
                }
                if short.starts_with("optional<") {
                    // The payload is inline and shown at the optional's own
                    // depth (when engaged, which only the hit knows).
                    let engaged = find_path(self, key, "_M_engaged");
                    let payload = find_path(self, key, "_M_value")
                        .or_else(|| find_path(self, key, "_M_payload"));
                    let (Some(_), Some((payload_offset, payload_type))) = (engaged, payload) else {
                        return Ok(false);
                    };
                    read_place(self.requests, place, size)?;
                    self.plan(name, payload_type, &place.at(payload_offset), depth, budget)?;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// A pointer and a byte count: the header, and up to the string limit
    /// of bytes at the pointer.
    fn counted_text(
        &mut self,
        name: &str,
        place: &SymPlace,
        size: u64,
        pointer_offset: u64,
    ) -> Result<bool, PlanRefusal> {
        read_place(self.requests, place, size.max(pointer_offset + 8))?;
        if let Some(address) = pointer_at(self.requests, &place.at(pointer_offset), name)? {
            let max = u64::from(self.limits.max_string);
            if max > 0 {
                self.requests.read(address, max)?;
            }
        }
        Ok(true)
    }

    /// Elements of a sequence: up to `max_items` of them, `stride` apart
    /// from the data pointer, at `depth - 1`.
    fn sequence(
        &mut self,
        name: &str,
        place: &SymPlace,
        access: &layout::ElementAccess,
        depth: u32,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        if depth == 0 {
            return Ok(());
        }
        let Some(address) = pointer_at(self.requests, &place.at(access.pointer_offset), name)?
        else {
            return Ok(());
        };
        let shown = u64::from(self.limits.max_items);
        let total = access.stride.saturating_mul(shown);
        if total > 0 {
            self.requests.read(address, total)?;
        }
        for i in 0..shown {
            if *budget == 0 {
                break;
            }
            let element = SymPlace::Memory(address.plus((i * access.stride) as i64));
            self.plan(
                &format!("{name}[{i}]"),
                Some(access.element),
                &element,
                depth - 1,
                budget,
            )?;
        }
        Ok(())
    }

    /// A pointee shown under a summary (smart pointers): nothing at depth 0.
    fn followed(
        &mut self,
        name: &str,
        target: Option<TypeKey>,
        address: SymAddr,
        depth: u32,
        budget: &mut usize,
    ) -> Result<(), PlanRefusal> {
        if depth == 0 {
            return Ok(());
        }
        self.plan(
            &format!("*{name}"),
            target,
            &SymPlace::Memory(address),
            depth - 1,
            budget,
        )
    }

    fn reference_counted(
        &mut self,
        name: &str,
        key: TypeKey,
        place: &SymPlace,
        size: u64,
        depth: u32,
        budget: &mut usize,
    ) -> Result<bool, PlanRefusal> {
        let Some((pointer_offset, pointer_type)) =
            layout::pointer_inside(self.types, self.module, key, 0)
        else {
            return Ok(false);
        };
        let Some((_, pointer)) = self.types.strip(self.module, pointer_type) else {
            return Ok(false);
        };
        let TypeKind::Pointer(Some(inner_type)) = pointer.kind else {
            return Ok(false);
        };
        let value = layout::member(self.types, self.module, inner_type, "value")
            .or_else(|| layout::member(self.types, self.module, inner_type, "data"));
        let Some((value_offset, value_type)) = value else {
            return Ok(false);
        };
        read_place(self.requests, place, size)?;
        let Some(address) = pointer_at(self.requests, &place.at(pointer_offset), name)? else {
            return Ok(true);
        };
        // The counts sit before the value in the allocation.
        if value_offset > 0 {
            self.requests.read(address, value_offset)?;
        }
        self.followed(
            name,
            value_type,
            address.plus(value_offset as i64),
            depth,
            budget,
        )?;
        Ok(true)
    }

    fn shared_ptr(
        &mut self,
        name: &str,
        key: TypeKey,
        place: &SymPlace,
        size: u64,
        depth: u32,
        budget: &mut usize,
    ) -> Result<bool, PlanRefusal> {
        let pointer = layout::member_path(self.types, self.module, key, &["_M_ptr"]);
        let counts = layout::member_path(self.types, self.module, key, &["_M_refcount", "_M_pi"]);
        let (Some((pointer_offset, pointer_type)), Some((count_offset, _))) = (pointer, counts)
        else {
            return Ok(false);
        };
        let Some((_, pointer)) = self.types.strip(self.module, pointer_type) else {
            return Ok(false);
        };
        let TypeKind::Pointer(target) = pointer.kind else {
            return Ok(false);
        };
        read_place(self.requests, place, size)?;
        // _Sp_counted_base: vptr, then the use and weak counts.
        if let Some(block) = pointer_at(self.requests, &place.at(count_offset), name)? {
            self.requests.read(block.plus(8), 8)?;
        }
        if let Some(address) = pointer_at(self.requests, &place.at(pointer_offset), name)? {
            self.followed(name, target, address, depth, budget)?;
        }
        Ok(true)
    }
}

/// Breadth-first search for a member by name through nested members and
/// base classes, as the `optional` printer finds its payload.
fn find_path(room: &mut ValueRoom<'_>, key: TypeKey, name: &str) -> Option<(u64, Option<TypeKey>)> {
    let mut queue = std::collections::VecDeque::from([(key, 0u64)]);
    let mut visited = 0;
    while let Some((current, offset)) = queue.pop_front() {
        visited += 1;
        if visited > 64 {
            return None;
        }
        let (_, ty) = room.types.strip(room.module, current)?;
        let Some(aggregate) = ty.aggregate() else {
            continue;
        };
        for member in &aggregate.members {
            let MemberOffset::Bytes(member_offset) = member.offset else {
                continue;
            };
            if member.name.as_deref() == Some(name) {
                return Some((offset + member_offset, member.ty));
            }
            if let Some(inner) = member.ty {
                queue.push_back((inner, offset + member_offset));
            }
        }
    }
    None
}
