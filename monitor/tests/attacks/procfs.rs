//! `/proc`, `/sys` and devices (issue 11, item 4): whatever trees are
//! allowed, the program never reaches the monitor through `/proc/self`,
//! `/proc/thread-self`, `/proc/<pid>` (the monitor's, or any process's) or
//! `/dev/fd`; nothing on a kernel pseudo filesystem is writable; and a
//! device node outside the safe list is refused, even inside an allowed
//! tree, without ever being opened (an inotify watch on the node sees no
//! open).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cabin_monitor::RunConfig;

use crate::common::Backend;
use crate::pathprobe::{self, refused};

const EACCES: i32 = libc::EACCES;

fn cfg(read: &[&str], write: &[&str]) -> RunConfig {
    RunConfig {
        allow_read: read.iter().map(PathBuf::from).collect(),
        allow_write: write.iter().map(PathBuf::from).collect(),
        ..RunConfig::default()
    }
}

/// Runs each (steps, expected last line) with the trees of `c`; `None` as
/// the expectation means a refusal (EACCES with a `[paths]` record).
fn table(b: Backend, c: &RunConfig, cases: &[(String, Option<&str>)], problems: &mut Vec<String>) {
    for (steps, want) in cases {
        let o = pathprobe::run(b, steps, c.clone());
        let res = match want {
            None => refused(&o, EACCES),
            Some(w) if o.last().starts_with(w) => Ok(()),
            Some(w) => Err(format!("expected {w}…")),
        };
        if o.exit != 0 {
            problems.push(format!("{steps}: exit {} {:?}", o.exit, o.lines));
        }
        if let Err(m) = res {
            problems.push(format!(
                "{steps} (read {:?}, write {:?}): {m}; output {:?}",
                c.allow_read, c.allow_write, o.lines
            ));
        }
    }
}

fn proc_self_is_not_the_monitor(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let me = std::process::id();
    let mut problems = Vec::new();
    // Everything readable: the monitor's (and every process's) /proc entries stay closed.
    let reads: Vec<(String, Option<&str>)> = vec![
        ("read /proc/self/environ".into(), None),
        ("read /proc/self/mem".into(), None),
        ("read /proc/self/maps".into(), None),
        ("read /proc/thread-self/environ".into(), None),
        (format!("read /proc/{me}/environ"), None),
        (format!("read /proc/{me}/task/{me}/environ"), None),
        (format!("read /proc/{me}/cmdline"), None),
        ("read /proc/1/status".into(), None),
        ("read /proc/net/dev".into(), None),
        ("read /dev/fd/3".into(), None),
        ("readlink /proc/self/cwd".into(), None),
        (format!("readlink /proc/{me}/exe"), None),
        ("readlink /proc/self".into(), None),
        // The program's own view where it has one.
        ("readlink /proc/self/exe".into(), Some("err 2")),
        ("read /proc/self/fd/0".into(), Some("")),
        // System-wide entries stay readable.
        ("read /proc/cpuinfo".into(), Some("ok ")),
        ("stat /proc/meminfo".into(), Some("ok ")),
    ];
    let mut reads = reads;
    if Path::new("/proc/kcore").exists() {
        reads.push(("read /proc/kcore".into(), None));
    }
    for c in [cfg(&["/"], &[]), cfg(&["/proc", "/dev"], &[])] {
        table(b, &c, &reads, &mut problems);
    }
    // Writable /proc and /sys: nothing there is writable (only opened, never written).
    let writes: Vec<(String, Option<&str>)> = vec![
        ("openrw /proc/self/mem".into(), None),
        (format!("openrw /proc/{me}/mem"), None),
        ("openw /proc/thread-self/comm".into(), None),
        ("openw /proc/sys/kernel/hostname".into(), None),
        ("openw /proc/sys/vm/drop_caches".into(), None),
        ("utimes /proc/sys/kernel/hostname".into(), None),
    ];
    table(b, &cfg(&[], &["/proc"]), &writes, &mut problems);
    let sys =
        ["/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/profiling", "/sys/kernel/uevent_helper"];
    let sys: Vec<(String, Option<&str>)> =
        sys.iter().filter(|p| Path::new(p).exists()).map(|p| (format!("openw {p}"), None)).collect();
    if sys.is_empty() {
        cabin_tests::not_run("sysfs", "the sysfs write cases: none of the probe files exists");
    }
    table(b, &cfg(&[], &["/sys"]), &sys, &mut problems);
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

/// `mknod` a character device with these numbers at `p`.
fn mknod(p: &Path, kind: libc::mode_t, major: u32, minor: u32) -> bool {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: mknod reads the path.
    unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(major, minor)) == 0 }
}

