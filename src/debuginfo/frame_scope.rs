//! What one source-level frame at a pc holds before any register is read: the function, its frame base,
//! and each variable in scope with the DWARF location it has there. scope.rs walks the DIEs to fill one;
//! the type table (types.rs) keeps those already walked, by pc, for probes that read the same pc at every hit.
//!
//! Plain data: it imports neither the walk nor the type decoder.

use super::addr::FileAddr;
use super::bytes::DwarfReader;
use super::dies::{Language, TypeKey};

/// A DWARF location expression, as stored in the debug info.
pub type LocationExpression = gimli::Expression<DwarfReader>;

/// Where a variable lives at one pc, before any register or memory is read.
#[derive(Clone, Debug)]
pub enum VariableLocation {
    /// Evaluate this expression (with the unit's encoding).
    Expression(LocationExpression),
    /// The value is a constant baked into the debug info, as little-endian
    /// bytes (numbers are sign- or zero-extended to 8 bytes).
    Constant(Vec<u8>),
    /// The compiler kept no location for this pc.
    OptimizedOut,
    /// The debug info describes the location in a way liveprobe cannot use.
    Unsupported(LocationProblem),
}

/// Why a variable's location in the debug info cannot be used, decided
/// where the DWARF is read (the value room says it to clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationProblem {
    /// A location list that could not be read.
    UnreadableLocationList(gimli::Error),
    /// A location attribute of a form that is neither an expression nor a list.
    UnknownAttributeForm,
    /// A `DW_AT_const_value` whose bytes could not be read.
    UnreadableConstant(gimli::Error),
    /// A `DW_AT_const_value` of a form liveprobe does not know.
    UnknownConstantForm,
    /// A location expression whose bytes could not be read.
    UnreadableExpression,
    /// A closure's captures, but the closure object is a constant.
    ClosureObjectConstant,
    /// A capture reached through a closure object liveprobe cannot follow.
    ClosureObject(ClosureObjectShape),
    /// A variable of the enclosing function (reached through the static
    /// link) that does not live in that function's frame.
    ParentVariableNotInFrame,
}

/// What stops a capture being read through its closure object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosureObjectShape {
    /// The object's location expression cannot be read.
    Unreadable,
    /// The object is split in pieces.
    Pieces,
    /// The compiler optimized the object into its uses.
    OptimizedIntoUses,
    /// The object itself (not a pointer to it) is held in a register.
    InRegister,
    /// The object is a computed value.
    Computed,
}

impl std::fmt::Display for LocationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocationProblem::UnreadableLocationList(error) => {
                write!(f, "unreadable location list: {error}")
            }
            LocationProblem::UnknownAttributeForm => {
                f.write_str("location attribute of an unknown form")
            }
            LocationProblem::UnreadableConstant(error) => write!(f, "unreadable constant: {error}"),
            LocationProblem::UnknownConstantForm => f.write_str("constant of an unknown form"),
            LocationProblem::UnreadableExpression => f.write_str("unreadable location"),
            LocationProblem::ClosureObjectConstant => {
                f.write_str("the closure object is a constant in the debug info")
            }
            LocationProblem::ClosureObject(shape) => {
                let why = match shape {
                    ClosureObjectShape::Unreadable => "whose location cannot be read",
                    ClosureObjectShape::Pieces => "split in pieces",
                    ClosureObjectShape::OptimizedIntoUses => {
                        "that the compiler optimized into its uses"
                    }
                    ClosureObjectShape::InRegister => "held in a register",
                    ClosureObjectShape::Computed => "that is a computed value",
                };
                write!(f, "capture through a closure object {why}")
            }
            LocationProblem::ParentVariableNotInFrame => {
                f.write_str("a variable of the enclosing function that is not in its frame")
            }
        }
    }
}

/// One argument or local variable visible at a pc.
#[derive(Clone, Debug)]
pub struct ScopeVariable {
    /// The name as written in the source.
    pub name: String,
    /// Its type.
    pub ty: Option<TypeKey>,
    /// True for a function argument.
    pub is_parameter: bool,
    /// True for a compiler-made variable (`this`, closures' environments).
    pub artificial: bool,
    /// True for a variable a closure (C++ lambda, Rust closure) captured
    /// from the function that made it: a member of the closure object,
    /// visible in the closure's body by its name.
    pub capture: bool,
    /// True when an inner variable with the same name hides this one.
    pub shadowed: bool,
    /// How far in the variable's block is: 0 = the function itself.
    pub block_depth: usize,
    /// Where it lives at this pc.
    pub location: VariableLocation,
    /// `DW_AT_decl_line` and `DW_AT_decl_file` (a file index of the unit's
    /// line program): with `in_innermost_block`, how eval tells a local
    /// whose declaration has not run yet.
    pub decl_line: Option<u64>,
    pub decl_file: Option<u64>,
    /// True when the variable belongs to the innermost block of its frame
    /// that contains the pc.
    pub in_innermost_block: bool,
    /// The lowest address of the block (lexical block, inlined call or
    /// function) that declares the variable: the line there tells whether
    /// the block begins on the declaration's line (a `for (int i = ...`).
    pub block_start: Option<FileAddr>,
}

/// Everything about one source-level frame at a pc that needs no register:
/// the function, its frame base, and the variables in scope.
#[derive(Clone, Debug)]
pub struct FrameScope {
    /// The function's name (the inlined callee's, for an inlined frame).
    pub function: String,
    /// `.debug_info` offset of the unit holding the function.
    pub unit: usize,
    /// The unit's language.
    pub language: Language,
    /// The concrete (out-of-line) subprogram's DIE, which owns the frame base
    /// and the call sites.
    pub subprogram: TypeKey,
    /// The frame base expression at this pc (`DW_AT_frame_base`).
    pub frame_base: VariableLocation,
    /// Arguments first, then locals from the outermost block inwards; a
    /// shadowed variable stays in the list with `shadowed` set.
    pub variables: Vec<ScopeVariable>,
    /// How many source-level frames share this pc (1 + inlined calls).
    pub inline_frames: usize,
}
