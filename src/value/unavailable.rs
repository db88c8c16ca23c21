//! Why a value is missing, as a kind a program can match on, with the
//! details known where it was decided (an address, a register, a DWARF
//! problem, a type's shape), rendered (Display) as the reason text clients
//! read in a Value's `unavailable`.
//!
//! Every place in the value and eval rooms that decides a value cannot be
//! had builds one of these directly; the JSON stays the contract's string.
//! Reasons from the debug info room arrive typed too
//! ([`LocationProblem`], [`TypeProblem`]) and are sorted into their kind
//! here, by their type, never by their text.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU64;

use crate::debuginfo::reg;
use crate::debuginfo::scope::LocationProblem;
use crate::debuginfo::types::TypeProblem;

/// Why a value could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The compiler did not keep the value at this pc (or liveprobe cannot
    /// prove what it was there): `optimized out[: detail]`.
    OptimizedOut(OptimizedOut),
    /// Hidden because its name or type looks secret.
    Redacted,
    /// The memory holding it could not be read:
    /// `read error at 0x…[ (null pointer)]`.
    ReadError {
        /// The first address that could not be read.
        address: u64,
        /// How many bytes the failed read asked for, when it asked for a
        /// known number (a string read up to its NUL does not).
        size: Option<NonZeroU64>,
        /// Set when the address came from a null pointer or reference.
        null: Option<NullKind>,
    },
    /// The variable's scope has begun but its declaration has not run yet:
    /// `not yet initialized: …`.
    NotYetInitialized(NotYetInitialized),
    /// liveprobe cannot show this kind of value (or compute this
    /// expression) yet: `unsupported: …`.
    Unsupported(Unsupported),
    /// The debug info that describes it could not be read:
    /// `unreadable <part>[: error]`.
    UnreadableDebugInfo {
        /// Which part of the debug info.
        part: DebugInfoPart,
        /// gimli's error, when it gave one.
        error: Option<gimli::Error>,
    },
    /// liveprobe did not capture the value at the moment it stands for
    /// (a held thread let go, a write whose bytes could not be read).
    NotCaptured(NotCaptured),
    /// A reason of no other kind, as text: only for rooms that have not
    /// typed their reasons (see the `From<&str>` impl).
    Other(String),
}

/// Why a value was not captured at the moment it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCaptured {
    /// The thread held for a hit was let go after `deadline_ms` before
    /// this was read: what it read later is not the hit's.
    HeldTooLong {
        /// How long a hit may hold its thread.
        deadline_ms: u64,
    },
    /// The thread exited while its capture was being read.
    ThreadExited,
    /// A sample could not unwind thread `tid` down to the watched frame.
    FrameNotReached {
        /// The sampled thread.
        tid: i32,
    },
    /// The watched value could not be read when the watch was set.
    BeforeTheWatch,
    /// The watched bytes could not be read right after a write.
    AfterTheWrite,
}

impl std::fmt::Display for NotCaptured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotCaptured::HeldTooLong { deadline_ms } => write!(
                f,
                "capture took too long: the thread was let go after {deadline_ms} ms, before this was read"
            ),
            NotCaptured::ThreadExited => f.write_str(
                "the thread exited while its capture was being read, before this was read",
            ),
            NotCaptured::FrameNotReached { tid } => write!(
                f,
                "the stack of thread {tid} could not be unwound to the watched frame at this sample"
            ),
            NotCaptured::BeforeTheWatch => {
                f.write_str("the value before the watch was set could not be read")
            }
            NotCaptured::AfterTheWrite => {
                f.write_str("the watched bytes could not be read right after the write")
            }
        }
    }
}

impl From<NotCaptured> for Unavailable {
    fn from(why: NotCaptured) -> Unavailable {
        Unavailable::NotCaptured(why)
    }
}

/// How a null address was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullKind {
    /// Through a null pointer (`*p`, a container's null data pointer).
    Pointer,
    /// Through a C++ reference bound to address 0.
    Reference,
}

/// What exactly the compiler did not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptimizedOut {
    /// The debug info gives no location at this pc: `optimized out`.
    NoLocation,
    /// The location evaluated to nothing (an empty DWARF location).
    EmptyLocation,
    /// The bytes needed lie in pieces the compiler did not keep.
    MissingPieces,
    /// The value is in this DWARF register, which the frame does not have
    /// (a caller-saved register in a caller frame).
    Register {
        /// The DWARF register number (0..=16).
        register: u16,
    },
    /// The function's frame base has no location at this pc.
    NoFrameBase,
    /// The value is computed from its value at function entry, and no
    /// way to recover that is available here.
    EntryValueNeeded,
    /// The value at function entry could not be proven.
    EntryValueNotProvable(EntryValueProblem),
    /// The value comes from the caller's call site
    /// (`DW_OP_GNU_parameter_ref`).
    CallSiteParameter,
}

