//! The process backend: the program runs in a child process that can make
//! no system call of its own. [`ProcessDomain`] is its
//! [`Domain`](cabin_monitor::domain::Domain); the monitor's session does the
//! rest (policy gate, ring worker, service, limits, records).
//!
//! Who calls it: `cabinc run --backend process` ([`run`]) and the monitor's
//! tests. What it must never do: leave anything of the monitor mapped or
//! callable in the child, or trust what the child leaves in its memory.
//!
//! 1. [`loader`] lays out the domain in one memfd (build);
//! 2. start forks. The child maps each domain range at its address (code
//!    `PROT_EXEC` only), closes every descriptor, resets signal handling,
//!    drops every capability (effective, permitted, inheritable, ambient and
//!    bounding sets), sets `PR_SET_NO_NEW_PRIVS`, then — from a copy of a
//!    small assembly stub in a page of the domain, running on the domain's
//!    stack — unmaps every address outside the domain (all it inherited from
//!    the monitor: code, data, heap, stacks, vDSO), installs the seccomp
//!    filter ([`seccomp`]) and jumps to the libos entry;
//! 3. run waits for the child and says how it ended (the libos's fault
//!    record in the boot page, or the wait status); stopping it is `SIGKILL`.

pub mod layout;
pub mod loader;
pub mod seccomp;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use cabin_abi::boot::{BootInfo, EndWords};
use cabin_abi::ring::{RingPtr, CQ_DOORBELL_OFFSET, SQ_DOORBELL_OFFSET};
use cabin_abi::syscalls::CallSet;
use cabin_image::elf::ElfFile;

use crate::layout::{LOADER_ADDR, PAGE, RING_ADDR, STUB_ADDR, USER_TOP_47, USER_TOP_56};
use cabin_monitor::boot::BootPage;
use cabin_monitor::config::{signal_name, RunConfig, RunError, RunOutcome};
use cabin_monitor::domain::{
    CpuClock, Domain, DomainEnd, DomainSpec, ExecuteOnly, SpawnedBy, StopCause, Stopper,
};
use cabin_monitor::memory::{FileWindow, GuestMemory};
use cabin_monitor::placement::CpuSet;
use cabin_monitor::ring::WorkerStats;
use cabin_monitor::shm::SharedWindow;
use loader::DomainMemory;

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

/// Runs `image` confined in a child process (a [`cabin_monitor::session::Session`]
/// over a [`ProcessDomain`]). Blocks until it ends.
pub fn run(image: &[u8], cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    cabin_monitor::session::run::<ProcessDomain>(image, cfg)
}

/// A domain that is a child process under seccomp, its memory one memfd.
#[derive(Debug)]
pub struct ProcessDomain {
    /// The service's view of `memory` (dropped first).
    view: GuestMemory,
    memory: DomainMemory,
    check_local: CallSet,
    program_cpus: Option<CpuSet>,
    /// Every CPU of the run, for a program with threads.
    all_cpus: Option<CpuSet>,
    /// The program was moved to `all_cpus` (at its first thread).
    widened: AtomicBool,
    child: Arc<Child>,
    /// A child process of the tree (docs/processes.md): its virtual pid,
    /// which its boot page says (the root's is its host pid).
    tree_pid: Option<u32>,
    /// The tree's shared window (docs/processes.md, "Shared memory"),
    /// handed to the child as `SHARED_FD`; kept alive as long as `view`.
    shared: Option<Arc<SharedWindow>>,
    /// The child's end of its file channel (docs/processes.md, "Shared
    /// file mappings"), given to it as `FILEMAP_CHANNEL_FD` and closed here
    /// once it is forked; the monitor's end is in `view`.
    channel: Option<OwnedFd>,
}

/// The service's view of `memory` with the process's file-mapping range and
/// a fresh file channel (the monitor's end in the view; the child's end
/// returned).
fn view_with_channel(
    memory: &DomainMemory,
    shared: Option<&Arc<SharedWindow>>,
) -> Result<(GuestMemory, OwnedFd), RunError> {
    let mut view = memory.guest_memory_with(shared);
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    if r != 0 {
        return Err(RunError::host("socketpair (file channel)"));
    }
    // SAFETY: two fresh descriptors we own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    view.set_file_window(FileWindow {
        start: crate::layout::FILEMAP_BASE,
        len: memory.filemap_len(),
        channel: Some(ours),
        mapper: None,
        pid: Arc::default(),
    });
    Ok((view, theirs))
}

