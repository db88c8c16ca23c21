//! The debuginfo room: ELF + DWARF for a process — loading modules (build-id, debuglink, compressed sections),
//! the lazy index (units, lines, functions), symbolization, location resolution and CFI unwinding.
//!
//! Pure: it reads target memory only through [`MemorySource`] and registers through [`Registers`], so it runs
//! the same on a live process, on bytes copied at a probe hit, or on a recording. It must never call ptrace
//! or know about the tracer.

mod addr;
mod blocks;
mod bytes;
mod call_site;
mod cfi;
mod demangle;
mod dies;
mod elf;
mod error;
mod extent;
mod frame_scope;
mod function_ranges;
mod image;
mod lines;
mod location;
mod maps;
mod memory;
mod module;
mod names;
mod object;
mod qualifiers;
mod registers;
pub mod scope;
mod source_frame;
mod symbolize;
mod symbols;
pub mod types;
mod unit_tables;
mod units;
mod unwind;

pub use addr::{FileAddr, RuntimeAddr};
pub use bytes::{DwarfReader, SectionBytes};
pub use call_site::{CallSiteCallee, CallSiteValue, call_site_value};
pub use demangle::{demangle, demangle_name};
pub(crate) use demangle::{is_legacy_closure_name, legacy_closure_spelling};
pub use error::{DebugInfoError, LocationError};
pub use extent::FunctionReturns;
pub use image::ProcessImage;
pub(crate) use lines::{file_path, normalize_path};
pub use location::{FunctionMatch, Resolution, ResolvedSite, SourceFileInfo, language_name};
pub use maps::{Mapping, parse_maps};
pub use memory::{MemoryError, MemorySource, RecordedMemory, read_string_by_pages, read_u64};
pub use module::Module;
pub use object::{DebugInfoStatus, LoadedObject};
pub use registers::{Registers, reg};
pub use source_frame::SourceFrame;
pub use unwind::{FrameIter, SiteUnwindRule, UnwindMethod, UnwoundFrame};
