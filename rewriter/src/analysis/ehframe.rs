//! Code addresses learned from unwind information: each FDE's initial
//! location (a function start) from `.eh_frame` (found through its section
//! header, or through `.eh_frame_hdr` when stripped), and each landing pad
//! of a GCC/LLVM LSDA (`.gcc_except_table`, reached by the unwinder with an
//! indirect jump).
//!
//! CIEs, FDEs and `.eh_frame_hdr` are parsed by `gimli` (the LSB "Exception
//! Frames" format); LSDAs, which gimli does not read, by [`walk_lsda`] (the
//! Itanium C++ ABI layout) with gimli's reader. Everything works on
//! link-time virtual addresses through the file's segments, never trusts a
//! length, and gives up on a table (with a warning) rather than guess: a
//! malformed CIE ends the walk of its `.eh_frame`, a malformed FDE is skipped.

use cabin_image::elf::{ElfFile, PT_GNU_EH_FRAME};
use gimli::{
    BaseAddresses, CieOrFde, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, Pointer, Reader, UnwindSection,
};

/// `DW_EH_PE_omit`.
const DW_EH_PE_OMIT: u8 = 0xff;
/// `DW_EH_PE_pcrel`.
const DW_EH_PE_PCREL: u8 = 0x10;
/// `DW_EH_PE_indirect`.
const DW_EH_PE_INDIRECT: u8 = 0x80;

/// Most FDE starts read from one `.eh_frame_hdr` search table.
const MAX_HDR_ENTRIES: u64 = 1 << 22;

type Bytes<'a> = EndianSlice<'a, LittleEndian>;

/// Code addresses learned from unwind information.
#[derive(Debug, Default)]
pub struct UnwindAddrs {
    /// FDE initial locations (function starts).
    pub fde_starts: Vec<u64>,
    /// Landing pads of LSDA call-site tables.
    pub landing_pads: Vec<u64>,
    /// What could not be read.
    pub warnings: Vec<String>,
}

/// The file bytes from `addr` to the end of the segment holding it.
fn bytes_at<'a>(elf: &ElfFile<'a>, addr: u64) -> Option<&'a [u8]> {
    let seg = elf.loads().find(|s| s.contains_file_byte(addr))?;
    let off = usize::try_from(addr - seg.vaddr).ok()?;
    elf.bytes(seg).get(off..)
}

/// The value of `pointer`, read through memory when it is indirect.
fn resolve(elf: &ElfFile<'_>, pointer: Pointer) -> Option<u64> {
    match pointer {
        Pointer::Direct(v) => Some(v),
        Pointer::Indirect(at) => Some(u64::from_le_bytes(elf.read_vaddr(at, 8)?.try_into().ok()?)),
    }
}

/// Walks one `.eh_frame` starting at `start` (at most `limit` bytes, else
/// to the end of its segment) until its terminator or its first malformed
/// CIE; then reads the LSDAs its FDEs name.
fn walk_eh_frame(elf: &ElfFile<'_>, start: u64, limit: Option<u64>, out: &mut UnwindAddrs) {
    let Some(mut bytes) = bytes_at(elf, start) else {
        out.warnings.push(format!(".eh_frame at {start:#x} is not in the file"));
        return;
    };
    if let Some(limit) = limit {
        bytes = &bytes[..usize::try_from(limit).unwrap_or(usize::MAX).min(bytes.len())];
    }
    let mut eh_frame = EhFrame::new(bytes, LittleEndian);
    eh_frame.set_address_size(8);
    let bases = BaseAddresses::default().set_eh_frame(start);
    let mut entries = eh_frame.entries(&bases);
    let mut lsdas: Vec<(u64, u64)> = Vec::new();
    loop {
        let partial = match entries.next() {
            Ok(None) => break,
            Ok(Some(CieOrFde::Cie(_))) => continue,
            Ok(Some(CieOrFde::Fde(partial))) => partial,
            Err(e) => {
                out.warnings.push(format!(".eh_frame at {start:#x} is unreadable from some entry on: {e}"));
                break;
            }
        };
        let fde_addr = start.wrapping_add(partial.offset() as u64);
        match partial.parse(|section, bases, cie| section.cie_from_offset(bases, cie)) {
            Ok(fde) => {
                let pc = fde.initial_address();
                out.fde_starts.push(pc);
                // Some compilers encode "no LSDA" as a zero value.
                if let Some(lsda) = fde.lsda().and_then(|p| resolve(elf, p)).filter(|&l| l != 0) {
                    lsdas.push((pc, lsda));
                }
            }
            Err(e) => out.warnings.push(format!("FDE at {fde_addr:#x} is unreadable: {e}")),
        }
    }
    for (func, lsda) in lsdas {
        if walk_lsda(elf, func, lsda, out).is_none() {
            out.warnings.push(format!("LSDA at {lsda:#x} (function {func:#x}) is unreadable"));
        }
    }
}

