//! `cabinc run --backend kvm`: the KVM domain wired to the monitor's ring
//! worker, syscall service, filesystem policy and statistics — the same
//! ones the process backend uses.
//!
//! Threads: the caller's thread runs the vCPU (and, on the rare exits,
//! the doorbell and the slow-path gate); one worker thread polls the ring
//! and serves every call with [`crate::service::Service`].

use std::mem::offset_of;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cabin_abi::boot::{BootInfo, BOOT_SPIN_NS_SLOT, LOCAL_COUNT_SLOTS};
use serde_json::json;

use super::domain::{DomainError, ProgramSpec};
use super::layout::BOOT_GPA;
use super::ring::{install_kick_handler, RingGate, Shared};
use super::{prepare, run_prepared, KvmConfig, KvmError, KvmOutcome};
use crate::config::{EndReason, RunConfig, RunError, RunOutcome, EXIT_PROTOCOL_VIOLATION};
use crate::gate::{Gate, Stop};
use crate::memory::{Access, GuestMemory as ProgramView, Region as ViewRegion};
use crate::placement::Placement;
use crate::ring::{Worker, WorkerEnd};
use crate::service::fs::FsPolicy;
use crate::service::Service;
use crate::stats::{self, StatsInput};
use crate::watch::{ThreadClocks, TimeLimits};

fn host_err(what: &'static str, msg: String) -> RunError {
    RunError::Host { what, source: std::io::Error::other(msg) }
}

fn to_run_error(e: KvmError) -> RunError {
    match e {
        KvmError::Domain(DomainError::Elf(e)) => RunError::InvalidImage(e.to_string()),
        KvmError::Domain(DomainError::WritableCode(p)) => {
            RunError::InvalidImage(format!("page {p:#x} would be both writable and executable"))
        }
        KvmError::Domain(e) => RunError::Layout(e.to_string()),
        KvmError::NotUsable(m) => host_err("opening /dev/kvm", m),
        KvmError::Vcpu(e) => host_err("setting up the KVM guest", e.to_string()),
        KvmError::Guest(m) => host_err("running the KVM guest", m),
    }
}

