//! Per-site trampolines and the code patches that jump to them.
//!
//! For every rewritten site of a [`PatchPlan`], [`build`] emits, at the next
//! 16-byte boundary of one blob placed at `tramp_base`:
//!
//! ```text
//! <instructions displaced from before the site, re-encoded here>
//! lea  rsp, [rsp - 128]          ; keep the interrupted code's red zone
//! call syscall_entry             ; rel32; rax = nr, args as for `syscall`
//! lea  rsp, [rsp + 128]
//! <instructions displaced from after the site, re-encoded here>
//! jmp  window_end                ; rel32
//! ```
//!
//! (the convention of [`cabin_abi::link::trampoline`]) and a [`CodePatch`]
//! that overwrites the window with `jmp rel32 trampoline` and `int3` filler.
//! Displaced instructions are re-encoded with iced's `BlockEncoder`, which
//! fixes RIP-relative operands and relative branches for their new address;
//! short branches are widened to rel32 first, and branch "fixing" (which
//! would add a `jmp [rip+x]` that reads its target from code) is disabled, so
//! anything out of 32-bit reach makes the site a trap site
//! ([`TrapReason::OutOfRange`]) instead.

use cabin_abi::link::trampoline::RED_ZONE;
use cabin_image::elf::ElfFile;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, OpKind, Register,
};
use thiserror::Error;

use crate::analysis::sweep::decode_at;
use crate::plan::{ForbiddenFix, PatchPlan, SiteKind, Tactic, TrapReason, Window};

/// Alignment of each trampoline.
pub const TRAMPOLINE_ALIGN: u64 = 16;
/// `int3`, used as filler.
const INT3: u8 = 0xcc;

/// The plan and the input disagree: the plan was not made from this input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TrampolineError {
    /// A window's bytes do not decode to the instructions the plan lists.
    #[error("patch window at {addr:#x} does not match the input (plan made from another file?)")]
    WindowMismatch {
        /// Window start.
        addr: u64,
    },
    /// The trampoline blob would wrap the address space.
    #[error("trampoline area at {0:#x} is too large")]
    TooLarge(u64),
}

/// Bytes to write over the input's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePatch {
    /// First byte (a window start).
    pub addr: u64,
    /// `jmp rel32` followed by `int3` filler; as long as the window.
    pub bytes: Vec<u8>,
}

/// The built trampolines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trampolines {
    /// Address of `bytes[0]`.
    pub base: u64,
    /// All trampolines back to back (each 16-byte aligned, `int3` between).
    pub code: Vec<u8>,
    /// Trampoline address per plan site (indexed like `plan.sites`); `None`
    /// for trap sites and demoted sites.
    pub site_trampolines: Vec<Option<u64>>,
    /// Code patches, in address order.
    pub patches: Vec<CodePatch>,
    /// Sites the plan wanted rewritten but that could not be encoded:
    /// `(index in plan.sites, reason)`. [`build`] has already made them trap
    /// sites in the plan; this list says which.
    pub demoted: Vec<(usize, TrapReason)>,
}

/// Decodes the window's instructions from the input and checks them
/// against the plan (the site instruction must be `syscall`).
fn window_insns(elf: &ElfFile<'_>, w: &Window) -> Result<Vec<Instruction>, TrampolineError> {
    window_insns_of(elf, w, &[Code::Syscall])
}

/// [`window_insns`] for a window whose site instruction is one of `codes`.
fn window_insns_of(
    elf: &ElfFile<'_>,
    w: &Window,
    codes: &[Code],
) -> Result<Vec<Instruction>, TrampolineError> {
    let bad = TrampolineError::WindowMismatch { addr: w.start };
    let mut out = Vec::with_capacity(w.insns.len());
    let mut next = w.start;
    for wi in &w.insns {
        let ins = decode_at(elf, wi.addr).ok_or_else(|| bad.clone())?;
        if wi.addr != next || ins.len() != wi.len as usize {
            return Err(bad);
        }
        next = ins.next_ip();
        out.push(ins);
    }
    if next != w.end() || w.insns.get(w.site_index).is_none() || !codes.contains(&out[w.site_index].code()) {
        return Err(bad);
    }
    Ok(out)
}

/// Why encoding one trampoline failed.
enum EncodeFail {
    /// Something out of rel32 reach.
    OutOfRange,
    /// The encoder refused an instruction.
    Unmovable,
}

