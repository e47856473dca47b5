//! A program's own CPU time, confined as natively (issue 15):
//! `tests/programs/cputime.c` reads its CPU time every ~6 µs of work with
//! `clock()` and checks that `clock()`, the process and thread CPU-time
//! clocks, `clock_getcpuclockid(0)`, `getrusage` (self, thread) and
//! `times` agree within 5 % and never exceed the wall time, and that a
//! second thread's time is counted. Before the fix, on KVM the process
//! clock counted the monitor's polling ring worker (more CPU than wall
//! time) and `getrusage`/`times` answered zeros on both backends.
//!
//! The program passes natively first; then confined, on each backend. No
//! check depends on the machine's speed or load (CPU time is compared with
//! CPU time, and with wall time only as an upper bound).

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

fn cpu_time_is_the_programs_own(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("cputime", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    println!("native:\n{native_out}");
    assert!(native.status.success(), "natively:\n{native_out}");

    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["cputime".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let confined = std::fs::read_to_string(&out_path).expect("stdout");
    println!("{b:?}:\n{confined}");
    assert_eq!(o.exit_code, 0, "{b:?}: {:?}\n{confined}", o.reason);
    assert!(confined.contains("failures 0"), "{confined}");
}

on_both_backends!(cpu_time_is_the_programs_own);
