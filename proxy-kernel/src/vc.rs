//! The `#VC` (VMM communication exception, vector 29) protocol of a domain
//! at VMPL1 of an SEV-SNP guest: pure logic, shared by the proxy-kernel
//! (which forwards every `#VC` to VMPL0) and the SNP backend's VMPL0 side
//! (which decodes and serves it), tested on the host.
//!
//! On SEV-ES/SNP the hypervisor cannot read the guest's registers, so the
//! instructions it intercepts (`out`, `in`, `cpuid`, `rdtsc`, `rdtscp`,
//! `rdmsr`/`wrmsr`, `hlt`, MMIO, ...) raise `#VC` in the guest instead, with
//! the SVM exit code as error code. Cabin's proxy-kernel does not serve any
//! of them itself: its `#VC` handler copies the trap into the vCPU's
//! *calling area* (one private page per vCPU, supervisor-only, laid out as a
//! GHCB: [`ghcb`]) and asks the hypervisor, with the GHCB MSR protocol's
//! "run VMPL" request for VMPL0 ([`RUN_VMPL0`]), to switch to VMPL0. The
//! monitor there reads the request, decodes the instruction at `rip` from
//! guest memory (VMPL0 may read the program's execute-only code; VMPL1's
//! ring 0 may not), serves it exactly as the KVM backend serves the same
//! exit, writes the registers to change back into the calling area and runs
//! VMPL1 again; the handler applies them and returns.
//!
//! Facts: AMD64 APM vol. 2 (24593) §15.35 "Encrypted State (SEV-ES)" (the
//! `#VC` exception, error code = exit code), Appendix C (SVM intercept exit
//! codes), §15.10.2 (IOIO `EXITINFO1` bits); GHCB specification (56421)
//! rev 2.03 §2.3 (GHCB layout, valid bitmap), §2.3.1 (MSR protocol); SEV-SNP
//! firmware ABI (56860) §8.17.2 / Table 14 (the CPUID page); cross-read
//! with Linux `arch/x86/include/asm/svm.h` and `arch/x86/coco/sev/`.

/// SVM exit codes a `#VC` may carry (APM vol. 2, Appendix C).
pub mod exit {
    /// Read of DR7.
    pub const READ_DR7: u64 = 0x27;
    /// Write of DR7.
    pub const WRITE_DR7: u64 = 0x37;
    /// `rdtsc`.
    pub const RDTSC: u64 = 0x6e;
    /// `rdpmc`.
    pub const RDPMC: u64 = 0x6f;
    /// `cpuid`.
    pub const CPUID: u64 = 0x72;
    /// `invd`.
    pub const INVD: u64 = 0x76;
    /// `pause`.
    pub const PAUSE: u64 = 0x77;
    /// `hlt`.
    pub const HLT: u64 = 0x78;
    /// `in` / `out` / `ins` / `outs`.
    pub const IOIO: u64 = 0x7b;
    /// `rdmsr` / `wrmsr`.
    pub const MSR: u64 = 0x7c;
    /// `vmmcall`.
    pub const VMMCALL: u64 = 0x81;
    /// `rdtscp`.
    pub const RDTSCP: u64 = 0x87;
    /// `wbinvd`.
    pub const WBINVD: u64 = 0x89;
    /// `monitor`.
    pub const MONITOR: u64 = 0x8a;
    /// `mwait`.
    pub const MWAIT: u64 = 0x8b;
    /// Nested page fault (MMIO, or a page the hypervisor does not back).
    pub const NPF: u64 = 0x400;
    /// `VMGEXIT` itself (the exit code VMPL0 sees in VMPL1's save area).
    pub const VMGEXIT: u64 = 0x403;
}

/// Short name of an exit code, for the one-line report.
pub fn exit_name(code: u64) -> &'static str {
    match code {
        exit::READ_DR7 | exit::WRITE_DR7 => "DR7 access",
        exit::RDTSC => "rdtsc",
        exit::RDPMC => "rdpmc",
        exit::CPUID => "cpuid",
        exit::INVD => "invd",
        exit::PAUSE => "pause",
        exit::HLT => "hlt",
        exit::IOIO => "port I/O",
        exit::MSR => "rdmsr/wrmsr",
        exit::VMMCALL => "vmmcall",
        exit::RDTSCP => "rdtscp",
        exit::WBINVD => "wbinvd",
        exit::MONITOR => "monitor",
        exit::MWAIT => "mwait",
        exit::NPF => "MMIO / nested page fault",
        _ => "unknown exit",
    }
}

/// The GHCB MSR (`MSR_SEV_GHCB`).
pub const MSR_SEV_GHCB: u32 = 0xC001_0130;
/// GHCB MSR protocol: run-VMPL request code (GHCBData[39:32] = the VMPL).
pub const RUN_VMPL_REQ: u64 = 0x016;
/// GHCB MSR protocol: run-VMPL response code.
pub const RUN_VMPL_RESP: u64 = 0x017;
/// The MSR-protocol word VMPL1 writes before `VMGEXIT` to hand the vCPU to
/// VMPL0 (GHCBData[39:32] = 0).
pub const RUN_VMPL0: u64 = RUN_VMPL_REQ;

