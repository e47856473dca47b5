//! Hostile use of the signal queue (docs/signals.md, "Queued and
//! thread-directed signals"): 100 000 `sigqueue`s of a blocked real-time
//! signal fill the fixed queue and then get `EAGAIN` (nothing grows; each
//! queued instance is delivered once when unblocked); 100 000
//! `pthread_kill`s of a signal the target blocks collapse into one, and
//! only the first asks the monitor to wake the target; a `siginfo` pointer
//! outside the program's memory faults the program (SIGSEGV, 139), never
//! the libos's caller or the monitor. Forged wake requests
//! (`THREAD_OP_SIGNAL`) are in `threads.rs`.

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(a_signal_flood_stays_bounded, a_wild_siginfo_faults_the_program);

fn run(b: Backend, case: &str) -> Option<(String, cabin_monitor::RunOutcome)> {
    let t = tempfile::tempdir().expect("tempdir");
    let img = common::image("attack_sigqueue", t.path())?;
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = RunConfig {
        args: vec!["attack_sigqueue".into(), case.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the monitor survives");
    Some((std::fs::read_to_string(&path).expect("output"), o))
}

fn a_signal_flood_stays_bounded(b: Backend) {
    let Some((out, o)) = run(b, "flood") else { return };
    assert_eq!(o.exit_code, 0, "{out} {:?}", o.reason);
    assert_eq!(
        out, "queued 32, EAGAIN 99968, other 0, delivered 32\npthread_kill 100000 sent, handled 1\n",
        "{b:?}"
    );
}

fn a_wild_siginfo_faults_the_program(b: Backend) {
    let Some((out, o)) = run(b, "wild-info") else { return };
    assert_eq!(o.exit_code, 139, "{out} {:?}", o.reason);
    assert!(!out.contains("returned"), "{out}");
}