/// Why a value at function entry (`DW_OP_entry_value`) is not provable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryValueProblem {
    /// The entry value is an expression, not a plain register.
    NotAPlainRegister,
    /// The caller's frame could not be unwound.
    CallerNotUnwound,
    /// The caller's registers were guessed, not recovered from CFI.
    CallerRegistersGuessed,
    /// The function was entered by a signal.
    EnteredBySignal,
    /// The caller's pc is in no module.
    CallerOutsideModules,
    /// The caller's call site records nothing for this register.
    ArgumentNotRecorded,
    /// The caller's call site is a tail call.
    TailCallSite,
    /// The caller's unit cannot be read.
    CallerUnitUnreadable,
    /// The call site does not say what it calls.
    CalleeNotRecorded,
    /// The call site calls another function than this frame's.
    CallsAnother {
        /// This frame's function.
        callee: String,
    },
    /// This frame's pc is in no module.
    FrameOutsideModules,
    /// This frame's function has no symbol.
    FunctionWithoutSymbol,
    /// The call site's called address could not be computed.
    CalledAddress(CallSiteValue),
    /// The call site's value for the argument could not be computed.
    Value(CallSiteValue),
}

/// Why a value the call site records could not be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallSiteValue {
    /// Some of its bytes are missing.
    Incomplete,
    /// It is unavailable itself, for this reason.
    Unavailable(Box<Unavailable>),
}

/// How liveprobe knows a local's declaration has not run yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotYetInitialized {
    /// The frame's line comes before the declaration's.
    BeforeDeclaration {
        /// The declaration's line.
        declared: u64,
        /// The frame's line.
        frame: u64,
    },
    /// The frame is inside the call that computes the initial value.
    InitializerRunning {
        /// The declaration's line.
        declared: u64,
    },
}

/// A part of the debug info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugInfoPart {
    /// A location list (`.debug_loc`, `.debug_loclists`).
    LocationList,
    /// A location expression.
    Location,
    /// A `DW_AT_const_value`.
    Constant,
    /// A type's DIE.
    TypeEntry,
    /// The base type of a typed DWARF stack value.
    BaseType,
    /// A `.debug_addr` entry.
    AddressEntry,
    /// The bytes of an implicit value (`DW_OP_implicit_value`).
    ImplicitValue,
}

/// What liveprobe cannot show or compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsupported {
    // Locations (DWARF expressions at a frame).
    /// The value is in a register and no thread is stopped.
    RegisterWithoutThread,
    /// The value is in a DWARF register liveprobe does not capture.
    RegisterNotCaptured {
        /// The DWARF register number.
        register: u16,
    },
    /// The frame base is neither an address nor a word.
    FrameBaseShape,
    /// The frame base is a constant.
    ConstantFrameBase,
    /// gimli could not evaluate the location expression.
    LocationExpression(gimli::Error),
    /// A frame base is needed but there is no function.
    FrameBaseOutsideFunction,
    /// The frame's CFA is unknown.
    CfaUnknown,
    /// A thread-local with no stopped thread or no static TLS.
    ThreadLocal,
    /// An indexed address with no DWARF to look it up in.
    IndexedAddressWithoutDwarf,
    /// A typed stack value of a base type gimli does not know.
    UnknownBaseType,
    /// A typed stack value that does not fit its base type.
    TypedValue(gimli::Error),
    /// `DW_OP_call2`/`call4`/`call_ref`: the location of another DIE.
    CallOperation,
    /// A WebAssembly location.
    WebAssembly,
    /// An implicit pointer: the pointee was optimized into the pointer.
    ImplicitPointer,
    /// An implicit pointer as one piece of a value.
    ImplicitPointerPiece,
    /// More pieces than liveprobe assembles.
    TooManyPieces {
        /// The bytes the pieces add up to.
        bytes: u64,
    },
    /// Pieces that are not whole bytes.
    BitPieces,
    /// The debug info's location of the variable cannot be used.
    Location(LocationProblem),

    // Types and their bytes.
    /// The variable has no type in the debug info.
    NoType,
    /// A pointer to member.
    PointerToMember,
    /// The type's DIE could not be decoded.
    Type(TypeProblem),
    /// An array whose element type is void.
    ArrayOfVoid,
    /// An array with no known length.
    ArrayWithoutLength,
    /// An array whose elements have no known size.
    ArrayElementSizeUnknown,
    /// An array too large to address.
    ArrayTooLarge,
    /// A declared type whose definition is not in the unit.
    IncompleteType,
    /// A virtual base class.
    VirtualBase,
    /// A bit-field of 0 or more than 64 bits.
    BitFieldSize {
        /// Its size in bits.
        bits: u64,
    },
    /// A variant part with no variants.
    EnumWithoutVariants,
    /// A discriminant at an offset computed at run time.
    DiscriminantAtDynamicOffset,
    /// No variant matches the discriminant (and none is the default).
    NoVariantMatches {
        /// The discriminant read, when the enum has one.
        discriminant: Option<u64>,
    },
    /// A variant at an offset computed at run time.
    VariantAtDynamicOffset,
    /// The type is larger than the bytes its location holds.
    ValueLargerThanLocation,
    /// The bytes in hand are fewer than the type needs.
    ValueSmallerThanType,
    /// A value too large to address.
    ValueTooLarge,
    /// A `std::map`/`std::set` held in registers: its nodes point at its
    /// header, which then has no address.
    MapInRegisters,
    /// The container's fields contradict each other.
    Corrupt(Corruption),

    // Expressions.
    /// A local named with no stopped frame.
    LocalWithoutFrame,
    /// A global whose unit cannot be read.
    GlobalUnitUnreadable,
    /// The frame's unit cannot be read.
    FrameUnitUnreadable,
    /// The expression, compiled at another pc, does not compile at this one.
    NotCompilableHere {
        /// The compiler's message.
        error: String,
    },
    /// `.field` of a computed value.
    FieldOfComputedValue,
    /// `&x` of a value held in a register.
    AddressOfRegisterValue,
    /// `&` of a computed value.
    AddressOfComputedValue,
    /// An index outside the array.
    IndexOutOfRange {
        /// The index (None when it does not fit an i64).
        index: Option<i64>,
        /// The array's length.
        length: u64,
    },
    /// An index times the stride overflows.
    IndexOverflows,
    /// `[i]` of a computed value.
    IndexOfComputedValue,
    /// A unary operator on a type it does not apply to.
    OperatorOnType,
    /// `len()` of a number.
    LenOfNumber,
    /// `==` on strings with no literal side.
    StringComparisonWithoutLiteral,
    /// An operator floats do not have.
    OperatorOnFloats,
    /// An operator integers do not have.
    OperatorOnIntegers,
    /// Division or remainder by zero.
    DivisionByZero,
    /// A shift by a negative amount or by at least the width.
    ShiftOutOfRange {
        /// The shift amount (None when it does not fit an i64).
        by: Option<i64>,
        /// The width of the shifted value.
        bits: u32,
    },
    /// A string literal used as a number.
    StringIsNotANumber,
    /// An array used as a number.
    ArrayIsNotANumber,
    /// A value of another class used as a number.
    NotANumber,
    /// An array held in a register (it has no address).
    ArrayInRegister,
    /// A string literal's address asked for.
    StringLiteralHasNoAddress,
    /// `len()` of a C string with no NUL within the scan limit.
    NoNulWithin {
        /// The bytes scanned.
        bytes: u64,
    },
    /// A libc++ string layout asked of another type.
    NotALibcxxString,
    /// `len()` of a container of unknown layout.
    LenUnknownLayout,
    /// A string operation on a value that is not a string.
    NotAString,
    /// A computed value where a debug-info typed value is needed.
    NotDebugInfoTyped,
}

