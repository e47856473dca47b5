//! A small reader for `.eh_frame`, `.eh_frame_hdr` and GCC/LLVM LSDAs
//! (`.gcc_except_table`), used only to learn code addresses: each FDE's
//! initial location (a function start) and each landing pad (reached from the
//! unwinder by an indirect jump).
//!
//! Formats: the LSB "Exception Frames" chapter and the Itanium C++ ABI LSDA
//! layout. The reader works on link-time virtual addresses through
//! [`ElfFile::read_vaddr`], never trusts a length, and gives up on a table
//! (with a warning) rather than guess.

use std::collections::HashMap;

use cabin_image::elf::{ElfFile, PT_GNU_EH_FRAME};

const DW_EH_PE_OMIT: u8 = 0xff;
const DW_EH_PE_PCREL: u8 = 0x10;
const DW_EH_PE_DATAREL: u8 = 0x30;
const DW_EH_PE_INDIRECT: u8 = 0x80;

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

/// A cursor over file-backed bytes addressed by virtual address.
struct Cursor<'a> {
    base: u64,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `addr`, ranging to the end of the segment holding it.
    fn at(elf: &ElfFile<'a>, addr: u64) -> Option<Self> {
        let seg = elf.loads().find(|s| s.contains_file_byte(addr))?;
        let off = usize::try_from(addr - seg.vaddr).ok()?;
        let bytes = elf.bytes(seg).get(off..)?;
        Some(Self { base: addr, bytes, pos: 0 })
    }

    fn addr(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
            if shift > 70 {
                return None;
            }
        }
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut v = 0i64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
            if shift > 70 {
                return None;
            }
        }
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let tail = self.bytes.get(self.pos..)?;
        let n = tail.iter().position(|&b| b == 0)?;
        self.pos += n + 1;
        Some(&tail[..n])
    }

    /// The value part of an encoded pointer (format bits only).
    fn raw(&mut self, enc: u8) -> Option<u64> {
        Some(match enc & 0x0f {
            0x00 => self.u64()?,
            0x01 => self.uleb()?,
            0x02 => u64::from(self.u16()?),
            0x03 => u64::from(self.u32()?),
            0x04 => self.u64()?,
            0x09 => self.sleb()? as u64,
            0x0a => self.u16()? as i16 as i64 as u64,
            0x0b => self.u32()? as i32 as i64 as u64,
            0x0c => self.u64()?,
            _ => return None,
        })
    }

    /// A full encoded pointer: format, application (`pcrel`, `datarel` with
    /// `datarel_base`) and indirection.
    fn pointer(&mut self, elf: &ElfFile<'_>, enc: u8, datarel_base: Option<u64>) -> Option<u64> {
        let field = self.addr();
        let raw = self.raw(enc)?;
        let v = match enc & 0x70 {
            0 => raw,
            DW_EH_PE_PCREL => field.wrapping_add(raw),
            DW_EH_PE_DATAREL => datarel_base?.wrapping_add(raw),
            _ => return None,
        };
        if enc & DW_EH_PE_INDIRECT != 0 {
            let b = elf.read_vaddr(v, 8)?;
            return Some(u64::from_le_bytes(b.try_into().ok()?));
        }
        Some(v)
    }
}

/// What an FDE needs from its CIE.
#[derive(Debug, Clone, Copy)]
struct Cie {
    fde_enc: u8,
    lsda_enc: u8,
    has_aug_data: bool,
}

fn parse_cie(c: &mut Cursor<'_>, elf: &ElfFile<'_>) -> Option<Cie> {
    let version = c.u8()?;
    let aug = c.cstr()?.to_vec();
    if aug.windows(2).any(|w| w == b"eh") {
        c.u64()?;
    }
    c.uleb()?; // code alignment
    c.sleb()?; // data alignment
    if version == 1 {
        c.u8()?;
    } else {
        c.uleb()?;
    }
    let mut cie = Cie { fde_enc: 0, lsda_enc: DW_EH_PE_OMIT, has_aug_data: aug.first() == Some(&b'z') };
    if cie.has_aug_data {
        let len = usize::try_from(c.uleb()?).ok()?;
        let data_end = c.pos.checked_add(len)?;
        for &ch in &aug[1..] {
            match ch {
                b'L' => cie.lsda_enc = c.u8()?,
                b'R' => cie.fde_enc = c.u8()?,
                b'P' => {
                    let enc = c.u8()?;
                    c.pointer(elf, enc, None)?;
                }
                b'S' | b'B' | b'G' => {}
                _ => break,
            }
        }
        c.pos = data_end;
    }
    Some(cie)
}

