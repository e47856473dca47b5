//! Service tests: requests in, results out, no child process.

use super::*;
use crate::memory::tests::test_memory;

fn service() -> Service {
    let mut s = Service::new(FsPolicy::default(), b"/".to_vec(), 42);
    s.print_reports = false;
    s
}

#[test]
fn unknown_calls_are_enosys_and_reported_once() {
    let m = test_memory();
    let mut s = service();
    assert_eq!(s.handle(&m, 9999, [0; 6]), Ok(-(libc::ENOSYS as i64)));
    assert_eq!(s.handle(&m, 9999, [0; 6]), Ok(-(libc::ENOSYS as i64)));
    assert_eq!(s.handle(&m, 56, [0; 6]), Ok(-(libc::ENOSYS as i64))); // clone
    assert_eq!(s.reports.len(), 2);
    assert!(s.reports[1].contains("clone (56)"), "{}", s.reports[1]);
}

#[test]
fn wild_pointers_are_violations() {
    let m = test_memory();
    let mut s = service();
    let e = s.handle(&m, libc::SYS_write as u64, [1, 0xdead_0000, 10, 0, 0, 0]).unwrap_err();
    assert!(e.0.contains("write"), "{e}");
    assert!(s.handle(&m, libc::SYS_read as u64, [0, 0x1000, u64::MAX, 0, 0, 0]).is_err());
    // A read into read-only memory is refused too.
    assert!(s.handle(&m, libc::SYS_read as u64, [0, 0x10000, 1, 0, 0, 0]).is_err());
    // Zero-length buffers are fine anywhere.
    assert_eq!(s.handle(&m, libc::SYS_write as u64, [1, 0, 0, 0, 0, 0]), Ok(0));
    // Bad fds are plain errors.
    assert_eq!(s.handle(&m, libc::SYS_write as u64, [77, 0x1000, 1, 0, 0, 0]), Ok(-(libc::EBADF as i64)));
}

#[test]
fn files_outside_allowed_dirs_are_refused() {
    let m = test_memory();
    let mut s = service();
    m.write(0x1000, b"/etc/passwd\0").unwrap();
    let r = s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1000, 0, 0, 0, 0]);
    assert_eq!(r, Ok(-(libc::EACCES as i64)));
    assert_eq!(s.stats.denied, 1);
}

#[test]
fn read_write_files_in_allowed_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    std::fs::write(dir.join("in.txt"), b"hello").unwrap();
    let policy = FsPolicy::new(&[], std::slice::from_ref(&dir)).unwrap();
    let mut s = Service::new(policy, dir.as_os_str().as_encoded_bytes().to_vec(), 42);
    let m = test_memory();
    m.write(0x1000, b"in.txt\0").unwrap();
    let fd = s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1000, 0, 0, 0, 0]).unwrap();
    assert!(fd >= 3);
    let n = s.handle(&m, libc::SYS_read as u64, [fd as u64, 0x1100, 100, 0, 0, 0]).unwrap();
    assert_eq!(n, 5);
    assert_eq!(m.read(0x1100, 5).unwrap(), b"hello");
    // Create, write, rename, stat, unlink.
    m.write(0x1000, b"out.txt\0").unwrap();
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
    let w = s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1000, flags, 0o644, 0, 0]).unwrap();
    assert_eq!(s.handle(&m, libc::SYS_write as u64, [w as u64, 0x1100, 5, 0, 0, 0]), Ok(5));
    assert_eq!(s.handle(&m, libc::SYS_close as u64, [w as u64, 0, 0, 0, 0, 0]), Ok(0));
    m.write(0x1200, b"moved.txt\0").unwrap();
    assert_eq!(s.handle(&m, libc::SYS_rename as u64, [0x1000, 0x1200, 0, 0, 0, 0]), Ok(0));
    assert_eq!(std::fs::read(dir.join("moved.txt")).unwrap(), b"hello");
    assert_eq!(s.handle(&m, libc::SYS_newfstatat as u64, [AT_FDCWD as u64, 0x1200, 0x1400, 0, 0, 0]), Ok(0));
    assert_eq!(m.read_u64(0x1400 + 48).unwrap(), 5, "st_size");
    assert_eq!(s.handle(&m, libc::SYS_unlink as u64, [0x1200, 0, 0, 0, 0, 0]), Ok(0));
    assert!(!dir.join("moved.txt").exists());
    // getcwd
    let n = s.handle(&m, libc::SYS_getcwd as u64, [0x1800, 4096, 0, 0, 0, 0]).unwrap();
    assert_eq!(m.read(0x1800, n as usize - 1).unwrap(), dir.as_os_str().as_encoded_bytes());
}