/// Fields of a container that contradict each other (an uninitialised or
/// overwritten object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// A Rust `Vec` longer than its capacity.
    VecLengthOverCapacity,
    /// A Rust `VecDeque` longer than its capacity.
    VecDequeLengthOverCapacity,
    /// A Rust hash table with an impossible bucket count.
    HashTable,
    /// A Rust `BTreeMap` taller than any real one.
    BTreeMapHeight,
    /// A libstdc++ `std::vector` whose pointers are out of order.
    StdVector,
    /// A libc++ string whose bytes are no valid representation.
    LibcxxString,
}

impl Unavailable {
    /// Optimized out, with nothing more to say.
    pub const OPTIMIZED_OUT: Unavailable = Unavailable::OptimizedOut(OptimizedOut::NoLocation);

    /// Memory at `address` could not be read (a read of unknown size).
    pub fn read_error(address: u64) -> Unavailable {
        Unavailable::ReadError {
            address,
            size: None,
            null: None,
        }
    }

    /// A read of `size` bytes failed, first at `address`.
    pub fn read_failed(address: u64, size: usize) -> Unavailable {
        Unavailable::ReadError {
            address,
            size: NonZeroU64::new(size as u64),
            null: None,
        }
    }

    /// A read through a null pointer or reference.
    pub fn null(kind: NullKind) -> Unavailable {
        Unavailable::ReadError {
            address: 0,
            size: None,
            null: Some(kind),
        }
    }

    /// A part of the debug info could not be read.
    pub fn unreadable(part: DebugInfoPart, error: Option<gimli::Error>) -> Unavailable {
        Unavailable::UnreadableDebugInfo { part, error }
    }

    /// A machine name of the kind (`optimized_out`, `read_error`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Unavailable::OptimizedOut(_) => "optimized_out",
            Unavailable::Redacted => "redacted",
            Unavailable::ReadError { .. } => "read_error",
            Unavailable::NotYetInitialized(_) => "not_yet_initialized",
            Unavailable::Unsupported(_) => "unsupported",
            Unavailable::UnreadableDebugInfo { .. } => "unreadable_debug_info",
            Unavailable::NotCaptured(_) => "not_captured",
            Unavailable::Other(_) => "other",
        }
    }
}

impl From<OptimizedOut> for Unavailable {
    fn from(why: OptimizedOut) -> Unavailable {
        Unavailable::OptimizedOut(why)
    }
}

impl From<Unsupported> for Unavailable {
    fn from(what: Unsupported) -> Unavailable {
        Unavailable::Unsupported(what)
    }
}

