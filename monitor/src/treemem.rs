//! One memory bound for the whole confined tree (issue 14, docs/processes.md
//! "One memory bound for the tree").
//!
//! Each domain is sized to the run's memory bound, as `RLIMIT_AS` is per
//! process; without more, a tree of `processes` domains could make the host
//! hold the bound that many times. The tree's memory is therefore **measured
//! as the host holds it** — what the host allocates only when touched (the
//! process backend's memfd pages, KVM guest memory) counts once it is touched
//! — and bounded twice:
//!
//! - **at fork and exec** (exact, before anything is copied): a fork whose
//!   copy (the parent's resident memory) would take the tree past the bound
//!   fails with `ENOMEM` and no child; so does an `execve` whose image file
//!   would (before the point of no return);
//! - **while it runs** (a watcher, [`crate::tree::Tree::watch_memory`]): what
//!   the processes touch after that is summed every few milliseconds and the
//!   whole tree is stopped with the memory limit's message when the sum
//!   passes the bound. The step shrinks as the sum nears the bound, so the
//!   overshoot is what the tree can touch in about a millisecond.
//!
//! A [`Meter`] is how one domain's resident memory is read: the allocated
//! blocks of a memfd (`fstat`), or the resident pages of an anonymous
//! mapping (`mincore`). Reading one never faults and never allocates host
//! memory for the program.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Bytes of host memory a domain holds now (memory it was handed and
/// touched: the host allocates the rest only when touched).
pub trait Meter: Send + Sync + std::fmt::Debug {
    /// The domain's resident bytes now (a snapshot; 0 when unknown).
    fn resident(&self) -> u64;
}

/// Allocated bytes of the file behind `fd` (a memfd: the pages touched and
/// not punched out), 0 if `fstat` fails.
pub fn fd_allocated(fd: BorrowedFd<'_>) -> u64 {
    // SAFETY: an all-zero `stat` is a valid value to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into a local.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return 0;
    }
    (st.st_blocks.max(0) as u64).saturating_mul(512)
}

/// The meter of a domain whose memory is one memfd: a descriptor of its
/// own on it (so it reads the right file whatever the domain does).
#[derive(Debug)]
pub struct FdMeter(OwnedFd);

impl FdMeter {
    /// A meter of the file `fd` names (`None`: `dup` failed).
    pub fn new(fd: BorrowedFd<'_>) -> Option<FdMeter> {
        fd.try_clone_to_owned().ok().map(FdMeter)
    }
}

impl Meter for FdMeter {
    fn resident(&self) -> u64 {
        use std::os::fd::AsFd;
        fd_allocated(self.0.as_fd())
    }
}

/// Host page size the meters count in.
const PAGE: usize = 4096;

/// Resident bytes of the mapping `[base, base + len)` (`mincore`: a page
/// the host backs now, 4 KiB each; a transparent huge page counts as its
/// 512 small ones). 0 if `mincore` fails.
///
/// # Safety
///
/// `[base, base + len)` is one live mapping of the calling process, page
/// aligned (mincore only reads the page tables; it never touches the
/// memory).
pub unsafe fn mapping_resident(base: *const u8, len: usize) -> u64 {
    const CHUNK: usize = 16 * 1024; // pages per call: 64 MiB, a 16 KiB vector
    let mut vec = vec![0u8; CHUNK];
    let pages = len / PAGE;
    let mut at = 0usize;
    let mut resident = 0u64;
    while at < pages {
        let n = (pages - at).min(CHUNK);
        // SAFETY: the range lies inside the caller's mapping (at + n <=
        // pages); `vec` holds n bytes.
        let r =
            unsafe { libc::mincore(base.add(at * PAGE) as *mut libc::c_void, n * PAGE, vec.as_mut_ptr()) };
        if r != 0 {
            return 0;
        }
        resident += vec[..n].iter().filter(|&&b| b & 1 != 0).count() as u64;
        at += n;
    }
    resident * PAGE as u64
}

/// How far the watcher sleeps at most, and at least.
pub const STEP_MAX: Duration = Duration::from_millis(20);
/// See [`STEP_MAX`].
pub const STEP_MIN: Duration = Duration::from_millis(1);
/// How far the watcher sleeps while the tree is one process with nothing
/// in the shared window: that process's domain is bounded on its own (its
/// arena and reservations by the same bound), so the watcher only guards
/// what it cannot see (a fork wakes it at once). Every read of a KVM meter
/// walks the guest's memory (`mincore`, ~0.1-0.3 ms for 256 MiB): at
/// [`STEP_MAX`] a lone idle program paid it 50 times a second.
pub const STEP_ALONE: Duration = Duration::from_millis(200);
/// How fast the watcher assumes a tree can touch fresh memory (both CPUs
/// of this machine class writing fresh pages; measured about 3-6 GiB/s
/// each, docs/processes.md): 16 MiB a millisecond.
pub const TOUCH_BYTES_PER_MS: u64 = 16 << 20;

/// How long the watcher may sleep when the tree holds `resident` of
/// `bound` bytes: the time the tree needs to touch the rest at
/// [`TOUCH_BYTES_PER_MS`], between [`STEP_MIN`] and [`STEP_MAX`].
pub fn step(resident: u64, bound: u64) -> Duration {
    let ms = bound.saturating_sub(resident) / TOUCH_BYTES_PER_MS;
    Duration::from_millis(ms).clamp(STEP_MIN, STEP_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_shrinks_near_the_bound() {
        let mib = 1u64 << 20;
        assert_eq!(step(0, 1 << 30), STEP_MAX);
        assert_eq!(step(60 * mib, 64 * mib), STEP_MIN);
        assert_eq!(step(70 * mib, 64 * mib), STEP_MIN, "past the bound");
        assert_eq!(step(0, 64 * mib), Duration::from_millis(4));
    }

    #[test]
    fn meters_count_touched_pages_only() {
        let len = 8 << 20;
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: no huge pages, so the count is per touched 4 KiB page.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        let base = p as *mut u8;
        // SAFETY: the mapping just made, len bytes.
        assert_eq!(unsafe { mapping_resident(base, len) }, 0);
        for k in 0..5 {
            // SAFETY: inside the mapping.
            unsafe { base.add(k * 3 * PAGE).write_volatile(1) };
        }
        // SAFETY: as above.
        assert_eq!(unsafe { mapping_resident(base, len) }, 5 * PAGE as u64);
        // SAFETY: unmaps the mapping made above.
        unsafe { libc::munmap(p, len) };

        // SAFETY: memfd_create reads the NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"meter-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        use std::os::fd::AsFd;
        let meter = FdMeter::new(fd.as_fd()).expect("dup");
        // SAFETY: sizes the file.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 1 << 20) }, 0);
        assert_eq!(meter.resident(), 0, "a hole costs nothing");
        let buf = vec![7u8; 3 * PAGE];
        // SAFETY: writes 3 pages' worth from a local buffer.
        let wrote = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        assert_eq!(wrote, buf.len() as isize);
        assert_eq!(meter.resident(), 3 * PAGE as u64);
    }
}
