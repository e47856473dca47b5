//! System-call buffers that straddle committed runs of the reservation
//! space which are adjacent in the program's address space but not in the
//! arena (the HTTP server's `recvfrom ... outside the program's writable
//! memory`): the monitor serves them through the range's host pieces
//! (`GuestMemory::host_pieces`), on both backends, with the same output
//! and status as natively. tests/programs/scatter.c commits pages 0, 2, 1
//! of a reservation in that order, so each page boundary is a straddle,
//! and does read, pread, readv, write, pwrite, writev, send, recv,
//! recvfrom, epoll_wait, getdents64 and getrandom across them.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

fn straddling_buffers_work_as_natively(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().canonicalize().expect("canonical");
    let Some(exe) = common::compile("scatter", &dir) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).arg(dir.join("native")).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(0), "natively: {native_out}");
    let work = dir.join("confined");
    std::fs::create_dir(&work).expect("mkdir");
    let out_path = dir.join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["scatter".into(), work.join("d").display().to_string()],
        allow_write: vec![work.clone()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    print!("{b:?}:\n{got}");
    assert_eq!(got, native_out, "{b:?}: output differs from native (exit {} {:?})", o.exit_code, o.reason);
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
}

on_both_backends!(straddling_buffers_work_as_natively);