impl From<NotYetInitialized> for Unavailable {
    fn from(why: NotYetInitialized) -> Unavailable {
        Unavailable::NotYetInitialized(why)
    }
}

impl From<LocationProblem> for Unavailable {
    /// A location the debug info room could not read is unreadable debug
    /// info; one it read but liveprobe cannot use is unsupported.
    fn from(problem: LocationProblem) -> Unavailable {
        match problem {
            LocationProblem::UnreadableLocationList(error) => {
                Unavailable::unreadable(DebugInfoPart::LocationList, Some(error))
            }
            LocationProblem::UnreadableConstant(error) => {
                Unavailable::unreadable(DebugInfoPart::Constant, Some(error))
            }
            LocationProblem::UnreadableExpression => {
                Unavailable::unreadable(DebugInfoPart::Location, None)
            }
            other => Unavailable::Unsupported(Unsupported::Location(other)),
        }
    }
}

impl From<TypeProblem> for Unavailable {
    /// A type DIE that could not be read is unreadable debug info; one
    /// that is not a type is unsupported.
    fn from(problem: TypeProblem) -> Unavailable {
        match problem {
            TypeProblem::UnreadableEntry(error) => {
                Unavailable::unreadable(DebugInfoPart::TypeEntry, Some(error))
            }
            other => Unavailable::Unsupported(Unsupported::Type(other)),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::OptimizedOut(why) => why.fmt(f),
            Unavailable::Redacted => f.write_str("redacted"),
            Unavailable::ReadError { address, null, .. } => {
                write!(f, "read error at {address:#x}")?;
                match null {
                    None => Ok(()),
                    Some(NullKind::Pointer) => f.write_str(" (null pointer)"),
                    Some(NullKind::Reference) => f.write_str(" (null reference)"),
                }
            }
            Unavailable::NotYetInitialized(why) => why.fmt(f),
            Unavailable::Unsupported(what) => write!(f, "unsupported: {what}"),
            Unavailable::UnreadableDebugInfo { part, error } => {
                write!(f, "unreadable {}", part.text())?;
                match error {
                    Some(error) => write!(f, ": {error}"),
                    None => Ok(()),
                }
            }
            Unavailable::NotCaptured(why) => why.fmt(f),
            Unavailable::Other(reason) => f.write_str(reason),
        }
    }
}

impl fmt::Display for OptimizedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("optimized out")?;
        match self {
            OptimizedOut::NoLocation
            | OptimizedOut::EmptyLocation
            | OptimizedOut::MissingPieces => Ok(()),
            OptimizedOut::Register { register } => write!(
                f,
                ": register {} is not known in this frame (not saved by the callee, or a system call's result not there yet)",
                register_name(*register)
            ),
            OptimizedOut::NoFrameBase => f.write_str(": the function has no frame base here"),
            OptimizedOut::EntryValueNeeded => f.write_str(": needs the value at function entry"),
            OptimizedOut::EntryValueNotProvable(why) => {
                write!(f, ": entry value not provable at this pc ({why})")
            }
            OptimizedOut::CallSiteParameter => f.write_str(": parameter value from the call site"),
        }
    }
}

/// A DWARF register's name (`rbx`), or its number when it has none here.
fn register_name(register: u16) -> Cow<'static, str> {
    match reg::NAMES.get(usize::from(register)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("DWARF register {register}")),
    }
}

impl fmt::Display for EntryValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            EntryValueProblem::NotAPlainRegister => "the value at entry is not a plain register",
            EntryValueProblem::CallerNotUnwound => "the caller's frame could not be unwound",
            EntryValueProblem::CallerRegistersGuessed => {
                "the caller's registers were not recovered from unwind information"
            }
            EntryValueProblem::EnteredBySignal => {
                "the function was entered by a signal, not a call"
            }
            EntryValueProblem::CallerOutsideModules => "the caller is outside every module",
            EntryValueProblem::ArgumentNotRecorded => {
                "the caller's call site does not record this argument"
            }
            EntryValueProblem::TailCallSite => "the caller's call site is a tail call",
            EntryValueProblem::CallerUnitUnreadable => "the caller's unit cannot be read",
            EntryValueProblem::CalleeNotRecorded => {
                "the caller's call site does not say what it calls"
            }
            EntryValueProblem::CallsAnother { callee } => {
                return write!(
                    f,
                    "the caller's call site calls another function than {callee} (a tail call came between)"
                );
            }
            EntryValueProblem::FrameOutsideModules => "the frame is outside every module",
            EntryValueProblem::FunctionWithoutSymbol => "the frame's function has no symbol",
            EntryValueProblem::CalledAddress(value) => {
                return write!(f, "the called address is unknown: {value}");
            }
            EntryValueProblem::Value(value) => return value.fmt(f),
        };
        f.write_str(text)
    }
}

impl fmt::Display for CallSiteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallSiteValue::Incomplete => f.write_str("the call site value is incomplete"),
            CallSiteValue::Unavailable(reason) => write!(f, "the call site value: {reason}"),
        }
    }
}

