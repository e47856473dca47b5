//! Confined mode: serving the program's system calls when a Cabin monitor
//! started the image.
//!
//! [`init`] reads the boot-information block ([`cabin_abi::boot::BootInfo`]),
//! checks the ring, sets up the anonymous-memory arena and installs the
//! trap (SIGSYS) and fault handlers. [`dispatch`] then serves every call:
//!
//! - locally, without the monitor: the calls the system-call table
//!   ([`cabin_abi::syscalls`]) marks as served inside the domain —
//!   anonymous memory (`brk`, `mmap`, `munmap`, `mremap`, `mprotect`,
//!   `madvise`, `msync`) from the pre-mapped arena, `arch_prctl`,
//!   `set_tid_address`, identity calls, clock reads, signal bookkeeping,
//!   self-signals, `futex`, `sched_yield`, `rseq` and exit (see
//!   [`serve_local`]). Those the policy does not plainly allow (the boot
//!   page's `check_local` set) are first decided by the monitor: a
//!   check-only submission ([`SUB_CHECK`]) for most, a plain forward for
//!   clock reads, so every policy rule binds them as it binds forwarded
//!   calls;
//! - everything else over the ring ([`ring_client`]), and each reply is
//!   checked against the call's contract before the program sees it
//!   ([`reply_is_valid`]).
//!
//! A request for executable memory is refused (`EACCES`): no new code may
//! appear in the domain.
//!
//! Threads (docs/threads.md, [`thread`]): each thread finds its own state
//! (its ring, FS base, trap-path flags) in its block through the GS base;
//! the shared state is either written once at start-up ([`STATE`]), kept
//! under a [`thread::Lock`] (arena, signal book, KVM clock), or used only
//! while the program has one thread (read-ahead, switched off at the first
//! `clone`).

mod clock;
mod closing;
mod doorbell;
mod filemap;
mod fork;
mod futex_path;
mod mem;
mod netsock;
mod readahead;
mod ring_client;
mod shared;
mod shm;
pub(crate) mod signals;
mod sigqueue;
pub(crate) mod thread;

use core::cell::UnsafeCell;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use cabin_abi::boot::{
    BootInfo, BOOT_FLAG_FORCE_TRAP, BOOT_FLAG_KVM, BOOT_FLAG_MEMORY_LIMIT, BOOT_FLAG_PROCESS,
    BOOT_FLAG_READ_AHEAD, BOOT_MAGIC, BOOT_VERSION, LOCAL_COUNT_SLOTS,
};
use cabin_abi::ring::{RingPtr, RING_BYTES, SUB_CHECK, SUB_TRAPPED};
use cabin_abi::syscalls::{self, nr, CallSet, Serve};

use crate::sys::syscall6;

/// Linux errno values returned locally.
#[allow(missing_docs)]
pub(crate) mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EEXIST: i64 = 17;
    pub const EFAULT: i64 = 14;
    pub const EPIPE: i64 = 32;
    pub const EINVAL: i64 = 22;
    pub const EINTR: i64 = 4;
    pub const EMFILE: i64 = 24;
    pub const ENODEV: i64 = 19;
    pub const ENOSYS: i64 = 38;
    pub const EIO: i64 = 5;
    pub const ENOTTY: i64 = 25;
}

/// A static written only while the program has one thread: [`STATE`] at
/// start-up (read-only afterwards) and read-ahead's state (switched off
/// before the second thread starts, [`readahead::disable`]).
pub(crate) struct Global<T>(UnsafeCell<T>);

// SAFETY: written only while one thread exists (start-up, read-ahead before
// the first clone), read-only otherwise; the only other context is a signal
// handler on that thread, which never interrupts the libos itself (the
// libos issues no trapping system call), so writes never overlap any access.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub(crate) const fn new(v: T) -> Global<T> {
        Global(UnsafeCell::new(v))
    }

    /// # Safety
    ///
    /// The caller must not let two returned references live at once (see
    /// the `Sync` impl: one thread, no re-entrance).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get(&self) -> &mut T {
        // SAFETY: forwarded from the caller.
        unsafe { &mut *self.0.get() }
    }

    /// A shared reference, for a value no one writes any more.
    ///
    /// # Safety
    ///
    /// No `get` reference may be alive or taken while this one lives.
    pub(crate) unsafe fn read(&self) -> &T {
        // SAFETY: forwarded from the caller.
        unsafe { &*self.0.get() }
    }
}

/// The start-up configuration (read-only once `init` returned).
fn state() -> &'static State {
    // SAFETY: STATE is written only by `init`, before the program runs.
    unsafe { STATE.read() }
}

/// Configuration copied out of the boot block at start-up.
#[derive(Debug)]
struct State {
    /// Domain address of the boot block (0 until [`init`] succeeds).
    boot: u64,
    flags: u32,
    pid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    /// Locally served calls the monitor must decide (the boot page's
    /// `check_local`, copied once).
    check: CallSet,
}

static STATE: Global<State> =
    Global::new(State { boot: 0, flags: 0, pid: 0, ppid: 0, uid: 0, gid: 0, check: CallSet::EMPTY });