#[test]
fn escapes_through_the_service_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let dir = root.join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.join("secret"), b"x").unwrap();
    std::os::unix::fs::symlink(root.join("secret"), dir.join("abs")).unwrap();
    let policy = FsPolicy::new(std::slice::from_ref(&dir), &[]).unwrap();
    let mut s = Service::new(policy, dir.as_os_str().as_encoded_bytes().to_vec(), 42);
    s.print_reports = false;
    let m = test_memory();
    for p in [&b"../secret\0"[..], b"abs\0", b"/proc/self/root/etc/passwd\0"] {
        m.write(0x1000, p).unwrap();
        let r = s.handle(&m, libc::SYS_open as u64, [0x1000, 0, 0, 0, 0, 0]).unwrap();
        assert!(r < 0, "{:?} opened", String::from_utf8_lossy(p));
        let r = s.handle(&m, libc::SYS_stat as u64, [0x1000, 0x1400, 0, 0, 0, 0]).unwrap();
        assert!(r < 0, "{:?} stat'ed", String::from_utf8_lossy(p));
    }
}

#[test]
fn uname_and_dups() {
    let m = test_memory();
    let mut s = service();
    assert_eq!(s.handle(&m, libc::SYS_uname as u64, [0x1000, 0, 0, 0, 0, 0]), Ok(0));
    assert_eq!(m.read(0x1000 + 65, 5).unwrap(), b"cabin");
    let d = s.handle(&m, libc::SYS_dup as u64, [1, 0, 0, 0, 0, 0]).unwrap();
    assert!(d >= 3);
    assert_eq!(s.handle(&m, libc::SYS_dup2 as u64, [1, 100, 0, 0, 0, 0]), Ok(100));
    assert_eq!(s.handle(&m, libc::SYS_close as u64, [100, 0, 0, 0, 0, 0]), Ok(0));
    assert_eq!(s.handle(&m, libc::SYS_close as u64, [100, 0, 0, 0, 0, 0]), Ok(-(libc::EBADF as i64)));
    assert_eq!(s.handle(&m, libc::SYS_pipe2 as u64, [0x1000, 0, 0, 0, 0, 0]), Ok(0));
}