impl fmt::Display for NotYetInitialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotYetInitialized::BeforeDeclaration { declared, frame } => write!(
                f,
                "not yet initialized: declared at line {declared}, the frame is at line {frame}"
            ),
            NotYetInitialized::InitializerRunning { declared } => write!(
                f,
                "not yet initialized: the call that computes its initial value (line {declared}) is still running"
            ),
        }
    }
}

impl DebugInfoPart {
    fn text(self) -> &'static str {
        match self {
            DebugInfoPart::LocationList => "location list",
            DebugInfoPart::Location => "location",
            DebugInfoPart::Constant => "constant",
            DebugInfoPart::TypeEntry => "type entry",
            DebugInfoPart::BaseType => "base type",
            DebugInfoPart::AddressEntry => ".debug_addr entry",
            DebugInfoPart::ImplicitValue => "implicit value",
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Unsupported::RegisterWithoutThread => {
                "the value lives in a register and no thread is stopped (give a tid/frame)"
            }
            Unsupported::RegisterNotCaptured { register } => {
                return if (17..=32).contains(register) {
                    write!(
                        f,
                        "value is in register xmm{}, which liveprobe does not capture",
                        register - 17
                    )
                } else {
                    write!(
                        f,
                        "value is in DWARF register {register}, which liveprobe does not capture"
                    )
                };
            }
            Unsupported::FrameBaseShape => "frame base of an unexpected shape",
            Unsupported::ConstantFrameBase => "constant frame base",
            Unsupported::LocationExpression(error) => {
                return write!(f, "cannot evaluate the location expression ({error})");
            }
            Unsupported::FrameBaseOutsideFunction => "frame base needed outside a function",
            Unsupported::CfaUnknown => "the frame's CFA is unknown (no unwind info)",
            Unsupported::ThreadLocal => {
                "thread-local variable (needs a stopped thread of a module with static TLS)"
            }
            Unsupported::IndexedAddressWithoutDwarf => "no DWARF for an indexed address",
            Unsupported::UnknownBaseType => "typed DWARF stack value of an unknown base type",
            Unsupported::TypedValue(error) => {
                return write!(f, "typed DWARF stack value: {error}");
            }
            Unsupported::CallOperation => "DW_OP_call (location of another DIE)",
            Unsupported::WebAssembly => "WebAssembly location",
            Unsupported::ImplicitPointer => {
                "implicit pointer (the pointed-to value was optimized into the pointer)"
            }
            Unsupported::ImplicitPointerPiece => "implicit pointer piece",
            Unsupported::TooManyPieces { .. } => "value assembled from too many pieces",
            Unsupported::BitPieces => "value split into bit-sized pieces",
            Unsupported::Location(problem) => return problem.fmt(f),
            Unsupported::NoType => "the variable has no type in the debug info",
            Unsupported::PointerToMember => "pointers to members",
            Unsupported::Type(problem) => return problem.fmt(f),
            Unsupported::ArrayOfVoid => "array of void",
            Unsupported::ArrayWithoutLength => "array without a known length",
            Unsupported::ArrayElementSizeUnknown => "array of elements of unknown size",
            Unsupported::ArrayTooLarge => "array is too large",
            Unsupported::IncompleteType => {
                "incomplete type (its definition is not in this unit's debug info)"
            }
            Unsupported::VirtualBase => "virtual base class (offset computed at run time)",
            Unsupported::BitFieldSize { bits: 0 } => "bit-field of 0 bits",
            Unsupported::BitFieldSize { .. } => "bit-field wider than 64 bits",
            Unsupported::EnumWithoutVariants => "enum without variants",
            Unsupported::DiscriminantAtDynamicOffset => "enum discriminant at a dynamic offset",
            Unsupported::NoVariantMatches {
                discriminant: Some(discriminant),
            } => {
                return write!(
                    f,
                    "discriminant {discriminant} matches no variant (uninitialized?)"
                );
            }
            Unsupported::NoVariantMatches { discriminant: None } => {
                "the enum has no discriminant and no default variant"
            }
            Unsupported::VariantAtDynamicOffset => "variant at a dynamic offset",
            Unsupported::ValueLargerThanLocation => "value is larger than its location",
            Unsupported::ValueSmallerThanType => "value is smaller than its type",
            Unsupported::ValueTooLarge => "value is too large",
            Unsupported::MapInRegisters => "std::map held in registers",
            Unsupported::Corrupt(corruption) => corruption.text(),
            Unsupported::LocalWithoutFrame => "a local needs a stopped frame",
            Unsupported::GlobalUnitUnreadable => "the global's unit cannot be read",
            Unsupported::FrameUnitUnreadable => "the frame's unit cannot be read",
            Unsupported::NotCompilableHere { error } => return f.write_str(error),
            Unsupported::FieldOfComputedValue => "field of a computed value",
            Unsupported::AddressOfRegisterValue => {
                "the value lives in a register and has no address"
            }
            Unsupported::AddressOfComputedValue => "`&` of a computed value",
            Unsupported::IndexOutOfRange {
                index: Some(index),
                length,
            } => {
                return write!(f, "index {index} is out of range (length {length})");
            }
            Unsupported::IndexOutOfRange {
                index: None,
                length,
            } => {
                return write!(f, "index is out of range (length {length})");
            }
            Unsupported::IndexOverflows => "index overflows",
            Unsupported::IndexOfComputedValue => "index of a computed value",
            Unsupported::OperatorOnType => "operator on this type",
            Unsupported::LenOfNumber => "len() of a number",
            Unsupported::StringComparisonWithoutLiteral => "string comparison without a literal",
            Unsupported::OperatorOnFloats => "operator on floats",
            Unsupported::OperatorOnIntegers => "operator on integers",
            Unsupported::DivisionByZero => "division by zero",
            Unsupported::ShiftOutOfRange { by: Some(by), bits } => {
                return write!(f, "shift by {by} is out of range for {bits} bits");
            }
            Unsupported::ShiftOutOfRange { by: None, bits } => {
                return write!(f, "shift out of range for {bits} bits");
            }
            Unsupported::StringIsNotANumber => "a string is not a number",
            Unsupported::ArrayIsNotANumber => "an array is not a number",
            Unsupported::NotANumber => "this value is not a number",
            Unsupported::ArrayInRegister => "array in a register",
            Unsupported::StringLiteralHasNoAddress => {
                "a string literal has no address in the target"
            }
            Unsupported::NoNulWithin { bytes } => {
                return write!(f, "no NUL within {bytes} bytes");
            }
            Unsupported::NotALibcxxString => "not a libc++ string",
            Unsupported::LenUnknownLayout => "len() does not know this container's layout",
            Unsupported::NotAString => "not a string",
            Unsupported::NotDebugInfoTyped => "expected a value with a debug-info type",
        };
        f.write_str(text)
    }
}

