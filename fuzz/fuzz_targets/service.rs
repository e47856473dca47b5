//! Fuzz target: the system-call service (`Service::handle`) with any call
//! number and arguments, over a fake program memory of several regions
//! (read-write, read-only and unusable; adjacent and with gaps: see
//! `common::LAYOUT`) whose bytes come from the input.
//!
//! Findings: a panic, an abort or a hang. `Err(Violation)` (the program is
//! ended) and `-errno` results are fine.
//!
//! Safe to run: the program's filesystem is a fresh temporary directory
//! (`w`, writable, the working directory; `r`, read-only, one file), emptied
//! before each input; stdio is `/dev/null`. What the harness changes:
//! - every call runs under `common::Watchdog`, which interrupts a call still
//!   blocked after 0.5-1 ms (`read` of an empty pipe, `poll`, `nanosleep`,
//!   `clock_nanosleep`, `write` to a full pipe), as the monitor's stop does;
//! - `fallocate`'s length and the byte counts of `sendfile` and
//!   `copy_file_range` are clamped to 1 MiB, so `/dev/zero` cannot fill the
//!   disk (sizes are the gate's business: `[limits]`, not the service's).
//!
//! Input: a memory seed (length byte, then bytes, repeated over all of
//! memory), then up to 16 calls (number, six arguments: `common::Input`).
//! A fifth of the calls are drawn from the waiting and event calls
//! ([`EVENTS`]: `poll`, `select`, the `epoll` family, `eventfd`, `timerfd`),
//! so that sequences like create, control, wait reach deep states; every
//! call goes through `Service::begin` and, for a wait, `Waiting::finish`
//! (the split a multi-threaded worker uses).
//!
//! Run: `cargo +nightly fuzz run service` (or `fuzz/run.sh`).

#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cabin_monitor::service::fs::FsPolicy;
use cabin_monitor::service::{Begun, Service};
use common::{Input, Memory, Watchdog};
use libfuzzer_sys::fuzz_target;

const CLAMP: u64 = 1 << 20;

/// The waiting and event calls, drawn more often than the rest.
const EVENTS: [i64; 17] = [
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_create,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd,
    libc::SYS_eventfd2,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_pipe2,
    libc::SYS_close,
];

/// The temporary directory (`r/` and `w/` in it), one per process.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The temporary directory, made on first use.
fn root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("cabin-fuzz-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("r/sub")).expect("fuzz dir");
        std::fs::write(base.join("r/file"), b"read-only file\n").expect("fuzz file");
        std::fs::create_dir_all(base.join("w")).expect("fuzz dir");
        // SAFETY: `remove_root` is an `extern "C" fn()` reading only ROOT.
        unsafe { libc::atexit(remove_root) };
        base.canonicalize().expect("canonical fuzz dir")
    })
}

/// Removes the directory when the fuzzer exits (one was left in /tmp per run).
extern "C" fn remove_root() {
    if let Some(base) = ROOT.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// Empties `w/` (the program may have filled it, or chmod-ed or removed it).
fn reset(root: &Path) {
    let w = root.join("w");
    let _ = std::fs::remove_dir_all(&w);
    std::fs::create_dir_all(&w).expect("recreate w");
}

fn clamp(nr: u64, a: &mut [u64; 6]) {
    match nr as i64 {
        libc::SYS_fallocate => a[3] = a[3].min(CLAMP),
        libc::SYS_sendfile => a[3] = a[3].min(CLAMP),
        libc::SYS_copy_file_range => a[4] = a[4].min(CLAMP),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    reset(root);
    let watchdog = Watchdog::get();
    let mut input = Input::new(data);
    let m = Memory::get();
    let seed_len = usize::from(input.u8());
    m.fill(input.bytes(seed_len));
    let policy = FsPolicy::new(&[root.join("r")], &[root.join("w")]).expect("fs policy");
    let cwd = root.join("w").into_os_string().into_encoded_bytes();
    let mut s = Service::with_stdio(policy, cwd, 4242, common::dev_null_stdio());
    s.print_reports = false;
    s.set_record_paths(input.u8() & 1 == 1);
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let nr = if input.u8() < 51 { EVENTS[usize::from(input.u8()) % EVENTS.len()] as u64 } else { input.nr() };
        let mut a = input.args();
        clamp(nr, &mut a);
        let r = watchdog.call(|| match s.begin(&m.mem, nr, a) {
            Begun::Done(r) => r,
            Begun::Wait(w) => w.finish(&m.mem),
        });
        let _ = s.take_note();
        match r {
            Ok(v) => assert!(v >= -4095, "result {v} of call {nr} is neither a value nor -errno"),
            Err(_) => break, // the program would be ended here
        }
    }
    s.finish_reports();
});
