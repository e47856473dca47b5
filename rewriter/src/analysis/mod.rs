//! Analysis of an input executable: from an [`ElfFile`] to a [`PatchPlan`].
//!
//! Called by `cabinc build` before emission; it never modifies anything.
//! Steps, in order:
//! 1. mine optional metadata for code addresses: symbols, relocations,
//!    `.eh_frame` function starts and landing pads ([`elfmeta`], [`ehframe`]);
//! 2. linear-sweep every executable segment, restarting at known function
//!    starts ([`sweep`]);
//! 3. refuse `wrpkru` anywhere; list the `xrstor` family ([`forbidden`]);
//! 4. collect every known branch target: the above, direct branch targets,
//!    return addresses, code addresses in immediates, in data words and in
//!    relative jump tables;
//! 5. choose a patch window per `syscall` site or make it a trap site ([`sites`]);
//! 6. list instructions that read or write code at a static address.
//!
//! The input is hostile: every read is bounds-checked, nothing panics, and
//! unreadable metadata only makes the analysis more conservative (fewer
//! sites rewritten), with a warning in the plan.

pub mod ehframe;
pub mod elfmeta;
pub mod forbidden;
pub mod sites;
pub mod sweep;

use cabin_image::elf::ElfFile;
use iced_x86::{InstructionInfoFactory, Mnemonic, OpAccess, OpKind};
use thiserror::Error;

use crate::plan::{
    CodeRead, ForbiddenFix, ForbiddenKind, PatchPlan, Site, SiteKind, Stats, Tactic, TrapReason,
};
use sites::{Choice, Chooser, Targets};
use sweep::CodeRanges;

/// Why an input cannot be turned into an image at all.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AnalysisError {
    /// `wrpkru` bytes in executable memory.
    #[error(
        "the program contains wrpkru (0f 01 ef) at {}: the image would let the program lift its own \
         execute-only protection; help: rebuild without code that writes PKRU (e.g. pkey_set)",
        fmt_addrs(.addrs)
    )]
    Wrpkru {
        /// Address of every occurrence (possibly unaligned).
        addrs: Vec<u64>,
    },
}

fn fmt_addrs(addrs: &[u64]) -> String {
    let mut s: Vec<String> = addrs.iter().take(16).map(|a| format!("{a:#x}")).collect();
    if addrs.len() > 16 {
        s.push(format!("and {} more", addrs.len() - 16));
    }
    s.join(", ")
}

/// Whether the `xrstor` at `addr` can move to a masking trampoline: a
/// valid instruction of the sweep whose memory operand uses 64-bit
/// registers other than `rax` (the trampoline clears a bit of `eax` before
/// it).
fn maskable(elf: &ElfFile<'_>, sw: &sweep::Sweep, addr: u64) -> bool {
    if sw.index_of(addr).is_none() {
        return false;
    }
    let Some(ins) = sweep::decode_at(elf, addr) else { return false };
    if !matches!(ins.code(), iced_x86::Code::Xrstor_mem | iced_x86::Code::Xrstor64_mem) {
        return false;
    }
    let ok = |r: iced_x86::Register| {
        r == iced_x86::Register::None
            || r == iced_x86::Register::RIP
            || (r.is_gpr64() && r != iced_x86::Register::RAX)
    };
    ok(ins.memory_base()) && ok(ins.memory_index()) && ins.memory_index() != iced_x86::Register::RIP
}

/// Most entries read from one relative jump table.
const MAX_JUMP_TABLE: usize = 4096;