/// Sets up forwarding from the boot-information block at `boot`. Returns
/// `false` when the block or its ring is malformed.
pub fn init(boot: u64) -> bool {
    if boot == 0 || !boot.is_multiple_of(4096) {
        return false;
    }
    let b = boot as *mut BootInfo;
    // SAFETY: the monitor passed this address in AT_CABIN_BOOT; it is the
    // page-aligned boot page it mapped for us (a wrong address faults here,
    // before the program runs, which ends the domain: no harm). Fields are
    // read once with volatile loads.
    let (magic, version, flags, ring, ring_size, arena, arena_len, brk, brk_len, ids) = unsafe {
        (
            addr_of_mut!((*b).magic).read_volatile(),
            addr_of_mut!((*b).version).read_volatile(),
            addr_of_mut!((*b).flags).read_volatile(),
            addr_of_mut!((*b).ring).read_volatile(),
            addr_of_mut!((*b).ring_size).read_volatile(),
            addr_of_mut!((*b).arena_start).read_volatile(),
            addr_of_mut!((*b).arena_len).read_volatile(),
            addr_of_mut!((*b).brk_start).read_volatile(),
            addr_of_mut!((*b).brk_len).read_volatile(),
            [
                addr_of_mut!((*b).pid).read_volatile(),
                addr_of_mut!((*b).ppid).read_volatile(),
                addr_of_mut!((*b).uid).read_volatile(),
                addr_of_mut!((*b).gid).read_volatile(),
            ],
        )
    };
    if magic != BOOT_MAGIC
        || version != BOOT_VERSION
        || !ring.is_multiple_of(64)
        || ring_size < RING_BYTES as u64
    {
        return false;
    }
    // SAFETY: as for the reads above.
    let (ring_count, thread_limit) = unsafe {
        (addr_of_mut!((*b).ring_count).read_volatile(), addr_of_mut!((*b).thread_limit).read_volatile())
    };
    // Only the rings the region really holds.
    let ring_count = ring_count.min((ring_size / RING_BYTES as u64).min(u64::from(u32::MAX)) as u32);
    if ring_count == 0 {
        return false;
    }
    // SAFETY: the ring lies in memory the monitor mapped for the whole life
    // of the domain, 64-byte aligned (checked above), RING_BYTES long.
    let r = unsafe { RingPtr::new(ring as *mut u8) };
    if r.check_header().is_err() {
        return false;
    }
    // The main thread's block and GS base, before anything uses the ring.
    if !thread::init(ring, ring_count, thread_limit, ids[0], flags & BOOT_FLAG_PROCESS != 0) {
        return false;
    }
    ring_client::set_ring(r);
    if !mem::init(arena, arena_len, brk, brk_len, flags & BOOT_FLAG_MEMORY_LIMIT != 0) {
        return false;
    }
    // SAFETY: as for the reads above.
    let (protectable, reserve, reserve_len, file_offset, shared_start, shared_len) = unsafe {
        (
            addr_of_mut!((*b).protectable).read_volatile(),
            addr_of_mut!((*b).reserve_start).read_volatile(),
            addr_of_mut!((*b).reserve_len).read_volatile(),
            addr_of_mut!((*b).arena_file_offset).read_volatile(),
            addr_of_mut!((*b).shared_start).read_volatile(),
            addr_of_mut!((*b).shared_len).read_volatile(),
        )
    };
    shm::init(shared_start, shared_len, flags & BOOT_FLAG_KVM != 0);
    // SAFETY: as for the reads above.
    let (filemap_start, filemap_len) = unsafe {
        (addr_of_mut!((*b).filemap_start).read_volatile(), addr_of_mut!((*b).filemap_len).read_volatile())
    };
    if flags & BOOT_FLAG_PROCESS != 0 {
        filemap::init(filemap_start, filemap_len, false);
        // Connected sockets come on the file channel too.
        netsock::init(filemap::range().is_some());
    } else if flags & BOOT_FLAG_KVM != 0 {
        filemap::init(filemap_start, filemap_len, true);
    }
    mem::init_protection(protectable, flags & BOOT_FLAG_KVM != 0);
    mem::init_reserve(reserve, reserve_len, file_offset);
    // SAFETY: as for the reads above.
    let (tsc_khz, spin_ns, check) = unsafe {
        (
            addr_of_mut!((*b).tsc_khz).read_volatile(),
            addr_of_mut!((*b).spin_ns).read_volatile(),
            addr_of_mut!((*b).check_local).read_volatile(),
        )
    };
    ring_client::set_spin(spin_ns, tsc_khz);
    futex_path::init(tsc_khz, flags & BOOT_FLAG_KVM != 0);
    if flags & BOOT_FLAG_READ_AHEAD != 0 {
        readahead::enable();
    }
    if flags & BOOT_FLAG_KVM != 0 {
        clock::init(tsc_khz);
    } else if flags & cabin_abi::boot::BOOT_FLAG_TSC_CLOCK != 0 {
        clock::init_native();
    }
    {
        // SAFETY: start-up, single thread, no other reference alive.
        let st = unsafe { STATE.get() };
        st.boot = boot;
        st.flags = flags;
        st.pid = ids[0];
        st.ppid = ids[1];
        st.uid = ids[2];
        st.gid = ids[3];
        st.check = check;
    }
    if !signals::init(b, ids[0], ids[2], flags & BOOT_FLAG_PROCESS != 0) {
        return false;
    }
    if flags & BOOT_FLAG_KVM != 0 {
        // KVM domain: no host signals exist (faults go to the proxy-kernel),
        // and ring waits use the ring-3 doorbell port instead of futex. A
        // trap site's `syscall` reaches the proxy-kernel's gate, and the
        // monitor sends it back here (`cabin_kvm_trap_entry`).
        ring_client::use_port_doorbell();
        let entry = cabin_kvm_trap_entry as unsafe extern "C" fn() as usize as u64;
        // SAFETY: `b` is the boot page validated above; this slot is the
        // libos's to write (cabin_abi::boot::BootInfo::kvm_trap_entry).
        unsafe { addr_of_mut!((*b).kvm_trap_entry).write_volatile(entry) };
    }
    true
}

