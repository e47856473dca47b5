//! Optional ELF metadata the analysis mines for code addresses: section
//! headers, symbol tables, `RELA` relocations and the dynamic table.
//!
//! All of it may be missing (stripped files) or malformed (hostile files).
//! The records are read with `object`'s ELF types (`object::read::elf`,
//! bounds-checked, alignment-free); whatever does not parse simply yields
//! less. The file itself was already validated by `cabin_image::elf`, which
//! stays the strict reader of what gets loaded.

use cabin_image::elf::{ElfFile, PT_DYNAMIC};
use object::elf::{self, Dyn64, FileHeader64, Rela64, SectionHeader64, Sym64};
use object::read::elf::{Dyn as _, FileHeader as _, Rela as _, SectionHeader as _, Sym as _};
use object::LittleEndian;

/// Most section headers we look at (extended numbering).
const MAX_SECTIONS: usize = 1 << 16;

/// The byte order of every file the rewriter takes (checked by `cabin_image`).
const LE: LittleEndian = LittleEndian;

/// `R_X86_64_64`: S + A.
pub const R_X86_64_64: u32 = elf::R_X86_64_64.0;
/// `R_X86_64_RELATIVE`: B + A.
pub const R_X86_64_RELATIVE: u32 = elf::R_X86_64_RELATIVE.0;
/// `R_X86_64_IRELATIVE`: resolver at B + A.
pub const R_X86_64_IRELATIVE: u32 = elf::R_X86_64_IRELATIVE.0;

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
    /// `sh_flags`.
    pub flags: u64,
}

impl Section {
    /// The section's file bytes, when they lie inside the file.
    pub fn bytes<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.size).ok()?;
        data.get(start..start.checked_add(len)?)
    }
}

/// The whole records of type `T` at the start of `bytes` (a partial last
/// record is ignored).
fn records<T: object::Pod>(bytes: &[u8]) -> &[T] {
    let n = bytes.len() / std::mem::size_of::<T>();
    object::pod::slice_from_bytes(bytes, n).map_or(&[], |(records, _)| records)
}

/// Reads the section header table; empty when absent or malformed.
pub fn sections(elf: &ElfFile<'_>) -> Vec<Section> {
    let data = elf.data;
    let Ok(header) = FileHeader64::<LittleEndian>::parse(data) else { return Vec::new() };
    let Ok(headers) = header.section_headers(LE, data) else { return Vec::new() };
    if header.e_shnum(LE) == 0 && headers.len() >= MAX_SECTIONS {
        return Vec::new();
    }
    let names = header.section_strings(LE, data, headers).unwrap_or_default();
    headers
        .iter()
        .map(|h: &SectionHeader64<LittleEndian>| Section {
            name: h.name(LE, names).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default(),
            sh_type: h.sh_type(LE).0,
            addr: h.sh_addr(LE),
            offset: h.sh_offset(LE),
            size: h.sh_size(LE),
            flags: h.sh_flags(LE).0,
        })
        .collect()
}

/// Values of every defined, non-section, non-file, non-TLS symbol in
/// `.symtab` and `.dynsym`.
pub fn symbol_values(elf: &ElfFile<'_>, secs: &[Section]) -> Vec<u64> {
    let mut out = Vec::new();
    let tables = [elf::SHT_SYMTAB.0, elf::SHT_DYNSYM.0];
    for s in secs.iter().filter(|s| tables.contains(&s.sh_type)) {
        let Some(bytes) = s.bytes(elf.data) else { continue };
        for sym in records::<Sym64<LittleEndian>>(bytes) {
            // Undefined and absolute symbols are not locations in the image;
            // section, file and TLS symbols name no code address.
            let shndx = sym.st_shndx(LE);
            if shndx == elf::SHN_UNDEF || shndx == elf::SHN_ABS {
                continue;
            }
            if [elf::STT_SECTION, elf::STT_FILE, elf::STT_TLS].contains(&sym.st_type()) {
                continue;
            }
            out.push(sym.st_value(LE));
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
    out.extend(records::<Rela64<LittleEndian>>(bytes).iter().map(|r| Rela {
        offset: r.r_offset(LE),
        r_type: r.r_type(LE, false).0,
        addend: r.r_addend(LE),
    }));
}

/// Every `RELA` relocation reachable through section headers or `PT_DYNAMIC`
/// (duplicates possible; callers only collect addresses).
pub fn relocations(elf: &ElfFile<'_>, secs: &[Section]) -> Vec<Rela> {
    let mut out = Vec::new();
    for s in secs.iter().filter(|s| s.sh_type == elf::SHT_RELA.0) {
        if let Some(b) = s.bytes(elf.data) {
            parse_relas(b, &mut out);
        }
    }
    // Stripped static-PIE may lack section headers; the dynamic table still
    // names the relocations the start-up code applies.
    for dynseg in elf.segments_of(PT_DYNAMIC) {
        let Some(dynb) = elf.read_vaddr(dynseg.vaddr, dynseg.filesz as usize) else { continue };
        let (mut rela, mut relasz) = (None, None);
        for e in records::<Dyn64<LittleEndian>>(dynb) {
            match e.d_tag(LE) {
                elf::DT_NULL => break,
                elf::DT_RELA => rela = Some(e.d_val(LE)),
                elf::DT_RELASZ => relasz = Some(e.d_val(LE)),
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