/// The GHCB page layout (GHCB spec §2.3, Table 3: the save area uses the
/// VMSA offsets) and its valid bitmap: bit `offset / 8` of the 16 bytes at
/// [`ghcb::VALID_BITMAP`] says the quad-word at `offset` was written.
pub mod ghcb {
    /// Size of the page.
    pub const SIZE: usize = 4096;
    /// CPL (a byte; valid bit of the quad-word at 0xC8).
    pub const CPL: usize = 0x0cb;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x170;
    /// RIP.
    pub const RIP: usize = 0x178;
    /// RSP.
    pub const RSP: usize = 0x1d8;
    /// RAX.
    pub const RAX: usize = 0x1f8;
    /// RCX.
    pub const RCX: usize = 0x308;
    /// RDX.
    pub const RDX: usize = 0x310;
    /// RBX.
    pub const RBX: usize = 0x318;
    /// RSI.
    pub const RSI: usize = 0x330;
    /// RDI.
    pub const RDI: usize = 0x338;
    /// R8.
    pub const R8: usize = 0x340;
    /// R9.
    pub const R9: usize = 0x348;
    /// R10.
    pub const R10: usize = 0x350;
    /// R11.
    pub const R11: usize = 0x358;
    /// SW_EXITCODE.
    pub const SW_EXIT_CODE: usize = 0x390;
    /// SW_EXITINFO1.
    pub const SW_EXIT_INFO_1: usize = 0x398;
    /// SW_EXITINFO2.
    pub const SW_EXIT_INFO_2: usize = 0x3a0;
    /// SW_SCRATCH.
    pub const SW_SCRATCH: usize = 0x3a8;
    /// XCR0.
    pub const XCR0: usize = 0x3e8;
    /// The valid bitmap (16 bytes: one bit per quad-word below 0x400).
    pub const VALID_BITMAP: usize = 0x3f0;
    /// Shared buffer.
    pub const SHARED_BUFFER: usize = 0x800;
    /// Protocol version (u16).
    pub const PROTOCOL_VERSION: usize = 0xffa;
    /// GHCB usage (u32): 0 = the standard format.
    pub const USAGE: usize = 0xffc;
    /// The GHCB protocol version Cabin writes.
    pub const VERSION: u16 = 2;
}

/// Bit index of `offset` in the valid bitmap.
pub const fn valid_bit(offset: usize) -> usize {
    offset / 8
}

/// A GHCB-formatted page (the calling area, or a real GHCB).
#[derive(Debug)]
pub struct Ghcb<'a> {
    page: &'a mut [u8; ghcb::SIZE],
}

/// A read-only view of a GHCB-formatted page (what VMPL0 copied).
#[derive(Clone, Copy, Debug)]
pub struct GhcbView<'a> {
    page: &'a [u8; ghcb::SIZE],
}

// Every access below is panic-free (`get`/`get_mut`, constants): this code
// runs in the proxy-kernel, whose blob must hold no panic locations (they
// are writable data) and must never panic in a trap handler.

fn get_u64(page: &[u8; ghcb::SIZE], off: usize) -> Option<u64> {
    let b: &[u8; 8] = page.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(*b))
}

fn put(page: &mut [u8; ghcb::SIZE], off: usize, bytes: &[u8]) {
    if let Some(d) = off.checked_add(bytes.len()).and_then(|end| page.get_mut(off..end)) {
        // Not copy_from_slice: its length check would bring a panic location.
        for (d, s) in d.iter_mut().zip(bytes) {
            *d = *s;
        }
    }
}

fn bitmap_byte(page: &mut [u8; ghcb::SIZE], off: usize) -> Option<&mut u8> {
    page.get_mut(ghcb::VALID_BITMAP.wrapping_add(valid_bit(off) / 8))
}

fn is_valid(page: &[u8; ghcb::SIZE], off: usize) -> bool {
    let bit = valid_bit(off);
    bit < 128 && page.get(ghcb::VALID_BITMAP.wrapping_add(bit / 8)).is_some_and(|b| b & (1 << (bit % 8)) != 0)
}

impl<'a> Ghcb<'a> {
    /// Wraps `page`.
    pub fn new(page: &'a mut [u8; ghcb::SIZE]) -> Ghcb<'a> {
        Ghcb { page }
    }

    /// Starts a new message: clears the valid bitmap and the exit fields,
    /// writes the protocol version and usage 0.
    pub fn begin(&mut self) {
        put(self.page, ghcb::VALID_BITMAP, &[0; 16]);
        for off in [ghcb::SW_EXIT_CODE, ghcb::SW_EXIT_INFO_1, ghcb::SW_EXIT_INFO_2] {
            put(self.page, off, &[0; 8]);
        }
        put(self.page, ghcb::PROTOCOL_VERSION, &ghcb::VERSION.to_le_bytes());
        put(self.page, ghcb::USAGE, &[0; 4]);
    }

    /// Writes the quad-word at `off` (a save-area offset below 0x3f0) and
    /// marks it valid. Offsets at or above the bitmap are ignored.
    pub fn set(&mut self, off: usize, v: u64) {
        if off > ghcb::VALID_BITMAP - 8 || !off.is_multiple_of(8) {
            return;
        }
        put(self.page, off, &v.to_le_bytes());
        if let Some(b) = bitmap_byte(self.page, off) {
            *b |= 1 << (valid_bit(off) % 8);
        }
    }

    /// Writes the CPL byte and marks its quad-word valid.
    pub fn set_cpl(&mut self, cpl: u8) {
        put(self.page, ghcb::CPL, &[cpl]);
        if let Some(b) = bitmap_byte(self.page, ghcb::CPL) {
            *b |= 1 << (valid_bit(ghcb::CPL) % 8);
        }
    }

    /// A read-only view.
    pub fn view(&self) -> GhcbView<'_> {
        GhcbView { page: self.page }
    }
}

