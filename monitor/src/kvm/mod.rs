//! The KVM backend: runs a Cabin image in ring 3 of a KVM guest whose ring 0
//! is Cabin's proxy-kernel (`cabin-proxy-kernel`).
//!
//! [`run`] builds the whole domain from the host before boot
//! ([`domain::build`]: page tables, descriptor tables, boot page, ring,
//! initial stack), creates one vCPU that starts directly in ring 3 at the
//! image's entry ([`vcpu::create`]), and then handles VM exits:
//!
//! - the ring doorbell (`out` from ring 3): the libos waits for a completion
//!   or wakes the ring worker;
//! - the slow-path system-call gate (hypercall from the proxy-kernel): served
//!   synchronously with the same service as the ring;
//! - a fault report: the program ends with 128 + signal and one line.
//!
//! The guest's memory is only read and written through
//! [`memory::GuestMemory`] / [`memory::AddressSpace`] (copy once, checked
//! ranges). See docs/kvm.md for the design and its measurements.

mod backend;
pub mod descriptors;
pub mod domain;
pub mod exit;
pub mod initstack;
pub mod layout;
pub mod memory;
pub mod paging;
pub mod pku;
pub mod ring;
pub mod vcpu;

use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use thiserror::Error;

use self::domain::{Domain, DomainError, ProgramSpec};
use self::exit::{decode_in, decode_out, FaultReport, IoAction, Regs};
use self::memory::{AddressSpace, GuestMemory};
use self::vcpu::VcpuError;

pub use backend::run;

/// The proxy-kernel blob built by `monitor/build.rs`.
pub static PROXY_KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/proxy-kernel.bin"));

/// Errors of the KVM backend (the program's own faults are not errors: they
/// are outcomes).
#[derive(Debug, Error)]
pub enum KvmError {
    /// /dev/kvm cannot be used here.
    #[error("KVM is not usable: {0}; help: use --backend process, or run where /dev/kvm is available")]
    NotUsable(String),
    /// Building the domain failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A KVM call failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The guest did something that only a Cabin bug explains (proxy-kernel
    /// fault, triple fault, emulation failure).
    #[error("the KVM guest failed: {0}")]
    Guest(String),
}

/// How to run.
#[derive(Clone, Debug)]
pub struct KvmConfig {
    /// Guest memory in bytes (`--mem`).
    pub mem_size: u64,
    /// Arguments, environment and identity.
    pub program: ProgramSpec,
    /// Give up after this long (tests); `None` = no limit.
    pub timeout: Option<Duration>,
}

/// Counters of one run (`--stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvmStats {
    /// Every return from `KVM_RUN`.
    pub vm_exits: u64,
    /// System calls that arrived through the slow-path gate.
    pub gate_syscalls: u64,
    /// Doorbell exits (ring waits and wakes).
    pub doorbell_exits: u64,
    /// Time from the start of [`run`] to the first `KVM_RUN`.
    pub boot_ns: u64,
    /// Time from the start of [`run`] to the end of the program.
    pub wall_ns: u64,
    /// Page-table leaf entries: 4 KiB pages.
    pub small_pages: u64,
    /// Page-table leaf entries: 2 MiB pages.
    pub large_pages: u64,
    /// The guest's CR4 (SMEP, SMAP, UMIP: see docs/kvm.md, "Ring 0").
    pub cr4: u64,
}

/// How the program ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvmOutcome {
    /// Exit status: the program's own, or 128 + signal after a fault.
    pub status: i32,
    /// The fault that ended it, if any.
    pub fault: Option<FaultReport>,
    /// One-line report for stderr (fault or protocol violation).
    pub report: Option<String>,
    /// Whether execute-only code was enforced (never here: no PKU).
    pub execute_only_enforced: bool,
    /// Counters.
    pub stats: KvmStats,
}

/// What a served system call asks of the run loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// Resume the program with this value in `rax`.
    Return(i64),
    /// End the program with this status.
    Exit(i32),
    /// The program broke the protocol (ring garbage, wild pointer): end it.
    Violation(String),
    /// Do not serve the call: resume the program at this address (the
    /// libos's trap entry), which serves it (`PORT_SYSCALL` redirect).
    Redirect(u64),
}

