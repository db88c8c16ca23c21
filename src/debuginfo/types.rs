//! DWARF types decoded into an owned model the value and eval rooms can use
//! without holding gimli borrows: base types, pointers, references,
//! structs/classes/unions (with base classes, bit-fields, template
//! parameters and Rust's variant parts), enums, arrays, typedefs, qualifiers
//! and function types.
//!
//! Owns decoding one type DIE at a time, on demand, into a [`TypeTable`]
//! cache keyed by the DIE's position ([`TypeKey`]). Member and element types
//! stay keys until someone asks for them, so a recursive or huge type graph
//! costs only what is looked at. It never reads target memory and never
//! trusts DWARF shapes: anything unexpected becomes [`TypeKind::Unknown`]
//! with a reason, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{AttributeValue, Reader, constants};

use super::bytes::DwarfReader;
pub use super::dies::{Language, TypeKey, unit_language};
use super::frame_scope::FrameScope;
use super::module::{Module, PerModule};
pub use super::unit_tables::unit_key;

/// How a base type's bytes are to be read (`DW_AT_encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseEncoding {
    /// Two's complement integer.
    Signed,
    /// Unsigned integer.
    Unsigned,
    /// C `char`/`signed char` (shown as a number and a character).
    SignedChar,
    /// C `unsigned char`, `char8_t`.
    UnsignedChar,
    /// Rust `char`, `char16_t`, `char32_t`, `wchar_t`-like UTF code units.
    Utf,
    /// IEEE float.
    Float,
    /// Boolean.
    Bool,
    /// Something else (complex, decimal float, fixed point): shown as bytes.
    Other,
}

/// The flavour of an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateKind {
    /// `struct` (Rust structs, tuples and enums too).
    Struct,
    /// C++ `class`.
    Class,
    /// `union`.
    Union,
}

/// Where a member starts inside its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberOffset {
    /// A fixed byte offset.
    Bytes(u64),
    /// Computed at run time (a C++ virtual base): not supported.
    Dynamic,
}

/// One data member, base class or variant arm of an aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The member's name; `None` for anonymous structs/unions and base classes.
    pub name: Option<String>,
    /// The member's type; `None` if DWARF gives none.
    pub ty: Option<TypeKey>,
    /// Where it starts.
    pub offset: MemberOffset,
    /// For bit-fields: width in bits.
    pub bit_size: Option<u64>,
    /// For bit-fields: offset of the lowest bit from the start of the
    /// aggregate, in bits (little-endian numbering).
    pub bit_offset: Option<u64>,
    /// True for a base class (`DW_TAG_inheritance`).
    pub is_base: bool,
    /// True for compiler-made members (vptr, Rust discriminants).
    pub artificial: bool,
}

/// One arm of a Rust-style variant part.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// The discriminant values that select this arm; empty for the default
    /// arm (the "dataful" variant of a niche-encoded enum).
    pub discr: Vec<DiscrRange>,
    /// The arm's members; for Rust one member named after the variant.
    pub members: Vec<Member>,
}

/// An inclusive range of discriminant values (a single value is `low == high`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscrRange {
    /// Lowest value, as raw bits.
    pub low: u64,
    /// Highest value, as raw bits.
    pub high: u64,
}

/// A `DW_TAG_variant_part`: a tagged union laid over the aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantPart {
    /// The member holding the discriminant, if DWARF names one.
    pub discr: Option<Member>,
    /// The arms, in DWARF order.
    pub variants: Vec<Variant>,
}

/// A template parameter of a class or Rust generic (`T` of `Vec<T>`).
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateParam {
    /// The parameter's name (`T`, `K`, `_Tp`).
    pub name: String,
    /// The argument type, for a type parameter.
    pub ty: Option<TypeKey>,
    /// The argument value, for a value parameter.
    pub value: Option<i128>,
}

/// A named constant of an enumeration.
#[derive(Clone, Debug, PartialEq)]
pub struct Enumerator {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: i128,
}

/// An aggregate's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// struct, class or union.
    pub kind: AggregateKind,
    /// Data members and base classes, in DWARF order.
    pub members: Vec<Member>,
    /// Template parameters, in DWARF order.
    pub template_params: Vec<TemplateParam>,
    /// The variant part, for Rust enums and other tagged unions.
    pub variant_part: Option<VariantPart>,
    /// True for a declaration without a layout (an incomplete type).
    pub declaration: bool,
}

/// What a type is.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    /// A number, character or boolean.
    Base(BaseEncoding),
    /// A pointer; `None` pointee for `void *`.
    Pointer(Option<TypeKey>),
    /// A C++ reference (`rvalue` for `&&`).
    Reference {
        /// The referred-to type.
        target: Option<TypeKey>,
        /// True for `T&&`.
        rvalue: bool,
    },
    /// A struct, class or union (also Rust enums, tuples, slices).
    Aggregate(Aggregate),
    /// An enumeration.
    Enum {
        /// The underlying integer type, if given.
        underlying: Option<TypeKey>,
        /// Whether the values are signed.
        signed: bool,
        /// The named values.
        enumerators: Vec<Enumerator>,
    },
    /// An array; `dims` are element counts, outermost first; `None` for an
    /// unknown bound (flexible array member, VLA).
    Array {
        /// Element type.
        element: Option<TypeKey>,
        /// Counts per dimension.
        dims: Vec<Option<u64>>,
    },
    /// A typedef (`None` target for a typedef of void).
    Typedef(Option<TypeKey>),
    /// `const`, `volatile`, `restrict` or `_Atomic` applied to a type.
    Qualified {
        /// Which qualifier.
        qualifier: &'static str,
        /// The qualified type; `None` for `const void`.
        target: Option<TypeKey>,
    },
    /// A function type (what a function pointer points at).
    Function,
    /// `void` or another type without values (`decltype(nullptr)`).
    Void,
    /// A pointer to member: not supported.
    PointerToMember,
    /// A DIE that is not a type or that could not be decoded.
    Unknown(TypeProblem),
}