#[test]
fn links_truncate_and_chown_respect_the_policy() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let (ro, rw) = (root.join("ro"), root.join("rw"));
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(ro.join("f"), b"read only").unwrap();
    std::fs::write(root.join("secret"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(root.join("secret"), rw.join("sl")).unwrap();
    let policy = FsPolicy::new(std::slice::from_ref(&ro), std::slice::from_ref(&rw)).unwrap();
    let mut s = Service::new(policy, b"/".to_vec(), 42);
    s.print_reports = false;
    let m = test_memory();
    let put = |at: u64, p: &std::path::Path| {
        m.write(at, &[p.as_os_str().as_encoded_bytes(), b"\0"].concat()).unwrap();
    };
    // A hard link from the read-only dir into the writable one is refused.
    put(0x1000, &ro.join("f"));
    put(0x1400, &rw.join("g"));
    assert_eq!(s.handle(&m, libc::SYS_link as u64, [0x1000, 0x1400, 0, 0, 0, 0]), Ok(-(libc::EACCES as i64)));
    // Linking a symlink that points out links the symlink, never its target.
    put(0x1000, &rw.join("sl"));
    let r =
        s.handle(&m, libc::SYS_linkat as u64, [AT_FDCWD as u64, 0x1000, AT_FDCWD as u64, 0x1400, 0x400, 0]);
    assert_eq!(r, Ok(0));
    assert!(std::fs::symlink_metadata(rw.join("g")).unwrap().file_type().is_symlink());
    // truncate and chown need a writable dir.
    put(0x1000, &ro.join("f"));
    assert_eq!(s.handle(&m, libc::SYS_truncate as u64, [0x1000, 0, 0, 0, 0, 0]), Ok(-(libc::EACCES as i64)));
    assert_eq!(s.handle(&m, libc::SYS_chown as u64, [0x1000, 0, 0, 0, 0, 0]), Ok(-(libc::EACCES as i64)));
    assert_eq!(std::fs::read(ro.join("f")).unwrap(), b"read only");
    // statfs works inside, not outside.
    assert_eq!(s.handle(&m, libc::SYS_statfs as u64, [0x1000, 0x1800, 0, 0, 0, 0]), Ok(0));
    put(0x1000, &root.join("secret"));
    assert_eq!(
        s.handle(&m, libc::SYS_statfs as u64, [0x1000, 0x1800, 0, 0, 0, 0]),
        Ok(-(libc::EACCES as i64))
    );
}

#[test]
fn refusals_and_paths_are_noted_for_the_gate() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let dir = root.join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("../secret", dir.join("out")).unwrap();
    let policy = FsPolicy::new(std::slice::from_ref(&dir), &[]).unwrap();
    let mut s = Service::new(policy, dir.as_os_str().as_encoded_bytes().to_vec(), 42);
    s.print_reports = false;
    let m = test_memory();
    let open = |s: &mut Service, path: &[u8]| {
        m.write(0x1000, &[path, b"\0"].concat()).unwrap();
        s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1000, 0, 0, 0, 0]).unwrap()
    };
    // Untraced: an allowed call notes nothing (no copy of its path).
    assert!(open(&mut s, b"f") >= 3);
    assert_eq!(s.take_note(), CallNote::default());
    // A refusal is always noted: the program's path, the resolved one, why.
    assert_eq!(open(&mut s, b"out"), -(libc::EACCES as i64));
    let n = s.take_note();
    assert_eq!(n.path.as_deref(), Some(&b"out"[..]));
    let r = n.refusal.unwrap();
    assert_eq!(r.why, Refusal::Escape);
    assert_eq!(r.resolved, [dir.as_os_str().as_encoded_bytes(), b"/out"].concat());
    assert!(r.rule().starts_with("[paths] /"), "{}", r.rule());
    // Writes under a read-only tree, and paths outside.
    assert_eq!(open(&mut s, b"/etc/passwd"), -(libc::EACCES as i64));
    assert_eq!(s.take_note().refusal.map(|r| r.why), Some(Refusal::Outside));
    m.write(0x1000, b"f\0").unwrap();
    let r = s.handle(&m, libc::SYS_unlink as u64, [0x1000, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(r, -(libc::EACCES as i64));
    assert_eq!(s.take_note().refusal.map(|r| r.why), Some(Refusal::ReadOnly));
    // A refusal not taken does not leak into the next call.
    assert_eq!(open(&mut s, b"out"), -(libc::EACCES as i64));
    assert!(open(&mut s, b"f") >= 3);
    assert_eq!(s.take_note(), CallNote::default());
    // Errors the kernel gives natively are not refusals.
    assert_eq!(open(&mut s, b"missing"), -(libc::ENOENT as i64));
    assert_eq!(s.take_note().refusal, None);
    // Traced: every path is noted, as the program passed it.
    s.set_record_paths(true);
    assert!(open(&mut s, b"./f") >= 3);
    assert_eq!(s.take_note().path.as_deref(), Some(&b"./f"[..]));
    assert_eq!(s.stats.denied, 4);
}

#[test]
fn write_limits_clip_then_stop_and_spare_pipes() {
    use crate::trace::LimitKind;
    use cabin_policy::Limits;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    let policy = FsPolicy::new(&[], std::slice::from_ref(&dir)).unwrap();
    let mut s = Service::new(policy, dir.as_os_str().as_encoded_bytes().to_vec(), 42);
    s.set_write_limits(WriteLimits::new(&Limits { file_size: Some(100), ..Limits::default() }));
    let m = test_memory();
    m.write(0x1000, b"f\0").unwrap();
    let flags = (libc::O_CREAT | libc::O_WRONLY) as u64;
    let fd =
        s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1000, flags, 0o644, 0, 0]).unwrap() as u64;
    let write = libc::SYS_write as u64;
    // 60 + 60 bytes: the second is clipped at the limit, a third stops.
    assert_eq!(s.handle(&m, write, [fd, 0x1100, 60, 0, 0, 0]), Ok(60));
    assert_eq!(s.handle(&m, write, [fd, 0x1100, 60, 0, 0, 0]), Ok(40));
    assert!(s.take_note().limit.is_none());
    assert_eq!(s.handle(&m, write, [fd, 0x1100, 1, 0, 0, 0]), Ok(-27));
    let hit = s.take_note().limit.expect("a limit hit");
    assert_eq!((hit.limit, hit.value, hit.max), (LimitKind::FileSize, 101, 100));
    // Far past the limit: nothing reaches the file.
    let lseek = libc::SYS_lseek as u64;
    assert_eq!(s.handle(&m, lseek, [fd, 1 << 40, 0, 0, 0, 0]), Ok(1 << 40));
    assert_eq!(s.handle(&m, write, [fd, 0x1100, 1, 0, 0, 0]), Ok(-27));
    assert!(s.take_note().limit.is_some());
    let pwrite = libc::SYS_pwrite64 as u64;
    assert_eq!(s.handle(&m, pwrite, [fd, 0x1100, 10, 95, 0, 0]), Ok(5));
    let ftruncate = libc::SYS_ftruncate as u64;
    assert_eq!(s.handle(&m, ftruncate, [fd, 101, 0, 0, 0, 0]), Ok(-27));
    assert!(s.take_note().limit.is_some());
    assert_eq!(std::fs::metadata(dir.join("f")).unwrap().len(), 100);
    // A pipe has no size: not limited, and ftruncate is the kernel's EINVAL.
    assert_eq!(s.handle(&m, libc::SYS_pipe as u64, [0x1f00, 0, 0, 0, 0, 0]), Ok(0));
    let w = u64::from(u32::from_le_bytes(m.read(0x1f04, 4).unwrap().try_into().unwrap()));
    assert_eq!(s.handle(&m, write, [w, 0x1100, 200, 0, 0, 0]), Ok(200));
    assert_eq!(s.handle(&m, ftruncate, [w, 1 << 20, 0, 0, 0, 0]), Ok(-(libc::EINVAL as i64)));
    assert!(s.take_note().limit.is_none());
}

