//! The libos blob embedded in the rewriter, and its description.
//!
//! `build.rs` compiles the libos for `x86_64-unknown-none` and links it with
//! `linker-scripts/libos.ld` into a position-independent ELF at base 0 with
//! no run-time relocations. The emitter copies its `PT_LOAD` segments into
//! every image at one page-aligned base, points the image entry at
//! [`LibosBlob::start`], routes trampolines to [`LibosBlob::syscall_entry`]
//! and writes the image's [`cabin_abi::link::LinkInfo`] at
//! [`LibosBlob::link_info`]. All three are offsets from the blob base.
//!
//! The small ELF64 reader here only understands what that link produces
//! and refuses anything else; it never panics on malformed input.

use cabin_abi::link::{LinkInfo, LINK_INFO_SYMBOL, START_SYMBOL, SYSCALL_ENTRY_SYMBOL};
use cabin_abi::PAGE_SIZE;

/// The blob as built by `build.rs`.
pub static LIBOS_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libos.elf"));

/// Segment may be executed.
pub const PF_X: u32 = 1;
/// Segment may be written.
pub const PF_W: u32 = 2;
/// Segment may be read.
pub const PF_R: u32 = 4;

/// What the emitter needs to place the libos in an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibosBlob {
    /// Loadable segments, in address order.
    pub segments: Vec<BlobSegment>,
    /// Offset of `cabin_start` (the image entry point).
    pub start: u64,
    /// Offset of `cabin_syscall_entry` (the trampolines' call target).
    pub syscall_entry: u64,
    /// Offset of `CABIN_LINK_INFO` (inside a writable segment's file bytes).
    pub link_info: u64,
    /// Bytes of address space the blob occupies, a whole number of pages.
    pub size: u64,
}

/// One loadable segment of the blob.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobSegment {
    /// Address offset from the blob base; page aligned.
    pub offset: u64,
    /// File bytes (the rest up to `memsz` is zero).
    pub data: Vec<u8>,
    /// Size in memory.
    pub memsz: u64,
    /// `PF_R` / `PF_W` / `PF_X` bits.
    pub flags: u32,
}

impl std::fmt::Debug for BlobSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSegment")
            .field("offset", &format_args!("{:#x}", self.offset))
            .field("filesz", &format_args!("{:#x}", self.data.len()))
            .field("memsz", &format_args!("{:#x}", self.memsz))
            .field("flags", &self.flags)
            .finish()
    }
}

/// An allocated section of the blob (for checks and diagnostics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobSection {
    /// Section name.
    pub name: String,
    /// Address offset from the blob base.
    pub addr: u64,
    /// Size in memory.
    pub size: u64,
    /// `SHF_*` flags.
    pub flags: u64,
}

/// Section is writable.
pub const SHF_WRITE: u64 = 1;
/// Section is loaded.
pub const SHF_ALLOC: u64 = 2;
/// Section holds instructions.
pub const SHF_EXECINSTR: u64 = 4;

