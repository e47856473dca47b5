//! Hostile arguments to the waiting calls (`poll`, `ppoll`, `select`,
//! `pselect6`, `epoll_*`, `eventfd*`, `timerfd_*`): huge counts, negative
//! and overflowing timeouts, descriptor numbers the program does not have
//! (where the monitor keeps its ring doorbells, trace files and trees),
//! aliased and overlapping buffers get the errno and the results Linux
//! gives (compared with a native run); event descriptors count against the
//! descriptor table (`EMFILE`, no unbounded host resource); a pointer
//! outside the program's memory ends the program (137; a wild signal
//! mask, which the libos reads, with SIGSEGV), never the monitor.
//! (The service's handling of the same inputs is also fuzzed:
//! fuzz/fuzz_targets/service.rs.)

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;

use cabin_monitor::{EndReason, RunConfig, RunOutcome};

use crate::common::{self, Backend};

on_both_backends!(
    hostile_wait_arguments_get_linux_answers,
    event_descriptors_count_against_the_table,
    wild_wait_pointers_end_the_program
);

/// The compiled program and its image, built once.
fn built() -> Option<&'static (std::path::PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(std::path::PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("attack-events");
        let exe = common::compile("attack_events", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

fn run(b: Backend, img: &[u8], mode: &str, dir: &Path) -> (RunOutcome, String) {
    let out_path = dir.join(format!("out-{mode}"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_events".into(), mode.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

fn hostile_wait_arguments_get_linux_answers(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let native = std::process::Command::new(exe).arg("errnos").output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.status.success(), "{native_out}");
    assert!(native_out.contains("foreign descriptors: ctl 0 poll 0 wait 0 timer 0 select 0"), "{native_out}");
    let (o, out) = run(b, img, "errnos", t.path());
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert_eq!(out, native_out, "{b:?}: confined vs native");
}

fn event_descriptors_count_against_the_table(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, "many", t.path());
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    let made: usize = out
        .strip_prefix("stopped after ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.contains("EMFILE"), "{out}");
    assert!((16..=1024).contains(&made), "{made}");
}

fn wild_wait_pointers_end_the_program(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    for mode in [
        "wild-poll",
        "wild-ppoll-ts",
        "wild-select",
        "wild-epoll-events",
        "wild-epoll-ctl",
        "huge-epoll-events",
        "wild-timerfd",
    ] {
        let (o, out) = run(b, img, mode, t.path());
        assert_eq!(o.exit_code, 137, "{mode}: {:?}: {out}", o.reason);
        assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{mode}: {:?}", o.reason);
        assert!(!out.contains("returned"), "{mode}: {out}");
    }
    // The wait's signal mask is the libos's to install (it holds the
    // program's masks: docs/signals.md, "Waits with a signal mask"), so the
    // libos reads it as the program would and a wild one faults the program
    // in its own domain: SIGSEGV at that address, never the monitor.
    let (o, out) = run(b, img, "wild-sigmask", t.path());
    assert_eq!(o.exit_code, 139, "wild-sigmask: {:?}: {out}", o.reason);
    assert!(
        matches!(o.reason, EndReason::Signal { signo: 11, addr: Some(0x7ff0_dead_0000), .. }),
        "wild-sigmask: {:?}",
        o.reason
    );
    assert!(!out.contains("returned"), "wild-sigmask: {out}");
}
