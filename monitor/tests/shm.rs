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
//! Both backends: on KVM the window is one more memory slot of every VM of
//! the tree, mapped in the page tables at the window address. Each case
//! is `NAME::process` and `NAME::kvm`.

#[macro_use]
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

fn parent_and_child_share_a_segment(b: Backend) {
    let k = key(1 + 4 * (b == Backend::Kvm) as u32);
    same_as_native(b, &["shm", "fork", &k]);
}

fn rmid_while_attached(b: Backend) {
    same_as_native(b, &["shm", "rmid"]);
}

fn errnos_as_linux(b: Backend) {
    let k = key(2 + 4 * (b == Backend::Kvm) as u32);
    same_as_native(b, &["shm", "errors", &k]);
}

fn shared_anonymous_memory_atomics_and_futex_across_fork(b: Backend) {
    same_as_native(b, &["shm", "futex"]);
}

fn attacks_stop_at_the_bounds_and_the_monitor_survives(b: Backend) {
    let Some((_, img)) = built() else { return };
    let _one = serial();
    let got = confined(b, img, &["shm", "attack"]);
    // A `syscall` hidden from the rewriter reaches the seccomp filter on
    // the process backend (which lets a window mapping of SHARED_FD
    // through, whatever its offset: harmless), and the trap gate on KVM
    // (the libos serves it: descriptor 1001 is no file of the program).
    let forged = match b {
        Backend::Process => "forged offsets in the window: allowed allowed\n",
        Backend::Kvm => "forged offsets in the window: EBADF EBADF\n",
    };
    let want = format!(
        "shmget 2^40 bytes: -1 EINVAL\n\
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
         {forged}\
         segment b intact: segment b\n\
         shmdt: 0 0\n\
         rmid: 0 0\n\
         child: 0, sees from the child\n\
         shmdt: 0\n\
         shmdt again: -1 EINVAL\n"
    );
    assert_eq!(got, (want, 0), "{b:?} attacks");
    assert!(window_memfds().is_empty(), "a shared-window memfd outlived the run: {:?}", window_memfds());
    assert!(common::live_children().is_empty(), "host processes left: {:?}", common::live_children());
}

on_both_backends!(
    parent_and_child_share_a_segment,
    rmid_while_attached,
    errnos_as_linux,
    shared_anonymous_memory_atomics_and_futex_across_fork,
    attacks_stop_at_the_bounds_and_the_monitor_survives,
);
