//! Mappings of a process come from the one /proc/PID/maps reader,
//! `crate::procmaps`, which the tracer shares.

pub use crate::procmaps::{Mapping, parse_maps};
