//! The KVM backend: runs a Cabin image in ring 3 of a KVM guest whose ring 0
//! is Cabin's proxy-kernel (`cabin-proxy-kernel`, built into a blob by this
//! crate's build script). [`KvmDomain`] is its
//! [`Domain`](cabin_monitor::domain::Domain); the monitor's session does the
//! rest (policy gate, ring worker, service, limits, records).
//!
//! Who calls it: `cabinc run --backend kvm` ([`run`]), `cabinc` to choose a
//! backend ([`usable`]), and the monitor's tests. What it must never do: let
//! the program reach ring 0 on the hot path, or trust guest memory.
//!
//! Building ([`domain::build`]) makes the whole guest from the host before
//! boot: page tables, descriptor tables, boot page, ring, initial stack. One
//! vCPU starts directly in ring 3 at the image's entry ([`vcpu::create`]);
//! the vCPU thread then handles VM exits:
//!
//! - the ring doorbell (`out` from ring 3): the libos waits for a completion
//!   or wakes the ring worker;
//! - the slow-path system-call gate (hypercall from the proxy-kernel): put on
//!   the same ring ([`ring::RingGate`]), or sent back into the libos;
//! - a fault report: the program ends with 128 + signal and one line.
//!
//! The guest's memory is only read and written through
//! [`memory::PhysMemory`] (the builder) and the program's typed view of it,
//! [`cabin_monitor::memory::GuestMemory`] (copy once, checked ranges). See
//! docs/kvm.md for the design and its measurements.

mod backend;
pub mod descriptors;
pub mod domain;
pub mod exit;
pub mod files;
pub mod initstack;
pub mod layout;
pub mod memory;
pub mod paging;
pub mod pku;
pub mod ring;
pub mod vcpu;
pub mod vcpus;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use thiserror::Error;

use self::domain::{DomainError, Guest, ProgramSpec};
use self::exit::{decode_in, decode_out, FaultReport, IoAction, Regs};
use self::vcpu::VcpuError;
use cabin_monitor::memory::GuestMemory;

pub use backend::{run, KvmDomain};
pub use vcpu::Unusable;

/// The proxy-kernel blob built by this crate's `build.rs`.
pub static PROXY_KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/proxy-kernel.bin"));