/// Encodes `instrs` at `rip`, appending to `out`.
fn encode_at(instrs: &[Instruction], rip: u64, out: &mut Vec<u8>) -> Result<(), EncodeFail> {
    if instrs.is_empty() {
        return Ok(());
    }
    let mut moved = instrs.to_vec();
    for ins in &mut moved {
        if matches!(ins.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64) {
            ins.as_near_branch();
        }
    }
    match BlockEncoder::encode(64, InstructionBlock::new(&moved, rip), BlockEncoderOptions::DONT_FIX_BRANCHES)
    {
        Ok(r) => {
            out.extend_from_slice(&r.code_buffer);
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            // iced reports unreachable targets and displacements in words like
            // "too far away" / "displacement"; anything else is a refusal.
            if msg.contains("far") || msg.contains("isplacement") || msg.contains("range") {
                Err(EncodeFail::OutOfRange)
            } else {
                Err(EncodeFail::Unmovable)
            }
        }
    }
}

fn lea_rsp(disp: i64) -> Instruction {
    // Building a plain `lea r64, m` from constant operands cannot fail.
    Instruction::with2(Code::Lea_r64_m, Register::RSP, MemoryOperand::with_base_displ(Register::RSP, disp))
        .unwrap_or_default()
}

/// Encodes one trampoline at `at`; returns its bytes.
fn encode_one(
    instrs: &[Instruction],
    w: &Window,
    at: u64,
    syscall_entry: u64,
) -> Result<Vec<u8>, EncodeFail> {
    let mut out = Vec::with_capacity(64);
    encode_at(&instrs[..w.site_index], at, &mut out)?;
    let call =
        Instruction::with_branch(Code::Call_rel32_64, syscall_entry).map_err(|_| EncodeFail::Unmovable)?;
    let mid = [lea_rsp(-i64::from(RED_ZONE)), call, lea_rsp(i64::from(RED_ZONE))];
    encode_at(&mid, at + out.len() as u64, &mut out)?;
    encode_at(&instrs[w.site_index + 1..], at + out.len() as u64, &mut out)?;
    let back = Instruction::with_branch(Code::Jmp_rel32_64, w.end()).map_err(|_| EncodeFail::Unmovable)?;
    encode_at(&[back], at + out.len() as u64, &mut out)?;
    Ok(out)
}

/// Encodes the masking trampoline of an `xrstor` window at `at`:
///
/// ```text
/// <instructions displaced from before the xrstor>
/// lea    rsp, [rsp - 128]       ; keep the red zone
/// push   rax; push rcx; push rdx
/// pushfq
/// and    eax, ~0x200            ; never request PKRU (XCR0 bit 9)
/// popfq
/// xrstor <operand>              ; rsp-based operands moved by 152
/// <PKRU_CHECK>                  ; ends the program if PKRU changed anyway
/// pop    rdx; pop rcx; pop rax
/// lea    rsp, [rsp + 128]
/// <instructions displaced from after it>
/// jmp    window_end
/// ```
///
/// The check follows the `xrstor` because a program can jump straight to
/// it, past the mask (cabin_abi::pkru).
fn encode_xrstor(instrs: &[Instruction], w: &Window, at: u64) -> Result<Vec<u8>, EncodeFail> {
    const SAVED: u64 = 24;
    let mut out = Vec::with_capacity(128);
    encode_at(&instrs[..w.site_index], at, &mut out)?;
    let mut x = instrs[w.site_index];
    if x.memory_base() == Register::RSP {
        x.set_memory_displacement64(x.memory_displacement64().wrapping_add(RED_ZONE as u64 + SAVED));
        x.set_memory_displ_size(8);
    }
    let reg = |c: Code, r: Register| Instruction::with1(c, r).map_err(|_| EncodeFail::Unmovable);
    let and = Instruction::with2(Code::And_rm32_imm32, Register::EAX, !cabin_abi::pkru::XCR0_PKRU)
        .map_err(|_| EncodeFail::Unmovable)?;
    let before = [
        lea_rsp(-i64::from(RED_ZONE)),
        reg(Code::Push_r64, Register::RAX)?,
        reg(Code::Push_r64, Register::RCX)?,
        reg(Code::Push_r64, Register::RDX)?,
        Instruction::with(Code::Pushfq),
        and,
        Instruction::with(Code::Popfq),
        x,
    ];
    encode_at(&before, at + out.len() as u64, &mut out)?;
    out.extend_from_slice(&cabin_abi::pkru::PKRU_CHECK);
    let after = [
        reg(Code::Pop_r64, Register::RDX)?,
        reg(Code::Pop_r64, Register::RCX)?,
        reg(Code::Pop_r64, Register::RAX)?,
        lea_rsp(i64::from(RED_ZONE)),
    ];
    encode_at(&after, at + out.len() as u64, &mut out)?;
    encode_at(&instrs[w.site_index + 1..], at + out.len() as u64, &mut out)?;
    let back = Instruction::with_branch(Code::Jmp_rel32_64, w.end()).map_err(|_| EncodeFail::Unmovable)?;
    encode_at(&[back], at + out.len() as u64, &mut out)?;
    Ok(out)
}

