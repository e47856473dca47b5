//! Reading and validating 64-bit x86-64 ELF executables.
//!
//! One reader serves both sides: the rewriter reads untrusted inputs with it
//! and the monitor reads images with it, so both refuse the same malformed
//! files with the same messages. Only the program-header view is validated
//! here; section headers are optional (stripped binaries) and are read by the
//! analysis that wants them.

use thiserror::Error;

/// Loadable segment.
pub const PT_LOAD: u32 = 1;
/// Dynamic-linking information.
pub const PT_DYNAMIC: u32 = 2;
/// Program interpreter (dynamic executables).
pub const PT_INTERP: u32 = 3;
/// Auxiliary information (notes).
pub const PT_NOTE: u32 = 4;
/// The program header table itself.
pub const PT_PHDR: u32 = 6;
/// Thread-local storage template.
pub const PT_TLS: u32 = 7;
/// GNU stack permissions.
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// GNU read-only-after-relocation range.
pub const PT_GNU_RELRO: u32 = 0x6474_e552;
/// GNU `.eh_frame_hdr` location.
pub const PT_GNU_EH_FRAME: u32 = 0x6474_e550;

/// Segment is executable.
pub const PF_X: u32 = 1;
/// Segment is writable.
pub const PF_W: u32 = 2;
/// Segment is readable.
pub const PF_R: u32 = 4;

/// `e_type` of a position-dependent executable.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object or PIE.
pub const ET_DYN: u16 = 3;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;

/// Size of the ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// Most program headers an input may have.
pub const MAX_PHNUM: u16 = 128;
/// Largest memory size of one segment we accept.
pub const MAX_SEGMENT_SIZE: u64 = 4 << 30;
/// End of the lower-half canonical user address space (47-bit).
pub const USER_SPACE_END: u64 = 1 << 47;

const PAGE: u64 = cabin_abi::PAGE_SIZE;

/// Why a file is not a usable static x86-64 executable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Wrong magic.
    #[error("not an ELF file (the first bytes are not \\x7fELF)")]
    NotElf,
    /// Shorter than a header or table it announces.
    #[error("truncated ELF file: {0}")]
    Truncated(&'static str),
    /// ELFCLASS32 or unknown class.
    #[error("not a 64-bit ELF file (class {0})")]
    Not64Bit(u8),
    /// Big-endian or unknown data encoding.
    #[error("not little-endian ELF (data encoding {0})")]
    NotLittleEndian(u8),
    /// Other architecture.
    #[error("not an x86-64 ELF file (e_machine {0})")]
    NotX86_64(u16),
    /// Relocatable object, core dump, or unknown type.
    #[error("not an executable (e_type {0}); help: pass a linked executable, not an object file")]
    NotExecutable(u16),
    /// `e_phentsize` is not 56.
    #[error("bad program header size {0} (expected 56)")]
    BadPhentsize(u16),
    /// No program headers at all.
    #[error("no program headers: nothing to load")]
    NoProgramHeaders,
    /// More program headers than any sane executable has.
    #[error("too many program headers ({0}, at most 128)")]
    TooManyProgramHeaders(u16),
    /// The program header table lies outside the file.
    #[error("program headers extend past end of file")]
    PhdrsPastEnd,
    /// A segment's file bytes lie outside the file.
    #[error("segment {index} extends past end of file (offset {offset:#x} + size {filesz:#x} > file size {file_len:#x})")]
    SegmentPastEnd {
        /// Program-header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// `p_filesz > p_memsz`.
    #[error("segment {0} has a file size larger than memory size")]
    FileLargerThanMemory(usize),
    /// Absurd size or address.
    #[error("segment {0} is too large or lies outside user space")]
    TooLarge(usize),
    /// Two loadable segments share pages.
    #[error("segments {0} and {1} overlap in memory")]
    Overlap(usize, usize),
    /// `p_offset` and `p_vaddr` disagree modulo the page size.
    #[error("segment {0} is misaligned (offset and address differ modulo the page size)")]
    Misaligned(usize),
    /// Nothing executable.
    #[error("no executable segment")]
    NoExecutableSegment,
    /// Entry point outside code.
    #[error("entry point {0:#x} is not inside an executable segment")]
    EntryOutsideCode(u64),
    /// A segment of an `ET_EXEC` file lies in the lowest 64 KiB.
    #[error(
        "segment {index} at {start:#x}..{end:#x} lies below {lowest:#x}: Cabin maps nothing in the lowest 64 KiB; \
         help: link the program at a higher address (ld's default for x86-64 is 0x400000)",
        lowest = cabin_abi::layout::LOWEST_PROGRAM_ADDRESS
    )]
    BelowLowestAddress {
        /// Program-header index.
        index: usize,
        /// First page of the segment.
        start: u64,
        /// First page after it.
        end: u64,
    },
    /// Dynamic executable.
    #[error("dynamically linked executable (has an interpreter); help: link statically (gcc -static or -static-pie, musl-gcc -static, or RUSTFLAGS='-C target-feature=+crt-static')")]
    Dynamic,
}