/// An inotify watch for opens of `p`; `count` says how many happened.
struct OpenWatch(std::os::fd::OwnedFd);

impl OpenWatch {
    fn new(p: &Path) -> OpenWatch {
        use std::os::fd::FromRawFd;
        // SAFETY: a new inotify descriptor.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: reads the path.
        let w = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) };
        assert!(w >= 0, "inotify_add_watch {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor we own.
        OpenWatch(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    fn opened(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        // SAFETY: reads into our buffer.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

fn devices_outside_the_safe_list(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        cabin_tests::not_run("root", "the device cases: mknod needs root");
        return;
    }
    let (_t, r) = pathprobe::tempdir();
    let w = r.join("w");
    std::fs::create_dir(&w).expect("w");
    // /dev/kvm's numbers where it exists (opening it has no effect), else /dev/kmsg's.
    let (ma, mi) = if Path::new("/dev/kvm").exists() { (10, 232) } else { (1, 11) };
    assert!(mknod(&w.join("dev"), libc::S_IFCHR, ma, mi), "mknod: {}", std::io::Error::last_os_error());
    assert!(mknod(&w.join("null"), libc::S_IFCHR, 1, 3), "mknod null");
    assert!(mknod(&w.join("blk"), libc::S_IFBLK, 7, 0), "mknod blk");
    std::os::unix::fs::symlink("dev", w.join("link")).expect("symlink");
    let wd = w.to_str().expect("utf-8");
    // Reading: refused for the node (also through a symlink), fine for
    // looking at it and for a device of the safe list.
    let reads: Vec<(String, Option<&str>)> = vec![
        (format!("read {wd}/dev"), None),
        (format!("read {wd}/link"), None),
        (format!("read {wd}/blk"), None),
        (format!("stat {wd}/dev"), Some("ok ")),
        (format!("read {wd}/null"), Some("ok")),
    ];
    // Writing and changing, in the writable tree.
    let mut changes: Vec<(String, Option<&str>)> = vec![
        (format!("openw {wd}/dev"), None),
        (format!("openrw {wd}/link"), None),
        (format!("chmodm {wd}/dev 600"), None),
        (format!("chown {wd}/dev 0 0"), None),
        (format!("write {wd}/null data"), Some("ok")),
    ];
    changes.extend(reads.iter().cloned());
    let mut problems = Vec::new();
    for (c, cases) in [(cfg(&[], &[&r.join("w").to_string_lossy()]), &changes), (cfg(&["/"], &[]), &reads)] {
        let watch = OpenWatch::new(&w.join("dev"));
        let blk = OpenWatch::new(&w.join("blk"));
        table(b, &c, cases, &mut problems);
        if watch.opened() || blk.opened() {
            problems.push(format!("a device node was OPENED (trees {:?} {:?})", c.allow_read, c.allow_write));
        }
    }
    // The host's own devices, with /dev readable.
    let host: Vec<(String, Option<&str>)> = ["/dev/kvm", "/dev/mem", "/dev/vda"]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| (format!("read {p}"), None))
        .collect();
    table(b, &cfg(&["/dev"], &[]), &host, &mut problems);
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

/// A plain file swapped (`RENAME_EXCHANGE`, from the host, at least
/// 20,000 times) with a device node, then with a symbolic link to it,
/// while the program opens and reads the file's name in a loop: each open
/// gives the file or a refusal (with its audit record), and the node is
/// never opened, whichever way the tree keeps devices out (a nodev clone,
/// or the probe).
fn device_swap_race(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        cabin_tests::not_run("root", "the device race: mknod needs root");
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (_t, r) = pathprobe::tempdir();
    let w = r.join("w");
    std::fs::create_dir(&w).expect("w");
    std::fs::write(w.join("f"), "GOOD\n").expect("f");
    let (ma, mi) = if Path::new("/dev/kvm").exists() { (10, 232) } else { (1, 11) };
    assert!(mknod(&w.join("d"), libc::S_IFCHR, ma, mi), "mknod: {}", std::io::Error::last_os_error());
    std::os::unix::fs::symlink("d", w.join("l")).expect("symlink");
    let watch = OpenWatch::new(&w.join("d"));
    let wd = w.to_str().expect("utf-8");
    let mut problems = Vec::new();
    for other in ["d", "l"] {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swaps = std::sync::Arc::new(AtomicU64::new(0));
        let swapper = {
            let x = CString::new(w.join("f").as_os_str().as_bytes()).expect("no NUL");
            let y = CString::new(w.join(other).as_os_str().as_bytes()).expect("no NUL");
            let (stop, swaps) = (stop.clone(), swaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    crate::common::exchange(&x, &y);
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let (mut ok, mut denied, mut runs) = (0u64, 0u64, 0);
        while swaps.load(Ordering::Relaxed) < 20_000 && runs < 10 {
            runs += 1;
            let o = pathprobe::run(b, &format!("repeat 20000 read {wd}/f"), cfg(&[wd], &[]));
            let nums: Vec<u64> = o.last().split(' ').filter_map(|x| x.parse().ok()).collect();
            let [n, k, d, e] = nums[..] else {
                problems.push(format!("{other}: output {:?} exit {}", o.lines, o.exit));
                break;
            };
            if n != 20_000 || k + d != n || e != 0 {
                problems.push(format!("{other}: {}", o.last()));
            }
            if o.denials.len() as u64 != d {
                problems.push(format!("{other}: {d} denials but {} audit records", o.denials.len()));
            }
            ok += k;
            denied += d;
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper");
        let n = swaps.load(Ordering::Relaxed);
        println!(
            "device swap race ({other}) on {b:?}: {runs} runs, {ok} good reads, {denied} refusals, {n} swaps"
        );
        if n < 20_000 {
            problems.push(format!("{other}: only {n} swaps"));
        }
        if ok == 0 || denied == 0 {
            problems.push(format!("{other}: the race did not race ({ok} good, {denied} refused)"));
        }
        // The plain file back under its name for the next round.
        // (Looked at, never read: reading would open the node.)
        if !std::fs::symlink_metadata(w.join("f")).is_ok_and(|m| m.file_type().is_file()) {
            let x = CString::new(w.join("f").as_os_str().as_bytes()).expect("no NUL");
            let y = CString::new(w.join(other).as_os_str().as_bytes()).expect("no NUL");
            crate::common::exchange(&x, &y);
        }
    }
    if watch.opened() {
        problems.push("the device node was OPENED".into());
    }
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

/// A FIFO in a tree opens for reading (blocking, until the host writes),
/// as natively.
fn fifo_open(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let (_t, r) = pathprobe::tempdir();
    let fifo = r.join("fifo");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: mkfifo reads the path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, "through the fifo").expect("write the fifo"))
    };
    let rd = r.to_str().expect("utf-8");
    let o = pathprobe::run(b, &format!("read {rd}/fifo"), cfg(&[rd], &[]));
    writer.join().expect("writer");
    assert_eq!(o.last(), "ok through the fifo", "{:?}", o.lines);
}

/// `statx` of a name in a tree's root (one host call when the look alone
/// decides) answers as `stat` does: links that leave the tree are refused
/// when followed, `/proc/self` is refused in a `/proc` tree.
fn statx_in_a_tree_root(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let (_t, r) = pathprobe::tempdir();
    let w = r.join("w");
    std::fs::create_dir(&w).expect("w");
    std::fs::write(w.join("f"), "abc").expect("f");
    std::fs::write(r.join("secret"), "SECRET").expect("secret");
    std::os::unix::fs::symlink(r.join("secret"), w.join("abs")).expect("abs");
    std::os::unix::fs::symlink("../secret", w.join("up")).expect("up");
    std::os::unix::fs::symlink("f", w.join("good")).expect("good");
    std::os::unix::fs::symlink("/proc/self/root", w.join("magic")).expect("magic");
    let wd = w.to_str().expect("utf-8");
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("statx {wd}/f"), Some("ok size=3 ")),
        (format!("statx {wd}/good"), Some("ok size=3 ")),
        (format!("lstatx {wd}/abs"), Some("ok ")),
        (format!("statx {wd}/abs"), None),
        (format!("statx {wd}/up"), None),
        (format!("statx {wd}/magic"), None),
        (format!("statx {wd}/missing"), Some("err 2")),
    ];
    let mut problems = Vec::new();
    table(b, &cfg(&[wd], &[]), &cases, &mut problems);
    let procs: Vec<(String, Option<&str>)> =
        vec![("statx /proc/self".into(), None), ("statx /proc/cpuinfo".into(), Some("ok "))];
    table(b, &cfg(&["/proc"], &[]), &procs, &mut problems);
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

on_both_backends!(
    proc_self_is_not_the_monitor,
    devices_outside_the_safe_list,
    device_swap_race,
    fifo_open,
    statx_in_a_tree_root
);
