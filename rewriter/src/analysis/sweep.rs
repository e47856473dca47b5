//! Linear-sweep disassembly of the executable segments.
//!
//! The sweep restarts at every address known to start code (entry point,
//! symbols, FDE starts, `IRELATIVE` resolvers), so a desynchronisation after
//! data or odd padding never runs past the next function. Undecodable bytes
//! are recorded one at a time as invalid and skipped. Besides instruction
//! boundaries the sweep gathers, in one pass, everything later stages need:
//! direct branch targets, return addresses, code addresses in immediates,
//! static memory operands, and the system-call sites.

use cabin_image::elf::ElfFile;
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};

use crate::plan::SiteKind;

/// One decoded instruction (or one undecodable byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Address of the first byte.
    pub addr: u64,
    /// Length in bytes (1 for an invalid byte).
    pub len: u8,
    /// The byte at `addr` does not start a valid instruction.
    pub invalid: bool,
    /// A `nop` or `int3` (alignment padding, most likely).
    pub padding: bool,
}

impl Insn {
    /// First byte after the instruction.
    pub fn end(&self) -> u64 {
        self.addr + u64::from(self.len)
    }
}

/// The executable file-backed ranges `[start, end)`, sorted.
#[derive(Debug, Clone, Default)]
pub struct CodeRanges(pub Vec<(u64, u64)>);

impl CodeRanges {
    /// Ranges of every executable `PT_LOAD`'s file bytes.
    pub fn of(elf: &ElfFile<'_>) -> Self {
        let mut v: Vec<(u64, u64)> = elf.exec_segments().map(|s| (s.vaddr, s.vaddr + s.filesz)).collect();
        v.sort_unstable();
        Self(v)
    }

    /// Whether `addr` lies in executable file bytes.
    pub fn contains(&self, addr: u64) -> bool {
        self.0.iter().any(|&(s, e)| addr >= s && addr < e)
    }
}

/// Everything the sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Instructions in address order (regions may overlap by a few bytes
    /// where a desynchronised instruction ran into the next region).
    pub insns: Vec<Insn>,
    /// Targets of direct near branches and calls.
    pub branch_targets: Vec<u64>,
    /// Addresses right after every call (return addresses).
    pub return_addrs: Vec<u64>,
    /// Immediates and `lea` addresses that point into code.
    pub code_refs: Vec<u64>,
    /// Every RIP-relative `lea` address (for relative jump tables).
    pub lea_targets: Vec<u64>,
    /// `(instruction, address)` of non-`lea` static memory operands inside code.
    pub code_mem_refs: Vec<(u64, u64)>,
    /// System-call instructions.
    pub sites: Vec<(u64, SiteKind)>,
    /// Bytes that did not decode.
    pub invalid_bytes: u64,
    /// Bytes swept.
    pub code_bytes: u64,
}

impl Sweep {
    /// Index of the instruction starting exactly at `addr`, if valid.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        let i = self.insns.partition_point(|x| x.addr < addr);
        self.insns.get(i).filter(|x| x.addr == addr && !x.invalid).map(|_| i)
    }

    /// Whether `addr` starts a valid instruction of the sweep.
    pub fn is_boundary(&self, addr: u64) -> bool {
        self.index_of(addr).is_some()
    }
}

/// The static address of an instruction's memory operand, when it has one:
/// RIP-relative, or an absolute displacement with no base and no index.
/// FS/GS-relative operands (thread-local storage) have no static address.
pub fn static_mem_addr(ins: &Instruction) -> Option<u64> {
    if !(0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory) {
        return None;
    }
    if matches!(ins.memory_segment(), Register::FS | Register::GS) {
        return None;
    }
    if ins.is_ip_rel_memory_operand() {
        return Some(ins.ip_rel_memory_address());
    }
    if ins.memory_base() == Register::None && ins.memory_index() == Register::None {
        return Some(ins.memory_displacement64());
    }
    None
}

/// The site kind of an instruction, if it is a system-call instruction.
pub fn site_kind(ins: &Instruction) -> Option<SiteKind> {
    match ins.code() {
        Code::Syscall => Some(SiteKind::Syscall),
        Code::Sysenter => Some(SiteKind::Sysenter),
        Code::Int_imm8 if ins.immediate8() == 0x80 => Some(SiteKind::Int80),
        _ => None,
    }
}

