//! ELF symbol tables (`.symtab`, `.dynsym`, and the separate debug file's `.symtab`) as a sorted address index
//! of function symbols: the fallback that names frames in modules without DWARF.
//!
//! Owns symbol lookup by address and the list of function names; names stay in the mapped string tables
//! (no copy) and are demangled only when asked.

use std::sync::Arc;

use memmap2::Mmap;
use object::{Object, ObjectSymbol, SymbolKind};

use super::elf::MappedFile;

#[derive(Clone, Copy, Debug)]
struct Sym {
    addr: u64,
    size: u64,
    /// Index into `SymbolTable::maps`.
    map: u8,
    /// Lower is preferred among aliases at the same address.
    rank: u8,
    /// Offset of the NUL-terminated name in that map.
    name_off: usize,
}

/// A function symbol found by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolHit<'a> {
    /// The raw (mangled) name.
    pub name: &'a str,
    /// Its file address.
    pub addr: u64,
    /// Its size in bytes (0 if unknown).
    pub size: u64,
}

/// Sorted function symbols of one module.
pub(crate) struct SymbolTable {
    maps: Vec<Arc<Mmap>>,
    syms: Vec<Sym>,
}

impl SymbolTable {
    /// Reads function symbols from the module file and (if any) its separate debug file.
    pub(crate) fn build(files: &[&MappedFile]) -> SymbolTable {
        let mut maps = Vec::new();
        let mut syms = Vec::new();
        for mapped in files {
            let Ok(file) = mapped.parse() else { continue };
            let map_index = maps.len() as u8;
            maps.push(mapped.map.clone());
            let base = mapped.map.as_ptr() as usize;
            let mut add = |sym: object::Symbol<'_, '_>, dynamic: bool| {
                if !matches!(sym.kind(), SymbolKind::Text)
                    || sym.is_undefined()
                    || sym.address() == 0
                {
                    return;
                }
                let Ok(name) = sym.name_bytes() else { return };
                if name.is_empty() {
                    return;
                }
                let Some(name_off) = (name.as_ptr() as usize).checked_sub(base) else {
                    return;
                };
                let rank = match (dynamic, sym.is_global(), sym.is_weak()) {
                    (false, true, false) => 0,
                    (false, _, true) => 1,
                    (false, _, _) => 2,
                    (true, _, _) => 3,
                };
                syms.push(Sym {
                    addr: sym.address(),
                    size: sym.size(),
                    map: map_index,
                    rank,
                    name_off,
                });
            };
            for sym in file.symbols() {
                add(sym, false);
            }
            for sym in file.dynamic_symbols() {
                add(sym, true);
            }
        }
        syms.sort_unstable_by_key(|s| (s.addr, s.rank, std::cmp::Reverse(s.size)));
        syms.dedup_by_key(|s| s.addr);
        SymbolTable { maps, syms }
    }

    fn name(&self, s: &Sym) -> &str {
        let Some(map) = self.maps.get(usize::from(s.map)) else {
            return "";
        };
        let bytes = map.get(s.name_off..).unwrap_or(&[]);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or("")
    }

    /// The function symbol containing file address `addr`. Symbols without a size cover up to the next symbol.
    pub(crate) fn lookup(&self, addr: u64) -> Option<SymbolHit<'_>> {
        let i = self.syms.partition_point(|s| s.addr <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        let inside = if s.size > 0 {
            addr < s.addr.saturating_add(s.size)
        } else {
            self.syms.get(i).is_none_or(|next| addr < next.addr)
        };
        inside.then(|| SymbolHit {
            name: self.name(s),
            addr: s.addr,
            size: s.size,
        })
    }

    /// Every function symbol, in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = SymbolHit<'_>> + '_ {
        self.syms.iter().map(|s| SymbolHit {
            name: self.name(s),
            addr: s.addr,
            size: s.size,
        })
    }
}