/// Why a type could not be decoded, decided where its DIE is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeProblem {
    /// The module has no DWARF at all.
    NoDwarf,
    /// No unit starts at this `.debug_info` offset.
    NoUnit {
        /// The offset the type key names.
        offset: usize,
    },
    /// The type's DIE could not be read.
    UnreadableEntry(gimli::Error),
    /// The DIE is of this tag, which is not a type.
    NotAType(gimli::DwTag),
}

impl std::fmt::Display for TypeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeProblem::NoDwarf => f.write_str("the module has no DWARF"),
            TypeProblem::NoUnit { offset } => {
                write!(f, "no unit at .debug_info offset {offset:#x}")
            }
            TypeProblem::UnreadableEntry(error) => write!(f, "cannot read type DIE: {error}"),
            TypeProblem::NotAType(tag) => write!(f, "{tag} is not a type"),
        }
    }
}

/// One decoded type.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// The name as the source would spell it (`struct point`, `const char *`,
    /// `Vec<i32>`, `int [3]`).
    pub name: String,
    /// The name DWARF gives this very DIE, without decoration (`point`,
    /// `Vec<i32, alloc::alloc::Global>`); empty when anonymous.
    pub short_name: String,
    /// Size in bytes, when DWARF gives or implies one.
    pub size: Option<u64>,
    /// What it is.
    pub kind: TypeKind,
    /// The language of its unit.
    pub language: Language,
}

impl Type {
    fn unknown(reason: TypeProblem, language: Language) -> Type {
        Type {
            name: "?".to_string(),
            short_name: String::new(),
            size: None,
            kind: TypeKind::Unknown(reason),
            language,
        }
    }

    /// The aggregate layout, if this is a struct, class or union.
    pub fn aggregate(&self) -> Option<&Aggregate> {
        match &self.kind {
            TypeKind::Aggregate(aggregate) => Some(aggregate),
            _ => None,
        }
    }

    /// The template parameter named `name` (for Rust `T`, C++ `_Tp`).
    pub fn template_param(&self, name: &str) -> Option<&TemplateParam> {
        self.aggregate()?
            .template_params
            .iter()
            .find(|p| p.name == name)
    }

    /// The data member named `name` (not searching base classes).
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.aggregate()?
            .members
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
    }
}

/// How deep derived types (pointer to pointer to …) are followed when
/// building a name; deeper chains are malformed or malicious DWARF.
const MAX_NAME_DEPTH: u32 = 24;

/// Largest offset, size or array length believed from DWARF (1 TiB);
/// anything larger is malformed, and capping here keeps every later sum of
/// offsets far from overflowing.
const MAX_PLAUSIBLE: u64 = 1 << 40;

/// Upper bound on members, enumerators or dimensions decoded per type, so a
/// corrupt DIE tree cannot make one decode allocate without bound.
const MAX_CHILDREN: usize = 100_000;

/// A cache of decoded types of one module. Cheap to create; keep one around
/// (for example inside a compiled expression) to avoid decoding twice.
#[derive(Debug, Default)]
pub struct TypeTable {
    types: HashMap<TypeKey, Arc<Type>>,
    languages: HashMap<usize, Language>,
    unit_starts: Option<Vec<usize>>,
    /// Scopes already walked, by (file pc, inline depth): probes read the
    /// same pc at every hit.
    pub(crate) scopes: HashMap<(u64, usize), Arc<FrameScope>>,
    /// Definitions found for declarations, by source name.
    definitions: HashMap<String, Option<TypeKey>>,
    /// Types found by name in any unit (casts, `sizeof`), by source name.
    named_anywhere: HashMap<String, Option<TypeKey>>,
}

/// Type tables, one per module read, of one reader: each table is locked
/// by that reader alone. Client requests (`read_locals`, `evaluate`,
/// `stack_trace`, a `dry_run`) share [`TypeTables::shared`]; each probe and
/// sampled watch owns its own ([`TypeTables::new`], made when it is set and
/// warmed by its set-time compile and planning), so a hit never waits for a
/// client's decode, nor a client for a hit. (A write watch's records are
/// rendered with the shared tables: they hold no thread.) A table holds only what its
/// reader decoded, and goes away with its module (held weakly) or its
/// reader.
#[derive(Debug, Default)]
pub struct TypeTables {
    tables: PerModule<Arc<Mutex<TypeTable>>>,
}

impl TypeTables {
    /// Empty tables for a new reader (a probe, a watch).
    pub fn new() -> TypeTables {
        TypeTables::default()
    }

    /// The tables of client requests, shared by all of them so that a type
    /// is decoded once per module rather than once per request.
    pub fn shared() -> &'static Arc<TypeTables> {
        static SHARED: OnceLock<Arc<TypeTables>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(TypeTables::new()))
    }

    /// This reader's table of `module`, made on first use. Only the list is
    /// locked here, briefly; the caller locks the table for its decode.
    pub fn table_for(&self, module: &Arc<Module>) -> Arc<Mutex<TypeTable>> {
        self.tables.get(module)
    }

    /// True when this reader has made a table of `module` (it has read
    /// something of it).
    pub fn has_table_for(&self, module: &Module) -> bool {
        self.tables.contains(module)
    }
}

impl TypeTable {
    /// An empty cache.
    pub fn new() -> TypeTable {
        TypeTable::default()
    }

    /// How many types and frame scopes are decoded in it.
    pub fn decoded(&self) -> (usize, usize) {
        (self.types.len(), self.scopes.len())
    }

    /// The type at `key`, decoded on first use.
    pub fn get(&mut self, module: &Module, key: TypeKey) -> Arc<Type> {
        self.get_depth(module, key, 0)
    }

    /// The type at `key` with typedefs and qualifiers peeled off, with the
    /// key of what remains. A typedef of void gives `None`.
    pub fn strip(&mut self, module: &Module, key: TypeKey) -> Option<(TypeKey, Arc<Type>)> {
        let mut current = key;
        for _ in 0..MAX_NAME_DEPTH {
            let ty = self.get(module, current);
            match ty.kind {
                TypeKind::Typedef(Some(next))
                | TypeKind::Qualified {
                    target: Some(next), ..
                } => current = next,
                TypeKind::Typedef(None) | TypeKind::Qualified { target: None, .. } => return None,
                _ => return Some((current, ty)),
            }
        }
        None
    }