#[test]
fn rlimit_nofile_is_the_table_size() {
    let m = test_memory();
    let mut s = service();
    s.set_fd_capacity(5);
    assert_eq!(
        s.handle(&m, libc::SYS_getrlimit as u64, [libc::RLIMIT_NOFILE as u64, 0x1000, 0, 0, 0, 0]),
        Ok(0)
    );
    assert_eq!(m.read(0x1000, 16).unwrap(), [5u64.to_le_bytes(), 5u64.to_le_bytes()].concat());
    m.write(0x1100, b"/dev/null\0").unwrap();
    let open = |s: &mut Service| s.handle(&m, libc::SYS_openat as u64, [AT_FDCWD as u64, 0x1100, 0, 0, 0, 0]);
    assert_eq!(open(&mut s), Ok(3));
    assert_eq!(open(&mut s), Ok(4));
    assert_eq!(open(&mut s), Ok(-(libc::EMFILE as i64)));
    assert_eq!(s.handle(&m, libc::SYS_dup2 as u64, [0, 5, 0, 0, 0, 0]), Ok(-(libc::EBADF as i64)));
    assert_eq!(
        s.handle(&m, libc::SYS_fcntl as u64, [0, libc::F_DUPFD as u64, 5, 0, 0, 0]),
        Ok(-(libc::EINVAL as i64))
    );
}

#[test]
fn thread_names_across_adjacent_regions() {
    // A name that starts near the end of one readable region and whose NUL
    // lies far into the next (busybox's segments are adjacent): at most 15
    // bytes are taken, the monitor does not panic.
    use crate::memory::tests::{adjacent_memory, poke};
    let m = adjacent_memory();
    let mut s = service();
    let set = |s: &mut Service, addr: u64| s.handle(&m, libc::SYS_prctl as u64, [15, addr, 0, 0, 0, 0]);
    // 8 bytes at the end of the read-write region, 30 more in the read-only one.
    poke(&m, 0x2000 - 8, &[b'n'; 38]);
    assert_eq!(set(&mut s, 0x2000 - 8), Ok(0), "PR_SET_NAME across the boundary");
    assert_eq!(s.comm, vec![b'n'; 15]);
    assert_eq!(s.handle(&m, libc::SYS_prctl as u64, [16, 0x1100, 0, 0, 0, 0]), Ok(0));
    let got = m.read(0x1100, 16).unwrap();
    assert_eq!(&got[..15], &[b'n'; 15]);
    assert_eq!(got[15], 0, "PR_GET_NAME is NUL-terminated");
    // A short name whose NUL lies in the next region.
    poke(&m, 0x2ffe, b"ab\0");
    assert_eq!(set(&mut s, 0x2ffe), Ok(0));
    assert_eq!(s.comm, b"ab");
    // Exactly 15 bytes ending at a region's end, nothing readable after it.
    poke(&m, 0x4000 - 15, &[b'z'; 15]);
    assert_eq!(set(&mut s, 0x4000 - 15), Ok(0));
    assert_eq!(s.comm, vec![b'z'; 15]);
    // A name running into unreadable memory before 15 bytes ends the program.
    assert!(set(&mut s, 0x4000 - 8).is_err());
}