/// Errors of the KVM backend (the program's own faults are not errors: they
/// are outcomes).
#[derive(Debug, Error)]
pub enum KvmError {
    /// /dev/kvm cannot be used here.
    #[error("KVM is not usable: {0}; help: use --backend process, or run where /dev/kvm is available")]
    NotUsable(#[source] VcpuError),
    /// Building the domain failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A KVM call failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The guest did something that only a Cabin bug explains (proxy-kernel
    /// fault, triple fault, emulation failure).
    #[error("the KVM guest failed: {0}")]
    Guest(#[from] GuestError),
}

/// How a guest failed in a way only a Cabin bug (or the host) explains.
#[derive(Debug, Error)]
pub enum GuestError {
    /// The vCPU stopped where it never should: halt, triple fault, emulation
    /// failure, an exit Cabin does not use; with its registers when readable.
    #[error("{what}{}", state.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Stopped {
        /// What happened.
        what: String,
        /// `rip … rsp … rax … cs … cr2 …`, if the registers could be read.
        state: Option<String>,
    },
    /// `KVM_RUN` refused to enter the guest.
    #[error("VM entry failed (hardware reason {0:#x})")]
    FailEntry(u64),
    /// `KVM_RUN` failed.
    #[error("KVM_RUN failed: {0}")]
    Run(#[source] kvm_ioctls::Error),
    /// Reading the registers failed.
    #[error("GET_REGS failed: {0}")]
    GetRegs(#[source] kvm_ioctls::Error),
    /// Writing the registers failed.
    #[error("SET_REGS failed: {0}")]
    SetRegs(#[source] kvm_ioctls::Error),
    /// Reading the segment registers failed.
    #[error("GET_SREGS failed: {0}")]
    GetSregs(#[source] kvm_ioctls::Error),
    /// The proxy-kernel itself faulted (the report in words).
    #[error("{0}")]
    ProxyKernelFault(String),
    /// The proxy-kernel used a hypercall port wrongly.
    #[error("{why} (port {port:#x}, rip {rip:#x})")]
    PortMisuse {
        /// What was wrong.
        why: &'static str,
        /// The port.
        port: u16,
        /// Where.
        rip: u64,
    },
    /// The run took longer than [`KvmConfig::timeout`] (tests).
    #[error("the program ran longer than {0:?}")]
    Timeout(Duration),
    /// Writing the boot page failed.
    #[error("writing the boot page: {0}")]
    BootPage(#[source] memory::MemoryError),
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
    /// The tree's shared window (docs/processes.md, "Shared memory").
    pub shared: Option<Arc<cabin_monitor::shm::SharedWindow>>,
}

impl KvmConfig {
    /// The guest a session's spec asks for: its memory (with `[limits]
    /// memory` the guest is the limit, rounded down to 2 MiB), arguments,
    /// environment and ids; the program sees the monitor's pid, and its
    /// parent is the monitor's parent (as a native program's is the shell
    /// that started it; never its own pid, which `kill(getppid())` would
    /// then reach).
    pub fn for_spec(spec: &cabin_monitor::domain::DomainSpec) -> KvmConfig {
        let pid = std::process::id();
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        KvmConfig {
            mem_size: layout::guest_memory(spec.mem_arg, spec.memory_limit),
            program: ProgramSpec {
                args: spec.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                env: spec.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
                pid,
                ppid,
                uid: spec.ids.0,
                gid: spec.ids.1,
                force_trap: spec.force_trap,
                read_ahead: spec.read_ahead,
                // The libos stops the program at the bound, whatever set it.
                memory_limit: true,
            },
            timeout: None,
            shared: spec.shared.clone(),
        }
    }
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
    /// Protection changes (`mprotect`, `mmap` with a `prot` other than
    /// read-write), one exit each.
    pub protect_exits: u64,
    /// Time from the start of the build to the first `KVM_RUN`.
    pub boot_ns: u64,
    /// Time from the start of the build to the end of the program.
    pub wall_ns: u64,
    /// Page-table leaf entries: 4 KiB pages.
    pub small_pages: u64,
    /// Page-table leaf entries: 2 MiB pages.
    pub large_pages: u64,
    /// The guest's CR4 (SMEP, SMAP, UMIP: see docs/kvm.md, "Ring 0").
    pub cr4: u64,
    /// Gate calls redirected into the libos.
    pub gate_redirects: u64,
    /// Doorbell exits that asked to wait for a completion.
    pub doorbell_waits: u64,
    /// vCPUs started over the run (one per program thread).
    pub vcpus: u64,
    /// Faults and posted signals sent to the libos's signal entry
    /// (docs/signals.md).
    pub signal_redirects: u64,
    /// `futex` calls served by the vCPU threads (`DOORBELL_FUTEX`).
    pub futex_exits: u64,
    /// Threads started on a vCPU whose host thread waited for them
    /// (`vcpus.rs`, [`vcpus::PARK_IDLE`]): no new host thread, one ioctl.
    pub warm_starts: u64,
}

impl KvmStats {
    /// The `kvm` object of `--stats`, with the worker's forwarded calls and
    /// the guest's memory size.
    pub fn json(&self, ring_forwarded: u64, mem_bytes: u64) -> serde_json::Value {
        serde_json::json!({
            "vm_exits": self.vm_exits,
            "gate_syscalls": self.gate_syscalls,
            "doorbell_exits": self.doorbell_exits,
            "protect_exits": self.protect_exits,
            "gate_redirects": self.gate_redirects,
            "doorbell_waits": self.doorbell_waits,
            "signal_redirects": self.signal_redirects,
            "futex_exits": self.futex_exits,
            "warm_starts": self.warm_starts,
            "ring_forwarded": ring_forwarded,
            "boot_ns": self.boot_ns,
            "mem_bytes": mem_bytes,
            "pages_4k": self.small_pages,
            "pages_2m": self.large_pages,
            "smep": self.cr4 & vcpu::CR4_SMEP != 0,
            "smap": self.cr4 & vcpu::CR4_SMAP != 0,
            "vcpus": self.vcpus,
        })
    }

    /// Adds one vCPU's exit counters.
    pub fn add(&mut self, other: &KvmStats) {
        self.vm_exits += other.vm_exits;
        self.gate_syscalls += other.gate_syscalls;
        self.doorbell_exits += other.doorbell_exits;
        self.protect_exits += other.protect_exits;
        self.gate_redirects += other.gate_redirects;
        self.doorbell_waits += other.doorbell_waits;
        self.signal_redirects += other.signal_redirects;
        self.futex_exits += other.futex_exits;
        self.warm_starts += other.warm_starts;
    }
}

/// How the vCPU loop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// `exit`/`exit_group` with this status.
    Exited(i32),
    /// The program faulted: exit status 128 + signal, and the report line.
    Fault {
        /// 128 + the signal.
        status: i32,
        /// What the proxy-kernel reported.
        fault: FaultReport,
        /// The one-line report.
        report: String,
        /// SIGSEGV `si_code` for a page fault (`SEGV_MAPERR` 1,
        /// `SEGV_ACCERR` 2: a present page, or a `PROT_NONE` one).
        code: Option<i32>,
    },
    /// The program broke the protocol, or the run was stopped from another
    /// thread (the message says which).
    Violation(String),
    /// `exit` of this vCPU's thread (the program ends with it only if it
    /// was the last, see [`vcpus`]).
    ThreadExit(i32),
    /// Another vCPU ended the program; this one left its loop.
    Stopped,
}

impl From<LoopEnd> for cabin_monitor::domain::DomainEnd {
    fn from(end: LoopEnd) -> Self {
        use cabin_monitor::domain::DomainEnd;
        match end {
            LoopEnd::Exited(code) | LoopEnd::ThreadExit(code) => DomainEnd::Exited(code),
            LoopEnd::Stopped => DomainEnd::Violation("the program was stopped".into()),
            LoopEnd::Fault { status, fault, report, code } => DomainEnd::Fault {
                signo: status - 128,
                code,
                addr: (fault.vector == 14).then_some(fault.cr2),
                rip: Some(fault.rip),
                report: Some(report),
            },
            LoopEnd::Violation(msg) => DomainEnd::Violation(msg),
        }
    }
}

/// How the program ended ([`run_with`]).
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

impl KvmOutcome {
    fn new(end: LoopEnd, execute_only_enforced: bool, stats: KvmStats) -> KvmOutcome {
        let (status, fault, report) = match end {
            LoopEnd::Exited(code) | LoopEnd::ThreadExit(code) => (code, None, None),
            LoopEnd::Stopped => (
                cabin_monitor::config::EXIT_PROTOCOL_VIOLATION,
                None,
                Some("the program was stopped".to_string()),
            ),
            LoopEnd::Fault { status, fault, report, .. } => (status, Some(fault), Some(report)),
            LoopEnd::Violation(msg) => (
                cabin_monitor::config::EXIT_PROTOCOL_VIOLATION,
                None,
                Some(format!("ring protocol violation: {msg}; the program was killed")),
            ),
        };
        KvmOutcome { status, fault, report, execute_only_enforced, stats }
    }
}

/// What a served system call asks of the run loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// Resume the program with this value in `rax`.
    Return(i64),
    /// End the program with this status (`exit_group`).
    Exit(i32),
    /// End the calling thread with this status (`exit`); the last thread's
    /// ends the program.
    ThreadExit(i32),
    /// The program broke the protocol (ring garbage, wild pointer): end it.
    Violation(String),
    /// Do not serve the call: resume the program at this address (the
    /// libos's trap entry), which serves it (`PORT_SYSCALL` redirect).
    Redirect(u64),
}

/// The program's memory as a slow-path service sees it.
#[derive(Debug)]
pub struct ProgramMemory<'a> {
    /// The program's view of guest memory.
    pub mem: &'a GuestMemory,
    /// Whether this call may be answered with [`Served::Redirect`] (only
    /// calls that came through the page-fault form of the gate).
    pub can_redirect: bool,
}

/// Serves system calls that reach the vCPU thread synchronously (slow
/// path): [`ring::RingGate`] in a run, a recorder in tests.
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

    /// A `futex` call of the program's thread (`DOORBELL_FUTEX`): the vCPU
    /// thread serves it itself, sleeping in the host futex of a wait;
    /// `kicked` says whether a kick has landed since the last `KVM_RUN`
    /// (look at it after reading the wake word, see
    /// [`SyscallService::wake_word`]). Without one: `ENOSYS` (the libos
    /// then sends its futex calls on the ring).
    fn futex(&mut self, args: [u64; 6], mem: &ProgramMemory<'_>, kicked: &dyn Fn() -> bool) -> Served {
        let _ = (args, mem, kicked);
        Served::Return(-i64::from(libc::ENOSYS))
    }

    /// The vCPU's wake word, which every kick changes (and the kick handler
    /// too, on the kicked thread); `None` without one.
    fn wake_word(&self) -> Option<*const std::sync::atomic::AtomicU32> {
        None
    }

    /// `KVM_RUN` was interrupted by a signal: `Some` ends the program.
    fn interrupted(&mut self) -> Option<Served> {
        None
    }

    /// Called before every `KVM_RUN`: returns once the program may run
    /// (job control holds a stopped program's vCPUs here).
    fn hold(&mut self) {}

    /// Gate calls redirected into the libos, and doorbell waits (`--stats`).
    fn counters(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// Whether /dev/kvm is usable here (`Err` says why not).
pub fn usable() -> Result<(), Unusable> {
    vcpu::kvm_usable()
}

/// How many VMs this process has made (each domain one, and [`usable`]'s
/// check one the first time it is asked): for tests of the start-up.
pub fn vms_made() -> u64 {
    vcpu::vms_made()
}

/// Runs `image` to completion under KVM with `service` serving the calls
/// that reach the vCPU thread (gate calls and doorbells): the vCPU loop
/// alone, for tests of the guest's set-up. The full monitor (ring worker,
/// syscall service, stats) is [`run`].
pub fn run_with(
    image: &[u8],
    cfg: &KvmConfig,
    service: &mut dyn SyscallService,
) -> Result<KvmOutcome, KvmError> {
    let p = prepare(image, cfg)?;
    let mut machine = vcpu::create(&p.kvm, &p.cpuid, &p.features, &p.guest)?;
    let mut stats = p.stats(&machine.vcpu)?;
    let ending = AtomicBool::new(false);
    let result = match cfg.timeout {
        None => run_loop(
            &mut machine.vcpu,
            &machine.vm,
            &p.guest,
            cfg.timeout,
            service,
            &mut stats,
            p.start,
            &ending,
        ),
        Some(limit) => {
            // Watchdog: a guest spinning in ring 3 never exits on its own.
            let watch = Arc::new(ring::Shared::default());
            watch.enter_vcpu(0);
            let w = watch.clone();
            let dog =
                cabin_monitor::watch::Watchdog::start(limit.saturating_sub(p.start.elapsed()), move || {
                    w.kick_all()
                });
            let r = run_loop(
                &mut machine.vcpu,
                &machine.vm,
                &p.guest,
                cfg.timeout,
                service,
                &mut stats,
                p.start,
                &ending,
            );
            watch.leave_vcpu(0);
            dog.cancel();
            r
        }
    };
    stats.wall_ns = p.start.elapsed().as_nanos() as u64;
    let (redirects, waits) = service.counters();
    stats.gate_redirects = redirects;
    stats.doorbell_waits = waits;
    drop(machine);
    Ok(KvmOutcome::new(result?, p.eo.enforced(), stats))
}

/// Runs `image` under KVM with one vCPU per thread: vCPU 0 at the image's
/// entry, more started with [`vcpus::Vcpus::spawn`] (by the services
/// `factory` makes, or by `on_start`, which gets the [`vcpus::Vcpus`] before
/// vCPU 0 runs). For tests of the multi-vCPU machinery with hand-made
/// guests; [`run`] is the full monitor.
pub fn run_threads(
    image: &[u8],
    cfg: &KvmConfig,
    factory: Box<dyn vcpus::ServiceFactory>,
    on_start: impl FnOnce(&Arc<vcpus::Vcpus>),
) -> Result<KvmOutcome, KvmError> {
    let p = prepare(image, cfg)?;
    let shared = Arc::new(ring::Shared::default());
    let v = vcpus::Vcpus::new(&p, shared, factory, cfg.timeout)?;
    let base = v.with_main(|fd| p.stats(fd)).transpose()?.unwrap_or_default();
    on_start(&v);
    let end = v.run_main();
    let (mut stats, started) = v.stats();
    stats.small_pages = base.small_pages;
    stats.large_pages = base.large_pages;
    stats.cr4 = base.cr4;
    stats.vcpus = started;
    stats.wall_ns = p.start.elapsed().as_nanos() as u64;
    Ok(KvmOutcome::new(end?, p.eo.enforced(), stats))
}

/// A guest built and the KVM handles to run it, before the vCPU exists.
#[derive(Debug)]
pub(crate) struct Prepared {
    guest: Arc<Guest>,
    kvm: kvm_ioctls::Kvm,
    cpuid: kvm_bindings::CpuId,
    features: vcpu::CpuFeatures,
    eo: pku::ExecuteOnly,
    start: Instant,
}

impl Prepared {
    /// The counters at boot; writes the TSC rate into the boot page.
    fn stats(&self, vcpu: &VcpuFd) -> Result<KvmStats, KvmError> {
        if let Some(khz) = invariant_tsc_khz(vcpu) {
            let at = layout::BOOT_GPA + std::mem::offset_of!(cabin_abi::boot::BootInfo, tsc_khz) as u64;
            self.guest.phys.write_u64(at, khz).map_err(GuestError::BootPage)?;
        }
        Ok(KvmStats {
            small_pages: self.guest.leaves.0,
            large_pages: self.guest.leaves.1,
            cr4: self.features.cr4(),
            boot_ns: self.start.elapsed().as_nanos() as u64,
            ..KvmStats::default()
        })
    }
}

fn prepare(image: &[u8], cfg: &KvmConfig) -> Result<Prepared, KvmError> {
    let start = Instant::now();
    let (kvm, cpuid, features) = vcpu::open().map_err(KvmError::NotUsable)?;
    // Execute-only where the vCPU has PKU, the image's code is
    // execute-only, and PKRU fits the XSAVE area KVM_SET_XSAVE loads.
    let image_xo = cabin_image::elf::ElfFile::parse(image)
        .is_ok_and(|e| e.exec_segments().all(|s| s.flags & cabin_image::elf::PF_R == 0));
    let eo = pku::decide(features.leaf7_ecx, image_xo, pku::host_pkru_offset().is_some());
    let mut random = [0u8; 16];
    getrandom(&mut random);
    let hwcap = (u64::from(features.leaf1_edx), features.hwcap2());
    let mut guest = domain::build(image, cfg.mem_size, &cfg.program, random, hwcap, eo.code_pkey())?;
    if let Some(w) = &cfg.shared {
        guest.attach_window(w.clone())?;
    }
    let guest = Arc::new(guest);
    files::GuestFiles::bind(&guest);
    Ok(Prepared { guest, kvm, cpuid, features, eo, start })
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

/// Loads `k` into the vCPU for its next entry: through its kvm_run page
/// when `sync` (see [`run_loop`]), else with `KVM_SET_REGS`.
fn put_regs(vcpu: &mut VcpuFd, sync: bool, k: &kvm_bindings::kvm_regs) -> Result<(), GuestError> {
    if sync {
        vcpu.sync_regs_mut().regs = *k;
        vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
        Ok(())
    } else {
        vcpu.set_regs(k).map_err(GuestError::SetRegs)
    }
}

/// Runs one vCPU until its thread or the program ends (or `timeout`
/// passes: tests). `ending` set (another vCPU ended the program) makes it
/// leave at its next exit or kick with [`LoopEnd::Stopped`].
#[allow(clippy::too_many_arguments)]
fn run_loop(
    vcpu: &mut VcpuFd,
    vm: &VmFd,
    d: &Guest,
    timeout: Option<Duration>,
    service: &mut dyn SyscallService,
    stats: &mut KvmStats,
    start: Instant,
    ending: &AtomicBool,
) -> Result<LoopEnd, KvmError> {
    // From here a kick makes KVM_RUN return EINTR, however it lands
    // (cabin_monitor::kick); one that came before is seen by the check below.
    let immediate_exit: *mut u8 = &mut vcpu.get_kvm_run().immediate_exit;
    // SAFETY: the kvm_run mapping belongs to `vcpu`, which outlives this
    // function, and the target is dropped when it returns.
    let kick_target = unsafe { cabin_monitor::kick::VcpuKickTarget::enter(immediate_exit) };
    if let Some(w) = service.wake_word() {
        // SAFETY: the word lives as long as the service, which outlives
        // this function (and so the target).
        unsafe { kick_target.set_wake_word(w) };
    }
    if ending.load(Ordering::SeqCst) {
        return Ok(LoopEnd::Stopped);
    }
    match service.interrupted() {
        Some(Served::Violation(msg)) => return Ok(LoopEnd::Violation(msg)),
        Some(Served::Exit(code)) => return Ok(LoopEnd::Exited(code)),
        _ => {}
    }
    // The general registers of every exit, and those the monitor changes
    // for the next entry, travel in the vCPU's kvm_run page
    // (KVM_CAP_SYNC_REGS): KVM copies them inside `KVM_RUN`, where a
    // `KVM_GET_REGS` or `KVM_SET_REGS` costs an ioctl each (17-32 µs on this
    // nested host: docs/performance.md, "the host thread waits with its vCPU").
    let sync = vcpu::sync_regs_supported(vm);
    if sync {
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
    }
    loop {
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                return Err(GuestError::Timeout(t).into());
            }
        }
        // A stopped program's vCPU waits here; a kick that stops the program
        // meanwhile makes the KVM_RUN below return at once.
        service.hold();
        let exit = vcpu.run();
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
            Ok(VcpuExit::Hlt) => return Err(stopped(vcpu, "the proxy-kernel halted".into())),
            Ok(VcpuExit::Shutdown) => return Err(stopped(vcpu, "triple fault (shutdown)".into())),
            Ok(VcpuExit::InternalError) => {
                return Err(stopped(vcpu, "KVM internal error (emulation failure)".into()))
            }
            Ok(VcpuExit::FailEntry(reason, _)) => return Err(GuestError::FailEntry(reason).into()),
            Ok(VcpuExit::MmioRead(gpa, data)) if files::GuestFiles::is_file_gpa(gpa) => {
                data.fill(0);
                match file_mmio(vcpu, d, gpa, false, ending)? {
                    Some(end) => return Ok(end),
                    None => continue,
                }
            }
            Ok(VcpuExit::MmioWrite(gpa, _)) if files::GuestFiles::is_file_gpa(gpa) => {
                match file_mmio(vcpu, d, gpa, true, ending)? {
                    Some(end) => return Ok(end),
                    None => continue,
                }
            }
            Ok(other) => {
                let what = format!("unexpected VM exit {other:?}");
                return Err(stopped(vcpu, what));
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: clear the flag first, then see why, so that a
                // kick landing in between makes the next KVM_RUN return.
                vcpu.set_kvm_immediate_exit(0);
                if ending.load(Ordering::SeqCst) {
                    return Ok(LoopEnd::Stopped);
                }
                match service.interrupted() {
                    Some(Served::Violation(msg)) => return Ok(LoopEnd::Violation(msg)),
                    Some(Served::Exit(code)) => return Ok(LoopEnd::Exited(code)),
                    _ => {
                        signal_redirect(vcpu, d)?;
                        continue;
                    }
                }
            }
            Err(e) if e.errno() == libc::EFAULT => match file_efault(vcpu, d, e, ending)? {
                Some(end) => return Ok(end),
                None => continue,
            },
            Err(e) => return Err(GuestError::Run(e).into()),
        };
        let kregs =
            if sync { vcpu.sync_regs().regs } else { vcpu.get_regs().map_err(GuestError::GetRegs)? };
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
                let pm = ProgramMemory { mem: &d.view, can_redirect };
                match service.serve(nr, args, &pm) {
                    Served::Redirect(target) if can_redirect => {
                        let mut k = kregs;
                        k.rcx = target;
                        put_regs(vcpu, sync, &k)?;
                    }
                    Served::Redirect(_) => {
                        return Ok(LoopEnd::Violation("redirect of a non-redirectable call".into()))
                    }
                    Served::Return(v) => {
                        let mut k = kregs;
                        k.rax = v as u64;
                        put_regs(vcpu, sync, &k)?;
                    }
                    Served::Exit(code) => return Ok(LoopEnd::Exited(code)),
                    Served::ThreadExit(code) => return Ok(LoopEnd::ThreadExit(code)),
                    Served::Violation(msg) => return Ok(LoopEnd::Violation(msg)),
                }
            }
            IoAction::Fault(f) => {
                if f.in_kernel() {
                    return Err(GuestError::ProxyKernelFault(f.message(None)).into());
                }
                let int_n = int_instruction(d, &f);
                if let Some(entry) = fault_redirect(d, &f, int_n, ending) {
                    // The libos takes it (the program's handler, or its
                    // default action): the proxy-kernel resumes ring 3 there.
                    stats.signal_redirects += 1;
                    let mut k = kregs;
                    k.rax = entry;
                    put_regs(vcpu, sync, &k)?;
                    continue;
                }
                let status = 128 + f.signal_for_run(int_n) as i32;
                let code = segv_code(d, &f, status);
                let mut report = f.message(int_n);
                if let Some(name) = code.and_then(cabin_monitor::domain::segv_code_name) {
                    report += &format!(" ({name})");
                }
                return Ok(LoopEnd::Fault { status, fault: f, report, code });
            }
            IoAction::Protect { addr, len, prot } => {
                stats.protect_exits += 1;
                let r = protect(d, addr, len, prot);
                let mut k = kregs;
                k.rax = r as u64;
                put_regs(vcpu, sync, &k)?;
                if r == 0 {
                    flush_tlb(vm)?;
                }
            }
            IoAction::Commit { addr, len, prot, target } => {
                stats.protect_exits += 1;
                let (r, flush) = commit(d, addr, len, prot, target);
                let mut k = kregs;
                k.rax = r as u64;
                put_regs(vcpu, sync, &k)?;
                if flush {
                    flush_tlb(vm)?;
                }
            }
            IoAction::Doorbell { wait } => {
                stats.doorbell_exits += 1;
                match service.doorbell(wait) {
                    Served::Violation(msg) => return Ok(LoopEnd::Violation(msg)),
                    Served::Exit(code) => return Ok(LoopEnd::Exited(code)),
                    Served::ThreadExit(code) => return Ok(LoopEnd::ThreadExit(code)),
                    Served::Return(_) | Served::Redirect(_) => {}
                }
            }
            IoAction::Futex { args } => {
                stats.futex_exits += 1;
                let pm = ProgramMemory { mem: &d.view, can_redirect: false };
                // SAFETY: the byte of this vCPU's kvm_run mapping (above);
                // the kick handler writes it, hence volatile.
                let kicked = || unsafe { immediate_exit.read_volatile() } != 0;
                match service.futex(args, &pm, &kicked) {
                    Served::Return(v) => {
                        let mut k = kregs;
                        k.rax = v as u64;
                        put_regs(vcpu, sync, &k)?;
                    }
                    Served::Violation(msg) => return Ok(LoopEnd::Violation(msg)),
                    Served::Exit(code) => return Ok(LoopEnd::Exited(code)),
                    Served::ThreadExit(code) => return Ok(LoopEnd::ThreadExit(code)),
                    Served::Redirect(_) => {
                        return Ok(LoopEnd::Violation("redirect of a futex doorbell".into()))
                    }
                }
                // Woken for the program's end: leave without one more entry.
                if ending.load(Ordering::SeqCst) {
                    return Ok(LoopEnd::Stopped);
                }
            }
            IoAction::ThreadExit { code } => {
                // The thread's exit is posted on its ring: wake the worker
                // (as a doorbell wake would), then end this vCPU as the
                // gate's `exit` does.
                stats.doorbell_exits += 1;
                match service.doorbell(false) {
                    Served::Violation(msg) => return Ok(LoopEnd::Violation(msg)),
                    Served::Exit(c) => return Ok(LoopEnd::Exited(c)),
                    _ => return Ok(LoopEnd::ThreadExit(code)),
                }
            }
            IoAction::Violation(why) => {
                return Ok(LoopEnd::Violation(format!("{why} (port {port:#x}, rip {:#x})", regs.rip)));
            }
            IoAction::Invalid(why) => {
                return Err(GuestError::PortMisuse { why, port, rip: regs.rip }.into());
            }
        }
    }
}

