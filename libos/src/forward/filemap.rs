//! Shared file mappings that are the files' own pages (process backend;
//! docs/processes.md, "Shared file mappings").
//!
//! A `MAP_SHARED` file mapping (not fixed, never executable) is asked of
//! the monitor as a forwarded `mmap(0, len, prot, MAP_SHARED, fd, off)`:
//! it checks the descriptor as Linux does, answers an address in the
//! process's file-mapping range and sends the file on
//! `FILEMAP_CHANNEL_FD` (a [`FileMapGrant`] with the descriptor in
//! `SCM_RIGHTS`). The libos takes it (`recvmsg`, the one call the filter
//! allows there), maps it natively at that address — `mmap(addr, len, prot,
//! MAP_SHARED | MAP_FIXED, fd, off)`, which the filter allows only in the
//! range, for descriptors below `RESERVE_FD`, never executable — and
//! closes it. The pages are the file's: other processes of the tree and
//! native ones see every write at once, and futexes on them work (the host
//! kernel's).
//!
//! `munmap` there is forwarded (the monitor forgets the range) and done
//! natively; `mprotect` (without `PROT_EXEC`) and `msync` are native (the
//! kernel refuses a writable protection of a read-only descriptor's
//! mapping, as Linux does). A forked child maps its parent's mappings again
//! (`after_fork`: the monitor sends each one again). The monitor decides
//! and bounds everything; nothing here is trusted by it.
//!
//! On KVM (docs/kvm.md, "Live shared file mappings") the monitor maps the
//! file itself and gives the guest its pages (a memory slot): the
//! forwarded `mmap`'s answer is the mapping, nothing is sent; `munmap` and
//! `msync` are forwarded, `mprotect` goes through the protection doorbell,
//! and a forked child's VM holds its parent's mappings already.
//!
//! Without a range (an older monitor) the caller keeps the copy semantics
//! of `shared.rs`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cabin_abi::boot::{FileMapGrant, FILEMAP_CHANNEL_FD, FILEMAP_RESEND};

use super::errno;
use super::nr;
use super::thread::Lock;

const PAGE: u64 = 4096;
const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// Below this every descriptor of the child is one the monitor sent.
const SENT_BELOW: u64 = cabin_abi::boot::RESERVE_FD;

/// Whether this process (or the parent it was forked from) ever made one:
/// a child with none asks for nothing at `fork`.
static EVER: AtomicBool = AtomicBool::new(false);

/// KVM: the monitor maps the files (no channel, nothing native).
static KVM: AtomicBool = AtomicBool::new(false);

static START: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicU64 = AtomicU64::new(0);

/// One grant at a time: the monitor sends one message per request.
pub(super) static CHANNEL: Lock<()> = Lock::new(());

/// The range from the boot page (`len` 0: none); `kvm`: the monitor maps
/// the files itself.
pub(super) fn init(start: u64, len: u64, kvm: bool) {
    KVM.store(kvm, Ordering::Relaxed);
    let ok = start.is_multiple_of(PAGE) && len.is_multiple_of(PAGE) && start.checked_add(len).is_some();
    if ok && len != 0 {
        START.store(start, Ordering::Relaxed);
        LEN.store(len, Ordering::Release);
    }
}

pub(super) fn range() -> Option<(u64, u64)> {
    let len = LEN.load(Ordering::Acquire);
    (len != 0).then(|| (START.load(Ordering::Relaxed), len))
}

/// Whether `[addr, addr+len)` touches the file-mapping range.
pub(super) fn overlaps(addr: u64, len: u64) -> bool {
    range().is_some_and(|(start, rlen)| addr < start + rlen && addr.saturating_add(len) > start)
}

/// Whether `[addr, addr+len)` lies wholly inside the range.
fn inside(addr: u64, len: u64) -> bool {
    range().is_some_and(|(start, rlen)| {
        addr >= start && addr.checked_add(len).is_some_and(|e| e <= start + rlen)
    })
}

/// Linux's `struct msghdr`.
#[repr(C)]
pub(super) struct MsgHdr {
    pub(super) name: u64,
    pub(super) namelen: u32,
    pub(super) iov: u64,
    pub(super) iovlen: u64,
    pub(super) control: u64,
    pub(super) controllen: u64,
    pub(super) flags: i32,
}

