//! Read-ahead for files the program streams through small reads.
//!
//! A forwarded `read` costs a ring round trip, and its bytes are written by
//! the monitor's worker on another CPU, so the program then pulls every
//! cache line across. Programs that stream a file in 4 KiB reads (checksums,
//! decompressors, `sort`) pay that on every block: on the 2-vCPU test
//! machine a confined 4 KiB read of a cached file kept the program waiting
//! about 2.7 µs, against 1.2 µs for the same read natively.
//!
//! So, when the monitor allows it ([`BOOT_FLAG_READ_AHEAD`]: no policy, no
//! trace and no audit, which must see the program's own calls, and not the
//! synchronous forwarding mode), the libos reads such a file [`CHUNK`]
//! bytes at a time and serves the program's reads from that staging buffer
//! with a local copy. A file qualifies when the program opened it itself,
//! read-only, it is a regular file, and the program has made a few small
//! reads of it in a row.
//!
//! What the program can observe stays as it was:
//!
//! - Offsets: the monitor's descriptor is ahead of the program's by the
//!   staged bytes. Before any forwarded call that could see or move that
//!   offset, or change the file, the libos *flushes*: it moves the offset
//!   back (`lseek(fd, -unread, SEEK_CUR)`) and drops the staged bytes. Only
//!   calls known not to (reads of other descriptors, `stat`s, writes to
//!   another file or to a pipe or terminal, ...) leave the stage alone. A
//!   descriptor that was duplicated never qualifies again (duplicates share
//!   the offset).
//! - Buffers: staged bytes are copied only into a buffer the monitor has
//!   already written for this file (so it is writable program memory); a
//!   read into any other buffer goes to the monitor, which checks it (a wild
//!   pointer still ends the program, as it does without read-ahead).
//!   Unmapping memory forgets that buffer.
//! - Data: a read returns the bytes a direct read would, in order, as many
//!   as asked up to the end of the file.
//!
//! A copy loop (`cat`, `cp`: read a block, write the same buffer) is read
//! ahead too, although its bytes then cross between the CPUs twice (into
//! the program by the libos's copy, back by the monitor's `write`): a 4 KiB
//! copy of a cached 100 MB file took 1.07× native with read-ahead against
//! 1.14× with copy loops detected and left to direct reads (7 interleaved
//! runs each, 2026-11-26): the round trips saved weigh more.
//!
//! The one difference: bytes staged up to [`CHUNK`] ahead are as old as the
//! read that staged them, so a write made meanwhile *by another process*
//! to that part of the file is not seen (writes through the program's own
//! descriptors flush first). Linux promises no atomicity between separate
//! reads, but a program that polls a file another process rewrites in place
//! should be run with `--trace` or a policy, which turn read-ahead off.

use core::sync::atomic::{AtomicBool, Ordering};

use cabin_abi::syscalls::{self, FileOffset};

use super::{nr, Global};

/// Bytes read ahead at a time.
pub const CHUNK: usize = 128 * 1024;
/// Reads of at most this many bytes are candidates (larger reads are
/// efficient as they are).
const SMALL: u64 = 16 * 1024;
/// Small reads of one descriptor in a row before it is staged.
const STREAK: u32 = 3;
/// Descriptors tracked; higher ones never qualify.
const FDS: usize = 256;

const O_ACCMODE: u64 = 3;
const O_RDONLY: u64 = 0;
const O_TRUNC: u64 = 0o1000;
const O_DIRECT: u64 = 0o40000;
const O_PATH: u64 = 0o10000000;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const SEEK_CUR: u64 = 1;
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// `READ_AHEAD` is on for this run (set once by `init`).
static ON: AtomicBool = AtomicBool::new(false);

/// What the libos knows about one descriptor.
#[derive(Clone, Copy)]
struct Fd {
    /// Opened read-only by the program itself (and never duplicated).
    own_rdonly: bool,
    /// `Some(is_regular, dev, ino)` once `fstat` was asked.
    file: Option<(bool, u64, u64)>,
}

const FD_UNKNOWN: Fd = Fd { own_rdonly: false, file: None };

struct State {
    fds: [Fd; FDS],
    /// The descriptor being staged (-1: none) and the staged bytes
    /// `buf[pos..len]`.
    fd: i64,
    pos: usize,
    len: usize,
    /// The program buffer the monitor last wrote for this file.
    valid: (u64, u64),
    /// Small reads of `last_fd` in a row.
    last_fd: i64,
    streak: u32,
}

static STATE: Global<State> = Global::new(State {
    fds: [FD_UNKNOWN; FDS],
    fd: -1,
    pos: 0,
    len: 0,
    valid: (0, 0),
    last_fd: -1,
    streak: 0,
});

