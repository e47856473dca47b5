//! The guest's physical memory: [`PhysMemory`] is the one host mapping
//! behind it, registered with KVM as the VM's memory slot and written by the
//! domain builder (image pages, page tables, descriptor tables, boot page,
//! proxy-kernel). The guest can write it at any time, so the monitor never
//! holds a reference into it: every access is a bounds-checked,
//! overflow-checked volatile copy in or out ([`PhysMemory::read`],
//! [`PhysMemory::write`]).
//!
//! The program's view of it — what the syscall service reads and writes — is
//! not here: it is the monitor's one [`cabin_monitor::memory::GuestMemory`], whose
//! typed regions `domain::build` points at the guest-physical pages it
//! mapped for each user region (it built the page tables, so it knows the
//! translation without walking them).

use crate::layout::HUGE_PAGES_FROM;
use std::ptr::NonNull;

use thiserror::Error;

/// Errors of this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemoryError {
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory: {}", std::io::Error::from_raw_os_error(*errno))]
    Map {
        /// Bytes asked for.
        size: u64,
        /// The host's errno.
        errno: i32,
    },
    /// A size the monitor cannot map at all.
    #[error("cannot map {size} bytes of guest memory: {why}")]
    BadSize {
        /// Bytes asked for.
        size: u64,
        /// Why ("too large", "empty", ...).
        why: &'static str,
    },
    /// A guest-physical range outside guest memory (or overflowing).
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
    },
}

/// The host mapping behind guest-physical memory `[0, size)`.
#[derive(Debug)]
pub struct PhysMemory {
    base: NonNull<u8>,
    size: u64,
}

// SAFETY: PhysMemory is a pointer to an mmap'ed area that stays mapped until
// drop; every access is a volatile copy, safe to do from any thread (the
// guest and other monitor threads may write concurrently: the bytes read are
// then whatever was there, never undefined behaviour for plain u8 copies).
unsafe impl Send for PhysMemory {}
// SAFETY: as for Send: no interior references are handed out.
unsafe impl Sync for PhysMemory {}