#[test]
fn distinct_unknown_numbers_are_reported_once_in_all_and_counted() {
    // Numbers chosen by the program must not grow the monitor: a fixed
    // table below 512, one bucket above, one report for the bucket.
    let m = test_memory();
    let mut s = service();
    for i in 0..200_000u64 {
        assert_eq!(s.handle(&m, 100_000 + i, [0; 6]), Ok(-(libc::ENOSYS as i64)));
    }
    assert_eq!(s.handle(&m, u64::MAX, [0; 6]), Ok(-(libc::ENOSYS as i64)));
    // Known numbers without a service: once each.
    for _ in 0..3 {
        assert_eq!(s.handle(&m, 56, [0; 6]), Ok(-(libc::ENOSYS as i64)));
        assert_eq!(s.handle(&m, 500, [0; 6]), Ok(-(libc::ENOSYS as i64)));
    }
    assert_eq!(s.reports.len(), 3, "{:?}", s.reports);
    assert!(s.reports[0].contains("number 100000 is not an x86-64 system call"), "{}", s.reports[0]);
    assert!(s.reports[1].contains("clone (56)") && s.reports[2].contains("(500)"), "{:?}", s.reports);
    assert_eq!(s.stats.per_nr.other(), 200_001);
    assert_eq!(s.stats.per_nr.get(56), 3);
    assert_eq!(s.stats.denied, 200_007);
    s.finish_reports();
    assert_eq!(s.reports.len(), 4);
    assert!(
        s.reports[3].contains("200001 calls") && s.reports[3].contains("more than 1024 distinct"),
        "{}",
        s.reports[3]
    );
}

/// `execve`'s copy of argv/envp from hostile memory: wild pointers are the
/// program's `EFAULT`, a string running off memory too, the total past
/// Linux's bound `E2BIG`, a path outside the trees `EACCES`; nothing
/// panics and nothing is left open.
#[test]
fn exec_arguments_are_bounded_and_checked() {
    use crate::memory::tests::poke;
    let m = test_memory();
    let mut s = service();
    let exec = |s: &mut Service, args: [u64; 6]| {
        s.exec_prepare(&m, libc::SYS_execve as u64, &args).map(|r| r.args.len()).map_err(|f| f.errno)
    };
    m.write(0x1000, b"/etc/passwd\0").unwrap();
    // A wild argv, a wild string, a wild envp.
    assert_eq!(exec(&mut s, [0x1000, 0xdead_0000, 0, 0, 0, 0]), Err(libc::EFAULT));
    m.write_u64(0x1100, 0xdead_0000).unwrap();
    m.write_u64(0x1108, 0).unwrap();
    assert_eq!(exec(&mut s, [0x1000, 0x1100, 0, 0, 0, 0]), Err(libc::EFAULT));
    assert_eq!(exec(&mut s, [0x1000, 0, 0x1100, 0, 0, 0]), Err(libc::EFAULT));
    // An array without its NULL running off memory.
    for a in (0x1800..0x2000).step_by(8) {
        m.write_u64(a, 0x1000).unwrap();
    }
    assert_eq!(exec(&mut s, [0x1000, 0x1800, 0, 0, 0, 0]), Err(libc::EFAULT));
    // A string without its NUL before memory ends.
    poke(&m, 0x10000, &[b'x'; 4096]);
    m.write_u64(0x1100, 0x10000).unwrap();
    assert_eq!(exec(&mut s, [0x1000, 0x1100, 0, 0, 0, 0]), Err(libc::EFAULT));
    // 2 × 511 strings of 4 KiB: past the 2 MiB total.
    let mut big = vec![b'y'; 4095];
    big.push(0);
    poke(&m, 0x10000, &big);
    for a in (0x1000..0x1ff8).step_by(8) {
        m.write_u64(a, 0x10000).unwrap();
    }
    m.write_u64(0x1ff8, 0).unwrap();
    poke(&m, 0x10ff0, b"/etc/passwd\0");
    let path = 0x10ff0;
    assert_eq!(exec(&mut s, [path, 0x1000, 0x1000, 0, 0, 0]), Err(libc::E2BIG));
    // Within the bound the path decides: outside the trees.
    assert_eq!(exec(&mut s, [path, 0x1000, 0, 0, 0, 0]), Err(libc::EACCES));
    assert_eq!(exec(&mut s, [path, 0, 0, 0, 0, 0]), Err(libc::EACCES));
    // execveat: unknown flags, an empty path.
    let at = |s: &mut Service, p: u64, flags: u64| {
        s.exec_prepare(&m, libc::SYS_execveat as u64, &[AT_FDCWD as u64, p, 0, 0, flags, 0])
            .map(|_| ())
            .map_err(|f| f.errno)
    };
    assert_eq!(at(&mut s, path, 0x8000_0000), Err(libc::EINVAL));
    assert_eq!(at(&mut s, 0x10fff, 0), Err(libc::ENOENT));
    assert_eq!(s.open_fds(), 3);
}

