//! What can go wrong when the engine answers a question, each with a message
//! that says what to do next.

use crate::debuginfo::{DebugInfoError, LocationError};
use crate::tracer::TraceError;

/// An engine failure; its `Display` is shown to the client as-is.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pid was never attached (or was detached).
    #[error("process {pid} is not attached: call attach with pid {pid} first")]
    NotAttached {
        /// The process asked for.
        pid: i32,
    },
    /// The policy forbids touching this process.
    #[error("process {pid} may not be attached: {reason}")]
    Refused {
        /// The process asked for.
        pid: i32,
        /// Why, in the policy's words.
        reason: String,
    },
    /// A bad argument, with the fix in the message.
    #[error("{0}")]
    BadArgument(String),
    /// Process control failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Debug info could not be loaded.
    #[error(transparent)]
    DebugInfo(#[from] DebugInfoError),
    /// A location or source file could not be resolved.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A function or file is in none of the modules loaded now.
    #[error(
        "{source}; searched the {modules} modules loaded in the process now: a library it loads later \
         (dlopen: plugins, modules) is searched as soon as it is loaded, so ask again once it is"
    )]
    NotLoaded {
        /// What the debug info said.
        source: LocationError,
        /// How many modules were searched.
        modules: usize,
    },
    /// Something that should not happen; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}
