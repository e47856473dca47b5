//! Choosing a patch window for every `syscall` site, and finding constant
//! system-call numbers.
//!
//! A window is a run of consecutive, contiguous instructions holding the
//! site, at least 5 bytes long (room for `jmp rel32`), such that
//! - no known branch target lies inside it except at its first byte,
//! - it holds no other site and overlaps no other window,
//! - every instruction in it can be moved to a trampoline.
//!
//! Preference: the instructions right before the site (`mov eax, N;
//! syscall`), then right after it (`syscall; cmp rax, -4095`), then both.

use cabin_image::elf::ElfFile;
use iced_x86::{
    Code, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};

use super::sweep::{decode_at, Insn, Sweep};
use crate::plan::{SiteKind, TrapReason, Window, WindowInsn};

/// Most instructions looked at on either side of a site.
const MAX_SIDE: usize = 4;
/// Size of `jmp rel32`.
pub const JMP_LEN: u64 = 5;

/// Sorted, deduplicated known branch targets.
#[derive(Debug, Default)]
pub struct Targets(pub Vec<u64>);

impl Targets {
    /// Whether any target lies in `(start, end)` (exclusive on both sides).
    pub fn any_strictly_inside(&self, start: u64, end: u64) -> bool {
        let i = self.0.partition_point(|&t| t <= start);
        self.0.get(i).is_some_and(|&t| t < end)
    }

    /// Whether `addr` is a target.
    pub fn contains(&self, addr: u64) -> bool {
        self.0.binary_search(&addr).is_ok()
    }
}

/// Why an instruction cannot move to a trampoline, if it cannot.
fn unmovable(ins: &Instruction) -> bool {
    if ins.is_invalid() {
        return true;
    }
    match ins.flow_control() {
        // Calls push an address inside the trampoline: unwinders and
        // anything that inspects return addresses would break.
        FlowControl::Call | FlowControl::IndirectCall => return true,
        FlowControl::Interrupt | FlowControl::Exception | FlowControl::XbeginXabortXend => return true,
        _ => {}
    }
    if matches!(ins.mnemonic(), Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne | Mnemonic::Jrcxz)
        || matches!(ins.mnemonic(), Mnemonic::Jecxz | Mnemonic::Jcxz)
    {
        // No rel32 form: the encoder would need a detour.
        return true;
    }
    matches!(
        ins.code(),
        Code::Syscall
            | Code::Sysenter
            | Code::Sysexitd
            | Code::Sysexitq
            | Code::Sysretd
            | Code::Sysretq
            | Code::Hlt
            | Code::Jmp_m1664
            | Code::Jmp_m1632
            | Code::Jmp_m1616
            | Code::Call_m1664
            | Code::Call_m1632
            | Code::Call_m1616
    )
}

/// The outcome for one `syscall` site.
#[derive(Debug)]
pub enum Choice {
    /// A window was found.
    Window(Window),
    /// None could be found, for this reason.
    Trap(TrapReason),
}

/// Context for window choice.
pub struct Chooser<'a, 'b> {
    /// The input.
    pub elf: &'a ElfFile<'b>,
    /// Sweep results.
    pub sweep: &'a Sweep,
    /// All known branch targets.
    pub targets: &'a Targets,
    /// Addresses of every site (sorted).
    pub site_addrs: &'a [u64],
}

impl std::fmt::Debug for Chooser<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chooser").field("sites", &self.site_addrs.len()).finish()
    }
}

impl Chooser<'_, '_> {
    fn insn(&self, i: usize) -> Option<&Insn> {
        self.sweep.insns.get(i)
    }

    /// Checks the window `insns[a..=b]` around the site at `site`.
    fn check(&self, a: usize, b: usize, site: usize, min_start: u64) -> Result<Window, TrapReason> {
        let (first, last) = (
            self.insn(a).ok_or(TrapReason::WindowTooSmall)?,
            self.insn(b).ok_or(TrapReason::WindowTooSmall)?,
        );
        // Contiguous valid instructions only.
        for k in a..b {
            let (x, y) = (&self.sweep.insns[k], &self.sweep.insns[k + 1]);
            if x.invalid || y.invalid || x.end() != y.addr {
                return Err(TrapReason::UnmovableInstruction);
            }
        }
        let (start, end) = (first.addr, last.end());
        if end - start < JMP_LEN {
            return Err(TrapReason::WindowTooSmall);
        }
        if start < min_start {
            return Err(TrapReason::WindowTooSmall);
        }
        if self.targets.any_strictly_inside(start, end) {
            return Err(TrapReason::BranchTargetInWindow);
        }
        let mut insns = Vec::with_capacity(b - a + 1);
        for k in a..=b {
            let x = &self.sweep.insns[k];
            if k != site && self.site_addrs.binary_search(&x.addr).is_ok() {
                return Err(TrapReason::UnmovableInstruction);
            }
            if k != site {
                let ins = decode_at(self.elf, x.addr).ok_or(TrapReason::UnmovableInstruction)?;
                if ins.len() != x.len as usize || unmovable(&ins) {
                    return Err(TrapReason::UnmovableInstruction);
                }
                // Whatever follows a jump or return inside the window is
                // reachable only by some branch, known or not: never cover it.
                if k != b
                    && matches!(
                        ins.flow_control(),
                        FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
                    )
                {
                    return Err(TrapReason::BranchTargetInWindow);
                }
                // A branch back into the window (other than to its start)
                // would land in the int3 filler.
                if matches!(
                    ins.op0_kind(),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                ) {
                    let t = ins.near_branch_target();
                    if t > start && t < end {
                        return Err(TrapReason::BranchTargetInWindow);
                    }
                }
            }
            insns.push(WindowInsn { addr: x.addr, len: x.len });
        }
        Ok(Window { start, len: (end - start) as u32, insns, site_index: site - a })
    }

