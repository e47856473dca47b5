//! Search for instructions that could lift the program's own protection.
//!
//! A jump can land on any byte of executable memory, so the search ignores
//! the linear sweep and looks at every byte offset:
//! - `wrpkru` (`0f 01 ef`): a raw byte search; no prefix changes its meaning.
//! - the `xrstor` family (`0f ae /5` and `0f c7 /3` with a memory operand,
//!   which can load PKRU when XCR0 enables it): every occurrence of the
//!   opcode bytes with a matching ModRM is confirmed by decoding at each
//!   start offset up to 14 bytes before it (to cover prefixes), and every
//!   offset that decodes to a member of the family is reported.

use cabin_image::elf::ElfFile;
use iced_x86::{Code, Decoder, DecoderOptions};

use crate::plan::{Forbidden, ForbiddenFix, ForbiddenKind};

/// Addresses of every `0f 01 ef` in executable file bytes.
pub fn find_wrpkru(elf: &ElfFile<'_>) -> Vec<u64> {
    let mut out = Vec::new();
    for seg in elf.exec_segments() {
        let b = elf.bytes(seg);
        let mut i = 0;
        while i + 3 <= b.len() {
            match b[i..].iter().position(|&x| x == 0x0f) {
                None => break,
                Some(p) => {
                    i += p;
                    if b.get(i + 1..i + 3) == Some(&[0x01, 0xef][..]) {
                        out.push(seg.vaddr + i as u64);
                    }
                    i += 1;
                }
            }
        }
    }
    out
}

fn xrstor_kind(code: Code) -> Option<ForbiddenKind> {
    match code {
        Code::Xrstor_mem | Code::Xrstor64_mem => Some(ForbiddenKind::Xrstor),
        Code::Xrstors_mem | Code::Xrstors64_mem => Some(ForbiddenKind::Xrstors),
        _ => None,
    }
}

/// Every offset of executable file bytes that decodes to an `xrstor`-family
/// instruction, in address order.
pub fn find_xrstor(elf: &ElfFile<'_>) -> Vec<Forbidden> {
    let mut out = Vec::new();
    for seg in elf.exec_segments() {
        let b = elf.bytes(seg);
        for j in 0..b.len().saturating_sub(2) {
            if b[j] != 0x0f {
                continue;
            }
            let modrm = b[j + 2];
            let reg = (modrm >> 3) & 7;
            let is_mem = modrm >> 6 != 3;
            let candidate = match b[j + 1] {
                0xae => reg == 5 && is_mem,
                0xc7 => reg == 3 && is_mem,
                _ => false,
            };
            if !candidate {
                continue;
            }
            for start in j.saturating_sub(14)..=j {
                let end = (start + 15).min(b.len());
                let ip = seg.vaddr + start as u64;
                let Ok(mut dec) = Decoder::try_with_ip(64, &b[start..end], ip, DecoderOptions::NONE) else {
                    continue;
                };
                let ins = dec.decode();
                // Only count decodes whose opcode is the one found at `j`.
                if ins.is_invalid() || start + ins.len() <= j + 2 {
                    continue;
                }
                if let Some(kind) = xrstor_kind(ins.code()) {
                    let fix = if kind == ForbiddenKind::Xrstors {
                        ForbiddenFix::Privileged
                    } else {
                        ForbiddenFix::Left
                    };
                    out.push(Forbidden { kind, addr: ip, fix, window: None });
                }
            }
        }
    }
    out.sort_by_key(|f| f.addr);
    out.dedup_by_key(|f| f.addr);
    out
}