/// Takes what the monitor just sent on the file channel: one `T` (a
/// [`FileMapGrant`] or a [`cabin_abi::boot::NetGrant`]) and the descriptor
/// with it. `ENOMEM` unless both came whole; a descriptor that came without
/// its whole message is closed.
pub(super) fn receive<T: Default>() -> Result<(T, u64), i64> {
    let mut grant = T::default();
    let mut iov = [&raw mut grant as u64, size_of::<T>() as u64];
    // A header (16 bytes) and one descriptor, 8-aligned.
    let mut control = [0u64; 3];
    let mut msg = MsgHdr {
        name: 0,
        namelen: 0,
        iov: iov.as_mut_ptr() as u64,
        iovlen: 1,
        control: control.as_mut_ptr() as u64,
        controllen: size_of_val(&control) as u64,
        flags: 0,
    };
    let args = [
        FILEMAP_CHANNEL_FD,
        &raw mut msg as u64,
        MSG_DONTWAIT | MSG_CMSG_CLOEXEC,
        cabin_abi::boot::FILEMAP_NATIVE_MAGIC,
        0,
        0,
    ];
    // SAFETY: `msg` and what it points at are this frame's, writable, as
    // long as the call says; the filter allows recvmsg on the channel.
    let n = unsafe { crate::sys::syscall6(nr::recvmsg, &args) };
    let fd = {
        let len = control[0];
        let level = control[1] as u32 as i32;
        let ty = (control[1] >> 32) as u32 as i32;
        (len == 20 && level == SOL_SOCKET && ty == SCM_RIGHTS).then_some(control[2] as u32 as u64)
    };
    match (n, fd) {
        (n, Some(fd)) if n == size_of::<T>() as i64 && fd < SENT_BELOW => Ok((grant, fd)),
        (_, Some(fd)) => {
            close(fd);
            Err(-errno::ENOMEM)
        }
        _ => Err(-errno::ENOMEM),
    }
}

/// Closes a descriptor the monitor sent (below `RESERVE_FD`; others are
/// not the program's to close natively).
pub(super) fn close(fd: u64) {
    if fd < SENT_BELOW {
        // SAFETY: a descriptor the monitor sent (below RESERVE_FD).
        unsafe { crate::sys::syscall6(nr::close, &[fd, cabin_abi::boot::FILEMAP_NATIVE_MAGIC, 0, 0, 0, 0]) };
    }
}

/// Maps a received grant natively; the descriptor is closed either way.
fn map_grant(g: &FileMapGrant, fd: u64) -> i64 {
    let ok = inside(g.addr, g.len) && g.addr.is_multiple_of(PAGE) && g.len != 0 && g.prot & !3 == 0;
    if !ok {
        close(fd);
        crate::die(b"cabin: the monitor's file mapping lies outside the file-mapping range; stopping\n");
    }
    // SAFETY: maps the sent file over file-mapping addresses, where no
    // libos memory lies; the filter allows exactly this form.
    let r = unsafe {
        crate::sys::syscall6(nr::mmap, &[g.addr, g.len, g.prot, MAP_SHARED | MAP_FIXED, fd, g.off])
    };
    close(fd);
    if r < 0 {
        r
    } else {
        0
    }
}