/// An access to a file slot's guest-physical address that KVM answered
/// with an MMIO exit (docs/kvm.md, "Live shared file mappings": a slot
/// already deleted, a translation kept past an `munmap`; or a page past
/// the file's end where KVM emulated the access). The pending MMIO is
/// completed first (a read gets zeros; one `KVM_RUN` with
/// `immediate_exit`, as KVM asks before state changes), then the program
/// gets its signal ([`file_signal`]).
fn file_mmio(
    vcpu: &mut VcpuFd,
    d: &Guest,
    gpa: u64,
    write: bool,
    ending: &AtomicBool,
) -> Result<Option<LoopEnd>, KvmError> {
    let before = vcpu.get_regs().map_err(GuestError::GetRegs)?;
    let sregs = vcpu.get_sregs().map_err(GuestError::GetSregs)?;
    // Complete the access (KVM writes the zeros of a read and moves past
    // the instruction), without entering the guest again.
    vcpu.set_kvm_immediate_exit(1);
    let mut completed = false;
    for _ in 0..4 {
        match vcpu.run() {
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                completed = true;
                break;
            }
            Ok(VcpuExit::MmioRead(_, data)) => data.fill(0),
            Ok(VcpuExit::MmioWrite(..)) => {}
            Ok(other) => {
                let what = format!("unexpected VM exit {other:?} completing a file page's access");
                vcpu.set_kvm_immediate_exit(0);
                return Err(stopped(vcpu, what));
            }
            Err(e) => {
                vcpu.set_kvm_immediate_exit(0);
                return Err(GuestError::Run(e).into());
            }
        }
    }
    vcpu.set_kvm_immediate_exit(0);
    if !completed {
        return Err(stopped(vcpu, "a file page's access did not complete".into()));
    }
    if ending.load(Ordering::SeqCst) {
        return Ok(Some(LoopEnd::Stopped));
    }
    if sregs.cs.selector & 3 != 3 {
        let what = format!("ring 0 touched file slot address {gpa:#x} at rip {:#x}", before.rip);
        return Err(GuestError::ProxyKernelFault(what).into());
    }
    let hit = match d.files.fault_at(gpa) {
        Some(va) => FileHit::PastEnd(va),
        // A slot deleted under a translation the vCPU still held: the
        // address the instruction touched, as the `EFAULT` path finds it.
        None => {
            let code = (1..=15).rev().find_map(|n| d.view.peek(before.rip, n).ok());
            let (lo, hi) = (layout::FILEMAP_VA, layout::FILEMAP_VA + layout::FILEMAP_MAX);
            FileHit::Gone(
                code.and_then(|c| files::access_in(&c, before.rip, &before, &sregs, lo, hi)).unwrap_or(0),
            )
        }
    };
    file_signal(vcpu, d, &before, &sregs, hit, write, ending)
}

