//! The address newtypes live in `crate::addr`, below both the tracer and
//! debuginfo; debuginfo re-exports them where its callers have always
//! found them.

pub use crate::addr::{FileAddr, RuntimeAddr};
