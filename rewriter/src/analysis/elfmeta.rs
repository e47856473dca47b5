//! Optional ELF metadata the analysis mines for code addresses: section
//! headers, symbol tables, `RELA` relocations and the dynamic table.
//!
//! All of it may be missing (stripped files) or malformed (hostile files);
//! every reader here is bounds-checked and simply yields less on bad input.

use cabin_image::elf::{ElfFile, PT_DYNAMIC};

/// `SHT_SYMTAB`.
const SHT_SYMTAB: u32 = 2;
/// `SHT_RELA`.
const SHT_RELA: u32 = 4;
/// `SHT_DYNSYM`.
const SHT_DYNSYM: u32 = 11;
/// Size of an ELF64 section header.
const SHDR_SIZE: usize = 64;
/// Size of an ELF64 symbol.
const SYM_SIZE: usize = 24;
/// Size of an ELF64 `Rela`.
const RELA_SIZE: usize = 24;
/// Most section headers we look at.
const MAX_SECTIONS: usize = 1 << 16;

/// `R_X86_64_64`: S + A.
pub const R_X86_64_64: u32 = 1;
/// `R_X86_64_RELATIVE`: B + A.
pub const R_X86_64_RELATIVE: u32 = 8;
/// `R_X86_64_IRELATIVE`: resolver at B + A.
pub const R_X86_64_IRELATIVE: u32 = 37;

const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;

fn rd_u16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn rd_u32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn rd_u64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// One section header (the fields the analysis uses).
#[derive(Debug, Clone)]
pub struct Section {
    /// Name from `.shstrtab` (empty when unreadable).
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
}

impl Section {
    /// The section's file bytes, when they lie inside the file.
    pub fn bytes<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.size).ok()?;
        data.get(start..start.checked_add(len)?)
    }
}

/// Reads the section header table; empty when absent or malformed.
pub fn sections(elf: &ElfFile<'_>) -> Vec<Section> {
    let data = elf.data;
    let Ok(shoff) = usize::try_from(elf.shoff) else { return Vec::new() };
    if shoff == 0 {
        return Vec::new();
    }
    let mut count = elf.shnum as usize;
    let mut strndx = elf.shstrndx as usize;
    if count == 0 {
        // Extended numbering: the real count is section 0's sh_size.
        match rd_u64(data, shoff + 32) {
            Some(n) if (n as usize) < MAX_SECTIONS => count = n as usize,
            _ => return Vec::new(),
        }
    }
    if strndx == 0xffff {
        strndx = rd_u32(data, shoff + 40).map_or(0, |v| v as usize);
    }
    let Some(end) = count.checked_mul(SHDR_SIZE).and_then(|n| n.checked_add(shoff)) else {
        return Vec::new();
    };
    if end > data.len() {
        return Vec::new();
    }
    let raw: Vec<(u32, Section)> = (0..count)
        .filter_map(|i| {
            let at = shoff + i * SHDR_SIZE;
            Some((
                rd_u32(data, at)?,
                Section {
                    name: String::new(),
                    sh_type: rd_u32(data, at + 4)?,
                    addr: rd_u64(data, at + 16)?,
                    offset: rd_u64(data, at + 24)?,
                    size: rd_u64(data, at + 32)?,
                },
            ))
        })
        .collect();
    let strtab = raw.get(strndx).and_then(|(_, s)| s.bytes(data)).unwrap_or(&[]);
    raw.into_iter()
        .map(|(name_off, mut s)| {
            if let Some(tail) = strtab.get(name_off as usize..) {
                let n = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
                s.name = String::from_utf8_lossy(&tail[..n]).into_owned();
            }
            s
        })
        .collect()
}

/// Values of every defined, non-section, non-file symbol in `.symtab` and `.dynsym`.
pub fn symbol_values(elf: &ElfFile<'_>, secs: &[Section]) -> Vec<u64> {
    let mut out = Vec::new();
    for s in secs.iter().filter(|s| s.sh_type == SHT_SYMTAB || s.sh_type == SHT_DYNSYM) {
        let Some(bytes) = s.bytes(elf.data) else { continue };
        for sym in bytes.chunks_exact(SYM_SIZE) {
            let info = sym[4];
            let shndx = rd_u16(sym, 6).unwrap_or(0);
            let value = rd_u64(sym, 8).unwrap_or(0);
            let ty = info & 0xf;
            // STT_SECTION (3) and STT_FILE (4) name no code address; SHN_UNDEF
            // and SHN_ABS (0xfff1) symbols are not locations in the image.
            if shndx == 0 || shndx == 0xfff1 || ty == 3 || ty == 4 || ty == 6 {
                continue;
            }
            out.push(value);
        }
    }
    out
}

/// One `Elf64_Rela`.
#[derive(Debug, Clone, Copy)]
pub struct Rela {
    /// `r_offset`.
    pub offset: u64,
    /// Relocation type (low 32 bits of `r_info`).
    pub r_type: u32,
    /// `r_addend`.
    pub addend: i64,
}

fn parse_relas(bytes: &[u8], out: &mut Vec<Rela>) {
    for r in bytes.chunks_exact(RELA_SIZE) {
        let (Some(offset), Some(info), Some(addend)) = (rd_u64(r, 0), rd_u64(r, 8), rd_u64(r, 16)) else {
            continue;
        };
        out.push(Rela { offset, r_type: info as u32, addend: addend as i64 });
    }
}

/// Every `RELA` relocation reachable through section headers or `PT_DYNAMIC`
/// (duplicates possible; callers only collect addresses).
pub fn relocations(elf: &ElfFile<'_>, secs: &[Section]) -> Vec<Rela> {
    let mut out = Vec::new();
    for s in secs.iter().filter(|s| s.sh_type == SHT_RELA) {
        if let Some(b) = s.bytes(elf.data) {
            parse_relas(b, &mut out);
        }
    }
    // Stripped static-PIE may lack section headers; the dynamic table still
    // names the relocations the start-up code applies.
    for dynseg in elf.segments_of(PT_DYNAMIC) {
        let Some(dynb) = elf.read_vaddr(dynseg.vaddr, dynseg.filesz as usize) else { continue };
        let (mut rela, mut relasz) = (None, None);
        for e in dynb.chunks_exact(16) {
            let (tag, val) = (rd_u64(e, 0).unwrap_or(0), rd_u64(e, 8).unwrap_or(0));
            match tag {
                DT_NULL => break,
                DT_RELA => rela = Some(val),
                DT_RELASZ => relasz = Some(val),
                _ => {}
            }
        }
        if let (Some(a), Some(n)) = (rela, relasz) {
            if let Some(b) = usize::try_from(n).ok().and_then(|n| elf.read_vaddr(a, n)) {
                parse_relas(b, &mut out);
            }
        }
    }
    out
}