/// `KVM_RUN` failed with `EFAULT` without saying where (this host, for a
/// ring-3 access to a file mapping's page past the file's end: KVM found no
/// host page for the slot). The instruction at `rip` is decoded to find the
/// address it touches; one in the file-mapping range is the program's
/// fault ([`file_signal`]); anything else stays the monitor's error `e`.
fn file_efault(
    vcpu: &mut VcpuFd,
    d: &Guest,
    e: kvm_ioctls::Error,
    ending: &AtomicBool,
) -> Result<Option<LoopEnd>, KvmError> {
    let r = vcpu.get_regs().map_err(GuestError::GetRegs)?;
    let s = vcpu.get_sregs().map_err(GuestError::GetSregs)?;
    if s.cs.selector & 3 != 3 {
        return Err(GuestError::Run(e).into());
    }
    let code = (1..=15).rev().find_map(|n| d.view.peek(r.rip, n).ok());
    let (lo, hi) = (layout::FILEMAP_VA, layout::FILEMAP_VA + layout::FILEMAP_MAX);
    let Some(va) = code.and_then(|c| files::access_in(&c, r.rip, &r, &s, lo, hi)) else {
        return Err(GuestError::Run(e).into());
    };
    let hit = if d.files.maps(va) { FileHit::PastEnd(va) } else { FileHit::Gone(va) };
    file_signal(vcpu, d, &r, &s, hit, false, ending)
}

