//! Hostile fork frames (issue 14, docs/processes.md, "A hostile frame harms
//! only its own child"): a process-making `clone` whose child stack is the
//! ring region, the boot page, code, nothing, a non-canonical address or
//! the top of the address space; a `fork` made with `rsp` in the ring
//! region; twenty forks while another thread floods its ring with calls.
//! Each attempt ends only the process that made it (refused, or killed in
//! its own domain); the parent is served on with its memory intact and the
//! monitor survives, on both backends (on KVM each child is a VM).

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(hostile_fork_frames_end_only_their_own_process);

fn hostile_fork_frames_end_only_their_own_process(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("attack_fork_frames", t.path()) else { return };
    let (ring, boot) = match b {
        // backends/process/src/layout.rs; backends/kvm/src/layout.rs.
        Backend::Process => ("0x200000001000", "0x200000000000"),
        Backend::Kvm => ("0x7ff000001000", "0x7ff000000000"),
    };
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = RunConfig {
        args: vec!["attack_fork_frames".into(), ring.into(), boot.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the monitor survives");
    let text = std::fs::read_to_string(&path).expect("output");
    assert_eq!(
        (text.as_str(), o.exit_code),
        (
            "child stack in the ring: the attempt's process ended\n\
             child stack in the boot page: the attempt's process ended\n\
             child stack in code: the attempt's process ended\n\
             child stack unmapped: the attempt's process ended\n\
             child stack non-canonical: the attempt's process ended\n\
             child stack at the top: the attempt's process ended\n\
             fork with rsp in the ring: the attempt's process ended\n\
             forks beside a flooding thread: 20 of 20\n\
             parent: memory intact, still served: 1\n",
            0
        ),
        "{:?}",
        o.reason
    );
}