impl Corruption {
    fn text(self) -> &'static str {
        match self {
            Corruption::VecLengthOverCapacity => {
                "length exceeds capacity (uninitialised or corrupt Vec)"
            }
            Corruption::VecDequeLengthOverCapacity => "corrupt VecDeque (length exceeds capacity)",
            Corruption::HashTable => "corrupt hash table (uninitialised?)",
            Corruption::BTreeMapHeight => "corrupt BTreeMap (height)",
            Corruption::StdVector => "corrupt std::vector (uninitialised?)",
            Corruption::LibcxxString => "the libc++ string's bytes are not a valid string",
        }
    }
}

impl From<&str> for Unavailable {
    /// A reason as text, for the rooms that have not typed theirs (watch
    /// samples). It is kept as [`Unavailable::Other`]: text is never
    /// sorted into a kind.
    fn from(text: &str) -> Unavailable {
        Unavailable::Other(text.to_string())
    }
}

impl From<String> for Unavailable {
    /// As `From<&str>`: kept as text, of kind `other`.
    fn from(text: String) -> Unavailable {
        Unavailable::Other(text)
    }
}

impl serde::Serialize for Unavailable {
    /// As its reason text: the contract's `unavailable` is a string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Unavailable {
    fn schema_name() -> Cow<'static, str> {
        "Unavailable".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debuginfo::scope::ClosureObjectShape;

    fn unsupported(what: Unsupported) -> Unavailable {
        Unavailable::Unsupported(what)
    }

