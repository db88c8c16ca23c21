//! Pretty printers for library types: Rust std (`String`, `&str`, slices,
//! `Vec`, `VecDeque`, `Box<dyn _>`, `Rc`, `Arc`, `Cell`, `RefCell`,
//! `HashMap`/`HashSet`, `BTreeMap`/`BTreeSet`, tuples) and libstdc++
//! (`std::string`, `std::vector`, `std::map`/`set`, `std::unordered_map`/
//! `set`, `std::shared_ptr`, `std::unique_ptr`, `std::optional`).
//!
//! A printer recognises its type by name and then finds fields by name and
//! element types by template parameter; when anything does not match it
//! returns `None` and the generic struct view is shown instead, never
//! garbage. Every walk is bounded by the limits, a node budget and sanity
//! checks on lengths read from the target (uninitialised containers must
//! not make liveprobe read gigabytes or loop).

use std::sync::Arc;

use crate::debuginfo::types::{Language, MemberOffset, Type, TypeKey, TypeKind};

use super::decode::{Decoder, Src, offset_src};
use super::layout::{self, LengthField};
use super::render::AGGREGATE_SUMMARY;
use super::{Corruption, MAX_NODES, NullKind, Unavailable, Unsupported, Value, quote_bytes};

/// Most bytes read in one piece for a container's elements.
const MAX_ELEMENT_READ: u64 = 1 << 20;

/// Largest hash table scanned (buckets); bigger ones are shown by count.
const MAX_BUCKETS: u64 = 1 << 24;

/// Most tree nodes visited for one ordered map.
const MAX_TREE_NODES: usize = 10_000;

/// The printed value, when a printer recognises the type.
pub(crate) fn pretty(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    match ty.language {
        Language::Rust => rust(decoder, name, key, ty, src, depth),
        Language::Cpp => cpp(decoder, name, key, ty, src, depth),
        _ => None,
    }
}

/// Reads a pointer-sized field at `offset` from `src`.
/// Where walking a node-based container starts: its summary value, length
/// and first node; or the finished value when there is nothing to walk (a
/// header that cannot be read, no elements, no depth left).
enum NodeWalk {
    Walk(Value, u64, u64),
    Done(Value),
}

/// Reads a node-based container's length and first node at the offsets
/// `(count_at, first_at)` of `src`; `(name, type name, kind)` label it.
fn node_container_start(
    decoder: &Decoder<'_>,
    src: Src<'_>,
    (name, type_name, kind): (&str, String, &str),
    (count_at, first_at): (u64, u64),
    depth: u32,
) -> NodeWalk {
    let (count, first) = match (
        read_word(decoder, src, count_at),
        read_word(decoder, src, first_at),
    ) {
        (Ok(count), Ok(first)) => (count, first),
        (Err(reason), _) | (_, Err(reason)) => {
            return NodeWalk::Done(Value::unavailable(name, type_name, reason));
        }
    };
    let mut value = Value::leaf(name, type_name, format!("{kind}(len {count})"));
    if count == 0 {
        value.children = Some(Vec::new());
        return NodeWalk::Done(value);
    }
    if depth == 0 {
        value.truncated = true;
        return NodeWalk::Done(value);
    }
    NodeWalk::Walk(value, count, first)
}

fn read_word(decoder: &Decoder<'_>, src: Src<'_>, offset: u64) -> Result<u64, Unavailable> {
    decoder
        .read_uint(offset_src(src, offset), 8)
        .map(|v| v as u64)
}

fn read_sized(
    decoder: &Decoder<'_>,
    src: Src<'_>,
    offset: u64,
    size: u64,
) -> Result<u64, Unavailable> {
    decoder
        .read_uint(offset_src(src, offset), size.clamp(1, 8) as usize)
        .map(|v| v as u64)
}

/// `"text"` from `len` bytes at `address`, cut at `max_string`.
fn text_at(
    decoder: &Decoder<'_>,
    address: u64,
    len: u64,
    language: Language,
) -> Result<(String, bool), Unavailable> {
    let max = u64::from(decoder.limits().max_string);
    let shown = len.min(max);
    if shown > 0 && address == 0 {
        return Err(Unavailable::null(NullKind::Pointer));
    }
    let bytes = decoder.read(Src::Memory(address), shown as usize)?;
    let mut text = quote_bytes(&bytes, language);
    if len > max {
        text.push_str("...");
    }
    Ok((text, len > max))
}

fn text_value(
    decoder: &Decoder<'_>,
    name: &str,
    type_name: String,
    address: u64,
    len: u64,
    language: Language,
) -> Value {
    match text_at(decoder, address, len, language) {
        Ok((text, truncated)) => {
            let mut value = Value::leaf(name, type_name, text);
            value.truncated = truncated;
            value
        }
        Err(reason) => Value::unavailable(name, type_name, reason),
    }
}

/// A sequence of `len` elements of `element` at `address`, `stride` apart,
/// with the summary `summary`.
#[allow(clippy::too_many_arguments)]
fn sequence(
    decoder: &mut Decoder<'_>,
    name: &str,
    type_name: String,
    summary: String,
    element: TypeKey,
    address: u64,
    stride: u64,
    len: u64,
    depth: u32,
) -> Value {
    let mut value = Value::leaf(name, type_name, summary);
    if len == 0 {
        value.children = Some(Vec::new());
        return value;
    }
    if depth == 0 {
        value.truncated = true;
        return value;
    }
    if address == 0 {
        return Value::unavailable(name, value.type_name, Unavailable::null(NullKind::Pointer));
    }
    let shown = len.min(u64::from(decoder.limits().max_items));
    let total = stride.saturating_mul(shown);
    let buffer = if total <= MAX_ELEMENT_READ {
        match decoder.read(Src::Memory(address), total as usize) {
            Ok(bytes) => Some(bytes),
            Err(reason) => return Value::unavailable(name, value.type_name, reason),
        }
    } else {
        None
    };
    let mut children = Vec::with_capacity(shown as usize);
    for i in 0..shown {
        if !decoder.spend_node() {
            value.truncated = true;
            break;
        }
        let child_name = format!("[{i}]");
        let child = match &buffer {
            Some(bytes) => {
                let view = super::decode::View::new(bytes, &[], Some(address));
                decoder.value(
                    &child_name,
                    Some(element),
                    offset_src(Src::View(view), i * stride),
                    depth - 1,
                )
            }
            None => decoder.value(
                &child_name,
                Some(element),
                Src::Memory(address.wrapping_add(i.wrapping_mul(stride))),
                depth - 1,
            ),
        };
        children.push(child);
    }
    value.truncated |= shown < len;
    value.children = Some(children);
    value
}

