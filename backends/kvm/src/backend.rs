//! `cabinc run --backend kvm`: [`KvmDomain`], the KVM guest as a
//! [`Domain`] of the monitor's session, which brings the ring worker, the
//! syscall service, the policy gate and the records — the same ones the
//! process backend uses.
//!
//! Threads: the session's calling thread runs the vCPU (and, on the rare
//! exits, the doorbell and the slow-path gate, [`RingGate`]); the session's
//! worker thread polls the ring and serves every call.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use cabin_abi::ring::RingPtr;
use cabin_image::elf::ElfFile;

use super::domain::DomainError;
use super::ring::{install_kick_handler, RingGate, Shared};
use super::{prepare, run_loop, KvmConfig, KvmError, KvmStats, Prepared};
use cabin_monitor::config::{RunConfig, RunError, RunOutcome};
use cabin_monitor::domain::{
    CpuClock, Domain, DomainEnd, DomainSpec, ExecuteOnly, SpawnedBy, StopCause, Stopper,
};
use cabin_monitor::memory::GuestMemory;
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

/// A KVM guest: ring 0 the proxy-kernel, ring 3 the program and its libos.
#[derive(Debug)]
pub struct KvmDomain {
    /// The vCPU, once started (dropped before the guest's memory).
    machine: Mutex<Option<super::vcpu::Machine>>,
    prepared: Prepared,
    /// The vCPU thread's side of the ring (gate calls, doorbells).
    ring_gate: Mutex<RingGate>,
    /// What the vCPU thread and the threads that stop it share.
    shared: Arc<Shared>,
    stats: Mutex<KvmStats>,
    mem_size: u64,
}

/// Stops the vCPU: records why and kicks the vCPU thread out of `KVM_RUN`
/// until it has left its loop.
#[derive(Debug)]
struct VcpuStopper(Arc<Shared>);

impl Stopper for VcpuStopper {
    fn stop(&self, cause: StopCause) {
        self.0.worker_ended(Some(cause.message()));
    }

    fn wake_for_signal(&self, _sig: i32) {
        // Out of KVM_RUN: the run loop then sends a vCPU in program code
        // to the libos's signal entry (`signal_redirect`).
        self.0.kick_vcpu();
    }

    fn rewake(&self) {
        self.0.kick_vcpu();
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
        let cfg = KvmConfig::for_spec(spec);
        let prepared = prepare(image.data, &cfg).map_err(to_run_error)?;
        install_kick_handler();
        let shared = Arc::new(Shared::default());
        let ring_gate = RingGate::new(prepared.guest.ring, shared.clone());
        Ok(KvmDomain {
            machine: Mutex::new(None),
            ring_gate: Mutex::new(ring_gate),
            prepared,
            shared,
            stats: Mutex::default(),
            mem_size: cfg.mem_size,
        })
    }

    fn memory(&self) -> &GuestMemory {
        &self.prepared.guest.view
    }

    fn ring(&self) -> RingPtr {
        self.prepared.guest.ring
    }

    fn ring_count(&self) -> usize {
        cabin_abi::thread::MAX_THREADS
    }

    /// Stub until the KVM backend runs threads (branch issue13-kvmthreads):
    /// every thread is refused with `EAGAIN`, as Linux refuses one past a
    /// limit, so `pthread_create` fails cleanly instead of hanging.
    fn spawn_thread(&self, _start: &cabin_abi::thread::ThreadStart) -> Result<SpawnedBy, RunError> {
        Ok(SpawnedBy::Refused { errno: libc::EAGAIN })
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
        *self.stats.get_mut().unwrap_or_else(PoisonError::into_inner) =
            p.stats(&machine).map_err(to_run_error)?;
        *self.machine.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(machine);
        Ok(())
    }

    fn program_pid(&self) -> u32 {
        std::process::id()
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock::RunThread
    }

    fn run(&self) -> Result<DomainEnd, RunError> {
        let p = &self.prepared;
        let result = match self.machine.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(m) => {
                let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
                let mut gate = self.ring_gate.lock().unwrap_or_else(PoisonError::into_inner);
                run_loop(m, &p.guest, None, &mut *gate, &mut stats, p.start)
            }
            None => {
                Err(KvmError::Guest(super::GuestError::Stopped { what: "not started".into(), state: None }))
            }
        };
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).wall_ns =
            p.start.elapsed().as_nanos() as u64;
        self.shared.vcpu_done.store(true, Ordering::SeqCst);
        Ok(result.map_err(to_run_error)?.into())
    }

    fn fixed_bytes(&self) -> u64 {
        let g = &self.prepared.guest;
        self.mem_size.saturating_sub(g.brk_len.saturating_add(g.arena_len))
    }

    fn trapped_calls(&self) -> Option<u64> {
        Some(self.stats.lock().unwrap_or_else(PoisonError::into_inner).gate_syscalls)
    }

    fn stats(&self, worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)> {
        let s = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let kvm = s.json(
            &self.ring_gate.lock().unwrap_or_else(PoisonError::into_inner),
            worker.forwarded,
            self.mem_size,
        );
        vec![("vm_exits", s.vm_exits.into()), ("kvm", kvm)]
    }
}