/// The program's memory as the syscall service sees it.
#[derive(Debug)]
pub struct ProgramMemory<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// The program's regions.
    pub space: &'a AddressSpace,
    /// Whether this call may be answered with [`Served::Redirect`] (only
    /// calls that came through the page-fault form of the gate).
    pub can_redirect: bool,
}

/// Serves system calls that reach the monitor synchronously (slow path).
pub trait SyscallService {
    /// Serves call `nr` (slow-path gate).
    fn serve(&mut self, nr: u64, args: [u64; 6], mem: &ProgramMemory<'_>) -> Served;

    /// The program rang the ring doorbell; with `wait`, return once a
    /// completion is pending. The return value matters only if it ends the
    /// program.
    fn doorbell(&mut self, wait: bool) -> Served {
        let _ = wait;
        Served::Return(0)
    }

    /// `KVM_RUN` was interrupted by a signal: `Some` ends the program.
    fn interrupted(&mut self) -> Option<Served> {
        None
    }
}

/// Whether /dev/kvm is usable here (`Err` says why not).
pub fn usable() -> Result<(), String> {
    vcpu::kvm_usable()
}

/// The minimal service used until the monitor's full syscall service is
/// wired in: `write` to fds 1 and 2, `exit`, `exit_group`; `ENOSYS` else.
#[derive(Debug, Default)]
pub struct MinimalService;

impl SyscallService for MinimalService {
    fn serve(&mut self, nr: u64, a: [u64; 6], m: &ProgramMemory<'_>) -> Served {
        use std::io::Write;
        match nr {
            1 if a[0] == 1 || a[0] == 2 => {
                let len = a[2].min(1 << 20);
                match m.space.read(m.mem, a[1], len) {
                    Ok(bytes) => {
                        let r = if a[0] == 1 {
                            std::io::stdout().write_all(&bytes).and_then(|_| std::io::stdout().flush())
                        } else {
                            std::io::stderr().write_all(&bytes)
                        };
                        Served::Return(if r.is_ok() { len as i64 } else { -5 })
                    }
                    Err(_) => Served::Return(-14),
                }
            }
            60 | 231 => Served::Exit((a[0] & 0xff) as i32),
            _ => Served::Return(-38),
        }
    }
}

/// Runs `image` to completion under KVM with `service` serving the calls
/// that reach the vCPU thread (gate calls and doorbells). The full monitor
/// (ring worker, syscall service, stats) is [`run`].
pub fn run_with(
    image: &[u8],
    cfg: &KvmConfig,
    service: &mut dyn SyscallService,
) -> Result<KvmOutcome, KvmError> {
    let (d, kvm, cpuid, features, eo, start) = prepare(image, cfg)?;
    run_prepared(&d, &kvm, &cpuid, &features, eo, start, cfg, service)
}

type Prepared = (Domain, kvm_ioctls::Kvm, kvm_bindings::CpuId, vcpu::CpuFeatures, pku::ExecuteOnly, Instant);

fn prepare(image: &[u8], cfg: &KvmConfig) -> Result<Prepared, KvmError> {
    let start = Instant::now();
    let (kvm, cpuid, features) = vcpu::open().map_err(|e| KvmError::NotUsable(e.to_string()))?;
    let eo = pku::decide(features.leaf7_ecx, true, false);
    let mut random = [0u8; 16];
    getrandom(&mut random);
    let hwcap = (u64::from(features.leaf1_edx), features.hwcap2());
    let d = domain::build(image, cfg.mem_size, &cfg.program, random, hwcap, eo.code_pkey())?;
    Ok((d, kvm, cpuid, features, eo, start))
}

#[allow(clippy::too_many_arguments)]
fn run_prepared(
    d: &Domain,
    kvm: &kvm_ioctls::Kvm,
    cpuid: &kvm_bindings::CpuId,
    features: &vcpu::CpuFeatures,
    eo: pku::ExecuteOnly,
    start: Instant,
    cfg: &KvmConfig,
    service: &mut dyn SyscallService,
) -> Result<KvmOutcome, KvmError> {
    let mut machine = vcpu::create(kvm, cpuid, features, d)?;
    if let Some(khz) = invariant_tsc_khz(&machine.vcpu) {
        let at = layout::BOOT_GPA + std::mem::offset_of!(cabin_abi::boot::BootInfo, tsc_khz) as u64;
        d.mem.write_u64(at, khz).map_err(|e| KvmError::Guest(format!("writing the boot page: {e}")))?;
    }
    let mut stats = KvmStats {
        small_pages: d.leaves.0,
        large_pages: d.leaves.1,
        cr4: features.cr4(),
        ..KvmStats::default()
    };
    stats.boot_ns = start.elapsed().as_nanos() as u64;
    let result = match cfg.timeout {
        None => run_loop(&mut machine, d, cfg, service, &mut stats, start),
        Some(limit) => {
            // Watchdog: a guest spinning in ring 3 never exits on its own.
            ring::install_kick_handler();
            let watch = std::sync::Arc::new(ring::Shared::default());
            watch.register_vcpu_thread();
            let w = watch.clone();
            let dog =
                crate::policy::limits::Watchdog::start(limit.saturating_sub(start.elapsed()), move || {
                    w.kick_vcpu()
                });
            let r = run_loop(&mut machine, d, cfg, service, &mut stats, start);
            watch.vcpu_done.store(true, std::sync::atomic::Ordering::SeqCst);
            dog.cancel();
            r
        }
    };
    stats.wall_ns = start.elapsed().as_nanos() as u64;
    drop(machine);
    let (status, fault, report) = result?;
    Ok(KvmOutcome { status, fault, report, execute_only_enforced: eo.enforced(), stats })
}

/// The guest TSC's rate in kHz when the libos may use it as a clock: the
/// CPU says the TSC is invariant (CPUID 0x8000_0007 EDX bit 8: constant
/// rate, never stops) and KVM reports the vCPU's rate.
fn invariant_tsc_khz(vcpu: &kvm_ioctls::VcpuFd) -> Option<u64> {
    // Leaf 0x8000_0000 says whether the extended leaf exists.
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_0007 {
        return None;
    }
    let invariant = core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    let khz = vcpu.get_tsc_khz().ok()?;
    (invariant && khz > 0).then_some(u64::from(khz))
}

type LoopEnd = (i32, Option<FaultReport>, Option<String>);

fn run_loop(
    m: &mut vcpu::Machine,
    d: &Domain,
    cfg: &KvmConfig,
    service: &mut dyn SyscallService,
    stats: &mut KvmStats,
    start: Instant,
) -> Result<LoopEnd, KvmError> {
    // From here a kick makes KVM_RUN return EINTR, however it lands
    // (crate::kick); one that came before is seen by the check below.
    let immediate_exit: *mut u8 = &mut m.vcpu.get_kvm_run().immediate_exit;
    // SAFETY: the kvm_run mapping belongs to `m.vcpu`, which outlives this
    // function, and the target is dropped when it returns.
    let _kick_target = unsafe { crate::kick::VcpuKickTarget::enter(immediate_exit) };
    match service.interrupted() {
        Some(Served::Violation(msg)) => return Ok(violation(msg)),
        Some(Served::Exit(code)) => return Ok((code, None, None)),
        _ => {}
    }
    loop {
        if let Some(t) = cfg.timeout {
            if start.elapsed() >= t {
                return Err(KvmError::Guest(format!("the program ran longer than {t:?}")));
            }
        }
        let exit = m.vcpu.run();
        stats.vm_exits += 1;
        // `in` from ring 3 reaches the monitor only on the doorbell port
        // (the I/O bitmap): decoded below like an `out`.
        let (port, data, is_in) = match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                (port, (b, n), false)
            }
            Ok(VcpuExit::IoIn(port, _)) => (port, ([0u8; 4], 0), true),
            Ok(VcpuExit::Hlt) => return Err(KvmError::Guest(guest_state(m, "the proxy-kernel halted"))),
            Ok(VcpuExit::Shutdown) => return Err(KvmError::Guest(guest_state(m, "triple fault (shutdown)"))),
            Ok(VcpuExit::InternalError) => {
                return Err(KvmError::Guest(guest_state(m, "KVM internal error (emulation failure)")))
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                return Err(KvmError::Guest(format!("VM entry failed (hardware reason {reason:#x})")))
            }
            Ok(other) => {
                let what = format!("unexpected VM exit {other:?}");
                return Err(KvmError::Guest(guest_state(m, &what)));
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: clear the flag first, then see why, so that a
                // kick landing in between makes the next KVM_RUN return.
                m.vcpu.set_kvm_immediate_exit(0);
                match service.interrupted() {
                    Some(Served::Violation(msg)) => return Ok(violation(msg)),
                    Some(Served::Exit(code)) => return Ok((code, None, None)),
                    _ => continue,
                }
            }
            Err(e) => return Err(KvmError::Guest(format!("KVM_RUN failed: {e}"))),
        };
        let kregs = m.vcpu.get_regs().map_err(|e| KvmError::Guest(format!("GET_REGS failed: {e}")))?;
        let regs = Regs::from(&kregs);
        let action = if is_in {
            decode_in(port, &regs, d.kernel_text)
        } else {
            decode_out(port, &data.0[..data.1], &regs, d.kernel_text)
        };
        match action {
            IoAction::Syscall { nr, args } => {
                stats.gate_syscalls += 1;
                // The `syscall` entry stub (ordinary KVM) cannot redirect.
                let can_redirect = !(d.lstar..d.lstar + 16).contains(&regs.rip);
                let pm = ProgramMemory { mem: &d.mem, space: &d.space, can_redirect };
                match service.serve(nr, args, &pm) {
                    Served::Redirect(target) if can_redirect => {
                        let mut k = kregs;
                        k.rcx = target;
                        m.vcpu.set_regs(&k).map_err(|e| KvmError::Guest(format!("SET_REGS failed: {e}")))?;
                    }
                    Served::Redirect(_) => {
                        return Ok(violation("redirect of a non-redirectable call".into()))
                    }
                    Served::Return(v) => {
                        let mut k = kregs;
                        k.rax = v as u64;
                        m.vcpu.set_regs(&k).map_err(|e| KvmError::Guest(format!("SET_REGS failed: {e}")))?;
                    }
                    Served::Exit(code) => return Ok((code, None, None)),
                    Served::Violation(msg) => return Ok(violation(msg)),
                }
            }
            IoAction::Fault(f) => {
                if f.in_kernel() {
                    return Err(KvmError::Guest(f.message(None)));
                }
                let int_n = int_instruction(d, &f);
                let status = 128 + f.signal_for_run(int_n) as i32;
                return Ok((status, Some(f), Some(f.message(int_n))));
            }
            IoAction::Doorbell { wait } => {
                stats.doorbell_exits += 1;
                match service.doorbell(wait) {
                    Served::Violation(msg) => return Ok(violation(msg)),
                    Served::Exit(code) => return Ok((code, None, None)),
                    Served::Return(_) | Served::Redirect(_) => {}
                }
            }
            IoAction::Violation(why) => {
                return Ok(violation(format!("{why} (port {port:#x}, rip {:#x})", regs.rip)));
            }
            IoAction::Invalid(why) => {
                return Err(KvmError::Guest(format!("{why} (port {port:#x}, rip {:#x})", regs.rip)));
            }
        }
    }
}