/// `mmap(NULL, len, prot, MAP_SHARED, fd, off)` of a file, `prot` without
/// `PROT_EXEC`, `off` page aligned, `len` not 0: the file's own pages, or
/// `None` when there is no range or the monitor does not serve it (the
/// caller copies).
pub(super) fn map(len: u64, prot: u64, fd: u64, off: u64) -> Option<i64> {
    range()?;
    let _one = CHANNEL.lock();
    let r = super::forward(nr::mmap, &[0, len, prot, MAP_SHARED, fd, off], 0);
    // No range on the monitor's side, or a policy that refuses the call:
    // the copy (the monitor's own checks never answer these).
    if r == -errno::ENOSYS || r == -errno::EPERM {
        return None;
    }
    if r < 0 {
        return Some(r);
    }
    let addr = r as u64;
    let plen = len.div_ceil(PAGE) * PAGE;
    if KVM.load(Ordering::Relaxed) {
        // Mapped by the monitor already; an answer outside the range is a
        // broken monitor.
        if !inside(addr, plen) || !addr.is_multiple_of(PAGE) {
            crate::die(b"cabin: the monitor's file mapping lies outside the file-mapping range; stopping\n");
        }
        return Some(r);
    }
    EVER.store(true, Ordering::SeqCst);
    let fail = |e: i64| {
        super::forward(nr::munmap, &[addr, plen, 0, 0, 0, 0], 0);
        Some(e)
    };
    let (g, sent) = match receive::<FileMapGrant>() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if g.addr != addr || g.len != plen || g.prot != prot || g.off != off {
        close(sent);
        crate::die(b"cabin: the monitor's file mapping is not the one asked for; stopping\n");
    }
    let m = map_grant(&g, sent);
    if m < 0 {
        return fail(m);
    }
    Some(r)
}

/// `munmap` of file-mapping addresses: the monitor forgets them, then they
/// are unmapped natively.
pub(super) fn munmap(addr: u64, len: u64) -> i64 {
    let Some(plen) = len.checked_add(PAGE - 1).map(|l| l / PAGE * PAGE).filter(|&l| l != 0) else {
        return -errno::EINVAL;
    };
    if !addr.is_multiple_of(PAGE) || !inside(addr, plen) {
        return -errno::EINVAL;
    }
    let r = super::forward(nr::munmap, &[addr, plen, 0, 0, 0, 0], 0);
    if r < 0 || KVM.load(Ordering::Relaxed) {
        return r;
    }
    // SAFETY: file-mapping addresses only (checked above), no libos memory.
    unsafe { crate::sys::syscall6(nr::munmap, &[addr, plen, 0, 0, 0, 0]) }
}

/// `mprotect` of file-mapping addresses (`PROT_EXEC` refused by the
/// caller): native, so the kernel answers as Linux does.
pub(super) fn mprotect(addr: u64, len: u64, prot: u64) -> i64 {
    if !inside(addr, len) {
        return -errno::ENOMEM;
    }
    if KVM.load(Ordering::Relaxed) {
        return super::mem::kvm_protect(addr, len, prot);
    }
    // SAFETY: file-mapping addresses only, no libos memory; never
    // executable (the filter refuses it too).
    unsafe { crate::sys::syscall6(nr::mprotect, &[addr, len, prot, 0, 0, 0]) }
}

/// `msync` of file-mapping addresses: native (`MS_SYNC` writes the pages
/// to the disk as Linux does).
pub(super) fn msync(addr: u64, len: u64, flags: u64) -> i64 {
    if !inside(addr, len) {
        return -errno::ENOMEM;
    }
    if KVM.load(Ordering::Relaxed) {
        return super::forward(nr::msync, &[addr, len, flags, 0, 0, 0], 0);
    }
    // SAFETY: msync changes no memory.
    unsafe { crate::sys::syscall6(nr::msync, &[addr, len, flags, 0, 0, 0]) }
}

/// A new child process: its host process has none of the mappings; the
/// monitor sends each inherited one again. `false` if one fails.
pub(super) fn after_fork() -> bool {
    let Some((start, _)) = range() else { return true };
    if !EVER.load(Ordering::SeqCst) || KVM.load(Ordering::Relaxed) {
        return true;
    }
    let _one = CHANNEL.lock();
    let mut at = start;
    loop {
        let r = super::forward(nr::mmap, &[at, 0, 0, MAP_SHARED | MAP_FIXED, FILEMAP_RESEND, 0], 0);
        if r == -errno::ENOENT || r == -errno::ENOSYS {
            return true;
        }
        if r < 0 {
            return false;
        }
        let Ok((g, fd)) = receive::<FileMapGrant>() else { return false };
        if g.addr != r as u64 || g.addr < at {
            close(fd);
            return false;
        }
        if map_grant(&g, fd) < 0 {
            return false;
        }
        at = g.addr + g.len;
    }
}
