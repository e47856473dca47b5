//! The verified-measurement cache (issue 15, docs/measurement.md "The
//! verified-measurement cache"): an image file whose recorded launch
//! measurement was checked against its pages once is not hashed again
//! while it is the same file with the same content.
//!
//! - Key: the file's [`FileKey`] (device, inode, size, mtime and ctime in
//!   nanoseconds), taken with `fstat` of the descriptor the bytes were
//!   read from, before and after the read. Any write to the file changes
//!   its ctime, which no user can set (only the clock can: root); `touch
//!   -d` restores the mtime but moves the ctime to now.
//! - A file is *stable* (its key may be stored or used) only when the key
//!   is the same before and after the read, its file system keeps a ctime
//!   no user can set ([`trusted_fs`]: ext2/3/4, XFS, Btrfs, tmpfs,
//!   overlayfs, F2FS; FAT's "ctime" follows its mtime and is not on the
//!   list), and its ctime and mtime are at least [`RACY_NS`] older than the
//!   clock before the read (Git's "racily clean" rule: a write within the
//!   same timestamp tick as the stored key would not change it; 2 s covers
//!   file systems that keep whole seconds).
//! - Where: `verified/` in the image cache directory, which is 0700, this
//!   user's, never writable by others, and hidden from the confined program
//!   even inside its trees (`FsPolicy::hide_image_cache`). One entry per
//!   (device, inode): `<sha256 of both, 32 hex digits>`, 0600, holding the
//!   whole key, the measurement the check computed, the checker's version
//!   ([`CHECKER`]) and a SHA-256 over all of it.
//! - Use: the measurement is taken as checked only when the entry's
//!   checksum, version and whole key match and the measurement the image
//!   records is the entry's. Anything else (missing, corrupt, another
//!   key) is a full check, after which the entry is rewritten.
//! - A cache that cannot be used (the directory unsafe or not creatable,
//!   an entry unreadable, a write that fails) is ignored with at most one
//!   warning per process, never an error: it is only a shortcut.
//!
//! The content used is always the bytes read into memory, never a mapping
//! of the file (its pages would follow later writes).

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cabin_image::image::{Image, ImageError};
use cabin_image::measure::DIGEST_LEN;
use sha2::{Digest, Sha256};

/// What checked the measurement: an entry of another checker is not used
/// (the measurement's definition may differ between versions).
pub const CHECKER: &str = concat!("cabin-image ", env!("CARGO_PKG_VERSION"), " measure 1");

/// How much older than the clock before the read a file's ctime and mtime
/// must be for its key to be stored or used.
pub const RACY_NS: i128 = 2_000_000_000;

const MAGIC: &[u8; 8] = b"CABINVM1";
/// Magic, the key (5 × 8 bytes + 2 × 4 bytes of nanoseconds), the
/// measurement, the checker's hash, the checksum.
const ENTRY_LEN: usize = 8 + 56 + DIGEST_LEN + 32 + 32;

/// A file's identity and version as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime`, `st_mtime_nsec`.
    pub mtime: (i64, u32),
    /// `st_ctime`, `st_ctime_nsec`.
    pub ctime: (i64, u32),
}

impl FileKey {
    /// The key of an `fstat` result.
    pub fn of(st: &libc::stat) -> FileKey {
        FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }

    fn bytes(&self) -> [u8; 56] {
        let mut b = [0u8; 56];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&self.mtime.0.to_le_bytes());
        b[32..36].copy_from_slice(&self.mtime.1.to_le_bytes());
        b[36..44].copy_from_slice(&self.ctime.0.to_le_bytes());
        b[44..48].copy_from_slice(&self.ctime.1.to_le_bytes());
        b
    }

    fn ns(t: (i64, u32)) -> i128 {
        i128::from(t.0) * 1_000_000_000 + i128::from(t.1)
    }

    /// When a file with this key is old enough for the key to be stored or
    /// used: [`RACY_NS`] after its last change (mtime or ctime), in ns
    /// since the epoch.
    fn settled_at(&self) -> i128 {
        Self::ns(self.mtime).max(Self::ns(self.ctime)) + RACY_NS
    }
}

