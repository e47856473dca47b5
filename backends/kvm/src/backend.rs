//! `cabinc run --backend kvm`: [`KvmDomain`], the KVM guest as a
//! [`Domain`] of the monitor's session, which brings the ring worker, the
//! syscall service, the policy gate and the records — the same ones the
//! process backend uses.
//!
//! Threads: the session's calling thread runs vCPU 0, the program's main
//! thread (and, on the rare exits, the doorbell and the slow-path gate,
//! [`RingGate`]); every further program thread runs on a vCPU of its own on
//! a host thread of its own ([`Vcpus`]). The session's worker thread polls
//! the ring and serves every call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cabin_abi::ring::RingPtr;
use cabin_abi::thread::clone_flags::{
    CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_PARENT_SETTID, CLONE_SETTLS,
};
use cabin_abi::thread::{ring_offset, ThreadStart, MAX_THREADS};
use cabin_image::elf::ElfFile;

use super::domain::{DomainError, Guest};
use super::ring::{install_kick_handler, RingGate, Shared};
use super::vcpu::VcpuStart;
use super::vcpus::{ServiceFactory, SpawnError, Vcpus};
use super::{prepare, KvmConfig, KvmError, KvmStats, Prepared, SyscallService};
use cabin_monitor::config::{RunConfig, RunError, RunOutcome};
use cabin_monitor::domain::{
    CpuClock, Domain, DomainEnd, DomainSpec, ExecuteOnly, SpawnedBy, StopCause, Stopper,
};
use cabin_monitor::memory::GuestMemory;
use cabin_monitor::placement::CpuSet;
use cabin_monitor::ring::WorkerStats;

/// Runs `image` confined in a KVM guest (a [`cabin_monitor::session::Session`] over
/// a [`KvmDomain`]). The guest's memory is the memory bound: `--mem`
/// rounded up to 2 MiB, or `[limits] memory` rounded down (see
/// [`super::layout::guest_memory`]); everything not taken by the system
/// area, the image, the stack and the `brk` heap becomes the arena.
pub fn run(image: &[u8], cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    cabin_monitor::session::run::<KvmDomain>(image, cfg)
}

/// The KVM backend's failures in the session's words (the same lines as
/// before the session existed).
fn to_run_error(e: KvmError) -> RunError {
    let backend = |what, source: Box<dyn std::error::Error + Send + Sync>| RunError::Backend { what, source };
    match e {
        KvmError::Domain(DomainError::Elf(e)) => RunError::InvalidImage(e.to_string()),
        KvmError::Domain(DomainError::WritableCode(p)) => {
            RunError::InvalidImage(format!("page {p:#x} would be both writable and executable"))
        }
        KvmError::Domain(e) => RunError::Layout(e.to_string()),
        KvmError::NotUsable(e) => backend("opening /dev/kvm", Box::new(e)),
        KvmError::Vcpu(e) => backend("setting up the KVM guest", Box::new(e)),
        KvmError::Guest(e) => backend("running the KVM guest", Box::new(e)),
    }
}

/// How a child process of the tree ended that called `exit_group(code)`:
/// the libos ends a program killed by a signal's default action with 128 +
/// signal after recording the signal in the boot page (untrusted: it only
/// decides which of the program's own ends its parent's `wait` sees), so
/// that end is a death by that signal, as on the process backend (whose
/// host process dies natively). The root's end is left as it was (its exit
/// status is the same either way).
fn child_end(code: i32, view: &GuestMemory) -> DomainEnd {
    let Ok(words) = cabin_monitor::boot::BootPage::of(view).map(|b| b.end_words()) else {
        return DomainEnd::Exited(code);
    };
    let signo = words.fault_signo;
    if signo > 0 && signo < 65 && code == 128 + signo as i32 {
        let known = words.fault_addr != 0 || words.fault_rip != 0;
        return DomainEnd::Fault {
            signo: signo as i32,
            addr: known.then_some(words.fault_addr),
            rip: known.then_some(words.fault_rip),
            code: None,
            report: None,
        };
    }
    DomainEnd::Exited(code)
}