impl<'a> GhcbView<'a> {
    /// Wraps `page`.
    pub fn new(page: &'a [u8; ghcb::SIZE]) -> GhcbView<'a> {
        GhcbView { page }
    }

    /// The quad-word at `off` if its valid bit is set.
    pub fn get(&self, off: usize) -> Option<u64> {
        if !off.is_multiple_of(8) || off > ghcb::VALID_BITMAP - 8 || !is_valid(self.page, off) {
            return None;
        }
        get_u64(self.page, off)
    }

    /// The CPL byte if valid.
    pub fn cpl(&self) -> Option<u8> {
        if is_valid(self.page, ghcb::CPL) {
            self.page.get(ghcb::CPL).copied()
        } else {
            None
        }
    }

    /// Whether no field is marked valid (no message).
    pub fn is_empty(&self) -> bool {
        self.page.get(ghcb::VALID_BITMAP..ghcb::VALID_BITMAP + 16).is_none_or(|b| b.iter().all(|&x| x == 0))
    }
}

/// The registers a `#VC` request carries, in the order the request writes
/// them (the trap frame's general registers the monitor may need).
pub const REQUEST_REGS: [usize; 11] = [
    ghcb::RAX,
    ghcb::RBX,
    ghcb::RCX,
    ghcb::RDX,
    ghcb::RSI,
    ghcb::RDI,
    ghcb::R8,
    ghcb::R9,
    ghcb::R10,
    ghcb::R11,
    ghcb::RSP,
];

/// The registers a response may change (anything else the proxy-kernel
/// ignores): the results of `in`, `cpuid`, `rdtsc(p)` and the hypercalls,
/// and `rip` (past the instruction).
pub const RESPONSE_REGS: [usize; 5] = [ghcb::RAX, ghcb::RBX, ghcb::RCX, ghcb::RDX, ghcb::RIP];

/// Writes the `#VC` in trap frame `f` into the calling area `g` as a
/// request for VMPL0: `SW_EXITCODE` = the `#VC` error code (the exit code),
/// `SW_EXITINFO1` = the interrupted `cs`, the CPL, `rip`, RFLAGS and
/// [`REQUEST_REGS`], each marked valid. Nothing else is valid.
pub fn write_request(g: &mut Ghcb<'_>, f: &crate::trap::TrapFrame) {
    g.begin();
    g.set(ghcb::SW_EXIT_CODE, f.error);
    g.set(ghcb::SW_EXIT_INFO_1, f.cs);
    g.set_cpl((f.cs & 3) as u8);
    g.set(ghcb::RIP, f.rip);
    g.set(ghcb::RFLAGS, f.rflags);
    // REQUEST_REGS, one by one (no table of pointers: the blob keeps no data).
    g.set(ghcb::RAX, f.rax);
    g.set(ghcb::RBX, f.rbx);
    g.set(ghcb::RCX, f.rcx);
    g.set(ghcb::RDX, f.rdx);
    g.set(ghcb::RSI, f.rsi);
    g.set(ghcb::RDI, f.rdi);
    g.set(ghcb::R8, f.r8);
    g.set(ghcb::R9, f.r9);
    g.set(ghcb::R10, f.r10);
    g.set(ghcb::R11, f.r11);
    g.set(ghcb::RSP, f.rsp);
}

/// Applies VMPL0's response in `g` to trap frame `f`: every register of
/// [`RESPONSE_REGS`] whose valid bit is set (VMPL0 cleared the bitmap and
/// wrote only what changes). Returns whether anything was applied (a
/// response with nothing valid means VMPL0 did not serve the request: the
/// proxy-kernel asks again instead of returning into the instruction).
pub fn apply_response(g: &GhcbView<'_>, f: &mut crate::trap::TrapFrame) -> bool {
    let mut any = false;
    let mut take = |off: usize, r: &mut u64| {
        if let Some(v) = g.get(off) {
            *r = v;
            any = true;
        }
    };
    take(ghcb::RAX, &mut f.rax);
    take(ghcb::RBX, &mut f.rbx);
    take(ghcb::RCX, &mut f.rcx);
    take(ghcb::RDX, &mut f.rdx);
    take(ghcb::RIP, &mut f.rip);
    any
}

/// `SW_EXITINFO2` bit of a response: the monitor changed the page tables
/// (`mprotect`, `munmap`, a commit): the proxy-kernel reloads CR3 before it
/// returns, so VMPL1 forgets every cached user translation.
pub const RESPONSE_FLUSH_TLB: u64 = 1;

/// Whether the response in `g` asks for a TLB flush.
pub fn response_flushes(g: &GhcbView<'_>) -> bool {
    g.get(ghcb::SW_EXIT_INFO_2).is_some_and(|v| v & RESPONSE_FLUSH_TLB != 0)
}

/// IOIO `EXITINFO1` bits (APM vol. 2 §15.10.2).
pub mod ioio {
    /// Direction: 1 = `in`.
    pub const TYPE_IN: u64 = 1 << 0;
    /// String instruction (`ins`/`outs`).
    pub const STR: u64 = 1 << 2;
    /// `rep` prefix.
    pub const REP: u64 = 1 << 3;
    /// 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
    /// 64-bit address size (string forms).
    pub const A64: u64 = 1 << 9;
    /// Port number shift (bits 31:16).
    pub const PORT_SHIFT: u64 = 16;
}

/// Where a port-I/O instruction takes its port from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOperand {
    /// An 8-bit immediate (`E4`..`E7`).
    Imm(u8),
    /// `dx` (`EC`..`EF`).
    Dx,
}