/// How long until `file` is old enough for its key to be stored or used
/// (zero when it is now): a file read earlier is always checked in full.
pub fn time_to_settle(file: &std::fs::File) -> std::io::Result<std::time::Duration> {
    let wait = FileKey::of(&fstat(file.as_raw_fd())?).settled_at() - now_ns();
    Ok(std::time::Duration::from_nanos(wait.clamp(0, i128::from(u64::MAX)) as u64))
}

/// A file read once into memory, with its key when it was stable.
#[derive(Debug)]
pub struct ReadFile {
    /// Its bytes: the only content ever used.
    pub bytes: Vec<u8>,
    /// Its key, when the file did not change during the read, lies on a
    /// file system with a trustworthy ctime and was not written within
    /// [`RACY_NS`] of the read; `None` otherwise (always checked in full).
    pub key: Option<FileKey>,
}

fn fstat(fd: i32) -> std::io::Result<libc::stat> {
    // SAFETY: stat is plain data; fstat only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: writes `st` only.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Whether the file system of `fd` keeps a ctime that no user can set
/// (the magic numbers of statfs(2)).
pub fn trusted_fs(fd: i32) -> bool {
    const EXT: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const OVERLAY: i64 = 0x794C_7630;
    const F2FS: i64 = 0xF2F5_2010;
    // SAFETY: statfs is plain data; fstatfs only writes it.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: writes `fs` only.
    if unsafe { libc::fstatfs(fd, &mut fs) } != 0 {
        return false;
    }
    matches!(fs.f_type as i64, EXT | XFS | BTRFS | TMPFS | OVERLAY | F2FS)
}

fn now_ns() -> i128 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as i128
}

/// Reads `file` (at most `limit` bytes) into memory and says whether it was
/// stable ([`ReadFile::key`]). `between` runs after the first `fstat` and
/// before the read (tests change the file there).
pub fn read_with(file: &mut std::fs::File, limit: u64, between: impl FnOnce()) -> std::io::Result<ReadFile> {
    let fd = file.as_raw_fd();
    let clock = now_ns();
    let st = fstat(fd)?;
    let (before, before_mode) = (FileKey::of(&st), st.st_mode);
    between();
    let len = usize::try_from(before.size.min(limit)).unwrap_or(usize::MAX);
    // A file of 2 MiB or more gets 2 MiB of spare capacity: room for its
    // last 2 MiB page (`populate`).
    let spare = if len >= HUGE { HUGE } else { 0 };
    let mut bytes = Vec::with_capacity(len.saturating_add(spare));
    // A large regular file read from its start: two threads (`pread`
    // leaves the file's offset alone, so a failed attempt is read again
    // below from where it was, the start).
    let in_two = before_mode & libc::S_IFMT == libc::S_IFREG
        && len >= PARALLEL_READ_MIN
        && file.stream_position()? == 0
        && read_in_two(file, &mut bytes, len);
    if !in_two {
        populate(&mut bytes, len);
        file.take(limit).read_to_end(&mut bytes)?;
    } else if let Some(more) = limit.checked_sub(len as u64).filter(|&m| m > 0) {
        // Whatever the file grew by since the fstat, as the sequential
        // read would have read it (up to the limit).
        file.seek(std::io::SeekFrom::Start(len as u64))?;
        file.take(more).read_to_end(&mut bytes)?;
    }
    let after = FileKey::of(&fstat(fd)?);
    let stable =
        before == after && after.size == bytes.len() as u64 && after.settled_at() <= clock && trusted_fs(fd);
    Ok(ReadFile { bytes, key: stable.then_some(after) })
}

/// A transparent huge page (x86-64).
const HUGE: usize = 2 << 20;

