//! `mprotect`/`mmap` against the boundary (issue 13), with
//! `programs/attack_memprot.c`: `PROT_EXEC` through libc, raw calls and a
//! `syscall` hidden in an immediate (on the process backend it reaches the
//! seccomp filter directly, with chosen registers) is refused everywhere;
//! code, the boot page and the ring never become writable (a write to code
//! still faults, 139), on both backends.

use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use super::common::{self, Backend};

fn image() -> Option<&'static [u8]> {
    static IMAGE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let t = tempfile::tempdir().expect("tempdir");
            common::image("attack_memprot", t.path())
        })
        .as_deref()
}

fn run(b: Backend, mode: &str) -> Option<i32> {
    let img = image()?;
    let cfg =
        RunConfig { args: vec!["attack_memprot".into(), mode.into()], quiet: true, ..RunConfig::default() };
    let o = b.run(img, &cfg).expect("the monitor survives");
    Some(o.exit_code)
}

fn prot_exec_is_refused_through_libc_and_raw_calls(b: Backend) {
    if let Some(code) = run(b, "exec") {
        assert_eq!(code, 0, "some PROT_EXEC request succeeded (the program printed which)");
    }
}

fn forged_calls_from_a_hidden_syscall_are_refused(b: Backend) {
    if let Some(code) = run(b, "forged") {
        assert_eq!(code, 0, "a forged mprotect succeeded (the program printed which)");
    }
}

fn code_boot_page_and_ring_never_become_writable(b: Backend) {
    if let Some(code) = run(b, "code") {
        assert_eq!(code, 139, "code became writable, or a refusal failed (the program printed which)");
    }
}

fn the_reservation_space_maps_nothing_but_arena_pages(b: Backend) {
    if let Some(code) = run(b, "reserve") {
        assert_eq!(code, 0, "a reservation or forged mmap succeeded (the program printed which)");
    }
}

fn hostile_protect_and_commit_exits_are_refused(b: Backend) {
    if let Some(code) = run(b, "doorbell") {
        // Process: `out` is a fault there.
        let want = if b == Backend::Process { 139 } else { 0 };
        assert_eq!(code, want, "a hostile exit succeeded (the program printed which)");
    }
}

on_both_backends!(
    the_reservation_space_maps_nothing_but_arena_pages,
    hostile_protect_and_commit_exits_are_refused,
    prot_exec_is_refused_through_libc_and_raw_calls,
    forged_calls_from_a_hidden_syscall_are_refused,
    code_boot_page_and_ring_never_become_writable,
);