/// Runs `image` confined in a KVM guest with `mem_size` bytes of guest
/// memory (`--mem`, rounded up to 2 MiB; 0 = [`super::layout::DEFAULT_MEM`]).
/// Everything not taken by the system area, the image, the stack and the
/// `brk` heap becomes the anonymous-memory arena.
pub fn run(image: &[u8], cfg: &RunConfig, mem_size: u64) -> Result<RunOutcome, RunError> {
    let t0 = Instant::now();
    if let Err(why) = super::usable() {
        return Err(host_err("opening /dev/kvm", why));
    }
    // Execute-only needs protection keys, which this backend does not use
    // yet (see pku.rs): it is never enforced here.
    let xo = false;
    if cfg.require_execute_only && !xo {
        return Err(RunError::ExecuteOnlyUnavailable);
    }
    if !cfg.quiet {
        eprintln!("cabin: execute-only code is not enforced by the KVM backend (no protection keys)");
    }
    let mut policy = FsPolicy::new(&cfg.allow_read, &cfg.allow_write)?;
    policy.set_allow_set_id(cfg.allow_set_id);
    let cwd =
        std::env::current_dir().map(|p| p.into_os_string().into_encoded_bytes()).unwrap_or(b"/".to_vec());
    let pid = std::process::id();
    let mut service = Service::with_stdio(policy, cwd, pid, cfg.stdio.unwrap_or([0, 1, 2]));
    // Policy, limits, trace and audit (cabin_policy::gate): the worker
    // passes every call through it, fast-path and trapped alike.
    let gate = Gate::open(&cfg.gate, "kvm")
        .map_err(|source| RunError::Host { what: "opening the trace or audit file", source })?;
    let limits = gate.limits().clone();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let kcfg = KvmConfig {
        // With [limits] memory the guest is the limit (rounded down to 2 MiB).
        mem_size: super::layout::guest_memory(mem_size, limits.memory),
        program: ProgramSpec {
            args: cfg.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: cfg.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
            pid,
            ppid: pid,
            uid,
            gid,
            force_trap: cfg.force_trap_path,
            read_ahead: cfg.read_ahead(),
            // The libos stops the program at the bound, whatever set it.
            memory_limit: true,
        },
        timeout: None,
    };
    let (d, kvm, cpuid, features, eo, start) = prepare(image, &kcfg).map_err(to_run_error)?;
    // The program's descriptors are the monitor's: size its table so the
    // monitor keeps a reserve (this also raises the soft RLIMIT_NOFILE).
    service.set_fd_capacity(crate::service::fdtable::program_capacity()?);
    // The vCPU thread (this one) and the worker on CPUs of their own; the
    // libos learns how long it may spin.
    let placement = Placement::choose(cfg.cpu_placement);
    let spin_at = BOOT_GPA + (offset_of!(BootInfo, reserved) + 8 * BOOT_SPIN_NS_SLOT) as u64;
    d.mem
        .write_u64(spin_at, crate::placement::spin_ns(placement.as_ref()))
        .map_err(|e| to_run_error(KvmError::Guest(format!("writing the boot page: {e}"))))?;
    // The locally served calls the policy does not plainly allow: the libos
    // has the monitor decide them.
    let check_at = BOOT_GPA + offset_of!(BootInfo, check_local) as u64;
    for (i, w) in gate.check_local().0.iter().enumerate() {
        d.mem
            .write_u64(check_at + 8 * i as u64, *w)
            .map_err(|e| to_run_error(KvmError::Guest(format!("writing the boot page: {e}"))))?;
    }

    let view_regions: Vec<ViewRegion> = d
        .space
        .regions()
        .iter()
        .filter_map(|r| {
            let access = match r.name {
                "image code" | "ring" | "boot page" => Access::Nothing,
                _ if r.write => Access::ReadWrite,
                _ => Access::ReadOnly,
            };
            let host = d.mem.host_ptr(r.gpa, r.len).ok()?;
            Some(ViewRegion { start: r.va, len: r.len, host, access })
        })
        .collect();
    // SAFETY: every region's host range lies inside the Domain's guest
    // memory (checked by host_ptr), which outlives `view` (dropped at the
    // end of this function, before `d`); user regions do not overlap
    // (AddressSpace::add refuses overlaps).
    let view = unsafe { ProgramView::new(view_regions) };

    install_kick_handler();
    let shared = Arc::new(Shared::default());
    shared.register_vcpu_thread();
    let mut worker = Worker::new(d.ring);
    worker.gate = Some(gate);
    worker.set_sites(crate::site_map::SiteMap::for_image(image, d.entry));
    let stop = worker.stop_handle();
    let mut ring_gate = RingGate::new(d.ring, shared.clone());
    // Time limits stop the vCPU the way a dead worker does. CPU time: the
    // vCPU thread's clock (the guest's time included) and the worker's.
    let clocks = ThreadClocks::default();
    let vcpu_clock = clocks.join_this_thread();
    let kick = shared.clone();
    let used = clocks.clone();
    let times = TimeLimits::start(
        &limits,
        t0,
        move || Some(used.used()),
        move || kick.worker_ended(Some("a time limit was reached".into())),
    );

    let (result, joined) = std::thread::scope(|s| {
        let shared_w = shared.clone();
        let view_ref = &view;
        let handle = s.spawn(move || {
            if let Some(p) = &placement {
                p.worker.apply(0);
            }
            let _clock = clocks.join_this_thread();
            // A panic here is a monitor bug; the vCPU would otherwise wait
            // for a completion forever. Stop it, then let the join see it.
            let end = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker.run(view_ref, &mut service)
            })) {
                Ok(end) => end,
                Err(payload) => {
                    shared_w.worker_ended(Some("the ring worker failed".into()));
                    std::panic::resume_unwind(payload)
                }
            };
            match &end {
                WorkerEnd::Violation(msg) => shared_w.worker_ended(Some(msg.clone())),
                WorkerEnd::Policy(stop) => shared_w.worker_ended(Some(stop.message.clone())),
                WorkerEnd::Stopped => {}
            }
            (end, worker, service)
        });
        if let Some(p) = &placement {
            p.program.apply(0);
        }
        let result = run_prepared(&d, &kvm, &cpuid, &features, eo, start, &kcfg, &mut ring_gate);
        if let Some(p) = &placement {
            p.restore();
        }
        shared.vcpu_done.store(true, Ordering::SeqCst);
        stop.stop();
        let joined = handle.join();
        (result, joined)
    });
    let (end, mut worker, mut service) = match joined {
        Ok(v) => v,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            return Err(RunError::Internal(format!("the ring worker panicked ({why})")));
        }
    };
    drop(vcpu_clock);
    let time_hit = times.finish();
    let outcome: KvmOutcome = result.map_err(to_run_error)?;
    let mut gate = worker.gate.take();
    // Why the gate stopped the program (it already said so on stderr).
    let mut stopped: Option<Stop> = match &end {
        WorkerEnd::Policy(stop) => Some(stop.clone()),
        _ => time_hit.and_then(|hit| gate.as_mut().map(|g| g.limit_hit(&hit))),
    };
    // The libos stops a program that asks for memory beyond [limits] memory
    // (ABORT_MEMORY, exit 137): record it as the limit hit it is.
    if stopped.is_none() && outcome.fault.is_none() && !matches!(end, WorkerEnd::Violation(_)) {
        let boot_u64 = |off: usize| d.mem.read_u64(BOOT_GPA + off as u64).unwrap_or(0);
        let reserved: [u64; 8] = std::array::from_fn(|i| boot_u64(offset_of!(BootInfo, reserved) + 8 * i));
        // Untrusted (the boot page is the program's to write): only the message depends on it.
        let grown =
            boot_u64(offset_of!(BootInfo, brk_len)).saturating_add(boot_u64(offset_of!(BootInfo, arena_len)));
        let policy_file = cfg.gate.policy.as_ref().map_or("the policy", |p| p.source.as_str());
        let bound = cabin_policy::limits::MemoryBound::new(mem_size, limits.memory, policy_file);
        let hit = cabin_policy::limits::memory_limit_hit(
            &reserved,
            outcome.status,
            &bound,
            kcfg.mem_size.saturating_sub(grown),
            t0.elapsed().as_nanos() as u64,
        );
        if let Some(hit) = hit {
            stopped = gate.as_mut().map(|g| g.limit_hit(&hit));
        }
    }

    // The libos may notice a corrupted ring before the worker does: it then
    // records ABORT_RING and exits with 137 (as in the process backend).
    let abort_at = BOOT_GPA + offset_of!(BootInfo, reserved) as u64;
    let libos_abort = d.mem.read_u64(abort_at).ok() == Some(cabin_abi::boot::ABORT_RING)
        && outcome.fault.is_none()
        && outcome.status == EXIT_PROTOCOL_VIOLATION;
    let (exit_code, reason) = match (&end, &outcome.fault) {
        _ if stopped.is_some() => {
            let code = stopped.as_ref().map_or(EXIT_PROTOCOL_VIOLATION, |s| s.exit_code);
            (code, EndReason::Signal { signo: code - 128, addr: None, rip: None })
        }
        (WorkerEnd::Violation(msg), _) => {
            (EXIT_PROTOCOL_VIOLATION, EndReason::ProtocolViolation(msg.clone()))
        }
        (_, Some(f)) => {
            let addr = if f.vector == 14 { Some(f.cr2) } else { None };
            (outcome.status, EndReason::Signal { signo: outcome.status - 128, addr, rip: Some(f.rip) })
        }
        _ if libos_abort => {
            let msg = "the libos found the ring corrupted (impossible indices or a mismatched completion)";
            (EXIT_PROTOCOL_VIOLATION, EndReason::ProtocolViolation(msg.into()))
        }
        _ if outcome.status == EXIT_PROTOCOL_VIOLATION && outcome.report.is_some() => {
            let msg = outcome.report.clone().unwrap_or_default();
            (EXIT_PROTOCOL_VIOLATION, EndReason::ProtocolViolation(msg))
        }
        _ => (outcome.status, EndReason::Exited(outcome.status)),
    };
    if stopped.is_some() {
        // The gate already said why it stopped the program.
    } else if let Some(line) = &outcome.report {
        eprintln!("cabin: {line}");
    } else if let EndReason::ProtocolViolation(msg) = &reason {
        eprintln!("cabin: ring protocol violation: {msg}; the program was killed");
    }

    let local = read_local_counts(&d.mem);
    if let Some(g) = gate.as_mut() {
        g.local_counts(local.iter().enumerate().map(|(nr, &c)| (nr as u64, c)));
        let (why, msg) = crate::gate::exit_words(&reason, stopped.as_ref());
        g.finish(exit_code, why, msg);
    }
    service.finish_reports();
    let input = StatsInput {
        backend: "kvm",
        forwarded: service.stats.per_nr.clone(),
        local,
        trapped: outcome.stats.gate_syscalls,
        denied: service.stats.denied,
        wall_ns: u128::from(outcome.stats.wall_ns),
        execute_only_enforced: outcome.execute_only_enforced,
        exit_code,
    };
    let mut json = stats::to_json(&input);
    if let Some(o) = json.as_object_mut() {
        o.insert("vm_exits".into(), json!(outcome.stats.vm_exits));
        o.insert(
            "kvm".into(),
            json!({
                "vm_exits": outcome.stats.vm_exits,
                "gate_syscalls": outcome.stats.gate_syscalls,
                "doorbell_exits": outcome.stats.doorbell_exits,
                "gate_redirects": ring_gate.redirects,
                "doorbell_waits": ring_gate.doorbell_waits,
                "ring_forwarded": worker.stats.forwarded,
                "boot_ns": outcome.stats.boot_ns,
                "mem_bytes": kcfg.mem_size,
                "pages_4k": outcome.stats.small_pages,
                "pages_2m": outcome.stats.large_pages,
                "smep": outcome.stats.cr4 & super::vcpu::CR4_SMEP != 0,
                "smap": outcome.stats.cr4 & super::vcpu::CR4_SMAP != 0,
            }),
        );
        o.insert("cpus".into(), placement.map_or(serde_json::Value::Null, |p| p.to_json()));
    }
    if let Some(path) = &cfg.stats {
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| RunError::Stats { path: path.clone(), source })?;
    }
    drop(view);
    drop(d);
    Ok(RunOutcome { exit_code, reason, stats: json })
}

/// The libos's per-call counters of locally served calls (untrusted
/// statistics written by the program's side).
fn read_local_counts(mem: &super::memory::GuestMemory) -> Vec<u64> {
    let mut raw = vec![0u8; LOCAL_COUNT_SLOTS * 4];
    let at = BOOT_GPA + offset_of!(BootInfo, local_counts) as u64;
    if mem.read(at, &mut raw).is_err() {
        return Vec::new();
    }
    raw.chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
}
