//! System V semaphores and message queues within the confined tree (issue
//! 14, docs/processes.md, "System V IPC"): C cases between parent and
//! child equal to native; keys private to the tree (a host object with the
//! same key, made natively by this test, is not seen); attacks (huge
//! `nsops`, huge message sizes, wild pointers, floods and a fork bomb of
//! IPC objects stop at the tree's bounds). Both backends (on KVM each
//! child is a VM of its own; the objects are the tree's, in the monitor).

mod common;

use common::{confined, native, Backend};

fn sysv(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("sysv", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    for case in ["sem", "msg"] {
        let args = ["sysv", case];
        assert_eq!(confined(b, &img, &args), native(&exe, &args), "confined vs native, case {case}");
    }
    // A host queue and semaphore set with a key: the tree does not see them.
    let key = (0x4cab_0000 | (std::process::id() & 0xffff)).to_string();
    let made = native(&exe, &["sysv", "hostkey", &key]);
    let got = confined(b, &img, &["sysv", "keys", &key]);
    let _ = native(&exe, &["sysv", "rmkey", &key]);
    assert_eq!(made, ("host objects: 1 1\n".to_string(), 0), "the host objects were made");
    assert_eq!(
        got,
        (
            "msgget of the host's key: -1 ENOENT\nsemget of the host's key: -1 ENOENT\n\
             the child finds the tree's object: exited 0\n"
                .to_string(),
            0
        ),
        "keys are the tree's"
    );
    let got = confined(b, &img, &["sysv", "attack"]);
    assert_eq!(
        got,
        (
            "semop 2^40 operations: -1 E2BIG\nsemop 501 operations: -1 E2BIG\n\
             semop from a wild pointer: -1 EFAULT\nsemop of semaphore 7 of 1: -1 EFBIG\n\
             msgsnd of 2^64-1 bytes: -1 EINVAL\nmsgsnd of 1 GiB: -1 EINVAL\n\
             msgsnd from a wild pointer: -1 EFAULT\nmsgrcv of -1 bytes: -1 EINVAL\n\
             a flood of 8 KiB messages: 2 then EAGAIN\na flood of empty messages: 16384 then EAGAIN\n\
             children refused at the bound: 4 of 4\n"
                .to_string(),
            0
        ),
        "attacks"
    );
}

#[test]
fn process() {
    sysv(Backend::Process);
}

/// KVM: the same (each child a new VM, the tree's objects shared).
#[test]
fn kvm() {
    if !Backend::Kvm.available("sysv") {
        return;
    }
    sysv(Backend::Kvm);
}