impl PhysMemory {
    /// Maps `size` bytes of zeroed anonymous memory (not reserved up front:
    /// pages the guest never touches cost nothing), 2 MiB aligned and asking
    /// for transparent huge pages from [`HUGE_PAGES_FROM`] on, so that KVM
    /// can back the guest's 2 MiB pages with 2 MiB host pages: a streaming
    /// program then takes one (two-dimensional, expensive) TLB miss per
    /// 2 MiB instead of per 4 KiB. The system area below it keeps 4 KiB
    /// pages: it is touched sparsely (descriptor tables, a few rings, a few
    /// page tables, stacks), and the kernel zeroes a whole 2 MiB page at its
    /// first touch, 8-10 MiB per start for 4-5 such pages (docs/performance.md,
    /// "Start-up").
    pub fn new(size: u64) -> Result<PhysMemory, MemoryError> {
        let len = usize::try_from(size).map_err(|_| MemoryError::BadSize { size, why: "too large" })?;
        if len == 0 {
            return Err(MemoryError::BadSize { size, why: "empty" });
        }
        let map_len =
            len.checked_add(HUGE_PAGE_BYTES).ok_or(MemoryError::BadSize { size, why: "too large" })?;
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
            return Err(MemoryError::Map {
                size,
                errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        let start = p as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
        let (head, tail) = (aligned - start, map_len - (aligned - start) - len);
        // SAFETY: both ranges lie inside the mapping just made and outside
        // [aligned, aligned + len), which is all that is kept; MADV_HUGEPAGE
        // only changes how the kernel backs a range inside it (a failure,
        // e.g. THP off, leaves ordinary pages).
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            let small = (HUGE_PAGES_FROM as usize).min(len);
            if len > small {
                libc::madvise((aligned + small) as *mut libc::c_void, len - small, libc::MADV_HUGEPAGE);
            }
        }
        let base = NonNull::new(aligned as *mut u8)
            .ok_or(MemoryError::BadSize { size, why: "mmap returned null" })?;
        Ok(PhysMemory { base, size })
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

    /// Copies `data` into guest memory at `gpa`; a copy of
    /// [`PARALLEL_COPY_MIN`] bytes or more is shared with a second thread
    /// (`copy_ranges`; the bytes written are the same: docs/performance.md
    /// "KVM start-up: the large copies on both CPUs" for what it gains).
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let off = self.check(gpa, data.len() as u64)?;
        if data.len() >= PARALLEL_COPY_MIN {
            let dst = self.base.as_ptr() as usize + off;
            // SAFETY: the destination lies inside the mapping (checked), the
            // source is `data`, host memory that cannot overlap it; both stay
            // valid until `copy_ranges` returns (it joins its thread).
            unsafe { copy_ranges(&[CopyRange { src: data.as_ptr() as usize, dst, len: data.len() }]) };
            return Ok(());
        }
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
    /// Makes `[gpa, gpa + len)` (inside the mapping) present and writable
    /// with one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) instead of a
    /// page fault per page. Only a hint: where the kernel refuses, the
    /// pages fault in as they are written.
    fn populate(&self, gpa: u64, len: u64) {
        if self.check(gpa, len).is_err() || len == 0 {
            return;
        }
        // SAFETY: a range of our own mapping (checked above); populating
        // changes no byte of it.
        unsafe {
            libc::madvise(
                self.base.as_ptr().add(gpa as usize).cast(),
                len as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }

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

/// A copy of this many bytes or more in all is split between the calling
/// thread and one more (`copy_ranges`): the image's segments at a start,
/// the touched memory at a fork. Below it a thread's start (~50-100 µs
/// here) costs more than half the copy saves; the kernel zeroing the fresh
/// 2 MiB pages the copy lands in is most of a copy's time, and two threads
/// fault distinct 2 MiB pages in at once.
pub const PARALLEL_COPY_MIN: usize = 4 << 20;

/// One plain copy of `len` bytes between host addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyRange {
    src: usize,
    dst: usize,
    len: usize,
}

/// Splits `ranges` (in order) into the first `at` bytes and the rest,
/// cutting one range in two where `at` falls inside it.
fn split_ranges(ranges: &[CopyRange], at: usize) -> (Vec<CopyRange>, Vec<CopyRange>) {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    let mut done = 0usize;
    for r in ranges {
        if done >= at {
            rest.push(*r);
        } else if done + r.len <= at {
            first.push(*r);
        } else {
            let k = at - done;
            first.push(CopyRange { len: k, ..*r });
            rest.push(CopyRange { src: r.src + k, dst: r.dst + k, len: r.len - k });
        }
        done += r.len;
    }
    (first, rest)
}

/// Copies every range; when they hold [`PARALLEL_COPY_MIN`] bytes or more,
/// the second half (cut on a 2 MiB boundary of the bytes, so the two
/// threads fault distinct huge pages in) is copied by a scoped thread
/// while this one copies the first. Where no thread can be started, this
/// thread copies all. Returns when every byte is copied.
///
/// # Safety
///
/// Each `src` range must be readable and each `dst` range writable for the
/// whole call, and no `dst` range may overlap a `src` range or another
/// `dst` range. (Another thread, e.g. a guest vCPU, may write a source
/// meanwhile: the bytes copied are then whatever was there, as for any
/// plain `u8` copy.)
unsafe fn copy_ranges(ranges: &[CopyRange]) {
    let copy = |rs: &[CopyRange]| {
        for r in rs {
            // SAFETY: the caller's promise: readable source, writable
            // destination, no overlap.
            unsafe { std::ptr::copy_nonoverlapping(r.src as *const u8, r.dst as *mut u8, r.len) };
        }
    };
    let total: usize = ranges.iter().map(|r| r.len).sum();
    if total < PARALLEL_COPY_MIN {
        copy(ranges);
        return;
    }
    let half = (total / 2).next_multiple_of(HUGE_PAGE_BYTES).min(total);
    let (first, rest) = split_ranges(ranges, half);
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new().name("cabin-copy".into()).spawn_scoped(s, || copy(&rest));
        copy(&first);
        match helper {
            // Plain copies do not panic.
            Ok(h) => drop(h.join()),
            Err(_) => copy(&rest),
        }
    });
}

/// A transparent huge page on x86-64.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst): the page
/// is in memory, or swapped out. Either way the guest has touched it; a page
/// with neither was never written (it reads as zeros).
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
/// Pagemap entries read at a time (32 KiB of entries, 16 MiB of memory).
const PAGEMAP_CHUNK: usize = 4096;
/// The host's page size as the pagemap counts it.
const HOST_PAGE: u64 = 4096;

impl PhysMemory {
    /// A copy of `src` for a child process's VM (issue 14,
    /// docs/processes.md): a new mapping of the same size holding the pages
    /// `src`'s guest has touched (found in the host's `/proc/self/pagemap`:
    /// present or swapped), so that an untouched arena costs nothing, except
    /// the guest-physical range `skip` (the ring region, which the child gets
    /// fresh): it stays zero, made present with one
    /// `madvise(MADV_POPULATE_WRITE)` for the headers the caller writes. The
    /// copy is a snapshot of the bytes as they are while it runs; the caller
    /// keeps the parent's page tables locked meanwhile. Returns the copy and
    /// the bytes copied.
    pub fn copy_of(src: &PhysMemory, skip: std::ops::Range<u64>) -> Result<(PhysMemory, u64), MemoryError> {
        let dst = PhysMemory::new(src.size)?;
        let map_err =
            |e: std::io::Error| MemoryError::Map { size: src.size, errno: e.raw_os_error().unwrap_or(0) };
        let pagemap = std::fs::File::open("/proc/self/pagemap").map_err(map_err)?;
        let pages = src.size / HOST_PAGE;
        let first = src.host_base() / HOST_PAGE;
        let mut entries = vec![0u8; PAGEMAP_CHUNK * 8];
        let mut touched = vec![false; PAGEMAP_CHUNK];
        let mut copied = 0u64;
        let mut runs: Vec<CopyRange> = Vec::new();
        let mut at = 0u64;
        let skip = (skip.start / HOST_PAGE)..skip.end.div_ceil(HOST_PAGE);
        if !skip.is_empty() {
            dst.populate(skip.start * HOST_PAGE, (skip.end - skip.start) * HOST_PAGE);
        }
        while at < pages {
            let n = (pages - at).min(PAGEMAP_CHUNK as u64) as usize;
            let buf = &mut entries[..n * 8];
            std::os::unix::fs::FileExt::read_exact_at(&pagemap, buf, (first + at) * 8).map_err(map_err)?;
            for (t, e) in touched.iter_mut().zip(buf.chunks_exact(8)) {
                let e = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                *t = e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0;
            }
            // The skipped pages of this chunk.
            let (lo, hi) = (skip.start.saturating_sub(at), skip.end.saturating_sub(at));
            for t in touched.iter_mut().take((hi as usize).min(n)).skip(lo as usize) {
                *t = false;
            }
            // Runs of touched pages, one copy each (made below, at once).
            let mut i = 0usize;
            while i < n {
                if !touched[i] {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && touched[i] {
                    i += 1;
                }
                let off = ((at + start as u64) * HOST_PAGE) as usize;
                let len = (i - start) * HOST_PAGE as usize;
                let (s, d) = (src.base.as_ptr() as usize + off, dst.base.as_ptr() as usize + off);
                match runs.last_mut() {
                    // A run that continues the last chunk's last run.
                    Some(r) if r.src + r.len == s => r.len += len,
                    _ => runs.push(CopyRange { src: s, dst: d, len }),
                }
                copied += len as u64;
            }
            at += n as u64;
        }
        // SAFETY: every range lies inside its own mapping of `size` bytes
        // (off + len <= pages * HOST_PAGE <= size), `src`'s and `dst`'s,
        // two distinct mappings alive for the call; the runs are disjoint.
        // The guest may write the source meanwhile (another vCPU of the
        // parent): the bytes copied are then whatever was there, as for any
        // plain u8 copy.
        unsafe { copy_ranges(&runs) };
        Ok((dst, copied))
    }
}

impl Drop for PhysMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing refers to
        // it any more (KVM's VM fd, which also uses it, is dropped first by
        // the owner, `KvmDomain`, which also drops the program's `GuestMemory`
        // view of it first).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_bounds() {
        let m = PhysMemory::new(1 << 20).expect("map");
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

    /// The `VmFlags` of the mapping of this process that holds `addr`.
    fn vm_flags_at(addr: u64) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.to_string();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// The system area (below HUGE_PAGES_FROM) is not asked for 2 MiB host
    /// pages, whose zeroing a start paid in full for a few sparse pages;
    /// the image, stack, heap and arena are (the `hg` flag of
    /// `madvise(MADV_HUGEPAGE)`).
    #[test]
    fn only_memory_above_the_system_area_asks_for_huge_pages() {
        let m = PhysMemory::new(HUGE_PAGES_FROM + (8 << 20)).expect("map");
        let hg = |gpa: u64| vm_flags_at(m.host_base() + gpa).split_whitespace().any(|f| f == "hg");
        for gpa in [0, 0x20_1000, HUGE_PAGES_FROM - 1] {
            assert!(!hg(gpa), "system area at {gpa:#x} asks for huge pages");
        }
        for gpa in [HUGE_PAGES_FROM, HUGE_PAGES_FROM + (8 << 20) - 1] {
            assert!(hg(gpa), "{gpa:#x} does not ask for huge pages");
        }
        // Memory no larger than the system area asks for none.
        let small = PhysMemory::new(4 << 20).expect("map");
        assert!(!vm_flags_at(small.host_base()).split_whitespace().any(|f| f == "hg"));
    }

    #[test]
    fn a_copy_holds_the_touched_pages_and_not_later_writes() {
        let m = PhysMemory::new(4 << 20).expect("map");
        m.write(0x1000, b"first").expect("write");
        m.write((3 << 20) + 0x10, b"far").expect("write");
        let (c, copied) = PhysMemory::copy_of(&m, 0..0).expect("copy");
        // (Transparent huge pages may make a touched page a 2 MiB one.)
        assert!((2 * HOST_PAGE..=4 << 20).contains(&copied), "copied {copied}");
        // The parent's later writes do not show in the copy, nor the
        // copy's in the parent.
        m.write(0x1000, b"later").expect("write");
        m.write(0x5000, b"new").expect("write");
        c.write((3 << 20) + 0x10, b"kid").expect("write");
        let mut b = [0u8; 5];
        c.read(0x1000, &mut b).expect("read");
        assert_eq!(&b, b"first");
        let mut b3 = [0u8; 3];
        c.read(0x5000, &mut b3).expect("read");
        assert_eq!(b3, [0; 3]);
        m.read((3 << 20) + 0x10, &mut b3).expect("read");
        assert_eq!(&b3, b"far");
    }

    #[test]
    fn ranges_split_at_a_byte_count() {
        let r = |src, dst, len| CopyRange { src, dst, len };
        let all = [r(0, 100, 10), r(50, 200, 30), r(90, 300, 5)];
        assert_eq!(split_ranges(&all, 0), (vec![], all.to_vec()));
        assert_eq!(split_ranges(&all, 45), (all.to_vec(), vec![]));
        assert_eq!(split_ranges(&all, 10), (vec![all[0]], vec![all[1], all[2]]));
        assert_eq!(split_ranges(&all, 25), (vec![all[0], r(50, 200, 15)], vec![r(65, 215, 15), all[2]]));
    }

    /// A pattern no shifted or half-done copy reproduces: each 4 KiB page
    /// holds its number, every byte differs from its neighbours.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 4096 * 7 + i * 13 + i / 251) as u8).collect()
    }

    /// A write large enough to be shared between two threads lands whole
    /// and in place, as a plain copy does (and a short write beside it is
    /// left alone).
    #[test]
    fn a_large_write_lands_whole_and_in_place() {
        let len = PARALLEL_COPY_MIN + 3 * HUGE_PAGE_BYTES + 1234;
        let m = PhysMemory::new(32 << 20).expect("map");
        m.write(0x40_0000 - 4, b"left").expect("write");
        let data = pattern(len);
        m.write(0x40_0000, &data).expect("write");
        let mut back = vec![0u8; len + 4];
        m.read(0x40_0000 - 4, &mut back).expect("read");
        assert_eq!(&back[..4], b"left");
        assert!(back[4..] == data[..], "the large write differs from its data");
        let mut after = [1u8; 8];
        m.read(0x40_0000 + len as u64, &mut after).expect("read");
        assert_eq!(after, [0; 8]);
    }

    /// A copy of more than PARALLEL_COPY_MIN touched bytes in several runs
    /// (split between two threads) holds every touched byte and no other.
    #[test]
    fn a_large_copy_holds_every_touched_byte() {
        let m = PhysMemory::new(64 << 20).expect("map");
        let a = pattern(6 << 20);
        let b = pattern(5 << 20);
        m.write(0x10_0000, &a).expect("write");
        m.write(40 << 20, &b[..(5 << 20) - 100]).expect("write");
        let (c, copied) = PhysMemory::copy_of(&m, 0..0).expect("copy");
        assert!(copied >= (11 << 20) - 100, "copied {copied}");
        let mut back = vec![0u8; 6 << 20];
        c.read(0x10_0000, &mut back).expect("read");
        assert!(back == a, "the first run differs");
        let mut back = vec![0u8; 5 << 20];
        c.read(40 << 20, &mut back).expect("read");
        assert!(
            back[..(5 << 20) - 100] == b[..(5 << 20) - 100]
                && back[(5 << 20) - 100..].iter().all(|&x| x == 0)
        );
        let mut gap = vec![1u8; 1 << 20];
        c.read(20 << 20, &mut gap).expect("read");
        assert!(gap.iter().all(|&x| x == 0), "an untouched page is not zero");
    }

    /// The skipped range (a child's ring region) is left zero, even where
    /// a run of touched pages crosses its ends; the pages around it are
    /// copied.
    #[test]
    fn a_copy_leaves_the_skipped_range_zero() {
        let m = PhysMemory::new(1 << 20).expect("map");
        for page in 0..8u64 {
            m.write(page * HOST_PAGE + 8, &[0x40 + page as u8; 4]).expect("write");
        }
        let (c, copied) = PhysMemory::copy_of(&m, 2 * HOST_PAGE..5 * HOST_PAGE).expect("copy");
        assert_eq!(copied, 5 * HOST_PAGE);
        for page in 0..8u64 {
            let mut b = [0u8; 4];
            c.read(page * HOST_PAGE + 8, &mut b).expect("read");
            let want = if (2..5).contains(&page) { [0; 4] } else { [0x40 + page as u8; 4] };
            assert_eq!(b, want, "page {page}");
        }
    }
}
