//! The program's file descriptors: virtual numbers mapped to host
//! descriptors the monitor owns. The program never sees a host number and
//! can only name descriptors it was given.
//!
//! Each program descriptor holds one of the monitor's real ones, so the
//! table is sized from what the monitor really has ([`program_capacity`]):
//! the program meets `EMFILE` while the monitor still has
//! [`MONITOR_RESERVE`] descriptors for itself.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Once};

use super::locks::LockOwners;

/// Most descriptors a program can have open (`RLIMIT_NOFILE` as it sees
/// it, when the monitor's own limit allows).
pub const MAX_FDS: usize = 1024;

/// Descriptors the monitor keeps for itself beyond those it holds when the
/// program starts: the statistics file written at the end, temporaries a
/// call holds while it is served (`openat2` results, parents of a path,
/// `/proc` lookups: a few at a time), and room to spare.
pub const MONITOR_RESERVE: usize = 64;

/// Why the program's descriptor table cannot be sized.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// `getrlimit` failed.
    #[error("getrlimit(RLIMIT_NOFILE) failed: {0}")]
    Rlimit(#[source] std::io::Error),
    /// The limit leaves the program too few descriptors.
    #[error(
        "cannot lay out the domain: too few file descriptors: RLIMIT_NOFILE is {soft} (hard {hard}), the monitor \
         holds {open} and keeps {MONITOR_RESERVE} for itself, which leaves the program {capacity}; help: raise it \
         with `ulimit -n`"
    )]
    TooFew {
        /// The soft limit.
        soft: usize,
        /// The hard limit.
        hard: u64,
        /// Descriptors the monitor holds.
        open: usize,
        /// What that leaves the program.
        capacity: usize,
    },
}

/// The smallest table worth running a program with.
const MIN_CAPACITY: usize = 16;

/// Raises the monitor's `RLIMIT_NOFILE` soft limit to its hard limit (once
/// per process; every run calls this), then returns how many descriptors
/// the program's table may hold: [`MAX_FDS`], or fewer when the limit,
/// less the descriptors the monitor holds now and [`MONITOR_RESERVE`],
/// leaves fewer. Call it once the domain is set up (its descriptors are
/// then counted).
pub fn program_capacity() -> Result<usize, CapacityError> {
    static RAISE: Once = Once::new();
    RAISE.call_once(|| {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: writes one rlimit into a local; then sets the limit from it.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
                rl.rlim_cur = rl.rlim_max;
                // A hard limit above the kernel's nr_open fails: keep the soft one then.
                libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            }
        }
    });
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: writes one rlimit into a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(CapacityError::Rlimit(std::io::Error::last_os_error()));
    }
    let soft = usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX);
    let open = open_descriptors();
    let capacity = soft.saturating_sub(open).saturating_sub(MONITOR_RESERVE).min(MAX_FDS);
    if capacity < MIN_CAPACITY {
        return Err(CapacityError::TooFew { soft, hard: rl.rlim_max, open, capacity });
    }
    Ok(capacity)
}

/// How many descriptors this process has open (from /proc/self/fd; the
/// soft limit when that cannot be read, which leaves the program nothing).
fn open_descriptors() -> usize {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is listed too.
        Ok(d) => d.count().saturating_sub(1),
        Err(_) => usize::MAX,
    }
}

/// One open descriptor.
#[derive(Debug)]
pub struct Entry {
    /// The host descriptor (the monitor opens everything `O_CLOEXEC`),
    /// shared so that a blocking wait (`poll`, `epoll_wait`, ...) keeps it
    /// open without holding the table: a `close` by another program thread
    /// during the wait then closes it when the wait ends, as Linux keeps
    /// the file of a descriptor closed under a waiter.
    pub fd: Arc<OwnedFd>,
    /// The program's `FD_CLOEXEC` bit (closed at a successful `execve`).
    pub cloexec: bool,
    /// The absolute program path it was opened with, when known (used for
    /// `*at` calls relative to it and for `fchdir`).
    pub path: Option<Vec<u8>>,
    /// Whether `fchmod`/`fchown`/`futimens` may change the object: known
    /// at open (`Some`), or `None`: look again by its path
    /// ([`super::fs::FsPolicy::fd_changeable`]).
    pub change: Option<bool>,
}

