//! The process backend: the program runs in a child process that can make
//! no system call of its own.
//!
//! [`run`]:
//! 1. parses the image and lays out the domain in one memfd ([`loader`]);
//! 2. forks. The child maps each domain range at its address (code
//!    `PROT_EXEC` only), closes every descriptor, resets signal handling,
//!    sets `PR_SET_NO_NEW_PRIVS`, then — from a small assembly stub running
//!    on the domain's stack — unmaps everything it inherited from the
//!    monitor (except the page of monitor code that holds the stub), installs
//!    the seccomp filter ([`seccomp`]) and jumps to the libos entry;
//! 3. the parent serves the ring ([`crate::ring::Worker`]) until the child
//!    exits, then reports how it ended and writes the statistics.

pub mod loader;
pub mod seccomp;

use std::ptr::addr_of_mut;
use std::time::Instant;

use cabin_abi::boot::BootInfo;
use cabin_abi::ring::{CQ_DOORBELL_OFFSET, SQ_DOORBELL_OFFSET};
use cabin_image::elf::ElfFile;

use crate::config::{signal_name, EndReason, RunConfig, RunError, RunOutcome, EXIT_PROTOCOL_VIOLATION};
use crate::layout::{LOADER_ADDR, PAGE, RING_ADDR};
use crate::placement::{CpuSet, Placement};
use crate::policy::gate::{Gate, Stop};
use crate::policy::limits::{memory_limit_hit, process_cpu_time};
use crate::policy::watch::TimeLimits;
use crate::ring::{Worker, WorkerEnd};
use crate::service::fs::FsPolicy;
use crate::service::Service;
use crate::stats::{self, StatsInput};
use loader::Domain;

/// Loader scratch layout (offsets from [`LOADER_ADDR`]).
const SCRATCH_STATUS: u64 = 0;
const SCRATCH_FPROG: u64 = 64;
const SCRATCH_FILTER: u64 = 128;
const SCRATCH_UNMAP: u64 = 4 * PAGE;
const SCRATCH_UNMAP_MAX: usize = ((crate::layout::LOADER_SIZE - SCRATCH_UNMAP) / 16) as usize;

/// Child set-up stages, written to the scratch status word.
const STAGE_MAP: u64 = 1;
const STAGE_PRIVS: u64 = 2;
const STAGE_SECCOMP: u64 = 3;
const STAGE_ENTERED: u64 = 100;

/// Exit status of a child that failed before the program ran.
const CHILD_SETUP_FAILED: i32 = 125;