/// A decoded `in` / `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInsn {
    /// Bytes to skip (prefixes included).
    pub len: u8,
    /// `out` (else `in`).
    pub out: bool,
    /// Operand size in bytes: 1, 2 or 4.
    pub size: u8,
    /// The port operand.
    pub port: PortOperand,
}

impl IoInsn {
    /// The port, given `dx`.
    pub fn port(&self, rdx: u64) -> u16 {
        match self.port {
            PortOperand::Imm(p) => u16::from(p),
            PortOperand::Dx => rdx as u16,
        }
    }

    /// The IOIO `EXITINFO1` the hardware would report (GHCB IOIO event).
    pub fn exit_info_1(&self, rdx: u64) -> u64 {
        let size = match self.size {
            1 => ioio::SZ8,
            2 => ioio::SZ16,
            _ => ioio::SZ32,
        };
        (u64::from(self.port(rdx)) << ioio::PORT_SHIFT) | size | if self.out { 0 } else { ioio::TYPE_IN }
    }
}

/// Why an instruction at a `#VC` cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes, or the instruction runs past the bytes read (15 at most).
    Truncated,
    /// A `rep`/`repne` or `lock` prefix: Cabin serves no string or repeated
    /// port I/O.
    Rep,
    /// `ins` / `outs`.
    String,
    /// The bytes are not the instruction the exit code names.
    Mismatch,
}

/// Longest x86 instruction.
pub const MAX_INSN: usize = 15;

/// Skips legacy and REX prefixes; returns (prefix bytes, operand-size
/// override seen). A `rep`/`repne`/`lock` prefix is refused.
fn prefixes(b: &[u8]) -> Result<(usize, bool), DecodeError> {
    let mut i = 0;
    let mut opsize = false;
    while i < b.len().min(MAX_INSN) {
        match b[i] {
            0xf0 | 0xf2 | 0xf3 => return Err(DecodeError::Rep),
            0x66 => opsize = true,
            0x67 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            // REX must be last; it does not change in/out's operand size.
            0x40..=0x4f => return Ok((i + 1, opsize)),
            _ => return Ok((i, opsize)),
        }
        i += 1;
    }
    Err(DecodeError::Truncated)
}

fn fits(len: usize, have: usize) -> Result<u8, DecodeError> {
    if len > MAX_INSN || len > have {
        Err(DecodeError::Truncated)
    } else {
        Ok(len as u8)
    }
}

/// Decodes the `in`/`out` at the start of `b` (bytes read at `rip`).
pub fn decode_io(b: &[u8]) -> Result<IoInsn, DecodeError> {
    let (p, opsize) = prefixes(b)?;
    let op = *b.get(p).ok_or(DecodeError::Truncated)?;
    let wide = if opsize { 2 } else { 4 };
    let (out, size, imm) = match op {
        0xe4 => (false, 1, true),
        0xe5 => (false, wide, true),
        0xe6 => (true, 1, true),
        0xe7 => (true, wide, true),
        0xec => (false, 1, false),
        0xed => (false, wide, false),
        0xee => (true, 1, false),
        0xef => (true, wide, false),
        0x6c..=0x6f => return Err(DecodeError::String),
        _ => return Err(DecodeError::Mismatch),
    };
    let port =
        if imm { PortOperand::Imm(*b.get(p + 1).ok_or(DecodeError::Truncated)?) } else { PortOperand::Dx };
    let len = fits(p + 1 + usize::from(imm), b.len())?;
    Ok(IoInsn { len, out, size, port })
}

/// The length of the instruction at the start of `b` that raised a `#VC`
/// with `exit_code`, for the exits VMPL0 serves by value (`cpuid`,
/// `rdtsc`, `rdtscp`); port I/O: [`decode_io`].
pub fn decode_len(exit_code: u64, b: &[u8]) -> Result<u8, DecodeError> {
    let (p, _) = prefixes(b)?;
    let want: &[u8] = match exit_code {
        exit::CPUID => &[0x0f, 0xa2],
        exit::RDTSC => &[0x0f, 0x31],
        exit::RDTSCP => &[0x0f, 0x01, 0xf9],
        exit::IOIO => return decode_io(b).map(|i| i.len),
        _ => return Err(DecodeError::Mismatch),
    };
    let end = p + want.len();
    if end > b.len() {
        return Err(DecodeError::Truncated);
    }
    if &b[p..end] != want {
        return Err(DecodeError::Mismatch);
    }
    fits(end, b.len())
}

