//! The program's file descriptors: virtual numbers mapped to host
//! descriptors the monitor owns. The program never sees a host number and
//! can only name descriptors it was given.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Highest number of open descriptors (`RLIMIT_NOFILE` as the program sees it).
pub const MAX_FDS: usize = 1024;

/// One open descriptor.
#[derive(Debug)]
pub struct Entry {
    /// The host descriptor (the monitor opens everything `O_CLOEXEC`).
    pub fd: OwnedFd,
    /// The program's `FD_CLOEXEC` bit (bookkeeping: there is no exec).
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
#[derive(Debug, Default)]
pub struct FdTable {
    slots: Vec<Option<Entry>>,
}

impl FdTable {
    /// The entry for `vfd`.
    pub fn get(&self, vfd: u64) -> Option<&Entry> {
        self.slots.get(usize::try_from(vfd).ok()?)?.as_ref()
    }

    /// The entry for `vfd`, mutably.
    pub fn get_mut(&mut self, vfd: u64) -> Option<&mut Entry> {
        self.slots.get_mut(usize::try_from(vfd).ok()?)?.as_mut()
    }

    /// How many descriptors are open (counts the table: call only when needed).
    pub fn open_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The host descriptor of `vfd`.
    pub fn host(&self, vfd: u64) -> Option<RawFd> {
        self.get(vfd).map(|e| e.fd.as_raw_fd())
    }

    /// Puts `e` at the lowest free number `>= min`; `None` when full.
    pub fn insert(&mut self, e: Entry, min: usize) -> Option<u64> {
        let mut i = min;
        while i < MAX_FDS {
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
        if i >= MAX_FDS {
            return false;
        }
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(e);
        true
    }

    /// Removes (and closes) `vfd`.
    pub fn remove(&mut self, vfd: u64) -> Option<Entry> {
        self.slots.get_mut(usize::try_from(vfd).ok()?)?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            cloexec: false,
            path: None,
            change: None,
        }
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
    }
}