/// Runs `image` confined in a child process. Blocks until it ends.
pub fn run(image: &[u8], cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    let t0 = Instant::now();
    let elf = ElfFile::parse(image).map_err(|e| RunError::InvalidImage(e.to_string()))?;
    if !cabin_image::image::has_cabin_note(&elf) {
        return Err(RunError::InvalidImage(
            "not a Cabin image (no CABIN manifest note); help: build one with `cabinc build`".into(),
        ));
    }
    // Execute-only needs the hardware (protection keys) and an image whose
    // code segments are execute-only (not built with --allow-readable-code).
    let image_xo = elf.exec_segments().all(|s| s.flags & cabin_image::elf::PF_R == 0);
    let xo = crate::execute_only_enforced() && image_xo;
    if cfg.require_execute_only && !xo {
        return Err(RunError::ExecuteOnlyUnavailable);
    }
    if !cfg.quiet {
        if xo {
            eprintln!("cabin: execute-only code is enforced (protection keys)");
        } else if !image_xo {
            eprintln!("cabin: execute-only code is off: the image was built with readable code");
        } else {
            eprintln!("cabin: execute-only code is not enforced on this machine (no protection keys)");
        }
    }
    let policy = FsPolicy::new(&cfg.allow_read, &cfg.allow_write)?;
    let cwd =
        std::env::current_dir().map(|p| p.into_os_string().into_encoded_bytes()).unwrap_or(b"/".to_vec());
    let mut service = Service::with_stdio(policy, cwd, 0, cfg.stdio.unwrap_or([0, 1, 2]));
    // Policy, limits, trace and audit (crate::policy::gate); opened before the fork.
    let gate = Gate::open(&cfg.gate, "process")
        .map_err(|source| RunError::Host { what: "opening the trace or audit file", source })?;

    let domain = loader::build(&elf, cfg)?;
    let placement = Placement::choose(cfg.cpu_placement);
    loader::set_spin_ns(&domain, crate::placement::spin_ns(placement.as_ref()));
    let plan = prepare_child(&domain, placement.map(|p| p.program))?;

    // SAFETY: fork has no memory-safety preconditions; the child only runs
    // `child_main`, which uses async-signal-safe calls and no allocation.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunError::host("fork"));
    }
    if pid == 0 {
        child_main(&plan);
    }
    service.set_pid(pid as u32);

    let mem = domain.guest_memory();
    let mut worker = Worker::new(domain.ring());
    worker.set_sites(crate::site_map::SiteMap::for_image(image, domain.entry));
    let limits = gate.limits().clone();
    worker.gate = Some(gate);
    let kill_child = move || {
        // SAFETY: kills our own child (the program) when a time limit runs out.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    };
    let times = TimeLimits::start(&limits, t0, move || process_cpu_time(pid), kill_child);
    let stop = worker.stop_handle();
    let waiter = std::thread::spawn(move || {
        let mut status = 0i32;
        loop {
            // SAFETY: waits for our own child; writes `status`.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
            if r == pid {
                break;
            }
            if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                status = 0x7f00; // treat as an unknown failure
                break;
            }
        }
        stop.stop();
        status
    });
    // The worker runs on this thread: on its own CPU for the run.
    if let Some(p) = &placement {
        p.worker.apply(0);
    }
    let end = worker.run(&mem, &mut service);
    if let Some(p) = &placement {
        p.restore();
    }
    let mut gate = worker.gate.take();
    let mut stopped: Option<Stop> = None;
    if let WorkerEnd::Policy(stop) = &end {
        // SAFETY: kills our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        stopped = Some(stop.clone());
    }
    let mut reason = None;
    if let WorkerEnd::Violation(msg) = &end {
        // SAFETY: kills our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        eprintln!("cabin: ring protocol violation: {msg}; the program was killed");
        reason = Some(EndReason::ProtocolViolation(msg.clone()));
    }
    let status = waiter.join().unwrap_or(0x7f00);
    if let Some(hit) = times.finish() {
        if stopped.is_none() {
            stopped = gate.as_mut().map(|g| g.limit_hit(&hit));
        }
    }

    let stage = scratch_status(&domain);
    if reason.is_none() && stage != STAGE_ENTERED {
        let what = match stage {
            STAGE_MAP => "mapping the domain memory",
            STAGE_PRIVS => "dropping privileges",
            STAGE_SECCOMP => "installing the seccomp filter",
            _ => "before mapping",
        };
        return Err(RunError::ChildSetup(format!("{what}; wait status {status:#x}")));
    }

    let boot = domain.boot();
    // SAFETY: the boot page is in our mapping; plain reads of words the
    // (now dead) child may have written: treated as untrusted statistics.
    let (fault_signo, fault_addr, fault_rip, trapped_local, local) = unsafe {
        (
            addr_of_mut!((*boot).fault_signo).read_volatile(),
            addr_of_mut!((*boot).fault_addr).read_volatile(),
            addr_of_mut!((*boot).fault_rip).read_volatile(),
            addr_of_mut!((*boot).trapped).read_volatile(),
            addr_of_mut!((*boot).local_counts).read_volatile(),
        )
    };
    // SAFETY: as above.
    let reserved = unsafe { addr_of_mut!((*boot).reserved).read_volatile() };
    let abort = reserved[0];
    // The libos stops a program that asks for memory beyond `[limits]
    // memory` (ABORT_MEMORY, exit 137): record it as the limit hit it is.
    if stopped.is_none() && reason.is_none() && libc::WIFEXITED(status) {
        let policy_file = cfg.gate.policy.as_ref().map_or("the policy", |p| p.source.as_str());
        let hit = memory_limit_hit(
            &reserved,
            libc::WEXITSTATUS(status),
            domain.memory_limit,
            domain.fixed_bytes(),
            policy_file,
            t0.elapsed().as_nanos() as u64,
        );
        if let Some(hit) = hit {
            stopped = match gate.as_mut() {
                Some(g) => Some(g.limit_hit(&hit)),
                None => {
                    let message = crate::policy::limits::message(&hit);
                    eprintln!("{message}");
                    let code = crate::policy::gate::LIMIT_EXIT_CODE;
                    Some(Stop { exit_code: code, reason: "limit", message })
                }
            };
        }
    }
    let reason = reason.or_else(|| {
        let exited_137 = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_PROTOCOL_VIOLATION;
        (abort == cabin_abi::boot::ABORT_RING && exited_137).then(|| {
            let msg = "the libos found the ring corrupted (impossible indices or a mismatched completion)";
            eprintln!("cabin: ring protocol violation: {msg}; the program was stopped");
            EndReason::ProtocolViolation(msg.into())
        })
    });
    let (exit_code, reason) = match (reason, &stopped) {
        (_, Some(s)) => (s.exit_code, EndReason::Signal { signo: s.exit_code - 128, addr: None, rip: None }),
        (Some(r), None) => (EXIT_PROTOCOL_VIOLATION, r),
        (None, None) => classify(status, fault_signo, fault_addr, fault_rip),
    };
    match &reason {
        // The gate already said why it stopped the program.
        _ if stopped.is_some() => {}
        // Shells say nothing about SIGPIPE; neither do we.
        EndReason::Signal { signo: libc::SIGPIPE, .. } => {}
        EndReason::Signal { signo, addr, rip } => {
            let mut line = format!("cabin: program terminated by {}", signal_name(*signo));
            if let (Some(a), Some(r)) = (addr, rip) {
                line += &format!(" (fault address {a:#x}, rip {r:#x})");
            }
            eprintln!("{line}");
        }
        EndReason::Exited(_) | EndReason::ProtocolViolation(_) => {}
    }

    if let Some(g) = gate.as_mut() {
        g.local_counts(local.iter().enumerate().map(|(nr, &c)| (nr as u64, u64::from(c))));
        let (why, msg) = reason.record_words(stopped.as_ref());
        g.finish(exit_code, why, msg);
    }
    service.finish_reports();
    let input = StatsInput {
        backend: "process",
        forwarded: service.stats.per_nr.clone(),
        local: local.iter().map(|&c| u64::from(c)).collect(),
        // The libos counts every trapped call (served locally or not); the
        // worker counts the forwarded ones. The libos figure is untrusted,
        // but it is only a statistic.
        trapped: worker.stats.trapped.max(trapped_local),
        denied: service.stats.denied,
        wall_ns: t0.elapsed().as_nanos(),
        execute_only_enforced: xo,
        exit_code,
    };
    let mut json = stats::to_json(&input);
    if let Some(o) = json.as_object_mut() {
        // The host side of the domain's memory: the memfd's size and what
        // the host actually committed to it (checked against the limit).
        o.insert(
            "memory".into(),
            serde_json::json!({
                "limit_bytes": domain.memory_limit,
                "domain_bytes": domain.total,
                "committed_bytes": domain.committed_bytes(),
                "brk_bytes": domain.brk_len,
                "arena_bytes": domain.arena_len,
            }),
        );
        o.insert("cpus".into(), placement.map_or(serde_json::Value::Null, |p| p.to_json()));
    }
    if let Some(path) = &cfg.stats {
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| RunError::Stats { path: path.clone(), source })?;
    }
    drop(mem);
    drop(domain);
    Ok(RunOutcome { exit_code, reason, stats: json })
}