/// How the executable is meant to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElfKind {
    /// `ET_EXEC`: loaded at its link-time addresses.
    Exec,
    /// `ET_DYN` with no interpreter: static-PIE, loaded at any page-aligned base.
    StaticPie,
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index in the program header table.
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_align`.
    pub align: u64,
}

impl Segment {
    /// A loadable segment.
    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }

    /// A loadable, executable segment.
    pub fn is_exec(&self) -> bool {
        self.is_load() && self.flags & PF_X != 0
    }

    /// Whether `addr` lies in the segment's memory image.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.vaddr && addr - self.vaddr < self.memsz
    }

    /// Whether `addr` lies in the segment's file-backed bytes.
    pub fn contains_file_byte(&self, addr: u64) -> bool {
        addr >= self.vaddr && addr - self.vaddr < self.filesz
    }

    /// First address after the segment's memory image.
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }

    /// Encodes the header as the 56 bytes of an ELF64 `Phdr`.
    pub fn to_bytes(&self) -> [u8; PHDR_SIZE] {
        let mut b = [0u8; PHDR_SIZE];
        b[0..4].copy_from_slice(&self.p_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.filesz.to_le_bytes());
        b[40..48].copy_from_slice(&self.memsz.to_le_bytes());
        b[48..56].copy_from_slice(&self.align.to_le_bytes());
        b
    }

    /// Permissions as `rwx` letters.
    pub fn perms(&self) -> String {
        let mut s = String::with_capacity(3);
        s.push(if self.flags & PF_R != 0 { 'r' } else { '-' });
        s.push(if self.flags & PF_W != 0 { 'w' } else { '-' });
        s.push(if self.flags & PF_X != 0 { 'x' } else { '-' });
        s
    }
}

/// A validated static x86-64 executable, borrowed from its bytes.
#[derive(Debug, Clone)]
pub struct ElfFile<'a> {
    /// The whole file.
    pub data: &'a [u8],
    /// Position-dependent or static-PIE.
    pub kind: ElfKind,
    /// `e_entry`.
    pub entry: u64,
    /// `e_phoff`.
    pub phoff: u64,
    /// `e_phentsize`.
    pub phentsize: u16,
    /// `e_phnum`.
    pub phnum: u16,
    /// `e_shoff` (0 when there are no section headers).
    pub shoff: u64,
    /// `e_shnum`.
    pub shnum: u16,
    /// `e_shstrndx`.
    pub shstrndx: u16,
    /// All program headers, in file order.
    pub segments: Vec<Segment>,
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}
fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}
fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_le_bytes(b)
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(page_down)
}

impl<'a> ElfFile<'a> {
    /// Parses and validates `data` as a static x86-64 executable.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if data.len() < 6 {
            return Err(ElfError::Truncated("file header"));
        }
        if data[4] != 2 {
            return Err(ElfError::Not64Bit(data[4]));
        }
        if data[5] != 1 {
            return Err(ElfError::NotLittleEndian(data[5]));
        }
        if data.len() < EHDR_SIZE {
            return Err(ElfError::Truncated("file header"));
        }
        let e_type = u16_at(data, 16);
        let machine = u16_at(data, 18);
        if machine != EM_X86_64 {
            return Err(ElfError::NotX86_64(machine));
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(ElfError::NotExecutable(e_type));
        }
        let entry = u64_at(data, 24);
        let phoff = u64_at(data, 32);
        let shoff = u64_at(data, 40);
        let phentsize = u16_at(data, 54);
        let phnum = u16_at(data, 56);
        let shnum = u16_at(data, 60);
        let shstrndx = u16_at(data, 62);
        if phnum == 0 {
            return Err(ElfError::NoProgramHeaders);
        }
        if phentsize as usize != PHDR_SIZE {
            return Err(ElfError::BadPhentsize(phentsize));
        }
        if phnum > MAX_PHNUM {
            return Err(ElfError::TooManyProgramHeaders(phnum));
        }
        let table_len = phnum as u64 * PHDR_SIZE as u64;
        match phoff.checked_add(table_len) {
            Some(end) if end <= data.len() as u64 => {}
            _ => return Err(ElfError::PhdrsPastEnd),
        }
        let file_len = data.len() as u64;
        let mut segments = Vec::with_capacity(phnum as usize);
        for index in 0..phnum as usize {
            let at = phoff as usize + index * PHDR_SIZE;
            let seg = Segment {
                index,
                p_type: u32_at(data, at),
                flags: u32_at(data, at + 4),
                offset: u64_at(data, at + 8),
                vaddr: u64_at(data, at + 16),
                paddr: u64_at(data, at + 24),
                filesz: u64_at(data, at + 32),
                memsz: u64_at(data, at + 40),
                align: u64_at(data, at + 48),
            };
            if seg.p_type == PT_INTERP {
                return Err(ElfError::Dynamic);
            }
            segments.push(seg);
        }
        for seg in segments.iter().filter(|s| s.is_load()) {
            let index = seg.index;
            match seg.offset.checked_add(seg.filesz) {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(ElfError::SegmentPastEnd {
                        index,
                        offset: seg.offset,
                        filesz: seg.filesz,
                        file_len,
                    })
                }
            }
            if seg.filesz > seg.memsz {
                return Err(ElfError::FileLargerThanMemory(index));
            }
            if seg.memsz > MAX_SEGMENT_SIZE {
                return Err(ElfError::TooLarge(index));
            }
            match seg.vaddr.checked_add(seg.memsz).and_then(page_up) {
                Some(end) if end <= USER_SPACE_END => {}
                _ => return Err(ElfError::TooLarge(index)),
            }
            if seg.offset % PAGE != seg.vaddr % PAGE {
                return Err(ElfError::Misaligned(index));
            }
        }
        let mut loads: Vec<&Segment> = segments.iter().filter(|s| s.is_load() && s.memsz > 0).collect();
        loads.sort_by_key(|s| s.vaddr);
        for pair in loads.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // Page-rounded: the loader maps whole pages, so sharing a page
            // between two segments is an overlap unless it is the same page
            // boundary that the linker commonly shares between R and RW data.
            // We refuse true overlap of bytes and overlap of page-rounded ranges
            // where the second segment starts on a page the first covers past
            // its own bytes only if the bytes themselves overlap.
            if b.vaddr < a.end() {
                return Err(ElfError::Overlap(a.index, b.index));
            }
        }
        if !segments.iter().any(|s| s.is_exec()) {
            return Err(ElfError::NoExecutableSegment);
        }
        if !segments.iter().any(|s| s.is_exec() && s.contains_file_byte(entry)) {
            return Err(ElfError::EntryOutsideCode(entry));
        }
        let kind = if e_type == ET_EXEC { ElfKind::Exec } else { ElfKind::StaticPie };
        // An ET_EXEC is loaded where it is linked; a static-PIE far above.
        if kind == ElfKind::Exec {
            if let Some(low) = loads.iter().find(|s| s.vaddr < cabin_abi::layout::LOWEST_PROGRAM_ADDRESS) {
                return Err(ElfError::BelowLowestAddress {
                    index: low.index,
                    start: page_down(low.vaddr),
                    end: page_up(low.end()).unwrap_or(u64::MAX),
                });
            }
        }
        Ok(Self { data, kind, entry, phoff, phentsize, phnum, shoff, shnum, shstrndx, segments })
    }

    /// The file-backed bytes of a segment (validated in [`ElfFile::parse`]).
    pub fn bytes(&self, seg: &Segment) -> &'a [u8] {
        let start = seg.offset as usize;
        let end = start + seg.filesz as usize;
        self.data.get(start..end).unwrap_or(&[])
    }

    /// Loadable segments in address order.
    pub fn loads(&self) -> impl Iterator<Item = &Segment> {
        let mut v: Vec<&Segment> = self.segments.iter().filter(|s| s.is_load()).collect();
        v.sort_by_key(|s| s.vaddr);
        v.into_iter()
    }

    /// Loadable, executable segments in address order.
    pub fn exec_segments(&self) -> impl Iterator<Item = &Segment> {
        self.loads().filter(|s| s.is_exec())
    }

    /// File-backed bytes `[addr, addr + len)` when they lie in one segment.
    pub fn read_vaddr(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let seg = self.segments.iter().find(|s| s.is_load() && s.contains_file_byte(addr))?;
        let off = addr - seg.vaddr;
        let end = off.checked_add(len as u64)?;
        if end > seg.filesz {
            return None;
        }
        self.bytes(seg).get(off as usize..end as usize)
    }

    /// Whether `addr` lies in an executable segment.
    pub fn is_exec_addr(&self, addr: u64) -> bool {
        self.segments.iter().any(|s| s.is_exec() && s.contains(addr))
    }

    /// Segments of a given type.
    pub fn segments_of(&self, p_type: u32) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(move |s| s.p_type == p_type)
    }

    /// Lowest page-aligned address of any loadable segment.
    pub fn min_vaddr(&self) -> u64 {
        self.loads().map(|s| page_down(s.vaddr)).min().unwrap_or(0)
    }

    /// First page-aligned address after every loadable segment.
    pub fn max_vaddr(&self) -> u64 {
        self.loads().filter_map(|s| page_up(s.end())).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid executable: one R+X segment holding `ud2`.
    fn tiny() -> Vec<u8> {
        let mut d = vec![0u8; 0x1000 + 16];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        d[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        d[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[52..54].copy_from_slice(&64u16.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = Segment {
            index: 0,
            p_type: PT_LOAD,
            flags: PF_R | PF_X,
            offset: 0x1000,
            vaddr: 0x401000,
            paddr: 0x401000,
            filesz: 16,
            memsz: 16,
            align: 0x1000,
        };
        d[64..120].copy_from_slice(&ph.to_bytes());
        d[0x1000] = 0x0f;
        d[0x1001] = 0x0b;
        d
    }

    #[test]
    fn accepts_tiny_executable() {
        let d = tiny();
        let f = ElfFile::parse(&d).expect("valid");
        assert_eq!(f.kind, ElfKind::Exec);
        assert_eq!(f.read_vaddr(0x401000, 2), Some(&[0x0f, 0x0b][..]));
        assert!(f.is_exec_addr(0x40100f));
        assert!(!f.is_exec_addr(0x401010));
    }

    #[test]
    fn low_static_pie_is_fine() {
        // A static-PIE linked at 0 is loaded far above the lowest 64 KiB.
        let mut d = tiny();
        d[16] = 3; // ET_DYN
        d[64 + 16..64 + 32].copy_from_slice(&[0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
        d[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(ElfFile::parse(&d).expect("static-PIE at 0x1000").kind, ElfKind::StaticPie);
    }

    #[test]
    fn refuses_each_malformation() {
        type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Corrupt, &str)> = vec![
            (Box::new(|d| d[0] = b'X'), "not an ELF"),
            (Box::new(|d| d[4] = 1), "64-bit"),
            (Box::new(|d| d[5] = 2), "little-endian"),
            (Box::new(|d| d[18] = 3), "x86-64"),
            (Box::new(|d| d[16] = 1), "not an executable"),
            (Box::new(|d| d.truncate(40)), "truncated"),
            (Box::new(|d| d[54] = 32), "program header size"),
            (Box::new(|d| d[56] = 0), "no program headers"),
            (Box::new(|d| d[56] = 200), "too many program headers"),
            (Box::new(|d| d[33] = 0xf0), "program headers extend past end"),
            (Box::new(|d| d[64 + 40] = 0x08), "file size larger than memory size"),
            (Box::new(|d| d[64 + 32] = 0xff), "extends past end of file"),
            (Box::new(|d| d[64 + 4] = 4), "no executable segment"),
            (Box::new(|d| d[24] = 0x40), "entry point"),
            (Box::new(|d| d[64] = 3), "dynamically linked"),
            (Box::new(|d| d[64 + 16] = 0x10), "misaligned"),
            (Box::new(|d| d[64 + 47] = 0x01), "too large"),
            // Linked at 0x1000 (entry moved along): in the lowest 64 KiB.
            (
                Box::new(|d| {
                    d[64 + 16..64 + 32]
                        .copy_from_slice(&[0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
                    d[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
                }),
                "segment 0 at 0x1000..0x2000 lies below 0x10000: Cabin maps nothing in the lowest 64 KiB",
            ),
        ];
        for (mutate, want) in cases {
            let mut d = tiny();
            mutate(&mut d);
            let err = ElfFile::parse(&d).expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
