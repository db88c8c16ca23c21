//! Typed bytes to [`Value`]: the generic decoder for C, C++ and Rust types,
//! under [`Limits`] and [`Redaction`]. Pretty printers for library types
//! (see `printers`) plug in before the generic aggregate layout.
//!
//! Reads go through a [`PageCache`], an aggregate is read whole (one read for
//! all its fields), and arrays only as far as the limits show. Anything the
//! target controls (lengths, pointers, discriminants, cycles) is bounded: a
//! node budget caps the size of one answer, pointer chains are cut at depth
//! and at cycles.

use std::ops::Range;

use crate::debuginfo::types::{
    Aggregate, BaseEncoding, Language, Member, MemberOffset, Type, TypeKey, TypeKind, TypeTable,
};
use crate::debuginfo::{MemorySource, Module};

use super::NullKind;
use super::memory::PageCache;
use super::render::AGGREGATE_SUMMARY;
use super::{Limits, OptimizedOut, Redaction, Unavailable, Unsupported, Value};

/// Where a value's bytes are.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// In target memory at this address.
    Memory(u64),
    /// In hand: a register's contents, a computed or constant value, or
    /// pieces assembled from several places. `missing` are byte ranges the
    /// compiler did not keep (shown as optimized out where they are needed).
    Bytes {
        /// The value's bytes, little-endian.
        bytes: Vec<u8>,
        /// Byte ranges that are not available.
        missing: Vec<Range<usize>>,
    },
    /// Nowhere: the reason (`optimized out`, `unsupported: …`).
    Unavailable(Unavailable),
}

impl Place {
    /// In-hand bytes with nothing missing.
    pub fn bytes(bytes: Vec<u8>) -> Place {
        Place::Bytes {
            bytes,
            missing: Vec::new(),
        }
    }
}

/// Most values produced for one top-level value, whatever the limits say, so
/// that an answer (and liveprobe's memory) stays bounded.
pub const MAX_NODES: usize = 20_000;

/// Most values one decoder produces over all the values it decodes (a whole
/// `read_locals` answer); later values are cut to their summaries.
pub const MAX_TOTAL_NODES: usize = 100_000;

/// Largest object read in one piece; bigger aggregates are read per member.
const MAX_WHOLE_READ: u64 = 64 * 1024;

/// A source of bytes for one value being decoded.
#[derive(Clone, Copy)]
pub(crate) enum Src<'b> {
    /// Target memory.
    Memory(u64),
    /// A window of bytes in hand.
    View(View<'b>),
}

/// A window `[start, start + len)` of a buffer in hand.
#[derive(Clone, Copy)]
pub(crate) struct View<'b> {
    data: &'b [u8],
    missing: &'b [Range<usize>],
    start: usize,
    /// Target address of `data[0]`, when the bytes came from memory.
    address: Option<u64>,
}

impl<'b> View<'b> {
    pub(crate) fn new(
        data: &'b [u8],
        missing: &'b [Range<usize>],
        address: Option<u64>,
    ) -> View<'b> {
        View {
            data,
            missing,
            start: 0,
            address,
        }
    }

    fn at(&self, offset: u64) -> View<'b> {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        View {
            data: self.data,
            missing: self.missing,
            start: self.start.saturating_add(offset),
            address: self.address,
        }
    }

    fn address(&self) -> Option<u64> {
        self.address.map(|a| a.wrapping_add(self.start as u64))
    }

    /// `len` bytes from the window's start, or why they cannot be had.
    fn bytes(&self, len: usize) -> Result<&'b [u8], Unavailable> {
        let end = self
            .start
            .checked_add(len)
            .ok_or(Unavailable::Unsupported(Unsupported::ValueTooLarge))?;
        if self
            .missing
            .iter()
            .any(|r| r.start < end && r.end > self.start)
        {
            return Err(OptimizedOut::MissingPieces.into());
        }
        self.data
            .get(self.start..end)
            .ok_or(Unavailable::Unsupported(
                Unsupported::ValueLargerThanLocation,
            ))
    }
}

/// Turns typed bytes into [`Value`]s for one module's types.
pub struct Decoder<'a> {
    module: &'a Module,
    types: &'a mut TypeTable,
    memory: PageCache<'a>,
    limits: Limits,
    redaction: &'a Redaction,
    symbolize: &'a dyn Fn(u64) -> Option<String>,
    nodes: usize,
    /// Nodes produced over the decoder's life (see [`MAX_TOTAL_NODES`]).
    total_nodes: usize,
    /// Addresses of the pointees being expanded on the current path.
    pointer_path: Vec<u64>,
}

