//! Image emission: applies a decided patch plan and writes the Cabin image.
//!
//! The emitter decides nothing about sites; it takes code patches and the
//! trampoline blob the planner produced and lays out the output file:
//!
//! ```text
//! [ original file bytes, code windows patched in place ]
//! [ libos segments ]            vaddr = libos_base + blob offset   (X / R / RW)
//! [ program header table ]     vaddr = phdr_vaddr                 (R)
//! [ trampolines ]               vaddr = tramp_base                 (X)
//! [ manifest + measurement notes, not loaded ]
//! ```
//!
//! Original bytes keep their file offsets, so section headers and everything
//! else that points into the file stay valid. Added segments start on the
//! first page after the input's highest loadable address, so they are within
//! 32-bit reach of the code (inputs are at most a few GiB; checked).

use cabin_abi::link::{LinkInfo, FLAG_EXECUTE_ONLY, FLAG_PIE, LINK_INFO_MAGIC};
use cabin_abi::note::{
    ForbiddenRecord, ManifestHeader, SiteRecord, FORMAT_VERSION, MF_EXECUTE_ONLY, MF_PIE, NT_CABIN_MANIFEST,
    NT_CABIN_MEASUREMENT,
};
use cabin_abi::{ABI_VERSION, LIBOS_VERSION, PAGE_SIZE};
use cabin_image::elf::{ElfFile, ElfKind, Segment, PF_R, PF_X, PHDR_SIZE, PT_LOAD, PT_NOTE, PT_PHDR};
use cabin_image::image::{encode_note, measure, ImageError};
use cabin_image::measure::DIGEST_LEN;
use thiserror::Error;

use crate::libos_blob::LibosBlob;

/// Why an image could not be written.
#[derive(Debug, Error)]
pub enum EmitError {
    /// A patch does not lie inside the file bytes of an executable segment.
    #[error("internal error: patch at {0:#x} is not inside code")]
    PatchOutsideCode(u64),
    /// The image would not fit in the address space.
    #[error("image too large: added segments would end beyond user space")]
    TooLarge,
    /// Measuring the written image failed.
    #[error("measuring the image failed: {0}")]
    Measure(#[from] ImageError),
}

/// Where the added segments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CabinLayout {
    /// Load address of the libos blob's first byte.
    pub libos_base: u64,
    /// Address of the new program header table.
    pub phdr_vaddr: u64,
    /// Bytes reserved for the program header table.
    pub phdr_reserved: u64,
    /// Address of the first trampoline.
    pub tramp_base: u64,
}

fn page_up(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// Number of program headers the emitter adds besides the libos segments:
/// the header-table segment, the trampoline segment and the note.
const EXTRA_PHDRS: usize = 3;

impl CabinLayout {
    /// Places the added segments after the input's last loadable page.
    pub fn new(elf: &ElfFile<'_>, libos: &LibosBlob) -> Self {
        let libos_base = page_up(elf.max_vaddr());
        let phdr_vaddr = libos_base + page_up(libos.size);
        let phnum = elf.segments.len() + libos.segments.len() + EXTRA_PHDRS;
        let phdr_reserved = page_up((phnum * PHDR_SIZE) as u64);
        Self { libos_base, phdr_vaddr, phdr_reserved, tramp_base: phdr_vaddr + phdr_reserved }
    }
}

/// Everything the emitter needs.
#[derive(Debug)]
pub struct EmitRequest<'a> {
    /// The validated input.
    pub elf: &'a ElfFile<'a>,
    /// The libos to link.
    pub libos: &'a LibosBlob,
    /// Where added segments go (must be the layout the trampolines were built for).
    pub layout: CabinLayout,
    /// Code patches: (address, bytes).
    pub patches: &'a [(u64, Vec<u8>)],
    /// Trampoline code, placed at `layout.tramp_base`.
    pub trampolines: &'a [u8],
    /// Site records for the manifest.
    pub sites: &'a [SiteRecord],
    /// Forbidden-instruction records for the manifest.
    pub forbidden: &'a [ForbiddenRecord],
    /// Whether code segments become execute-only.
    pub execute_only: bool,
    /// The SHA-256 of the input, recorded in the manifest's trailer
    /// (the image cache checks it; `cabinc inspect` shows it).
    pub input_digest: Option<[u8; 32]>,
}