/// Why the embedded blob cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// Not an ELF64 little-endian x86-64 position-independent file.
    #[error("libos blob is not an x86-64 ELF64 position-independent file")]
    NotElf,
    /// A header or table lies outside the file.
    #[error("libos blob is truncated ({0})")]
    Truncated(&'static str),
    /// A loadable segment is not page aligned, overlaps another, or is inconsistent.
    #[error("libos blob segment {0} is malformed (alignment, size or overlap)")]
    BadSegment(usize),
    /// A required symbol is not in the symbol table.
    #[error("libos blob has no symbol `{0}`")]
    MissingSymbol(&'static str),
    /// A symbol is not where it must be (code in an executable segment,
    /// the link info in a writable segment's file bytes).
    #[error("libos blob symbol `{0}` is not in a suitable segment")]
    MisplacedSymbol(&'static str),
}

/// Parses the embedded blob.
pub fn libos() -> Result<LibosBlob, BlobError> {
    parse(LIBOS_ELF)
}

const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;

/// Bounds-checked little-endian reads.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn slice(&self, off: u64, len: u64, what: &'static str) -> Result<&'a [u8], BlobError> {
        let start = usize::try_from(off).map_err(|_| BlobError::Truncated(what))?;
        let len = usize::try_from(len).map_err(|_| BlobError::Truncated(what))?;
        let end = start.checked_add(len).ok_or(BlobError::Truncated(what))?;
        self.0.get(start..end).ok_or(BlobError::Truncated(what))
    }
    fn u16(&self, off: u64, what: &'static str) -> Result<u16, BlobError> {
        let b = self.slice(off, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, off: u64, what: &'static str) -> Result<u32, BlobError> {
        let b = self.slice(off, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, off: u64, what: &'static str) -> Result<u64, BlobError> {
        let b = self.slice(off, 8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// One section header, as far as this reader cares.
struct Shdr {
    name: u32,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

fn header_check(b: &Bytes<'_>) -> Result<(), BlobError> {
    let ident = b.slice(0, 16, "ELF header").map_err(|_| BlobError::NotElf)?;
    const ET_DYN: u16 = 3;
    const EM_X86_64: u16 = 62;
    if &ident[0..4] != b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
        return Err(BlobError::NotElf);
    }
    if b.u16(0x10, "ELF header")? != ET_DYN || b.u16(0x12, "ELF header")? != EM_X86_64 {
        return Err(BlobError::NotElf);
    }
    Ok(())
}

fn section_headers(b: &Bytes<'_>) -> Result<Vec<Shdr>, BlobError> {
    let shoff = b.u64(0x28, "ELF header")?;
    let shentsize = u64::from(b.u16(0x3a, "ELF header")?);
    let shnum = u64::from(b.u16(0x3c, "ELF header")?);
    if shentsize < 64 {
        return Err(BlobError::Truncated("section headers"));
    }
    let mut out = Vec::new();
    for i in 0..shnum {
        let at = shoff.checked_add(i * shentsize).ok_or(BlobError::Truncated("section headers"))?;
        let w = "section headers";
        out.push(Shdr {
            name: b.u32(at, w)?,
            kind: b.u32(at + 4, w)?,
            flags: b.u64(at + 8, w)?,
            addr: b.u64(at + 0x10, w)?,
            offset: b.u64(at + 0x18, w)?,
            size: b.u64(at + 0x20, w)?,
            link: b.u32(at + 0x28, w)?,
            entsize: b.u64(at + 0x38, w)?,
        });
    }
    Ok(out)
}

fn c_str(table: &[u8], at: u32) -> Option<&[u8]> {
    let rest = table.get(at as usize..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    Some(&rest[..len])
}

/// Value of global symbol `name` in the `.symtab`.
fn symbol(b: &Bytes<'_>, shdrs: &[Shdr], name: &'static str) -> Result<u64, BlobError> {
    for symtab in shdrs.iter().filter(|s| s.kind == SHT_SYMTAB) {
        let strtab = shdrs.get(symtab.link as usize).ok_or(BlobError::Truncated("symbol strings"))?;
        let strings = b.slice(strtab.offset, strtab.size, "symbol strings")?;
        let entsize = if symtab.entsize == 0 { 24 } else { symtab.entsize };
        let syms = b.slice(symtab.offset, symtab.size, "symbol table")?;
        for sym in syms.chunks_exact(entsize as usize) {
            let sb = Bytes(sym);
            let st_name = sb.u32(0, "symbol table")?;
            let st_shndx = sb.u16(6, "symbol table")?;
            if st_shndx != 0 && c_str(strings, st_name) == Some(name.as_bytes()) {
                return sb.u64(8, "symbol table");
            }
        }
    }
    Err(BlobError::MissingSymbol(name))
}

/// Parses and checks a libos blob (normally [`LIBOS_ELF`]).
pub fn parse(elf: &[u8]) -> Result<LibosBlob, BlobError> {
    let b = Bytes(elf);
    header_check(&b)?;
    let phoff = b.u64(0x20, "ELF header")?;
    let phentsize = u64::from(b.u16(0x36, "ELF header")?);
    let phnum = u64::from(b.u16(0x38, "ELF header")?);
    if phentsize < 56 {
        return Err(BlobError::Truncated("program headers"));
    }
    let mut segments: Vec<BlobSegment> = Vec::new();
    for i in 0..phnum {
        let at = phoff.checked_add(i * phentsize).ok_or(BlobError::Truncated("program headers"))?;
        let w = "program headers";
        if b.u32(at, w)? != PT_LOAD {
            continue;
        }
        let flags = b.u32(at + 4, w)?;
        let offset = b.u64(at + 8, w)?;
        let vaddr = b.u64(at + 0x10, w)?;
        let filesz = b.u64(at + 0x20, w)?;
        let memsz = b.u64(at + 0x28, w)?;
        let index = segments.len();
        let bad = BlobError::BadSegment(index);
        let misplaced = vaddr % PAGE_SIZE != 0 || filesz > memsz || memsz > (1 << 32);
        let overlaps =
            segments.last().is_some_and(|p| p.offset + p.memsz.next_multiple_of(PAGE_SIZE) > vaddr);
        if misplaced || overlaps || flags & (PF_W | PF_X) == (PF_W | PF_X) {
            return Err(bad);
        }
        let data = b.slice(offset, filesz, "segment data")?.to_vec();
        segments.push(BlobSegment { offset: vaddr, data, memsz, flags });
    }
    let size = match segments.last() {
        Some(last) => (last.offset + last.memsz).next_multiple_of(PAGE_SIZE),
        None => return Err(BlobError::BadSegment(0)),
    };

    let shdrs = section_headers(&b)?;
    let start = symbol(&b, &shdrs, START_SYMBOL)?;
    let syscall_entry = symbol(&b, &shdrs, SYSCALL_ENTRY_SYMBOL)?;
    let link_info = symbol(&b, &shdrs, LINK_INFO_SYMBOL)?;

    let in_exec = |addr: u64| {
        segments
            .iter()
            .any(|s| s.flags & PF_X != 0 && addr >= s.offset && addr < s.offset + s.data.len() as u64)
    };
    if !in_exec(start) {
        return Err(BlobError::MisplacedSymbol(START_SYMBOL));
    }
    if !in_exec(syscall_entry) {
        return Err(BlobError::MisplacedSymbol(SYSCALL_ENTRY_SYMBOL));
    }
    let info_end = link_info.checked_add(LinkInfo::SIZE as u64);
    let info_ok = segments.iter().any(|s| {
        s.flags & PF_W != 0
            && link_info >= s.offset
            && info_end.is_some_and(|end| end <= s.offset + s.data.len() as u64)
    });
    if !info_ok || link_info % 8 != 0 {
        return Err(BlobError::MisplacedSymbol(LINK_INFO_SYMBOL));
    }
    Ok(LibosBlob { segments, start, syscall_entry, link_info, size })
}

/// The blob's allocated sections, in header order (for checks).
pub fn sections(elf: &[u8]) -> Result<Vec<BlobSection>, BlobError> {
    let b = Bytes(elf);
    header_check(&b)?;
    let shdrs = section_headers(&b)?;
    let shstrndx = usize::from(b.u16(0x3e, "ELF header")?);
    let names = shdrs.get(shstrndx).ok_or(BlobError::Truncated("section names"))?;
    let names = b.slice(names.offset, names.size, "section names")?;
    Ok(shdrs
        .iter()
        .filter(|s| s.flags & SHF_ALLOC != 0)
        .map(|s| BlobSection {
            name: String::from_utf8_lossy(c_str(names, s.name).unwrap_or(b"?")).into_owned(),
            addr: s.addr,
            size: s.size,
            flags: s.flags,
        })
        .collect())
}

impl LibosBlob {
    /// Copy of the blob's segments with `info` written into the link-info
    /// block (what the emitter places in an image).
    pub fn with_link_info(&self, info: &LinkInfo) -> Vec<BlobSegment> {
        let mut segments = self.segments.clone();
        for s in &mut segments {
            let Some(rel) = self.link_info.checked_sub(s.offset) else { continue };
            let rel = rel as usize;
            if let Some(dst) = s.data.get_mut(rel..rel + LinkInfo::SIZE) {
                dst.copy_from_slice(&info.to_bytes());
            }
        }
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_blob_parses() {
        let blob = libos().expect("embedded libos blob");
        assert_eq!(blob.size % PAGE_SIZE, 0);
        assert!(!blob.segments.is_empty());
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert_eq!(parse(b""), Err(BlobError::NotElf));
        assert_eq!(parse(b"\x7fELF"), Err(BlobError::NotElf));
        for cut in [16, 64, 100, 300, LIBOS_ELF.len() / 2, LIBOS_ELF.len() - 1] {
            assert!(parse(&LIBOS_ELF[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn link_info_is_written_into_the_data_segment() {
        let blob = libos().expect("embedded libos blob");
        let info = LinkInfo { magic: cabin_abi::link::LINK_INFO_MAGIC, phnum: 7, ..LinkInfo::EMPTY };
        let segs = blob.with_link_info(&info);
        let hit = segs.iter().find(|s| s.flags & PF_W != 0).expect("writable segment");
        let rel = (blob.link_info - hit.offset) as usize;
        assert_eq!(&hit.data[rel..rel + LinkInfo::SIZE], &info.to_bytes());
    }
}