/// Walks one `.eh_frame` starting at `start` until its terminator or until
/// the bytes stop making sense.
fn walk_eh_frame(elf: &ElfFile<'_>, start: u64, limit: Option<u64>, out: &mut UnwindAddrs) {
    let Some(mut c) = Cursor::at(elf, start) else {
        out.warnings.push(format!(".eh_frame at {start:#x} is not in the file"));
        return;
    };
    if let Some(limit) = limit {
        let n = usize::try_from(limit).unwrap_or(usize::MAX).min(c.bytes.len());
        c.bytes = &c.bytes[..n];
    }
    let mut cies: HashMap<u64, Option<Cie>> = HashMap::new();
    let mut lsdas: Vec<(u64, u64)> = Vec::new();
    while c.pos < c.bytes.len() {
        let entry_addr = c.addr();
        let Some(len32) = c.u32() else { break };
        if len32 == 0 {
            break;
        }
        let len = if len32 == u32::MAX {
            match c.u64() {
                Some(l) => l,
                None => break,
            }
        } else {
            u64::from(len32)
        };
        let id_pos = c.pos;
        let Some(end) = usize::try_from(len).ok().and_then(|l| id_pos.checked_add(l)) else { break };
        if end > c.bytes.len() {
            out.warnings.push(format!(".eh_frame entry at {entry_addr:#x} runs past its segment"));
            break;
        }
        let id_addr = c.addr();
        let Some(id) = c.u32() else { break };
        if id == 0 {
            let mut sub = Cursor { base: c.base, bytes: &c.bytes[..end], pos: c.pos };
            cies.insert(entry_addr, parse_cie(&mut sub, elf));
        } else {
            let cie_addr = id_addr.wrapping_sub(u64::from(id));
            let cie = match cies.get(&cie_addr) {
                Some(c) => *c,
                None => {
                    // A CIE after its FDE: legal, rare. Parse it where it is.
                    let parsed = Cursor::at(elf, cie_addr).and_then(|mut cc| {
                        let l = cc.u32()?;
                        if l == 0 || l == u32::MAX || cc.u32()? != 0 {
                            return None;
                        }
                        parse_cie(&mut cc, elf)
                    });
                    cies.insert(cie_addr, parsed);
                    parsed
                }
            };
            let Some(cie) = cie else {
                out.warnings.push(format!("FDE at {entry_addr:#x} names an unreadable CIE"));
                c.pos = end;
                continue;
            };
            let mut sub = Cursor { base: c.base, bytes: &c.bytes[..end], pos: c.pos };
            if let Some(pc) = sub.pointer(elf, cie.fde_enc, None) {
                out.fde_starts.push(pc);
                let _range = sub.raw(cie.fde_enc);
                if cie.has_aug_data && cie.lsda_enc != DW_EH_PE_OMIT {
                    if let Some(_aug_len) = sub.uleb() {
                        // Some compilers encode "no LSDA" as a zero value.
                        if let Some(lsda) = sub.pointer(elf, cie.lsda_enc, None).filter(|&l| l != 0) {
                            lsdas.push((pc, lsda));
                        }
                    }
                }
            }
        }
        c.pos = end;
    }
    for (func, lsda) in lsdas {
        if !walk_lsda(elf, func, lsda, out) {
            out.warnings.push(format!("LSDA at {lsda:#x} (function {func:#x}) is unreadable"));
        }
    }
}

/// Adds the landing pads of one LSDA; false when it could not be read.
fn walk_lsda(elf: &ElfFile<'_>, func: u64, lsda: u64, out: &mut UnwindAddrs) -> bool {
    let Some(mut c) = Cursor::at(elf, lsda) else { return false };
    let mut inner = || -> Option<()> {
        let lp_enc = c.u8()?;
        let lpstart = if lp_enc == DW_EH_PE_OMIT { func } else { c.pointer(elf, lp_enc, None)? };
        let tt_enc = c.u8()?;
        if tt_enc != DW_EH_PE_OMIT {
            c.uleb()?;
        }
        let cs_enc = c.u8()?;
        let cs_len = usize::try_from(c.uleb()?).ok()?;
        let table_end = c.pos.checked_add(cs_len)?;
        if table_end > c.bytes.len() {
            return None;
        }
        while c.pos < table_end {
            let _start = c.raw(cs_enc)?;
            let _len = c.raw(cs_enc)?;
            let lp = c.raw(cs_enc)?;
            c.uleb()?; // action
            if lp != 0 {
                out.landing_pads.push(lpstart.wrapping_add(lp));
            }
        }
        Some(())
    };
    inner().is_some()
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
    let Some(mut c) = Cursor::at(elf, hdr_addr) else {
        out.warnings.push(format!(".eh_frame_hdr at {hdr_addr:#x} is not in the file"));
        return out;
    };
    let mut inner = || -> Option<()> {
        if c.u8()? != 1 {
            return None;
        }
        let ptr_enc = c.u8()?;
        let count_enc = c.u8()?;
        let table_enc = c.u8()?;
        let eh_frame = c.pointer(elf, ptr_enc, Some(hdr_addr))?;
        walk_eh_frame(elf, eh_frame, None, &mut out);
        if count_enc != DW_EH_PE_OMIT && table_enc != DW_EH_PE_OMIT {
            let n = c.pointer(elf, count_enc, Some(hdr_addr))?;
            for _ in 0..n.min(1 << 22) {
                out.fde_starts.push(c.pointer(elf, table_enc, Some(hdr_addr))?);
                c.pointer(elf, table_enc, Some(hdr_addr))?;
            }
        }
        Some(())
    };
    if inner().is_none() {
        out.warnings.push(format!(".eh_frame_hdr at {hdr_addr:#x} is unreadable"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(bytes: &[u8]) -> Cursor<'_> {
        Cursor { base: 0x1000, bytes, pos: 0 }
    }

    #[test]
    fn leb128_values() {
        assert_eq!(cursor(&[0xe5, 0x8e, 0x26]).uleb(), Some(624_485));
        assert_eq!(cursor(&[0xc0, 0xbb, 0x78]).sleb(), Some(-123_456));
        assert_eq!(cursor(&[0x7f]).sleb(), Some(-1));
        assert_eq!(cursor(&[0x80]).uleb(), None, "truncated");
        assert_eq!(cursor(&[0xff; 20]).uleb(), None, "overlong");
    }

    #[test]
    fn raw_pointer_formats() {
        assert_eq!(cursor(&[0xfc, 0xff, 0xff, 0xff]).raw(0x0b), Some(-4i64 as u64));
        assert_eq!(cursor(&[0x10, 0, 0, 0]).raw(0x03), Some(0x10));
        assert_eq!(cursor(&[0x01]).raw(0x07), None, "unknown format");
    }
}
