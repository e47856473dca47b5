//! Guest memory, and the program's address space on top of it.
//!
//! [`GuestMemory`] is the one host mapping behind the guest's physical
//! memory. The guest can write it at any time, so the monitor never holds a
//! reference into it: every access is a bounds-checked, overflow-checked
//! volatile copy in or out ([`GuestMemory::read`], [`GuestMemory::write`]).
//!
//! [`AddressSpace`] is the program's view: the list of user regions the
//! monitor mapped in the page tables (it built them, so it knows the
//! translation without walking them), each with its permissions. The
//! syscall service turns a program pointer into guest-physical ranges only
//! through [`AddressSpace::read`] / [`AddressSpace::write`], which refuse any
//! byte outside a user region with the right permission.

use std::ptr::NonNull;

use thiserror::Error;

/// Errors of this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemoryError {
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory: {errno}")]
    Map {
        /// Bytes asked for.
        size: u64,
        /// `std::io::Error` text.
        errno: String,
    },
    /// A guest-physical range outside guest memory (or overflowing).
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
    },
    /// A program address range not (fully) mapped with the needed permission.
    #[error("program address range {va:#x}+{len:#x} is not mapped {what}")]
    BadUserRange {
        /// Start of the range.
        va: u64,
        /// Its length.
        len: u64,
        /// "readable" or "writable".
        what: &'static str,
    },
}

/// The host mapping behind guest-physical memory `[0, size)`.
#[derive(Debug)]
pub struct GuestMemory {
    base: NonNull<u8>,
    size: u64,
}