/// Analyses `elf` and decides what to do with every system-call site.
pub fn analyze(elf: &ElfFile<'_>) -> Result<PatchPlan, AnalysisError> {
    let wrpkru = forbidden::find_wrpkru(elf);
    if !wrpkru.is_empty() {
        return Err(AnalysisError::Wrpkru { addrs: wrpkru });
    }
    let code = CodeRanges::of(elf);
    let mut warnings = Vec::new();

    // 1. Metadata.
    let secs = elfmeta::sections(elf);
    let symbols = elfmeta::symbol_values(elf, &secs);
    let relocs = elfmeta::relocations(elf, &secs);
    let unwind = ehframe::unwind_addrs(elf, &secs);
    warnings.extend(unwind.warnings.iter().take(20).cloned());
    let reloc_targets: Vec<u64> = relocs
        .iter()
        .filter(|r| {
            matches!(
                r.r_type,
                elfmeta::R_X86_64_RELATIVE | elfmeta::R_X86_64_IRELATIVE | elfmeta::R_X86_64_64
            )
        })
        .map(|r| r.addend as u64)
        .collect();

    // 2. Sweep, restarting at function starts.
    let mut starts: Vec<u64> = Vec::new();
    starts.push(elf.entry);
    starts.extend(symbols.iter().copied());
    starts.extend(unwind.fde_starts.iter().copied());
    starts.extend(relocs.iter().filter(|r| r.r_type == elfmeta::R_X86_64_IRELATIVE).map(|r| r.addend as u64));
    starts.retain(|&a| code.contains(a));
    starts.sort_unstable();
    starts.dedup();
    let sw = sweep::sweep(elf, &starts);

    // 3. Forbidden instructions other than wrpkru.
    let forbidden = forbidden::find_xrstor(elf);

    // 4. Known branch targets.
    let mut t: Vec<u64> = Vec::new();
    t.extend(starts.iter().copied());
    t.extend(unwind.landing_pads.iter().copied());
    t.extend(reloc_targets.iter().copied());
    t.extend(sw.branch_targets.iter().copied());
    t.extend(sw.return_addrs.iter().copied());
    t.extend(sw.code_refs.iter().copied().filter(|&a| sw.is_boundary(a)));
    // Absolute code addresses stored in data (function pointers, vtables,
    // absolute jump tables): every aligned word of every loadable segment.
    for seg in elf.loads() {
        let bytes = elf.bytes(seg);
        let skip = ((8 - seg.vaddr % 8) % 8) as usize;
        if let Some(tail) = bytes.get(skip..) {
            for w in tail.chunks_exact(8) {
                let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                if code.contains(v) && sw.is_boundary(v) {
                    t.push(v);
                }
            }
        }
    }
    // Relative jump tables (`lea base; movsxd off, [base + idx*4]; add; jmp`):
    // entries are i32 offsets from the table base.
    let mut lea_bases = sw.lea_targets.clone();
    lea_bases.sort_unstable();
    lea_bases.dedup();
    for base in lea_bases {
        if code.contains(base) {
            continue;
        }
        for k in 0..MAX_JUMP_TABLE {
            let Some(b) = elf.read_vaddr(base + 4 * k as u64, 4) else { break };
            let off = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let v = base.wrapping_add(off as i64 as u64);
            if !(code.contains(v) && sw.is_boundary(v)) {
                break;
            }
            t.push(v);
        }
    }
    t.sort_unstable();
    t.dedup();
    let targets = Targets(t);

    // 5. Sites, and the `xrstor`s that can move to a masking trampoline
    // (at an instruction boundary of the sweep, with a memory operand that
    // does not use `rax`, which the trampoline changes). Their windows are
    // chosen like a site's, in one pass, so that no window covers another
    // site or `xrstor`.
    let mut forbidden = forbidden;
    let maskable: Vec<u64> = forbidden
        .iter()
        .filter(|f| f.kind == ForbiddenKind::Xrstor && maskable(elf, &sw, f.addr))
        .map(|f| f.addr)
        .collect();
    let site_addrs: Vec<u64> = {
        let mut v: Vec<u64> = sw.sites.iter().map(|s| s.0).collect();
        v.extend(maskable.iter().copied());
        v.sort_unstable();
        v.dedup();
        v
    };
    let chooser = Chooser { elf, sweep: &sw, targets: &targets, site_addrs: &site_addrs };
    let mut factory = InstructionInfoFactory::new();
    let mut site_list: Vec<(u64, SiteKind)> = sw.sites.clone();
    site_list.sort_unstable_by_key(|s| s.0);
    site_list.dedup_by_key(|s| s.0);
    let mut plan_sites = Vec::with_capacity(site_list.len());
    let mut min_start = 0u64;
    // Every site and maskable xrstor in address order (`None`: an xrstor).
    let mut work: Vec<(u64, Option<SiteKind>)> = site_list.into_iter().map(|(a, k)| (a, Some(k))).collect();
    work.extend(maskable.iter().map(|&a| (a, None)));
    work.sort_unstable_by_key(|w| w.0);
    for (addr, kind) in work {
        let Some(kind) = kind else {
            let Some(idx) = sw.index_of(addr) else { continue };
            if let Choice::Window(w) = chooser.choose(idx, min_start) {
                min_start = w.end();
                if let Some(f) = forbidden.iter_mut().find(|f| f.addr == addr) {
                    f.fix = ForbiddenFix::Masked;
                    f.window = Some(w);
                }
            }
            continue;
        };
        let Some(idx) = sw.index_of(addr) else { continue };
        let nr = sites::constant_nr(elf, &sw, &targets, idx, &mut factory);
        let mut site =
            Site { addr, kind, nr, tactic: Tactic::Trap, reason: TrapReason::LegacyEntry, window: None };
        if !sites::legacy(kind) {
            match chooser.choose(idx, min_start) {
                Choice::Window(w) => {
                    min_start = w.end();
                    site.tactic = Tactic::Rewritten;
                    site.reason = TrapReason::None;
                    site.window = Some(w);
                }
                Choice::Trap(r) => site.reason = r,
            }
        }
        plan_sites.push(site);
    }

    // 6. Code read or written as data. When the section headers name the
    // executable sections, only instructions inside them count: the rest of
    // an executable segment (the ELF and program headers, notes, which Go's
    // linker puts in its text segment) is not code, and what the sweep
    // decodes there is noise.
    let exec_sections: Vec<(u64, u64)> = secs
        .iter()
        .filter(|s| {
            let exec = object::elf::SHF_EXECINSTR.0 | object::elf::SHF_ALLOC.0;
            s.flags & exec == exec
        })
        .map(|s| (s.addr, s.addr.saturating_add(s.size)))
        .collect();
    let in_code = |a: u64| exec_sections.is_empty() || exec_sections.iter().any(|&(s, e)| a >= s && a < e);
    let mut code_reads = Vec::new();
    for &(ip, target) in sw.code_mem_refs.iter().filter(|&&(ip, _)| in_code(ip)) {
        let Some(ins) = sweep::decode_at(elf, ip) else { continue };
        if matches!(
            ins.mnemonic(),
            Mnemonic::Lea
                | Mnemonic::Nop
                | Mnemonic::Prefetch
                | Mnemonic::Prefetchit0
                | Mnemonic::Prefetchit1
                | Mnemonic::Prefetchnta
                | Mnemonic::Prefetcht0
                | Mnemonic::Prefetcht1
                | Mnemonic::Prefetcht2
                | Mnemonic::Prefetchw
                | Mnemonic::Prefetchwt1
        ) {
            continue;
        }
        let info = factory.info(&ins);
        let accesses = (0..ins.op_count()).any(|i| {
            ins.op_kind(i) == OpKind::Memory
                && !matches!(info.op_access(i), OpAccess::None | OpAccess::NoMemAccess)
        });
        if accesses {
            code_reads.push(CodeRead { addr: ip, target });
        }
    }

    let mut plan = PatchPlan {
        input_kind: elf.kind,
        entry: elf.entry,
        sites: plan_sites,
        forbidden,
        code_reads,
        warnings,
        stats: Stats {
            code_bytes: sw.code_bytes,
            instructions: sw.insns.len() as u64 - sw.invalid_bytes,
            invalid_bytes: sw.invalid_bytes,
            branch_targets: targets.0.len() as u64,
            ..Stats::default()
        },
    };
    plan.recount();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static executable whose only segment (R+X at 0x401000) holds `code`.
    fn exe(code: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&2u16.to_le_bytes());
        d[18..20].copy_from_slice(&62u16.to_le_bytes());
        d[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[52..54].copy_from_slice(&64u16.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = cabin_image::elf::Segment {
            index: 0,
            p_type: cabin_image::elf::PT_LOAD,
            flags: cabin_image::elf::PF_R | cabin_image::elf::PF_X,
            offset: 0x1000,
            vaddr: 0x401000,
            paddr: 0x401000,
            filesz: code.len() as u64,
            memsz: code.len() as u64,
            align: 0x1000,
        };
        d[64..120].copy_from_slice(&ph.to_bytes());
        d.extend_from_slice(code);
        d
    }

    fn plan_of(code: &[u8]) -> Result<PatchPlan, AnalysisError> {
        let d = exe(code);
        let elf = ElfFile::parse(&d).expect("test ELF");
        analyze(&elf)
    }

    #[test]
    fn mov_syscall_is_rewritten_with_its_number() {
        // mov eax, 39; syscall; ret
        let plan = plan_of(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3]).expect("plan");
        let s = &plan.sites[0];
        assert_eq!((s.addr, s.nr, s.tactic), (0x401005, Some(39), Tactic::Rewritten));
        let w = s.window.as_ref().expect("window");
        assert_eq!((w.start, w.len, w.site_index), (0x401000, 7, 1));
    }

    #[test]
    fn legacy_entries_are_trap_sites() {
        // int 0x80; sysenter; ret
        let plan = plan_of(&[0xcd, 0x80, 0x0f, 0x34, 0xc3]).expect("plan");
        assert_eq!(plan.sites.len(), 2);
        assert!(plan.sites.iter().all(|s| s.tactic == Tactic::Trap && s.reason == TrapReason::LegacyEntry));
        assert_eq!(plan.sites[0].kind, SiteKind::Int80);
        assert_eq!(plan.sites[1].kind, SiteKind::Sysenter);
    }

    #[test]
    fn too_small_and_unmovable_windows() {
        // syscall; ret — nothing else to displace.
        let plan = plan_of(&[0x0f, 0x05, 0xc3]).expect("plan");
        assert_eq!(plan.sites[0].reason, TrapReason::WindowTooSmall);
        // ud2; ud2; syscall; ud2; ud2 — ud2 cannot move.
        let plan = plan_of(&[0x0f, 0x0b, 0x0f, 0x0b, 0x0f, 0x05, 0x0f, 0x0b, 0x0f, 0x0b]).expect("plan");
        assert_eq!(plan.sites[0].reason, TrapReason::UnmovableInstruction);
    }

    #[test]
    fn adjacent_sites_do_not_share_windows() {
        // mov eax, 1; syscall; mov eax, 2; syscall; ret
        let code = [0xb8, 1, 0, 0, 0, 0x0f, 0x05, 0xb8, 2, 0, 0, 0, 0x0f, 0x05, 0xc3];
        let plan = plan_of(&code).expect("plan");
        assert_eq!(plan.stats.rewritten, 2);
        let (a, b) = (plan.sites[0].window.as_ref().expect("w0"), plan.sites[1].window.as_ref().expect("w1"));
        assert!(a.end() <= b.start);
        assert_eq!((plan.sites[0].nr, plan.sites[1].nr), (Some(1), Some(2)));
    }

    #[test]
    fn number_unknown_after_a_clobber() {
        // mov eax, 1; mov eax, edi; syscall; ret
        let plan = plan_of(&[0xb8, 1, 0, 0, 0, 0x89, 0xf8, 0x0f, 0x05, 0xc3]).expect("plan");
        assert_eq!(plan.sites[0].nr, None);
    }

    #[test]
    fn wrpkru_is_refused_with_addresses() {
        let err = plan_of(&[0x90, 0x0f, 0x01, 0xef, 0xc3]).expect_err("refused");
        assert_eq!(err, AnalysisError::Wrpkru { addrs: vec![0x401001] });
        assert!(err.to_string().contains("0x401001"));
    }
}