/// Makes the pages of `v`'s spare capacity that `len` bytes will fill
/// present with one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14): the `read`
/// that fills them would otherwise take a page fault per 4 KiB page, which
/// cost more than the copy itself on the machines this is measured on
/// (docs/performance.md, "Start-up"). When `len` is 2 MiB or more (and the
/// caller left 2 MiB of spare capacity beyond it), the whole 2 MiB pages
/// from the first 2 MiB boundary on are asked for as transparent huge pages
/// first (`MADV_HUGEPAGE`): one fault and one zeroing per 2 MiB instead of
/// 512 faults, and fewer (nested, two-dimensional) TLB misses for the read's
/// copy; a 20 MB image's read took 23 ms of CPU on 4 KiB pages (s29-kstart).
/// Only hints: nothing is written, and where the kernel refuses, the pages
/// fault in as before.
fn populate(v: &mut Vec<u8>, len: usize) {
    let (first, end) = hint_huge(v, len);
    populate_pages(first, end);
}

/// The page size.
const PAGE: usize = 4096;

/// The pages `populate` makes present for `len` bytes of `v`'s spare
/// capacity, `[first, end)` (host addresses, page-aligned), after asking for
/// the whole 2 MiB pages among them to be huge ones (`MADV_HUGEPAGE`, when
/// `len` is 2 MiB or more and the capacity holds the last one).
fn hint_huge(v: &mut Vec<u8>, len: usize) -> (usize, usize) {
    let spare = v.spare_capacity_mut();
    let (start, cap_end) = (spare.as_ptr() as usize, spare.as_ptr() as usize + spare.len());
    let data_end = start.saturating_add(len).min(cap_end);
    let first = start.next_multiple_of(PAGE);
    let mut end = data_end.next_multiple_of(PAGE).min(cap_end & !(PAGE - 1));
    let huge_from = start.next_multiple_of(HUGE);
    let huge_to = data_end.next_multiple_of(HUGE);
    if len >= HUGE && huge_to <= cap_end && huge_to > huge_from {
        // SAFETY: whole 2 MiB pages inside `v`'s own allocation (they lie
        // within its capacity, checked above); the advice changes how the
        // kernel backs them, no byte and no other allocation's memory.
        unsafe { libc::madvise(huge_from as *mut libc::c_void, huge_to - huge_from, libc::MADV_HUGEPAGE) };
        end = huge_to;
    }
    (first, end)
}

/// Makes the pages `[first, end)` (page-aligned host addresses inside a
/// buffer's own allocation, from `hint_huge`) present with one
/// `madvise(MADV_POPULATE_WRITE)` (Linux 5.14). Only a hint.
fn populate_pages(first: usize, end: usize) {
    if end > first {
        // SAFETY: whole pages inside the buffer's own allocation (the
        // caller's range, from `hint_huge`); populating changes no byte and
        // no mapping.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_POPULATE_WRITE) };
    }
}

/// A regular file of this many bytes or more is read by two threads, each
/// populating and reading one half of the buffer (`read_in_two`): with
/// both CPUs of this 2-CPU host free, a 20 MB read (the kernel zeroing the
/// buffer's fresh pages and copying the page cache into them) took 35-40 %
/// less wall time (docs/performance.md, s30-kstart). Below it a thread's
/// start costs about what it saves.
pub const PARALLEL_READ_MIN: usize = 4 << 20;