/// `sendmsg` control data through the service alone: the checks of
/// `cmsg::send_control` (EINVAL, EBADF, EPERM, ENOBUFS, EFAULT) and a
/// descriptor that arrives under the program's lowest free number.
#[test]
fn control_messages_are_checked_and_descriptors_translated() {
    use crate::memory::tests::poke;
    let m = test_memory();
    let mut s = service();
    let nr = |n: i64| n as u64;
    assert_eq!(s.handle(&m, nr(libc::SYS_socketpair), [1, 2, 0, 0x1000, 0, 0]), Ok(0)); // AF_UNIX, DGRAM
    let (a, b) = (3u64, 4u64);
    // msghdr at 0x1100: iov at 0x1200 (one byte at 0x1300), control at 0x1400.
    let msghdr = |control: u64, len: u64| {
        let mut h = [0u8; 56];
        h[16..24].copy_from_slice(&0x1200u64.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&control.to_le_bytes());
        h[40..48].copy_from_slice(&len.to_le_bytes());
        h
    };
    let mut iov = [0u8; 16];
    iov[..8].copy_from_slice(&0x1300u64.to_le_bytes());
    iov[8..].copy_from_slice(&1u64.to_le_bytes());
    poke(&m, 0x1200, &iov);
    poke(&m, 0x1300, b"x");
    let cmsg = |len: u64, ty: i32, data: &[u8]| {
        let mut c = Vec::new();
        c.extend_from_slice(&len.to_le_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_le_bytes());
        c.extend_from_slice(&ty.to_le_bytes());
        c.extend_from_slice(data);
        c.resize(c.len().div_ceil(8) * 8, 0);
        c
    };
    let send = |s: &mut Service, c: &[u8], len: u64| {
        poke(&m, 0x1400, c);
        poke(&m, 0x1100, &msghdr(0x1400, len));
        s.handle(&m, nr(libc::SYS_sendmsg), [a, 0x1100, 0, 0, 0, 0]).expect("no violation")
    };
    let e = |n: i32| -(n as i64);
    assert_eq!(send(&mut s, &cmsg(8, libc::SCM_RIGHTS, &[]), 24), e(libc::EINVAL), "cmsg_len below a header");
    assert_eq!(send(&mut s, &cmsg(64, libc::SCM_RIGHTS, &[0; 8]), 24), e(libc::EINVAL), "past the buffer");
    assert_eq!(send(&mut s, &cmsg(20, libc::SCM_RIGHTS, &99i32.to_le_bytes()), 24), e(libc::EBADF));
    assert_eq!(send(&mut s, &cmsg(20, libc::SCM_RIGHTS, &(-1i32).to_le_bytes()), 24), e(libc::EBADF));
    let cred = |pid: i32| {
        // SAFETY: no preconditions.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        [pid.to_le_bytes(), u.to_le_bytes(), g.to_le_bytes()].concat()
    };
    assert_eq!(send(&mut s, &cmsg(28, libc::SCM_CREDENTIALS, &cred(1)), 32), e(libc::EPERM));
    assert_eq!(send(&mut s, &cmsg(28, libc::SCM_CREDENTIALS, &cred(42)), 32), 1, "its own identity");
    assert_eq!(send(&mut s, &cmsg(20, 29, &[0; 4]), 24), e(libc::EINVAL), "SCM_TIMESTAMP");
    assert_eq!(send(&mut s, &[], 1 << 40), e(libc::ENOBUFS));
    poke(&m, 0x1100, &msghdr(0, 16));
    assert_eq!(s.handle(&m, nr(libc::SYS_sendmsg), [a, 0x1100, 0, 0, 0, 0]), Ok(e(libc::EFAULT)));
    // Drain the credentials message, then pass fd 1 (stdout).
    poke(&m, 0x1100, &msghdr(0, 0));
    assert_eq!(s.handle(&m, nr(libc::SYS_recvmsg), [b, 0x1100, 0, 0, 0, 0]), Ok(1));
    assert_eq!(send(&mut s, &cmsg(20, libc::SCM_RIGHTS, &1i32.to_le_bytes()), 24), 1);
    poke(&m, 0x1400, &[0xff; 64]);
    poke(&m, 0x1100, &msghdr(0x1400, 64));
    assert_eq!(s.handle(&m, nr(libc::SYS_recvmsg), [b, 0x1100, 0, 0, 0, 0]), Ok(1));
    let h = m.read(0x1100, 56).expect("msghdr");
    assert_eq!(u64::from_le_bytes(h[40..48].try_into().expect("8")), 24, "msg_controllen");
    let c = m.read(0x1400, 24).expect("control");
    assert_eq!(i32::from_le_bytes(c[16..20].try_into().expect("4")), 5, "the lowest free number");
    assert!(s.fds.get(5).is_some());
}

