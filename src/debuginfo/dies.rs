//! What every reader of DIEs names alike: where a DIE lives ([`TypeKey`]: its unit and its offset there) and
//! the source language of its unit ([`Language`]), which decides how names and values are spelled.
//!
//! Plain data: the type decoder (types.rs) and the scope walk (scope.rs, frame_scope.rs) both speak it, so
//! it sits below them and imports neither.

use gimli::{AttributeValue, constants};

use super::bytes::DwarfReader;

/// Where a type DIE lives: the `.debug_info` offset of its unit's header and
/// the DIE's offset inside that unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    /// `.debug_info` offset of the unit header.
    pub unit: usize,
    /// Offset of the DIE relative to the unit header.
    pub entry: usize,
}

/// Source language of the unit a type or variable comes from; decides how
/// names and values are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// C (any standard).
    C,
    /// C++ (any standard).
    Cpp,
    /// Rust.
    Rust,
    /// Anything else (assembly, Fortran, …): shown C-like.
    Other,
}

impl Language {
    /// Language from a unit's `DW_AT_language`.
    pub fn from_dwarf(language: Option<constants::DwLang>) -> Language {
        match language {
            Some(
                constants::DW_LANG_C
                | constants::DW_LANG_C89
                | constants::DW_LANG_C99
                | constants::DW_LANG_C11
                | constants::DW_LANG_C17,
            ) => Language::C,
            Some(
                constants::DW_LANG_C_plus_plus
                | constants::DW_LANG_C_plus_plus_03
                | constants::DW_LANG_C_plus_plus_11
                | constants::DW_LANG_C_plus_plus_14
                | constants::DW_LANG_C_plus_plus_17
                | constants::DW_LANG_C_plus_plus_20,
            ) => Language::Cpp,
            Some(constants::DW_LANG_Rust) => Language::Rust,
            _ => Language::Other,
        }
    }
}

/// The language of a unit, from its root DIE.
pub fn unit_language(unit: &gimli::Unit<DwarfReader>) -> Language {
    let language = unit.entry(unit.header.root_offset()).ok().and_then(|root| {
        match root.attr_value(constants::DW_AT_language) {
            Some(AttributeValue::Language(language)) => Some(language),
            _ => None,
        }
    });
    Language::from_dwarf(language)
}