// SAFETY: GuestMemory is a pointer to an mmap'ed area that stays mapped until
// drop; every access is a volatile copy, safe to do from any thread (the
// guest and other monitor threads may write concurrently: the bytes read are
// then whatever was there, never undefined behaviour for plain u8 copies).
unsafe impl Send for GuestMemory {}
// SAFETY: as for Send: no interior references are handed out.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Maps `size` bytes of zeroed anonymous memory (not reserved up front:
    /// pages the guest never touches cost nothing), 2 MiB aligned and asking
    /// for transparent huge pages, so that KVM can back the guest's 2 MiB
    /// pages with 2 MiB host pages: a streaming program then takes one
    /// (two-dimensional, expensive) TLB miss per 2 MiB instead of per 4 KiB.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        const HUGE: usize = 2 << 20;
        let len = usize::try_from(size).map_err(|_| MemoryError::Map { size, errno: "too large".into() })?;
        if len == 0 {
            return Err(MemoryError::Map { size, errno: "empty".into() });
        }
        let map_len =
            len.checked_add(HUGE).ok_or_else(|| MemoryError::Map { size, errno: "too large".into() })?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MemoryError::Map { size, errno: std::io::Error::last_os_error().to_string() });
        }
        let start = p as usize;
        let aligned = start.next_multiple_of(HUGE);
        let (head, tail) = (aligned - start, map_len - (aligned - start) - len);
        // SAFETY: both ranges lie inside the mapping just made and outside
        // [aligned, aligned + len), which is all that is kept; MADV_HUGEPAGE
        // only changes how the kernel backs that range (a failure, e.g. THP
        // off, leaves ordinary pages).
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        let base = NonNull::new(aligned as *mut u8)
            .ok_or_else(|| MemoryError::Map { size, errno: "mmap returned null".into() })?;
        Ok(GuestMemory { base, size })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest-physical 0 (for KVM's memory-slot registration).
    pub fn host_base(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    fn check(&self, gpa: u64, len: u64) -> Result<usize, MemoryError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(gpa as usize),
            _ => Err(MemoryError::OutOfRange { gpa, len }),
        }
    }

    /// Host pointer to `[gpa, gpa + len)`, checked. For the ring, which is
    /// accessed through atomics only (`cabin_abi::ring::RingPtr`).
    pub fn host_ptr(&self, gpa: u64, len: u64) -> Result<*mut u8, MemoryError> {
        let off = self.check(gpa, len)?;
        // SAFETY: off + len <= size, inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(off) })
    }

    /// Copies `buf.len()` bytes out of guest memory at `gpa`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = self.check(gpa, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: off + i < size (checked above); volatile u8 reads of
            // memory the guest may change concurrently.
            *b = unsafe { self.base.as_ptr().add(off + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let off = self.check(gpa, data.len() as u64)?;
        if data.len() >= 64 {
            // SAFETY: the destination range is inside the mapping (checked);
            // source and destination cannot overlap (data is host memory).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(off), data.len()) };
            return Ok(());
        }
        for (i, b) in data.iter().enumerate() {
            // SAFETY: off + i < size (checked above).
            unsafe { self.base.as_ptr().add(off + i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64`.
    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<(), MemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing refers to
        // it any more (KVM's VM fd, which also uses it, is dropped first by
        // the owner: see `vm::Domain`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size as usize) };
    }
}

/// One user region of the program's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First program (guest-virtual) address, page aligned.
    pub va: u64,
    /// Length in bytes, page multiple.
    pub len: u64,
    /// Guest-physical address of `va`.
    pub gpa: u64,
    /// Writable by the program.
    pub write: bool,
    /// Executable by the program.
    pub exec: bool,
    /// What it is, for diagnostics ("image", "stack", "arena", ...).
    pub name: &'static str,
}

impl Region {
    fn end(&self) -> u64 {
        self.va + self.len
    }
}

/// The program's user regions, sorted, non-overlapping.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    regions: Vec<Region>,
}

impl AddressSpace {
    /// An empty address space.
    pub fn new() -> AddressSpace {
        AddressSpace::default()
    }

    /// Adds a region; refuses overlaps and overflow (returns `false`).
    pub fn add(&mut self, r: Region) -> bool {
        if r.len == 0 || r.va.checked_add(r.len).is_none() || r.gpa.checked_add(r.len).is_none() {
            return false;
        }
        if self.regions.iter().any(|o| r.va < o.end() && o.va < r.end()) {
            return false;
        }
        let at = self.regions.partition_point(|o| o.va < r.va);
        self.regions.insert(at, r);
        true
    }

    /// The regions, in address order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Splits `[va, va + len)` into guest-physical pieces; every byte must be
    /// in a region that allows the access (all user regions are readable).
    pub fn translate(&self, va: u64, len: u64, write: bool) -> Result<Vec<(u64, u64)>, MemoryError> {
        let what = if write { "writable" } else { "readable" };
        let bad = || MemoryError::BadUserRange { va, len, what };
        let end = va.checked_add(len).ok_or_else(bad)?;
        let mut out = Vec::new();
        let mut at = va;
        while at < end {
            let i = self.regions.partition_point(|r| r.end() <= at);
            let r = self.regions.get(i).filter(|r| r.va <= at).ok_or_else(bad)?;
            if write && !r.write {
                return Err(bad());
            }
            let piece_end = end.min(r.end());
            out.push((r.gpa + (at - r.va), piece_end - at));
            at = piece_end;
        }
        Ok(out)
    }

    /// Copies `len` bytes of program memory at `va` out (once).
    pub fn read(&self, mem: &GuestMemory, va: u64, len: u64) -> Result<Vec<u8>, MemoryError> {
        let pieces = self.translate(va, len, false)?;
        let n = usize::try_from(len).map_err(|_| MemoryError::BadUserRange { va, len, what: "readable" })?;
        let mut out = vec![0u8; n];
        let mut at = 0usize;
        for (gpa, l) in pieces {
            let l = l as usize;
            mem.read(gpa, &mut out[at..at + l])?;
            at += l;
        }
        Ok(out)
    }

    /// Copies `data` into program memory at `va`; every byte must be writable.
    pub fn write(&self, mem: &GuestMemory, va: u64, data: &[u8]) -> Result<(), MemoryError> {
        let pieces = self.translate(va, data.len() as u64, true)?;
        let mut at = 0usize;
        for (gpa, l) in pieces {
            let l = l as usize;
            mem.write(gpa, &data[at..at + l])?;
            at += l;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(va: u64, len: u64, gpa: u64, write: bool) -> Region {
        Region { va, len, gpa, write, exec: false, name: "test" }
    }

    #[test]
    fn guest_memory_bounds() {
        let m = GuestMemory::new(1 << 20).expect("map");
        m.write(0x100, b"hello").expect("write");
        let mut b = [0u8; 5];
        m.read(0x100, &mut b).expect("read");
        assert_eq!(&b, b"hello");
        assert!(m.read((1 << 20) - 2, &mut b).is_err());
        assert!(m.write(u64::MAX - 1, b"xy").is_err());
        m.write_u64(0x200, 0x1122_3344_5566_7788).expect("u64");
        assert_eq!(m.read_u64(0x200), Ok(0x1122_3344_5566_7788));
        assert!(m.host_ptr(1 << 20, 1).is_err());
    }

    #[test]
    fn translation_across_regions_and_permissions() {
        let mut a = AddressSpace::new();
        assert!(a.add(region(0x40_0000, 0x2000, 0x100_0000, false)));
        assert!(a.add(region(0x40_2000, 0x1000, 0x200_0000, true)));
        assert!(!a.add(region(0x40_1000, 0x1000, 0, true)), "overlap refused");
        assert!(!a.add(region(u64::MAX - 0xfff, 0x2000, 0, true)), "overflow refused");
        assert_eq!(a.translate(0x40_1ff0, 0x20, false), Ok(vec![(0x100_1ff0, 0x10), (0x200_0000, 0x10)]));
        assert!(a.translate(0x40_1ff0, 0x20, true).is_err(), "read-only piece");
        assert_eq!(a.translate(0x40_2000, 0x10, true), Ok(vec![(0x200_0000, 0x10)]));
        assert!(a.translate(0x40_2ff0, 0x20, false).is_err(), "runs off the end");
        assert!(a.translate(0x3f_fff0, 0x20, false).is_err(), "starts before");
        assert!(a.translate(u64::MAX, 2, false).is_err(), "overflow");
        assert_eq!(a.translate(0x40_0000, 0, false), Ok(vec![]));
    }

    #[test]
    fn read_and_write_through_the_address_space() {
        let m = GuestMemory::new(1 << 20).expect("map");
        let mut a = AddressSpace::new();
        assert!(a.add(region(0x1000, 0x1000, 0x8000, true)));
        assert!(a.add(region(0x2000, 0x1000, 0x3000, true)));
        a.write(&m, 0x1ffe, b"abcd").expect("write");
        assert_eq!(a.read(&m, 0x1ffe, 4).expect("read"), b"abcd");
        let mut b = [0u8; 2];
        m.read(0x3000, &mut b).expect("raw");
        assert_eq!(&b, b"cd");
    }
}