/// The value part of an encoded pointer (its format bits only).
fn raw(r: &mut Bytes<'_>, enc: u8) -> Option<u64> {
    Some(match enc & 0x0f {
        0x00 | 0x04 | 0x0c => r.read_u64().ok()?,
        0x01 => r.read_uleb128().ok()?,
        0x02 => u64::from(r.read_u16().ok()?),
        0x03 => u64::from(r.read_u32().ok()?),
        0x09 => r.read_sleb128().ok()? as u64,
        0x0a => r.read_i16().ok()? as i64 as u64,
        0x0b => r.read_i32().ok()? as i64 as u64,
        _ => return None,
    })
}

/// Adds the landing pads of the LSDA at `lsda` of the function at `func`;
/// `None` when it could not be read.
fn walk_lsda(elf: &ElfFile<'_>, func: u64, lsda: u64, out: &mut UnwindAddrs) -> Option<()> {
    let bytes = bytes_at(elf, lsda)?;
    let mut r = Bytes::new(bytes, LittleEndian);
    let lp_enc = r.read_u8().ok()?;
    let lpstart = if lp_enc == DW_EH_PE_OMIT {
        func
    } else {
        // Absolute or relative to the field itself; anything else is not
        // something compilers emit here.
        let field = lsda.wrapping_add((bytes.len() - r.len()) as u64);
        let v = match lp_enc & 0x70 {
            0 => raw(&mut r, lp_enc)?,
            DW_EH_PE_PCREL => field.wrapping_add(raw(&mut r, lp_enc)?),
            _ => return None,
        };
        if lp_enc & DW_EH_PE_INDIRECT != 0 {
            resolve(elf, Pointer::Indirect(v))?
        } else {
            v
        }
    };
    let tt_enc = r.read_u8().ok()?;
    if tt_enc != DW_EH_PE_OMIT {
        r.read_uleb128().ok()?;
    }
    let cs_enc = r.read_u8().ok()?;
    let cs_len = usize::try_from(r.read_uleb128().ok()?).ok()?;
    let mut table = r.split(cs_len).ok()?;
    while !table.is_empty() {
        let _start = raw(&mut table, cs_enc)?;
        let _len = raw(&mut table, cs_enc)?;
        let lp = raw(&mut table, cs_enc)?;
        table.read_uleb128().ok()?; // action
        if lp != 0 {
            out.landing_pads.push(lpstart.wrapping_add(lp));
        }
    }
    Some(())
}

/// Reads `.eh_frame` through its section header when present, else through
/// `PT_GNU_EH_FRAME` (`.eh_frame_hdr`), which survives stripping.
pub fn unwind_addrs(elf: &ElfFile<'_>, secs: &[super::elfmeta::Section]) -> UnwindAddrs {
    let mut out = UnwindAddrs::default();
    if let Some(s) = secs.iter().find(|s| s.name == ".eh_frame" && s.addr != 0) {
        walk_eh_frame(elf, s.addr, Some(s.size), &mut out);
        return out;
    }
    let Some(hdr) = elf.segments_of(PT_GNU_EH_FRAME).next() else { return out };
    let hdr_addr = hdr.vaddr;
    let Some(bytes) = bytes_at(elf, hdr_addr) else {
        out.warnings.push(format!(".eh_frame_hdr at {hdr_addr:#x} is not in the file"));
        return out;
    };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr);
    let read = |out: &mut UnwindAddrs| -> Option<()> {
        let parsed = EhFrameHdr::new(bytes, LittleEndian).parse(&bases, 8).ok()?;
        walk_eh_frame(elf, resolve(elf, parsed.eh_frame_ptr())?, None, out);
        if let Some(table) = parsed.table() {
            let mut rows = table.iter(&bases);
            for _ in 0..MAX_HDR_ENTRIES {
                let Some((pc, _fde)) = rows.next().ok()? else { break };
                out.fde_starts.push(resolve(elf, pc)?);
            }
        }
        Some(())
    };
    if read(&mut out).is_none() {
        out.warnings.push(format!(".eh_frame_hdr at {hdr_addr:#x} is unreadable"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Bytes<'_> {
        Bytes::new(bytes, LittleEndian)
    }

    #[test]
    fn raw_pointer_formats() {
        assert_eq!(raw(&mut reader(&[0xfc, 0xff, 0xff, 0xff]), 0x0b), Some(-4i64 as u64));
        assert_eq!(raw(&mut reader(&[0x10, 0, 0, 0]), 0x03), Some(0x10));
        assert_eq!(raw(&mut reader(&[0xe5, 0x8e, 0x26]), 0x01), Some(624_485));
        assert_eq!(raw(&mut reader(&[0xc0, 0xbb, 0x78]), 0x09), Some(-123_456i64 as u64));
        assert_eq!(raw(&mut reader(&[0x80]), 0x01), None, "truncated");
        assert_eq!(raw(&mut reader(&[0x01]), 0x07), None, "unknown format");
    }
}