/// KVM domain: where the monitor redirects a system call that a trap site
/// made (cabin_abi::hypercall::PORT_SYSCALL). Entered in ring 3 with every
/// register as at the `syscall`, `rcx` = the return address and `rsp` 128
/// bytes (the red zone) below the site's. Calls the trampoline entry as a
/// rewritten site would, then returns to the site with `rsp` restored;
/// `rcx` and `r11` end up clobbered, as `syscall` leaves them.
///
/// # Safety
///
/// Only the monitor's redirect may enter here, in the state above.
///
/// The thread's block (GS) records, while the call runs, that it was
/// redirected (so `dispatch` serves it as a trapped call, never re-issuing
/// it: see `BOOT_FLAG_FORCE_TRAP`) and the address after the trapping
/// instruction (its `rcx`).
#[cfg(target_os = "none")]
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_kvm_trap_entry() {
    core::arch::naked_asm!(
        "push rcx",
        "mov qword ptr gs:[{after}], rcx",
        // rt_sigreturn (flags untouched: `lea` and `jrcxz`): the frame is
        // at the site's rsp.
        "lea rcx, [rax - {nr_sigreturn}]",
        "jrcxz 2f",
        "mov qword ptr gs:[{trapped}], 1",
        "call cabin_syscall_entry",
        "mov qword ptr gs:[{trapped}], 0",
        "pop rcx",
        "lea rsp, [rsp + {red_zone}]",
        "jmp rcx",
        "2:",
        "lea rdi, [rsp + 8 + {red_zone}]",
        "jmp {sigreturn}",
        nr_sigreturn = const nr::rt_sigreturn,
        sigreturn = sym crate::arch::x86_64::entry::cabin_sigreturn_entry,
        red_zone = const cabin_abi::link::trampoline::RED_ZONE,
        trapped = const thread::KVM_TRAPPED_OFFSET,
        after = const thread::KVM_TRAP_AFTER_OFFSET,
    )
}

/// Length of each system-call instruction a trap site can hold (`syscall`
/// 0f 05, `sysenter` 0f 34, `int 0x80` cd 80).
const TRAP_INSN_LEN: u64 = 2;

/// The site hint of a trapped call whose trapping instruction ends at
/// `after` (the `rip` the kernel or the gate saved): that instruction's
/// address, or the forced call's own hint (see [`FORCED_SITE`]).
pub(crate) fn trap_site(after: u64) -> u64 {
    match thread::current().forced_site.load(Ordering::Relaxed) {
        0 => after.wrapping_sub(TRAP_INSN_LEN),
        forced => forced,
    }
}

/// Host builds have no trap entry (never called there).
///
/// # Safety
///
/// None needed; `unsafe` only to match the image build's signature.
#[cfg(not(target_os = "none"))]
pub unsafe extern "C" fn cabin_kvm_trap_entry() {}

/// Records the program's stack pointer at the call the calling thread is
/// making (for `sigaltstack`'s `SS_ONSTACK`: per thread, as the stack is).
pub fn set_site_rsp(rsp: u64) {
    thread::current().site_rsp.store(rsp, Ordering::Relaxed);
}

/// Serves system call `nr` in confined mode; returns the value for `rax`.
/// `site`: where the program made the call (the trampoline's return address;
/// a hint for the monitor's messages, see `cabin_abi::ring`).
pub fn dispatch(nr: u64, args: &[u64; 6], site: u64) -> i64 {
    let me = thread::current();
    if me.kvm_trapped.swap(0, Ordering::Relaxed) != 0 {
        // Came through `cabin_kvm_trap_entry`: the trap path of a KVM domain.
        // (Cleared here: a handler that runs on the way out makes calls of
        // its own.) The trap entry pushed one word more.
        me.site_rsp.fetch_add(8, Ordering::Relaxed);
        return serve(nr, args, true, trap_site(me.kvm_trap_after.load(Ordering::Relaxed)));
    }
    let force_trap = state().flags & BOOT_FLAG_FORCE_TRAP != 0;
    if force_trap
        && !matches!(
            nr,
            nr::rt_sigaction
                | nr::rt_sigprocmask
                | nr::sigaltstack
                | nr::exit
                | nr::exit_group
                | nr::mprotect
                | nr::munmap
        )
    {
        // Testing mode: take the trap path. The seccomp filter traps every
        // call the program can make here except the harmless ones it lets
        // through (clock reads), which then run for real, as they would.
        // Signal-disposition calls are kept off this path: issued for real,
        // they could replace the libos's own SIGSYS handler (or, for
        // sigaltstack, move its private stack). So are `mprotect` and
        // `munmap`: the filter lets the libos's own native ones through
        // (protections, the reservation space), so issued raw they would
        // bypass the libos's page tables of the arena and the reservation
        // space (a guard page's `mprotect` would then fail on uncommitted
        // reservation space). A raw `mprotect` from an unrewritten site has
        // the same gap today (docs/threads.md).
        me.forced_site.store(site, Ordering::Relaxed);
        // SAFETY: the program's own request, as its `syscall` would issue it.
        let r = unsafe { syscall6(nr, args) };
        me.forced_site.store(0, Ordering::Relaxed);
        return r;
    }
    serve(nr, args, false, site)
}

