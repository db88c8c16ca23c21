//! Line index (stub).
pub(crate) struct LineIndex;