/// A written image.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// The complete file.
    pub bytes: Vec<u8>,
    /// Its launch measurement.
    pub measurement: [u8; DIGEST_LEN],
    /// The manifest header recorded in it.
    pub manifest: ManifestHeader,
}

/// Encodes the manifest for a request.
pub fn encode_manifest(
    header: &ManifestHeader,
    sites: &[SiteRecord],
    forbidden: &[ForbiddenRecord],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(ManifestHeader::SIZE + sites.len() * SiteRecord::SIZE);
    m.extend_from_slice(&header.to_bytes());
    for s in sites {
        m.extend_from_slice(&s.to_bytes());
    }
    for f in forbidden {
        m.extend_from_slice(&f.to_bytes());
    }
    m
}

fn code_flags(execute_only: bool) -> u32 {
    if execute_only {
        PF_X
    } else {
        PF_R | PF_X
    }
}

/// Lays out and writes the image.
pub fn emit(req: &EmitRequest<'_>) -> Result<Emitted, EmitError> {
    let elf = req.elf;
    let lay = req.layout;
    let mut out = elf.data.to_vec();

    for (addr, bytes) in req.patches {
        let seg = elf
            .exec_segments()
            .find(|s| s.contains_file_byte(*addr) && s.contains_file_byte(addr + bytes.len() as u64 - 1))
            .ok_or(EmitError::PatchOutsideCode(*addr))?;
        let off = (seg.offset + (addr - seg.vaddr)) as usize;
        out[off..off + bytes.len()].copy_from_slice(bytes);
    }

    let pie = elf.kind == ElfKind::StaticPie;
    let mut flags = 0;
    let mut link_flags = 0;
    if req.execute_only {
        flags |= MF_EXECUTE_ONLY;
        link_flags |= FLAG_EXECUTE_ONLY;
    }
    if pie {
        flags |= MF_PIE;
        link_flags |= FLAG_PIE;
    }
    let entry = lay.libos_base + req.libos.start;
    let cabin_end = lay.tramp_base + page_up(req.trampolines.len().max(1) as u64);
    if cabin_end > cabin_image::elf::USER_SPACE_END {
        return Err(EmitError::TooLarge);
    }
    let header = ManifestHeader {
        format_version: FORMAT_VERSION,
        flags,
        original_entry: elf.entry,
        entry,
        libos_version: LIBOS_VERSION,
        site_count: req.sites.len() as u32,
        forbidden_count: req.forbidden.len() as u32,
        cabin_vaddr: lay.libos_base,
        cabin_size: cabin_end - lay.libos_base,
    };
    let mut manifest = encode_manifest(&header, req.sites, req.forbidden);
    if let Some(d) = &req.input_digest {
        manifest.extend_from_slice(&cabin_abi::note::input_digest_trailer(d));
    }

    // New loadable segments, in address order, each with its contents.
    let mut added: Vec<(Segment, Vec<u8>)> = Vec::new();
    // An image whose sites are all trap sites has no trampolines and gets no
    // (empty) trampoline segment.
    let has_tramp = !req.trampolines.is_empty();
    let new_phnum = elf.segments.len() + req.libos.segments.len() + EXTRA_PHDRS - usize::from(!has_tramp);
    // The blob reader has checked that the link-info block lies in a
    // writable, file-backed segment.
    let info = LinkInfo {
        magic: LINK_INFO_MAGIC,
        abi_version: ABI_VERSION,
        flags: link_flags,
        original_entry: elf.entry.wrapping_sub(lay.libos_base) as i64,
        phdr: lay.phdr_vaddr.wrapping_sub(lay.libos_base) as i64,
        phnum: new_phnum as u64,
        reserved: [0; 3],
    };
    for bs in req.libos.with_link_info(&info) {
        let seg_flags = if bs.flags & PF_X != 0 { code_flags(req.execute_only) } else { bs.flags };
        added.push((seg(seg_flags, lay.libos_base + bs.offset, bs.data.len() as u64, bs.memsz), bs.data));
    }
    // The header-table segment: filled below, once file offsets are known.
    let phdr_len = (new_phnum * PHDR_SIZE) as u64;
    let phdr_index = added.len();
    added.push((seg(PF_R, lay.phdr_vaddr, lay.phdr_reserved, lay.phdr_reserved), Vec::new()));
    if has_tramp {
        let tramp = req.trampolines.to_vec();
        let tlen = tramp.len() as u64;
        added.push((seg(code_flags(req.execute_only), lay.tramp_base, tlen, tlen), tramp));
    }

    // File offsets: page-aligned, congruent with the page-aligned vaddrs.
    let mut cursor = page_up(out.len() as u64);
    for (s, _) in added.iter_mut() {
        s.offset = cursor + (s.vaddr % PAGE_SIZE);
        cursor = page_up(s.offset + s.filesz.max(1));
    }
    let notes_off = cursor;
    let mut notes = encode_note(NT_CABIN_MANIFEST, &manifest);
    let meas_desc_off = notes.len() + 20; // 12-byte header + "CABIN\0" padded to 8
    notes.extend_from_slice(&encode_note(NT_CABIN_MEASUREMENT, &[0u8; DIGEST_LEN]));

    // The program header table: originals (code made execute-only, PT_PHDR
    // moved), then the added loads right after the last original load so
    // that PT_LOAD entries stay in ascending address order, then the note.
    let mut phdrs: Vec<Segment> = Vec::with_capacity(new_phnum);
    let last_load = elf.segments.iter().rposition(|s| s.p_type == PT_LOAD).unwrap_or(0);
    let phdr_seg = added[phdr_index].0;
    for (i, s) in elf.segments.iter().enumerate() {
        let mut s = *s;
        if s.is_exec() {
            s.flags = code_flags(req.execute_only);
        }
        if s.p_type == PT_PHDR {
            s.offset = phdr_seg.offset;
            s.vaddr = phdr_seg.vaddr;
            s.paddr = phdr_seg.vaddr;
            s.filesz = phdr_len;
            s.memsz = phdr_len;
        }
        phdrs.push(s);
        if i == last_load {
            phdrs.extend(added.iter().map(|(s, _)| *s));
        }
    }
    phdrs.push(Segment {
        index: 0,
        p_type: PT_NOTE,
        flags: PF_R,
        offset: notes_off,
        vaddr: 0,
        paddr: 0,
        filesz: notes.len() as u64,
        memsz: notes.len() as u64,
        align: 4,
    });
    debug_assert_eq!(phdrs.len(), new_phnum);
    let mut table = Vec::with_capacity(lay.phdr_reserved as usize);
    for p in &phdrs {
        table.extend_from_slice(&p.to_bytes());
    }
    table.resize(lay.phdr_reserved as usize, 0);
    added[phdr_index].1 = table;

    for (s, data) in &added {
        let end = (s.offset as usize) + data.len();
        if out.len() < end {
            out.resize(end, 0);
        }
        out[s.offset as usize..end].copy_from_slice(data);
    }
    out.resize(notes_off as usize, 0);
    out.extend_from_slice(&notes);

    // ELF header: entry, program header table.
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&phdr_seg.offset.to_le_bytes());
    out[56..58].copy_from_slice(&(new_phnum as u16).to_le_bytes());

    let written = ElfFile::parse(&out).map_err(|e| EmitError::Measure(e.into()))?;
    let measurement = measure(&written, &manifest)?;
    let at = notes_off as usize + meas_desc_off;
    out[at..at + DIGEST_LEN].copy_from_slice(&measurement);
    Ok(Emitted { bytes: out, measurement, manifest: header })
}

fn seg(flags: u32, vaddr: u64, filesz: u64, memsz: u64) -> Segment {
    Segment {
        index: 0,
        p_type: PT_LOAD,
        flags,
        offset: 0,
        vaddr,
        paddr: vaddr,
        filesz,
        memsz: memsz.max(filesz),
        align: PAGE_SIZE,
    }
}