/// Serves one call, from a rewritten site (`trapped = false`) or from the
/// SIGSYS handler; `site` is its site hint (0: unknown).
///
/// The system-call table decides where: a forwarded call goes over the
/// ring; a locally served one is served here, unless the policy does not
/// plainly allow it (`check_local`): then the monitor decides it first
/// (check-only), or serves it (clock reads). One bit test on the path of a
/// call the policy allows.
pub(crate) fn serve(nr: u64, args: &[u64; 6], trapped: bool, site: u64) -> i64 {
    if trapped {
        boot_add_trapped();
    }
    let flags = if trapped { SUB_TRAPPED } else { 0 };
    // Connected sockets handed over by the monitor: their data calls are
    // native; a call that closes or replaces one drops its native copy.
    if let Some(r) = netsock::serve(nr, args) {
        count_local(nr);
        return r;
    }
    netsock::before(nr, args);
    match nr {
        nr::pause => {
            // Pending signals first; the wait itself is forwarded (and so
            // decided by the policy like any forwarded call).
            return signals::suspend(None);
        }
        // signalfd: the descriptor is the monitor's (a placeholder it
        // opens, policy-checked as a forwarded call); its reads are served
        // from the libos's pending set.
        nr::signalfd4 => return signals::signalfd4(args[0], args[1], args[2], args[3]),
        nr::signalfd => return signals::signalfd4(args[0], args[1], args[2], 0),
        nr::read => {
            if let Some(r) = signals::signalfd_read(args[0], args[1], args[2]) {
                return r;
            }
        }
        nr::close => signals::signalfd_close(args[0]),
        // SysV shared memory in the tree's window: the monitor decides, the
        // libos maps (process backend).
        nr::shmat => return shm::shmat(args, flags, site),
        nr::shmdt => return shm::shmdt(args, flags, site),
        // A wait with a signal mask: the mask is in force for the wait.
        nr::ppoll | nr::pselect6 | nr::epoll_pwait | nr::epoll_pwait2 => {
            signals::signalfd_sync();
            if let Some(r) = signals::wait_with_mask(nr, args, flags, site) {
                return r;
            }
        }
        // A signalfd is ready when its placeholder says so.
        nr::poll | nr::select | nr::epoll_wait => signals::signalfd_sync(),
        _ => {}
    }
    let class = syscalls::serve(nr);
    if class == Serve::Forwarded {
        if nr == nr::close && !trapped {
            // Staged bytes go back before the close is on its way.
            readahead::before(nr, args);
            if let Some(r) = closing::close(args[0], state().check.contains(nr), site) {
                readahead::after(nr, args, r);
                return r;
            }
        }
        let r = forward_from(nr, args, flags, site);
        netsock::after(nr, args, r);
        return r;
    }
    if class != Serve::Always && state().check.contains(nr) {
        if class == Serve::LocalOrForwarded {
            return forward_from(nr, args, flags, site);
        }
        let r = forward_checked(nr, args, flags | SUB_CHECK, site);
        if r > 0 {
            crate::die(b"cabin: the monitor's answer to a policy check is not 0 or -errno; stopping\n");
        }
        if r != 0 {
            return r;
        }
    }
    match serve_local(nr, args) {
        Some(v) => {
            count_local(nr);
            v
        }
        // KVM's futex with threads: forwarded with the sleeper count kept.
        None if nr == nr::futex => futex_path::forward(args, flags, site),
        // A local call this backend cannot serve here (a clock the TSC does
        // not cover, `clock_getres` on KVM): the monitor serves it.
        None if nr == nr::kill => {
            let r = forward_from(nr, args, flags, site);
            // 1: the caller is among the targets (its group, kill(0)):
            // delivered here, before the call returns, as Linux does.
            if r == 1 {
                return signals::raise(args[1], cabin_abi::boot::si_code::SI_USER);
            }
            r
        }
        None => forward_from(nr, args, flags, site),
    }
}

/// Sends a call the libos makes on the program's behalf (no site of its own)
/// to the monitor and checks the reply.
pub(crate) fn forward(nr: u64, args: &[u64; 6], flags: u32) -> i64 {
    forward_from(nr, args, flags, 0)
}

/// Sends a call from `site` (its site hint) to the monitor and checks the
/// reply; with read-ahead on, a `read` may be served from the stage and
/// other calls first give staged bytes back (`readahead`).
pub(crate) fn forward_from(nr: u64, args: &[u64; 6], flags: u32, site: u64) -> i64 {
    if nr == nr::read {
        if let Some(r) = readahead::read(args) {
            return r;
        }
    } else {
        readahead::before(nr, args);
    }
    let r = forward_checked(nr, args, flags, site);
    readahead::after(nr, args, r);
    r
}

/// A wait the libos makes for a signal on the program's behalf (`pause`,
/// or a sleep bounding `rt_sigtimedwait`): forwarded and checked, and its
/// `EINTR` returned as it is (the caller looks at its signals itself).
pub(crate) fn forward_wait(nr: u64, args: &[u64; 6]) -> i64 {
    let r = ring_client::call(nr, args, 0, 0);
    if !reply_is_valid(nr, args, r) {
        crate::die(b"cabin: the monitor's reply breaks the system-call contract; stopping\n");
    }
    r
}

