//! The host's `rt_sigreturn` (docs/execute-only.md, issue 16): Linux loads
//! PKRU from a signal frame's XSAVE area, so a program that reaches a native
//! `syscall` with `rax` = 15 and a frame of its own (PKRU = 0) could make
//! its execute-only code readable. `programs/attack_xonly.c
//! native-sigreturn` jumps to a `syscall` hidden in an immediate (no
//! rewriter sees it) with such a frame, whose `rip` is a function that says
//! "resumed at the forged rip".
//!
//! Process backend: the seccomp filter kills every native `rt_sigreturn`
//! (the libos's kernel handlers return without it), so the program ends by
//! SIGSYS right there and never resumes at the forged `rip`. KVM backend:
//! the `syscall` reaches the libos, which serves it as the program's own
//! `rt_sigreturn` in ring 3 (PKRU is never restored from a frame); only the
//! program ends, whatever it makes of the frame.

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(a_forged_native_sigreturn_never_resumes_at_its_rip);

fn built() -> Option<&'static (std::path::PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(std::path::PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("attack-xonly-sigreturn");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("attack_xonly", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

const CASE: &str = "native-sigreturn";

fn a_forged_native_sigreturn_never_resumes_at_its_rip(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let native = std::process::Command::new(exe).arg(CASE).output().expect("run natively");
    let native_code = native.status.code().unwrap_or_else(|| 128 + native.status.signal().unwrap_or(0));
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    // The attack itself works natively: Linux restores the forged frame.
    assert!(native_out.contains("resumed at the forged rip"), "native: {native_out:?} {native_code}");

    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_xonly".into(), CASE.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        arena_bytes: 64 << 20,
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).unwrap_or_else(|e| panic!("{b:?}: Cabin error: {e}"));
    drop(out);
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    match b {
        Backend::Process => {
            // Killed by the filter at the `syscall`: SIGSYS, nothing after.
            assert_eq!(got, "native-sigreturn: jumping\n", "process: exit {}", o.exit_code);
            assert_eq!(o.exit_code, 128 + libc::SIGSYS, "process: printed {got:?}");
        }
        Backend::Kvm => {
            // The hidden `syscall` reaches the proxy-kernel's gate, which
            // hands it to the libos's ring-3 `rt_sigreturn` (the trap entry):
            // the frame's registers come back as the program's own could,
            // never its PKRU. So it resumes at the forged rip, as natively,
            // and its read of code is what execute-only decides: refused
            // (SIGSEGV) where the backend enforces it, as natively otherwise.
            assert!(
                got.starts_with("native-sigreturn: jumping\nnative-sigreturn: resumed at the forged rip\n"),
                "kvm: exit {}, printed {got:?}",
                o.exit_code
            );
            if o.stats["execute_only_enforced"] == true {
                assert_eq!(o.exit_code, 128 + libc::SIGSEGV, "kvm: printed {got:?}");
                assert!(!got.contains("read code:"), "kvm: read its code: {got:?}");
            } else {
                assert_eq!((o.exit_code, got.as_str()), (native_code, native_out.as_str()), "kvm");
            }
        }
    }
}
