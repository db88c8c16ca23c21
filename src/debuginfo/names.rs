//! Name index (stub).
pub(crate) struct NameIndex;