/// Sends a call to the monitor and checks the reply (no read-ahead hooks).
pub(crate) fn forward_checked(nr: u64, args: &[u64; 6], flags: u32, site: u64) -> i64 {
    let r = checked(nr, args, &mut || ring_client::call(nr, args, flags, site));
    closing::after(nr, args, r);
    match -r {
        code @ (cabin_abi::boot::TTY_BACKGROUND_READ
        | cabin_abi::boot::TTY_BACKGROUND_WRITE
        | cabin_abi::boot::TTY_BACKGROUND_WRITE_ORPHANED) => background_tty(nr, args, flags, site, code),
        _ => r,
    }
}

/// A terminal call from a background process group (the monitor's
/// `TTY_BACKGROUND_*` answer; docs/processes.md, "Job control"), decided as
/// Linux's `tty_check_change`: `SIGTTIN` blocked by this thread or ignored
/// is `EIO`; `SIGTTOU` blocked or ignored lets the call go through (made
/// again with `TTY_PROCEED`); an orphaned group `EIO`; otherwise the signal
/// goes to the caller's group (the caller included) and the call ends
/// `EINTR`, which the way out turns into a restart (the default action
/// stops the process; once continued, the call is made again) or, after a
/// handler without `SA_RESTART`, `EINTR`. `tcsetpgrp` says `ENOTTY` where
/// the others say `EIO`, as Linux.
fn background_tty(nr: u64, args: &[u64; 6], flags: u32, site: u64, code: i64) -> i64 {
    use cabin_abi::boot::{TTY_BACKGROUND_READ, TTY_BACKGROUND_WRITE_ORPHANED, TTY_PROCEED};
    let read = code == TTY_BACKGROUND_READ;
    let sig = if read { signals::SIGTTIN } else { signals::SIGTTOU };
    let r = if signals::blocked_or_ignored(sig) {
        if !read {
            let mut again = *args;
            again[5] = TTY_PROCEED;
            return checked(nr, &again, &mut || ring_client::call(nr, &again, flags, site));
        }
        -errno::EIO
    } else if code == TTY_BACKGROUND_WRITE_ORPHANED {
        -errno::EIO
    } else {
        // The other members of the group get it from the monitor; the
        // caller posts it to itself (a refused `kill` still stops the
        // caller, as the kernel's signal would).
        forward(nr::kill, &[0, sig, 0, 0, 0, 0], 0);
        signals::raise(sig, cabin_abi::boot::si_code::SI_KERNEL);
        if signals::interrupted(nr) {
            -errno::EINTR
        } else {
            -errno::EIO
        }
    };
    if r == -errno::EIO && nr == nr::ioctl && args[1] as u32 == TIOCSPGRP {
        return -errno::ENOTTY;
    }
    r
}

/// `ioctl` `TIOCSPGRP` (`tcsetpgrp`).
const TIOCSPGRP: u32 = 0x5410;

/// Makes call `nr` with `call` (one request to the monitor, on the ring or
/// through a doorbell), again after an `EINTR` for which no signal is there
/// to be taken, and checks the reply.
pub(crate) fn checked(nr: u64, args: &[u64; 6], call: &mut dyn FnMut() -> i64) -> i64 {
    let mut r = call();
    // EINTR: the monitor interrupted the call because it posted a signal
    // (its host threads see no other signal). If the signal is there to be
    // taken, the way out decides between EINTR and a restart; if not (a
    // blocked or ignored one), the call is made again, as Linux restarts it.
    // Only interruptions that brought no new signal count towards the bound
    // (a stream of blocked signals, e.g. 3000 kills from a child, is not a
    // reason to give the program an EINTR Linux would never give it).
    let mut idle = 0;
    while r == -errno::EINTR && nr != nr::pause && idle < 1000 {
        let fresh = signals::incoming_waiting();
        if signals::interrupted(nr) {
            break;
        }
        idle = if fresh { 0 } else { idle + 1 };
        if is_wait(nr) {
            // Interrupted for a signal nobody takes now: a signalfd may
            // have become ready.
            signals::signalfd_sync();
        }
        r = call();
    }
    if !reply_is_valid(nr, args, r) {
        crate::die(b"cabin: the monitor's reply breaks the system-call contract; stopping\n");
    }
    if r == -errno::EPIPE && raises_sigpipe(nr, args) {
        // The kernel would send SIGPIPE along with EPIPE (the monitor itself
        // ignores SIGPIPE, and sends with MSG_NOSIGNAL): post it; it is taken
        // on the way out.
        signals::sigpipe();
    }
    r
}

/// `MSG_NOSIGNAL`: a send with it gets EPIPE without SIGPIPE.
const MSG_NOSIGNAL: u64 = 0x4000;

/// Whether EPIPE from call `nr` comes with SIGPIPE (a write, or a send
/// without `MSG_NOSIGNAL`: `sendto`'s flags are its fourth argument,
/// `sendmsg`'s its third).
fn raises_sigpipe(nr: u64, args: &[u64; 6]) -> bool {
    match nr {
        nr::write | nr::writev | nr::pwrite64 | nr::sendfile => true,
        nr::sendto => args[3] & MSG_NOSIGNAL == 0,
        nr::sendmsg => args[2] & MSG_NOSIGNAL == 0,
        _ => false,
    }
}

/// The calls that wait on many descriptors.
fn is_wait(nr: u64) -> bool {
    matches!(
        nr,
        nr::poll
            | nr::ppoll
            | nr::select
            | nr::pselect6
            | nr::epoll_wait
            | nr::epoll_pwait
            | nr::epoll_pwait2
    )
}