    /// The size in bytes of the type at `key`, looking through typedefs,
    /// qualifiers and arrays.
    pub fn size_of(&mut self, module: &Module, key: TypeKey) -> Option<u64> {
        let (stripped, ty) = self.strip(module, key)?;
        if let Some(size) = ty.size {
            return Some(size);
        }
        if ty.aggregate().is_some_and(|a| a.declaration) {
            let definition = self.definition_of(module, stripped)?;
            return self.get(module, definition).size;
        }
        match &ty.kind {
            TypeKind::Array { element, dims } => {
                let element_size = self.size_of(module, (*element)?)?;
                dims.iter()
                    .try_fold(element_size, |acc, dim| acc.checked_mul((*dim)?))
            }
            TypeKind::Pointer(_) | TypeKind::Reference { .. } => Some(8),
            _ => None,
        }
    }

    /// The language of the unit at `.debug_info` offset `unit`.
    pub fn language(&mut self, module: &Module, unit: usize) -> Language {
        if let Some(language) = self.languages.get(&unit) {
            return *language;
        }
        let language = module
            .unit_at(gimli::DebugInfoOffset(unit))
            .map(|u| unit_language(&u))
            .unwrap_or(Language::Other);
        self.languages.insert(unit, language);
        language
    }

    /// Turns a reference attribute of a DIE in `unit` into a [`TypeKey`].
    pub fn reference(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        value: AttributeValue<DwarfReader>,
    ) -> Option<TypeKey> {
        match value {
            AttributeValue::UnitRef(offset) => Some(TypeKey {
                unit: unit_key(unit)?,
                entry: offset.0,
            }),
            AttributeValue::DebugInfoRef(offset) => self.global_reference(module, offset.0),
            _ => None,
        }
    }

    /// A key for a DIE at a `.debug_info` offset (`DW_FORM_ref_addr`).
    pub fn global_reference(&mut self, module: &Module, offset: usize) -> Option<TypeKey> {
        let starts = self.unit_starts.get_or_insert_with(|| {
            let mut starts = Vec::new();
            if let Some(dwarf) = module.dwarf() {
                let mut headers = dwarf.units();
                while let Ok(Some(header)) = headers.next() {
                    if let Some(offset) = header.debug_info_offset() {
                        starts.push(offset.0);
                    }
                }
            }
            starts
        });
        let index = starts
            .partition_point(|start| *start <= offset)
            .checked_sub(1)?;
        let unit = starts[index];
        Some(TypeKey {
            unit,
            entry: offset - unit,
        })
    }

    fn get_depth(&mut self, module: &Module, key: TypeKey, depth: u32) -> Arc<Type> {
        if let Some(ty) = self.types.get(&key) {
            return ty.clone();
        }
        let ty = Arc::new(self.decode(module, key, depth));
        self.types.insert(key, ty.clone());
        ty
    }

    /// The display name of an optional type (`void` for none).
    fn name_of(&mut self, module: &Module, key: Option<TypeKey>, depth: u32) -> String {
        match key {
            None => "void".to_string(),
            Some(_) if depth > MAX_NAME_DEPTH => "?".to_string(),
            Some(key) => self.get_depth(module, key, depth + 1).name.clone(),
        }
    }