fn violation(msg: String) -> LoopEnd {
    (
        crate::config::EXIT_PROTOCOL_VIOLATION,
        None,
        Some(format!("ring protocol violation: {msg}; the program was killed")),
    )
}

/// The vector of the faulting instruction when it is an `int N` (`cd NN`)
/// through a gate closed to ring 3, which this host delivers as #UD and
/// ordinary KVM as #GP.
fn int_instruction(d: &Domain, f: &FaultReport) -> Option<u8> {
    if f.vector != 6 && f.vector != 13 {
        return None;
    }
    match d.space.read(&d.mem, f.rip, 2).ok()?.as_slice() {
        [0xcd, n] => Some(*n),
        _ => None,
    }
}

fn guest_state(m: &vcpu::Machine, what: &str) -> String {
    match (m.vcpu.get_regs(), m.vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => format!(
            "{what}: rip {:#x} rsp {:#x} rax {:#x} cs {:#x} cr2 {:#x}",
            r.rip, r.rsp, r.rax, s.cs.selector, s.cr2
        ),
        _ => what.to_string(),
    }
}

/// Fills `buf` from the host's `getrandom` (zeros stay if it fails).
fn getrandom(buf: &mut [u8]) {
    // SAFETY: writes at most buf.len() bytes into buf.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
}

#[cfg(test)]
mod tests;