#[repr(C, align(64))]
struct Staging([u8; CHUNK]);

static STAGING: Global<Staging> = Global::new(Staging([0; CHUNK]));

/// Turns read-ahead on. Called once by `init`.
pub(super) fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// Turns read-ahead off for good, giving staged bytes back: called before
/// the program's second thread starts (read-ahead keeps one stage for the
/// whole program and is not thread-safe), while the caller is the only
/// thread.
pub(super) fn disable() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: the only thread (see above); no other reference is alive.
    flush(unsafe { STATE.get() });
    ON.store(false, Ordering::Relaxed);
}

/// Sends one call to the monitor (the checked path, no read-ahead hooks).
fn call(nr: u64, args: [u64; 6]) -> i64 {
    super::forward_checked(nr, &args, 0, 0)
}

fn slot(fd: u64) -> Option<usize> {
    usize::try_from(fd).ok().filter(|&i| i < FDS)
}

/// `(is_regular, dev, ino)` of `fd`, asked once and remembered.
fn file_of(st: &mut State, fd: u64) -> Option<(bool, u64, u64)> {
    let i = slot(fd)?;
    if st.fds[i].file.is_none() {
        // struct stat: st_dev at 0, st_ino at 8, st_mode (u32) at 24; 144 bytes.
        let mut buf = [0u64; 18];
        if call(nr::fstat, [fd, buf.as_mut_ptr() as u64, 0, 0, 0, 0]) != 0 {
            return None;
        }
        let mode = buf[3] as u32;
        st.fds[i].file = Some((mode & S_IFMT == S_IFREG, buf[0], buf[1]));
    }
    st.fds[i].file
}

/// Gives the staged bytes back to the file (the monitor's offset moves back
/// to where the program's reads stopped) and empties the stage; the file
/// stays the staged one.
fn give_back(st: &mut State) {
    let unread = (st.len - st.pos) as i64;
    if st.fd >= 0 && unread > 0 {
        // A regular file's offset can always move back over bytes it just
        // read; the result can only be an error if the program broke the
        // descriptor meanwhile, and then there is nothing to give back to.
        call(nr::lseek, [st.fd as u64, unread.wrapping_neg() as u64, SEEK_CUR, 0, 0, 0]);
    }
    st.pos = 0;
    st.len = 0;
    st.valid = (0, 0);
}

/// Gives the staged bytes back and stops staging the file.
fn flush(st: &mut State) {
    give_back(st);
    st.fd = -1;
}

/// Forgets what is known about descriptor `fd` (closed, replaced, new).
fn forget(st: &mut State, fd: u64) {
    if let Some(i) = slot(fd) {
        st.fds[i] = FD_UNKNOWN;
    }
    if st.last_fd == fd as i64 {
        st.last_fd = -1;
        st.streak = 0;
    }
}

/// Serves `read(args)` from the stage when it can; `None`: forward it.
pub(super) fn read(args: &[u64; 6]) -> Option<i64> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: single thread; no other reference to STATE is alive (the
    // calls below go straight to the ring).
    let st = unsafe { STATE.get() };
    let (fd, buf, n) = (args[0], args[1], args[2]);
    if st.fd != fd as i64 {
        // Another descriptor: its own offset is untouched by our stage, but
        // keep at most one file staged.
        if n > SMALL || n == 0 {
            return None;
        }
        if st.last_fd != fd as i64 {
            st.last_fd = fd as i64;
            st.streak = 0;
        }
        st.streak += 1;
        let own = slot(fd).is_some_and(|i| st.fds[i].own_rdonly);
        if st.streak < STREAK || !own || !matches!(file_of(st, fd), Some((true, _, _))) {
            return None;
        }
        flush(st);
        st.fd = fd as i64;
    }
    if n == 0 {
        return None;
    }
    let end = buf.checked_add(n)?;
    let mut done = 0u64;
    if st.valid.0 <= buf && end <= st.valid.1 {
        // SAFETY: single thread; the stage is only touched here.
        let stage = unsafe { STAGING.get() };
        let k = (n as usize).min(st.len - st.pos);
        // SAFETY: [buf, buf+k) lies in a buffer the monitor wrote for this
        // file since memory was last unmapped, so it is writable program
        // memory; pos + k <= len <= CHUNK. `copy` (not `_nonoverlapping`):
        // a program may pass a buffer inside the stage itself.
        unsafe { core::ptr::copy(stage.0.as_ptr().add(st.pos), buf as *mut u8, k) };
        st.pos += k;
        done = k as u64;
        if done == n {
            return Some(n as i64);
        }
    } else if st.len > st.pos {
        // A buffer the monitor has not checked: give the stage back first,
        // so the refill below reads from where the program is.
        give_back(st);
    }
    // Refill: the rest of this read straight into the program's buffer
    // (the monitor checks it) and the next chunk into the stage, in one call.
    let rest = n - done;
    // SAFETY: single thread.
    let stage = unsafe { STAGING.get() }.0.as_mut_ptr() as u64;
    let iov: [u64; 4] = [buf + done, rest, stage, CHUNK as u64];
    let r = call(nr::readv, [fd, iov.as_ptr() as u64, 2, 0, 0, 0]);
    st.pos = 0;
    st.len = 0;
    if r < 0 {
        return Some(if done > 0 { done as i64 } else { r });
    }
    let r = r as u64;
    if r > rest + CHUNK as u64 {
        crate::die(b"cabin: the monitor's reply breaks the system-call contract; stopping\n");
    }
    if r <= rest {
        st.valid = (0, 0);
        return Some((done + r) as i64);
    }
    st.len = (r - rest) as usize;
    st.valid = (buf, end);
    Some(n as i64)
}

