//! Self-relocation: applies the blob's `R_X86_64_RELATIVE` entries at start.
//!
//! The blob is linked position-independent at base 0. Code reaches all data
//! rip-relatively, so today the relocation table is empty. Some constructs
//! store an absolute address in a static (panic `Location`s behind bounds
//! checks, `core::fmt` tables); for those the linker emits `RELATIVE`
//! entries, and `cabin_start` applies them here before any Rust code runs.
//! `rewriter/build.rs` guarantees at build time that every entry is
//! `RELATIVE` and targets the blob's writable segment, so code and read-only
//! data are never written.

/// `R_X86_64_RELATIVE`: `*(base + offset) = base + addend`.
pub const R_X86_64_RELATIVE: u32 = 8;

/// One `Elf64_Rela` entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rela {
    /// Blob offset of the word to write.
    pub offset: u64,
    /// Relocation type (low 32 bits) and symbol (high 32 bits).
    pub info: u64,
    /// Value relative to the base.
    pub addend: i64,
}

/// Why a relocation table could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// An entry is not `R_X86_64_RELATIVE`.
    UnsupportedType,
}

/// Calls `write(address, value)` for every entry of `table` with the blob
/// at `base`. Stops at the first entry it does not understand.
pub fn apply(table: &[Rela], base: u64, mut write: impl FnMut(u64, u64)) -> Result<(), RelocError> {
    for r in table {
        if r.info as u32 != R_X86_64_RELATIVE {
            return Err(RelocError::UnsupportedType);
        }
        write(base.wrapping_add(r.offset), base.wrapping_add_signed(r.addend));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_relative_entries() {
        let table = [
            Rela { offset: 0x2000, info: 8, addend: 0x1040 },
            Rela { offset: 0x2008, info: 8, addend: -0x10 },
        ];
        let mut writes = Vec::new();
        assert_eq!(apply(&table, 0x7000_0000, |a, v| writes.push((a, v))), Ok(()));
        assert_eq!(writes, vec![(0x7000_2000, 0x7000_1040), (0x7000_2008, 0x6fff_fff0)]);
    }

    #[test]
    fn refuses_other_types() {
        let table = [Rela { offset: 0, info: (1 << 32) | 1, addend: 0 }];
        assert_eq!(apply(&table, 0, |_, _| panic!("must not write")), Err(RelocError::UnsupportedType));
    }

    #[test]
    fn entry_is_24_bytes() {
        assert_eq!(core::mem::size_of::<Rela>(), 24);
    }
}