/// The SNP CPUID page (SEV-SNP firmware ABI, "CPUID page"): a count, then
/// up to [`cpuid::MAX_ENTRIES`] entries of 48 bytes.
pub mod cpuid {
    /// Entries a CPUID page holds at most.
    pub const MAX_ENTRIES: usize = 64;
    /// Offset of the first entry.
    pub const ENTRIES: usize = 16;
    /// Size of one entry: eax_in, ecx_in (u32), xcr0_in, xss_in (u64), eax,
    /// ebx, ecx, edx (u32), reserved (u64).
    pub const ENTRY_SIZE: usize = 48;
    /// Size of the legacy XSAVE area and header.
    pub const XSAVE_LEGACY: u32 = 0x240;
    /// CPUID.1:ECX.OSXSAVE.
    pub const OSXSAVE: u32 = 1 << 27;
}

/// One entry of the CPUID page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf.
    pub eax_in: u32,
    /// Sub-leaf.
    pub ecx_in: u32,
    /// XCR0 the entry was computed for.
    pub xcr0_in: u64,
    /// XSS the entry was computed for.
    pub xss_in: u64,
    /// The answer.
    pub out: [u32; 4],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A CPUID page, as copied (hostile until checked: [`CpuidTable::parse`]
/// bounds the count).
#[derive(Clone, Copy, Debug)]
pub struct CpuidTable<'a> {
    page: &'a [u8],
    count: usize,
}

/// Leaves whose answer depends on the sub-leaf in `ecx`.
pub fn indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1f
            | 0x8000_001d
            | 0x8000_0020
    )
}