fn classify(status: i32, fault_signo: u64, addr: u64, rip: u64) -> (i32, EndReason) {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        // The libos ends a faulting program with 128 + signal after
        // recording the fault.
        if fault_signo > 0 && fault_signo < 65 && code == 128 + fault_signo as i32 {
            let known = addr != 0 || rip != 0;
            let reason = EndReason::Signal {
                signo: fault_signo as i32,
                addr: known.then_some(addr),
                rip: known.then_some(rip),
            };
            return (code, reason);
        }
        return (code, EndReason::Exited(code));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        return (128 + sig, EndReason::Signal { signo: sig, addr: None, rip: None });
    }
    (125, EndReason::Exited(125))
}

fn scratch_status(d: &Domain) -> u64 {
    match d.host(LOADER_ADDR + SCRATCH_STATUS) {
        // SAFETY: an aligned word of our mapping.
        Some(p) => unsafe { p.cast::<u64>().read_volatile() },
        None => 0,
    }
}

/// Everything the child needs, computed before `fork` (the child must not
/// allocate).
#[derive(Debug)]
struct ChildPlan {
    memfd: i32,
    parent: i32,
    ranges: Vec<loader::MapRange>,
    /// Host pointer (valid in the child too: inherited mapping) of the
    /// scratch status word, for reporting failures before the stub runs.
    status_host: *mut u64,
    boot_pid_guest: u64,
    unmap_count: u64,
    entry: u64,
    sp: u64,
    /// The program's CPUs (`None`: left to the scheduler).
    cpus: Option<CpuSet>,
}