/// Virtual fd number → entry.
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Entry>>,
    /// The program's POSIX lock descriptions: dropped with any descriptor
    /// of their file.
    pub(super) locks: LockOwners,
    /// Numbers are below this (`RLIMIT_NOFILE` as the program sees it).
    max: usize,
}

impl Default for FdTable {
    fn default() -> FdTable {
        FdTable { slots: Vec::new(), locks: LockOwners::default(), max: MAX_FDS }
    }
}

impl FdTable {
    /// A child process's table (fork, docs/processes.md): the same numbers
    /// naming the same host descriptors (shared open file descriptions:
    /// one offset, one set of status flags), each with its own
    /// `FD_CLOEXEC` bit from now on.
    pub fn fork(&self) -> FdTable {
        let slots = self
            .slots
            .iter()
            .map(|e| {
                e.as_ref().map(|e| Entry {
                    fd: e.fd.clone(),
                    cloexec: e.cloexec,
                    path: e.path.clone(),
                    change: e.change,
                })
            })
            .collect();
        // Record locks are not inherited (POSIX): the child starts with no
        // lock descriptions of its own (super::locks).
        FdTable { slots, locks: LockOwners::default(), max: self.max }
    }

    /// Descriptor numbers are below this: the program's `RLIMIT_NOFILE`.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sets [`FdTable::max`] (at most [`MAX_FDS`]); descriptors at or above
    /// it are closed (there are none when this is called before the program starts).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_FDS);
        self.slots.truncate(self.max);
    }

    /// The entry for `vfd`.
    pub fn get(&self, vfd: u64) -> Option<&Entry> {
        self.slots.get(usize::try_from(vfd).ok()?)?.as_ref()
    }

    /// The entry for `vfd`, mutably.
    pub fn get_mut(&mut self, vfd: u64) -> Option<&mut Entry> {
        self.slots.get_mut(usize::try_from(vfd).ok()?)?.as_mut()
    }

    /// The size Linux's descriptor table would have for this program: 64
    /// slots, grown (never shrunk) in powers of two of 128 to hold the
    /// highest number ever used (`alloc_fdtable`), within [`FdTable::max`].
    /// `select` clips its `nfds` to it, as Linux does.
    pub fn linux_size(&self) -> usize {
        let high = self.slots.len();
        let size = if high <= 64 { 64 } else { ((high - 1) / 128 + 1).next_power_of_two() * 128 };
        size.min(self.max)
    }

    /// How many descriptors are open (counts the table: call only when needed).
    pub fn open_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The host descriptor of `vfd`.
    pub fn host(&self, vfd: u64) -> Option<RawFd> {
        self.get(vfd).map(|e| e.fd.as_raw_fd())
    }

    /// The host descriptor of `vfd`, held open for as long as the caller
    /// keeps it (a wait that must not hold the table).
    pub fn hold(&self, vfd: u64) -> Option<Arc<OwnedFd>> {
        self.get(vfd).map(|e| e.fd.clone())
    }

    /// Puts `e` at the lowest free number `>= min`; `None` when full.
    pub fn insert(&mut self, e: Entry, min: usize) -> Option<u64> {
        let mut i = min;
        while i < self.max {
            if i >= self.slots.len() {
                self.slots.resize_with(i + 1, || None);
            }
            if self.slots[i].is_none() {
                self.slots[i] = Some(e);
                return Some(i as u64);
            }
            i += 1;
        }
        None
    }

    /// Puts `e` at `vfd`, closing what was there. `false` if out of range.
    pub fn insert_at(&mut self, vfd: u64, e: Entry) -> bool {
        let Ok(i) = usize::try_from(vfd) else { return false };
        if i >= self.max {
            return false;
        }
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if let Some(old) = self.slots[i].replace(e) {
            self.locks.released_by_close(old.fd.as_raw_fd());
        }
        true
    }

    /// A host descriptor of the program's open for reading and writing on
    /// the file (`st_dev`, `st_ino`), if it holds one (for the lock
    /// description: `super::locks`).
    pub(super) fn read_write_of(&self, dev: u64, ino: u64) -> Option<RawFd> {
        self.slots.iter().flatten().map(|e| e.fd.as_raw_fd()).find(|&fd| {
            // SAFETY: touches no memory.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            fl >= 0
                && fl & (libc::O_ACCMODE | libc::O_PATH) == libc::O_RDWR
                && super::fs::fstat(fd).is_ok_and(|st| (st.st_dev, st.st_ino) == (dev, ino))
        })
    }

    /// `execve` succeeded: closes every descriptor whose `FD_CLOEXEC` bit is
    /// set (releasing their POSIX locks as `close` does).
    pub fn close_on_exec(&mut self) {
        let marked: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| e.cloexec))
            .map(|(i, _)| i as u64)
            .collect();
        for vfd in marked {
            self.remove(vfd);
        }
    }

    /// Removes (and closes) `vfd`.
    /// Closing any descriptor of a file releases the program's POSIX locks
    /// on it.
    pub fn remove(&mut self, vfd: u64) -> Option<Entry> {
        let e = self.slots.get_mut(usize::try_from(vfd).ok()?)?.take()?;
        self.locks.released_by_close(e.fd.as_raw_fd());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            fd: Arc::new(std::fs::File::open("/dev/null").unwrap().into()),
            cloexec: false,
            path: None,
            change: None,
        }
    }

    #[test]
    fn a_forked_table_shares_descriptions_but_not_numbers() {
        let mut t = FdTable::default();
        let a = t.insert(entry(), 0).expect("room");
        let b = t.insert(entry(), 0).expect("room");
        let mut child = t.fork();
        assert_eq!(child.host(a), t.host(a), "the same host descriptor");
        assert!(child.remove(b).is_some());
        assert!(t.get(b).is_some(), "the child's close is not the parent's");
        child.get_mut(a).expect("a").cloexec = true;
        assert!(!t.get(a).expect("a").cloexec, "FD_CLOEXEC is per table");
        let fd = t.hold(a).expect("a");
        assert_eq!(Arc::strong_count(&fd), 3, "held by both tables and this test");
        drop(t);
        assert_eq!(Arc::strong_count(&fd), 2, "the child keeps it open");
    }

    #[test]
    fn lowest_free_and_limits() {
        let mut t = FdTable::default();
        assert_eq!(t.insert(entry(), 0), Some(0));
        assert_eq!(t.insert(entry(), 0), Some(1));
        assert_eq!(t.insert(entry(), 5), Some(5));
        assert!(t.remove(0).is_some());
        assert_eq!(t.insert(entry(), 0), Some(0));
        assert!(t.get(u64::MAX).is_none());
        assert!(!t.insert_at(MAX_FDS as u64, entry()));
        assert!(t.insert_at(7, entry()));
        assert!(t.host(7).is_some());
        assert!(t.insert(entry(), MAX_FDS).is_none());
        t.set_max(8);
        assert!(t.host(7).is_some());
        assert!(!t.insert_at(8, entry()));
        for want in [2, 3, 4, 6] {
            assert_eq!(t.insert(entry(), 0), Some(want));
        }
        assert!(t.insert(entry(), 0).is_none(), "full at 8");
    }

    #[test]
    fn capacity_leaves_the_monitor_its_reserve() {
        let cap = program_capacity().expect("this process has descriptors to spare");
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: writes one rlimit into a local.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        assert_eq!(rl.rlim_cur, rl.rlim_max, "the soft limit was raised to the hard one");
        assert!(cap <= MAX_FDS);
        assert!(cap as u64 + MONITOR_RESERVE as u64 <= rl.rlim_cur, "{cap} + reserve within {}", rl.rlim_cur);
    }
}