    fn decode(&mut self, module: &Module, key: TypeKey, depth: u32) -> Type {
        let language = self.language(module, key.unit);
        let Some(dwarf) = module.dwarf_for(key.unit) else {
            return Type::unknown(TypeProblem::NoDwarf, language);
        };
        let Some(unit) = module.unit_at(gimli::DebugInfoOffset(key.unit)) else {
            return Type::unknown(TypeProblem::NoUnit { offset: key.unit }, language);
        };
        let unit_ref = unit.unit_ref(dwarf);
        let entry = match unit.entry(gimli::UnitOffset(key.entry)) {
            Ok(entry) => entry,
            Err(error) => return Type::unknown(TypeProblem::UnreadableEntry(error), language),
        };
        let short_name = entry
            .attr_value(constants::DW_AT_name)
            .and_then(|value| unit_ref.attr_string(value).ok())
            .map(|name| {
                name.to_string_lossy()
                    .map(|s| s.into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let size = entry
            .attr_value(constants::DW_AT_byte_size)
            .and_then(|v| v.udata_value())
            .filter(|size| *size <= MAX_PLAUSIBLE);
        let target = entry
            .attr_value(constants::DW_AT_type)
            .and_then(|value| self.reference(module, &unit, value));
        let named = |fallback: String| {
            if short_name.is_empty() {
                fallback
            } else {
                short_name.clone()
            }
        };
        let (name, kind, size) = match entry.tag() {
            constants::DW_TAG_base_type => {
                let encoding = entry
                    .attr_value(constants::DW_AT_encoding)
                    .and_then(|v| match v {
                        AttributeValue::Encoding(encoding) => Some(encoding),
                        _ => None,
                    });
                let encoding = match encoding {
                    Some(constants::DW_ATE_signed) => BaseEncoding::Signed,
                    Some(constants::DW_ATE_unsigned) => BaseEncoding::Unsigned,
                    Some(constants::DW_ATE_signed_char) => BaseEncoding::SignedChar,
                    Some(constants::DW_ATE_unsigned_char) => BaseEncoding::UnsignedChar,
                    Some(constants::DW_ATE_UTF) => BaseEncoding::Utf,
                    Some(constants::DW_ATE_float) => BaseEncoding::Float,
                    Some(constants::DW_ATE_boolean) => BaseEncoding::Bool,
                    _ => BaseEncoding::Other,
                };
                (named("?".into()), TypeKind::Base(encoding), size)
            }
            constants::DW_TAG_unspecified_type => (named("void".into()), TypeKind::Void, size),
            constants::DW_TAG_pointer_type => {
                let name = if short_name.is_empty() {
                    self.pointer_name(module, target, "*", depth)
                } else {
                    short_name.clone()
                };
                (name, TypeKind::Pointer(target), size.or(Some(8)))
            }
            tag @ (constants::DW_TAG_reference_type | constants::DW_TAG_rvalue_reference_type) => {
                let rvalue = tag == constants::DW_TAG_rvalue_reference_type;
                let name = if short_name.is_empty() {
                    self.pointer_name(module, target, if rvalue { "&&" } else { "&" }, depth)
                } else {
                    short_name.clone()
                };
                (
                    name,
                    TypeKind::Reference { target, rvalue },
                    size.or(Some(8)),
                )
            }
            constants::DW_TAG_ptr_to_member_type => (
                named("pointer to member".into()),
                TypeKind::PointerToMember,
                size.or(Some(8)),
            ),
            tag @ (constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type) => {
                let kind = match tag {
                    constants::DW_TAG_class_type => AggregateKind::Class,
                    constants::DW_TAG_union_type => AggregateKind::Union,
                    _ => AggregateKind::Struct,
                };
                let declaration = matches!(
                    entry.attr_value(constants::DW_AT_declaration),
                    Some(AttributeValue::Flag(true))
                );
                let aggregate = self.aggregate(module, &unit, key, kind, declaration);
                let keyword = match kind {
                    AggregateKind::Union => "union",
                    AggregateKind::Class => "class",
                    AggregateKind::Struct => "struct",
                };
                let name = match (language, short_name.is_empty()) {
                    (_, true) => format!("{keyword} {{...}}"),
                    (Language::C | Language::Other, false) => format!("{keyword} {short_name}"),
                    (_, false) => short_name.clone(),
                };
                (name, TypeKind::Aggregate(aggregate), size)
            }
            constants::DW_TAG_enumeration_type => {
                let (signed, enumerators) = self.enumerators(module, &unit, key, target);
                let name = match (language, short_name.is_empty()) {
                    (_, true) => "enum {...}".to_string(),
                    (Language::C | Language::Other, false) => format!("enum {short_name}"),
                    (_, false) => short_name.clone(),
                };
                (
                    name,
                    TypeKind::Enum {
                        underlying: target,
                        signed,
                        enumerators,
                    },
                    size,
                )
            }
            constants::DW_TAG_array_type => {
                let dims = self.dimensions(&unit, key);
                let element_name = self.name_of(module, target, depth);
                let dims_text: String = dims
                    .iter()
                    .map(|d| match d {
                        Some(n) => format!("[{n}]"),
                        None => "[]".to_string(),
                    })
                    .collect();
                let name = if language == Language::Rust && dims.len() == 1 {
                    match dims[0] {
                        Some(n) => format!("[{element_name}; {n}]"),
                        None => format!("[{element_name}]"),
                    }
                } else {
                    format!("{element_name} {dims_text}")
                };
                (
                    name,
                    TypeKind::Array {
                        element: target,
                        dims,
                    },
                    size,
                )
            }
            constants::DW_TAG_typedef => (named("?".into()), TypeKind::Typedef(target), size),
            tag @ (constants::DW_TAG_const_type
            | constants::DW_TAG_volatile_type
            | constants::DW_TAG_restrict_type
            | constants::DW_TAG_atomic_type) => {
                let qualifier = match tag {
                    constants::DW_TAG_const_type => "const",
                    constants::DW_TAG_volatile_type => "volatile",
                    constants::DW_TAG_restrict_type => "restrict",
                    _ => "_Atomic",
                };
                let inner = self.name_of(module, target, depth);
                // `char *const` reads right to left; `const int` reads left to right.
                let pointer_like = target.is_some_and(|t| {
                    matches!(
                        self.get_depth(module, t, depth + 1).kind,
                        TypeKind::Pointer(_)
                    )
                });
                let name = if pointer_like {
                    format!("{inner} {qualifier}")
                } else {
                    format!("{qualifier} {inner}")
                };
                (name, TypeKind::Qualified { qualifier, target }, size)
            }
            constants::DW_TAG_subroutine_type => {
                let name = self.function_signature(module, &unit, key, target, "", depth);
                (name, TypeKind::Function, size)
            }
            other => {
                let mut ty = Type::unknown(TypeProblem::NotAType(other), language);
                ty.short_name = short_name;
                return ty;
            }
        };
        let name = match language {
            Language::Rust => rust_display_name(&name),
            Language::Cpp => cpp_display_name(&name),
            _ => name,
        };
        Type {
            name,
            short_name,
            size,
            kind,
            language,
        }
    }

    /// `T *`, `T &`, or `ret (*)(params)` for a pointer to a function.
    fn pointer_name(
        &mut self,
        module: &Module,
        target: Option<TypeKey>,
        sigil: &str,
        depth: u32,
    ) -> String {
        if let Some(target) = target
            && depth <= MAX_NAME_DEPTH
        {
            let pointee = self.get_depth(module, target, depth + 1);
            if matches!(pointee.kind, TypeKind::Function) {
                // Function types are named `ret (params)`; splice the sigil in.
                if let Some(open) = pointee.name.find(" (") {
                    return format!(
                        "{} ({sigil}){}",
                        &pointee.name[..open],
                        &pointee.name[open + 1..]
                    );
                }
            }
            if let TypeKind::Array { .. } = pointee.kind
                && let Some(open) = pointee.name.find(" [")
            {
                return format!(
                    "{} ({sigil}){}",
                    &pointee.name[..open],
                    &pointee.name[open + 1..]
                );
            }
        }
        let inner = self.name_of(module, target, depth);
        if inner.ends_with('*') || inner.ends_with('&') {
            format!("{inner}{sigil}")
        } else {
            format!("{inner} {sigil}")
        }
    }

    fn function_signature(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        key: TypeKey,
        return_type: Option<TypeKey>,
        name: &str,
        depth: u32,
    ) -> String {
        let mut params = Vec::new();
        let mut variadic = false;
        self.for_each_child(unit, key, |table, child| match child.tag() {
            constants::DW_TAG_formal_parameter => {
                let ty = child
                    .attr_value(constants::DW_AT_type)
                    .and_then(|v| table.reference(module, unit, v));
                params.push(ty);
            }
            constants::DW_TAG_unspecified_parameters => variadic = true,
            _ => {}
        });
        let mut names: Vec<String> = params
            .into_iter()
            .map(|p| self.name_of(module, p, depth))
            .collect();
        if variadic {
            names.push("...".to_string());
        }
        if names.is_empty() && self.language(module, key.unit) == Language::C {
            names.push("void".to_string());
        }
        let return_name = self.name_of(module, return_type, depth);
        format!("{return_name} {name}({})", names.join(", "))
    }

    /// Calls `visit` for every direct child DIE of `key` (none if it has no
    /// children or the tree is malformed).
    fn for_each_child(
        &mut self,
        unit: &gimli::Unit<DwarfReader>,
        key: TypeKey,
        mut visit: impl FnMut(&mut TypeTable, &gimli::DebuggingInformationEntry<DwarfReader>),
    ) {
        let Ok(mut tree) = unit.entries_tree(Some(gimli::UnitOffset(key.entry))) else {
            return;
        };
        let Ok(root) = tree.root() else {
            return;
        };
        let mut children = root.children();
        let mut count = 0;
        while let Ok(Some(child)) = children.next() {
            count += 1;
            if count > MAX_CHILDREN {
                tracing::warn!(
                    entry = key.entry,
                    "type has too many children; ignoring the rest"
                );
                break;
            }
            visit(self, child.entry());
        }
    }

    fn member(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        entry: &gimli::DebuggingInformationEntry<DwarfReader>,
    ) -> Member {
        let dwarf = unit_key(unit).and_then(|u| module.dwarf_for(u));
        let name = dwarf.and_then(|dwarf| {
            let value = entry.attr_value(constants::DW_AT_name)?;
            let text = unit.unit_ref(dwarf).attr_string(value).ok()?;
            text.to_string_lossy().ok().map(|s| s.into_owned())
        });
        let ty = entry
            .attr_value(constants::DW_AT_type)
            .and_then(|v| self.reference(module, unit, v));
        let offset = match entry.attr_value(constants::DW_AT_data_member_location) {
            None => MemberOffset::Bytes(0),
            Some(AttributeValue::Exprloc(expression)) => {
                constant_offset_expression(expression, unit.encoding())
            }
            Some(value) => value
                .udata_value()
                .map_or(MemberOffset::Dynamic, MemberOffset::Bytes),
        };
        let offset = match offset {
            MemberOffset::Bytes(bytes) if bytes > MAX_PLAUSIBLE => MemberOffset::Dynamic,
            other => other,
        };
        let bit_size = entry
            .attr_value(constants::DW_AT_bit_size)
            .and_then(|v| v.udata_value());
        let bit_offset = bit_size.and_then(|bits| {
            if let Some(offset) = entry
                .attr_value(constants::DW_AT_data_bit_offset)
                .and_then(|v| v.udata_value())
            {
                return Some(offset);
            }
            // DWARF 2/3: DW_AT_bit_offset counts from the most significant bit
            // of a storage unit of DW_AT_byte_size bytes at the member offset.
            let storage = entry
                .attr_value(constants::DW_AT_byte_size)
                .and_then(|v| v.udata_value())?;
            let from_msb = entry
                .attr_value(constants::DW_AT_bit_offset)
                .and_then(|v| v.udata_value())?;
            let base = match offset {
                MemberOffset::Bytes(bytes) => bytes,
                MemberOffset::Dynamic => return None,
            };
            base.checked_add(storage)?
                .checked_mul(8)?
                .checked_sub(from_msb.checked_add(bits)?)
        });
        let bit_size = bit_size.filter(|_| bit_offset.is_some());
        Member {
            name,
            ty,
            offset: if bit_offset.is_some() {
                MemberOffset::Bytes(0)
            } else {
                offset
            },
            bit_size,
            bit_offset,
            is_base: entry.tag() == constants::DW_TAG_inheritance,
            artificial: matches!(
                entry.attr_value(constants::DW_AT_artificial),
                Some(AttributeValue::Flag(true))
            ),
        }
    }

    fn aggregate(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        key: TypeKey,
        kind: AggregateKind,
        declaration: bool,
    ) -> Aggregate {
        let mut members = Vec::new();
        let mut template_params = Vec::new();
        let mut variant_part_at = None;
        self.for_each_child(unit, key, |table, child| match child.tag() {
            constants::DW_TAG_member | constants::DW_TAG_inheritance => {
                // Static members have no location inside the object.
                let is_static = matches!(
                    child.attr_value(constants::DW_AT_external),
                    Some(AttributeValue::Flag(true))
                ) || matches!(
                    child.attr_value(constants::DW_AT_declaration),
                    Some(AttributeValue::Flag(true))
                );
                if !is_static {
                    members.push(table.member(module, unit, child));
                }
            }
            tag @ (constants::DW_TAG_template_type_parameter
            | constants::DW_TAG_template_value_parameter) => {
                let name = unit_key(unit)
                    .and_then(|u| module.dwarf_for(u))
                    .and_then(|dwarf| {
                        let value = child.attr_value(constants::DW_AT_name)?;
                        unit.unit_ref(dwarf).attr_string(value).ok()
                    })
                    .and_then(|s| s.to_string_lossy().ok().map(|s| s.into_owned()))
                    .unwrap_or_default();
                let ty = child
                    .attr_value(constants::DW_AT_type)
                    .and_then(|v| table.reference(module, unit, v));
                let value = if tag == constants::DW_TAG_template_value_parameter {
                    child
                        .attr_value(constants::DW_AT_const_value)
                        .and_then(|v| match v {
                            AttributeValue::Sdata(s) => Some(i128::from(s)),
                            other => other.udata_value().map(i128::from),
                        })
                } else {
                    None
                };
                template_params.push(TemplateParam {
                    name,
                    ty: if tag == constants::DW_TAG_template_type_parameter {
                        ty
                    } else {
                        None
                    },
                    value,
                });
            }
            constants::DW_TAG_variant_part => variant_part_at = Some(child.offset()),
            _ => {}
        });
        let variant_part =
            variant_part_at.map(|offset| self.variant_part(module, unit, key.unit, offset));
        Aggregate {
            kind,
            members,
            template_params,
            variant_part,
            declaration,
        }
    }

    fn variant_part(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        unit_offset: usize,
        offset: gimli::UnitOffset,
    ) -> VariantPart {
        let part_key = TypeKey {
            unit: unit_offset,
            entry: offset.0,
        };
        let discr_at = unit.entry(offset).ok().and_then(|entry| {
            match entry.attr_value(constants::DW_AT_discr) {
                Some(AttributeValue::UnitRef(at)) => Some(at),
                _ => None,
            }
        });
        let mut discr = None;
        let mut variant_offsets = Vec::new();
        self.for_each_child(unit, part_key, |table, child| match child.tag() {
            constants::DW_TAG_member if Some(child.offset()) == discr_at || discr_at.is_none() => {
                discr = Some(table.member(module, unit, child));
            }
            constants::DW_TAG_variant => {
                let mut ranges = Vec::new();
                if let Some(value) = child.attr_value(constants::DW_AT_discr_value) {
                    let raw = match value {
                        AttributeValue::Sdata(s) => Some(s as u64),
                        other => other.udata_value(),
                    };
                    if let Some(raw) = raw {
                        ranges.push(DiscrRange {
                            low: raw,
                            high: raw,
                        });
                    }
                }
                if let Some(AttributeValue::Block(block)) =
                    child.attr_value(constants::DW_AT_discr_list)
                {
                    ranges.extend(discr_list(block));
                }
                variant_offsets.push((child.offset(), ranges));
            }
            _ => {}
        });
        let mut variants = Vec::new();
        for (variant_offset, discr) in variant_offsets {
            let variant_key = TypeKey {
                unit: unit_offset,
                entry: variant_offset.0,
            };
            let mut members = Vec::new();
            self.for_each_child(unit, variant_key, |table, child| {
                if child.tag() == constants::DW_TAG_member {
                    members.push(table.member(module, unit, child));
                }
            });
            variants.push(Variant { discr, members });
        }
        VariantPart { discr, variants }
    }

    fn enumerators(
        &mut self,
        module: &Module,
        unit: &gimli::Unit<DwarfReader>,
        key: TypeKey,
        underlying: Option<TypeKey>,
    ) -> (bool, Vec<Enumerator>) {
        let mut signed = match underlying {
            Some(underlying) => match self
                .strip(module, underlying)
                .map(|(_, ty)| ty.kind.clone())
            {
                Some(TypeKind::Base(BaseEncoding::Signed | BaseEncoding::SignedChar)) => Some(true),
                Some(TypeKind::Base(_)) => Some(false),
                _ => None,
            },
            None => None,
        };
        let mut enumerators = Vec::new();
        let dwarf = module.dwarf_for(key.unit);
        self.for_each_child(unit, key, |_, child| {
            if child.tag() != constants::DW_TAG_enumerator {
                return;
            }
            let name = dwarf
                .and_then(|dwarf| {
                    let value = child.attr_value(constants::DW_AT_name)?;
                    unit.unit_ref(dwarf).attr_string(value).ok()
                })
                .and_then(|s| s.to_string_lossy().ok().map(|s| s.into_owned()))
                .unwrap_or_default();
            let value = match child.attr_value(constants::DW_AT_const_value) {
                Some(AttributeValue::Sdata(s)) => {
                    if s < 0 {
                        signed.get_or_insert(true);
                    }
                    i128::from(s)
                }
                Some(other) => match other.udata_value() {
                    Some(u) => i128::from(u),
                    None => return,
                },
                None => return,
            };
            enumerators.push(Enumerator { name, value });
        });
        (signed.unwrap_or(false), enumerators)
    }

    fn dimensions(&mut self, unit: &gimli::Unit<DwarfReader>, key: TypeKey) -> Vec<Option<u64>> {
        let mut dims = Vec::new();
        self.for_each_child(unit, key, |_, child| {
            if !matches!(
                child.tag(),
                constants::DW_TAG_subrange_type | constants::DW_TAG_enumeration_type
            ) {
                return;
            }
            let lower = child
                .attr_value(constants::DW_AT_lower_bound)
                .and_then(|v| bound_value(&v))
                .unwrap_or(0);
            let count = child
                .attr_value(constants::DW_AT_count)
                .and_then(|v| bound_value(&v))
                .or_else(|| {
                    let upper = child
                        .attr_value(constants::DW_AT_upper_bound)
                        .and_then(|v| bound_value(&v))?;
                    // An upper bound of -1 (all ones) is GCC's zero-length array.
                    if upper == -1 {
                        return Some(0);
                    }
                    upper.checked_sub(lower)?.checked_add(1)
                })
                .and_then(|count| u64::try_from(count).ok())
                .filter(|count| *count <= MAX_PLAUSIBLE);
            dims.push(count);
        });
        if dims.is_empty() {
            dims.push(None);
        }
        dims
    }
}

impl TypeTable {
    /// The full definition of an incomplete struct/class/union/enum type
    /// (`struct handle;` here, defined in another compilation unit),
    /// searched by name in every unit once and remembered.
    pub fn definition_of(&mut self, module: &Module, key: TypeKey) -> Option<TypeKey> {
        let ty = self.get(module, key);
        if ty.short_name.is_empty() {
            return None;
        }
        let name = match (&ty.kind, ty.language) {
            (TypeKind::Aggregate(aggregate), Language::C | Language::Other) => {
                let keyword = match aggregate.kind {
                    AggregateKind::Union => "union",
                    AggregateKind::Class => "class",
                    AggregateKind::Struct => "struct",
                };
                format!("{keyword} {}", ty.short_name)
            }
            _ => ty.short_name.clone(),
        };
        if let Some(found) = self.definitions.get(&name) {
            return *found;
        }
        let mut found = None;
        if let Some(dwarf) = module.dwarf() {
            let mut headers = dwarf.units();
            while let Ok(Some(header)) = headers.next() {
                let Some(offset) = header.debug_info_offset() else {
                    continue;
                };
                if let Some(definition) = self.find_named(module, offset.0, &name)
                    && definition != key
                {
                    found = Some(definition);
                    break;
                }
            }
        }
        self.definitions.insert(name, found);
        found
    }

    /// A type named as in source, in the first unit of the module that
    /// defines it (a cast's type need not be declared in the frame's unit).
    /// Searched once per name and remembered.
    pub fn find_named_anywhere(&mut self, module: &Module, name: &str) -> Option<TypeKey> {
        if let Some(found) = self.named_anywhere.get(name) {
            return *found;
        }
        let mut found = None;
        if let Some(dwarf) = module.dwarf() {
            let mut headers = dwarf.units();
            while let Ok(Some(header)) = headers.next() {
                let Some(offset) = header.debug_info_offset() else {
                    continue;
                };
                if let Some(key) = self.find_named(module, offset.0, name) {
                    found = Some(key);
                    break;
                }
            }
        }
        self.named_anywhere.insert(name.to_string(), found);
        found
    }

    /// The names of the types defined at the top level (and one namespace
    /// deep) of the module's units, at most `limit`: for "did you mean"
    /// when a cast names an unknown type.
    pub fn type_names(&mut self, module: &Module, limit: usize) -> Vec<String> {
        let mut names = Vec::new();
        let Some(dwarf) = module.dwarf() else {
            return names;
        };
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let Some(unit) = module.unit_at(offset) else {
                continue;
            };
            let unit_ref = unit.unit_ref(dwarf);
            let Ok(mut tree) = unit.entries_tree(None) else {
                continue;
            };
            let Ok(root) = tree.root() else { continue };
            collect_type_names(unit_ref, root, "", 0, limit, &mut names);
            if names.len() >= limit {
                break;
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// A type named as in source (`struct node`, `enum color`, `point`,
    /// `ns::Widget`, `uint32_t`) among the unit's top-level and namespace
    /// types; `unit` is the `.debug_info` offset of the unit to search.
    pub fn find_named(&mut self, module: &Module, unit: usize, name: &str) -> Option<TypeKey> {
        let (tag_wanted, bare) = match name.split_once(' ') {
            Some(("struct", rest)) => (Some(constants::DW_TAG_structure_type), rest),
            Some(("class", rest)) => (Some(constants::DW_TAG_class_type), rest),
            Some(("union", rest)) => (Some(constants::DW_TAG_union_type), rest),
            Some(("enum", rest)) => (Some(constants::DW_TAG_enumeration_type), rest),
            _ => (None, name),
        };
        let segments: Vec<&str> = bare.split("::").collect();
        let dwarf = module.dwarf_for(unit)?;
        let unit_handle = module.unit_at(gimli::DebugInfoOffset(unit))?;
        let unit_ref = unit_handle.unit_ref(dwarf);
        let mut tree = unit_handle.entries_tree(None).ok()?;
        let root = tree.root().ok()?;
        let mut found = None;
        find_named_in(unit_ref, root, &segments, tag_wanted, 0, &mut found);
        found.map(|entry| TypeKey { unit, entry })
    }
}

fn collect_type_names(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    prefix: &str,
    depth: usize,
    limit: usize,
    names: &mut Vec<String>,
) {
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        if names.len() >= limit {
            return;
        }
        let entry = child.entry();
        let tag = entry.tag();
        let name = entry
            .attr_value(constants::DW_AT_name)
            .and_then(|value| unit_ref.attr_string(value).ok())
            .and_then(|text| text.to_string_lossy().ok().map(|s| s.into_owned()));
        let Some(name) = name else { continue };
        match tag {
            constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_enumeration_type
            | constants::DW_TAG_typedef
            | constants::DW_TAG_base_type => names.push(format!("{prefix}{name}")),
            constants::DW_TAG_namespace if depth == 0 => {
                collect_type_names(
                    unit_ref,
                    child,
                    &format!("{name}::"),
                    depth + 1,
                    limit,
                    names,
                );
            }
            _ => {}
        }
    }
}

fn find_named_in(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    segments: &[&str],
    tag_wanted: Option<constants::DwTag>,
    depth: usize,
    found: &mut Option<usize>,
) {
    if depth > 16 || segments.is_empty() {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        let name = entry
            .attr_value(constants::DW_AT_name)
            .and_then(|value| unit_ref.attr_string(value).ok())
            .and_then(|text| text.to_string_lossy().ok().map(|s| s.into_owned()));
        let Some(name) = name else { continue };
        if name != segments[0] {
            continue;
        }
        let is_declaration = matches!(
            entry.attr_value(constants::DW_AT_declaration),
            Some(AttributeValue::Flag(true))
        );
        if segments.len() == 1 {
            let tag = entry.tag();
            let is_type = matches!(
                tag,
                constants::DW_TAG_structure_type
                    | constants::DW_TAG_class_type
                    | constants::DW_TAG_union_type
                    | constants::DW_TAG_enumeration_type
                    | constants::DW_TAG_typedef
                    | constants::DW_TAG_base_type
            );
            if is_type && tag_wanted.is_none_or(|wanted| wanted == tag) && !is_declaration {
                *found = Some(entry.offset().0);
                return;
            }
        } else if matches!(
            entry.tag(),
            constants::DW_TAG_namespace
                | constants::DW_TAG_structure_type
                | constants::DW_TAG_class_type
        ) {
            find_named_in(
                unit_ref,
                child,
                &segments[1..],
                tag_wanted,
                depth + 1,
                found,
            );
            if found.is_some() {
                return;
            }
        }
    }
}

/// A Rust type name as a reader wants it: default allocator and hasher
/// arguments dropped, std paths shortened (`Vec<alloc::string::String,
/// alloc::alloc::Global>` → `Vec<String>`); user paths are kept.
pub fn rust_display_name(name: &str) -> String {
    let without_defaults = name
        .replace(", alloc::alloc::Global", "")
        .replace(", std::hash::random::RandomState", "");
    let mut out = String::with_capacity(without_defaults.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        let is_std = ["alloc::", "core::", "std::"]
            .iter()
            .any(|p| token.starts_with(p));
        match token.rsplit_once("::") {
            Some((_, last)) if is_std => out.push_str(last),
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in without_defaults.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Template arguments libstdc++ fills in by default; dropped from names.
const CPP_DEFAULT_ARGUMENTS: &[&str] = &[
    "std::allocator<",
    "std::less<",
    "std::hash<",
    "std::equal_to<",
    "std::default_delete<",
    "std::char_traits<",
];

/// A C++ type name as a reader wants it: `std::string` for libstdc++'s
/// `basic_string<char, …>`, default template arguments dropped
/// (`vector<int, std::allocator<int> >` → `vector<int>`).
pub fn cpp_display_name(name: &str) -> String {
    let Some(open) = name.find('<') else {
        return name.to_string();
    };
    let Some(close) = name.rfind('>') else {
        return name.to_string();
    };
    if close < open {
        return name.to_string();
    }
    let head = &name[..open];
    let tail = &name[close + 1..];
    let inner = &name[open + 1..close];
    let mut arguments = Vec::new();
    let mut level = 0i32;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '(' => level += 1,
            '>' | ')' => level -= 1,
            ',' if level == 0 => {
                arguments.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    arguments.push(inner[start..].trim());
    let kept: Vec<String> = arguments
        .iter()
        .filter(|argument| {
            !CPP_DEFAULT_ARGUMENTS
                .iter()
                .any(|d| argument.starts_with(d))
        })
        .map(|argument| cpp_display_name(argument))
        .collect();
    let base = head.trim_end();
    if base.ends_with("basic_string") && kept.len() == 1 && kept[0] == "char" {
        return format!("std::string{tail}");
    }
    format!("{base}<{}>{tail}", kept.join(", "))
}

/// A constant array bound (`DW_FORM_data*`, `sdata`, `udata`); a bound given
/// by an expression or a variable (VLA) is unknown here.
fn bound_value(value: &AttributeValue<DwarfReader>) -> Option<i64> {
    match value {
        AttributeValue::Sdata(s) => Some(*s),
        AttributeValue::Data1(d) => Some(i64::from(*d)),
        AttributeValue::Data2(d) => Some(i64::from(*d)),
        AttributeValue::Data4(d) => Some(i64::from(*d)),
        AttributeValue::Data8(d) => Some(*d as i64),
        AttributeValue::Udata(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// `DW_AT_data_member_location` as an expression: constant offsets are
/// `DW_OP_plus_uconst N` (DWARF 2) or `DW_OP_constu N`; anything else reads
/// the object (virtual bases) and is dynamic.
fn constant_offset_expression(
    expression: gimli::Expression<DwarfReader>,
    encoding: gimli::Encoding,
) -> MemberOffset {
    let mut operations = expression.operations(encoding);
    let first = operations.next();
    let rest = operations.next();
    match (first, rest) {
        (Ok(Some(gimli::Operation::PlusConstant { value })), Ok(None))
        | (Ok(Some(gimli::Operation::UnsignedConstant { value })), Ok(None)) => {
            MemberOffset::Bytes(value)
        }
        _ => MemberOffset::Dynamic,
    }
}

/// Decodes a `DW_AT_discr_list` block: `DW_DSC_label value` or
/// `DW_DSC_range low high`, values as ULEB128 (signedness is the discriminant
/// type's; unsigned covers the cases compilers emit).
fn discr_list(mut block: DwarfReader) -> Vec<DiscrRange> {
    let mut ranges = Vec::new();
    while !block.is_empty() && ranges.len() < MAX_CHILDREN {
        let Ok(kind) = block.read_u8() else { break };
        let Ok(low) = block.read_uleb128() else { break };
        let high = if kind == constants::DW_DSC_range.0 {
            match block.read_uleb128() {
                Ok(high) => high,
                Err(_) => break,
            }
        } else {
            low
        };
        ranges.push(DiscrRange { low, high });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::rust_display_name;
    use super::{Module, TypeTables};
    use std::sync::Arc;

    fn module() -> Arc<Module> {
        let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/recordings/c_values_O0/program");
        Arc::new(Module::open_file(&program, 0x1000).expect("program"))
    }

    /// Each reader has one table per module, its own, made on first use
    /// and gone with the module.
    #[test]
    fn a_readers_tables_are_its_own_one_per_module() {
        let module = module();
        let probe = TypeTables::new();
        let other = TypeTables::new();
        assert!(!probe.has_table_for(&module));
        let table = probe.table_for(&module);
        assert!(probe.has_table_for(&module));
        assert!(Arc::ptr_eq(&table, &probe.table_for(&module)));
        assert!(!Arc::ptr_eq(&table, &other.table_for(&module)));
        assert!(!Arc::ptr_eq(
            &table,
            &TypeTables::shared().table_for(&module)
        ));
        // Locking one reader's table leaves every other's free.
        let _held = table.lock().expect("lock");
        assert!(other.table_for(&module).try_lock().is_ok());
        assert!(TypeTables::shared().table_for(&module).try_lock().is_ok());
        let weak = Arc::downgrade(&module);
        drop(module);
        assert!(
            weak.upgrade().is_none(),
            "the tables do not keep the module"
        );
    }

    #[test]
    fn rust_names_are_shortened_for_reading() {
        assert_eq!(
            rust_display_name("Vec<alloc::string::String, alloc::alloc::Global>"),
            "Vec<String>"
        );
        assert_eq!(
            rust_display_name("Option<alloc::boxed::Box<u8, alloc::alloc::Global>>"),
            "Option<Box<u8>>"
        );
        assert_eq!(
            rust_display_name(
                "HashMap<alloc::string::String, u32, std::hash::random::RandomState, alloc::alloc::Global>"
            ),
            "HashMap<String, u32>"
        );
        assert_eq!(
            rust_display_name("&my_crate::cache::Entry"),
            "&my_crate::cache::Entry"
        );
        assert_eq!(rust_display_name("(u8, &str)"), "(u8, &str)");
    }

    #[test]
    fn cpp_names_drop_default_arguments() {
        use super::cpp_display_name;
        assert_eq!(
            cpp_display_name("vector<int, std::allocator<int> >"),
            "vector<int>"
        );
        assert_eq!(
            cpp_display_name(
                "map<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, int, std::less<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > >, std::allocator<std::pair<const std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, int> > >"
            ),
            "map<std::string, int>"
        );
        assert_eq!(
            cpp_display_name("unique_ptr<shop::Widget, std::default_delete<shop::Widget> >"),
            "unique_ptr<shop::Widget>"
        );
        assert_eq!(cpp_display_name("Pair<long int>"), "Pair<long int>");
        assert_eq!(cpp_display_name("int (*)(int)"), "int (*)(int)");
    }
}
