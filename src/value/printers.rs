//! Pretty printers for library types (Rust std, libstdc++), recognised by
//! type name and verified by field names; a layout that does not match falls
//! back to the generic struct view, never to garbage.

use std::sync::Arc;

use crate::debuginfo::types::{Type, TypeKey};

use super::Value;
use super::decode::{Decoder, Src};

/// The printed value, when a printer recognises the type.
pub(crate) fn pretty(
    _decoder: &mut Decoder<'_>,
    _name: &str,
    _key: TypeKey,
    _ty: &Arc<Type>,
    _src: Src<'_>,
    _depth: u32,
) -> Option<Value> {
    None
}
