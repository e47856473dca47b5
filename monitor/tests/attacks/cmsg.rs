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
        let dir = common::scratch_dir("attack-cmsg");
        common::image("attack_cmsg", &dir)
    })
    .as_ref()
}

/// How many descriptors this (the monitor's) process holds.
fn monitor_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// Set in the child process that runs one variant of the test alone.
const ALONE: &str = "CABIN_CMSG_TEST_ALONE";

fn hostile_control_messages_are_refused_and_leak_nothing(b: Backend) {
    if std::env::var_os(ALONE).is_none() {
        // The descriptor count below is the whole process's, and the other
        // tests of this binary run at the same time with descriptors of
        // their own (a program exhausting its table holds a thousand in the
        // monitor: a CI run once saw 8 before and 999 after). So the check
        // runs in a child process of this test binary, this variant alone.
        let variant = if b == Backend::Process { "process" } else { "kvm" };
        let name = format!("cmsg::hostile_control_messages_are_refused_and_leak_nothing::{variant}");
        let exe = std::env::current_exe().expect("the test binary");
        let o = std::process::Command::new(exe)
            .args([name.as_str(), "--exact", "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .expect("run the test alone");
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && text.contains("1 passed"), "{b:?}, run alone:\n{text}");
        return;
    }
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
    // Alone in its process: a leak here would be thousands.
    assert!(
        after < before + 64,
        "{b:?}: the monitor held {before} descriptors before the run and {after} after"
    );
}