/// What a failed access to a file mapping found.
enum FileHit {
    /// A mapped page past the file's end: `SIGBUS` (`BUS_ADRERR`).
    PastEnd(u64),
    /// A page no longer mapped: `SIGSEGV` (`SEGV_MAPERR`; the address when
    /// known, else 0).
    Gone(u64),
}

/// Gives the program what Linux gives for `hit` at `before.rip`: its
/// handler runs (registers as at the access, `rip` at the faulting
/// instruction in the mailbox), or, unhandled, the run ends with the
/// signal. `None`: the program goes on at its handler.
fn file_signal(
    vcpu: &mut VcpuFd,
    d: &Guest,
    before: &kvm_bindings::kvm_regs,
    sregs: &kvm_bindings::kvm_sregs,
    hit: FileHit,
    write: bool,
    ending: &AtomicBool,
) -> Result<Option<LoopEnd>, KvmError> {
    const SIGBUS: u64 = 7;
    const SIGSEGV: u64 = 11;
    const BUS_ADRERR: u64 = 2;
    const SEGV_MAPERR: u64 = 1;
    let (signo, code, addr) = match hit {
        FileHit::PastEnd(va) => (SIGBUS, BUS_ADRERR, va),
        FileHit::Gone(va) => (SIGSEGV, SEGV_MAPERR, va),
    };
    let fault = FaultReport {
        vector: 14,
        error: 4 | if write { 2 } else { 0 },
        rip: before.rip,
        cr2: addr,
        cs: u64::from(sregs.cs.selector),
        rsp: before.rsp,
        rflags: before.rflags,
        reason: cabin_abi::hypercall::fault::REASON_EXCEPTION,
    };
    if let Ok(boot) = cabin_monitor::boot::BootPage::of(&d.view) {
        if let Some((entry, text)) = boot.signal_entry() {
            let in_libos = (text[0]..text[1]).contains(&before.rip) || before.rip == entry;
            if !in_libos && boot.handles(signo) && take_mailbox(&boot, ending) {
                boot.set_mailbox(&cabin_abi::boot::SigMailbox {
                    rip: before.rip,
                    rflags: before.rflags,
                    signo,
                    code,
                    addr,
                    trapno: 14,
                    err: fault.error,
                });
                let mut k = *before;
                k.rip = entry;
                k.rflags &= !0x100;
                if let Err(e) = vcpu.set_regs(&k) {
                    boot.release_mailbox();
                    return Err(GuestError::SetRegs(e).into());
                }
                return Ok(None);
            }
        }
    }
    let what = if signo == SIGBUS {
        "SIGBUS (BUS_ADRERR): past the end of a shared file mapping's file"
    } else {
        "SIGSEGV (SEGV_MAPERR): a shared file mapping no longer mapped"
    };
    let report = format!("{what}: access to {addr:#x} at rip {:#x}", before.rip);
    Ok(Some(LoopEnd::Fault { status: 128 + signo as i32, fault, report, code: Some(code as i32) }))
}