/// Writes the seccomp program and the unmap list into the loader scratch
/// and returns the child's plan.
fn prepare_child(d: &Domain, cpus: Option<CpuSet>) -> Result<ChildPlan, RunError> {
    let sq = RING_ADDR + SQ_DOORBELL_OFFSET as u64;
    let cq = RING_ADDR + CQ_DOORBELL_OFFSET as u64;
    let filter = seccomp::filter(sq, cq);
    let scratch =
        |off: u64| d.host(LOADER_ADDR + off).ok_or_else(|| RunError::Layout("loader scratch".into()));
    // SAFETY: all writes below land in the loader scratch range of our
    // mapping (offsets checked against LOADER_SIZE by construction: the
    // filter is < 100 instructions, the unmap list is capped).
    unsafe {
        let f = scratch(SCRATCH_FILTER)?.cast::<seccomp::SockFilter>();
        for (i, ins) in filter.iter().enumerate() {
            f.add(i).write(*ins);
        }
        let fprog = scratch(SCRATCH_FPROG)?;
        fprog.cast::<u16>().write(filter.len() as u16);
        fprog.add(8).cast::<u64>().write(LOADER_ADDR + SCRATCH_FILTER);
        scratch(SCRATCH_STATUS)?.cast::<u64>().write(0);
    }
    let keep = enter_domain as *const () as u64;
    let list = inherited_mappings(keep)?;
    if list.len() > SCRATCH_UNMAP_MAX {
        return Err(RunError::Layout(format!("monitor has too many mappings ({})", list.len())));
    }
    let ul = scratch(SCRATCH_UNMAP)?.cast::<u64>();
    for (i, (s, e)) in list.iter().enumerate() {
        // SAFETY: i < SCRATCH_UNMAP_MAX pairs fit in the scratch range.
        unsafe {
            ul.add(2 * i).write(*s);
            ul.add(2 * i + 1).write(e - s);
        }
    }
    let boot_pid_guest = crate::layout::BOOT_ADDR + std::mem::offset_of!(BootInfo, pid) as u64;
    Ok(ChildPlan {
        memfd: std::os::fd::AsRawFd::as_raw_fd(&d.memfd),
        // SAFETY: no preconditions.
        parent: unsafe { libc::getpid() },
        ranges: d.ranges.clone(),
        status_host: scratch(SCRATCH_STATUS)?.cast(),
        boot_pid_guest,
        unmap_count: list.len() as u64,
        entry: d.entry,
        sp: d.sp,
        cpus,
    })
}

/// The monitor's current mappings, except the one holding `keep` and
/// `[vsyscall]` (which cannot be unmapped): what the child must drop.
fn inherited_mappings(keep: u64) -> Result<Vec<(u64, u64)>, RunError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|source| RunError::Host { what: "reading /proc/self/maps", source })?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((s, e)) = range.split_once('-') else { continue };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else { continue };
        if line.ends_with("[vsyscall]") || (keep >= s && keep < e) {
            continue;
        }
        out.push((s, e));
    }
    Ok(out)
}

fn child_fail(plan: &ChildPlan, stage: u64) -> ! {
    // SAFETY: status_host is a word of the inherited shared mapping; _exit
    // has no preconditions.
    unsafe {
        plan.status_host.write_volatile(stage);
        libc::_exit(CHILD_SETUP_FAILED)
    }
}