/// `jmp rel32 to` placed at `from`, padded with `int3` to `len` bytes.
fn jump_patch(from: u64, to: u64, len: usize) -> Option<Vec<u8>> {
    let rel = i32::try_from((to as i64).wrapping_sub(from as i64 + 5)).ok()?;
    let mut b = Vec::with_capacity(len);
    b.push(0xe9);
    b.extend_from_slice(&rel.to_le_bytes());
    b.resize(len, INT3);
    Some(b)
}

/// Builds the trampolines of every rewritten site of `plan` for a blob at
/// `tramp_base` that calls `syscall_entry`. Sites whose trampoline cannot be
/// encoded become trap sites in `plan` (listed in [`Trampolines::demoted`]),
/// and the plan's counters are recomputed.
pub fn build(
    plan: &mut PatchPlan,
    elf: &ElfFile<'_>,
    tramp_base: u64,
    syscall_entry: u64,
) -> Result<Trampolines, TrampolineError> {
    let mut t = Trampolines {
        base: tramp_base,
        code: Vec::new(),
        site_trampolines: vec![None; plan.sites.len()],
        patches: Vec::new(),
        demoted: Vec::new(),
    };
    for (i, site) in plan.sites.iter().enumerate() {
        let (Tactic::Rewritten, Some(w), SiteKind::Syscall) = (site.tactic, &site.window, site.kind) else {
            continue;
        };
        let instrs = window_insns(elf, w)?;
        let pad =
            (TRAMPOLINE_ALIGN - (tramp_base + t.code.len() as u64) % TRAMPOLINE_ALIGN) % TRAMPOLINE_ALIGN;
        let at =
            tramp_base.checked_add(t.code.len() as u64 + pad).ok_or(TrampolineError::TooLarge(tramp_base))?;
        let code = match encode_one(&instrs, w, at, syscall_entry) {
            Ok(c) => c,
            Err(EncodeFail::OutOfRange) => {
                t.demoted.push((i, TrapReason::OutOfRange));
                continue;
            }
            Err(EncodeFail::Unmovable) => {
                t.demoted.push((i, TrapReason::UnmovableInstruction));
                continue;
            }
        };
        let Some(patch) = jump_patch(w.start, at, w.len as usize) else {
            t.demoted.push((i, TrapReason::OutOfRange));
            continue;
        };
        t.code.resize(t.code.len() + pad as usize, INT3);
        t.code.extend_from_slice(&code);
        t.site_trampolines[i] = Some(at);
        t.patches.push(CodePatch { addr: w.start, bytes: patch });
    }
    // Masked xrstors: one trampoline each; one that cannot be encoded is
    // left in place (and the process backend then does not claim
    // execute-only for the image).
    for f in plan.forbidden.iter_mut() {
        let (ForbiddenFix::Masked, Some(w)) = (f.fix, &f.window) else { continue };
        let instrs = window_insns_of(elf, w, &[Code::Xrstor_mem, Code::Xrstor64_mem])?;
        let pad =
            (TRAMPOLINE_ALIGN - (tramp_base + t.code.len() as u64) % TRAMPOLINE_ALIGN) % TRAMPOLINE_ALIGN;
        let at =
            tramp_base.checked_add(t.code.len() as u64 + pad).ok_or(TrampolineError::TooLarge(tramp_base))?;
        let built = encode_xrstor(&instrs, w, at)
            .ok()
            .and_then(|c| Some((c, jump_patch(w.start, at, w.len as usize)?)));
        let Some((code, patch)) = built else {
            f.fix = ForbiddenFix::Left;
            f.window = None;
            continue;
        };
        t.code.resize(t.code.len() + pad as usize, INT3);
        t.code.extend_from_slice(&code);
        t.patches.push(CodePatch { addr: w.start, bytes: patch });
    }
    t.patches.sort_by_key(|p| p.addr);
    // An xrstor found at another offset of bytes a patch overwrote (the
    // same instruction seen without its REX prefix, or one hidden inside a
    // displaced instruction) is gone from the image too.
    for f in plan.forbidden.iter_mut().filter(|f| f.fix == ForbiddenFix::Left) {
        if t.patches.iter().any(|p| f.addr >= p.addr && f.addr + 3 <= p.addr + p.bytes.len() as u64) {
            f.fix = ForbiddenFix::Masked;
        }
    }
    for &(i, reason) in &t.demoted {
        if let Some(s) = plan.sites.get_mut(i) {
            s.demote(reason);
        }
    }
    plan.recount();
    Ok(t)
}