/// Takes the signal mailbox, waiting as [`fault_redirect`] does.
fn take_mailbox(boot: &cabin_monitor::boot::BootPage<'_>, ending: &AtomicBool) -> bool {
    let waited = Instant::now();
    while !boot.try_take_mailbox() {
        if ending.load(Ordering::SeqCst) || waited.elapsed() >= MAILBOX_WAIT {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// How long a faulting vCPU waits for the signal mailbox while another
/// vCPU's redirect has not been read yet (the libos frees it within a few
/// instructions; a program that keeps it busy ends at its fault).
const MAILBOX_WAIT: Duration = Duration::from_secs(1);

/// Whether the libos can take fault `f` (docs/signals.md): a ring-3
/// exception in program code (not in the libos, whose own faults end the
/// program) once the libos published its signal entry. Takes the boot
/// page's mailbox (every vCPU shares it: one redirect at a time), writes
/// the fault there and returns the entry. The fault goes to the thread that
/// took it: this vCPU.
fn fault_redirect(d: &Guest, f: &FaultReport, int_n: Option<u8>, ending: &AtomicBool) -> Option<u64> {
    if f.reason != cabin_abi::hypercall::fault::REASON_EXCEPTION || f.cs & 3 != 3 {
        return None;
    }
    let boot = cabin_monitor::boot::BootPage::of(&d.view).ok()?;
    let (entry, text) = boot.signal_entry()?;
    // A fault in the libos, or at the entry itself (a program that moved
    // the published entry or text range onto unmapped memory), is not
    // sent back there: it ends the program instead of looping.
    if (text[0]..text[1]).contains(&f.rip) || f.rip == entry {
        return None;
    }
    let (signo, code, addr) = f.siginfo(int_n);
    if !boot.handles(signo) {
        return None;
    }
    let waited = Instant::now();
    while !boot.try_take_mailbox() {
        if ending.load(Ordering::SeqCst) || waited.elapsed() >= MAILBOX_WAIT {
            return None;
        }
        std::thread::yield_now();
    }
    boot.set_mailbox(&cabin_abi::boot::SigMailbox {
        rip: f.rip,
        rflags: f.rflags,
        signo,
        code,
        addr,
        trapno: f.vector,
        err: f.error,
    });
    Some(entry)
}

/// After a kick: when a posted signal waits (the attention word) and this
/// vCPU stopped in ring-3 program code, sends it to the libos's signal
/// entry (the interrupted `rip`/RFLAGS in the mailbox), so the program's
/// handler runs without any ring-0 work. Every vCPU is kicked; the first
/// that takes the mailbox is redirected, the others go on (a posted signal
/// is for one thread: whichever takes it from `sig_incoming` and does not
/// block it; the monitor re-kicks while it is not taken). Elsewhere (in
/// the libos, which looks on its way out; in the proxy-kernel, briefly) a
/// vCPU is left alone.
fn signal_redirect(vcpu: &mut VcpuFd, d: &Guest) -> Result<(), KvmError> {
    let Ok(boot) = cabin_monitor::boot::BootPage::of(&d.view) else { return Ok(()) };
    if !boot.attention() {
        return Ok(());
    }
    let Some((entry, text)) = boot.signal_entry() else { return Ok(()) };
    let sregs = vcpu.get_sregs().map_err(GuestError::GetSregs)?;
    if sregs.cs.selector & 3 != 3 {
        return Ok(());
    }
    let mut k = vcpu.get_regs().map_err(GuestError::GetRegs)?;
    if (text[0]..text[1]).contains(&k.rip) || !boot.try_take_mailbox() {
        return Ok(());
    }
    boot.set_mailbox(&cabin_abi::boot::SigMailbox { rip: k.rip, rflags: k.rflags, ..Default::default() });
    k.rip = entry;
    // TF off: the entry must not single-step (the libos has the original).
    k.rflags &= !0x100;
    if let Err(e) = vcpu.set_regs(&k) {
        boot.release_mailbox();
        return Err(GuestError::SetRegs(e).into());
    }
    Ok(())
}

/// `si_code` of a fatal page fault: `SEGV_PKUERR` when a protection key
/// denied it (the error code's PK bit: a read of execute-only code),
/// `SEGV_ACCERR` when the page is there but the access is not allowed (the
/// error code's P bit, or a `PROT_NONE` entry, which is not present to the
/// CPU), `SEGV_MAPERR` otherwise.
fn segv_code(d: &Guest, f: &FaultReport, status: i32) -> Option<i32> {
    if f.vector != 14 || status != 128 + 11 {
        return None;
    }
    if f.error & cabin_proxy_kernel::trap::pf::PK != 0 {
        return Some(4);
    }
    if f.error & 1 != 0 {
        return Some(2);
    }
    let pt = d.pt.lock().unwrap_or_else(|e| e.into_inner());
    let none = matches!(pt.entry(&d.phys, f.cr2 & !0xfff), Ok(Some(e)) if e & paging::PTE_SOFT_NONE != 0);
    Some(if none { 2 } else { 1 })
}

/// Serves [`IoAction::Protect`]: `mprotect` of program pages, checked
/// against the monitor's own list of protectable ranges (not the boot
/// page's, which the program can write) and by [`paging::PageTables::protect`]
/// (user, non-executable leaves only). Returns 0 or `-errno`.
pub fn protect(d: &Guest, addr: u64, len: u64, prot: u64) -> i64 {
    const EINVAL: i64 = 22;
    const EACCES: i64 = 13;
    const ENOMEM: i64 = 12;
    if prot & !3 != 0 {
        return -(if prot & 4 != 0 { EACCES } else { EINVAL });
    }
    if !addr.is_multiple_of(layout::PAGE) || !len.is_multiple_of(layout::PAGE) {
        return -EINVAL;
    }
    let Some(end) = addr.checked_add(len) else { return -ENOMEM };
    if len == 0 {
        return 0;
    }
    let files = layout::FILEMAP_VA..layout::FILEMAP_VA + layout::FILEMAP_MAX;
    if files.contains(&addr) && end <= files.end {
        // A live shared file mapping: never beyond what its descriptor
        // allows (files.rs).
        return d.files.protect(d, addr, len, prot);
    }
    if !d.protectable.iter().any(|&[s, l]| l != 0 && addr >= s && end <= s + l) {
        return -EACCES;
    }
    let mut pt = d.pt.lock().unwrap_or_else(|e| e.into_inner());
    match pt.protect(&d.phys, addr, len, prot & 2 != 0, prot != 0) {
        Ok(_) => 0,
        Err(paging::PagingError::PoolExhausted(_)) => -ENOMEM,
        Err(_) => -EACCES,
    }
}

/// Serves [`IoAction::Commit`]: maps the arena pages at `target` (or, 0,
/// nothing) over `[addr, addr+len)` of the reservation space. Both ranges
/// are checked against the monitor's own layout, so the program can only
/// ever map its own arena pages, never executable, never anywhere but the
/// reservation space. Returns the result for `rax` and whether the TLB
/// must be flushed (an entry was replaced or removed).
pub fn commit(d: &Guest, addr: u64, len: u64, prot: u64, target: u64) -> (i64, bool) {
    const EINVAL: i64 = 22;
    const EACCES: i64 = 13;
    const ENOMEM: i64 = 12;
    if prot & !3 != 0 {
        return (-(if prot & 4 != 0 { EACCES } else { EINVAL }), false);
    }
    let page = |x: u64| x.is_multiple_of(layout::PAGE);
    if len == 0 || !page(addr) || !page(len) || !page(target) {
        return (-EINVAL, false);
    }
    let inside = |a: u64, s: u64, l: u64| a >= s && a.checked_add(len).is_some_and(|e| e <= s + l);
    if !inside(addr, layout::RESERVE_VA, layout::RESERVE_LEN) {
        return (-EINVAL, false);
    }
    let mut pt = d.pt.lock().unwrap_or_else(|e| e.into_inner());
    if target == 0 {
        d.view.unalias(addr, len);
        return match pt.clear_leaves(&d.phys, addr, len) {
            Ok(()) => (0, true),
            Err(_) => (-EINVAL, true),
        };
    }
    if !inside(target, layout::ARENA_VA, d.arena_len) {
        return (-EINVAL, false);
    }
    let gpa = d.arena_gpa + (target - layout::ARENA_VA);
    let perms = paging::Perms { user: true, write: prot & 2 != 0, exec: false, pkey: 0 };
    let mut set = pt.set_leaves(&d.phys, addr, gpa, len, perms);
    if matches!(set, Err(paging::PagingError::PoolExhausted(_))) && d.files.reclaim(&mut pt) {
        // Tables that file unmaps emptied, reusable after that flush.
        let _ = pt.clear_leaves(&d.phys, addr, len);
        set = pt.set_leaves(&d.phys, addr, gpa, len, perms);
    }
    let replaced = match set {
        Ok(r) => r,
        Err(paging::PagingError::PoolExhausted(_)) => return (-ENOMEM, true),
        Err(_) => return (-EINVAL, true),
    };
    if prot == 0 && pt.protect(&d.phys, addr, len, false, false).is_err() {
        return (-EINVAL, true);
    }
    if d.view.alias(addr, len, target).is_err() {
        return (-ENOMEM, replaced);
    }
    (0, replaced)
}

/// Makes the vCPU forget every cached translation before it runs again.
///
/// The host edited the page tables in guest memory, behind KVM's back:
/// ring 3 cannot flush, a CR3 or CR4 change through `KVM_SET_SREGS` was
/// measured not to be enough on this project's nested KVM (KVM's shadow
/// pages of the guest tables stay as they were), and a ring-0 entry costs
/// ~40 µs. Deleting a memory slot makes KVM drop every shadow page and
/// cached translation of the VM (all vCPUs, which it kicks itself), so the
/// flush is: add a one-page slot of our own far above guest memory, then
/// delete it.
///
/// Threads: the deletion zaps the shadow pages (or EPT roots) of the whole
/// VM and makes every vCPU reload them before it enters the guest again
/// (KVM waits for each running vCPU to leave guest mode), so an edit served
/// on one vCPU's thread is seen by all of them once this returns. Two
/// vCPUs flushing at once would add and delete the same slot under each
/// other (a delete of a slot already deleted fails), so flushes are
/// serialized.
fn flush_tlb(vm: &VmFd) -> Result<(), KvmError> {
    use std::os::fd::AsRawFd;
    if flush_tlb_fd(vm.as_raw_fd()) {
        Ok(())
    } else {
        Err(GuestError::Stopped { what: "the TLB flush failed".into(), state: None }.into())
    }
}

/// [`flush_tlb`] on a descriptor of the VM (`files.rs` keeps its own).
pub(crate) fn flush_tlb_fd(vm: std::os::fd::RawFd) -> bool {
    /// A slot number and guest-physical address nothing else uses.
    const FLUSH_SLOT: u32 = 7;
    const FLUSH_GPA: u64 = 1 << 38;
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let host = *PAGE.get_or_init(|| {
        // SAFETY: a fresh anonymous mapping of one page, never unmapped
        // (shared by every VM of this process, only ever a KVM slot).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            0
        } else {
            p as usize
        }
    });
    if host == 0 {
        return false;
    }
    static FLUSH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = FLUSH.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the slot maps one page of host memory that lives for the
    // whole process, far above guest memory (no overlap with slot 0); the
    // guest never maps that address in its page tables. Then it goes.
    unsafe {
        files::set_region(vm, FLUSH_SLOT, 0, FLUSH_GPA, 4096, host as u64)
            && files::set_region(vm, FLUSH_SLOT, 0, FLUSH_GPA, 0, host as u64)
    }
}

/// The vector of the faulting instruction when it is an `int N` (`cd NN`)
/// through a gate closed to ring 3, which this host delivers as #UD and
/// ordinary KVM as #GP.
fn int_instruction(d: &Guest, f: &FaultReport) -> Option<u8> {
    if f.vector != 6 && f.vector != 13 {
        return None;
    }
    match d.view.peek(f.rip, 2).ok()?.as_slice() {
        [0xcd, n] => Some(*n),
        _ => None,
    }
}

/// The guest stopped where it never should: what, with its registers.
fn stopped(vcpu: &VcpuFd, what: String) -> KvmError {
    GuestError::Stopped { what, state: guest_state(vcpu) }.into()
}

/// The vCPU's registers in words, when they can be read.
fn guest_state(vcpu: &VcpuFd) -> Option<String> {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => Some(format!(
            "rip {:#x} rsp {:#x} rax {:#x} cs {:#x} cr2 {:#x}",
            r.rip, r.rsp, r.rax, s.cs.selector, s.cr2
        )),
        _ => None,
    }
}

/// Fills `buf` from the host's `getrandom` (zeros stay if it fails).
fn getrandom(buf: &mut [u8]) {
    // SAFETY: writes at most buf.len() bytes into buf.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
}

#[cfg(test)]
mod tests;
