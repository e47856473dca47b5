//! The process backend: the program runs in a child process that can make
//! no system call of its own.
//!
//! [`run`]:
//! 1. parses the image and lays out the domain in one memfd ([`loader`]);
//! 2. forks. The child maps each domain range at its address (code
//!    `PROT_EXEC` only), closes every descriptor, resets signal handling,
//!    drops every capability (effective, permitted, inheritable, ambient and
//!    bounding sets), sets `PR_SET_NO_NEW_PRIVS`, then — from a copy of a
//!    small assembly stub in a page of the domain, running on the domain's
//!    stack — unmaps every address outside the domain (all it inherited from
//!    the monitor: code, data, heap, stacks, vDSO), installs the seccomp
//!    filter ([`seccomp`]) and jumps to the libos entry;
//! 3. the parent serves the ring ([`crate::ring::Worker`]) until the child
//!    exits, then reports how it ended and writes the statistics.

pub mod loader;
pub mod seccomp;

use std::ptr::addr_of_mut;
use std::time::Instant;

use cabin_abi::boot::BootInfo;
use cabin_abi::ring::{CQ_DOORBELL_OFFSET, SQ_DOORBELL_OFFSET};
use cabin_abi::syscalls::CallSet;
use cabin_image::elf::ElfFile;

use crate::config::{signal_name, EndReason, RunConfig, RunError, RunOutcome, EXIT_PROTOCOL_VIOLATION};
use crate::layout::{LOADER_ADDR, PAGE, RING_ADDR, STUB_ADDR, USER_TOP_47, USER_TOP_56};
use crate::placement::{CpuSet, Placement};
use crate::policy::gate::{Gate, Stop};
use crate::policy::limits::{memory_limit_hit, process_cpu_time};
use crate::policy::watch::{ThreadClocks, TimeLimits};
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
/// Most seccomp instructions the scratch holds (the kernel's own limit is 4096).
const SCRATCH_FILTER_MAX: usize =
    ((SCRATCH_UNMAP - SCRATCH_FILTER) as usize) / std::mem::size_of::<seccomp::SockFilter>();

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
    let mut policy = FsPolicy::new(&cfg.allow_read, &cfg.allow_write)?;
    policy.set_allow_set_id(cfg.allow_set_id);
    let cwd =
        std::env::current_dir().map(|p| p.into_os_string().into_encoded_bytes()).unwrap_or(b"/".to_vec());
    let mut service = Service::with_stdio(policy, cwd, 0, cfg.stdio.unwrap_or([0, 1, 2]));
    // Policy, limits, trace and audit (crate::policy::gate); opened before the fork.
    let gate = Gate::open(&cfg.gate, "process")
        .map_err(|source| RunError::Host { what: "opening the trace or audit file", source })?;

    let domain = loader::build(&elf, cfg)?;
    // The program's descriptors are the monitor's: size its table so the
    // monitor keeps a reserve (this also raises the soft RLIMIT_NOFILE).
    service.set_fd_capacity(crate::service::fdtable::program_capacity()?);
    let placement = Placement::choose(cfg.cpu_placement);
    loader::set_spin_ns(&domain, crate::placement::spin_ns(placement.as_ref()));
    // The locally served calls the policy does not plainly allow: the libos
    // has the monitor decide them, and the filter traps such clock reads.
    let check_local = gate.check_local();
    loader::set_check_local(&domain, &check_local);
    let plan = prepare_child(&domain, placement.map(|p| p.program), &check_local)?;

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
    // CPU time: the child's clock and the ring worker's (this thread's).
    let clocks = ThreadClocks::default();
    let used = clocks.clone();
    let cpu_used = move || process_cpu_time(pid).map(|program| program + used.used());
    let times = TimeLimits::start(&limits, t0, cpu_used, kill_child);
    let stop = worker.stop_handle();
    let status_word = StatusWord(scratch_status_ptr(&domain));
    let waiter = std::thread::spawn(move || {
        // Whether a failed-looking set-up really failed, decided while the
        // child is a zombie (see `set_up_failed`).
        let set_up = wait_exited(pid) && set_up_failed(pid, &status_word);
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
        (status, set_up)
    });
    // The worker runs on this thread: on its own CPU for the run.
    if let Some(p) = &placement {
        p.worker.apply(0);
    }
    let worker_clock = clocks.join_this_thread();
    let end = worker.run(&mem, &mut service);
    drop(worker_clock);
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
    let (status, set_up_failed) = waiter.join().unwrap_or((0x7f00, false));
    if let Some(hit) = times.finish() {
        if stopped.is_none() {
            stopped = gate.as_mut().map(|g| g.limit_hit(&hit));
        }
    }

    if reason.is_none() && set_up_failed {
        let what = match scratch_status(&domain) {
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
        let hit = memory_limit_hit(
            &reserved,
            libc::WEXITSTATUS(status),
            &domain.memory,
            domain.fixed_bytes(),
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
                "limit_bytes": domain.memory.bytes,
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
    StatusWord(scratch_status_ptr(d)).read()
}

fn scratch_status_ptr(d: &Domain) -> *const u64 {
    d.host(LOADER_ADDR + SCRATCH_STATUS).map_or(std::ptr::null(), |p| p.cast::<u64>().cast_const())
}

/// The loader's status word in the domain's memory (our mapping), for the
/// waiter thread.
#[derive(Debug)]
struct StatusWord(*const u64);

// SAFETY: the word lies in the domain's shared mapping, which outlives the
// waiter thread (joined before the Domain is dropped); it is only read,
// with volatile reads.
unsafe impl Send for StatusWord {}

impl StatusWord {
    fn read(&self) -> u64 {
        if self.0.is_null() {
            return 0;
        }
        // SAFETY: an aligned word of our mapping (see the Send impl).
        unsafe { self.0.read_volatile() }
    }
}

/// Waits until the child `pid` has ended without reaping it, so that
/// `/proc/<pid>` still describes it; false if that cannot be done.
fn wait_exited(pid: libc::pid_t) -> bool {
    loop {
        // SAFETY: zeroed siginfo_t is a valid output buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; writes `info`.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::__WALL,
            )
        };
        if r == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Whether the child (ended, not yet reaped) failed before the program ran.
///
/// The loader's status word says how far set-up got, but it lies in the
/// loader scratch, which the program can write once it runs: it is
/// believed only when the child never installed its seccomp filter, which
/// `enter_domain` does right before jumping to the program, and which no
/// program can remove (`Seccomp:` in `/proc/<pid>/status`). Anything else,
/// including a program that scribbled on the word, is an ordinary end of
/// the program, with its records.
fn set_up_failed(pid: libc::pid_t, word: &StatusWord) -> bool {
    if word.read() == STAGE_ENTERED {
        return false;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    seccomp_mode(&status) == Some(0)
}

/// The `Seccomp:` mode of a `/proc/<pid>/status` text (0 none, 1 strict, 2 filter).
fn seccomp_mode(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// Everything the child needs, computed before `fork` (the child must not
/// allocate).
#[derive(Debug)]
struct ChildPlan {
    /// Empty the capability bounding set too (the monitor has CAP_SETPCAP).
    drop_bounding: bool,
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
fn prepare_child(d: &Domain, cpus: Option<CpuSet>, check_local: &CallSet) -> Result<ChildPlan, RunError> {
    let sq = RING_ADDR + SQ_DOORBELL_OFFSET as u64;
    let cq = RING_ADDR + CQ_DOORBELL_OFFSET as u64;
    let filter = seccomp::filter(sq, cq, check_local).map_err(|e| RunError::Internal(e.to_string()))?;
    if filter.len() > SCRATCH_FILTER_MAX {
        return Err(RunError::Internal(format!("the seccomp filter has {} instructions", filter.len())));
    }
    let scratch =
        |off: u64| d.host(LOADER_ADDR + off).ok_or_else(|| RunError::Layout("loader scratch".into()));
    // SAFETY: all writes below land in the loader scratch range of our
    // mapping (the filter fits between SCRATCH_FILTER and SCRATCH_UNMAP,
    // checked above; the unmap list is capped).
    unsafe {
        let f = scratch(SCRATCH_FILTER)?.cast::<seccomp::SockFilter>();
        for (i, ins) in filter.iter().enumerate() {
            f.add(i).write(ins.clone());
        }
        let fprog = scratch(SCRATCH_FPROG)?;
        fprog.cast::<u16>().write(filter.len() as u16);
        fprog.add(8).cast::<u64>().write(LOADER_ADDR + SCRATCH_FILTER);
        scratch(SCRATCH_STATUS)?.cast::<u64>().write(0);
    }
    // The entry stub runs from a copy in the domain's stub page, so that
    // no page of the monitor itself stays mapped in the child.
    let stub_start = enter_domain as *const u8;
    let stub_end = &raw const cabin_enter_domain_end;
    let stub_len = (stub_end as usize).wrapping_sub(stub_start as usize);
    if stub_len == 0 || stub_len as u64 > PAGE {
        return Err(RunError::Layout(format!("the entry stub is {stub_len} bytes, not within one page")));
    }
    let stub = d.host(STUB_ADDR).ok_or_else(|| RunError::Layout("entry stub page".into()))?;
    // SAFETY: copies the stub's code bytes (readable text of this binary,
    // `stub_len` bytes from the function's start to its end label) into the
    // stub page of our mapping, one page long (checked above).
    unsafe { std::ptr::copy_nonoverlapping(stub_start, stub, stub_len) };
    let list = unmap_list(&d.ranges);
    if list.len() > SCRATCH_UNMAP_MAX {
        return Err(RunError::Layout(format!("the domain has too many ranges ({})", list.len())));
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
        drop_bounding: has_cap_setpcap(),
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

/// The `[start, end)` ranges the child unmaps: every user address outside
/// the domain's `ranges` (the stub page among them), whatever the monitor
/// had there at fork time — its code, data, heap, thread stacks, libraries,
/// vDSO, and mappings other threads made after this list was computed.
/// Holes are unmapped whole (`munmap` skips what is not mapped). The last
/// one runs from the 4-level-paging user top to the 5-level one: on a
/// 4-level kernel its `munmap` fails (EINVAL) and changes nothing, the hole
/// before it having done the work. Only `[vsyscall]` (a kernel address)
/// remains.
fn unmap_list(ranges: &[loader::MapRange]) -> Vec<(u64, u64)> {
    let mut taken: Vec<(u64, u64)> = ranges.iter().map(|r| (r.guest, r.guest + r.len)).collect();
    taken.sort_unstable();
    let mut holes = Vec::new();
    let mut at = 0u64;
    for (s, e) in taken {
        if s > at {
            holes.push((at, s));
        }
        at = at.max(e);
    }
    if at < USER_TOP_47 {
        holes.push((at, USER_TOP_47));
    }
    holes.push((USER_TOP_47.max(at), USER_TOP_56));
    holes
}

/// Whether this process has CAP_SETPCAP in its effective set, which it
/// needs to empty a child's capability bounding set.
fn has_cap_setpcap() -> bool {
    const CAP_SETPCAP: u32 = 8;
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills the two-element data array of the v3 ABI and may
    // rewrite the header's version; both are locals.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    r == 0 && data[0].effective & (1 << CAP_SETPCAP) != 0
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
#[derive(Debug)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct` (two of them in the v3 ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops every capability of the calling (child) process: ambient set,
/// bounding set (when `bounding`: the monitor has CAP_SETPCAP; without it
/// the set cannot shrink, and with no_new_privs and no `execve` it can
/// grant nothing), then effective, permitted and inheritable. `false` when
/// a drop the process is entitled to make fails.
///
/// Async-signal-safe: system calls on locals only.
fn drop_capabilities(bounding: bool) -> bool {
    // SAFETY: prctl and capset take integers and pointers to locals; they
    // only shrink this process's capability sets.
    unsafe {
        // Fails with EINVAL before Linux 4.3, which had no ambient set.
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
        if bounding {
            // Capabilities past the kernel's last one answer EINVAL.
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                    if *libc::__errno_location() == libc::EINVAL && cap > 0 {
                        break;
                    }
                    return false;
                }
            }
        }
        let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let data = [CapData::default(); 2];
        libc::syscall(libc::SYS_capset, &header, data.as_ptr()) == 0
    }
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
        // The child runs as the monitor's user (see monitor/DESIGN.md) but
        // holds no capability, and can gain none.
        if !drop_capabilities(plan.drop_bounding) {
            child_fail(plan, STAGE_PRIVS);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            child_fail(plan, STAGE_PRIVS);
        }
        // The copy of `enter_domain` in the stub page: it unmaps the monitor
        // (this code included) and never returns. The transmute and the call
        // are sound: STUB_ADDR is mapped executable in this child (a domain
        // range) and holds exactly that position-independent code
        // (`prepare_child`), called with the arguments it documents.
        let stub: unsafe extern "C" fn(u64, u64, u64, u64, u64, u64) -> ! =
            std::mem::transmute(STUB_ADDR as usize as *const ());
        stub(
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
    /// The end of [`enter_domain`]'s code (a label in its assembly).
    static cabin_enter_domain_end: u8;
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

/// Final step of the child, on the domain's stack: unmap every range
/// listed at `list` (`count` pairs of address, length: everything outside
/// the domain), install the seccomp filter at `fprog`, mark `status`
/// entered, clear the registers and jump to `entry` with `rsp = sp`. On a
/// seccomp failure it writes `STAGE_SECCOMP` to `status` and exits 125.
///
/// The child runs a copy of these bytes (up to `cabin_enter_domain_end`)
/// in the domain's stub page ([`STUB_ADDR`]): position-independent code
/// that touches no memory but its arguments.
///
/// # Safety
///
/// Only `child_main` calls (its copy of) this, in the forked child, with
/// all domain ranges mapped; every address is a domain address.
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
        // Where the bytes the child copies end.
        ".globl cabin_enter_domain_end",
        ".hidden cabin_enter_domain_end",
        "cabin_enter_domain_end:",
        munmap = const libc::SYS_munmap,
        seccomp = const libc::SYS_seccomp,
        exit_group = const libc::SYS_exit_group,
        entered = const STAGE_ENTERED,
        stage_seccomp = const STAGE_SECCOMP,
        failed = const CHILD_SETUP_FAILED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Access;

    fn range(guest: u64, len: u64) -> loader::MapRange {
        loader::MapRange { guest, len, prot: 0, offset: 0, access: Access::Nothing }
    }

    #[test]
    fn the_seccomp_filter_fits_the_scratch() {
        let (sq, cq) = (RING_ADDR + SQ_DOORBELL_OFFSET as u64, RING_ADDR + CQ_DOORBELL_OFFSET as u64);
        // No clock read checked: the longest filter.
        let f = seccomp::filter(sq, cq, &CallSet::EMPTY).expect("the filter builds");
        assert!(f.len() <= SCRATCH_FILTER_MAX, "{} instructions", f.len());
    }

    #[test]
    fn the_child_unmaps_everything_outside_the_domain() {
        let ranges = [range(0x40_1000, 0x1000), range(0x40_0000, 0x1000), range(0x2000_0000_0000, 0x5000)];
        let holes = unmap_list(&ranges);
        assert_eq!(
            holes,
            [
                (0, 0x40_0000),
                (0x40_2000, 0x2000_0000_0000),
                (0x2000_0000_5000, USER_TOP_47),
                (USER_TOP_47, USER_TOP_56)
            ]
        );
        // Holes and ranges tile the 47-bit user space without overlap.
        let mut all: Vec<(u64, u64)> = holes.iter().copied().filter(|h| h.1 <= USER_TOP_47).collect();
        all.extend(ranges.iter().map(|r| (r.guest, r.guest + r.len)));
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[0].1 == w[1].0) && all[0].0 == 0, "{all:x?}");
    }

    #[test]
    fn the_entry_stub_fits_its_page() {
        let start = enter_domain as *const u8 as usize;
        let len = (&raw const cabin_enter_domain_end as usize).wrapping_sub(start);
        assert!(len > 0 && len < 256, "the stub is {len} bytes");
    }

    #[test]
    fn seccomp_mode_from_proc_status() {
        let zombie = "Name:\tx\nState:\tZ (zombie)\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(seccomp_mode(zombie), Some(2));
        assert_eq!(seccomp_mode("Seccomp:\t0\n"), Some(0));
        assert_eq!(seccomp_mode(""), None, "unreadable: never a set-up failure");
    }

    #[test]
    fn our_own_status_has_a_seccomp_line() {
        // The field set_up_failed depends on exists on this kernel.
        let own = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        assert!(seccomp_mode(&own).is_some(), "{own}");
    }
}