/// Before a forwarded call other than a staged `read`: flushes the stage
/// unless the call can neither see the staged file's offset nor change the
/// file.
pub(super) fn before(nr: u64, args: &[u64; 6]) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: single thread (see `read`).
    let st = unsafe { STATE.get() };
    if st.fd < 0 {
        return;
    }
    let staged = st.fd as u64;
    // The table says which calls cannot see or move the staged offset
    // (`Syscall::offset`); a few others are harmless for some arguments.
    let harmless = match syscalls::route(nr).offset() {
        FileOffset::Untouched => true,
        // Reads and status of other descriptors.
        FileOffset::OwnFd => args[0] != staged,
        FileOffset::Unknown => unknown_is_harmless(st, nr, args, staged),
    };
    if !harmless {
        flush(st);
    }
}

/// Whether call `nr`, which may touch offsets or files in general, leaves
/// the stage of descriptor `staged` alone with these arguments.
fn unknown_is_harmless(st: &mut State, nr: u64, args: &[u64; 6], staged: u64) -> bool {
    match nr {
        // Opening read-only without truncating changes nothing.
        nr::open => args[1] & (O_ACCMODE | O_TRUNC) == O_RDONLY,
        nr::openat => args[2] & (O_ACCMODE | O_TRUNC) == O_RDONLY,
        // Writes to another file, a pipe or a terminal.
        nr::write | nr::writev | nr::pwrite64 | nr::pwritev => {
            let target = file_of(st, args[0]);
            let ours = st.fds[staged as usize].file;
            match (target, ours) {
                (Some((false, _, _)), _) => true,
                (Some((true, dev, ino)), Some((_, d, i))) => (dev, ino) != (d, i),
                _ => false,
            }
        }
        _ => false,
    }
}

/// After a forwarded call returned `r`: keeps the descriptor table right.
pub(super) fn after(nr: u64, args: &[u64; 6], r: i64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: single thread (see `read`).
    let st = unsafe { STATE.get() };
    match nr {
        nr::open | nr::openat if r >= 0 => {
            forget(st, r as u64);
            let flags = if nr == nr::open { args[1] } else { args[2] };
            if let Some(i) = slot(r as u64) {
                st.fds[i].own_rdonly = flags & O_ACCMODE == O_RDONLY && flags & (O_DIRECT | O_PATH) == 0;
            }
        }
        nr::close => forget(st, args[0]),
        nr::dup | nr::dup2 | nr::dup3 | nr::fcntl => {
            if nr == nr::fcntl && !matches!(args[1], F_DUPFD | F_DUPFD_CLOEXEC) {
                return;
            }
            // The original now shares its offset with a duplicate: never
            // stage it again; the duplicate is a descriptor we know nothing of.
            if let Some(i) = slot(args[0]) {
                st.fds[i].own_rdonly = false;
            }
            if r >= 0 {
                forget(st, r as u64);
            }
        }
        nr::close_range => {
            for fd in 0..FDS as u64 {
                forget(st, fd);
            }
        }
        _ => {
            // Any other call that hands out a descriptor (pipe, socket,
            // eventfd, ...) does so with a number that was closed first:
            // `close` already forgot it.
        }
    }
}

/// Memory was unmapped or moved: staged bytes may no longer be copied into
/// the buffer the monitor checked.
pub(super) fn memory_changed() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: single thread (see `read`).
    unsafe { STATE.get() }.valid = (0, 0);
}