/// The child process, as far as other threads need it: its pid (0 until
/// forked, and again once it is reaped, so a late stop never hits a reused
/// pid) and whether a stop came before the fork.
#[derive(Debug, Default)]
struct Child {
    pid: AtomicI32,
    stop_asked: AtomicBool,
    /// Held while the pid is cleared and the child reaped, and while its
    /// CPU clock is read: a reading sees the live clock or the final
    /// figure, never a reaped (perhaps reused) pid.
    reaping: std::sync::Mutex<()>,
    /// The child's CPU time (user + system, ns) from its reaping `wait4`.
    final_cpu_ns: std::sync::atomic::AtomicU64,
}

/// The child's CPU time for the tree's `[limits] cpu-time`: its host
/// process's clock (every thread) while it lives, then what `wait4` said.
impl cabin_monitor::watch::CpuMeter for Child {
    fn used(&self) -> std::time::Duration {
        let _reaping = self.reaping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pid = self.pid.load(Ordering::SeqCst);
        let live = if pid > 0 { cabin_monitor::watch::process_cpu_time(pid) } else { None };
        live.unwrap_or_else(|| std::time::Duration::from_nanos(self.final_cpu_ns.load(Ordering::SeqCst)))
    }
}

impl Stopper for Child {
    fn stop(&self, _cause: StopCause) {
        self.stop_asked.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kills our own child (not yet reaped: `run` clears the
            // pid before it reaps).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    fn wake_for_signal(&self, sig: i32) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = sig;
            // SAFETY: signals our own child (not yet reaped, as in `stop`);
            // the libos's handler for the wake signal takes the posted words.
            unsafe { libc::kill(pid, cabin_abi::boot::WAKE_SIGNAL) };
        }
    }

    /// Job control: the kernel stops (and continues) every thread of the
    /// child; the libos cannot catch either signal. A `SIGKILL` (`stop`)
    /// still ends a stopped child.
    fn pause(&self, on: bool) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            let sig = if on { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: signals our own child (not yet reaped, as in `stop`).
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// A posted signal not taken yet, or taken by a thread that blocks it
    /// while another does not (the attention word): the kernel gives a
    /// process-directed signal to the main thread whenever it can, so the
    /// wake signal goes to every thread of the child (each one's libos
    /// handler delivers what it does not block; the pending bit is taken
    /// once).
    fn rewake(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid <= 0 {
            return;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
        for tid in tasks.flatten().filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok()) {
            // SAFETY: a thread of our own child (not yet reaped, as in
            // `stop`: a thread that ended meanwhile makes tgkill fail with
            // ESRCH; tgkill checks the thread group, so a reused tid of
            // another process is never hit).
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, cabin_abi::boot::WAKE_SIGNAL) };
        }
    }
}

impl Domain for ProcessDomain {
    const BACKEND: &'static str = "process";
    const CAN_EXEC: bool = true;
    const SHARED_WINDOW: Option<u64> = Some(crate::layout::SHARED_BASE);

    fn execute_only(image: &ElfFile<'_>) -> ExecuteOnly {
        // Execute-only needs the hardware (protection keys) and an image
        // whose code segments are execute-only (not built with
        // --allow-readable-code).
        let image_xo = image.exec_segments().all(|s| s.flags & cabin_image::elf::PF_R == 0);
        let hw = execute_only_enforced();
        // Where the kernel's execute-only key is real, XCR0 enables PKRU
        // too: an `xrstor` not followed by the PKRU check (or a `wrpkru`)
        // anywhere in the image's code could lift it. Scanned here, every
        // byte offset, whatever the manifest says.
        let writer = if hw && image_xo { pkru_writer(image) } else { None };
        let enforced = hw && image_xo && writer.is_none();
        let notice = if enforced {
            "cabin: execute-only code is enforced (protection keys)"
        } else if !image_xo {
            "cabin: execute-only code is off: the image was built with readable code"
        } else if writer.is_some() {
            "cabin: execute-only code is not enforced: the image has an unchecked xrstor or a wrpkru \
             that could change PKRU (`cabinc inspect` lists them)"
        } else {
            "cabin: execute-only code is not enforced on this machine (no protection keys)"
        };
        ExecuteOnly { enforced, notice }
    }

