//! Where library types keep their data: the element pointer and length of
//! Rust slices, `Vec`, `String`, `&str` and libstdc++'s `std::vector` and
//! `std::string`, found by field name and template parameter (never by fixed
//! offsets), so they survive compiler and library versions. Shared by the
//! pretty printers and by expression indexing, `len()` and string
//! comparison. Anything that does not match returns `None`, and callers fall
//! back to the raw struct.

use crate::debuginfo::Module;
use crate::debuginfo::types::{BaseEncoding, Language, MemberOffset, TypeKey, TypeKind, TypeTable};

/// How deep nested wrappers (`RawVec` → `RawVecInner` → `Unique` →
/// `NonNull`) are searched for a pointer.
const MAX_WRAPPER_DEPTH: usize = 8;

/// Where the elements of a sequence are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementAccess {
    /// Offset of the data pointer inside the object.
    pub pointer_offset: u64,
    /// The element type.
    pub element: TypeKey,
    /// Bytes from one element to the next.
    pub stride: u64,
}

/// Where a sequence's length is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthField {
    /// An integer field at this offset, of this size.
    Count { offset: u64, size: u64 },
    /// The distance between two pointers, in elements (`std::vector`).
    PointerRange {
        start: u64,
        finish: u64,
        stride: u64,
    },
}

/// A string-like value's data and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringKind {
    /// A C `char *` (NUL-terminated).
    CharPointer,
    /// A C `char[N]`.
    CharArray { len: u64 },
    /// A pointer and a byte length inside the object (`&str`, `String`,
    /// libstdc++'s `std::string`).
    Counted {
        pointer_offset: u64,
        length_offset: u64,
    },
    /// libc++'s `std::string`: a 24-byte representation at `rep` that is
    /// either long (pointer and size at `long_data` / `long_size`) or short
    /// (the characters inline at `short_data`), told apart by a flag bit.
    /// Offsets are from the object's start. `alternate` is libc++'s
    /// alternate layout (data pointer first, flag in the last byte).
    Libcxx {
        rep: u64,
        long_size: u64,
        long_data: u64,
        short_data: u64,
        alternate: bool,
    },
}

/// Where the characters of a libc++ string are, from its representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibcxxChars {
    /// Out of line: `len` bytes at `address`.
    Long { address: u64, len: u64 },
    /// Inline: `len` bytes at `offset` from the object's start.
    Short { offset: u64, len: u64 },
}