/// Another handle on `/dev/kvm` for a child process's VM (a `dup` of the
/// parent's: no second open, no second CPUID query).
fn dup_kvm(kvm: &kvm_ioctls::Kvm) -> Result<kvm_ioctls::Kvm, RunError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup of a descriptor we own; the result is checked.
    let fd = unsafe { libc::fcntl(kvm.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(RunError::Backend {
            what: "duplicating the /dev/kvm descriptor",
            source: Box::new(std::io::Error::last_os_error()),
        });
    }
    // SAFETY: `fd` is a fresh descriptor of /dev/kvm that nothing else owns.
    Ok(unsafe { kvm_ioctls::Kvm::from_raw_fd(fd) })
}

/// A KVM guest: ring 0 the proxy-kernel, ring 3 the program and its libos,
/// one vCPU per program thread.
#[derive(Debug)]
pub struct KvmDomain {
    /// The VM and its vCPUs, once started.
    vcpus: Option<Arc<Vcpus>>,
    prepared: Prepared,
    /// What the vCPU threads and the threads that stop them share.
    shared: Arc<Shared>,
    /// The counters fixed at boot (pages, CR4, `boot_ns`), then the run's.
    stats: Mutex<KvmStats>,
    mem_size: u64,
    /// The virtual pid of a child process of the tree or of an image an
    /// `execve` started (docs/processes.md); `None`: the root, which
    /// answers the monitor's pid.
    tree_pid: Option<u32>,
    /// Every CPU of the run: where the vCPU threads go at the program's
    /// first thread ([`Vcpus::set_all_cpus`]).
    all_cpus: Option<CpuSet>,
}

// The session calls `spawn_thread` from ring workers while `run` runs.
const _: () = {
    const fn sync<T: Sync + Send>() {}
    sync::<KvmDomain>()
};

/// Reads how much of a guest's memory the host backs (it holds the guest,
/// so the mapping outlives every reading).
#[derive(Debug)]
struct GuestMeter(Arc<Guest>);

impl cabin_monitor::treemem::Meter for GuestMeter {
    fn resident(&self) -> u64 {
        let phys = &self.0.phys;
        // SAFETY: the guest's one mapping of `size` bytes, page aligned,
        // alive as long as the Arc held here.
        unsafe {
            cabin_monitor::treemem::mapping_resident(phys.host_base() as *const u8, phys.size() as usize)
        }
    }
}

/// Each vCPU's service: the gate of its thread's ring.
#[derive(Debug)]
struct RingGates {
    guest: Arc<Guest>,
    shared: Arc<Shared>,
}

impl ServiceFactory for RingGates {
    fn service(&self, slot: usize) -> Result<Box<dyn SyscallService + Send>, SpawnError> {
        if slot >= MAX_THREADS {
            return Err(SpawnError::NoSuchSlot(slot));
        }
        // SAFETY: the ring region is MAX_THREADS rings of RING_BYTES from
        // ring 0 (domain::build maps RING_REGION_BYTES there), alive as long
        // as the guest, which this factory holds; RING_BYTES keeps the
        // 64-byte alignment.
        let ring = unsafe { RingPtr::new(self.guest.ring.base().add(ring_offset(slot))) };
        Ok(Box::new(RingGate::new(ring, self.shared.clone(), slot)))
    }
}

/// How long `spawn_thread` waits for the vCPU of a slot the monitor has
/// freed to leave its loop (the libos's raw `exit` after its exit
/// submission). A program that keeps running on a freed slot gets `EAGAIN`.
const SLOT_FREE_WAIT: Duration = Duration::from_secs(2);

/// Stops the program: records why and kicks every vCPU thread out of
/// `KVM_RUN` until it has left its loop.
#[derive(Debug)]
struct VcpuStopper(Arc<Shared>);

impl Stopper for VcpuStopper {
    fn stop(&self, cause: StopCause) {
        self.0.worker_ended(Some(cause.message()));
    }