    fn build(image: &ElfFile<'_>, spec: &DomainSpec) -> Result<ProcessDomain, RunError> {
        let memory = loader::build(image, spec)?;
        let (view, channel) = view_with_channel(&memory, spec.shared.as_ref())?;
        Ok(ProcessDomain {
            view,
            memory,
            check_local: spec.check_local,
            program_cpus: spec.program_cpus,
            all_cpus: spec.all_cpus,
            widened: AtomicBool::new(false),
            child: Arc::default(),
            tree_pid: None,
            shared: spec.shared.clone(),
            channel: Some(channel),
        })
    }

    /// A copy of the domain memory (touched pages only, rings reset), the
    /// child's pid and parent in its boot page, started at `entry` on
    /// `sp` by a new host process forked from the monitor exactly as the
    /// root was (docs/processes.md).
    fn fork_child(&self, entry: u64, sp: u64, pid: u32, ppid: u32) -> Result<Option<Self>, RunError> {
        let mut memory = self.memory.fork_copy()?;
        memory.entry = entry;
        memory.sp = sp;
        let boot = memory.boot();
        if boot.is_null() {
            return Err(RunError::Layout("the child's boot page".into()));
        }
        // SAFETY: the boot page of the child's own mapping (nothing runs in
        // it yet); two aligned u32 fields.
        unsafe {
            std::ptr::addr_of_mut!((*boot).pid).write_volatile(pid);
            std::ptr::addr_of_mut!((*boot).ppid).write_volatile(ppid);
        }
        let (view, channel) = view_with_channel(&memory, self.shared.as_ref())?;
        Ok(Some(ProcessDomain {
            view,
            memory,
            check_local: self.check_local,
            program_cpus: self.all_cpus,
            all_cpus: self.all_cpus,
            widened: AtomicBool::new(false),
            child: Arc::default(),
            tree_pid: Some(pid),
            shared: self.shared.clone(),
            channel: Some(channel),
        }))
    }

    /// A fresh domain for the new image, as `build` makes one, its boot page
    /// naming the process's virtual pid and parent (docs/processes.md).
    fn exec_image(
        image: &ElfFile<'_>,
        spec: &DomainSpec,
        pid: u32,
        ppid: u32,
    ) -> Result<Option<Self>, RunError> {
        let mut domain = Self::build(image, spec)?;
        let boot = domain.memory.boot();
        if boot.is_null() {
            return Err(RunError::Layout("the new image's boot page".into()));
        }
        // SAFETY: the boot page of the new domain's own mapping (nothing
        // runs in it yet); two aligned u32 fields.
        unsafe {
            std::ptr::addr_of_mut!((*boot).pid).write_volatile(pid);
            std::ptr::addr_of_mut!((*boot).ppid).write_volatile(ppid);
        }
        domain.tree_pid = Some(pid);
        Ok(Some(domain))
    }

    fn memory(&self) -> &GuestMemory {
        &self.view
    }

    /// The domain's memfd: its allocated blocks are what the host holds
    /// for the program (touched pages; the tree's memory bound).
    fn meter(&self) -> Option<Arc<dyn cabin_monitor::treemem::Meter>> {
        use std::os::fd::AsFd;
        let m = cabin_monitor::treemem::FdMeter::new(self.memory.memfd.as_fd())?;
        Some(Arc::new(m))
    }

    fn ring(&self) -> RingPtr {
        self.memory.ring()
    }

    fn ring_count(&self) -> usize {
        cabin_abi::thread::MAX_THREADS
    }

    /// Program threads are native threads of the confined child: the libos
    /// creates them itself with `clone` (the filter allows exactly the
    /// thread flag sets), so there is nothing to do here.
    fn spawn_thread(&self, _start: &cabin_abi::thread::ThreadStart) -> Result<SpawnedBy, RunError> {
        // The first thread: the program leaves the CPUs it was placed on
        // (one core of two, away from the worker) for every CPU of the run,
        // so its threads run in parallel. Set on the main thread before the
        // libos clones, so every thread inherits it.
        if !self.widened.swap(true, Ordering::SeqCst) {
            let pid = self.child.pid.load(Ordering::SeqCst);
            if let (Some(all), true) = (self.all_cpus, pid > 0) {
                all.apply(pid);
            }
        }
        Ok(SpawnedBy::Libos)
    }

    fn entry(&self) -> u64 {
        self.memory.entry
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.child.clone()
    }