/// `pread`s exactly `len` bytes at `offset` of `fd` to host address `to`;
/// false on an error or an early end of the file.
///
/// # Safety
///
/// `[to, to + len)` must be writable memory of the caller's, not otherwise
/// used during the call.
unsafe fn pread_exact(fd: i32, to: usize, len: usize, offset: usize) -> bool {
    let mut done = 0usize;
    while done < len {
        // SAFETY: the caller's writable range; pread writes at most `len -
        // done` bytes from `to + done`, inside it.
        let n =
            unsafe { libc::pread(fd, (to + done) as *mut libc::c_void, len - done, (offset + done) as i64) };
        match n {
            n if n > 0 => done += n as usize,
            -1 if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
    true
}

/// Reads the first `len` bytes of `file` into `v` (empty, with the
/// capacity `read_with` gives it) with two threads, each populating its
/// half's pages and `pread`ing its half (cut on a 2 MiB boundary of the
/// buffer, so the two fault distinct huge pages in); sets `v`'s length to
/// `len` and returns true when both read their half whole. False (`v`
/// left empty) when the file ended early, a read failed or no thread could
/// be started: the caller then reads it sequentially.
fn read_in_two(file: &std::fs::File, v: &mut Vec<u8>, len: usize) -> bool {
    let (first, end) = hint_huge(v, len);
    let base = v.spare_capacity_mut().as_mut_ptr() as usize;
    let cut = (base + len / 2).next_multiple_of(HUGE).min(base + len) - base;
    let fd = file.as_raw_fd();
    // Pages to populate per half: the first up to the cut, the second from
    // it (the cut is 2 MiB-aligned, so page-aligned).
    let (pop0, pop1) = ((first, (base + cut).max(first)), ((base + cut).max(first), end));
    let half = |(lo, hi): (usize, usize), from: usize, to: usize| {
        populate_pages(lo, hi);
        // SAFETY: `[base + from, base + to)` lies in `v`'s capacity (to <=
        // len <= capacity), written by this half alone while `v` is
        // borrowed by this function.
        unsafe { pread_exact(fd, base + from, to - from, from) }
    };
    let whole = std::thread::scope(|s| {
        let second =
            std::thread::Builder::new().name("cabin-read".into()).spawn_scoped(s, || half(pop1, cut, len));
        let one = half(pop0, 0, cut);
        match second {
            Ok(h) => one && h.join().unwrap_or(false),
            Err(_) => one && half(pop1, cut, len),
        }
    });
    if whole {
        // SAFETY: both halves wrote every byte of [0, len), inside the
        // capacity.
        unsafe { v.set_len(len) };
    }
    whole
}

/// [`read_with`] with nothing in between.
pub fn read(file: &mut std::fs::File, limit: u64) -> std::io::Result<ReadFile> {
    read_with(file, limit, || {})
}

/// Set once a warning about the cache was printed.
static WARNED: AtomicBool = AtomicBool::new(false);

fn warn(what: std::fmt::Arguments<'_>) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("cabin: warning: the verified-measurement cache is not used: {what}; every image is checked in full");
    }
}

/// A distinct name for each temporary file of this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// An opened verified-measurement cache (`verified/` of a checked image
/// cache directory).
#[derive(Debug, Clone)]
pub struct VerifiedCache {
    dir: PathBuf,
}

impl VerifiedCache {
    /// The cache in the image cache directory `image_cache` (the default
    /// one when `None`); `None`, with one warning, when it cannot be used.
    pub fn open(image_cache: Option<&Path>) -> Option<VerifiedCache> {
        let opened = match image_cache {
            Some(d) => crate::cache::ImageCache::open(d),
            None => crate::cache::ImageCache::open_default(),
        };
        let images = match opened {
            Ok(c) => c,
            Err(e) => {
                warn(format_args!("{e}"));
                return None;
            }
        };
        VerifiedCache::open_in(images.dir())
    }

    /// The cache `verified/` in `dir`, an image cache directory already
    /// checked; made 0700 when missing, and checked like it.
    fn open_in(dir: &Path) -> Option<VerifiedCache> {
        let dir = dir.join("verified");
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                warn(format_args!("{}: {e}", dir.display()));
                return None;
            }
        }
        match crate::cache::ImageCache::open(&dir) {
            Ok(_) => Some(VerifiedCache { dir }),
            Err(e) => {
                warn(format_args!("{e}"));
                None
            }
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &FileKey) -> PathBuf {
        let mut h = Sha256::new();
        h.update(key.dev.to_le_bytes());
        h.update(key.ino.to_le_bytes());
        self.dir.join(hex::encode(&h.finalize()[..16]))
    }

    fn encode(key: &FileKey, measurement: &[u8; DIGEST_LEN]) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[..8].copy_from_slice(MAGIC);
        e[8..64].copy_from_slice(&key.bytes());
        e[64..64 + DIGEST_LEN].copy_from_slice(measurement);
        let checker: [u8; 32] = Sha256::digest(CHECKER.as_bytes()).into();
        e[64 + DIGEST_LEN..96 + DIGEST_LEN].copy_from_slice(&checker);
        let sum: [u8; 32] = Sha256::digest(&e[..96 + DIGEST_LEN]).into();
        e[96 + DIGEST_LEN..].copy_from_slice(&sum);
        e
    }

    /// The measurement recorded as checked for a file with `key`, if an
    /// intact entry of this checker holds exactly this key.
    pub fn lookup(&self, key: &FileKey) -> Option<[u8; DIGEST_LEN]> {
        let path = self.entry_path(key);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .ok()?;
        let st = fstat(f.as_raw_fd()).ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != euid || st.st_mode & 0o022 != 0 {
            return None;
        }
        let mut buf = Vec::with_capacity(ENTRY_LEN);
        Read::by_ref(&mut f).take(ENTRY_LEN as u64 + 1).read_to_end(&mut buf).ok()?;
        if buf.len() != ENTRY_LEN {
            return None;
        }
        let mut measurement = [0u8; DIGEST_LEN];
        measurement.copy_from_slice(&buf[64..64 + DIGEST_LEN]);
        (buf[..] == VerifiedCache::encode(key, &measurement)[..]).then_some(measurement)
    }

    /// Records that the file with `key` holds an image whose recorded
    /// measurement `measurement` was checked against its pages. A failure
    /// warns once and is otherwise ignored.
    pub fn store(&self, key: &FileKey, measurement: &[u8; DIGEST_LEN]) {
        let path = self.entry_path(key);
        let nanos = now_ns() as u64;
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}-{nanos}-{seq}", std::process::id()));
        let entry = VerifiedCache::encode(key, measurement);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&entry)?;
            drop(f);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            warn(format_args!("writing {}: {e}", path.display()));
        }
    }

    /// Removes every entry and leftover temporary file; how many went.
    pub fn clean(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// How [`check`] knew the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// From the cache: the file is the one checked before.
    Cached,
    /// Hashed now (and recorded when the file was stable).
    Hashed,
}