    fn wake_for_signal(&self, _sig: i32) {
        // Out of KVM_RUN: the run loop then sends a vCPU in program code
        // to the libos's signal entry (`signal_redirect`).
        self.0.kick_all();
    }

    fn rewake(&self) {
        self.0.kick_all();
    }

    fn pause(&self, on: bool) {
        self.0.pause(on);
    }
}

impl KvmDomain {
    /// The running VM's vCPUs (after [`Domain::start`]).
    pub fn vcpus(&self) -> Option<&Arc<Vcpus>> {
        self.vcpus.as_ref()
    }

    /// The thread id the program sees for slot `slot`: the pid for the
    /// main thread, pid + slot for the others (virtual: no host thread has
    /// it; `gettid` in the libos must agree).
    pub fn tid_of(&self, slot: usize) -> u32 {
        self.program_pid().wrapping_add(slot as u32)
    }

    fn stats_now(&self) -> KvmStats {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(v) = &self.vcpus {
            let (run, started) = v.stats();
            s.add(&run);
            s.vcpus = started;
        }
        s
    }
}

impl Domain for KvmDomain {
    const BACKEND: &'static str = "kvm";

    fn available() -> Result<(), RunError> {
        super::usable().map_err(|e| RunError::Backend { what: "opening /dev/kvm", source: Box::new(e) })
    }

    fn execute_only(image: &ElfFile<'_>) -> ExecuteOnly {
        // Protection keys where KVM offers them (crate::pku); the same
        // decision `prepare` makes, from KVM's supported CPUID. A `wrpkru`
        // anywhere in the code (a hand-made image: the build refuses it)
        // would lift it; `xrstor` cannot (XCR0 has no PKRU here).
        let image_xo = image.exec_segments().all(|s| s.flags & cabin_image::elf::PF_R == 0);
        let pku = crate::vcpu::open().is_ok_and(|(_, _, f)| {
            crate::pku::decide(f.leaf7_ecx, true, crate::pku::host_pkru_offset().is_some()).enforced()
        });
        // Scanned only where it decides something: without PKU or with
        // readable code nothing is enforced whatever the code holds.
        let wrpkru = pku
            && image_xo
            && image.exec_segments().any(|s| cabin_abi::pkru::wrpkru_at(image.bytes(s), s.vaddr).is_some());
        let enforced = pku && image_xo && !wrpkru;
        let notice = if enforced {
            "cabin: execute-only code is enforced (protection keys)"
        } else if !image_xo {
            "cabin: execute-only code is off: the image was built with readable code"
        } else if wrpkru {
            "cabin: execute-only code is not enforced: the image contains wrpkru"
        } else {
            "cabin: execute-only code is not enforced by the KVM backend (no protection keys)"
        };
        ExecuteOnly { enforced, notice }
    }

    fn build(image: &ElfFile<'_>, spec: &DomainSpec) -> Result<KvmDomain, RunError> {
        let cfg = KvmConfig::for_spec(spec);
        let prepared = prepare(image.data, &cfg).map_err(to_run_error)?;
        install_kick_handler();
        let shared = Arc::new(Shared::default());
        Ok(KvmDomain {
            vcpus: None,
            prepared,
            shared,
            stats: Mutex::default(),
            mem_size: cfg.mem_size,
            tree_pid: None,
            all_cpus: spec.all_cpus,
        })
    }