    fn start(&mut self) -> Result<(), RunError> {
        let mut plan =
            prepare_child(&self.memory, self.program_cpus, &self.check_local, self.shared.as_deref())?;
        plan.boot_pid = self.tree_pid;
        let channel =
            self.channel.take().ok_or_else(|| RunError::Internal("the domain started twice".into()))?;
        plan.channel_fd = channel.as_raw_fd();
        // The wake signal is blocked across the fork, so the child starts
        // with it blocked and ignores it (`child_main`) until the libos
        // installs its handler: a signal posted to a process still in its
        // set-up (bash's job control signals a job as it forks it) woke it
        // with a signal whose default action ended it ("failed during
        // set-up", wait status 0x40). The post stays in the boot page and
        // the libos takes it at its next call (the attention word).
        // SAFETY: sigset_t is plain data; zeroed is a valid value.
        let (mut wake, mut old): (libc::sigset_t, libc::sigset_t) = unsafe { std::mem::zeroed() };
        // SAFETY: fills and applies sigsets on locals; this thread only.
        unsafe {
            libc::sigemptyset(&mut wake);
            libc::sigaddset(&mut wake, cabin_abi::boot::WAKE_SIGNAL);
            libc::pthread_sigmask(libc::SIG_BLOCK, &wake, &mut old);
        }
        // SAFETY: fork has no memory-safety preconditions; the child only
        // runs `child_main`, which uses async-signal-safe calls and no
        // allocation.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child_main(&plan);
        }
        // SAFETY: restores this thread's mask from a local.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(RunError::host("fork"));
        }
        // The child holds its end now.
        drop(channel);
        self.child.pid.store(pid, Ordering::SeqCst);
        if let Some(w) = self.view.file_window() {
            w.pid.store(pid, Ordering::SeqCst);
        }
        if self.child.stop_asked.load(Ordering::SeqCst) {
            self.child.stop(StopCause::TimeLimit);
        }
        Ok(())
    }

    fn program_pid(&self) -> u32 {
        self.tree_pid.unwrap_or(self.child.pid.load(Ordering::SeqCst) as u32)
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock::Process(self.child.pid.load(Ordering::SeqCst))
    }

    fn cpu_meter(&self) -> Option<Arc<dyn cabin_monitor::watch::CpuMeter>> {
        Some(self.child.clone())
    }

    fn run(&self) -> Result<DomainEnd, RunError> {
        let pid = self.child.pid.load(Ordering::SeqCst);
        // Whether a failed-looking set-up really failed, decided while the
        // child is a zombie (see `set_up_failed`); then no stop may reach
        // its pid any more, and it is reaped.
        // A child the monitor killed (a limit, the tree's end) before it
        // entered the program did not fail its set-up: it was stopped, and
        // the run ends as the stop says (a cpu-time limit reached while a
        // new image started was reported as a set-up failure).
        let set_up = wait_exited(pid)
            && !self.child.stop_asked.load(Ordering::SeqCst)
            && set_up_failed(pid, scratch_status(&self.memory));
        let status = {
            let _reaping = self.child.reaping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.child.pid.store(0, Ordering::SeqCst);
            if let Some(w) = self.view.file_window() {
                w.pid.store(0, Ordering::SeqCst);
            }
            let (status, cpu) = reap_with_cpu(pid);
            self.child.final_cpu_ns.store(cpu, Ordering::SeqCst);
            status
        };
        if set_up {
            let what = stage_name(scratch_status(&self.memory));
            return Err(RunError::ChildSetup(format!("{what}; wait status {status:#x}")));
        }
        Ok(classify(status, &BootPage::of(&self.view)?.end_words()))
    }

    fn fixed_bytes(&self) -> u64 {
        self.memory.fixed_bytes()
    }

    fn stats(&self, _worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)> {
        vec![("memory", self.memory.stats_json())]
    }
}

/// Whether this machine enforces execute-only code for the process backend:
/// measured once per process, not guessed from CPUID or /proc/cpuinfo, and
/// never taken from a file (nothing stale or forged can claim it). Linux
/// gives `PROT_EXEC`-only mappings its execute-only protection key where the
/// CPU has protection keys and the kernel uses them; elsewhere such a
/// mapping is readable. [`probe_execute_only_here`] has the kernel read a
/// fresh `PROT_EXEC`-only page of this process: execute-only holds only if
/// that read is refused.
pub fn execute_only_enforced() -> bool {
    static PROBED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBED.get_or_init(|| probe_execute_only_here() == Probe::Enforced)
}