/// The value of `inner` at `src`, shown under `name` with the wrapper's
/// type name (for transparent wrappers such as `Cell`).
fn transparent(
    decoder: &mut Decoder<'_>,
    name: &str,
    type_name: &str,
    inner: Option<TypeKey>,
    src: Src<'_>,
    depth: u32,
) -> Value {
    let mut value = decoder.value(name, inner, src, depth);
    value.type_name = type_name.to_string();
    value
}

/// A pointee expanded under a summary, flattening aggregates (as pointers
/// are shown).
fn pointee(
    decoder: &mut Decoder<'_>,
    mut value: Value,
    target: Option<TypeKey>,
    address: u64,
    depth: u32,
) -> Value {
    if depth == 0 || address == 0 {
        value.truncated = depth == 0 && address != 0;
        return value;
    }
    if decoder.enter_pointer(address) {
        let inner_name = format!("*{}", value.name);
        let inner = decoder.value(&inner_name, target, Src::Memory(address), depth - 1);
        decoder.leave_pointer();
        let flatten = inner.unavailable.is_none() && inner.value == AGGREGATE_SUMMARY;
        if flatten {
            value.children = inner.children;
            value.truncated = inner.truncated;
        } else {
            value.children = Some(vec![inner]);
        }
    } else {
        value
            .value
            .push_str(" (cycle: points to an enclosing value)");
    }
    value
}

/// Tuples whose fields are all short scalars read as `(1, "two", 3.5)`.
fn compact_tuple(mut value: Value) -> Value {
    let Some(children) = &value.children else {
        return value;
    };
    let all_leaves = children
        .iter()
        .all(|c| c.children.is_none() && c.unavailable.is_none() && !c.truncated);
    let inline_len: usize = children.iter().map(|c| c.value.len() + 2).sum();
    if all_leaves && !value.truncated && inline_len <= 80 {
        let parts: Vec<&str> = children.iter().map(|c| c.value.as_str()).collect();
        value.value = format!("({})", parts.join(", "));
        value.children = None;
    }
    value
}