    /// A child process's VM (issue 14, docs/processes.md, docs/kvm.md): a
    /// new VM over a copy of this guest's memory (`Guest::fork_copy`:
    /// touched pages, page tables and system area included, every ring
    /// reset, `pid`/`ppid` in its boot page) whose one vCPU will start in
    /// ring 3 at `entry` (the libos's child start) on `sp` (the frame the
    /// libos left; both checked by the monitor). Nothing is shared with
    /// this VM: a child reaches only its own memory and rings.
    fn fork_child(&self, entry: u64, sp: u64, pid: u32, ppid: u32) -> Result<Option<Self>, RunError> {
        let p = &self.prepared;
        let (guest, _copied) =
            p.guest.fork_copy(entry, sp, pid, ppid).map_err(|e| to_run_error(KvmError::Domain(e)))?;
        let kvm = dup_kvm(&p.kvm)?;
        let prepared = Prepared {
            guest: Arc::new(guest),
            kvm,
            cpuid: p.cpuid.clone(),
            features: p.features,
            eo: p.eo,
            start: std::time::Instant::now(),
        };
        Ok(Some(KvmDomain {
            vcpus: None,
            prepared,
            shared: Arc::new(Shared::default()),
            stats: Mutex::default(),
            mem_size: self.mem_size,
            tree_pid: Some(pid),
            all_cpus: self.all_cpus,
        }))
    }

    const CAN_EXEC: bool = true;
    const SHARED_WINDOW: Option<u64> = Some(crate::layout::SHARED_VA);

    /// A fresh VM for the new image, as `build` makes one, its boot page
    /// naming the process's virtual pid and parent (docs/processes.md).
    fn exec_image(
        image: &ElfFile<'_>,
        spec: &DomainSpec,
        pid: u32,
        ppid: u32,
    ) -> Result<Option<Self>, RunError> {
        let mut domain = Self::build(image, spec)?;
        let phys = &domain.prepared.guest.phys;
        let at = |off: usize| super::layout::BOOT_GPA + off as u64;
        let boot_err = |e| to_run_error(KvmError::Guest(super::GuestError::BootPage(e)));
        phys.write(at(std::mem::offset_of!(cabin_abi::boot::BootInfo, pid)), &pid.to_le_bytes())
            .map_err(boot_err)?;
        phys.write(at(std::mem::offset_of!(cabin_abi::boot::BootInfo, ppid)), &ppid.to_le_bytes())
            .map_err(boot_err)?;
        domain.tree_pid = Some(pid);
        Ok(Some(domain))
    }

    fn memory(&self) -> &GuestMemory {
        &self.prepared.guest.view
    }

    /// The guest memory's resident pages (`mincore`: what the host backs
    /// now, 2 MiB at a time where transparent huge pages do): the tree's
    /// memory bound.
    fn meter(&self) -> Option<Arc<dyn cabin_monitor::treemem::Meter>> {
        Some(Arc::new(GuestMeter(self.prepared.guest.clone())))
    }

    fn ring(&self) -> RingPtr {
        self.prepared.guest.ring
    }

    fn ring_count(&self) -> usize {
        cabin_abi::thread::MAX_THREADS
    }