/// Does `r` fit the contract of call `nr` with `args`? Errors must be
/// `-1..=-4095`; calls that fill or consume a caller's buffer cannot report
/// more bytes than the buffer holds (the table's `Ret::Count`: `read`,
/// `write`, `pread64`, `getdents64`, `readlink`, `getrandom`, `sendfile`,
/// `copy_file_range`, ...). `readv`/`writev` are bounded by the sum of the
/// iovec lengths, which the program may change concurrently: not checked.
/// Waits report at most what they were given: `poll`/`ppoll` at most
/// `nfds` ready entries (an `unsigned int`), `epoll_wait`/`epoll_pwait`/
/// `epoll_pwait2` at most `maxevents` (an `int`; none when it is not
/// positive), `select`/`pselect6` at most three bits for each of the first
/// `nfds` descriptors (an `int`, clipped to the 1024 a table holds);
/// `epoll_ctl`, `timerfd_settime`, `timerfd_gettime` return 0.
pub fn reply_is_valid(nr: u64, args: &[u64; 6], r: i64) -> bool {
    if r < 0 {
        return r >= -4095;
    }
    match nr {
        nr::poll | nr::ppoll => return r <= i64::from(args[1] as u32),
        nr::epoll_wait | nr::epoll_pwait | nr::epoll_pwait2 => return r <= i64::from(args[2] as i32),
        nr::select | nr::pselect6 => return r <= 3 * i64::from((args[0] as i32).clamp(0, 1024)),
        nr::epoll_ctl | nr::timerfd_settime | nr::timerfd_gettime => return r == 0,
        _ => {}
    }
    match syscalls::route(nr).count_bound().and_then(|i| args.get(i)) {
        Some(&bound) => (r as u64) <= bound,
        None => true,
    }
}