/// The child, between `fork` and the program: async-signal-safe calls only.
fn child_main(plan: &ChildPlan) -> ! {
    // SAFETY: each call below is a plain system call wrapper; arguments are
    // values computed before fork. Mappings use MAP_FIXED_NOREPLACE, so they
    // can never replace anything the child still uses.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != plan.parent {
            libc::_exit(CHILD_SETUP_FAILED);
        }
        if let Some(cpus) = &plan.cpus {
            cpus.apply(0);
        }
        for r in &plan.ranges {
            let p = libc::mmap(
                r.guest as *mut libc::c_void,
                r.len as usize,
                r.prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                plan.memfd,
                r.offset as i64,
            );
            if p as u64 != r.guest {
                child_fail(plan, STAGE_MAP);
            }
        }
        (plan.boot_pid_guest as *mut u32).write_volatile(libc::getpid() as u32);
        // Signal handling back to defaults, nothing blocked.
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        // The C library registered an rseq area in this thread's TLS, which
        // is about to be unmapped: the kernel would then fault the process
        // on its next preemption. Unregister it.
        unregister_rseq();
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            child_fail(plan, STAGE_PRIVS);
        }
        enter_domain(
            LOADER_ADDR + SCRATCH_UNMAP,
            plan.unmap_count,
            LOADER_ADDR + SCRATCH_FPROG,
            plan.entry,
            plan.sp,
            LOADER_ADDR + SCRATCH_STATUS,
        )
    }
}

unsafe extern "C" {
    /// glibc (2.35+): offset of the rseq area from the thread pointer.
    static __rseq_offset: isize;
    /// glibc (2.35+): size of the registered rseq area (0: not registered).
    static __rseq_size: u32;
}

/// Unregisters the calling thread's rseq area, if the C library set one up.
fn unregister_rseq() {
    const RSEQ_SIG: u32 = 0x5305_3053;
    const RSEQ_FLAG_UNREGISTER: i32 = 1;
    // SAFETY: reads two glibc constants and the thread pointer (fs:0 holds
    // the TCB's own address on x86-64); rseq(UNREGISTER) only compares the
    // arguments with the registration and touches no memory.
    unsafe {
        if __rseq_size == 0 {
            return;
        }
        let tp: u64;
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        let area = tp.wrapping_add_signed(__rseq_offset as i64);
        for len in [__rseq_size, 32] {
            if libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0 {
                return;
            }
        }
    }
}

/// Final step of the child, on the domain's stack: unmap every inherited
/// range listed at `list` (`count` pairs of address, length), install the
/// seccomp filter at `fprog`, mark `status` entered, clear the registers
/// and jump to `entry` with `rsp = sp`. On a seccomp failure it writes
/// `STAGE_SECCOMP` to `status` and exits 125.
///
/// # Safety
///
/// Only `child_main` calls this, in the forked child, with all domain
/// ranges mapped; every address is a domain address.
#[unsafe(naked)]
unsafe extern "C" fn enter_domain(list: u64, count: u64, fprog: u64, entry: u64, sp: u64, status: u64) -> ! {
    core::arch::naked_asm!(
        "mov rsp, r8",
        "mov r12, rdi",
        "mov r13, rsi",
        "mov r14, rdx",
        "mov r15, rcx",
        "mov rbx, r9",
        "2:",
        "test r13, r13",
        "jz 3f",
        "mov rdi, [r12]",
        "mov rsi, [r12 + 8]",
        "mov eax, {munmap}",
        "syscall",
        "add r12, 16",
        "dec r13",
        "jmp 2b",
        "3:",
        "mov eax, {seccomp}",
        "mov edi, 1", // SECCOMP_SET_MODE_FILTER
        "xor esi, esi",
        "mov rdx, r14",
        "syscall",
        "test rax, rax",
        "jnz 4f",
        "mov qword ptr [rbx], {entered}",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor edi, edi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "jmp r15",
        "4:",
        "mov qword ptr [rbx], {stage_seccomp}",
        "mov edi, {failed}",
        "mov eax, {exit_group}",
        "syscall",
        "ud2",
        munmap = const libc::SYS_munmap,
        seccomp = const libc::SYS_seccomp,
        exit_group = const libc::SYS_exit_group,
        entered = const STAGE_ENTERED,
        stage_seccomp = const STAGE_SECCOMP,
        failed = const CHILD_SETUP_FAILED,
    )
}