    /// Starts the accepted thread on vCPU `start.slot` (`EINVAL` unless the
    /// entry is program code and the stack and thread block writable
    /// memory): `rip` the libos's
    /// trampoline, `rsp` the child stack, GS base the slot's libos thread
    /// block, FS base the TLS (`CLONE_SETTLS`; else 0: the libos's
    /// trampoline sets it), `rdi` the libos's argument. The tid words are
    /// written before the thread runs and the answer returns, as Linux does
    /// (a bad address is ignored, as Linux ignores it); `CLONE_CHILD_CLEARTID`
    /// is cleared and woken when the vCPU has left its loop.
    fn spawn_thread(&self, start: &ThreadStart) -> Result<SpawnedBy, RunError> {
        let Some(vcpus) = &self.vcpus else { return Ok(SpawnedBy::Refused { errno: libc::EAGAIN }) };
        let slot = start.slot as usize;
        if slot == 0 || slot >= MAX_THREADS {
            return Ok(SpawnedBy::Refused { errno: libc::EINVAL });
        }
        let tid = self.tid_of(slot);
        let mem = self.memory();
        // The monitor checks the start state itself: the entry must be
        // program code (the libos's trampoline), the stack and the thread
        // block mapped writable memory. Anything else would only start a
        // thread that faults at once; refusing it keeps the answer Linux's.
        let in_code = mem.regions().iter().any(|r| {
            r.kind == cabin_monitor::memory::RegionKind::Code
                && (r.start..r.start + r.len).contains(&start.entry)
        });
        let stack_ok = start.stack.checked_sub(8).is_some_and(|s| mem.host_range(s, 8, true).is_ok());
        let block_ok = mem.host_range(start.gs_base, 8, true).is_ok();
        if !in_code || !stack_ok || !block_ok {
            return Ok(SpawnedBy::Refused { errno: libc::EINVAL });
        }
        if start.flags & CLONE_PARENT_SETTID != 0 {
            let _ = mem.write(start.parent_tid, &tid.to_le_bytes());
        }
        if start.flags & CLONE_CHILD_SETTID != 0 {
            let _ = mem.write(start.child_tid, &tid.to_le_bytes());
        }
        let clear = (start.flags & CLONE_CHILD_CLEARTID != 0).then_some(start.child_tid);
        let vstart = VcpuStart {
            rip: start.entry,
            rsp: start.stack,
            fs_base: if start.flags & CLONE_SETTLS != 0 { start.tls } else { 0 },
            gs_base: start.gs_base,
            rdi: start.arg,
            ..VcpuStart::default()
        };
        let errno = match vcpus.spawn_when_free(slot, vstart, clear, SLOT_FREE_WAIT) {
            Ok(()) => return Ok(SpawnedBy::Domain { tid }),
            Err(SpawnError::NoSuchSlot(_) | SpawnError::Setup { .. }) => libc::EINVAL,
            Err(SpawnError::InUse(_) | SpawnError::Ending) => libc::EAGAIN,
        };
        Ok(SpawnedBy::Refused { errno })
    }

    fn entry(&self) -> u64 {
        self.prepared.guest.entry
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        // Every vCPU thread registers itself when it enters its loop.
        Arc::new(VcpuStopper(self.shared.clone()))
    }

    fn start(&mut self) -> Result<(), RunError> {
        let p = &self.prepared;
        let factory = Box::new(RingGates { guest: p.guest.clone(), shared: self.shared.clone() });
        let vcpus = Vcpus::new(p, self.shared.clone(), factory, None).map_err(to_run_error)?;
        vcpus.set_all_cpus(self.all_cpus);
        let boot = vcpus.with_main(|fd| p.stats(fd)).transpose().map_err(to_run_error)?;
        *self.stats.get_mut().unwrap_or_else(|e| e.into_inner()) = boot.unwrap_or_default();
        self.vcpus = Some(vcpus);
        Ok(())
    }

    fn join_clocks(&self, clocks: &cabin_monitor::watch::ThreadClocks) {
        if let Some(v) = &self.vcpus {
            v.join_clocks(clocks);
        }
    }

    fn program_pid(&self) -> u32 {
        self.tree_pid.unwrap_or_else(std::process::id)
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock::RunThread
    }

    fn run(&self) -> Result<DomainEnd, RunError> {
        let p = &self.prepared;
        let result = match &self.vcpus {
            Some(v) => v.run_main(),
            None => {
                Err(KvmError::Guest(super::GuestError::Stopped { what: "not started".into(), state: None }))
            }
        };
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).wall_ns = p.start.elapsed().as_nanos() as u64;
        let end: DomainEnd = result.map_err(to_run_error)?.into();
        Ok(match (self.tree_pid, end) {
            (Some(_), DomainEnd::Exited(code)) => child_end(code, &p.guest.view),
            (_, end) => end,
        })
    }

    fn fixed_bytes(&self) -> u64 {
        let g = &self.prepared.guest;
        self.mem_size.saturating_sub(g.brk_len.saturating_add(g.arena_len))
    }

    fn trapped_calls(&self) -> Option<u64> {
        Some(self.stats_now().gate_syscalls)
    }

    fn stats(&self, worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)> {
        let s = self.stats_now();
        let kvm = s.json(worker.forwarded, self.mem_size);
        vec![("vm_exits", s.vm_exits.into()), ("kvm", kvm)]
    }
}