/// The probe of [`execute_only_enforced`], in this process, without a
/// fork (a fork of the monitor cost 1-1.5 ms of every start, a copy of its
/// page tables included): maps one anonymous `PROT_EXEC`-only page and
/// `write`s its first byte into a pipe. The kernel copies from user memory
/// under the calling thread's PKRU (a not-present page faults, and the
/// fault handler checks the page's protection key as for the thread's own
/// read), so the write fails with `EFAULT` exactly when the page is
/// execute-only; where it is readable the write succeeds. The page is fresh
/// anonymous memory mapped just before (nothing else can make the copy
/// fail), and this thread is the one that mapped it (Linux sets the
/// execute-only key's access-disable bit in the PKRU of the thread that
/// asks for the mapping). Agrees with [`probe_execute_only`], which reads
/// the page in a forked child (tested).
pub fn probe_execute_only_here() -> Probe {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Probe::Other(-1);
    }
    // SAFETY: both descriptors were just made and are ours alone.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Probe::Other(PROBE_NO_MMAP);
    }
    // SAFETY: the kernel reads one byte at `p` (the page just mapped), or
    // refuses with EFAULT; this process never reads it itself.
    let n = unsafe { libc::write(wr.as_raw_fd(), p, 1) };
    let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: unmaps the page mapped above, which nothing else uses.
    unsafe { libc::munmap(p, 4096) };
    drop((rd, wr));
    match n {
        1 => Probe::Readable,
        _ if err == libc::EFAULT => Probe::Enforced,
        _ => Probe::Other(err),
    }
}

/// The first instruction of `image`'s code that could change PKRU
/// unchecked ([`cabin_abi::pkru::unchecked_xrstor`]).
pub fn pkru_writer(image: &ElfFile<'_>) -> Option<cabin_abi::pkru::PkruWriter> {
    image.exec_segments().find_map(|s| cabin_abi::pkru::unchecked_xrstor(image.bytes(s), s.vaddr))
}

/// What [`probe_execute_only`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The read faulted with `SEGV_PKUERR`: execute-only is real.
    Enforced,
    /// The read succeeded: code is readable.
    Readable,
    /// The read faulted for another reason (`si_code`), or the probe could
    /// not run (fork or mmap failed, an unexpected end): not enforced.
    Other(i32),
}

/// Exit statuses of the probe child.
const PROBE_READ_OK: i32 = 10;
const PROBE_PKUERR: i32 = 11;
const PROBE_NO_MMAP: i32 = 12;
/// SEGV_PKUERR (`si_code` of a protection-key fault).
const SEGV_PKUERR: i32 = 4;

extern "C" fn probe_segv(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // _exit is async-signal-safe.
    unsafe {
        let code = (*info).si_code;
        libc::_exit(if code == SEGV_PKUERR { PROBE_PKUERR } else { 20 + (code & 0x3f) });
    }
}

/// Reads a `PROT_EXEC`-only page in a forked child and reports what
/// happened: the reference [`probe_execute_only_here`] is tested against
/// (a read by the program itself, as a confined child would try). The child only makes
/// async-signal-safe calls (sigaction, mmap, a volatile read, `_exit`).
pub fn probe_execute_only() -> Probe {
    // SAFETY: fork has no memory-safety preconditions; the child runs only
    // async-signal-safe code below and always ends with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Probe::Other(-1);
    }
    if pid == 0 {
        // SAFETY: the child: installs a SIGSEGV handler that ends it with a
        // status naming the fault, maps one anonymous PROT_EXEC-only page
        // (the kernel gives it the execute-only key where it can) and reads
        // it. Every path ends in `_exit`.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = probe_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                libc::_exit(PROBE_NO_MMAP);
            }
            std::ptr::read_volatile(p.cast::<u8>());
            libc::_exit(PROBE_READ_OK);
        }
    }
    let status = reap(pid);
    if !libc::WIFEXITED(status) {
        return Probe::Other(-2);
    }
    match libc::WEXITSTATUS(status) {
        PROBE_PKUERR => Probe::Enforced,
        PROBE_READ_OK => Probe::Readable,
        c => Probe::Other(c),
    }
}

