//! System V shared memory and `MAP_SHARED | MAP_ANONYMOUS` memory shared
//! between the processes of the confined tree (issue 14, docs/processes.md,
//! "Shared memory"), with `programs/shm.c`: segments made in a parent and
//! written by its child, `IPC_STAT` counts, `IPC_RMID` with attachments,
//! the errnos Linux gives, a counter two processes increment with atomics
//! and a futex wait/wake between them — each equal to native — and the
//! attacks (huge segments, floods, chosen addresses, executable mappings,
//! forged native mappings of the window's descriptor), after which the
//! monitor still serves and no memfd of the run is left (checked from
//! outside: this test process's descriptors, and no host process left).
//!
//! Process backend. KVM has no shared window yet (its shm calls are
//! `ENOSYS`): the KVM half says NOT RUN with that reason, never a pass.

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{confined, native, Backend};

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("shm-test");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("shm", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

/// A key no other test run uses at the same time (native runs make host
/// segments with it, and remove them).
fn key(case: u32) -> String {
    format!("{:#x}", 0x5cab_0000u32 | ((std::process::id() & 0xfff) << 4) | case)
}

/// One run at a time: the after-run checks look at the whole test
/// process (its descriptors, its children), which a concurrent run would
/// change.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The descriptors of this process that are a shared-window memfd.
fn window_memfds() -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy().into_owned();
            if t.contains("cabin-shared") {
                found.push(t);
            }
        }
    }
    found
}

fn kvm_not_run() {
    if !Backend::Kvm.available("shm") {
        return;
    }
    cabin_tests::not_run(
        "KVM",
        "the KVM backend has no shared window yet (its shmget/shmat/shmdt/shmctl are ENOSYS and \
         MAP_SHARED|MAP_ANONYMOUS memory is private to a process): docs/processes.md \"Shared memory\"",
    );
}

fn same_as_native(b: Backend, args: &[&str]) {
    let Some((exe, img)) = built() else { return };
    let _one = serial();
    let want = native(exe, args);
    assert_eq!(want.1, 0, "native {args:?}: {}", want.0);
    let got = confined(b, img, args);
    assert_eq!(got, want, "{b:?} {args:?}: confined (left) vs native (right)");
    assert!(window_memfds().is_empty(), "a shared-window memfd outlived the run: {:?}", window_memfds());
    assert!(common::live_children().is_empty(), "host processes left: {:?}", common::live_children());
}

#[test]
fn process_parent_and_child_share_a_segment() {
    let k = key(1);
    same_as_native(Backend::Process, &["shm", "fork", &k]);
}

#[test]
fn process_rmid_while_attached() {
    same_as_native(Backend::Process, &["shm", "rmid"]);
}

#[test]
fn process_errnos_as_linux() {
    let k = key(2);
    same_as_native(Backend::Process, &["shm", "errors", &k]);
}

#[test]
fn process_shared_anonymous_memory_atomics_and_futex_across_fork() {
    same_as_native(Backend::Process, &["shm", "futex"]);
}

#[test]
fn process_attacks_stop_at_the_bounds_and_the_monitor_survives() {
    let Some((_, img)) = built() else { return };
    let _one = serial();
    let got = confined(Backend::Process, img, &["shm", "attack"]);
    let want = "shmget 2^40 bytes: -1 EINVAL\n\
                shmget 2^64-1 bytes: -1 EINVAL\n\
                a flood of segments: 128 then ENOSPC\n\
                shmat at a chosen address: -1 EINVAL\n\
                shmat at the other segment's address: -1 EINVAL\n\
                shmat SHM_EXEC: -1 EACCES\n\
                mprotect exec: -1 EACCES\n\
                mmap exec over it: -1 EACCES\n\
                forged mmap of the window exec: -1 EACCES\n\
                forged mmap of the window exec-only: -1 EACCES\n\
                forged mmap of the window elsewhere: -1 EBADF\n\
                forged mmap of the window private: -1 ENOMEM\n\
                forged mprotect of the window exec: -1 EACCES\n\
                forged offsets in the window: allowed allowed\n\
                segment b intact: segment b\n\
                shmdt: 0 0\n\
                rmid: 0 0\n\
                child: 0, sees from the child\n\
                shmdt: 0\n";
    assert_eq!(got, (want.to_string(), 0), "attacks");
    assert!(window_memfds().is_empty(), "a shared-window memfd outlived the run: {:?}", window_memfds());
    assert!(common::live_children().is_empty(), "host processes left: {:?}", common::live_children());
}

/// KVM: NOT RUN until the KVM backend maps the window (see the module doc).
#[test]
fn kvm() {
    kvm_not_run();
}

/// KVM today: shm is ENOSYS, shared anonymous memory still maps (private).
#[test]
fn kvm_says_enosys_for_shm() {
    if !Backend::Kvm.available("shm") {
        return;
    }
    let Some((_, img)) = built() else { return };
    let _one = serial();
    let got = confined(Backend::Kvm, img, &["shm", "errors", &key(3)]);
    assert!(got.0.starts_with("shmget 0 bytes: -1 ENOSYS\n"), "{}", got.0);
}
