//! `cabinc run --backend kvm`: [`KvmDomain`], the KVM guest as a
//! [`Domain`] of the monitor's session, which brings the ring worker, the
//! syscall service, the policy gate and the records — the same ones the
//! process backend uses.
//!
//! Threads: the session's calling thread runs the vCPU (and, on the rare
//! exits, the doorbell and the slow-path gate, [`RingGate`]); the session's
//! worker thread polls the ring and serves every call.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cabin_abi::ring::RingPtr;
use cabin_image::elf::ElfFile;
use serde_json::json;

use super::domain::{DomainError, ProgramSpec};
use super::ring::{install_kick_handler, RingGate, Shared};
use super::{prepare, run_loop, KvmConfig, KvmError, KvmStats, LoopEnd, Prepared};
use crate::config::{RunConfig, RunError, RunOutcome};
use crate::domain::{CpuClock, Domain, DomainEnd, DomainSpec, ExecuteOnly, StopCause, Stopper};
use crate::memory::GuestMemory;
use crate::placement::CpuSet;
use crate::ring::WorkerStats;

/// Runs `image` confined in a KVM guest (a [`crate::session::Session`] over
/// a [`KvmDomain`]). The guest's memory is the memory bound: `--mem`
/// rounded up to 2 MiB, or `[limits] memory` rounded down (see
/// [`super::layout::guest_memory`]); everything not taken by the system
/// area, the image, the stack and the `brk` heap becomes the arena.
pub fn run(image: &[u8], cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    crate::session::run::<KvmDomain>(image, cfg)
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

/// A KVM guest: ring 0 the proxy-kernel, ring 3 the program and its libos.
#[derive(Debug)]
pub struct KvmDomain {
    /// The vCPU, once started (dropped before the guest's memory).
    machine: RefCell<Option<super::vcpu::Machine>>,
    prepared: Prepared,
    /// The vCPU thread's side of the ring (gate calls, doorbells).
    ring_gate: RefCell<RingGate>,
    /// What the vCPU thread and the threads that stop it share.
    shared: Arc<Shared>,
    stats: RefCell<KvmStats>,
    mem_size: u64,
    program_cpus: Option<CpuSet>,
}

/// Stops the vCPU: records why and kicks the vCPU thread out of `KVM_RUN`
/// until it has left its loop.
#[derive(Debug)]
struct VcpuStopper(Arc<Shared>);

impl Stopper for VcpuStopper {
    fn stop(&self, cause: StopCause) {
        self.0.worker_ended(Some(cause.message()));
    }
}

impl Domain for KvmDomain {
    const BACKEND: &'static str = "kvm";

    fn available() -> Result<(), RunError> {
        super::usable().map_err(|e| RunError::Backend { what: "opening /dev/kvm", source: Box::new(e) })
    }

    fn execute_only(_image: &ElfFile<'_>) -> ExecuteOnly {
        // Execute-only needs protection keys, which this backend does not
        // use yet (see pku.rs): it is never enforced here.
        ExecuteOnly {
            enforced: false,
            notice: "cabin: execute-only code is not enforced by the KVM backend (no protection keys)",
        }
    }

    fn build(image: &ElfFile<'_>, spec: &DomainSpec) -> Result<KvmDomain, RunError> {
        let pid = std::process::id();
        let cfg = KvmConfig {
            // With [limits] memory the guest is the limit (rounded down to 2 MiB).
            mem_size: super::layout::guest_memory(spec.mem_arg, spec.memory_limit),
            program: ProgramSpec {
                args: spec.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                env: spec.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
                pid,
                ppid: pid,
                uid: spec.ids.0,
                gid: spec.ids.1,
                force_trap: spec.force_trap,
                read_ahead: spec.read_ahead,
                // The libos stops the program at the bound, whatever set it.
                memory_limit: true,
            },
            timeout: None,
        };
        let prepared = prepare(image.data, &cfg).map_err(to_run_error)?;
        install_kick_handler();
        let shared = Arc::new(Shared::default());
        let ring_gate = RingGate::new(prepared.guest.ring, shared.clone());
        Ok(KvmDomain {
            machine: RefCell::new(None),
            ring_gate: RefCell::new(ring_gate),
            prepared,
            shared,
            stats: RefCell::default(),
            mem_size: cfg.mem_size,
            program_cpus: spec.program_cpus,
        })
    }

    fn memory(&self) -> &GuestMemory {
        &self.prepared.guest.view
    }

    fn ring(&self) -> RingPtr {
        self.prepared.guest.ring
    }

    fn entry(&self) -> u64 {
        self.prepared.guest.entry
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        // This is the thread that will run the vCPU (the session's promise).
        self.shared.register_vcpu_thread();
        Arc::new(VcpuStopper(self.shared.clone()))
    }

    fn start(&mut self) -> Result<(), RunError> {
        let p = &self.prepared;
        let machine = super::vcpu::create(&p.kvm, &p.cpuid, &p.features, &p.guest)
            .map_err(|e| to_run_error(e.into()))?;
        *self.stats.get_mut() = p.stats(&machine).map_err(to_run_error)?;
        *self.machine.get_mut() = Some(machine);
        Ok(())
    }

    fn program_pid(&self) -> u32 {
        std::process::id()
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock::RunThread
    }

    fn run(&self) -> Result<DomainEnd, RunError> {
        // The vCPU thread (this one) on the program's CPUs for the run.
        let original = self.program_cpus.and_then(|cpus| {
            let before = CpuSet::current();
            cpus.apply(0);
            before
        });
        let p = &self.prepared;
        let result = match self.machine.borrow_mut().as_mut() {
            Some(m) => {
                let mut stats = self.stats.borrow_mut();
                let mut gate = self.ring_gate.borrow_mut();
                run_loop(m, &p.guest, None, &mut *gate, &mut stats, p.start)
            }
            None => {
                Err(KvmError::Guest(super::GuestError::Stopped { what: "not started".into(), state: None }))
            }
        };
        if let Some(cpus) = original {
            cpus.apply(0);
        }
        self.stats.borrow_mut().wall_ns = p.start.elapsed().as_nanos() as u64;
        self.shared.vcpu_done.store(true, Ordering::SeqCst);
        Ok(match result.map_err(to_run_error)? {
            LoopEnd::Exited(code) => DomainEnd::Exited(code),
            LoopEnd::Fault { status, fault, report } => DomainEnd::Fault {
                signo: status - 128,
                addr: (fault.vector == 14).then_some(fault.cr2),
                rip: Some(fault.rip),
                report: Some(report),
            },
            LoopEnd::Violation(msg) => DomainEnd::Violation(msg),
        })
    }

    fn fixed_bytes(&self) -> u64 {
        let g = &self.prepared.guest;
        self.mem_size.saturating_sub(g.brk_len.saturating_add(g.arena_len))
    }

    fn trapped_calls(&self) -> Option<u64> {
        Some(self.stats.borrow().gate_syscalls)
    }

    fn stats(&self, worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)> {
        let s = self.stats.borrow();
        let gate = self.ring_gate.borrow();
        let kvm = json!({
            "vm_exits": s.vm_exits,
            "gate_syscalls": s.gate_syscalls,
            "doorbell_exits": s.doorbell_exits,
            "gate_redirects": gate.redirects,
            "doorbell_waits": gate.doorbell_waits,
            "ring_forwarded": worker.forwarded,
            "boot_ns": s.boot_ns,
            "mem_bytes": self.mem_size,
            "pages_4k": s.small_pages,
            "pages_2m": s.large_pages,
            "smep": s.cr4 & super::vcpu::CR4_SMEP != 0,
            "smap": s.cr4 & super::vcpu::CR4_SMAP != 0,
        });
        vec![("vm_exits", json!(s.vm_exits)), ("kvm", kvm)]
    }
}