/// How the child ended: the libos ends a faulting program with 128 + signal
/// after recording the fault in the boot page (untrusted: it only decides
/// which of the program's own ends is reported); a death by signal without
/// a record is reported with the signal only. Shells say nothing about
/// SIGPIPE; neither do we.
fn classify(status: i32, words: &EndWords) -> DomainEnd {
    let fault = |signo: i32, addr: Option<u64>, rip: Option<u64>, code: Option<i32>| {
        let report = (signo != libc::SIGPIPE).then(|| {
            let mut line = format!("program terminated by {}", signal_name(signo));
            if let (Some(a), Some(r)) = (addr, rip) {
                match code.and_then(cabin_monitor::domain::segv_code_name) {
                    Some(c) => line += &format!(" (fault address {a:#x}, {c}, rip {r:#x})"),
                    None => line += &format!(" (fault address {a:#x}, rip {r:#x})"),
                }
            }
            line
        });
        DomainEnd::Fault { signo, addr, rip, code, report }
    };
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        let signo = words.fault_signo;
        if signo > 0 && signo < 65 && code == 128 + signo as i32 {
            let known = words.fault_addr != 0 || words.fault_rip != 0;
            let segv = signo == libc::SIGSEGV as u64 && (1..=4).contains(&words.fault_code);
            return fault(
                signo as i32,
                known.then_some(words.fault_addr),
                known.then_some(words.fault_rip),
                segv.then_some(words.fault_code as i32),
            );
        }
        return DomainEnd::Exited(code);
    }
    if libc::WIFSIGNALED(status) {
        return fault(libc::WTERMSIG(status), None, None, None);
    }
    DomainEnd::Exited(125)
}

/// Reaps the child `pid`; its wait status (0x7f00, an unknown failure, if
/// waiting fails).
/// As [`reap`], with the child's CPU time (user + system, ns) from `wait4`.
fn reap_with_cpu(pid: libc::pid_t) -> (i32, u64) {
    let mut status = 0i32;
    loop {
        // SAFETY: rusage is plain data; zeroed is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; writes `status` and `ru`.
        let r = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut ru) };
        if r == pid {
            let ns =
                |t: libc::timeval| t.tv_sec.max(0) as u64 * 1_000_000_000 + t.tv_usec.max(0) as u64 * 1000;
            return (status, ns(ru.ru_utime) + ns(ru.ru_stime));
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return (0x7f00, 0);
        }
    }
}

fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0i32;
    loop {
        // SAFETY: waits for our own child; writes `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return status;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 0x7f00;
        }
    }
}

/// The set-up stage the loader's status word names, in words.
fn stage_name(word: u64) -> &'static str {
    match word {
        STAGE_MAP => "mapping the domain memory",
        STAGE_PRIVS => "dropping privileges",
        STAGE_SECCOMP => "installing the seccomp filter",
        _ => "before mapping",
    }
}