/// Decodes a libc++ string's 24 representation bytes (read at `rep`) of a
/// [`StringKind::Libcxx`] into where its characters are. Little-endian
/// (x86-64) only: the flag is the low bit of the first byte (standard
/// layout) or the high bit of the last byte (alternate layout).
pub fn libcxx_chars(kind: StringKind, rep_bytes: &[u8]) -> Option<LibcxxChars> {
    let StringKind::Libcxx {
        rep,
        long_size,
        long_data,
        short_data,
        alternate,
    } = kind
    else {
        return None;
    };
    if rep_bytes.len() < 24 {
        return None;
    }
    let word = |offset: u64| -> Option<u64> {
        let start = usize::try_from(offset.checked_sub(rep)?).ok()?;
        let bytes: [u8; 8] = rep_bytes.get(start..start + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    let (is_long, short_len) = if alternate {
        (rep_bytes[23] & 0x80 != 0, u64::from(rep_bytes[23] & 0x7f))
    } else {
        (rep_bytes[0] & 1 != 0, u64::from(rep_bytes[0] >> 1))
    };
    if is_long {
        Some(LibcxxChars::Long {
            address: word(long_data)?,
            len: word(long_size)?,
        })
    } else {
        // At most 22 characters fit inline; more means the bytes are not a
        // string's.
        (short_len <= 23).then_some(LibcxxChars::Short {
            offset: short_data,
            len: short_len,
        })
    }
}

/// A member named `name` of the aggregate at `key`, searched in base
/// classes and anonymous members too (libc++ keeps its data in
/// `__compressed_pair` bases and anonymous unions).
pub fn member_anywhere(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    name: &str,
) -> Option<(u64, TypeKey)> {
    let mut queue = std::collections::VecDeque::from([(key, 0u64)]);
    let mut visited = 0;
    while let Some((current, base_offset)) = queue.pop_front() {
        visited += 1;
        if visited > 64 {
            return None;
        }
        let (_, ty) = types.strip(module, current)?;
        let Some(aggregate) = ty.aggregate() else {
            continue;
        };
        for member in &aggregate.members {
            let (MemberOffset::Bytes(offset), Some(member_type)) = (member.offset, member.ty)
            else {
                continue;
            };
            if member.name.as_deref() == Some(name) {
                return Some((base_offset + offset, member_type));
            }
            if member.is_base || member.name.is_none() {
                queue.push_back((member_type, base_offset + offset));
            }
        }
    }
    None
}

/// The layout of a libc++ `std::string` (`std::__1::basic_string<char>`).
fn libcxx_string(types: &mut TypeTable, module: &Module, key: TypeKey) -> Option<StringKind> {
    let (r_offset, r_type) = member_anywhere(types, module, key, "__r_")?;
    let (value_offset, rep_type) = member_anywhere(types, module, r_type, "__value_")?;
    let rep = r_offset + value_offset;
    let (long_offset, long_type) = member_anywhere(types, module, rep_type, "__l")?;
    let (short_offset, short_type) = member_anywhere(types, module, rep_type, "__s")?;
    let (size_in_long, _) = member_anywhere(types, module, long_type, "__size_")?;
    let (data_in_long, _) = member_anywhere(types, module, long_type, "__data_")?;
    let (data_in_short, _) = member_anywhere(types, module, short_type, "__data_")?;
    if types.size_of(module, rep_type) != Some(24) {
        return None;
    }
    Some(StringKind::Libcxx {
        rep,
        long_size: rep + long_offset + size_in_long,
        long_data: rep + long_offset + data_in_long,
        short_data: rep + short_offset + data_in_short,
        alternate: data_in_long == 0,
    })
}

/// The member named `name` of the aggregate at `key` (typedefs looked
/// through), with its byte offset.
pub fn member(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    name: &str,
) -> Option<(u64, Option<TypeKey>)> {
    let (_, ty) = types.strip(module, key)?;
    let aggregate = ty.aggregate()?;
    let found = aggregate
        .members
        .iter()
        .find(|m| m.name.as_deref() == Some(name))?;
    match found.offset {
        MemberOffset::Bytes(offset) => Some((offset, found.ty)),
        MemberOffset::Dynamic => None,
    }
}

/// Follows a path of member names, searching base classes at each step
/// (libstdc++ keeps `_M_start` in a base of `_M_impl`).
pub fn member_path(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    path: &[&str],
) -> Option<(u64, TypeKey)> {
    let mut offset = 0;
    let mut current = key;
    for name in path {
        let (inner_offset, ty) = member_or_base(types, module, current, name, 0)?;
        offset += inner_offset;
        current = ty?;
    }
    Some((offset, current))
}

fn member_or_base(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    name: &str,
    depth: usize,
) -> Option<(u64, Option<TypeKey>)> {
    if depth > MAX_WRAPPER_DEPTH {
        return None;
    }
    if let Some(found) = member(types, module, key, name) {
        return Some(found);
    }
    let (_, ty) = types.strip(module, key)?;
    let bases: Vec<(u64, TypeKey)> = ty
        .aggregate()?
        .members
        .iter()
        .filter(|m| m.is_base)
        .filter_map(|m| match (m.offset, m.ty) {
            (MemberOffset::Bytes(offset), Some(ty)) => Some((offset, ty)),
            _ => None,
        })
        .collect();
    for (base_offset, base) in bases {
        if let Some((offset, ty)) = member_or_base(types, module, base, name, depth + 1) {
            return Some((base_offset + offset, ty));
        }
    }
    None
}

/// The offset of the first raw pointer inside nested single-purpose
/// wrappers (`Unique { pointer: NonNull { pointer: *const T } }`), trying
/// the named member first.
pub fn pointer_inside(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    depth: usize,
) -> Option<(u64, TypeKey)> {
    if depth > MAX_WRAPPER_DEPTH {
        return None;
    }
    let (stripped_key, ty) = types.strip(module, key)?;
    match &ty.kind {
        TypeKind::Pointer(_) => Some((0, stripped_key)),
        TypeKind::Aggregate(aggregate) => {
            let mut members: Vec<(u64, TypeKey, bool)> = aggregate
                .members
                .iter()
                .filter_map(|m| match (m.offset, m.ty) {
                    (MemberOffset::Bytes(offset), Some(ty)) => {
                        let preferred = matches!(
                            m.name.as_deref(),
                            Some("ptr" | "pointer" | "_M_ptr" | "_M_p")
                        );
                        Some((offset, ty, preferred))
                    }
                    _ => None,
                })
                .collect();
            members.sort_by_key(|(_, _, preferred)| !preferred);
            for (offset, ty, _) in members {
                if let Some((inner, pointer)) = pointer_inside(types, module, ty, depth + 1) {
                    return Some((offset + inner, pointer));
                }
            }
            None
        }
        _ => None,
    }
}

/// The integer inside nested newtypes (`UsizeNoHighBit { __0: usize }`).
pub fn integer_inside(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    depth: usize,
) -> Option<(u64, u64)> {
    if depth > MAX_WRAPPER_DEPTH {
        return None;
    }
    let (_, ty) = types.strip(module, key)?;
    match &ty.kind {
        TypeKind::Base(BaseEncoding::Signed | BaseEncoding::Unsigned) => Some((0, ty.size?)),
        TypeKind::Aggregate(aggregate) if aggregate.members.len() == 1 => {
            let only = &aggregate.members[0];
            let MemberOffset::Bytes(offset) = only.offset else {
                return None;
            };
            let (inner, size) = integer_inside(types, module, only.ty?, depth + 1)?;
            Some((offset + inner, size))
        }
        _ => None,
    }
}

/// The template type parameter `name` of the aggregate at `key`, or its
/// first type parameter when `name` is empty.
pub fn template_type(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    name: &str,
) -> Option<TypeKey> {
    let (_, ty) = types.strip(module, key)?;
    let aggregate = ty.aggregate()?;
    aggregate
        .template_params
        .iter()
        .filter(|p| p.ty.is_some())
        .find(|p| name.is_empty() || p.name == name)
        .and_then(|p| p.ty)
}

fn short_name_starts(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    prefix: &str,
) -> Option<(TypeKey, Language)> {
    let (stripped, ty) = types.strip(module, key)?;
    if ty.short_name.starts_with(prefix) && ty.aggregate().is_some() {
        Some((stripped, ty.language))
    } else {
        None
    }
}

/// The payload of a Rust `Option<T>`'s `Some` (offset from the option's
/// start, and `T`); the option is `None` when it does not hold that arm.
pub fn option_payload(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(u64, TypeKey)> {
    let (_, ty) = types.strip(module, key)?;
    let part = ty.aggregate()?.variant_part.clone()?;
    let arm = part
        .variants
        .iter()
        .flat_map(|v| v.members.iter())
        .find(|m| m.name.as_deref() == Some("Some"))?
        .clone();
    let MemberOffset::Bytes(arm_offset) = arm.offset else {
        return None;
    };
    let (field_offset, field) = member(types, module, arm.ty?, "__0")?;
    Some((arm_offset + field_offset, field?))
}

/// Rust `&[T]` / `&mut [T]` / `Box<[T]>`: `{ data_ptr, length }`.
pub fn rust_slice(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(ElementAccess, LengthField)> {
    let (stripped, ty) = types.strip(module, key)?;
    if ty.language != Language::Rust
        || !(ty.short_name.starts_with("&[")
            || ty.short_name.starts_with("&mut [")
            || ty.short_name.starts_with("*const [")
            || ty.short_name.starts_with("*mut [")
            || ty.short_name.starts_with("Box<["))
    {
        return None;
    }
    let (pointer_offset, pointer_type) = member(types, module, stripped, "data_ptr")?;
    let (length_offset, _) = member(types, module, stripped, "length")?;
    let element = match types.strip(module, pointer_type?)?.1.kind {
        TypeKind::Pointer(Some(element)) => element,
        _ => return None,
    };
    let stride = types.size_of(module, element)?;
    Some((
        ElementAccess {
            pointer_offset,
            element,
            stride,
        },
        LengthField::Count {
            offset: length_offset,
            size: 8,
        },
    ))
}

/// Rust `Vec<T>`: the pointer inside `buf`, `len`, element type `T`.
pub fn rust_vec(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(ElementAccess, LengthField)> {
    let (stripped, language) = short_name_starts(types, module, key, "Vec<")?;
    if language != Language::Rust {
        return None;
    }
    let (buf_offset, buf_type) = member(types, module, stripped, "buf")?;
    let (length_offset, length_type) = member(types, module, stripped, "len")?;
    let element = template_type(types, module, stripped, "T")?;
    let (pointer_offset, _) = pointer_inside(types, module, buf_type?, 0)?;
    let stride = types.size_of(module, element)?;
    let size = length_type
        .and_then(|t| types.size_of(module, t))
        .unwrap_or(8);
    Some((
        ElementAccess {
            pointer_offset: buf_offset + pointer_offset,
            element,
            stride,
        },
        LengthField::Count {
            offset: length_offset,
            size,
        },
    ))
}

/// libstdc++ `std::vector<T>`: `_M_impl._M_start` / `_M_finish`, element
/// type from `_Tp` (or the start pointer's pointee).
pub fn std_vector(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(ElementAccess, LengthField)> {
    let (stripped, language) = short_name_starts(types, module, key, "vector<")?;
    if language != Language::Cpp {
        return None;
    }
    // libstdc++ `_M_impl._M_start`/`_M_finish`, libc++ `__begin_`/`__end_`.
    let ((start, start_type), (finish, _)) =
        match member_path(types, module, stripped, &["_M_impl", "_M_start"]) {
            Some(start) => (
                start,
                member_path(types, module, stripped, &["_M_impl", "_M_finish"])?,
            ),
            None => (
                member_path(types, module, stripped, &["__begin_"])?,
                member_path(types, module, stripped, &["__end_"])?,
            ),
        };
    let element = template_type(types, module, stripped, "_Tp").or_else(|| {
        match types.strip(module, start_type)?.1.kind {
            TypeKind::Pointer(Some(element)) => Some(element),
            _ => None,
        }
    })?;
    // vector<bool> packs bits; it has no element array to index.
    if let Some((_, ty)) = types.strip(module, element)
        && matches!(ty.kind, TypeKind::Base(BaseEncoding::Bool))
    {
        return None;
    }
    let stride = types.size_of(module, element)?.max(1);
    Some((
        ElementAccess {
            pointer_offset: start,
            element,
            stride,
        },
        LengthField::PointerRange {
            start,
            finish,
            stride,
        },
    ))
}

/// Element access for any indexable library sequence.
pub fn element_access(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<ElementAccess> {
    rust_slice(types, module, key)
        .or_else(|| rust_vec(types, module, key))
        .or_else(|| std_vector(types, module, key))
        .map(|(access, _)| access)
}

/// True for the C `char` family (`char`, `signed`/`unsigned char`, their
/// typedefs such as `uint8_t`, qualified or not): one-byte character
/// encodings, whose pointers are strings.
pub fn is_c_char(types: &mut TypeTable, module: &Module, key: TypeKey) -> bool {
    types.strip(module, key).is_some_and(|(_, t)| {
        t.size == Some(1)
            && matches!(
                t.kind,
                TypeKind::Base(BaseEncoding::SignedChar | BaseEncoding::UnsignedChar)
            )
    })
}

/// How to compare the value at `key` with a string literal, if it is
/// string-like.
pub fn string_kind(types: &mut TypeTable, module: &Module, key: TypeKey) -> Option<StringKind> {
    let (stripped, ty) = types.strip(module, key)?;
    let is_char = |types: &mut TypeTable, key: TypeKey| is_c_char(types, module, key);
    match &ty.kind {
        TypeKind::Pointer(Some(pointee))
            if ty.language != Language::Rust && is_char(types, *pointee) =>
        {
            Some(StringKind::CharPointer)
        }
        TypeKind::Array {
            element: Some(element),
            dims,
        } if dims.len() == 1 && is_char(types, *element) => {
            Some(StringKind::CharArray { len: dims[0]? })
        }
        TypeKind::Reference {
            target: Some(target),
            ..
        } => string_kind(types, module, *target),
        TypeKind::Aggregate(_) => {
            if ty.language == Language::Rust
                && (ty.short_name == "&str" || ty.short_name == "&mut str")
            {
                let (pointer_offset, _) = member(types, module, stripped, "data_ptr")?;
                let (length_offset, _) = member(types, module, stripped, "length")?;
                return Some(StringKind::Counted {
                    pointer_offset,
                    length_offset,
                });
            }
            if ty.language == Language::Rust && ty.short_name == "String" {
                let (vec_offset, vec_type) = member(types, module, stripped, "vec")?;
                let (access, LengthField::Count { offset, .. }) =
                    rust_vec(types, module, vec_type?)?
                else {
                    return None;
                };
                return Some(StringKind::Counted {
                    pointer_offset: vec_offset + access.pointer_offset,
                    length_offset: vec_offset + offset,
                });
            }
            if ty.language == Language::Cpp && ty.short_name.starts_with("basic_string<char") {
                if member(types, module, stripped, "__r_").is_some() {
                    return libcxx_string(types, module, stripped);
                }
                let (pointer_offset, _) =
                    member_path(types, module, stripped, &["_M_dataplus", "_M_p"])?;
                let (length_offset, _) =
                    member_path(types, module, stripped, &["_M_string_length"])?;
                return Some(StringKind::Counted {
                    pointer_offset,
                    length_offset,
                });
            }
            None
        }
        _ => None,
    }
}

/// Where the element count of a container is, for `len()`.
pub fn length_field(types: &mut TypeTable, module: &Module, key: TypeKey) -> Option<LengthField> {
    if let Some((_, length)) = rust_slice(types, module, key)
        .or_else(|| rust_vec(types, module, key))
        .or_else(|| std_vector(types, module, key))
    {
        return Some(length);
    }
    if let Some(StringKind::Counted { length_offset, .. }) = string_kind(types, module, key) {
        return Some(LengthField::Count {
            offset: length_offset,
            size: 8,
        });
    }
    let (stripped, ty) = types.strip(module, key)?;
    let name = ty.short_name.clone();
    let language = ty.language;
    let path: &[&str] = match language {
        Language::Rust if name.starts_with("HashMap<") || name.starts_with("HashSet<") => {
            return hashbrown_items(types, module, stripped);
        }
        Language::Rust if name.starts_with("BTreeMap<") => &["length"],
        Language::Rust if name.starts_with("BTreeSet<") => &["map", "length"],
        Language::Rust if name.starts_with("VecDeque<") => &["len"],
        Language::Rust if name.starts_with("IntoIter<") => {
            return rust_into_iter_remaining(types, module, stripped);
        }
        Language::Cpp
            if name.starts_with("map<")
                || name.starts_with("set<")
                || name.starts_with("multimap<")
                || name.starts_with("multiset<") =>
        {
            if member(types, module, stripped, "__tree_").is_some() {
                &["__tree_", "__pair3_", "__value_"]
            } else {
                &["_M_t", "_M_impl", "_M_node_count"]
            }
        }
        Language::Cpp
            if name.starts_with("unordered_map<") || name.starts_with("unordered_set<") =>
        {
            if member(types, module, stripped, "__table_").is_some() {
                &["__table_", "__p2_", "__value_"]
            } else {
                &["_M_h", "_M_element_count"]
            }
        }
        _ => return None,
    };
    let (offset, field) = member_path(types, module, stripped, path)?;
    let (inner, size) = integer_inside(types, module, field, 0)?;
    Some(LengthField::Count {
        offset: offset + inner,
        size,
    })
}

/// `HashMap { base: hashbrown::HashMap { table: RawTable { table:
/// RawTableInner { items, .. } } } }` (and `HashSet { base: { map: … } }`).
pub fn hashbrown_items(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<LengthField> {
    let (inner_offset, inner) = hashbrown_inner(types, module, key)?;
    let (items, items_type) = member(types, module, inner, "items")?;
    let size = items_type
        .and_then(|t| types.size_of(module, t))
        .unwrap_or(8);
    Some(LengthField::Count {
        offset: inner_offset + items,
        size,
    })
}

/// The `RawTableInner` of a std `HashMap`/`HashSet` and its offset, plus
/// nothing else: callers read `ctrl`, `bucket_mask`, `items` from it.
pub fn hashbrown_inner(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(u64, TypeKey)> {
    let (raw_offset, raw) = hashbrown_raw_table(types, module, key)?;
    let (inner_offset, inner) = member(types, module, raw, "table")?;
    Some((raw_offset + inner_offset, inner?))
}

/// The `RawTable<T>` of a std `HashMap`/`HashSet` (carries `T`).
pub fn hashbrown_raw_table(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<(u64, TypeKey)> {
    let (stripped, _) = types.strip(module, key)?;
    let (base_offset, base) = member(types, module, stripped, "base")?;
    let mut offset = base_offset;
    let mut current = base?;
    // HashSet's base is a hashbrown HashSet { map: hashbrown HashMap }.
    if let Some((map_offset, map)) = member(types, module, current, "map") {
        offset += map_offset;
        current = map?;
    }
    let (table_offset, table) = member(types, module, current, "table")?;
    Some((offset + table_offset, table?))
}

/// True when `len()` knows how to count the value at `key`.
pub fn has_length(types: &mut TypeTable, module: &Module, key: TypeKey) -> bool {
    length_field(types, module, key).is_some()
        || matches!(
            string_kind(types, module, key),
            Some(StringKind::Libcxx { .. })
        )
}

/// Where a Rust smart pointer's target is: the raw pointer's offset in the
/// smart pointer, and the target's offset and type in what it points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmartPointer {
    /// Offset of the raw pointer inside the smart pointer object.
    pub pointer_offset: u64,
    /// Offset of the target inside the pointed-to allocation (`RcInner`'s
    /// `value`, `ArcInner`'s `data`; 0 for `Box`).
    pub target_offset: u64,
    /// The target type `T`.
    pub target: TypeKey,
}

/// `Box<T>`, `Rc<T>`, `Arc<T>`, and wrappers whose only sized field leads
/// to one (actix's `Data<T>(Arc<T>)`): what `*x` and auto-deref reach, as
/// Rust's `Deref` would. Fat boxes (`Box<[T]>`, `Box<dyn Trait>`) are not
/// smart pointers here: their target has no single type.
pub fn smart_pointer(types: &mut TypeTable, module: &Module, key: TypeKey) -> Option<SmartPointer> {
    smart_pointer_depth(types, module, key, 0)
}

fn smart_pointer_depth(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
    depth: usize,
) -> Option<SmartPointer> {
    if depth > MAX_WRAPPER_DEPTH {
        return None;
    }
    let (stripped, ty) = types.strip(module, key)?;
    if ty.language != Language::Rust {
        return None;
    }
    let aggregate = ty.aggregate()?.clone();
    if aggregate.variant_part.is_some() {
        return None;
    }
    let name = ty.short_name.clone();
    let thin = ty.size == Some(8);
    let pointee_of = |types: &mut TypeTable, pointer: TypeKey| match types
        .strip(module, pointer)
        .map(|(_, t)| t.kind.clone())
    {
        Some(TypeKind::Pointer(Some(pointee))) => Some(pointee),
        _ => None,
    };
    if name.starts_with("Box<") && thin {
        let (pointer_offset, pointer) = pointer_inside(types, module, stripped, 0)?;
        let target = pointee_of(types, pointer)?;
        return Some(SmartPointer {
            pointer_offset,
            target_offset: 0,
            target,
        });
    }
    if (name.starts_with("Rc<") || name.starts_with("Arc<")) && thin {
        let (pointer_offset, pointer) = pointer_inside(types, module, stripped, 0)?;
        let inner = pointee_of(types, pointer)?;
        let (target_offset, target) = member(types, module, inner, "value")
            .or_else(|| member(types, module, inner, "data"))?;
        return Some(SmartPointer {
            pointer_offset,
            target_offset,
            target: target?,
        });
    }
    // A wrapper: exactly one member that takes space, itself a smart pointer.
    let mut sized = Vec::new();
    for member in aggregate
        .members
        .iter()
        .filter(|m| !m.is_base || m.ty.is_some())
    {
        let Some(member_type) = member.ty else {
            continue;
        };
        if types.size_of(module, member_type) != Some(0) {
            sized.push((member.offset, member_type));
        }
    }
    let [(MemberOffset::Bytes(offset), inner)] = sized.as_slice() else {
        return None;
    };
    let found = smart_pointer_depth(types, module, *inner, depth + 1)?;
    Some(SmartPointer {
        pointer_offset: offset + found.pointer_offset,
        ..found
    })
}

/// `vec::IntoIter<T>`: the elements not yet taken, `ptr..end` (for a
/// zero-sized `T`, `end` is `ptr` plus the count in bytes, which a stride
/// of 1 counts right).
fn rust_into_iter_remaining(
    types: &mut TypeTable,
    module: &Module,
    key: TypeKey,
) -> Option<LengthField> {
    let (ptr_offset, ptr_type) = member(types, module, key, "ptr")?;
    let (inner, _) = pointer_inside(types, module, ptr_type?, 0)?;
    let (end_offset, _) = member(types, module, key, "end")?;
    let element = template_type(types, module, key, "T")?;
    let stride = types.size_of(module, element)?.max(1);
    Some(LengthField::PointerRange {
        start: ptr_offset + inner,
        finish: end_offset,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: StringKind = StringKind::Libcxx {
        rep: 0,
        long_size: 8,
        long_data: 16,
        short_data: 1,
        alternate: false,
    };
    const ALTERNATE: StringKind = StringKind::Libcxx {
        rep: 0,
        long_size: 8,
        long_data: 0,
        short_data: 0,
        alternate: true,
    };

    #[test]
    fn libcxx_short_and_long_strings_both_layouts() {
        // Standard layout, short: size << 1 in the first byte, flag clear.
        let mut short = [0u8; 24];
        short[0] = 5 << 1;
        short[1..6].copy_from_slice(b"short");
        assert_eq!(
            libcxx_chars(STANDARD, &short),
            Some(LibcxxChars::Short { offset: 1, len: 5 })
        );
        // Standard layout, long: flag in the low bit of the capacity word.
        let mut long = [0u8; 24];
        long[..8].copy_from_slice(&65u64.to_le_bytes());
        long[8..16].copy_from_slice(&49u64.to_le_bytes());
        long[16..24].copy_from_slice(&0x5555_0000u64.to_le_bytes());
        assert_eq!(
            libcxx_chars(STANDARD, &long),
            Some(LibcxxChars::Long {
                address: 0x5555_0000,
                len: 49
            })
        );
        // Alternate layout: data first, size (and flag bit 7) in the last byte.
        let mut short = [0u8; 24];
        short[..3].copy_from_slice(b"abc");
        short[23] = 3;
        assert_eq!(
            libcxx_chars(ALTERNATE, &short),
            Some(LibcxxChars::Short { offset: 0, len: 3 })
        );
        let mut long = [0u8; 24];
        long[..8].copy_from_slice(&0x7000u64.to_le_bytes());
        long[8..16].copy_from_slice(&30u64.to_le_bytes());
        long[16..24].copy_from_slice(&(48u64 | 1 << 63).to_le_bytes());
        assert_eq!(
            libcxx_chars(ALTERNATE, &long),
            Some(LibcxxChars::Long {
                address: 0x7000,
                len: 30
            })
        );
        // Garbage: a short size no inline buffer holds; too few bytes.
        let mut garbage = [0u8; 24];
        garbage[0] = 60 << 1;
        assert_eq!(libcxx_chars(STANDARD, &garbage), None);
        assert_eq!(libcxx_chars(STANDARD, &[0u8; 8]), None);
    }
}