    /// Each reason, the text clients read (`{gimli}` stands for gimli's
    /// message) and its kind.
    fn reasons() -> Vec<(Unavailable, &'static str, &'static str)> {
        let gimli_error = gimli::Error::UnexpectedEof(gimli::ReaderOffsetId(0));
        vec![
            (Unavailable::OPTIMIZED_OUT, "optimized out", "optimized_out"),
            (
                OptimizedOut::MissingPieces.into(),
                "optimized out",
                "optimized_out",
            ),
            (
                OptimizedOut::Register { register: 3 }.into(),
                "optimized out: register rbx is not known in this frame (not saved by the callee, or a system call's result not there yet)",
                "optimized_out",
            ),
            (
                OptimizedOut::NoFrameBase.into(),
                "optimized out: the function has no frame base here",
                "optimized_out",
            ),
            (
                OptimizedOut::EntryValueNotProvable(EntryValueProblem::CallsAnother {
                    callee: "compute".into(),
                })
                .into(),
                "optimized out: entry value not provable at this pc (the caller's call site calls another function than compute (a tail call came between))",
                "optimized_out",
            ),
            (
                OptimizedOut::EntryValueNotProvable(EntryValueProblem::CalledAddress(
                    CallSiteValue::Unavailable(Box::new(Unavailable::read_error(0x20))),
                ))
                .into(),
                "optimized out: entry value not provable at this pc (the called address is unknown: the call site value: read error at 0x20)",
                "optimized_out",
            ),
            (
                OptimizedOut::EntryValueNotProvable(EntryValueProblem::Value(
                    CallSiteValue::Incomplete,
                ))
                .into(),
                "optimized out: entry value not provable at this pc (the call site value is incomplete)",
                "optimized_out",
            ),
            (Unavailable::Redacted, "redacted", "redacted"),
            (
                Unavailable::read_failed(0x7ffd_1000, 8),
                "read error at 0x7ffd1000",
                "read_error",
            ),
            (
                Unavailable::null(NullKind::Pointer),
                "read error at 0x0 (null pointer)",
                "read_error",
            ),
            (
                Unavailable::null(NullKind::Reference),
                "read error at 0x0 (null reference)",
                "read_error",
            ),
            (
                NotYetInitialized::BeforeDeclaration {
                    declared: 12,
                    frame: 10,
                }
                .into(),
                "not yet initialized: declared at line 12, the frame is at line 10",
                "not_yet_initialized",
            ),
            (
                NotYetInitialized::InitializerRunning { declared: 7 }.into(),
                "not yet initialized: the call that computes its initial value (line 7) is still running",
                "not_yet_initialized",
            ),
            (
                unsupported(Unsupported::RegisterNotCaptured { register: 17 }),
                "unsupported: value is in register xmm0, which liveprobe does not capture",
                "unsupported",
            ),
            (
                unsupported(Unsupported::RegisterNotCaptured { register: 49 }),
                "unsupported: value is in DWARF register 49, which liveprobe does not capture",
                "unsupported",
            ),
            (
                unsupported(Unsupported::LocationExpression(gimli_error)),
                "unsupported: cannot evaluate the location expression ({gimli})",
                "unsupported",
            ),
            (
                unsupported(Unsupported::IndexOutOfRange {
                    index: Some(-1),
                    length: 4,
                }),
                "unsupported: index -1 is out of range (length 4)",
                "unsupported",
            ),
            (
                unsupported(Unsupported::IndexOutOfRange {
                    index: None,
                    length: 4,
                }),
                "unsupported: index is out of range (length 4)",
                "unsupported",
            ),
            (
                unsupported(Unsupported::ShiftOutOfRange {
                    by: Some(40),
                    bits: 32,
                }),
                "unsupported: shift by 40 is out of range for 32 bits",
                "unsupported",
            ),
            (
                unsupported(Unsupported::NoVariantMatches {
                    discriminant: Some(9),
                }),
                "unsupported: discriminant 9 matches no variant (uninitialized?)",
                "unsupported",
            ),
            (
                unsupported(Unsupported::NoVariantMatches { discriminant: None }),
                "unsupported: the enum has no discriminant and no default variant",
                "unsupported",
            ),
            (
                unsupported(Unsupported::BitFieldSize { bits: 0 }),
                "unsupported: bit-field of 0 bits",
                "unsupported",
            ),
            (
                unsupported(Unsupported::BitFieldSize { bits: 65 }),
                "unsupported: bit-field wider than 64 bits",
                "unsupported",
            ),
            (
                unsupported(Unsupported::Corrupt(Corruption::HashTable)),
                "unsupported: corrupt hash table (uninitialised?)",
                "unsupported",
            ),
            (
                unsupported(Unsupported::NoNulWithin { bytes: 1 << 20 }),
                "unsupported: no NUL within 1048576 bytes",
                "unsupported",
            ),
            (
                unsupported(Unsupported::NotCompilableHere {
                    error: "type error at column 1: no field z".into(),
                }),
                "unsupported: type error at column 1: no field z",
                "unsupported",
            ),
            (
                LocationProblem::ClosureObject(ClosureObjectShape::Pieces).into(),
                "unsupported: capture through a closure object split in pieces",
                "unsupported",
            ),
            (
                TypeProblem::NotAType(gimli::constants::DW_TAG_variable).into(),
                "unsupported: DW_TAG_variable is not a type",
                "unsupported",
            ),
            (
                TypeProblem::NoUnit { offset: 0x2a }.into(),
                "unsupported: no unit at .debug_info offset 0x2a",
                "unsupported",
            ),
            (
                LocationProblem::UnreadableLocationList(gimli_error).into(),
                "unreadable location list: {gimli}",
                "unreadable_debug_info",
            ),
            (
                LocationProblem::UnreadableConstant(gimli_error).into(),
                "unreadable constant: {gimli}",
                "unreadable_debug_info",
            ),
            (
                LocationProblem::UnreadableExpression.into(),
                "unreadable location",
                "unreadable_debug_info",
            ),
            (
                TypeProblem::UnreadableEntry(gimli_error).into(),
                "unreadable type entry: {gimli}",
                "unreadable_debug_info",
            ),
            (
                Unavailable::unreadable(DebugInfoPart::AddressEntry, Some(gimli_error)),
                "unreadable .debug_addr entry: {gimli}",
                "unreadable_debug_info",
            ),
            (
                NotCaptured::AfterTheWrite.into(),
                "the watched bytes could not be read right after the write",
                "not_captured",
            ),
            (
                NotCaptured::HeldTooLong { deadline_ms: 1000 }.into(),
                "capture took too long: the thread was let go after 1000 ms, before this was read",
                "not_captured",
            ),
            (
                NotCaptured::ThreadExited.into(),
                "the thread exited while its capture was being read, before this was read",
                "not_captured",
            ),
            (
                NotCaptured::FrameNotReached { tid: 42 }.into(),
                "the stack of thread 42 could not be unwound to the watched frame at this sample",
                "not_captured",
            ),
            (
                NotCaptured::BeforeTheWatch.into(),
                "the value before the watch was set could not be read",
                "not_captured",
            ),
            (
                Unavailable::from("a reason as text"),
                "a reason as text",
                "other",
            ),
        ]
    }