    /// Picks a window for the `syscall` at instruction index `site`, starting
    /// at or after `min_start` (the end of the previous window).
    pub fn choose(&self, site: usize, min_start: u64) -> Choice {
        let mut candidates: Vec<(usize, usize)> = Vec::new();
        let size = |a: usize, b: usize| -> u64 {
            match (self.insn(a), self.insn(b)) {
                (Some(x), Some(y)) => y.end().saturating_sub(x.addr),
                _ => 0,
            }
        };
        // The site alone, when it is long enough (an `xrstor` with a
        // displacement; never a 2-byte `syscall`).
        if size(site, site) >= JMP_LEN {
            candidates.push((site, site));
        }
        // Before only: the shortest run ending at the site that is big enough.
        for k in 1..=MAX_SIDE.min(site) {
            if size(site - k, site) >= JMP_LEN {
                candidates.push((site - k, site));
                break;
            }
        }
        // After only.
        for k in 1..=MAX_SIDE {
            if site + k >= self.sweep.insns.len() {
                break;
            }
            if size(site, site + k) >= JMP_LEN {
                candidates.push((site, site + k));
                break;
            }
        }
        // Both sides, fewest instructions first.
        for total in 2..=2 * MAX_SIDE {
            for kb in 1..total {
                let ka = total - kb;
                if kb > MAX_SIDE || ka > MAX_SIDE || kb > site || site + ka >= self.sweep.insns.len() {
                    continue;
                }
                if size(site - kb, site + ka) >= JMP_LEN {
                    candidates.push((site - kb, site + ka));
                }
            }
        }
        let mut first_err = None;
        for (a, b) in candidates {
            match self.check(a, b, site, min_start) {
                Ok(w) => return Choice::Window(w),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Choice::Trap(first_err.unwrap_or(TrapReason::WindowTooSmall))
    }
}

/// Whether `r` is part of `rax`.
fn is_rax(r: Register) -> bool {
    r.full_register() == Register::RAX
}

/// The constant loaded into `eax`/`rax` before the site at index `site`,
/// looking back within its basic block.
pub fn constant_nr(
    elf: &ElfFile<'_>,
    sweep: &Sweep,
    targets: &Targets,
    site: usize,
    factory: &mut InstructionInfoFactory,
) -> Option<u64> {
    let site_insn = sweep.insns.get(site)?;
    if targets.contains(site_insn.addr) {
        return None;
    }
    let mut next_addr = site_insn.addr;
    for k in (site.saturating_sub(32)..site).rev() {
        let x = sweep.insns[k];
        if x.invalid || x.end() != next_addr {
            return None;
        }
        next_addr = x.addr;
        let ins = decode_at(elf, x.addr)?;
        if !matches!(ins.flow_control(), FlowControl::Next) {
            return None;
        }
        match ins.code() {
            Code::Mov_r32_imm32 | Code::Mov_rm32_imm32 if ins.op0_register() == Register::EAX => {
                return Some(u64::from(ins.immediate32()));
            }
            Code::Mov_rm64_imm32 if ins.op0_register() == Register::RAX => {
                return Some(ins.immediate32to64() as u64);
            }
            Code::Mov_r64_imm64 if ins.op0_register() == Register::RAX => return Some(ins.immediate64()),
            Code::Xor_r32_rm32 | Code::Xor_rm32_r32 | Code::Xor_r64_rm64 | Code::Xor_rm64_r64
                if ins.op_kind(1) == OpKind::Register
                    && is_rax(ins.op0_register())
                    && ins.op0_register() == ins.op1_register() =>
            {
                return Some(0);
            }
            _ => {}
        }
        let info = factory.info(&ins);
        let writes_rax = info.used_registers().iter().any(|u| {
            is_rax(u.register())
                && matches!(
                    u.access(),
                    OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
                )
        });
        if writes_rax || super::sweep::site_kind(&ins).is_some() || targets.contains(x.addr) {
            return None;
        }
    }
    None
}

/// Site kinds that are never rewritten.
pub fn legacy(kind: SiteKind) -> bool {
    matches!(kind, SiteKind::Sysenter | SiteKind::Int80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_strictly_inside() {
        let t = Targets(vec![0x10, 0x20, 0x30]);
        assert!(!t.any_strictly_inside(0x10, 0x20), "ends are not inside");
        assert!(t.any_strictly_inside(0x0f, 0x11));
        assert!(!t.any_strictly_inside(0x21, 0x30));
        assert!(t.contains(0x20) && !t.contains(0x21));
    }
}
