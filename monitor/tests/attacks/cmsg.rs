//! Hostile control messages (issue 19, `SCM_RIGHTS`/`SCM_CREDENTIALS`):
//! `tests/programs/attack_cmsg.c` sends malformed lengths (`EINVAL`), more
//! than 253 descriptors (`EINVAL`), control buffers past `optmem_max`
//! (`ENOBUFS`), numbers that are not its descriptors (`EBADF`), someone
//! else's credentials (`EPERM`), kinds not served (`EINVAL`), and then
//! passes thousands of descriptors that are truncated away, dropped in
//! flight or delivered into a full table. The program must see Linux's
//! answers, the monitor must survive, and it must hold no more host
//! descriptors after the run than before (a leak of one per message would
//! show as thousands).

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(hostile_control_messages_are_refused_and_leak_nothing);

fn built() -> Option<&'static Vec<u8>> {
    static B: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cabin-attack-cmsg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        common::image("attack_cmsg", &dir)
    })
    .as_ref()
}

/// How many descriptors this (the monitor's) process holds.
fn monitor_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn hostile_control_messages_are_refused_and_leak_nothing(b: Backend) {
    let Some(img) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let out_path = t.path().join("out");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_cmsg".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_read: vec!["/dev".into()],
        ..RunConfig::default()
    };
    let before = monitor_fds();
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    let after = monitor_fds();
    drop(out);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(!text.contains("FAIL"), "{b:?}:\n{text}");
    assert!(text.contains("all ok"), "{b:?}: the program did not finish:\n{text}\n{:?}", o.reason);
    assert_eq!(o.exit_code, 0, "{b:?}: {:?}\n{text}", o.reason);
    // Other tests of this binary run at the same time and hold a few
    // descriptors each; a leak here would be thousands.
    assert!(
        after < before + 64,
        "{b:?}: the monitor held {before} descriptors before the run and {after} after"
    );
}