/// What a base type's bytes mean, for formatting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scalar {
    /// A signed integer.
    Signed(i128),
    /// An unsigned integer.
    Unsigned(u128),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl<'a> Decoder<'a> {
    /// A decoder over `module`'s types reading through `memory`.
    /// `symbolize` names an address (`main`, `counter+8`) for pointers.
    pub fn new(
        module: &'a Module,
        types: &'a mut TypeTable,
        memory: &'a dyn MemorySource,
        limits: &Limits,
        redaction: &'a Redaction,
        symbolize: &'a dyn Fn(u64) -> Option<String>,
    ) -> Decoder<'a> {
        Decoder {
            module,
            types,
            memory: PageCache::new(memory),
            limits: limits.clamped(),
            redaction,
            symbolize,
            nodes: 0,
            total_nodes: 0,
            pointer_path: Vec::new(),
        }
    }

    /// The module whose types this decoder reads.
    pub fn module(&self) -> &'a Module {
        self.module
    }

    /// The type table (for callers that need names of types).
    pub fn types(&mut self) -> &mut TypeTable {
        self.types
    }

    /// The memory this decoder reads through (cached).
    pub fn memory(&self) -> &dyn MemorySource {
        &self.memory
    }

    /// The display name of a type (`void` for none).
    pub fn type_name(&mut self, ty: Option<TypeKey>) -> String {
        match ty {
            Some(key) => self.types.get(self.module, key).name.clone(),
            None => "void".to_string(),
        }
    }

    /// The value named `name` of type `ty` at `place`, expanded as far as the
    /// limits allow, with secret-looking names redacted.
    pub fn decode(&mut self, name: &str, ty: Option<TypeKey>, place: &Place) -> Value {
        self.nodes = 0;
        self.pointer_path.clear();
        let depth = if self.total_nodes >= MAX_TOTAL_NODES {
            0
        } else {
            self.limits.depth
        };
        if self.redaction.is_secret(name) {
            let type_name = self.type_name(ty);
            return Value::redacted(name, type_name);
        }
        match place {
            // A zero-sized value (`()`, an empty struct) needs no location.
            Place::Unavailable(_)
                if ty.is_some_and(|t| self.types.size_of(self.module, t) == Some(0)) =>
            {
                let view = View::new(&[], &[], None);
                self.value(name, ty, Src::View(view), depth)
            }
            Place::Unavailable(reason) => {
                let type_name = self.type_name(ty);
                Value::unavailable(name, type_name, reason.clone())
            }
            Place::Memory(address) => self.value(name, ty, Src::Memory(*address), depth),
            Place::Bytes { bytes, missing } => {
                let view = View::new(bytes, missing, None);
                self.value(name, ty, Src::View(view), depth)
            }
        }
    }

    /// A computed pointer (a cast, `&x`, pointer arithmetic) holding
    /// `address`, rendered as a pointer variable of that type would be:
    /// a C `char`-family pointer as its bounded string, others with their
    /// pointee as child.
    pub fn decode_pointer(
        &mut self,
        name: &str,
        type_name: String,
        pointee: Option<TypeKey>,
        address: u64,
        language: Language,
    ) -> Value {
        self.nodes = 0;
        self.pointer_path.clear();
        if self.redaction.is_secret(name) {
            return Value::redacted(name, type_name);
        }
        let depth = if self.total_nodes >= MAX_TOTAL_NODES {
            0
        } else {
            self.limits.depth
        };
        self.spend_node();
        self.pointer(name, type_name, pointee, address, depth, language)
    }

    /// An array of `element` with `dims` (outermost first) at `place`, for
    /// rows of multi-dimensional arrays that have no DWARF type of their own.
    pub fn decode_array(
        &mut self,
        name: &str,
        type_name: String,
        element: TypeKey,
        dims: &[Option<u64>],
        place: &Place,
    ) -> Value {
        self.nodes = 0;
        self.pointer_path.clear();
        let depth = self.limits.depth;
        let language = self.types.get(self.module, element).language;
        match place {
            Place::Unavailable(reason) => Value::unavailable(name, type_name, reason.clone()),
            Place::Memory(address) => self.array(
                name,
                type_name,
                Some(element),
                dims,
                Src::Memory(*address),
                depth,
                language,
            ),
            Place::Bytes { bytes, missing } => {
                let view = View::new(bytes, missing, None);
                self.array(
                    name,
                    type_name,
                    Some(element),
                    dims,
                    Src::View(view),
                    depth,
                    language,
                )
            }
        }
    }

    /// Reads `len` bytes from a source.
    pub(crate) fn read(&self, src: Src<'_>, len: usize) -> Result<Vec<u8>, Unavailable> {
        match src {
            Src::View(view) => view.bytes(len).map(<[u8]>::to_vec),
            Src::Memory(address) => {
                let mut buf = vec![0u8; len];
                self.memory
                    .read_memory(address, &mut buf)
                    .map_err(|e| Unavailable::read_failed(e.addr, len))?;
                Ok(buf)
            }
        }
    }

    /// Reads a little-endian unsigned integer of `len` (≤ 16) bytes.
    pub(crate) fn read_uint(&self, src: Src<'_>, len: usize) -> Result<u128, Unavailable> {
        let len = len.min(16);
        let mut bytes = [0u8; 16];
        match src {
            Src::View(view) => bytes[..len].copy_from_slice(view.bytes(len)?),
            Src::Memory(address) => self
                .memory
                .read_memory(address, &mut bytes[..len])
                .map_err(|e| Unavailable::read_failed(e.addr, len))?,
        }
        Ok(u128::from_le_bytes(bytes))
    }

    /// The limits in force (clamped).
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many nodes the current value has produced.
    pub(crate) fn nodes_spent(&self) -> usize {
        if self.total_nodes >= MAX_TOTAL_NODES {
            MAX_NODES
        } else {
            self.nodes
        }
    }

    /// The target address of a source, when it has one.
    pub(crate) fn view_address(&self, src: Src<'_>) -> Option<u64> {
        match src {
            Src::Memory(address) => Some(address),
            Src::View(view) => view.address(),
        }
    }

    /// Starts expanding the pointee at `address`; false if it is already
    /// being expanded further up (a cycle).
    pub(crate) fn enter_pointer(&mut self, address: u64) -> bool {
        if self.pointer_path.contains(&address) {
            return false;
        }
        self.pointer_path.push(address);
        true
    }

    /// Ends the expansion started by [`Decoder::enter_pointer`].
    pub(crate) fn leave_pointer(&mut self) {
        self.pointer_path.pop();
    }

    /// Marks one more produced node; false once the budget is spent.
    pub(crate) fn spend_node(&mut self) -> bool {
        self.nodes += 1;
        self.total_nodes += 1;
        self.nodes <= MAX_NODES && self.total_nodes <= MAX_TOTAL_NODES
    }

    /// The core: the value of type `ty` at `src`, with `depth` levels of
    /// children still allowed.
    pub(crate) fn value(
        &mut self,
        name: &str,
        ty: Option<TypeKey>,
        src: Src<'_>,
        depth: u32,
    ) -> Value {
        self.spend_node();
        let Some(key) = ty else {
            return Value::unavailable(name, "void", Unsupported::NoType);
        };
        let ty = self.types.get(self.module, key);
        let type_name = ty.name.clone();
        if self.redaction.is_secret_type(&type_name) {
            return Value::redacted(name, type_name);
        }
        match &ty.kind {
            TypeKind::Typedef(Some(target))
            | TypeKind::Qualified {
                target: Some(target),
                ..
            } => {
                let mut value = self.value(name, Some(*target), src, depth);
                value.type_name = type_name;
                value
            }
            TypeKind::Typedef(None) | TypeKind::Qualified { target: None, .. } | TypeKind::Void => {
                Value::leaf(name, type_name, "void")
            }
            TypeKind::Base(encoding) => {
                let size = ty.size.unwrap_or(0) as usize;
                match self.read(src, size) {
                    Ok(bytes) => {
                        Value::leaf(name, type_name, format_base(*encoding, &bytes, ty.language))
                    }
                    Err(reason) => Value::unavailable(name, type_name, reason),
                }
            }
            TypeKind::Enum {
                signed,
                enumerators,
                ..
            } => {
                let size = ty.size.unwrap_or(4) as usize;
                match self.read_uint(src, size) {
                    Ok(raw) => {
                        let value = if *signed {
                            sign_extend(raw, size * 8)
                        } else {
                            raw as i128
                        };
                        let text = enumerators
                            .iter()
                            .find(|e| e.value == value)
                            .map(|e| e.name.clone())
                            .unwrap_or_else(|| value.to_string());
                        Value::leaf(name, type_name, text)
                    }
                    Err(reason) => Value::unavailable(name, type_name, reason),
                }
            }
            TypeKind::Pointer(pointee) => {
                match self.read_uint(src, ty.size.unwrap_or(8) as usize) {
                    Ok(address) => self.pointer(
                        name,
                        type_name,
                        *pointee,
                        address as u64,
                        depth,
                        ty.language,
                    ),
                    Err(reason) => Value::unavailable(name, type_name, reason),
                }
            }
            TypeKind::Reference { target, .. } => match self.read_uint(src, 8) {
                Ok(address) => {
                    let address = address as u64;
                    if address == 0 {
                        return Value::unavailable(
                            name,
                            type_name,
                            Unavailable::null(NullKind::Reference),
                        );
                    }
                    let mut value = self.value(name, *target, Src::Memory(address), depth);
                    value.type_name = type_name;
                    value
                }
                Err(reason) => Value::unavailable(name, type_name, reason),
            },
            TypeKind::Function => {
                let text = match src {
                    Src::Memory(address) => self.address_text(address),
                    Src::View(view) => view
                        .address()
                        .map(|a| self.address_text(a))
                        .unwrap_or_default(),
                };
                Value::leaf(name, type_name, text)
            }
            TypeKind::PointerToMember => {
                Value::unavailable(name, type_name, Unsupported::PointerToMember)
            }
            TypeKind::Unknown(reason) => Value::unavailable(name, type_name, reason.clone()),
            TypeKind::Array { element, dims } => {
                let element = *element;
                let dims = dims.clone();
                self.array(name, type_name, element, &dims, src, depth, ty.language)
            }
            TypeKind::Aggregate(aggregate) => {
                if let Some(value) = super::printers::pretty(self, name, key, &ty, src, depth) {
                    return value;
                }
                self.aggregate(name, type_name, key, &ty, aggregate, src, depth)
            }
        }
    }

    /// `0x401136 <main>` or `0x7ffd1234`.
    pub fn address_text(&self, address: u64) -> String {
        match (self.symbolize)(address) {
            Some(symbol) => format!("{address:#x} <{symbol}>"),
            None => format!("{address:#x}"),
        }
    }

    fn pointer(
        &mut self,
        name: &str,
        type_name: String,
        pointee: Option<TypeKey>,
        address: u64,
        depth: u32,
        language: Language,
    ) -> Value {
        let target = pointee.and_then(|p| self.types.strip(self.module, p));
        let mut value = Value::leaf(name, type_name, self.address_text(address));
        let Some((target_key, target_ty)) = target else {
            return value;
        };
        if address == 0 {
            return value;
        }
        match &target_ty.kind {
            TypeKind::Function => return value,
            TypeKind::Base(BaseEncoding::SignedChar | BaseEncoding::UnsignedChar)
                if target_ty.size == Some(1) && language != Language::Rust =>
            {
                match self.c_string(address) {
                    Ok((text, truncated)) => {
                        value.value = format!("{address:#x} {text}");
                        value.truncated = truncated;
                    }
                    Err(reason) => value.value = format!("{address:#x} <{reason}>"),
                }
                return value;
            }
            TypeKind::Void => return value,
            _ => {}
        }
        if depth == 0 {
            value.truncated = true;
            return value;
        }
        if self.pointer_path.contains(&address) {
            value
                .value
                .push_str(" (cycle: points to an enclosing value)");
            return value;
        }
        self.pointer_path.push(address);
        let pointee_name = format!("*{name}");
        let pointed = self.value(
            &pointee_name,
            Some(target_key),
            Src::Memory(address),
            depth - 1,
        );
        self.pointer_path.pop();
        let flatten = matches!(target_ty.kind, TypeKind::Aggregate(_))
            && pointed.unavailable.is_none()
            && pointed.value == AGGREGATE_SUMMARY;
        if flatten {
            value.children = pointed.children;
            value.truncated = pointed.truncated;
        } else {
            value.children = Some(vec![pointed]);
        }
        value
    }

    /// Reads a NUL-terminated string of at most `max_string` bytes, a page
    /// at a time so that a string ending just before unmapped memory reads.
    pub(crate) fn c_string(&self, address: u64) -> Result<(String, bool), Unavailable> {
        let max = self.limits.max_string as usize;
        let (mut bytes, ended) = self
            .memory
            .read_string(address, max + 1)
            .map_err(|e| Unavailable::read_error(e.addr))?;
        // Longer than the limit, or cut short by unreadable memory.
        let truncated = bytes.len() > max || !ended;
        bytes.truncate(max);
        let mut text = quote_bytes(&bytes, Language::C);
        if truncated {
            text.push_str("...");
        }
        Ok((text, truncated))
    }

    #[allow(clippy::too_many_arguments)]
    fn array(
        &mut self,
        name: &str,
        type_name: String,
        element: Option<TypeKey>,
        dims: &[Option<u64>],
        src: Src<'_>,
        depth: u32,
        language: Language,
    ) -> Value {
        let Some(element) = element else {
            return Value::unavailable(name, type_name, Unsupported::ArrayOfVoid);
        };
        let Some(count) = dims.first().copied().flatten() else {
            return Value::unavailable(name, type_name, Unsupported::ArrayWithoutLength);
        };
        let Some(element_size) = self.types.size_of(self.module, element) else {
            return Value::unavailable(name, type_name, Unsupported::ArrayElementSizeUnknown);
        };
        let inner_dims = &dims[1..];
        let Some(stride) = inner_dims
            .iter()
            .try_fold(element_size, |acc, d| d.and_then(|d| acc.checked_mul(d)))
        else {
            return Value::unavailable(name, type_name, Unsupported::ArrayWithoutLength);
        };
        // char arrays read as strings (C and C++ only: Rust [u8; N] is bytes).
        if inner_dims.is_empty() && language != Language::Rust {
            let stripped = self.types.strip(self.module, element).map(|(_, t)| t);
            if let Some(TypeKind::Base(BaseEncoding::SignedChar | BaseEncoding::UnsignedChar)) =
                stripped.as_ref().map(|t| &t.kind)
                && element_size == 1
            {
                let max = u64::from(self.limits.max_string);
                let shown = count.min(max.saturating_add(1));
                return match self.read(src, shown as usize) {
                    Ok(bytes) => {
                        // A C string ends at its NUL when only NULs follow;
                        // a byte buffer with data after a NUL shows it all.
                        let nul = bytes.iter().position(|b| *b == 0);
                        let end = match nul {
                            Some(at) if bytes[at..].iter().all(|b| *b == 0) => at,
                            _ => bytes.len(),
                        };
                        let shown_len = end.min(max as usize);
                        let mut text = quote_bytes(&bytes[..shown_len], language);
                        let truncated = shown_len < end || (nul.is_none() && count > max);
                        if truncated {
                            text.push_str("...");
                        }
                        let mut value = Value::leaf(name, type_name, text);
                        value.truncated = truncated;
                        value
                    }
                    Err(reason) => Value::unavailable(name, type_name, reason),
                };
            }
        }
        let mut value = Value::leaf(name, type_name, AGGREGATE_SUMMARY);
        if depth == 0 {
            value.truncated = count > 0;
            return value;
        }
        let shown = count.min(u64::from(self.limits.max_items));
        let Some(total) = stride.checked_mul(shown) else {
            return Value::unavailable(name, value.type_name, Unsupported::ArrayTooLarge);
        };
        let buffer;
        let view = match src {
            Src::View(view) => view,
            Src::Memory(address) => match self.read(src, total as usize) {
                Ok(bytes) => {
                    buffer = bytes;
                    View::new(&buffer, &[], Some(address))
                }
                Err(reason) => return Value::unavailable(name, value.type_name, reason),
            },
        };
        let element_type_name = if inner_dims.is_empty() {
            None
        } else {
            let base = self.type_name(Some(element));
            let dims_text: String = inner_dims
                .iter()
                .map(|d| format!("[{}]", d.unwrap_or(0)))
                .collect();
            Some(format!("{base} {dims_text}"))
        };
        let mut children = Vec::with_capacity(shown as usize);
        for i in 0..shown {
            if !self.spend_node() {
                value.truncated = true;
                break;
            }
            let child_name = format!("[{i}]");
            let child_src = Src::View(view.at(i * stride));
            let child = match &element_type_name {
                None => self.value(&child_name, Some(element), child_src, depth - 1),
                Some(sub_name) => self.array(
                    &child_name,
                    sub_name.clone(),
                    Some(element),
                    inner_dims,
                    child_src,
                    depth - 1,
                    language,
                ),
            };
            children.push(child);
        }
        value.truncated |= shown < count;
        value.children = Some(children);
        value
    }

    /// Reads an aggregate into hand when it lives in memory, so all of its
    /// fields cost one read; `f` decodes from the view.
    pub(crate) fn with_view<T>(
        &mut self,
        src: Src<'_>,
        size: Option<u64>,
        f: impl FnOnce(&mut Self, Src<'_>) -> T,
    ) -> Result<T, Unavailable> {
        match (src, size) {
            (Src::Memory(address), Some(size)) if size <= MAX_WHOLE_READ => {
                let bytes = self.read(src, size as usize)?;
                let view = View::new(&bytes, &[], Some(address));
                Ok(f(self, Src::View(view)))
            }
            _ => Ok(f(self, src)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &mut self,
        name: &str,
        type_name: String,
        key: TypeKey,
        ty: &Type,
        aggregate: &Aggregate,
        src: Src<'_>,
        depth: u32,
    ) -> Value {
        if aggregate.declaration && aggregate.members.is_empty() {
            if let Some(definition) = self.types.definition_of(self.module, key) {
                let mut value = self.value(name, Some(definition), src, depth);
                value.type_name = type_name;
                return value;
            }
            return Value::unavailable(name, type_name, Unsupported::IncompleteType);
        }
        if aggregate.variant_part.is_some() {
            return match self.with_view(src, ty.size, |this, src| {
                this.variant_value(name, &type_name, ty, aggregate, src, depth)
            }) {
                Ok(value) => value,
                Err(reason) => Value::unavailable(name, type_name, reason),
            };
        }
        let mut value = Value::leaf(name, type_name, AGGREGATE_SUMMARY);
        if depth == 0 {
            value.truncated = !aggregate.members.is_empty();
            return value;
        }
        let result = self.with_view(src, ty.size, |this, src| {
            this.members(&aggregate.members, src, depth, ty.language)
        });
        match result {
            Ok((children, truncated)) => {
                value.children = Some(children);
                value.truncated = truncated;
                value
            }
            Err(reason) => Value::unavailable(name, value.type_name, reason),
        }
    }

    /// The fields of an aggregate as children; anonymous struct/union
    /// members are flattened into their parent, as C11 lets code name them.
    pub(crate) fn members(
        &mut self,
        members: &[Member],
        src: Src<'_>,
        depth: u32,
        language: Language,
    ) -> (Vec<Value>, bool) {
        let mut children = Vec::new();
        let mut truncated = false;
        let max_items = self.limits.max_items as usize;
        for member in members {
            if children.len() >= max_items || self.nodes_spent() >= MAX_NODES {
                truncated = true;
                break;
            }
            if member.name.is_none() && !member.is_base {
                let Some(key) = member.ty else { continue };
                let stripped = self.types.strip(self.module, key);
                if let Some((_, inner)) = stripped
                    && let TypeKind::Aggregate(inner_aggregate) = &inner.kind
                    && inner_aggregate.variant_part.is_none()
                {
                    let MemberOffset::Bytes(offset) = member.offset else {
                        continue;
                    };
                    let (mut inner_children, inner_truncated) = self.members(
                        &inner_aggregate.members,
                        offset_src(src, offset),
                        depth,
                        language,
                    );
                    truncated |= inner_truncated;
                    children.append(&mut inner_children);
                    continue;
                }
            }
            children.push(self.member_value(member, src, depth - 1, language));
        }
        (children, truncated)
    }

    /// One member of an aggregate at `src` (the aggregate's start).
    pub(crate) fn member_value(
        &mut self,
        member: &Member,
        src: Src<'_>,
        depth: u32,
        language: Language,
    ) -> Value {
        let name = member_display_name(self, member, language);
        if self.redaction.is_secret(&name) {
            let type_name = self.type_name(member.ty);
            return Value::redacted(name, type_name);
        }
        if let (Some(bit_size), Some(bit_offset)) = (member.bit_size, member.bit_offset) {
            return self.bit_field(&name, member.ty, src, bit_offset, bit_size);
        }
        // The vtable pointer's pointee is a table of function pointers: noise.
        let depth = if member.artificial && name.starts_with("_vptr") {
            0
        } else {
            depth
        };
        match member.offset {
            MemberOffset::Bytes(offset) => {
                self.value(&name, member.ty, offset_src(src, offset), depth)
            }
            MemberOffset::Dynamic => {
                let type_name = self.type_name(member.ty);
                Value::unavailable(name, type_name, Unsupported::VirtualBase)
            }
        }
    }

    fn bit_field(
        &mut self,
        name: &str,
        ty: Option<TypeKey>,
        src: Src<'_>,
        bit_offset: u64,
        bit_size: u64,
    ) -> Value {
        let type_name = self.type_name(ty);
        if bit_size == 0 || bit_size > 64 {
            return Value::unavailable(
                name,
                type_name,
                Unsupported::BitFieldSize { bits: bit_size },
            );
        }
        let first_byte = bit_offset / 8;
        let shift = bit_offset % 8;
        let span = (shift + bit_size).div_ceil(8) as usize;
        let raw = match self.read_uint(offset_src(src, first_byte), span) {
            Ok(raw) => raw,
            Err(reason) => return Value::unavailable(name, type_name, reason),
        };
        let bits = (raw >> shift) & ((1u128 << bit_size) - 1);
        let stripped = ty
            .and_then(|t| self.types.strip(self.module, t))
            .map(|(_, t)| t);
        let text = match stripped.as_ref().map(|t| &t.kind) {
            Some(TypeKind::Base(BaseEncoding::Bool)) => (bits != 0).to_string(),
            Some(TypeKind::Base(BaseEncoding::Signed | BaseEncoding::SignedChar)) => {
                sign_extend(bits, bit_size as usize).to_string()
            }
            Some(TypeKind::Enum {
                signed,
                enumerators,
                ..
            }) => {
                let value = if *signed {
                    sign_extend(bits, bit_size as usize)
                } else {
                    bits as i128
                };
                enumerators
                    .iter()
                    .find(|e| e.value == value)
                    .map(|e| e.name.clone())
                    .unwrap_or_else(|| value.to_string())
            }
            _ => bits.to_string(),
        };
        Value::leaf(name, type_name, text)
    }

    /// A Rust enum (or any DWARF variant part): the active variant by its
    /// discriminant, `Some(5)` inline when its fields are short scalars.
    fn variant_value(
        &mut self,
        name: &str,
        type_name: &str,
        ty: &Type,
        aggregate: &Aggregate,
        src: Src<'_>,
        depth: u32,
    ) -> Value {
        let Some(part) = &aggregate.variant_part else {
            return Value::unavailable(name, type_name, Unsupported::EnumWithoutVariants);
        };
        let discriminant = match &part.discr {
            Some(discr) => {
                let size = discr
                    .ty
                    .and_then(|t| self.types.size_of(self.module, t))
                    .unwrap_or(8) as usize;
                let MemberOffset::Bytes(offset) = discr.offset else {
                    return Value::unavailable(
                        name,
                        type_name,
                        Unsupported::DiscriminantAtDynamicOffset,
                    );
                };
                match self.read_uint(offset_src(src, offset), size) {
                    Ok(raw) => Some(raw as u64),
                    Err(reason) => return Value::unavailable(name, type_name, reason),
                }
            }
            None => None,
        };
        let chosen = discriminant
            .and_then(|d| {
                part.variants
                    .iter()
                    .find(|v| v.discr.iter().any(|r| r.low <= d && d <= r.high))
            })
            .or_else(|| part.variants.iter().find(|v| v.discr.is_empty()));
        let Some(variant) = chosen else {
            return Value::unavailable(
                name,
                type_name,
                Unsupported::NoVariantMatches { discriminant },
            );
        };
        // Members directly in the aggregate besides the variant part (rare).
        let Some(arm) = variant.members.first() else {
            return Value::leaf(name, type_name, "{}");
        };
        let variant_name = arm.name.clone().unwrap_or_else(|| "?".to_string());
        let arm_type = arm.ty.and_then(|t| self.types.strip(self.module, t));
        let MemberOffset::Bytes(arm_offset) = arm.offset else {
            return Value::unavailable(name, type_name, Unsupported::VariantAtDynamicOffset);
        };
        let arm_src = offset_src(src, arm_offset);
        let fields: Vec<Member> = match arm_type.as_ref().map(|(_, t)| &t.kind) {
            Some(TypeKind::Aggregate(inner)) => inner
                .members
                .iter()
                .filter(|m| !m.artificial)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let mut value = Value::leaf(name, type_name, variant_name.clone());
        if fields.is_empty() {
            return value;
        }
        if depth == 0 {
            value.value = format!("{variant_name}(...)");
            value.truncated = true;
            return value;
        }
        let (mut children, truncated) = self.members(&fields, arm_src, depth, ty.language);
        let tuple_like = fields
            .iter()
            .all(|f| f.name.as_deref().is_some_and(|n| n.starts_with("__")));
        if tuple_like && children.len() == 1 && !truncated {
            // `Some(x)`: the variant wraps its only field, whose expansion
            // (a pointee, a struct) stays visible as children.
            let only = children.remove(0);
            if let Some(reason) = &only.unavailable {
                value.value = format!("{variant_name}(<{reason}>)");
                return value;
            }
            let inner = if only.value == AGGREGATE_SUMMARY {
                "..."
            } else {
                only.value.as_str()
            };
            value.value = format!("{variant_name}({inner})");
            value.children = only.children;
            value.truncated = only.truncated;
            return value;
        }
        let all_leaves = children
            .iter()
            .all(|c| c.children.is_none() && c.unavailable.is_none() && !c.truncated);
        let inline_len: usize = children
            .iter()
            .map(|c| c.value.len() + c.name.len() + 2)
            .sum();
        if all_leaves && !truncated && inline_len <= 80 {
            let parts: Vec<String> = children
                .iter()
                .map(|c| {
                    if tuple_like {
                        c.value.clone()
                    } else {
                        format!("{}: {}", c.name, c.value)
                    }
                })
                .collect();
            value.value = if tuple_like {
                format!("{variant_name}({})", parts.join(", "))
            } else {
                format!("{variant_name} {{ {} }}", parts.join(", "))
            };
            return value;
        }
        value.children = Some(children);
        value.truncated = truncated;
        value
    }
}

/// `src` moved `offset` bytes forward.
pub(crate) fn offset_src(src: Src<'_>, offset: u64) -> Src<'_> {
    match src {
        Src::Memory(address) => Src::Memory(address.wrapping_add(offset)),
        Src::View(view) => Src::View(view.at(offset)),
    }
}

/// A member's name as shown: Rust tuple fields `__0` → `0`, base classes as
/// `<Base>`, anonymous members as `<anonymous>`.
fn member_display_name(decoder: &mut Decoder<'_>, member: &Member, language: Language) -> String {
    if member.is_base {
        let base = decoder.type_name(member.ty);
        return format!("<{base}>");
    }
    match member.name.as_deref() {
        Some(name) if language == Language::Rust => {
            match name
                .strip_prefix("__")
                .filter(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
            {
                Some(index) => index.to_string(),
                None => name.to_string(),
            }
        }
        Some(name) => name.to_string(),
        None => "<anonymous>".to_string(),
    }
}

/// Sign-extends the low `bits` bits of `raw`.
pub fn sign_extend(raw: u128, bits: usize) -> i128 {
    if bits == 0 || bits >= 128 {
        return raw as i128;
    }
    let shift = 128 - bits;
    ((raw << shift) as i128) >> shift
}

/// Interprets a base type's bytes as a number.
pub(crate) fn scalar_of(encoding: BaseEncoding, bytes: &[u8]) -> Option<Scalar> {
    let size = bytes.len();
    if size == 0 || size > 16 {
        return None;
    }
    let mut buffer = [0u8; 16];
    buffer[..size].copy_from_slice(bytes);
    let raw = u128::from_le_bytes(buffer);
    Some(match encoding {
        BaseEncoding::Signed | BaseEncoding::SignedChar => {
            Scalar::Signed(sign_extend(raw, size * 8))
        }
        BaseEncoding::Unsigned | BaseEncoding::UnsignedChar | BaseEncoding::Utf => {
            Scalar::Unsigned(raw)
        }
        BaseEncoding::Bool => Scalar::Bool(raw != 0),
        BaseEncoding::Float => Scalar::Float(match size {
            4 => f64::from(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            8 => f64::from_le_bytes(buffer[..8].try_into().ok()?),
            10 | 12 | 16 => long_double_to_f64(&buffer[..10]),
            _ => return None,
        }),
        BaseEncoding::Other => return None,
    })
}

/// Converts an x87 80-bit extended float (`long double`) to the nearest f64.
pub fn long_double_to_f64(bytes: &[u8]) -> f64 {
    let mut mantissa_bytes = [0u8; 8];
    mantissa_bytes.copy_from_slice(&bytes[..8]);
    let mantissa = u64::from_le_bytes(mantissa_bytes);
    let sign_exponent = u16::from_le_bytes([bytes[8], bytes[9]]);
    let negative = sign_exponent & 0x8000 != 0;
    let exponent = i32::from(sign_exponent & 0x7fff);
    let magnitude = if exponent == 0 && mantissa == 0 {
        0.0
    } else if exponent == 0x7fff {
        if mantissa << 1 == 0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        (mantissa as f64) * 2f64.powi(exponent - 16383 - 63)
    };
    if negative { -magnitude } else { magnitude }
}

/// Text of a base-type value: `42`, `-1`, `3.5`, `true`, `97 'a'` (C char),
/// `'a'` (Rust char).
pub(crate) fn format_base(encoding: BaseEncoding, bytes: &[u8], language: Language) -> String {
    if bytes.is_empty() {
        // Zero-sized base types: Rust's unit `()`.
        return if language == Language::Rust {
            "()".to_string()
        } else {
            "void".to_string()
        };
    }
    match (encoding, scalar_of(encoding, bytes)) {
        (BaseEncoding::SignedChar | BaseEncoding::UnsignedChar, Some(scalar))
            if bytes.len() == 1 =>
        {
            let number = match scalar {
                Scalar::Signed(v) => v.to_string(),
                Scalar::Unsigned(v) => v.to_string(),
                _ => String::new(),
            };
            format!("{number} {}", quote_char(u32::from(bytes[0]), language))
        }
        (BaseEncoding::Utf, Some(Scalar::Unsigned(code))) => {
            let code = u32::try_from(code).unwrap_or(u32::MAX);
            if language == Language::Rust {
                quote_char(code, language)
            } else {
                format!("{code} {}", quote_char(code, language))
            }
        }
        (_, Some(Scalar::Signed(v))) => v.to_string(),
        (_, Some(Scalar::Unsigned(v))) => v.to_string(),
        (_, Some(Scalar::Bool(b))) => b.to_string(),
        (_, Some(Scalar::Float(f))) => format_float(f),
        (_, None) => {
            let hex: String = bytes.iter().rev().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Shortest round-trip text of a float, with `.0` kept for whole numbers
/// (so 1.0 does not read as an integer).
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        };
    }
    let text = format!("{value}");
    if text.contains('.') || text.contains('e') {
        text
    } else {
        format!("{text}.0")
    }
}

fn escape_char(c: char, out: &mut String, quote: char, language: Language) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        '\0' if language == Language::Rust => out.push_str("\\0"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            if language == Language::Rust {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
        }
        c => out.push(c),
    }
}

/// `'a'`, `'\n'`, `'\303'` (C) or `'\u{e9}'`-style text of a code point.
pub fn quote_char(code: u32, language: Language) -> String {
    let mut out = String::from("'");
    match char::from_u32(code) {
        Some(c) if code < 0x80 || language == Language::Rust => {
            escape_char(c, &mut out, '\'', language)
        }
        _ if code <= 0xff => out.push_str(&format!("\\{code:03o}")),
        Some(c) => out.push(c),
        None => out.push_str(&format!("\\x{code:x}")),
    }
    out.push('\'');
    out
}

/// A double-quoted, escaped rendering of bytes: valid UTF-8 shown as text,
/// other bytes escaped (octal for C/C++, `\x` for Rust).
pub fn quote_bytes(bytes: &[u8], language: Language) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                for c in text.chars() {
                    escape_char(c, &mut out, '"', language);
                }
                break;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                if let Ok(text) = std::str::from_utf8(valid) {
                    for c in text.chars() {
                        escape_char(c, &mut out, '"', language);
                    }
                }
                let bad_len = error.error_len().unwrap_or(after.len()).max(1);
                for byte in &after[..bad_len.min(after.len())] {
                    if language == Language::Rust {
                        out.push_str(&format!("\\x{byte:02x}"));
                    } else {
                        out.push_str(&format!("\\{byte:03o}"));
                    }
                }
                rest = &after[bad_len.min(after.len())..];
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_base_values() {
        assert_eq!(
            format_base(BaseEncoding::Signed, &(-5i32).to_le_bytes(), Language::C),
            "-5"
        );
        assert_eq!(
            format_base(BaseEncoding::Unsigned, &u64::MAX.to_le_bytes(), Language::C),
            "18446744073709551615"
        );
        assert_eq!(
            format_base(BaseEncoding::SignedChar, b"a", Language::C),
            "97 'a'"
        );
        assert_eq!(
            format_base(BaseEncoding::UnsignedChar, &[200], Language::C),
            "200 '\\310'"
        );
        assert_eq!(
            format_base(BaseEncoding::SignedChar, &[0xff], Language::C),
            "-1 '\\377'"
        );
        assert_eq!(
            format_base(BaseEncoding::Utf, &0x41u32.to_le_bytes(), Language::Rust),
            "'A'"
        );
        assert_eq!(
            format_base(BaseEncoding::Utf, &0x1F600u32.to_le_bytes(), Language::Rust),
            "'😀'"
        );
        assert_eq!(
            format_base(BaseEncoding::Bool, &[1], Language::Rust),
            "true"
        );
        assert_eq!(
            format_base(BaseEncoding::Float, &1.5f32.to_le_bytes(), Language::C),
            "1.5"
        );
        assert_eq!(
            format_base(BaseEncoding::Float, &2.0f64.to_le_bytes(), Language::C),
            "2.0"
        );
        assert_eq!(
            format_base(
                BaseEncoding::Signed,
                &(-7i128).to_le_bytes(),
                Language::Rust
            ),
            "-7"
        );
        // long double 3.0: mantissa 0xC000..., exponent 16384.
        let mut x87 = [0u8; 16];
        x87[..8].copy_from_slice(&0xC000_0000_0000_0000u64.to_le_bytes());
        x87[8..10].copy_from_slice(&16384u16.to_le_bytes());
        assert_eq!(format_base(BaseEncoding::Float, &x87, Language::C), "3.0");
    }

    #[test]
    fn quotes_strings_safely() {
        assert_eq!(
            quote_bytes(b"hi \"x\"\n", Language::C),
            "\"hi \\\"x\\\"\\n\""
        );
        assert_eq!(quote_bytes(&[b'a', 0xff, b'b'], Language::C), "\"a\\377b\"");
        assert_eq!(quote_bytes(&[b'a', 0xff], Language::Rust), "\"a\\xff\"");
        assert_eq!(quote_bytes("héllo".as_bytes(), Language::C), "\"héllo\"");
        assert_eq!(quote_char(0, Language::C), "'\\000'");
        assert_eq!(quote_char(0, Language::Rust), "'\\0'");
    }

    #[test]
    fn sign_extension() {
        assert_eq!(sign_extend(0b111, 3), -1);
        assert_eq!(sign_extend(0b011, 3), 3);
        assert_eq!(sign_extend(0xffff_ffff, 32), -1);
    }
}
