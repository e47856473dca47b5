//! System V shared memory and shared anonymous memory in the tree's shared
//! window (docs/processes.md, "Shared memory"; process backend).
//!
//! The monitor owns the segments: `shmget`/`shmctl` are plain forwarded
//! calls, `shmat` answers the segment's address in the window (the same in
//! every process of the tree) and `shmdt` the bytes to unmap there. The
//! libos maps and unmaps those ranges natively — `mmap(addr, len, prot,
//! MAP_SHARED | MAP_FIXED, SHARED_FD, addr - window)`, the one form the
//! seccomp filter allows on that descriptor — and keeps a table of its
//! attachments so that a forked child maps them again (its host process
//! starts with none of them; the monitor counts them inherited).
//!
//! `MAP_SHARED | MAP_ANONYMOUS` memory is a private segment made here
//! (`shmget(IPC_PRIVATE)`, `shmat`, `IPC_RMID`: freed once no process has
//! it), so a parent and the children it forks afterwards really share it
//! (futexes and atomics included). Without a window (KVM for now) the
//! monitor answers `ENOSYS` and such memory comes from the arena, private
//! to the process, as before.
//!
//! The table is the libos's own memory: a program that writes it only
//! misleads its own mappings (the monitor's counts are its own).

use super::errno;
use super::nr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::thread::Lock;

/// Most attachments a process holds (the monitor's bound too).
const MAX: usize = 64;
const PAGE: u64 = 4096;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const SHM_RDONLY: u64 = 0o10000;
const IPC_PRIVATE: u64 = 0;
const IPC_RMID: u64 = 0;
const IPC_STAT: u64 = 2;
/// `sizeof(struct shmid64_ds)`.
const SHMID_DS: usize = 112;

#[derive(Clone, Copy)]
struct Att {
    addr: u64,
    len: u64,
    prot: u64,
}

/// The libos's attachments.
struct Table {
    atts: [Att; MAX],
    n: usize,
}

static TABLE: Lock<Table> = Lock::new(Table { atts: [Att { addr: 0, len: 0, prot: 0 }; MAX], n: 0 });

/// The window, set once at start-up (before the program runs) and read
/// without the table's lock: `overlaps` is on the futex-wake path.
static START: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicU64 = AtomicU64::new(0);
/// KVM: the monitor mapped the whole window in the page tables before
/// boot; nothing is mapped or unmapped here.
static PREMAPPED: AtomicBool = AtomicBool::new(false);

/// The window from the boot page (`len` 0: none).
pub(super) fn init(start: u64, len: u64, premapped: bool) {
    let ok = start.is_multiple_of(PAGE) && len.is_multiple_of(PAGE) && start.checked_add(len).is_some();
    if ok && len != 0 {
        START.store(start, Ordering::Relaxed);
        PREMAPPED.store(premapped, Ordering::Relaxed);
        LEN.store(len, Ordering::Release);
    }
}

fn premapped() -> bool {
    PREMAPPED.load(Ordering::Relaxed)
}

/// Whether there is a window.
fn window() -> Option<(u64, u64)> {
    let len = LEN.load(Ordering::Acquire);
    (len != 0).then(|| (START.load(Ordering::Relaxed), len))
}

/// Whether `[addr, addr+len)` touches the window.
pub(super) fn overlaps(addr: u64, len: u64) -> bool {
    window().is_some_and(|(start, wlen)| addr < start + wlen && addr.saturating_add(len) > start)
}

/// Maps window range `[addr, addr+len)` natively.
fn map(start: u64, addr: u64, len: u64, prot: u64) -> i64 {
    let fd = cabin_abi::boot::SHARED_FD;
    // SAFETY: maps the tree's shared memfd over window addresses, where no
    // libos memory lies; the seccomp filter allows exactly this form.
    unsafe { crate::sys::syscall6(nr::mmap, &[addr, len, prot, MAP_SHARED | MAP_FIXED, fd, addr - start]) }
}

/// Unmaps window range `[addr, addr+len)` natively.
fn unmap(addr: u64, len: u64) {
    // SAFETY: window addresses only (callers check), no libos memory.
    unsafe { crate::sys::syscall6(nr::munmap, &[addr, len, 0, 0, 0, 0]) };
}