#[test]
fn special_devices_are_found_by_every_spelling_and_nothing_else() {
    // What special_device answered before it looked at the last component
    // first: the normalised path against the table.
    fn by_normalizing(abs: &[u8]) -> Option<String> {
        let n = fs::normalize(abs);
        let names: [&[u8]; 17] = [
            b"/dev/null",
            b"/dev/zero",
            b"/dev/full",
            b"/dev/random",
            b"/dev/urandom",
            b"/dev/stdin",
            b"/dev/fd/0",
            b"/proc/self/fd/0",
            b"/proc/thread-self/fd/0",
            b"/dev/stdout",
            b"/dev/fd/1",
            b"/proc/self/fd/1",
            b"/dev/stderr",
            b"/dev/fd/2",
            b"/proc/self/fd/2",
            b"/proc/thread-self/fd/1",
            b"/proc/thread-self/fd/2",
        ];
        names.contains(&n.as_slice()).then(|| String::from_utf8_lossy(&n).into_owned())
    }
    let mut tried = 0;
    for base in
        ["/dev/null", "/dev/urandom", "/dev/fd/2", "/proc/self/fd/0", "/proc/thread-self/fd/1", "/dev/stdout"]
    {
        let b = base.as_bytes();
        let cut = b.iter().rposition(|&c| c == b'/').unwrap();
        let (dir, name) = (&b[..cut], &b[cut + 1..]);
        let spellings: Vec<Vec<u8>> = vec![
            b.to_vec(),
            [b"/", b].concat(),
            [dir, b"//", name].concat(),
            [dir, b"/./", name].concat(),
            [dir, b"/x/../", name].concat(),
            [b"/..", b].concat(),
            [b, b"/"].concat(),
            [b, b"/."].concat(),
            [b, b"/x/.."].concat(),
            [b, b"/.."].concat(),
            [b, b"x"].concat(),
            [b, b"."].concat(),
            [dir, b"/", name, b"/../", name].concat(),
            [b"/tmp/", name].concat(),
            [b"/tmp/", name, b"/"].concat(),
        ];
        for s in spellings {
            let want = by_normalizing(&s);
            let got = special_device(&s).map(|_| String::from_utf8_lossy(&fs::normalize(&s)).into_owned());
            assert_eq!(got, want, "special_device({})", String::from_utf8_lossy(&s));
            tried += 1;
        }
    }
    assert_eq!(tried, 90);
}