fn note_insn(ins: &Instruction, code: &CodeRanges, out: &mut Sweep) {
    if let Some(k) = site_kind(ins) {
        // iced classes `syscall` as a call; it pushes no return address.
        out.sites.push((ins.ip(), k));
        return;
    }
    if matches!(ins.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64) {
        out.branch_targets.push(ins.near_branch_target());
    }
    if matches!(ins.flow_control(), FlowControl::Call | FlowControl::IndirectCall) {
        out.return_addrs.push(ins.next_ip());
    }
    for i in 0..ins.op_count() {
        let v = match ins.op_kind(i) {
            OpKind::Immediate32 => u64::from(ins.immediate32()),
            OpKind::Immediate32to64 => ins.immediate32to64() as u64,
            OpKind::Immediate64 => ins.immediate64(),
            _ => continue,
        };
        if code.contains(v) {
            out.code_refs.push(v);
        }
    }
    if let Some(a) = static_mem_addr(ins) {
        if ins.mnemonic() == Mnemonic::Lea {
            out.lea_targets.push(a);
            if code.contains(a) {
                out.code_refs.push(a);
            }
        } else if code.contains(a) {
            out.code_mem_refs.push((ins.ip(), a));
        }
    }
}

/// Sweeps every executable segment, restarting at each of `starts` except
/// those that fall inside alignment padding of a plain sweep.
///
/// Such starts exist: glibc's `__restore_rt` FDE deliberately begins one
/// byte before the function, inside the preceding padding `nop`, so that an
/// unwinder looking up "return address - 1" finds it. Restarting there would
/// desynchronise the sweep over the function itself.
pub fn sweep(elf: &ElfFile<'_>, starts: &[u64]) -> Sweep {
    let plain = sweep_from(elf, &[]);
    let good: Vec<u64> = starts
        .iter()
        .copied()
        .filter(|&s| {
            let i = plain.insns.partition_point(|x| x.addr <= s);
            // The plain-sweep instruction at or before `s`.
            match i.checked_sub(1).and_then(|k| plain.insns.get(k)) {
                Some(x) if x.addr < s && s < x.end() => !x.padding,
                _ => true,
            }
        })
        .collect();
    if good.is_empty() {
        return plain;
    }
    sweep_from(elf, &good)
}

/// Sweeps every executable segment, restarting at each of `starts`.
fn sweep_from(elf: &ElfFile<'_>, starts: &[u64]) -> Sweep {
    let code = CodeRanges::of(elf);
    let mut out = Sweep::default();
    let mut ins = Instruction::default();
    for seg in elf.exec_segments() {
        let bytes = elf.bytes(seg);
        let (lo, hi) = (seg.vaddr, seg.vaddr + bytes.len() as u64);
        out.code_bytes += bytes.len() as u64;
        let mut cuts: Vec<u64> = starts.iter().copied().filter(|&a| a > lo && a < hi).collect();
        cuts.push(lo);
        cuts.push(hi);
        cuts.sort_unstable();
        cuts.dedup();
        for pair in cuts.windows(2) {
            let (s, e) = (pair[0], pair[1]);
            let region = &bytes[(s - lo) as usize..(e - lo) as usize];
            let Ok(mut dec) = Decoder::try_with_ip(64, region, s, DecoderOptions::NONE) else { continue };
            while dec.can_decode() {
                let pos = dec.position();
                dec.decode_out(&mut ins);
                if ins.is_invalid() {
                    let addr = s + pos as u64;
                    out.insns.push(Insn { addr, len: 1, invalid: true, padding: false });
                    out.invalid_bytes += 1;
                    if dec.set_position(pos + 1).is_err() {
                        break;
                    }
                    dec.set_ip(addr + 1);
                    continue;
                }
                let padding = matches!(ins.mnemonic(), Mnemonic::Nop | Mnemonic::Int3);
                out.insns.push(Insn { addr: ins.ip(), len: ins.len() as u8, invalid: false, padding });
                note_insn(&ins, &code, &mut out);
            }
        }
    }
    out
}

/// Decodes the one instruction at `addr` (bounded by its segment's file bytes).
pub fn decode_at(elf: &ElfFile<'_>, addr: u64) -> Option<Instruction> {
    let seg = elf.exec_segments().find(|s| s.contains_file_byte(addr))?;
    let avail = (seg.vaddr + seg.filesz - addr).min(15) as usize;
    let bytes = elf.read_vaddr(addr, avail)?;
    let mut dec = Decoder::try_with_ip(64, bytes, addr, DecoderOptions::NONE).ok()?;
    let ins = dec.decode();
    (!ins.is_invalid()).then_some(ins)
}