/// The calls the libos serves itself; `None` means "forward it". Reached
/// only for calls the system-call table marks as served inside the domain
/// ([`serve`]): an arm for any other number would never run.
fn serve_local(nr: u64, a: &[u64; 6]) -> Option<i64> {
    let st = state();
    let process = st.flags & BOOT_FLAG_PROCESS != 0;
    let v = match nr {
        nr::brk => mem::brk(a[0]) as i64,
        nr::mmap => mem::mmap(a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::munmap => mem::munmap(a[0], a[1]),
        nr::mremap => mem::mremap(a[0], a[1], a[2], a[3], a[4]),
        nr::mprotect => mem::mprotect(a[0], a[1], a[2]),
        nr::madvise => mem::madvise(a[0], a[1], a[2]),
        nr::msync => mem::msync(a[0], a[1], a[2]),
        nr::arch_prctl => arch_prctl(st, a[0], a[1], process),
        nr::getpid => st.pid as i64,
        nr::gettid => thread::gettid(st.pid),
        nr::set_tid_address => thread::set_tid_address(a[0], st.pid),
        // The monitor rewrites the word when the parent ends (the orphan
        // is re-parented: docs/processes.md); groups and sessions are the
        // tree's, served by the monitor (forwarded).
        nr::getppid => getppid(st),
        nr::getuid | nr::geteuid => st.uid as i64,
        nr::getgid | nr::getegid => st.gid as i64,
        nr::getresuid | nr::getresgid => {
            let id = if nr == nr::getresuid { st.uid } else { st.gid };
            for p in [a[0], a[1], a[2]] {
                if p == 0 || !p.is_multiple_of(4) {
                    return Some(-errno::EFAULT);
                }
                // SAFETY: the program passed these pointers for the kernel to
                // fill; a bad one faults in the program's own domain, as the
                // program's own store would.
                unsafe { (p as *mut u32).write_volatile(id) };
            }
            0
        }
        // The TSC clock is anchored by a `clock_gettime` the libos forwards
        // itself: only when the policy plainly allows that call (else the
        // program's own call goes to the monitor, which serves it).
        nr::clock_gettime | nr::gettimeofday | nr::time if !process => {
            if st.check.contains(nr::clock_gettime) {
                return None;
            }
            return clock::serve(nr, a);
        }
        // The TSC clock (BOOT_FLAG_TSC_CLOCK) anchors with native
        // `clock_gettime`s: only when the policy plainly allows that call.
        nr::clock_gettime | nr::gettimeofday | nr::time
            if process && !st.check.contains(nr::clock_gettime) =>
        {
            match clock::serve(nr, a) {
                Some(r) => r,
                // SAFETY: clock reads only write the caller's result buffers,
                // exactly as the program's own call would; the seccomp filter
                // allows them.
                None => unsafe { syscall6(nr, a) },
            }
        }
        nr::clock_gettime | nr::clock_getres | nr::gettimeofday | nr::time if process => {
            // SAFETY: clock reads only write the caller's result buffers,
            // exactly as the program's own call would; the seccomp filter
            // allows them.
            unsafe { syscall6(nr, a) }
        }
        nr::rt_sigaction => signals::sigaction(a[0], a[1], a[2], a[3]),
        nr::rt_sigprocmask => signals::sigprocmask(a[0], a[1], a[2], a[3]),
        nr::sigaltstack => {
            signals::sigaltstack(a[0], a[1], thread::current().site_rsp.load(Ordering::Relaxed))
        }
        nr::rt_sigpending => signals::sigpending(a[0], a[1]),
        nr::rt_sigsuspend => {
            if a[1] != 8 {
                return Some(-errno::EINVAL);
            }
            // SAFETY: the program's own pointer (see signals::sigaction).
            let m = unsafe { (a[0] as *const u64).read_unaligned() };
            signals::suspend(Some(m))
        }
        nr::rt_sigtimedwait => signals::sigtimedwait(a[0], a[1], a[2], a[3]),
        nr::kill => {
            let pid = a[0] as i64;
            if pid == st.pid as i64 {
                signals::raise(a[1], cabin_abi::boot::si_code::SI_USER)
            } else {
                // Another process or a group (kill(0), kill(-1),
                // kill(-pgid)): the monitor looks it up in the tree
                // (docs/processes.md; outside it: ESRCH) and signals the
                // others; its answer 1 means "and the caller too", which
                // the libos raises here, synchronously (`kill_reply`).
                return None;
            }
        }
        // Only to the program's own threads (another target: ESRCH).
        nr::tkill => thread::kill(a[0], a[1], st.pid),
        nr::tgkill if a[0] == st.pid as u64 => thread::kill(a[1], a[2], st.pid),
        nr::tgkill => -errno::ESRCH,
        nr::rt_sigqueueinfo => {
            let pid = a[0] as i64;
            if pid == st.pid as i64 {
                signals::queue(a[1], a[2], None)
            } else if pid <= 0 {
                -errno::ESRCH
            } else {
                -errno::EPERM
            }
        }
        nr::rt_tgsigqueueinfo if a[0] == st.pid as u64 => thread::queue_to(a[1], a[2], a[3], st.pid),
        nr::rt_tgsigqueueinfo => -errno::ESRCH,
        nr::set_robust_list => thread::set_robust_list(a[0], a[1]),
        nr::get_robust_list => thread::get_robust_list(a[0], a[1], a[2], st.pid),
        nr::rseq => -errno::ENOSYS,
        nr::sched_yield if process => {
            // SAFETY: sched_yield touches no memory; the filter allows it.
            unsafe { syscall6(nr::sched_yield, &[0; 6]) }
        }
        nr::sched_yield => 0,
        nr::futex if process => {
            if let Some(r) = futex_path::fast(a) {
                return Some(r);
            }
            // SAFETY: the program's own futex call, as its `syscall` would
            // issue it: it touches only the process's own memory, and the
            // filter allows it.
            unsafe { syscall6(nr::futex, a) }
        }
        // KVM with threads: the monitor serves futex on its mapping of the
        // program's memory (the waiting thread's worker blocks there), after
        // the fast path (`serve` forwards through `futex_path::forward`).
        nr::futex if thread::ring_count() > 1 => return futex_path::fast(a),
        nr::futex => futex(a[0], a[1], a[2]),
        nr::exit => {
            count_local(nr);
            thread::exit_thread(a[0])
        }
        nr::exit_group => {
            count_local(nr);
            // A posted `close` is served (and traced) before the end.
            ring_client::drain_posted();
            mem::at_exit();
            crate::sys::exit_group(a[0] & 0xff)
        }
        _ => return None,
    };
    Some(v)
}

/// `getppid`: the boot page's word, which the monitor rewrites when the
/// process is re-parented (its parent ended).
fn getppid(st: &State) -> i64 {
    if st.boot == 0 {
        return i64::from(st.ppid);
    }
    // SAFETY: `st.boot` is the validated boot page, mapped for the whole
    // run; a volatile read of one aligned word.
    i64::from(unsafe { addr_of!((*(st.boot as *const BootInfo)).ppid).read_volatile() })
}

/// `arch_prctl`: `ARCH_SET_FS` and `ARCH_GET_FS`; everything else `EINVAL`
/// (`ARCH_SET_GS` too: GS is the libos's, docs/threads.md).
fn arch_prctl(st: &State, code: u64, addr: u64, process: bool) -> i64 {
    let me = thread::current();
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    match code {
        ARCH_SET_FS => {
            if st.flags & BOOT_FLAG_KVM != 0 {
                // Ring 3 of a KVM domain: the monitor enabled CR4.FSGSBASE.
                if addr >= 0x0000_8000_0000_0000 {
                    return -errno::EPERM;
                }
                // SAFETY: sets only this thread's FS base to a canonical user
                // address, as the program asked.
                unsafe { core::arch::asm!("wrfsbase {}", in(reg) addr, options(nostack, preserves_flags)) };
                me.fs_base.store(addr, Ordering::Relaxed);
                return 0;
            }
            if !process {
                return -errno::ENOSYS;
            }
            // SAFETY: setting the FS base changes only the thread's TLS
            // pointer, which the program asked for; the filter allows it.
            let r = unsafe { syscall6(nr::arch_prctl, &[ARCH_SET_FS, addr, 0, 0, 0, 0]) };
            if r == 0 {
                me.fs_base.store(addr, Ordering::Relaxed);
            }
            r
        }
        ARCH_GET_FS => {
            if addr == 0 || !addr.is_multiple_of(8) {
                return -errno::EFAULT;
            }
            // SAFETY: the program's own result pointer (see GETRESUID).
            unsafe { (addr as *mut u64).write_volatile(me.fs_base.load(Ordering::Relaxed)) };
            0
        }
        _ => -errno::EINVAL,
    }
}

/// Futex of a domain that runs one thread (the KVM backend until it runs
/// threads): nobody else can wake a waiter, so a wait whose value still
/// matches can only fail; a wake finds nobody.
fn futex(addr: u64, op: u64, val: u64) -> i64 {
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_WAKE: u64 = 1;
    const FUTEX_WAIT_BITSET: u64 = 9;
    const FUTEX_WAKE_BITSET: u64 = 10;
    match op & 0x7f {
        FUTEX_WAKE | FUTEX_WAKE_BITSET => 0,
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            if addr == 0 || !addr.is_multiple_of(4) {
                return -errno::EFAULT;
            }
            // SAFETY: the program's own futex word; a bad pointer faults in
            // its own domain.
            let cur = unsafe { (addr as *const u32).read_volatile() };
            if cur as u64 != val & 0xffff_ffff {
                -errno::EAGAIN
            } else {
                // Waiting would deadlock the only thread.
                -errno::EAGAIN
            }
        }
        _ => -errno::ENOSYS,
    }
}

