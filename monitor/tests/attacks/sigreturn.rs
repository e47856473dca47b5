//! The signal paths (docs/signals.md, "Attacks"): `programs/attack_sigreturn.c`
//! forges `rt_sigreturn` frames (kernel code and stack selectors, a null
//! code selector, non-canonical and kernel `rip`, IOPL/NT/VM/VIF/VIP and TF
//! in RFLAGS, a frame outside the domain's memory, an FP state with
//! reserved bits and one at a kernel address), asks for dispositions of
//! SIGKILL and SIGSTOP (SIGSYS only virtually), storms itself with 100 000 signals, and
//! scribbles the signal words of its boot page before a fault.
//!
//! The program's `rt_sigreturn` is served by the libos in ring 3 (an
//! `iretq` to ring 3 with the current CS/SS), so no frame can reach ring 0
//! or the monitor; each case must end as the program does natively (Linux
//! decides what a forged frame may set). Never a Cabin error, never
//! "RING 0 REACHED".

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(
    forged_frames_stay_in_ring_3,
    refused_dispositions,
    signal_storms_stay_bounded,
    scribbled_signal_words_end_only_the_program
);

fn built() -> Option<&'static (std::path::PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(std::path::PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("attack-sigreturn");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("attack_sigreturn", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

fn native(case: &str) -> (String, i32) {
    let (exe, _) = built().expect("built");
    let out = std::process::Command::new(exe).arg(case).output().expect("run natively");
    let code = out.status.code().unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    (String::from_utf8_lossy(&out.stdout).into_owned(), code)
}

fn confined(b: Backend, case: &str) -> (String, i32) {
    let (_, img) = built().expect("built");
    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_sigreturn".into(), case.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        arena_bytes: 64 << 20,
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).unwrap_or_else(|e| panic!("{case} on {b:?}: Cabin error: {e}"));
    drop(out);
    (std::fs::read_to_string(&path).unwrap_or_default(), o.exit_code)
}

fn forged_frames_stay_in_ring_3(b: Backend) {
    if built().is_none() {
        return;
    }
    let cases = [
        "kernel-cs",
        "null-cs",
        "noncanonical-rip",
        "kernel-rip",
        "iopl-nt-vm",
        "trap-flag",
        "frame-unmapped",
        "frame-kernel",
        "bad-fpstate",
        "fpstate-kernel",
    ];
    let mut wrong = Vec::new();
    for case in cases {
        let got = confined(b, case);
        assert!(!got.0.contains("RING 0 REACHED"), "{case} on {b:?}: {got:?}");
        let want = native(case);
        if got != want {
            wrong.push(format!("{case}: confined {got:?}, native {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{b:?}:\n{}", wrong.join("\n"));
}

fn refused_dispositions(b: Backend) {
    if built().is_none() {
        return;
    }
    // SIGKILL and SIGSTOP are refused as natively; a SIGSYS disposition is
    // the program's for the signals it sends itself (Go's runtime installs
    // one for every signal), while the seccomp trap path stays the libos's:
    // the calls after it are still served. Same output as native.
    let got = confined(b, "dispositions");
    assert_eq!(got, native("dispositions"), "{b:?}");
    assert!(got.0.contains("sigaction(31): 0 errno 0\nSIGSYS handled 1, pid ok 1\n"), "{got:?}");
}

fn signal_storms_stay_bounded(b: Backend) {
    if built().is_none() {
        return;
    }
    let got = confined(b, "storm");
    assert_eq!(got, native("storm"), "{b:?}");
}

/// The program scribbles every signal word of its boot page (the monitor's
/// posted signals and mailbox, the libos's entry, text range and handled
/// set) and faults: whatever it does then, it ends, and only itself (no
/// Cabin error, no hang: a fault at the published entry is not sent back).
fn scribbled_signal_words_end_only_the_program(b: Backend) {
    if built().is_none() {
        return;
    }
    let (out, code) = confined(b, "boot-scribble");
    assert!(!out.contains("RING 0 REACHED"), "{b:?}: {out}");
    assert!((0..=255).contains(&code) && code != 125, "{b:?}: exit {code}, printed {out:?}");
}
