//! The patch plan: everything the analysis decided about an input program,
//! as plain data.
//!
//! [`crate::analysis::analyze`] produces a [`PatchPlan`]; the trampoline
//! builder ([`crate::trampoline`]) and the ELF emitter consume it. Nothing
//! here reads the input again: a plan can be printed as JSON
//! ([`PatchPlan::to_json`]), compared against golden files and reviewed on its
//! own. Addresses are link-time virtual addresses and appear in JSON as
//! `"0x…"` strings so that a person can read them next to `objdump` output.
//!
//! The enums mirror those of [`cabin_abi::note`] (which are `no_std` and
//! carry no serde derives) and convert into them losslessly.

use std::collections::BTreeMap;

use cabin_abi::note;
use cabin_image::elf::ElfKind;
use serde::Serialize;

/// Serialises a `u64` address as a `0x…` hex string.
mod hex_addr {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }
}

/// The instruction found at a site (mirror of [`note::SiteKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// `syscall` (0f 05).
    Syscall,
    /// `sysenter` (0f 34).
    Sysenter,
    /// `int 0x80` (cd 80).
    Int80,
}

impl From<SiteKind> for note::SiteKind {
    fn from(k: SiteKind) -> Self {
        match k {
            SiteKind::Syscall => note::SiteKind::Syscall,
            SiteKind::Sysenter => note::SiteKind::Sysenter,
            SiteKind::Int80 => note::SiteKind::Int80,
        }
    }
}

/// What the rewriter does with a site (mirror of [`note::Tactic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tactic {
    /// Replaced by a jump to a trampoline that calls the libos.
    Rewritten,
    /// Left in place; caught at run time.
    Trap,
}

impl From<Tactic> for note::Tactic {
    fn from(t: Tactic) -> Self {
        match t {
            Tactic::Rewritten => note::Tactic::Rewritten,
            Tactic::Trap => note::Tactic::Trap,
        }
    }
}

/// Why a site is a trap site (mirror of [`note::TrapReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrapReason {
    /// Not a trap site.
    None,
    /// A known branch target falls inside the bytes a jump would overwrite.
    BranchTargetInWindow,
    /// Not enough instruction bytes around the site for a 5-byte jump.
    WindowTooSmall,
    /// An instruction in the window cannot be moved.
    UnmovableInstruction,
    /// `int 0x80` / `sysenter`.
    LegacyEntry,
    /// Trampoline or a displaced operand out of 32-bit reach.
    OutOfRange,
    /// A system call that switches stacks or does not return.
    ControlFlowSyscall,
    /// Left as a trap site because the build asked for it.
    Requested,
}

impl TrapReason {
    /// The same human-readable text the manifest tools print.
    pub fn as_str(self) -> &'static str {
        note::TrapReason::from(self).as_str()
    }
}

impl From<TrapReason> for note::TrapReason {
    fn from(r: TrapReason) -> Self {
        match r {
            TrapReason::None => note::TrapReason::None,
            TrapReason::BranchTargetInWindow => note::TrapReason::BranchTargetInWindow,
            TrapReason::WindowTooSmall => note::TrapReason::WindowTooSmall,
            TrapReason::UnmovableInstruction => note::TrapReason::UnmovableInstruction,
            TrapReason::LegacyEntry => note::TrapReason::LegacyEntry,
            TrapReason::OutOfRange => note::TrapReason::OutOfRange,
            TrapReason::ControlFlowSyscall => note::TrapReason::ControlFlowSyscall,
            TrapReason::Requested => note::TrapReason::Requested,
        }
    }
}

/// One instruction of a patch window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowInsn {
    /// Address of its first byte.
    #[serde(with = "hex_addr")]
    pub addr: u64,
    /// Length in bytes.
    pub len: u8,
}

/// The run of instructions a rewritten site's jump overwrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First byte (where the `jmp rel32` goes; the only byte of the window
    /// that may be a branch target).
    #[serde(with = "hex_addr")]
    pub start: u64,
    /// Total length in bytes (at least 5).
    pub len: u32,
    /// The displaced instructions, in address order.
    pub insns: Vec<WindowInsn>,
    /// Index in `insns` of the site instruction itself.
    pub site_index: usize,
}

impl Window {
    /// First byte after the window: where the trampoline jumps back to.
    pub fn end(&self) -> u64 {
        self.start + u64::from(self.len)
    }
}

/// One system-call instruction and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// Address of the instruction.
    #[serde(with = "hex_addr")]
    pub addr: u64,
    /// Which instruction.
    pub kind: SiteKind,
    /// System-call number when an instruction earlier in the same basic
    /// block loads a constant into `eax`/`rax`.
    pub nr: Option<u64>,
    /// Rewritten or trap.
    pub tactic: Tactic,
    /// Why a trap site is one; [`TrapReason::None`] when rewritten.
    pub reason: TrapReason,
    /// The patch window of a rewritten site.
    pub window: Option<Window>,
}

impl Site {
    /// Turns the site into a trap site (e.g. when its trampoline cannot be encoded).
    pub fn demote(&mut self, reason: TrapReason) {
        self.tactic = Tactic::Trap;
        self.reason = reason;
        self.window = None;
    }
}

/// Instruction classes that could let a program lift its own protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForbiddenKind {
    /// `wrpkru` (the analysis refuses the input; never in a plan).
    Wrpkru,
    /// `xrstor` / `xrstor64`.
    Xrstor,
    /// `xrstors` / `xrstors64`.
    Xrstors,
}