/// A new child process: its pid and parent's pid from the boot page (the
/// monitor wrote the child's), kept as the start-up state; `(pid, ppid)`.
fn reload_ids() -> (u32, u32) {
    let b = boot_ptr();
    // SAFETY: the boot page validated at start-up (the child's copy of it);
    // two volatile reads.
    let (pid, ppid) =
        unsafe { (addr_of_mut!((*b).pid).read_volatile(), addr_of_mut!((*b).ppid).read_volatile()) };
    // SAFETY: the child's only thread, before it returns to the program; no
    // other reference to STATE is alive.
    let st = unsafe { STATE.get() };
    st.pid = pid;
    st.ppid = ppid;
    (pid, ppid)
}

fn boot_ptr() -> *mut BootInfo {
    state().boot as *mut BootInfo
}

/// Adds one to the local-call counter of `nr` in the boot block.
fn count_local(nr: u64) {
    let b = boot_ptr();
    if b.is_null() || nr as usize >= LOCAL_COUNT_SLOTS {
        return;
    }
    // SAFETY: `b` is the boot page validated by `init`; the index is in
    // range; the counter is 4-byte aligned and only ever updated atomically
    // (threads count concurrently).
    unsafe { AtomicU32::from_ptr(addr_of_mut!((*b).local_counts[nr as usize])) }
        .fetch_add(1, Ordering::Relaxed);
}

fn boot_add_trapped() {
    let b = boot_ptr();
    if b.is_null() {
        return;
    }
    // SAFETY: `b` is the boot page validated by `init`; the counter is
    // 8-byte aligned and only ever updated atomically.
    unsafe { AtomicU64::from_ptr(addr_of_mut!((*b).trapped)) }.fetch_add(1, Ordering::Relaxed);
}

/// Records why the libos stopped the program itself.
pub(crate) fn record_abort(reason: u64) {
    let b = boot_ptr();
    if b.is_null() {
        return;
    }
    // SAFETY: `b` is the boot page validated by `init`.
    unsafe { addr_of_mut!((*b).abort).write_volatile(reason) };
}

/// Records a fatal signal in the boot block for the monitor's report.
pub(crate) fn record_fault(signo: u64, addr: u64, rip: u64) {
    let b = boot_ptr();
    if b.is_null() {
        return;
    }
    // SAFETY: `b` is the boot page validated by `init`.
    unsafe {
        addr_of_mut!((*b).fault_addr).write_volatile(addr);
        addr_of_mut!((*b).fault_rip).write_volatile(rip);
        addr_of_mut!((*b).fault_signo).write_volatile(signo);
    }
}

/// Records the `si_code` of a fatal fault (after [`record_fault`]).
pub(crate) fn record_fault_code(code: u64) {
    let b = boot_ptr();
    if b.is_null() {
        return;
    }
    // SAFETY: `b` is the boot page validated by `init`.
    unsafe { addr_of_mut!((*b).fault_code).write_volatile(code) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts() {
        let args = [3, 0x1000, 100, 0, 0, 0];
        assert!(reply_is_valid(nr::read, &args, 100));
        assert!(!reply_is_valid(nr::read, &args, 101));
        assert!(reply_is_valid(nr::read, &args, -9));
        assert!(!reply_is_valid(nr::read, &args, -5000));
        assert!(reply_is_valid(nr::getrandom, &[0x1000, 16, 0, 0, 0, 0], 16));
        assert!(!reply_is_valid(nr::getrandom, &[0x1000, 16, 0, 0, 0, 0], 17));
        assert!(reply_is_valid(257, &args, 5));
    }

    #[test]
    fn wait_contracts() {
        let poll = [0x1000, 4, 0, 0, 0, 0];
        assert!(reply_is_valid(nr::poll, &poll, 4));
        assert!(!reply_is_valid(nr::poll, &poll, 5));
        assert!(!reply_is_valid(nr::ppoll, &[0x1000, 1 << 32, 0, 0, 0, 0], 1), "nfds is 32 bits");
        let ep = [3, 0x1000, 8, 0, 0, 0];
        assert!(reply_is_valid(nr::epoll_wait, &ep, 8));
        assert!(!reply_is_valid(nr::epoll_pwait, &ep, 9));
        assert!(!reply_is_valid(nr::epoll_pwait2, &[3, 0x1000, u64::MAX, 0, 0, 0], 0));
        assert!(reply_is_valid(nr::select, &[2, 0, 0, 0, 0, 0], 6));
        assert!(!reply_is_valid(nr::select, &[2, 0, 0, 0, 0, 0], 7));
        assert!(!reply_is_valid(nr::pselect6, &[u64::MAX, 0, 0, 0, 0, 0], 1));
        assert!(reply_is_valid(nr::pselect6, &[1 << 40, 0, 0, 0, 0, 0], 0));
        assert!(!reply_is_valid(nr::epoll_ctl, &ep, 1));
        assert!(reply_is_valid(nr::timerfd_settime, &ep, 0));
        assert!(reply_is_valid(nr::epoll_ctl, &ep, -9));
    }
}