/// Checks `image` (parsed from `read.bytes`): its recorded measurement from
/// the cache when an entry vouches for exactly this file, else computed
/// from its pages (and recorded for next time when the file was stable).
/// A mismatch is [`ImageError::MeasurementMismatch`], as
/// [`Image::verify_measurement`] says it.
pub fn check(
    cache: Option<&VerifiedCache>,
    key: Option<&FileKey>,
    image: &Image<'_>,
) -> Result<([u8; DIGEST_LEN], Checked), ImageError> {
    if let (Some(c), Some(k)) = (cache, key) {
        if c.lookup(k) == Some(image.measurement) {
            return Ok((image.measurement, Checked::Cached));
        }
    }
    let m = image.verify_measurement()?;
    if let (Some(c), Some(k)) = (cache, key) {
        c.store(k, &m);
    }
    Ok((m, Checked::Hashed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey { dev: 1, ino: 2, size: 3, mtime: (4, 5), ctime: (6, 7) }
    }

    fn cache() -> (cabin_tests::tempfile::TempDir, VerifiedCache) {
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let c = VerifiedCache::open(Some(&t.path().join("images"))).expect("cache opens");
        (t, c)
    }

    #[test]
    fn an_entry_vouches_for_exactly_its_key() {
        let (_t, c) = cache();
        let m = [9u8; DIGEST_LEN];
        assert_eq!(c.lookup(&key()), None);
        c.store(&key(), &m);
        assert_eq!(c.lookup(&key()), Some(m));
        let others = [
            FileKey { size: 4, ..key() },
            FileKey { mtime: (4, 6), ..key() },
            FileKey { ctime: (6, 8), ..key() },
            FileKey { ctime: (7, 7), ..key() },
        ];
        for k in others {
            // Same entry file (dev, ino), another version of the file.
            assert_eq!(c.entry_path(&k), c.entry_path(&key()));
            assert_eq!(c.lookup(&k), None, "{k:?}");
        }
        assert_eq!(c.lookup(&FileKey { ino: 3, ..key() }), None);
    }

    #[test]
    fn an_edited_or_cut_entry_vouches_for_nothing() {
        let (_t, c) = cache();
        let m = [9u8; DIGEST_LEN];
        c.store(&key(), &m);
        let path = c.entry_path(&key());
        let good = std::fs::read(&path).expect("entry");
        for at in [0, 8, 40, 64, 64 + DIGEST_LEN, ENTRY_LEN - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).expect("edit");
            assert_eq!(c.lookup(&key()), None, "byte {at} edited");
        }
        // The measurement changed and the checksum recomputed: still the
        // entry of a measurement this image does not record.
        let other = [8u8; DIGEST_LEN];
        std::fs::write(&path, VerifiedCache::encode(&key(), &other)).expect("edit");
        assert_eq!(c.lookup(&key()), Some(other));
        std::fs::write(&path, &good[..ENTRY_LEN - 1]).expect("cut");
        assert_eq!(c.lookup(&key()), None);
        let mut long = good.clone();
        long.push(0);
        std::fs::write(&path, &long).expect("grow");
        assert_eq!(c.lookup(&key()), None);
    }

    #[test]
    fn an_entry_others_may_write_or_a_link_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (t, c) = cache();
        let m = [9u8; DIGEST_LEN];
        c.store(&key(), &m);
        let path = c.entry_path(&key());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(c.lookup(&key()), None);
        std::fs::remove_file(&path).expect("rm");
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, VerifiedCache::encode(&key(), &m)).expect("write");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");
        assert_eq!(c.lookup(&key()), None);
    }

    #[test]
    fn an_unsafe_directory_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let images = t.path().join("images");
        std::fs::create_dir(&images).expect("mkdir");
        std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(VerifiedCache::open(Some(&images)).is_none(), "a world-writable image cache");
        std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let verified = images.join("verified");
        std::fs::create_dir(&verified).expect("mkdir");
        std::fs::set_permissions(&verified, std::fs::Permissions::from_mode(0o757)).expect("chmod");
        assert!(VerifiedCache::open(Some(&images)).is_none(), "a world-writable verified/");
        std::fs::remove_dir(&verified).expect("rmdir");
        std::os::unix::fs::symlink(t.path(), &verified).expect("symlink");
        assert!(VerifiedCache::open(Some(&images)).is_none(), "verified/ a symbolic link");
        std::fs::remove_file(&verified).expect("rm");
        assert!(VerifiedCache::open(Some(&images)).is_some());
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&verified, Some(65534), None).expect("chown");
            assert!(VerifiedCache::open(Some(&images)).is_none(), "verified/ of another user");
        } else {
            cabin_tests::not_run("verified/ of another user", "needs root to chown");
        }
    }

    /// `AnonHugePages` (kB) of the mapping of this process that holds `addr`.
    fn anon_huge_kb_at(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
            if let Some((a, b)) = range {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if let Some(kb) = line.strip_prefix("AnonHugePages:").filter(|_| inside) {
                return kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// A file of several MiB is read into 2 MiB pages (from the buffer's
    /// first 2 MiB boundary on), and the bytes are the file's.
    #[test]
    fn a_large_file_is_read_into_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !thp.contains("[always]") && !thp.contains("[madvise]") {
            cabin_tests::not_run("a large file is read into huge pages", "transparent huge pages are off");
            return;
        }
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let p = t.path().join("big");
        let data: Vec<u8> = (0..(6 << 20) + 12345u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).expect("write");
        let r = read(&mut std::fs::File::open(&p).expect("open"), u64::MAX).expect("read");
        assert!(r.bytes == data, "the bytes read are not the file's");
        let kb = anon_huge_kb_at(r.bytes.as_ptr() as usize + (4 << 20));
        assert!(kb >= 2048, "the read buffer holds {kb} kB of huge pages");
    }

    /// A file large enough to be read by two threads is read whole and in
    /// order, what it grew by after the fstat included (as a sequential
    /// read), and a limit inside it still cuts it.
    #[test]
    fn a_file_read_in_two_is_the_file() {
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let p = t.path().join("big");
        let len = PARALLEL_READ_MIN + (3 << 20) + 777;
        let bytes: Vec<u8> = (0..len).map(|i| (i / 4096 * 7 + i * 13 + i / 251) as u8).collect();
        std::fs::write(&p, &bytes).expect("write");
        // The two threads' read itself succeeds (the path is taken).
        let mut v = Vec::with_capacity(len + HUGE);
        assert!(read_in_two(&std::fs::File::open(&p).expect("open"), &mut v, len), "not read in two");
        assert!(v == bytes, "the halves are not the file's");
        let got = read(&mut std::fs::File::open(&p).expect("open"), u64::MAX).expect("read");
        assert!(got.bytes == bytes, "the bytes read in two are not the file's");
        let cut =
            read(&mut std::fs::File::open(&p).expect("open"), (PARALLEL_READ_MIN + 5) as u64).expect("read");
        assert!(cut.bytes[..] == bytes[..PARALLEL_READ_MIN + 5], "cut at the limit");
        // Grown between the fstat and the read: the new tail is read too
        // (and the key is none: the file changed).
        let mut f = std::fs::File::open(&p).expect("open");
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
        let grown = read_with(&mut f, u64::MAX, || w.write_all(b"tail").expect("write")).expect("read");
        assert_eq!(grown.bytes.len(), len + 4);
        assert!(grown.bytes[..len] == bytes[..] && &grown.bytes[len..] == b"tail");
        assert!(grown.key.is_none());
        // Cut short between the fstat and the read: the bytes are what the
        // file holds (read again sequentially), never stale or zero.
        let mut f = std::fs::File::open(&p).expect("open");
        let shrunk = read_with(&mut f, u64::MAX, || {
            std::fs::OpenOptions::new().write(true).open(&p).expect("open").set_len(1000).expect("truncate")
        })
        .expect("read");
        assert!(shrunk.bytes[..] == bytes[..1000], "{} bytes after the truncation", shrunk.bytes.len());
        assert!(shrunk.key.is_none());
    }

    /// Writes `bytes` to `path` and makes its mtime and ctime old enough
    /// is impossible (ctime is the clock's): waits out the racy window.
    fn settled_file(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).expect("write");
        std::thread::sleep(std::time::Duration::from_nanos(RACY_NS as u64 + 50_000_000));
    }

    #[test]
    fn a_file_is_stable_only_when_settled_and_unchanged_during_the_read() {
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let p = t.path().join("f");
        std::fs::write(&p, b"hello").expect("write");
        let fresh = read(&mut std::fs::File::open(&p).expect("open"), 1 << 20).expect("read");
        assert_eq!(fresh.bytes, b"hello");
        assert!(fresh.key.is_none(), "written just now: racy");
        settled_file(&p, b"hello");
        let settled = read(&mut std::fs::File::open(&p).expect("open"), 1 << 20).expect("read");
        if !trusted_fs(std::fs::File::open(&p).expect("open").as_raw_fd()) {
            cabin_tests::not_run(
                "a settled file is stable",
                "the temporary directory's file system is not trusted",
            );
            return;
        }
        assert!(settled.key.is_some(), "settled");
        // Changed between the first fstat and the read: the bytes read are
        // the new ones, and the key is none (checked in full).
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&p).expect("open");
        let mut w = std::fs::OpenOptions::new().write(true).open(&p).expect("open");
        let changed = read_with(&mut f, 1 << 20, || w.write_all(b"HELLO").expect("write")).expect("read");
        assert_eq!(changed.bytes, b"HELLO");
        assert!(changed.key.is_none(), "changed during the read");
    }

    /// A buffer large enough for huge pages (asked for before it is
    /// populated) holds exactly the file's bytes, and the limit still cuts
    /// it.
    #[test]
    fn a_large_file_reads_whole_on_huge_pages() {
        let t = cabin_tests::tempfile::tempdir().expect("tempdir");
        let p = t.path().join("big");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let bytes: Vec<u8> = (0..(9 << 20) + 123)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&p, &bytes).expect("write");
        let got = read(&mut std::fs::File::open(&p).expect("open"), u64::MAX).expect("read");
        assert!(got.bytes == bytes, "the bytes read are the file's");
        let cut = read(&mut std::fs::File::open(&p).expect("open"), 5 << 20).expect("read");
        assert!(cut.bytes[..] == bytes[..5 << 20], "cut at the limit");
    }
}