impl<'a> CpuidTable<'a> {
    /// Reads a CPUID page; `None` if it is shorter than its count says or
    /// the count exceeds [`cpuid::MAX_ENTRIES`].
    pub fn parse(page: &'a [u8]) -> Option<CpuidTable<'a>> {
        let count = u32_at(page.get(..4)?, 0) as usize;
        if count > cpuid::MAX_ENTRIES || page.len() < cpuid::ENTRIES + count * cpuid::ENTRY_SIZE {
            return None;
        }
        Some(CpuidTable { page, count })
    }

    /// Entry `i`.
    pub fn entry(&self, i: usize) -> Option<CpuidEntry> {
        if i >= self.count {
            return None;
        }
        let at = cpuid::ENTRIES + i * cpuid::ENTRY_SIZE;
        let e = &self.page[at..at + cpuid::ENTRY_SIZE];
        Some(CpuidEntry {
            eax_in: u32_at(e, 0),
            ecx_in: u32_at(e, 4),
            xcr0_in: u64_at(e, 8),
            xss_in: u64_at(e, 16),
            out: [u32_at(e, 24), u32_at(e, 28), u32_at(e, 32), u32_at(e, 36)],
        })
    }

    fn find(&self, leaf: u32, sub: u32) -> Option<CpuidEntry> {
        (0..self.count).filter_map(|i| self.entry(i)).find(|e| {
            if e.eax_in != leaf || (indexed(leaf) && e.ecx_in != sub) {
                return false;
            }
            // 0xD sub-leaves 0 and 1 are recomputed for the actual
            // XCR0/XSS: use the entry for the base (x87/SSE) state only.
            !(leaf == 0xd && sub <= 1 && (!matches!(e.xcr0_in, 1 | 3) || e.xss_in != 0))
        })
    }

    /// The XSAVE area size for the enabled features `xfeatures` (bits 2..63
    /// from the 0xD sub-leaves; `compacted`: the XSAVES format).
    pub fn xsave_size(&self, xfeatures: u64, compacted: bool) -> Option<u32> {
        let mut size = cpuid::XSAVE_LEGACY;
        for i in 2..64 {
            if xfeatures & (1u64 << i) == 0 {
                continue;
            }
            let e = self.find(0xd, i)?;
            size = if compacted {
                size.checked_add(e.out[0])?
            } else {
                size.max(e.out[0].checked_add(e.out[1])?)
            };
        }
        Some(size)
    }

    /// `cpuid(leaf, sub)` for a vCPU running with `xcr0`, `xss` and
    /// CR4.OSXSAVE = `osxsave`, as Linux's SNP `#VC` handler answers it:
    /// the table's entry (zeros for a leaf it lacks), with the XSAVE sizes
    /// of leaf 0xD recomputed for the enabled features and OSXSAVE of leaf
    /// 1 from CR4. `None`: the table cannot answer (a feature enabled in
    /// XCR0/XSS has no 0xD entry), which ends the program.
    pub fn lookup(&self, leaf: u32, sub: u32, xcr0: u64, xss: u64, osxsave: bool) -> Option<[u32; 4]> {
        let Some(e) = self.find(leaf, sub) else { return Some([0; 4]) };
        let mut out = e.out;
        match (leaf, sub) {
            (1, _) => {
                out[2] &= !cpuid::OSXSAVE;
                if osxsave {
                    out[2] |= cpuid::OSXSAVE;
                }
            }
            (0xd, 0) => out[1] = self.xsave_size(xcr0, false)?,
            (0xd, 1) => out[1] = self.xsave_size(xcr0 | xss, true)?,
            _ => {}
        }
        Some(out)
    }
}

/// Writes a CPUID page holding `entries` into `page` (the monitor's copy;
/// tests). Returns `false` if they do not fit.
pub fn write_cpuid_page(page: &mut [u8], entries: &[CpuidEntry]) -> bool {
    if entries.len() > cpuid::MAX_ENTRIES || page.len() < cpuid::ENTRIES + entries.len() * cpuid::ENTRY_SIZE {
        return false;
    }
    page[..cpuid::ENTRIES].fill(0);
    page[..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = cpuid::ENTRIES + i * cpuid::ENTRY_SIZE;
        let d = &mut page[at..at + cpuid::ENTRY_SIZE];
        d.fill(0);
        d[0..4].copy_from_slice(&e.eax_in.to_le_bytes());
        d[4..8].copy_from_slice(&e.ecx_in.to_le_bytes());
        d[8..16].copy_from_slice(&e.xcr0_in.to_le_bytes());
        d[16..24].copy_from_slice(&e.xss_in.to_le_bytes());
        for (k, v) in e.out.iter().enumerate() {
            d[24 + 4 * k..28 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_apm() {
        assert_eq!([exit::RDTSC, exit::RDPMC, exit::CPUID, exit::HLT], [0x6e, 0x6f, 0x72, 0x78]);
        assert_eq!([exit::IOIO, exit::MSR, exit::VMMCALL, exit::RDTSCP], [0x7b, 0x7c, 0x81, 0x87]);
        assert_eq!([exit::WBINVD, exit::MONITOR, exit::MWAIT], [0x89, 0x8a, 0x8b]);
        assert_eq!([exit::NPF, exit::VMGEXIT], [0x400, 0x403]);
        assert_eq!(exit_name(0x7b), "port I/O");
        assert_eq!(exit_name(0x1234), "unknown exit");
        assert_eq!(MSR_SEV_GHCB, 0xc001_0130);
        assert_eq!(RUN_VMPL0, 0x16, "run VMPL0: GHCBData[39:32] = 0");
    }

    #[test]
    fn valid_bitmap_follows_linux_ghcb_bitmap_idx() {
        // Linux: GHCB_BITMAP_IDX(field) = offsetof(ghcb_save_area, field) / 8.
        assert_eq!(valid_bit(ghcb::RAX), 0x3f);
        assert_eq!(valid_bit(ghcb::RCX), 0x61);
        assert_eq!(valid_bit(ghcb::RDX), 0x62);
        assert_eq!(valid_bit(ghcb::RBX), 0x63);
        assert_eq!(valid_bit(ghcb::SW_EXIT_CODE), 0x72);
        assert_eq!(valid_bit(ghcb::SW_EXIT_INFO_1), 0x73);
        assert_eq!(valid_bit(ghcb::SW_EXIT_INFO_2), 0x74);
        assert_eq!(valid_bit(ghcb::SW_SCRATCH), 0x75);
        assert_eq!(valid_bit(ghcb::XCR0), 0x7d);
        assert_eq!(valid_bit(ghcb::CPL), 0x19);
        let mut page = [0xaau8; ghcb::SIZE];
        let mut g = Ghcb::new(&mut page);
        g.begin();
        assert!(g.view().is_empty());
        g.set(ghcb::RAX, 5);
        g.set(ghcb::SW_EXIT_CODE, exit::IOIO);
        g.set_cpl(3);
        g.set(ghcb::VALID_BITMAP, 1); // ignored: not a save-area field
        g.set(ghcb::RAX + 1, 1); // ignored: unaligned
        let v = g.view();
        assert_eq!(v.get(ghcb::RAX), Some(5));
        assert_eq!(v.get(ghcb::SW_EXIT_CODE), Some(0x7b));
        assert_eq!(v.cpl(), Some(3));
        assert_eq!(v.get(ghcb::RCX), None, "stale 0xaa bytes are not valid");
        assert_eq!(v.get(ghcb::SHARED_BUFFER), None);
        assert_eq!(page[ghcb::VALID_BITMAP + 7], 0x80, "rax = bit 63");
        assert_eq!(page[ghcb::VALID_BITMAP + 14], 0x04, "sw_exit_code = bit 114");
        assert_eq!(&page[ghcb::PROTOCOL_VERSION..ghcb::PROTOCOL_VERSION + 2], &[2, 0]);
        assert_eq!(&page[ghcb::USAGE..ghcb::USAGE + 4], &[0; 4]);
    }

    #[test]
    fn request_and_response_round_trip() {
        // The lists the two functions follow, spelled out there.
        assert_eq!(REQUEST_REGS.len(), 11);
        assert_eq!(RESPONSE_REGS, [ghcb::RAX, ghcb::RBX, ghcb::RCX, ghcb::RDX, ghcb::RIP]);
        use crate::trap::TrapFrame;
        let f = TrapFrame {
            rax: 2,
            rdi: 7,
            r11: 0x246,
            rsp: 0x7fff_0000,
            error: exit::IOIO,
            rip: 0x40_1000,
            cs: 0x33,
            rflags: 0x202,
            r15: 0xdead,
            ..TrapFrame::default()
        };
        let mut page = [0xffu8; ghcb::SIZE];
        let mut g = Ghcb::new(&mut page);
        write_request(&mut g, &f);
        let v = g.view();
        assert_eq!(v.get(ghcb::SW_EXIT_CODE), Some(exit::IOIO));
        assert_eq!(v.get(ghcb::SW_EXIT_INFO_1), Some(0x33));
        assert_eq!(v.get(ghcb::SW_EXIT_INFO_2), None);
        assert_eq!(v.cpl(), Some(3));
        assert_eq!(
            (v.get(ghcb::RIP), v.get(ghcb::RAX), v.get(ghcb::RDI)),
            (Some(0x40_1000), Some(2), Some(7))
        );
        assert_eq!((v.get(ghcb::R11), v.get(ghcb::RSP)), (Some(0x246), Some(0x7fff_0000)));
        // The response: VMPL0 begins a new message and sets what changes.
        g.begin();
        let mut back = f;
        assert!(!apply_response(&g.view(), &mut back), "an empty response changes nothing");
        assert_eq!(back, f);
        g.set(ghcb::RIP, 0x40_1002);
        g.set(ghcb::RAX, 0);
        g.set(ghcb::RDI, 99); // not a response register: ignored
        assert!(apply_response(&g.view(), &mut back));
        assert_eq!(back, TrapFrame { rip: 0x40_1002, rax: 0, ..f });
        assert!(!response_flushes(&g.view()));
        g.set(ghcb::SW_EXIT_INFO_2, RESPONSE_FLUSH_TLB);
        assert!(response_flushes(&g.view()));
    }

    #[test]
    fn port_io_lengths_and_forms() {
        // out 0xe0, al (the doorbell): 2 bytes, imm8.
        let d = decode_io(&[0xe6, 0xe0, 0x90]).expect("out imm8");
        assert_eq!(d, IoInsn { len: 2, out: true, size: 1, port: PortOperand::Imm(0xe0) });
        assert_eq!(d.port(0), 0xe0);
        assert_eq!(d.exit_info_1(0), (0xe0 << 16) | ioio::SZ8);
        // out dx, al: 1 byte, port from dx.
        let d = decode_io(&[0xee]).expect("out dx");
        assert_eq!(d, IoInsn { len: 1, out: true, size: 1, port: PortOperand::Dx });
        assert_eq!(d.port(0x1_00e1), 0xe1);
        // out dx, eax / ax (66), in al, imm8, in eax, dx.
        assert_eq!(decode_io(&[0xef]).map(|d| (d.len, d.size)), Ok((1, 4)));
        assert_eq!(decode_io(&[0x66, 0xef]).map(|d| (d.len, d.size)), Ok((2, 2)));
        let d = decode_io(&[0xe4, 0xe0]).expect("in imm8");
        assert!(!d.out);
        assert_eq!(d.exit_info_1(0), (0xe0 << 16) | ioio::SZ8 | ioio::TYPE_IN);
        assert_eq!(decode_io(&[0xed]).map(|d| (d.out, d.size)), Ok((false, 4)));
        // Segment and REX prefixes are skipped and counted.
        assert_eq!(decode_io(&[0x2e, 0x48, 0xe6, 0xe0]).map(|d| d.len), Ok(4));
        // rep / repne / lock, string forms, other bytes, truncation.
        assert_eq!(decode_io(&[0xf3, 0xe6, 0xe0]), Err(DecodeError::Rep));
        assert_eq!(decode_io(&[0xf2, 0xee]), Err(DecodeError::Rep));
        assert_eq!(decode_io(&[0xf0, 0xee]), Err(DecodeError::Rep));
        assert_eq!(decode_io(&[0xf3, 0x6e]), Err(DecodeError::Rep));
        assert_eq!(decode_io(&[0x6e]), Err(DecodeError::String));
        assert_eq!(decode_io(&[0x6d]), Err(DecodeError::String));
        assert_eq!(decode_io(&[0x90]), Err(DecodeError::Mismatch));
        assert_eq!(decode_io(&[0xe6]), Err(DecodeError::Truncated));
        assert_eq!(decode_io(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode_io(&[0x66; 20]), Err(DecodeError::Truncated));
        // 14 prefixes + out imm8 = 16 bytes: longer than any instruction.
        let mut long = [0x2eu8; 16];
        long[14] = 0xe6;
        long[15] = 0xe0;
        assert_eq!(decode_io(&long), Err(DecodeError::Truncated));
    }

    #[test]
    fn value_exit_lengths() {
        assert_eq!(decode_len(exit::CPUID, &[0x0f, 0xa2, 0xcc]), Ok(2));
        assert_eq!(decode_len(exit::RDTSC, &[0x0f, 0x31]), Ok(2));
        assert_eq!(decode_len(exit::RDTSCP, &[0x0f, 0x01, 0xf9]), Ok(3));
        assert_eq!(decode_len(exit::RDTSC, &[0x66, 0x0f, 0x31]), Ok(3));
        assert_eq!(decode_len(exit::IOIO, &[0xe6, 0xe0]), Ok(2));
        // The bytes must be the instruction the exit code names.
        assert_eq!(decode_len(exit::CPUID, &[0x0f, 0x31]), Err(DecodeError::Mismatch));
        assert_eq!(decode_len(exit::RDTSCP, &[0x0f, 0x01]), Err(DecodeError::Truncated));
        assert_eq!(decode_len(exit::HLT, &[0xf4]), Err(DecodeError::Mismatch));
        assert_eq!(decode_len(exit::MSR, &[0x0f, 0x32]), Err(DecodeError::Mismatch));
        assert_eq!(decode_len(exit::CPUID, &[0xf3, 0x0f, 0xa2]), Err(DecodeError::Rep));
    }

    fn entry(eax_in: u32, ecx_in: u32, xcr0_in: u64, out: [u32; 4]) -> CpuidEntry {
        CpuidEntry { eax_in, ecx_in, xcr0_in, xss_in: 0, out }
    }

    #[test]
    fn cpuid_page_lookup_with_xcr0_and_xss() {
        let entries = [
            entry(0, 0, 0, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            entry(1, 0, 0, [0xa20f12, 0x800, cpuid::OSXSAVE | 1, 0x178bfbff]),
            // 0xD sub 0 for XCR0 = x87|SSE, and one computed for AVX (ignored).
            entry(0xd, 0, 3, [0x7, 0x240, 0x340, 0]),
            entry(0xd, 0, 7, [0x7, 0x999, 0x340, 0]),
            entry(0xd, 1, 1, [0xf, 0x240, 0x1800, 0]),
            entry(0xd, 2, 0, [0x100, 0x240, 0, 0]), // AVX: 256 bytes at 576
            entry(0xd, 11, 0, [0x10, 0, 1, 0]),     // CET_U (supervisor, XSS)
            entry(7, 0, 0, [0, 0x219c07ab, 0x4, 0]),
            entry(7, 1, 0, [0x10, 0, 0, 0]),
        ];
        let mut page = [0u8; 4096];
        assert!(write_cpuid_page(&mut page, &entries));
        let t = CpuidTable::parse(&page).expect("table");
        assert_eq!(t.entry(1), Some(entries[1]));
        assert_eq!(t.entry(9), None);
        // Plain leaves; sub-leaf matters only for indexed leaves.
        assert_eq!(t.lookup(0, 5, 3, 0, true), Some(entries[0].out));
        assert_eq!(t.lookup(7, 1, 3, 0, true), Some(entries[8].out));
        assert_eq!(t.lookup(7, 2, 3, 0, true), Some([0; 4]), "missing sub-leaf: zeros");
        assert_eq!(t.lookup(0x8000_0008, 0, 3, 0, true), Some([0; 4]));
        // OSXSAVE follows the vCPU's CR4.
        assert_eq!(t.lookup(1, 0, 3, 0, false).map(|o| o[2] & cpuid::OSXSAVE), Some(0));
        assert_eq!(t.lookup(1, 0, 3, 0, true).map(|o| o[2] & cpuid::OSXSAVE), Some(cpuid::OSXSAVE));
        // 0xD: sizes for the guest's XCR0, not the table's.
        assert_eq!(t.lookup(0xd, 0, 3, 0, true).map(|o| o[1]), Some(0x240));
        assert_eq!(t.lookup(0xd, 0, 7, 0, true).map(|o| o[1]), Some(0x340));
        assert_eq!(t.lookup(0xd, 1, 7, 0, true).map(|o| o[1]), Some(0x340));
        assert_eq!(t.lookup(0xd, 1, 7, 1 << 11, true).map(|o| o[1]), Some(0x350), "XSS adds CET_U");
        assert_eq!(t.lookup(0xd, 0, 3, 0, true).map(|o| o[0]), Some(7), "eax from the base entry");
        // A feature enabled without its sub-leaf: the table cannot answer.
        assert_eq!(t.lookup(0xd, 0, 3 | (1 << 9), 0, true), None);
    }

    #[test]
    fn hostile_cpuid_pages_are_refused() {
        let mut page = [0u8; 4096];
        page[..4].copy_from_slice(&65u32.to_le_bytes());
        assert!(CpuidTable::parse(&page).is_none(), "count above 64");
        page[..4].copy_from_slice(&64u32.to_le_bytes());
        assert!(CpuidTable::parse(&page[..100]).is_none(), "shorter than the count");
        assert!(CpuidTable::parse(&page[..2]).is_none());
        assert!(CpuidTable::parse(&page).is_some(), "64 zero entries");
        // Only the base 0xD entry: with every feature enabled the table has
        // no sub-leaf to size them and says so instead of guessing.
        assert!(write_cpuid_page(&mut page, &[entry(0xd, 0, 1, [3, 0x240, 0x240, 0])]));
        let t = CpuidTable::parse(&page).expect("table");
        assert_eq!(t.lookup(0xd, 0, u64::MAX, u64::MAX, true), None);
        assert_eq!(t.lookup(0xd, 0, 3 | (1 << 2), 0, true), None, "AVX without its sub-leaf");
        assert!(!write_cpuid_page(&mut page, &[CpuidEntry::default(); 65]));
    }
}