fn rust(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let short = ty.short_name.trim_start_matches("alloc::boxed::");
    let type_name = ty.name.clone();
    let module = decoder.module();
    if short == "&str"
        || short == "&mut str"
        || short.starts_with("Box<str,")
        || short == "Box<str>"
    {
        let (pointer, _) = layout::member(decoder.types(), module, key, "data_ptr")?;
        let (length, _) = layout::member(decoder.types(), module, key, "length")?;
        return Some(
            match (
                read_word(decoder, src, pointer),
                read_word(decoder, src, length),
            ) {
                (Ok(address), Ok(len)) => {
                    text_value(decoder, name, type_name, address, len, Language::Rust)
                }
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if short == "String" {
        let Some(layout::StringKind::Counted {
            pointer_offset,
            length_offset,
        }) = layout::string_kind(decoder.types(), module, key)
        else {
            return None;
        };
        return Some(
            match (
                read_word(decoder, src, pointer_offset),
                read_word(decoder, src, length_offset),
            ) {
                (Ok(address), Ok(len)) => {
                    text_value(decoder, name, type_name, address, len, Language::Rust)
                }
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if let Some((access, LengthField::Count { offset, size })) =
        layout::rust_slice(decoder.types(), module, key)
    {
        return Some(
            match (
                read_word(decoder, src, access.pointer_offset),
                read_sized(decoder, src, offset, size),
            ) {
                (Ok(address), Ok(len)) => sequence(
                    decoder,
                    name,
                    type_name,
                    format!("slice(len {len})"),
                    access.element,
                    address,
                    access.stride,
                    len,
                    depth,
                ),
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if short.starts_with("Vec<") {
        let (access, LengthField::Count { offset, size }) =
            layout::rust_vec(decoder.types(), module, key)?
        else {
            return None;
        };
        let capacity = layout::member_path(decoder.types(), module, key, &["buf", "inner", "cap"])
            .and_then(|(cap_offset, cap_type)| {
                let (inner, cap_size) =
                    layout::integer_inside(decoder.types(), module, cap_type, 0)?;
                read_sized(decoder, src, cap_offset + inner, cap_size).ok()
            });
        return Some(
            match (
                read_word(decoder, src, access.pointer_offset),
                read_sized(decoder, src, offset, size),
            ) {
                (Ok(address), Ok(len)) => {
                    // Zero-sized elements have no capacity to check against.
                    if access.stride > 0 && capacity.is_some_and(|cap| len > cap) {
                        Value::unavailable(
                            name,
                            type_name,
                            Unsupported::Corrupt(Corruption::VecLengthOverCapacity),
                        )
                    } else {
                        sequence(
                            decoder,
                            name,
                            type_name,
                            format!("Vec(len {len})"),
                            access.element,
                            address,
                            access.stride,
                            len,
                            depth,
                        )
                    }
                }
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if short.starts_with("VecDeque<") {
        return vec_deque(decoder, name, key, type_name, src, depth);
    }
    if short.starts_with("Rc<") || short.starts_with("Arc<") || short.starts_with("Weak<") {
        return reference_counted(decoder, name, key, ty, src, depth);
    }
    if short.starts_with("Cell<")
        || short.starts_with("UnsafeCell<")
        || short.starts_with("SyncUnsafeCell<")
    {
        let (offset, inner) = layout::member(decoder.types(), module, key, "value")?;
        return Some(transparent(
            decoder,
            name,
            &type_name,
            inner,
            offset_src(src, offset),
            depth,
        ));
    }
    if short.starts_with("RefCell<") {
        let (offset, inner) = layout::member(decoder.types(), module, key, "value")?;
        return Some(transparent(
            decoder,
            name,
            &type_name,
            inner,
            offset_src(src, offset),
            depth,
        ));
    }
    if short.starts_with("HashMap<") || short.starts_with("HashSet<") {
        return hash_table(decoder, name, key, ty, src, depth);
    }
    if short.starts_with("BTreeMap<") || short.starts_with("BTreeSet<") {
        return btree(decoder, name, key, ty, src, depth);
    }
    if (short.starts_with("Box<dyn ")
        || short.starts_with("&dyn ")
        || short.starts_with("&mut dyn "))
        && let (Some((pointer, _)), Some((vtable, _))) = (
            layout::member(decoder.types(), module, key, "pointer"),
            layout::member(decoder.types(), module, key, "vtable"),
        )
    {
        return Some(
            match (
                read_word(decoder, src, pointer),
                read_word(decoder, src, vtable),
            ) {
                (Ok(address), Ok(table)) => {
                    let implementation = decoder
                        .address_text(table)
                        .split_once(" <")
                        .map(|(_, symbol)| symbol.trim_end_matches('>').replace("::{vtable}", ""))
                        .unwrap_or_default();
                    let text = if implementation.is_empty() {
                        format!("{address:#x}")
                    } else {
                        format!("{address:#x} ({implementation})")
                    };
                    Value::leaf(name, type_name, text)
                }
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if short.starts_with('(') {
        // A tuple: the generic view, compacted.
        let aggregate = ty.aggregate()?;
        if aggregate.variant_part.is_some() {
            return None;
        }
        if short == "()" {
            return Some(Value::leaf(name, type_name, "()"));
        }
        let mut value = Value::leaf(name, type_name, AGGREGATE_SUMMARY);
        if depth == 0 {
            value.truncated = true;
            return Some(value);
        }
        let members = aggregate.members.clone();
        let result = decoder.with_view(src, ty.size, |d, src| {
            d.members(&members, src, depth, Language::Rust)
        });
        return Some(match result {
            Ok((children, truncated)) => {
                value.children = Some(children);
                value.truncated = truncated;
                compact_tuple(value)
            }
            Err(reason) => Value::unavailable(name, value.type_name, reason),
        });
    }
    None
}

fn vec_deque(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    type_name: String,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let (head_offset, _) = layout::member(decoder.types(), module, key, "head")?;
    let (len_offset, _) = layout::member(decoder.types(), module, key, "len")?;
    let (buf_offset, buf_type) = layout::member(decoder.types(), module, key, "buf")?;
    let (pointer_offset, _) = layout::pointer_inside(decoder.types(), module, buf_type?, 0)?;
    let (cap_offset, cap_type) =
        layout::member_path(decoder.types(), module, buf_type?, &["inner", "cap"])?;
    let (cap_inner, cap_size) = layout::integer_inside(decoder.types(), module, cap_type, 0)?;
    let element = layout::template_type(decoder.types(), module, key, "T")?;
    let stride = decoder.types().size_of(module, element)?;
    let read = |d: &Decoder<'_>| -> Result<(u64, u64, u64, u64), Unavailable> {
        Ok((
            read_word(d, src, head_offset)?,
            read_word(d, src, len_offset)?,
            read_word(d, src, buf_offset + pointer_offset)?,
            read_sized(d, src, buf_offset + cap_offset + cap_inner, cap_size)?,
        ))
    };
    let (head, len, address, capacity) = match read(decoder) {
        Ok(fields) => fields,
        Err(reason) => return Some(Value::unavailable(name, type_name, reason)),
    };
    let mut value = Value::leaf(name, type_name, format!("VecDeque(len {len})"));
    if stride > 0 && (len > capacity || (capacity > 0 && head >= capacity)) {
        return Some(Value::unavailable(
            name,
            value.type_name,
            Unsupported::Corrupt(Corruption::VecDequeLengthOverCapacity),
        ));
    }
    if len == 0 {
        value.children = Some(Vec::new());
        return Some(value);
    }
    if depth == 0 {
        value.truncated = true;
        return Some(value);
    }
    let shown = len.min(u64::from(decoder.limits().max_items));
    let mut children = Vec::new();
    for i in 0..shown {
        if !decoder.spend_node() {
            value.truncated = true;
            break;
        }
        let slot = if capacity == 0 {
            0
        } else {
            (head + i) % capacity
        };
        children.push(decoder.value(
            &format!("[{i}]"),
            Some(element),
            Src::Memory(address.wrapping_add(slot.wrapping_mul(stride))),
            depth - 1,
        ));
    }
    value.truncated |= shown < len;
    value.children = Some(children);
    Some(value)
}

fn reference_counted(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let (pointer_offset, pointer_type) = layout::pointer_inside(decoder.types(), module, key, 0)?;
    let (_, pointer) = decoder.types().strip(module, pointer_type)?;
    let TypeKind::Pointer(Some(inner_type)) = pointer.kind else {
        return None;
    };
    let (strong_offset, strong_type) =
        layout::member(decoder.types(), module, inner_type, "strong")?;
    let (weak_offset, weak_type) = layout::member(decoder.types(), module, inner_type, "weak")?;
    let (value_offset, value_type) =
        layout::member(decoder.types(), module, inner_type, "value")
            .or_else(|| layout::member(decoder.types(), module, inner_type, "data"))?;
    let (strong_inner, strong_size) = integer_or_atomic(decoder, strong_type?)?;
    let (weak_inner, weak_size) = integer_or_atomic(decoder, weak_type?)?;
    let kind = ty.short_name.split('<').next().unwrap_or("Rc").to_string();
    let type_name = ty.name.clone();
    let address = match read_word(decoder, src, pointer_offset) {
        Ok(address) => address,
        Err(reason) => return Some(Value::unavailable(name, type_name, reason)),
    };
    // A dangling Weak points at usize::MAX.
    if address == 0 || address == u64::MAX {
        return Some(Value::leaf(name, type_name, format!("{kind}(dangling)")));
    }
    let inner = Src::Memory(address);
    let counts = (
        read_sized(decoder, inner, strong_offset + strong_inner, strong_size),
        read_sized(decoder, inner, weak_offset + weak_inner, weak_size),
    );
    let (strong, weak) = match counts {
        (Ok(strong), Ok(weak)) => (strong, weak.saturating_sub(1)),
        (Err(reason), _) | (_, Err(reason)) => {
            return Some(Value::unavailable(name, type_name, reason));
        }
    };
    let summary = Value::leaf(
        name,
        type_name,
        format!("{kind}(strong {strong}, weak {weak})"),
    );
    Some(pointee(
        decoder,
        summary,
        value_type,
        address.wrapping_add(value_offset),
        depth,
    ))
}

/// The integer inside `Cell<usize>` or `AtomicUsize` (`{ v: UnsafeCell<usize> }`).
fn integer_or_atomic(decoder: &mut Decoder<'_>, key: TypeKey) -> Option<(u64, u64)> {
    let module = decoder.module();
    let mut current = key;
    let mut offset = 0;
    for _ in 0..6 {
        if let Some((inner, size)) = layout::integer_inside(decoder.types(), module, current, 0) {
            return Some((offset + inner, size));
        }
        let (_, ty) = decoder.types().strip(module, current)?;
        let first = ty.aggregate()?.members.first()?.clone();
        let MemberOffset::Bytes(member_offset) = first.offset else {
            return None;
        };
        offset += member_offset;
        current = first.ty?;
    }
    None
}

fn hash_table(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let is_set = ty.short_name.starts_with("HashSet<");
    let (raw_offset, raw_table) = layout::hashbrown_raw_table(decoder.types(), module, key)?;
    let (inner_offset, inner) = layout::hashbrown_inner(decoder.types(), module, key)?;
    let (ctrl_offset, ctrl_type) = layout::member(decoder.types(), module, inner, "ctrl")?;
    let (ctrl_pointer, _) = layout::pointer_inside(decoder.types(), module, ctrl_type?, 0)?;
    let (mask_offset, _) = layout::member(decoder.types(), module, inner, "bucket_mask")?;
    let (items_offset, _) = layout::member(decoder.types(), module, inner, "items")?;
    let entry = layout::template_type(decoder.types(), module, raw_table, "T")?;
    let stride = decoder.types().size_of(module, entry)?;
    let _ = raw_offset;
    let kind = if is_set { "HashSet" } else { "HashMap" };
    let type_name = ty.name.clone();
    let fields = (
        read_word(decoder, src, inner_offset + ctrl_offset + ctrl_pointer),
        read_word(decoder, src, inner_offset + mask_offset),
        read_word(decoder, src, inner_offset + items_offset),
    );
    let (ctrl, mask, items) = match fields {
        (Ok(ctrl), Ok(mask), Ok(items)) => (ctrl, mask, items),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
            return Some(Value::unavailable(name, type_name, reason));
        }
    };
    let mut value = Value::leaf(name, type_name, format!("{kind}(len {items})"));
    let buckets = if items == 0 && mask == 0 {
        0
    } else {
        mask.wrapping_add(1)
    };
    if buckets != 0 && (!buckets.is_power_of_two() || items > buckets || ctrl == 0) {
        return Some(Value::unavailable(
            name,
            value.type_name,
            Unsupported::Corrupt(Corruption::HashTable),
        ));
    }
    if items == 0 {
        value.children = Some(Vec::new());
        return Some(value);
    }
    if depth == 0 {
        value.truncated = true;
        return Some(value);
    }
    if buckets > MAX_BUCKETS {
        value.truncated = true;
        return Some(value);
    }
    let max_items = u64::from(decoder.limits().max_items).min(items);
    // Scan control bytes in large chunks; a byte with the top bit clear is a full bucket.
    let mut full = Vec::new();
    let mut scanned = 0u64;
    while scanned < buckets && (full.len() as u64) < max_items {
        let chunk = (buckets - scanned).min(64 * 1024);
        let bytes = match decoder.read(Src::Memory(ctrl.wrapping_add(scanned)), chunk as usize) {
            Ok(bytes) => bytes,
            Err(reason) => return Some(Value::unavailable(name, value.type_name, reason)),
        };
        for (i, byte) in bytes.iter().enumerate() {
            if byte & 0x80 == 0 {
                full.push(scanned + i as u64);
                if full.len() as u64 >= max_items {
                    break;
                }
            }
        }
        scanned += chunk;
    }
    let set_key = if is_set {
        layout::member(decoder.types(), module, entry, "__0")
            .map_or((0, Some(entry)), |(offset, ty)| (offset, ty))
    } else {
        (0, None)
    };
    let (key_type, value_type, value_offset) = if is_set {
        (set_key.1, None, 0)
    } else {
        let (_, value_type) = layout::member(decoder.types(), module, entry, "__1")?;
        let (value_offset, _) = layout::member(decoder.types(), module, entry, "__1")?;
        let (_, key_type) = layout::member(decoder.types(), module, entry, "__0")?;
        (key_type, value_type, value_offset)
    };
    let key_offset = if is_set {
        set_key.0
    } else {
        layout::member(decoder.types(), module, entry, "__0")?.0
    };
    let mut children = Vec::new();
    for (n, index) in full.iter().enumerate() {
        if !decoder.spend_node() {
            value.truncated = true;
            break;
        }
        let Some(slot) = (index + 1)
            .checked_mul(stride)
            .and_then(|back| ctrl.checked_sub(back))
        else {
            break;
        };
        children.push(map_entry(
            decoder,
            n,
            is_set,
            key_type,
            value_type,
            slot + key_offset,
            slot + value_offset,
            depth,
        ));
    }
    value.truncated |= (children.len() as u64) < items;
    value.children = Some(children);
    Some(value)
}

/// One entry of a map (`[key] = value`) or a set (`[n] = key`).
#[allow(clippy::too_many_arguments)]
fn map_entry(
    decoder: &mut Decoder<'_>,
    position: usize,
    is_set: bool,
    key_type: Option<TypeKey>,
    value_type: Option<TypeKey>,
    key_address: u64,
    value_address: u64,
    depth: u32,
) -> Value {
    if is_set {
        return decoder.value(
            &format!("[{position}]"),
            key_type,
            Src::Memory(key_address),
            depth - 1,
        );
    }
    let key = decoder.value("key", key_type, Src::Memory(key_address), 0);
    let key_text = match &key.unavailable {
        Some(reason) => format!("<{reason}>"),
        None => key.value.clone(),
    };
    decoder.value(
        &format!("[{key_text}]"),
        value_type,
        Src::Memory(value_address),
        depth - 1,
    )
}

fn btree(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let is_set = ty.short_name.starts_with("BTreeSet<");
    let (map_offset, map_type) = if is_set {
        let (offset, map) = layout::member(decoder.types(), module, key, "map")?;
        (offset, map?)
    } else {
        (0, key)
    };
    let (root_field, root_type) = layout::member(decoder.types(), module, map_type, "root")?;
    let (length_offset, _) = layout::member(decoder.types(), module, map_type, "length")?;
    // root: Option<NodeRef { height, node }>; None is a null node pointer.
    let (payload_offset, node_ref) = layout::option_payload(decoder.types(), module, root_type?)?;
    let root_offset = root_field + payload_offset;
    let (height_offset, _) = layout::member(decoder.types(), module, node_ref, "height")?;
    let (node_offset, node_type) = layout::member(decoder.types(), module, node_ref, "node")?;
    let (node_pointer, node_pointer_type) =
        layout::pointer_inside(decoder.types(), module, node_type?, 0)?;
    let (_, pointer) = decoder.types().strip(module, node_pointer_type)?;
    let TypeKind::Pointer(Some(leaf_type)) = pointer.kind else {
        return None;
    };
    let key_type = layout::template_type(decoder.types(), module, leaf_type, "K")?;
    let value_type = layout::template_type(decoder.types(), module, leaf_type, "V");
    let (keys_offset, _) = layout::member(decoder.types(), module, leaf_type, "keys")?;
    let (vals_offset, _) = layout::member(decoder.types(), module, leaf_type, "vals")?;
    let (len_offset, _) = layout::member(decoder.types(), module, leaf_type, "len")?;
    let leaf_size = decoder.types().size_of(module, leaf_type)?;
    let key_size = decoder.types().size_of(module, key_type)?;
    let value_size = match value_type {
        Some(v) => decoder.types().size_of(module, v)?,
        None => 0,
    };
    let edges_offset =
        internal_edges_offset(decoder, leaf_type).unwrap_or(leaf_size.div_ceil(8) * 8);
    let base = offset_src(src, map_offset);
    let type_name = ty.name.clone();
    let kind = if is_set { "BTreeSet" } else { "BTreeMap" };
    let fields = (
        read_word(decoder, base, length_offset),
        read_word(decoder, base, root_offset + node_offset + node_pointer),
        read_word(decoder, base, root_offset + height_offset),
    );
    let (length, root, height) = match fields {
        (Ok(length), Ok(root), Ok(height)) => (length, root, height),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
            return Some(Value::unavailable(name, type_name, reason));
        }
    };
    let mut value = Value::leaf(name, type_name, format!("{kind}(len {length})"));
    if length == 0 || root == 0 {
        value.children = Some(Vec::new());
        return Some(value);
    }
    if depth == 0 {
        value.truncated = true;
        return Some(value);
    }
    if height > 64 {
        return Some(Value::unavailable(
            name,
            value.type_name,
            Unsupported::Corrupt(Corruption::BTreeMapHeight),
        ));
    }
    let max_items = u64::from(decoder.limits().max_items).min(length) as usize;
    let shape = TreeShape {
        keys_offset,
        vals_offset,
        len_offset,
        edges_offset,
        key_size,
        value_size,
    };
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut visited = 0usize;
    walk_btree(
        decoder,
        &shape,
        root,
        height,
        max_items,
        &mut entries,
        &mut visited,
    );
    let mut children = Vec::new();
    for (n, (key_address, value_address)) in entries.into_iter().enumerate() {
        if !decoder.spend_node() {
            value.truncated = true;
            break;
        }
        children.push(map_entry(
            decoder,
            n,
            is_set,
            Some(key_type),
            value_type,
            key_address,
            value_address,
            depth,
        ));
    }
    value.truncated |= (children.len() as u64) < length;
    value.children = Some(children);
    Some(value)
}

/// Where a B-tree node keeps its keys, values, length and child edges.
struct TreeShape {
    keys_offset: u64,
    vals_offset: u64,
    len_offset: u64,
    edges_offset: u64,
    key_size: u64,
    value_size: u64,
}

/// In-order walk of a B-tree node (keys between child edges); false once
/// enough entries are found or the node budget is spent.
fn walk_btree(
    decoder: &Decoder<'_>,
    shape: &TreeShape,
    node: u64,
    height: u64,
    max_items: usize,
    entries: &mut Vec<(u64, u64)>,
    visited: &mut usize,
) -> bool {
    *visited += 1;
    if *visited > MAX_TREE_NODES || node == 0 {
        return false;
    }
    let len = match read_sized(decoder, Src::Memory(node), shape.len_offset, 2) {
        Ok(len) if len <= 11 => len,
        _ => return false,
    };
    let edge = |i: u64| {
        read_word(
            decoder,
            Src::Memory(node),
            shape.edges_offset.wrapping_add(i * 8),
        )
        .ok()
    };
    for i in 0..len {
        if height > 0 {
            let Some(child) = edge(i) else { return false };
            if !walk_btree(
                decoder,
                shape,
                child,
                height - 1,
                max_items,
                entries,
                visited,
            ) {
                return false;
            }
        }
        if entries.len() >= max_items {
            return false;
        }
        entries.push((
            node.wrapping_add(shape.keys_offset)
                .wrapping_add(i.wrapping_mul(shape.key_size)),
            node.wrapping_add(shape.vals_offset)
                .wrapping_add(i.wrapping_mul(shape.value_size)),
        ));
    }
    if height > 0 {
        let Some(child) = edge(len) else { return false };
        return walk_btree(
            decoder,
            shape,
            child,
            height - 1,
            max_items,
            entries,
            visited,
        );
    }
    true
}

/// The offset of `edges` in `InternalNode<K, V>`, found through the leaf's
/// `parent: Option<NonNull<InternalNode<K, V>>>`.
fn internal_edges_offset(decoder: &mut Decoder<'_>, leaf_type: TypeKey) -> Option<u64> {
    let module = decoder.module();
    let (_, parent_type) = layout::member(decoder.types(), module, leaf_type, "parent")?;
    let (_, non_null) = layout::option_payload(decoder.types(), module, parent_type?)?;
    let (_, pointer_type) = layout::pointer_inside(decoder.types(), module, non_null, 0)?;
    let (_, pointer) = decoder.types().strip(module, pointer_type)?;
    let TypeKind::Pointer(Some(internal)) = pointer.kind else {
        return None;
    };
    layout::member(decoder.types(), module, internal, "edges").map(|(offset, _)| offset)
}

/// A libc++ `std::string`, long (characters out of line) or short (inline).
fn libcxx_string_value(
    decoder: &mut Decoder<'_>,
    name: &str,
    type_name: String,
    kind: layout::StringKind,
    rep: u64,
    src: Src<'_>,
) -> Value {
    let bytes = match decoder.read(offset_src(src, rep), 24) {
        Ok(bytes) => bytes,
        Err(reason) => return Value::unavailable(name, type_name, reason),
    };
    match layout::libcxx_chars(kind, &bytes) {
        Some(layout::LibcxxChars::Long { address, len }) => {
            text_value(decoder, name, type_name, address, len, Language::Cpp)
        }
        Some(layout::LibcxxChars::Short { offset, len }) => {
            let max = u64::from(decoder.limits().max_string);
            let shown = len.min(max);
            match decoder.read(offset_src(src, offset), shown as usize) {
                Ok(chars) => {
                    let mut text = quote_bytes(&chars, Language::Cpp);
                    if len > max {
                        text.push_str("...");
                    }
                    let mut value = Value::leaf(name, type_name, text);
                    value.truncated = len > max;
                    value
                }
                Err(reason) => Value::unavailable(name, type_name, reason),
            }
        }
        None => Value::unavailable(
            name,
            type_name,
            Unsupported::Corrupt(Corruption::LibcxxString),
        ),
    }
}

fn cpp(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let short = ty.short_name.as_str();
    let type_name = ty.name.clone();
    let module = decoder.module();
    if short.starts_with("basic_string<char") {
        let kind = layout::string_kind(decoder.types(), module, key)?;
        if let layout::StringKind::Libcxx { rep, .. } = kind {
            return Some(libcxx_string_value(
                decoder, name, type_name, kind, rep, src,
            ));
        }
        let layout::StringKind::Counted {
            pointer_offset,
            length_offset,
        } = kind
        else {
            return None;
        };
        return Some(
            match (
                read_word(decoder, src, pointer_offset),
                read_word(decoder, src, length_offset),
            ) {
                (Ok(address), Ok(len)) => {
                    text_value(decoder, name, type_name, address, len, Language::Cpp)
                }
                (Err(reason), _) | (_, Err(reason)) => Value::unavailable(name, type_name, reason),
            },
        );
    }
    if short.starts_with("vector<") {
        let (
            access,
            LengthField::PointerRange {
                start,
                finish,
                stride,
            },
        ) = layout::std_vector(decoder.types(), module, key)?
        else {
            return None;
        };
        let (end_offset, _) = layout::member_path(
            decoder.types(),
            module,
            key,
            &["_M_impl", "_M_end_of_storage"],
        )
        .or_else(|| {
            layout::member_path(decoder.types(), module, key, &["__end_cap_", "__value_"])
        })?;
        let fields = (
            read_word(decoder, src, start),
            read_word(decoder, src, finish),
            read_word(decoder, src, end_offset),
        );
        return Some(match fields {
            (Ok(first), Ok(last), Ok(end)) => {
                if last < first || end < last || (last - first) % stride != 0 {
                    Value::unavailable(name, type_name, Unsupported::Corrupt(Corruption::StdVector))
                } else {
                    let len = last.saturating_sub(first) / stride;
                    sequence(
                        decoder,
                        name,
                        type_name,
                        format!("vector(len {len})"),
                        access.element,
                        first,
                        stride,
                        len,
                        depth,
                    )
                }
            }
            (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
                Value::unavailable(name, type_name, reason)
            }
        });
    }
    if short.starts_with("map<")
        || short.starts_with("set<")
        || short.starts_with("multimap<")
        || short.starts_with("multiset<")
    {
        if layout::member(decoder.types(), module, key, "__tree_").is_some() {
            return libcxx_tree(decoder, name, key, ty, src, depth);
        }
        return rb_tree(decoder, name, key, ty, src, depth);
    }
    if short.starts_with("unordered_map<") || short.starts_with("unordered_set<") {
        return std_hashtable(decoder, name, key, ty, src, depth);
    }
    if short.starts_with("shared_ptr<") || short.starts_with("weak_ptr<") {
        let (pointer_offset, pointer_type) =
            layout::member_path(decoder.types(), module, key, &["_M_ptr"])?;
        let (count_offset, _) =
            layout::member_path(decoder.types(), module, key, &["_M_refcount", "_M_pi"])?;
        let (_, pointer) = decoder.types().strip(module, pointer_type)?;
        let TypeKind::Pointer(target) = pointer.kind else {
            return None;
        };
        let kind = short.split('<').next().unwrap_or("shared_ptr").to_string();
        let (address, counts) = match (
            read_word(decoder, src, pointer_offset),
            read_word(decoder, src, count_offset),
        ) {
            (Ok(address), Ok(counts)) => (address, counts),
            (Err(reason), _) | (_, Err(reason)) => {
                return Some(Value::unavailable(name, type_name, reason));
            }
        };
        if counts == 0 {
            return Some(Value::leaf(name, type_name, format!("{kind}(empty)")));
        }
        // _Sp_counted_base: vptr, then _M_use_count and _M_weak_count (ints).
        let use_count = read_sized(decoder, Src::Memory(counts), 8, 4);
        let weak_count = read_sized(decoder, Src::Memory(counts), 12, 4);
        let summary = match (use_count, weak_count) {
            (Ok(uses), Ok(weak)) => format!(
                "{kind}(use {uses}, weak {})",
                weak.saturating_sub(u64::from(uses > 0))
            ),
            _ => format!("{kind}({address:#x})"),
        };
        let value = Value::leaf(name, type_name, summary);
        return Some(pointee(decoder, value, target, address, depth));
    }
    if short.starts_with("unique_ptr<") {
        let (pointer_offset, pointer_type) =
            layout::pointer_inside(decoder.types(), module, key, 0)?;
        let (_, pointer) = decoder.types().strip(module, pointer_type)?;
        let TypeKind::Pointer(target) = pointer.kind else {
            return None;
        };
        let address = match read_word(decoder, src, pointer_offset) {
            Ok(address) => address,
            Err(reason) => return Some(Value::unavailable(name, type_name, reason)),
        };
        if address == 0 {
            return Some(Value::leaf(name, type_name, "unique_ptr(empty)"));
        }
        let value = Value::leaf(name, type_name, decoder.address_text(address));
        return Some(pointee(decoder, value, target, address, depth));
    }
    if short.starts_with("optional<") {
        let (engaged_offset, _) = find_path(decoder, key, "_M_engaged")?;
        let (payload_offset, payload_type) = find_path(decoder, key, "_M_value")
            .or_else(|| find_path(decoder, key, "_M_payload"))?;
        let engaged = match read_sized(decoder, src, engaged_offset, 1) {
            Ok(engaged) => engaged != 0,
            Err(reason) => return Some(Value::unavailable(name, type_name, reason)),
        };
        if !engaged {
            return Some(Value::leaf(name, type_name, "nullopt"));
        }
        return Some(transparent(
            decoder,
            name,
            &type_name,
            payload_type,
            offset_src(src, payload_offset),
            depth,
        ));
    }
    None
}

/// Breadth-first search for a member by name through nested members and
/// base classes (libstdc++ nests `optional`'s payload several levels deep).
fn find_path(
    decoder: &mut Decoder<'_>,
    key: TypeKey,
    name: &str,
) -> Option<(u64, Option<TypeKey>)> {
    let module = decoder.module();
    let mut queue = std::collections::VecDeque::from([(key, 0u64)]);
    let mut visited = 0;
    while let Some((current, offset)) = queue.pop_front() {
        visited += 1;
        if visited > 64 {
            return None;
        }
        let (_, ty) = decoder.types().strip(module, current)?;
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

/// `std::map`/`std::set`: in-order walk of the red-black tree from the
/// header's leftmost node using the successor rule.
fn rb_tree(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let is_set = ty.short_name.starts_with("set<") || ty.short_name.starts_with("multiset<");
    let (tree_offset, tree_type) = layout::member_path(decoder.types(), module, key, &["_M_t"])?;
    let (header_offset, header_type) = layout::member_path(
        decoder.types(),
        module,
        tree_type,
        &["_M_impl", "_M_header"],
    )?;
    let (count_offset, _) = layout::member_path(
        decoder.types(),
        module,
        tree_type,
        &["_M_impl", "_M_node_count"],
    )?;
    let (left_offset, _) = layout::member_path(decoder.types(), module, header_type, &["_M_left"])?;
    let (right_offset, _) =
        layout::member_path(decoder.types(), module, header_type, &["_M_right"])?;
    let (parent_offset, _) =
        layout::member_path(decoder.types(), module, header_type, &["_M_parent"])?;
    let node_base_size = decoder.types().size_of(module, header_type)?;
    let value_type = layout::template_type(decoder.types(), module, tree_type, "_Val")?;
    let value_align = 8;
    let storage_offset = node_base_size.div_ceil(value_align) * value_align;
    let type_name = ty.name.clone();
    let kind = ty.short_name.split('<').next().unwrap_or("map").to_string();
    let header = tree_offset + header_offset;
    let (count, leftmost) = match (
        read_word(decoder, src, tree_offset + count_offset),
        read_word(decoder, src, header + left_offset),
    ) {
        (Ok(count), Ok(leftmost)) => (count, leftmost),
        (Err(reason), _) | (_, Err(reason)) => {
            return Some(Value::unavailable(name, type_name, reason));
        }
    };
    let header_address = match src {
        Src::Memory(address) => Some(address.wrapping_add(header)),
        Src::View(_) => decoder.view_address(src).map(|a| a.wrapping_add(header)),
    };
    let mut value = Value::leaf(name, type_name, format!("{kind}(len {count})"));
    if count == 0 {
        value.children = Some(Vec::new());
        return Some(value);
    }
    if depth == 0 {
        value.truncated = true;
        return Some(value);
    }
    let Some(header_address) = header_address else {
        return Some(Value::unavailable(
            name,
            value.type_name,
            Unsupported::MapInRegisters,
        ));
    };
    let (key_type, mapped_type, mapped_offset) = if is_set {
        (Some(value_type), None, 0)
    } else {
        let (_, first) = layout::member(decoder.types(), module, value_type, "first")?;
        let (second_offset, second) =
            layout::member(decoder.types(), module, value_type, "second")?;
        (first, second, second_offset)
    };
    let max_items = u64::from(decoder.limits().max_items).min(count);
    let mut node = leftmost;
    let mut children = Vec::new();
    let mut steps = 0usize;
    while node != header_address && node != 0 && (children.len() as u64) < max_items {
        steps += 1;
        if steps > MAX_TREE_NODES * 4 || decoder.nodes_spent() >= MAX_NODES {
            break;
        }
        let storage = node.wrapping_add(storage_offset);
        children.push(map_entry(
            decoder,
            children.len(),
            is_set,
            key_type,
            mapped_type,
            storage,
            storage.wrapping_add(mapped_offset),
            depth,
        ));
        // Successor: leftmost of the right subtree, else climb while we are a right child.
        let right = match read_word(decoder, Src::Memory(node), right_offset) {
            Ok(right) => right,
            Err(_) => break,
        };
        if right != 0 {
            let mut next = right;
            let mut guard = 0;
            while let Ok(left) = read_word(decoder, Src::Memory(next), left_offset) {
                guard += 1;
                if left == 0 || guard > 64 {
                    break;
                }
                next = left;
            }
            node = next;
        } else {
            let mut current = node;
            let mut guard = 0;
            loop {
                guard += 1;
                let Ok(parent) = read_word(decoder, Src::Memory(current), parent_offset) else {
                    current = 0;
                    break;
                };
                let Ok(parent_right) = read_word(decoder, Src::Memory(parent), right_offset) else {
                    current = 0;
                    break;
                };
                if parent_right != current || guard > 64 {
                    current = parent;
                    break;
                }
                current = parent;
            }
            node = current;
        }
    }
    value.truncated |= (children.len() as u64) < count;
    value.children = Some(children);
    Some(value)
}

/// libc++ `std::map`/`std::set` (and multi-): in-order walk of the
/// `__tree_` from `__begin_node_` to the end node (the `__left_` of the end
/// node is the root), with libc++'s successor rule.
fn libcxx_tree(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let is_set = ty.short_name.starts_with("set<") || ty.short_name.starts_with("multiset<");
    let (tree_offset, tree_type) = layout::member_path(decoder.types(), module, key, &["__tree_"])?;
    let (begin_offset, begin_type) =
        layout::member_path(decoder.types(), module, tree_type, &["__begin_node_"])?;
    let (end_offset, _) = layout::member_path(
        decoder.types(),
        module,
        tree_type,
        &["__pair1_", "__value_"],
    )?;
    let (count_offset, _) = layout::member_path(
        decoder.types(),
        module,
        tree_type,
        &["__pair3_", "__value_"],
    )?;
    // __begin_node_: __tree_end_node* { __left_: __tree_node_base* }.
    let end_node_type = match decoder.types().strip(module, begin_type)?.1.kind {
        TypeKind::Pointer(Some(end_node)) => end_node,
        _ => return None,
    };
    let (left_offset, base_pointer) =
        layout::member_path(decoder.types(), module, end_node_type, &["__left_"])?;
    let node_base = match decoder.types().strip(module, base_pointer)?.1.kind {
        TypeKind::Pointer(Some(base)) => base,
        _ => return None,
    };
    let (right_offset, _) = layout::member_path(decoder.types(), module, node_base, &["__right_"])?;
    let (parent_offset, _) =
        layout::member_path(decoder.types(), module, node_base, &["__parent_"])?;
    let node_base_size = decoder.types().size_of(module, node_base)?;
    let value_offset = node_base_size.div_ceil(8) * 8;
    // The tree's _Tp: the key (sets) or __value_type<K, V> { __cc_: pair }.
    let stored = layout::template_type(decoder.types(), module, tree_type, "_Tp")?;
    let type_name = ty.name.clone();
    let kind = ty.short_name.split('<').next().unwrap_or("map").to_string();
    let (mut value, count, first) = match node_container_start(
        decoder,
        src,
        (name, type_name, &kind),
        (tree_offset + count_offset, tree_offset + begin_offset),
        depth,
    ) {
        NodeWalk::Walk(value, count, first) => (value, count, first),
        NodeWalk::Done(value) => return Some(value),
    };
    let Some(end_node) = decoder
        .view_address(src)
        .or(match src {
            Src::Memory(address) => Some(address),
            Src::View(_) => None,
        })
        .map(|a| a.wrapping_add(tree_offset + end_offset))
    else {
        return Some(Value::unavailable(
            name,
            value.type_name,
            Unsupported::MapInRegisters,
        ));
    };
    let (key_type, mapped_type, key_in_value, mapped_in_value) = if is_set {
        (Some(stored), None, 0, 0)
    } else {
        // libc++ 14 names the pair `__cc`, later versions `__cc_`.
        let (pair_offset, pair) = layout::member_anywhere(decoder.types(), module, stored, "__cc")
            .or_else(|| layout::member_anywhere(decoder.types(), module, stored, "__cc_"))?;
        let (first_offset, first_type) = layout::member(decoder.types(), module, pair, "first")?;
        let (second_offset, second_type) = layout::member(decoder.types(), module, pair, "second")?;
        (
            first_type,
            second_type,
            pair_offset + first_offset,
            pair_offset + second_offset,
        )
    };
    let word = |decoder: &Decoder<'_>, address: u64, offset: u64| {
        read_word(decoder, Src::Memory(address), offset)
    };
    let max_items = u64::from(decoder.limits().max_items).min(count);
    let mut node = first;
    let mut children = Vec::new();
    let mut steps = 0usize;
    while node != end_node && node != 0 && (children.len() as u64) < max_items {
        steps += 1;
        if steps > MAX_TREE_NODES * 4 || decoder.nodes_spent() >= MAX_NODES {
            break;
        }
        let storage = node.wrapping_add(value_offset);
        children.push(map_entry(
            decoder,
            children.len(),
            is_set,
            key_type,
            mapped_type,
            storage.wrapping_add(key_in_value),
            storage.wrapping_add(mapped_in_value),
            depth,
        ));
        // Successor: leftmost of the right subtree, else climb until we
        // come up from a left child; that parent is next.
        let Ok(right) = word(decoder, node, right_offset) else {
            break;
        };
        if right != 0 {
            let mut next = right;
            let mut guard = 0;
            while let Ok(left) = word(decoder, next, left_offset) {
                guard += 1;
                if left == 0 || guard > 64 {
                    break;
                }
                next = left;
            }
            node = next;
        } else {
            let mut current = node;
            let mut guard = 0;
            node = loop {
                guard += 1;
                let Ok(parent) = word(decoder, current, parent_offset) else {
                    break 0;
                };
                let Ok(parent_left) = word(decoder, parent, left_offset) else {
                    break 0;
                };
                if parent_left == current {
                    break parent;
                }
                if guard > 64 {
                    break 0;
                }
                current = parent;
            };
        }
    }
    value.truncated |= (children.len() as u64) < count;
    value.children = Some(children);
    Some(value)
}

/// `std::unordered_map`/`set`: walk the singly linked node list from
/// `_M_before_begin._M_nxt`.
fn std_hashtable(
    decoder: &mut Decoder<'_>,
    name: &str,
    key: TypeKey,
    ty: &Arc<Type>,
    src: Src<'_>,
    depth: u32,
) -> Option<Value> {
    let module = decoder.module();
    let is_set = ty.short_name.starts_with("unordered_set<");
    let (table_offset, table_type) = layout::member_path(decoder.types(), module, key, &["_M_h"])?;
    let (first_offset, _) = layout::member_path(
        decoder.types(),
        module,
        table_type,
        &["_M_before_begin", "_M_nxt"],
    )?;
    let (count_offset, _) =
        layout::member_path(decoder.types(), module, table_type, &["_M_element_count"])?;
    let value_type = layout::template_type(decoder.types(), module, table_type, "_Value")?;
    let type_name = ty.name.clone();
    let kind = ty
        .short_name
        .split('<')
        .next()
        .unwrap_or("unordered_map")
        .to_string();
    let (mut value, count, first) = match node_container_start(
        decoder,
        src,
        (name, type_name, &kind),
        (table_offset + count_offset, table_offset + first_offset),
        depth,
    ) {
        NodeWalk::Walk(value, count, first) => (value, count, first),
        NodeWalk::Done(value) => return Some(value),
    };
    let (key_type, mapped_type, mapped_offset) = if is_set {
        (Some(value_type), None, 0)
    } else {
        let (_, first_type) = layout::member(decoder.types(), module, value_type, "first")?;
        let (second_offset, second) =
            layout::member(decoder.types(), module, value_type, "second")?;
        (first_type, second, second_offset)
    };
    // _Hash_node: { _M_nxt } then the value storage, aligned.
    let storage_offset = 8;
    let max_items = u64::from(decoder.limits().max_items).min(count);
    let mut node = first;
    let mut children = Vec::new();
    let mut steps = 0u64;
    while node != 0 && (children.len() as u64) < max_items {
        steps += 1;
        if steps > count.min(MAX_TREE_NODES as u64) + 1 || decoder.nodes_spent() >= MAX_NODES {
            break;
        }
        let storage = node.wrapping_add(storage_offset);
        children.push(map_entry(
            decoder,
            children.len(),
            is_set,
            key_type,
            mapped_type,
            storage,
            storage.wrapping_add(mapped_offset),
            depth,
        ));
        node = match read_word(decoder, Src::Memory(node), 0) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    value.truncated |= (children.len() as u64) < count;
    value.children = Some(children);
    Some(value)
}