/// The loader's status word in the domain's memory (our mapping): how far
/// the child's set-up got (untrusted once the program runs).
fn scratch_status(d: &DomainMemory) -> u64 {
    match d.host(LOADER_ADDR + SCRATCH_STATUS) {
        // SAFETY: an aligned word of the domain's mapping, which lives as
        // long as `d`; a volatile read of a word the child may write.
        Some(p) => unsafe { p.cast::<u64>().read_volatile() },
        None => 0,
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
fn set_up_failed(pid: libc::pid_t, word: u64) -> bool {
    if word == STAGE_ENTERED {
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
    /// The tree's shared-window memfd (-1: none), kept as `SHARED_FD`.
    shared_fd: i32,
    /// The child's end of its file channel, kept as `FILEMAP_CHANNEL_FD`.
    channel_fd: i32,
    parent: i32,
    ranges: Vec<loader::MapRange>,
    /// Host pointer (valid in the child too: inherited mapping) of the
    /// scratch status word, for reporting failures before the stub runs.
    status_host: *mut u64,
    boot_pid_guest: u64,
    /// The pid the boot page says (`None`: the child's host pid).
    boot_pid: Option<u32>,
    unmap_count: u64,
    entry: u64,
    sp: u64,
    /// The program's CPUs (`None`: left to the scheduler).
    cpus: Option<CpuSet>,
}

/// Writes the seccomp program and the unmap list into the loader scratch
/// and returns the child's plan.
fn prepare_child(
    d: &DomainMemory,
    cpus: Option<CpuSet>,
    check_local: &CallSet,
    shared: Option<&SharedWindow>,
) -> Result<ChildPlan, RunError> {
    let sq = RING_ADDR + SQ_DOORBELL_OFFSET as u64;
    let cq = RING_ADDR + CQ_DOORBELL_OFFSET as u64;
    let p = &d.protectable;
    let protectable = seccomp::Protectable {
        ranges: [p[0], p[1], p[2], p[4]],
        pages: p[3],
        reserve: p[4],
        arena_file_offset: d.arena_file_offset,
        shared: shared.map_or([0, 0], |w| [w.start(), w.len()]),
        filemap: [crate::layout::FILEMAP_BASE, d.filemap_len()],
    };
    let filter =
        seccomp::filter(sq, cq, check_local, &protectable).map_err(|e| RunError::Internal(e.to_string()))?;
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
        shared_fd: shared.map_or(-1, |w| w.fd()),
        channel_fd: -1, // set by `start`
        // SAFETY: no preconditions.
        parent: unsafe { libc::getpid() },
        ranges: d.ranges.clone(),
        status_host: scratch(SCRATCH_STATUS)?.cast(),
        boot_pid_guest,
        boot_pid: None,
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
        // Ignored (a pending one discarded) until the libos installs its
        // handler: see `start`, which blocked it across the fork.
        libc::signal(cabin_abi::boot::WAKE_SIGNAL, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // A process group of its own: a terminal's signals reach `cabinc`,
        // which forwards them (docs/signals.md), never the child twice.
        libc::setpgid(0, 0);
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
        let pid = match plan.boot_pid {
            Some(p) => p,
            None => libc::getpid() as u32,
        };
        (plan.boot_pid_guest as *mut u32).write_volatile(pid);
        // Signal handling back to defaults (the wake signal stays ignored),
        // nothing blocked.
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != cabin_abi::boot::WAKE_SIGNAL {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // The memfd stays open as RESERVE_FD (commits of the reservation
        // space), the tree's window as SHARED_FD and the file channel as
        // FILEMAP_CHANNEL_FD; the filter allows only their own forms on
        // them, and nothing else stays open: a descriptor below RESERVE_FD
        // is one the monitor sent later (a file to map).
        let keep = cabin_abi::boot::RESERVE_FD as i32;
        let shared = cabin_abi::boot::SHARED_FD as i32;
        let channel = cabin_abi::boot::FILEMAP_CHANNEL_FD as i32;
        const _: () = assert!(cabin_abi::boot::SHARED_FD == cabin_abi::boot::RESERVE_FD + 1);
        const _: () = assert!(cabin_abi::boot::FILEMAP_CHANNEL_FD == cabin_abi::boot::SHARED_FD + 1);
        // The window's descriptor and the channel out of the way first
        // (either may have one of the three numbers); the copies above
        // FILEMAP_CHANNEL_FD are closed below.
        let moved =
            if plan.shared_fd >= 0 { libc::fcntl(plan.shared_fd, libc::F_DUPFD, channel + 1) } else { -1 };
        if plan.shared_fd >= 0 && moved < 0 {
            child_fail(plan, STAGE_MAP);
        }
        let moved_channel = libc::fcntl(plan.channel_fd, libc::F_DUPFD, channel + 1);
        if moved_channel < 0 {
            child_fail(plan, STAGE_MAP);
        }
        if libc::dup2(plan.memfd, keep) != keep {
            child_fail(plan, STAGE_MAP);
        }
        if moved >= 0 && libc::dup2(moved, shared) != shared {
            child_fail(plan, STAGE_MAP);
        }
        if libc::dup2(moved_channel, channel) != channel {
            child_fail(plan, STAGE_MAP);
        }
        if plan.shared_fd < 0 {
            libc::close(shared);
        }
        libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
        libc::syscall(libc::SYS_close_range, (channel + 1) as u32, u32::MAX, 0u32);
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
        // The filter lets `mprotect` add PROT_READ: with READ_IMPLIES_EXEC
        // (inherited personality) that would make pages executable. Plain
        // Linux personality, which the program cannot change (`personality`
        // is never allowed natively).
        if libc::personality(0) < 0 || libc::personality(0xffff_ffff) != 0 {
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
    use cabin_monitor::memory::RegionKind;

    fn range(guest: u64, len: u64) -> loader::MapRange {
        loader::MapRange { guest, len, prot: 0, offset: 0, kind: RegionKind::System }
    }

    /// The read probe agrees with what the CPU and kernel say they do
    /// (CPUID.7.0:ECX.OSPKE, bit 4): on a CPU with protection keys enabled
    /// by the kernel a `PROT_EXEC`-only page faults with `SEGV_PKUERR`, on
    /// one without it is readable. Runs on both kinds of machine (this
    /// one has no PKU; the QEMU tier's guest has).
    #[test]
    fn execute_only_probe_matches_the_cpu() {
        let ospke = std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0;
        let probe = probe_execute_only();
        let want = if ospke { Probe::Enforced } else { Probe::Readable };
        assert_eq!(probe, want, "OSPKE {ospke}");
        // The in-process probe (what a run uses) says what the forked read
        // says, here and in a fresh thread (whose PKRU never saw the key).
        assert_eq!(probe_execute_only_here(), want, "OSPKE {ospke}");
        assert_eq!(std::thread::spawn(probe_execute_only_here).join().unwrap(), want);
        assert_eq!(execute_only_enforced(), ospke);
    }

    #[test]
    fn the_seccomp_filter_fits_the_scratch() {
        let (sq, cq) = (RING_ADDR + SQ_DOORBELL_OFFSET as u64, RING_ADDR + CQ_DOORBELL_OFFSET as u64);
        // No clock read checked: the longest filter.
        // Every RELRO page rule as well.
        let p = seccomp::Protectable {
            ranges: [[1 << 40, 1 << 30], [2 << 40, 1 << 30], [3 << 40, 1 << 30], [4 << 40, 1 << 30]],
            reserve: [4 << 40, 1 << 30],
            arena_file_offset: 1 << 30,
            pages: [0x40_0000, loader::MAX_RELRO_PAGES * PAGE],
            shared: [5 << 40, 1 << 30],
            filemap: [6 << 40, 1 << 30],
        };
        let f = seccomp::filter(sq, cq, &CallSet::EMPTY, &p).expect("the filter builds");
        assert!(f.len() <= SCRATCH_FILTER_MAX, "{} instructions", f.len());
    }

    /// A filter handed out again is the one its inputs give: each input
    /// changed alone gives the filter built fresh for it, whichever was
    /// built (and kept) before, and more inputs than are kept still do.
    #[test]
    fn a_kept_filter_is_the_one_its_inputs_build() {
        let fresh = |sq: u64, cq: u64, c: &CallSet, p: &seccomp::Protectable| {
            seccomp::compile(seccomp::rules(sq, cq, c, p).expect("rules")).expect("compile")
        };
        let p = seccomp::Protectable {
            ranges: [[1 << 40, 1 << 30], [2 << 40, 1 << 30], [3 << 40, 1 << 30], [0, 0]],
            reserve: [4 << 40, 1 << 30],
            arena_file_offset: 1 << 30,
            pages: [0x40_0000, 2 * PAGE],
            shared: [5 << 40, 1 << 30],
            filemap: [6 << 40, 1 << 30],
        };
        let (sq, cq) = (RING_ADDR + SQ_DOORBELL_OFFSET as u64, RING_ADDR + CQ_DOORBELL_OFFSET as u64);
        let mut clock = CallSet::EMPTY;
        clock.insert(libc::SYS_clock_gettime as u64);
        let mut p2 = p;
        p2.pages = [0x40_0000, 3 * PAGE];
        let mut p3 = p;
        p3.arena_file_offset = 2 << 30;
        let inputs = [
            (sq, cq, CallSet::EMPTY, p),
            (sq, cq, clock, p),
            (sq, cq, CallSet::EMPTY, p2),
            (sq, cq, CallSet::EMPTY, p3),
            (sq + 8, cq, CallSet::EMPTY, p),
            (sq, cq + 8, CallSet::EMPTY, p),
        ];
        for round in 0..3 {
            for (sq, cq, c, p) in &inputs {
                let got = seccomp::filter(*sq, *cq, c, p).expect("filter");
                let want = fresh(*sq, *cq, c, p);
                let same = got.len() == want.len()
                    && got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k));
                assert!(same, "round {round}: the filter for {sq:#x} {cq:#x} {c:?} {p:?} is another one's");
            }
        }
        // More inputs than kept: the oldest are built again, still right.
        for k in 0..12u64 {
            let mut q = p;
            q.reserve = [(8 + k) << 40, 1 << 30];
            let got = seccomp::filter(sq, cq, &CallSet::EMPTY, &q).expect("filter");
            assert_eq!(got.len(), fresh(sq, cq, &CallSet::EMPTY, &q).len());
        }
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