impl From<ForbiddenKind> for note::ForbiddenKind {
    fn from(k: ForbiddenKind) -> Self {
        match k {
            ForbiddenKind::Wrpkru => note::ForbiddenKind::Wrpkru,
            ForbiddenKind::Xrstor => note::ForbiddenKind::Xrstor,
            ForbiddenKind::Xrstors => note::ForbiddenKind::Xrstors,
        }
    }
}

/// What the build did with a forbidden instruction (mirror of
/// [`note::ForbiddenFix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForbiddenFix {
    /// Left as it is: it can load PKRU where XCR0 enables it (process
    /// backend on a PKU CPU), so the process backend does not claim
    /// execute-only for this image.
    Left,
    /// Moved to a trampoline that clears PKRU (bit 9) from the requested
    /// features and ends the program if PKRU changed anyway.
    Masked,
    /// `xrstors`: privileged, it faults in ring 3 whatever it asks for.
    Privileged,
}

impl From<ForbiddenFix> for note::ForbiddenFix {
    fn from(f: ForbiddenFix) -> Self {
        match f {
            ForbiddenFix::Left => note::ForbiddenFix::Left,
            ForbiddenFix::Masked => note::ForbiddenFix::Masked,
            ForbiddenFix::Privileged => note::ForbiddenFix::Privileged,
        }
    }
}

/// A forbidden instruction, decodable at `addr` (which need not be an
/// instruction boundary of the linear sweep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forbidden {
    /// Which instruction.
    pub kind: ForbiddenKind,
    /// Address of its first byte.
    #[serde(with = "hex_addr")]
    pub addr: u64,
    /// What the build does with it.
    pub fix: ForbiddenFix,
    /// The patch window of a masked `xrstor` (chosen like a system-call
    /// site's), `None` otherwise.
    pub window: Option<Window>,
}

/// An instruction that reads or writes memory inside an executable segment
/// at a statically known address: it would fault once code is execute-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CodeRead {
    /// Address of the accessing instruction.
    #[serde(with = "hex_addr")]
    pub addr: u64,
    /// The address it accesses.
    #[serde(with = "hex_addr")]
    pub target: u64,
}

/// Counters for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Bytes of executable segments swept.
    pub code_bytes: u64,
    /// Instructions decoded by the linear sweep.
    pub instructions: u64,
    /// Bytes the sweep could not decode.
    pub invalid_bytes: u64,
    /// Distinct known branch targets (all sources).
    pub branch_targets: u64,
    /// Sites of every kind.
    pub sites: u64,
    /// Sites rewritten to trampolines.
    pub rewritten: u64,
    /// Trap sites per reason (keys: kebab-case reason names).
    pub trap: BTreeMap<String, u64>,
    /// Sites whose system-call number is known.
    pub known_nr: u64,
    /// Forbidden instructions found.
    pub forbidden: u64,
    /// Code-as-data accesses found.
    pub code_reads: u64,
}

/// Everything the analysis decided about one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchPlan {
    /// Position-dependent or static-PIE.
    pub input_kind: ElfKind,
    /// The input's entry point.
    #[serde(with = "hex_addr")]
    pub entry: u64,
    /// Every site, in address order.
    pub sites: Vec<Site>,
    /// Forbidden instructions that do not stop the build (xrstor family).
    pub forbidden: Vec<Forbidden>,
    /// Instructions that access code as data.
    pub code_reads: Vec<CodeRead>,
    /// Things the analysis could not read and skipped (malformed `.eh_frame`, …).
    pub warnings: Vec<String>,
    /// Counters.
    pub stats: Stats,
}

impl PatchPlan {
    /// Pretty-printed JSON, for `--message-format json`, debugging and golden files.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Recomputes the per-site counters of [`PatchPlan::stats`] (after demotions).
    pub fn recount(&mut self) {
        let s = &mut self.stats;
        s.sites = self.sites.len() as u64;
        s.rewritten = self.sites.iter().filter(|x| x.tactic == Tactic::Rewritten).count() as u64;
        s.known_nr = self.sites.iter().filter(|x| x.nr.is_some()).count() as u64;
        s.trap.clear();
        for site in self.sites.iter().filter(|x| x.tactic == Tactic::Trap) {
            let key = serde_json::to_value(site.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", site.reason));
            *s.trap.entry(key).or_insert(0) += 1;
        }
        s.forbidden = self.forbidden.len() as u64;
        s.code_reads = self.code_reads.len() as u64;
    }

    /// The manifest records of the sites, given each site's trampoline
    /// address (`None` for trap sites), indexed like [`PatchPlan::sites`].
    pub fn site_records(&self, trampolines: &[Option<u64>]) -> Vec<note::SiteRecord> {
        self.sites
            .iter()
            .enumerate()
            .map(|(i, s)| note::SiteRecord {
                addr: s.addr,
                kind: s.kind.into(),
                tactic: s.tactic.into(),
                reason: s.reason.into(),
                trampoline: trampolines.get(i).copied().flatten().unwrap_or(0),
            })
            .collect()
    }

    /// The manifest records of the forbidden instructions.
    pub fn forbidden_records(&self) -> Vec<note::ForbiddenRecord> {
        self.forbidden
            .iter()
            .map(|f| note::ForbiddenRecord { addr: f.addr, kind: f.kind.into(), fix: f.fix.into() })
            .collect()
    }
}