    #[test]
    fn every_reason_prints_as_clients_read_it_and_has_its_kind() {
        let gimli = gimli::Error::UnexpectedEof(gimli::ReaderOffsetId(0)).to_string();
        for (reason, text, kind) in reasons() {
            let text = text.replace("{gimli}", &gimli);
            assert_eq!(reason.to_string(), text, "{reason:?}");
            assert_eq!(reason.kind(), kind, "{reason:?}");
            assert_eq!(
                serde_json::to_value(&reason).ok(),
                Some(serde_json::Value::String(text.clone())),
                "the JSON is the text"
            );
        }
    }

    /// Every unit-like Unsupported variant says something of its own: no
    /// two print the same text, and none is empty.
    #[test]
    fn unsupported_texts_are_distinct() {
        let all = [
            Unsupported::RegisterWithoutThread,
            Unsupported::FrameBaseShape,
            Unsupported::ConstantFrameBase,
            Unsupported::FrameBaseOutsideFunction,
            Unsupported::CfaUnknown,
            Unsupported::ThreadLocal,
            Unsupported::IndexedAddressWithoutDwarf,
            Unsupported::UnknownBaseType,
            Unsupported::CallOperation,
            Unsupported::WebAssembly,
            Unsupported::ImplicitPointer,
            Unsupported::ImplicitPointerPiece,
            Unsupported::TooManyPieces { bytes: 1 << 20 },
            Unsupported::BitPieces,
            Unsupported::NoType,
            Unsupported::PointerToMember,
            Unsupported::ArrayOfVoid,
            Unsupported::ArrayWithoutLength,
            Unsupported::ArrayElementSizeUnknown,
            Unsupported::ArrayTooLarge,
            Unsupported::IncompleteType,
            Unsupported::VirtualBase,
            Unsupported::EnumWithoutVariants,
            Unsupported::DiscriminantAtDynamicOffset,
            Unsupported::VariantAtDynamicOffset,
            Unsupported::ValueLargerThanLocation,
            Unsupported::ValueSmallerThanType,
            Unsupported::ValueTooLarge,
            Unsupported::MapInRegisters,
            Unsupported::Corrupt(Corruption::VecLengthOverCapacity),
            Unsupported::Corrupt(Corruption::VecDequeLengthOverCapacity),
            Unsupported::Corrupt(Corruption::BTreeMapHeight),
            Unsupported::Corrupt(Corruption::StdVector),
            Unsupported::Corrupt(Corruption::LibcxxString),
            Unsupported::LocalWithoutFrame,
            Unsupported::GlobalUnitUnreadable,
            Unsupported::FrameUnitUnreadable,
            Unsupported::FieldOfComputedValue,
            Unsupported::AddressOfRegisterValue,
            Unsupported::AddressOfComputedValue,
            Unsupported::IndexOverflows,
            Unsupported::IndexOfComputedValue,
            Unsupported::OperatorOnType,
            Unsupported::LenOfNumber,
            Unsupported::StringComparisonWithoutLiteral,
            Unsupported::OperatorOnFloats,
            Unsupported::OperatorOnIntegers,
            Unsupported::DivisionByZero,
            Unsupported::StringIsNotANumber,
            Unsupported::ArrayIsNotANumber,
            Unsupported::NotANumber,
            Unsupported::ArrayInRegister,
            Unsupported::StringLiteralHasNoAddress,
            Unsupported::NotALibcxxString,
            Unsupported::LenUnknownLayout,
            Unsupported::NotAString,
            Unsupported::NotDebugInfoTyped,
        ];
        let mut seen = std::collections::HashSet::new();
        for what in all {
            let text = Unavailable::Unsupported(what.clone()).to_string();
            assert!(text.len() > "unsupported: ".len() + 4, "{what:?}: {text}");
            assert!(
                seen.insert(text.clone()),
                "{what:?} prints like another: {text}"
            );
        }
    }

    /// Text is never sorted into a kind: a reason that looks like one is
    /// still text.
    #[test]
    fn text_stays_text() {
        for text in [
            "read error at 0x10",
            "optimized out",
            "unsupported: x",
            "redacted",
        ] {
            let reason = Unavailable::from(text);
            assert_eq!(reason, Unavailable::Other(text.to_string()));
            assert_eq!(reason.to_string(), text);
        }
    }

    /// A Value carries an `Option<Unavailable>` and answers hold thousands
    /// of values: the typed reason must not make every value larger than
    /// the text it replaced.
    #[test]
    fn a_reason_stays_four_words() {
        assert!(std::mem::size_of::<Unavailable>() <= 32);
    }
}