/// `shmat`: the monitor's answer, then the native mapping of the whole
/// segment.
pub(super) fn shmat(args: &[u64; 6], flags: u32, site: u64) -> i64 {
    let r = super::forward_from(nr::shmat, args, flags, site);
    let Some((start, wlen)) = window() else { return r };
    if r < 0 {
        return r;
    }
    let addr = r as u64;
    let mut ds = [0u8; SHMID_DS];
    let st = super::forward(nr::shmctl, &[args[0], IPC_STAT, ds.as_mut_ptr() as u64, 0, 0, 0], 0);
    let mut size = [0u8; 8];
    size.copy_from_slice(&ds[48..56]);
    let len = u64::from_le_bytes(size).div_ceil(PAGE) * PAGE;
    let inside = addr >= start
        && addr.is_multiple_of(PAGE)
        && len != 0
        && addr.checked_add(len).is_some_and(|e| e <= start + wlen);
    if st != 0 || !inside {
        if st == 0 {
            crate::die(b"cabin: the monitor's shmat answer lies outside the shared window; stopping\n");
        }
        super::forward(nr::shmdt, &[addr, 0, 0, 0, 0, 0], 0);
        return st;
    }
    let prot = if args[2] & SHM_RDONLY != 0 { PROT_READ } else { PROT_READ | PROT_WRITE };
    let mut t = TABLE.lock();
    if t.n >= MAX {
        drop(t);
        super::forward(nr::shmdt, &[addr, 0, 0, 0, 0, 0], 0);
        return -errno::ENOMEM;
    }
    // Every attachment of a segment has its one address: the mapping
    // there allows what any of them allows.
    let union = t.atts[..t.n].iter().filter(|a| a.addr == addr).fold(prot, |p, a| p | a.prot);
    let m = if premapped() { 0 } else { map(start, addr, len, union) };
    if m < 0 {
        drop(t);
        super::forward(nr::shmdt, &[addr, 0, 0, 0, 0, 0], 0);
        return m;
    }
    let n = t.n;
    t.atts[n] = Att { addr, len, prot };
    t.n += 1;
    r
}

/// `shmdt`: the monitor detaches, the libos unmaps the bytes it says.
pub(super) fn shmdt(args: &[u64; 6], flags: u32, site: u64) -> i64 {
    let r = super::forward_from(nr::shmdt, args, flags, site);
    let Some((start, wlen)) = window() else { return r };
    if r < 0 {
        return r;
    }
    let (addr, len) = (args[0], r as u64);
    if addr < start || addr.checked_add(len).is_none_or(|e| e > start + wlen) {
        crate::die(b"cabin: the monitor's shmdt answer lies outside the shared window; stopping\n");
    }
    let mut t = TABLE.lock();
    if let Some(i) = t.atts[..t.n].iter().position(|a| a.addr == addr) {
        let n = t.n;
        t.atts[i] = t.atts[n - 1];
        t.n -= 1;
        // Another attachment of the same segment keeps it mapped, with
        // what the remaining ones allow.
        let rest = t.atts[..t.n].iter().filter(|a| a.addr == addr).fold(0, |p, a| p | a.prot);
        if premapped() {
            // KVM: the window stays mapped (docs/processes.md).
        } else if rest == 0 {
            unmap(addr, len);
        } else {
            map(start, addr, len, rest);
        }
    }
    0
}

/// `MAP_SHARED | MAP_ANONYMOUS` of `len` bytes, writable: a private segment of the window, or `None` when there is no
/// window or the monitor refuses (the caller then takes arena memory).
pub(super) fn anonymous(len: u64, prot: u64) -> Option<i64> {
    // Read-only or inaccessible shared anonymous memory holds zeroes
    // nobody can change: arena memory serves it as well.
    if prot & PROT_WRITE == 0 {
        return None;
    }
    window()?;
    let id = super::forward(nr::shmget, &[IPC_PRIVATE, len, 0o600, 0, 0, 0], 0);
    if id < 0 {
        return None;
    }
    let addr = shmat(&[id as u64, 0, 0, 0, 0, 0], 0, 0);
    // Freed once no process has it attached.
    super::forward(nr::shmctl, &[id as u64, IPC_RMID, 0, 0, 0, 0], 0);
    (addr >= 0).then_some(addr)
}

/// `munmap` of window addresses: attachments inside the range are
/// detached; a part of one is unmapped here and stays attached until the
/// process detaches the rest, ends or execs.
pub(super) fn munmap(addr: u64, len: u64) -> i64 {
    let Some((start, wlen)) = window() else { return -errno::EINVAL };
    let Some(len) = len.checked_add(PAGE - 1).map(|l| l / PAGE * PAGE).filter(|&l| l != 0) else {
        return -errno::EINVAL;
    };
    if !addr.is_multiple_of(PAGE) || addr < start || addr.checked_add(len).is_none_or(|e| e > start + wlen) {
        return -errno::EINVAL;
    }
    let end = addr + len;
    loop {
        let whole = {
            let t = TABLE.lock();
            t.atts[..t.n].iter().find(|a| a.addr >= addr && a.addr + a.len <= end).map(|a| a.addr)
        };
        let Some(a) = whole else { break };
        if shmdt(&[a, 0, 0, 0, 0, 0], 0, 0) < 0 {
            // The monitor no longer knows it: forget it here too.
            let mut t = TABLE.lock();
            if let Some(i) = t.atts[..t.n].iter().position(|x| x.addr == a) {
                let n = t.n;
                t.atts[i] = t.atts[n - 1];
                t.n -= 1;
            }
        }
    }
    if !premapped() {
        unmap(addr, len);
    }
    0
}

/// A new child process: its host process has none of the window mapped;
/// every inherited attachment is mapped again. `false` if one fails.
pub(super) fn after_fork() -> bool {
    let t = TABLE.lock();
    let mut ok = true;
    if premapped() {
        return true;
    }
    for a in &t.atts[..t.n] {
        ok &= map(START.load(Ordering::Relaxed), a.addr, a.len, a.prot) >= 0;
    }
    ok
}
