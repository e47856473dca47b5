//! Hostile arguments to the socket-pair calls (`socketpair`, `sendto`,
//! `recvfrom`, `sendmsg`, `recvmsg`, `shutdown`, `getsockname`,
//! `getpeername`): control data (`SCM_RIGHTS` of the pair's own
//! descriptor passes, as on Linux; a length without a buffer is `EFAULT`;
//! hostile control data: tests/attacks/cmsg.rs), destination
//! addresses (`EACCES`: checked by the network rules, which name none
//! here; tests/attacks/network.rs), unsupported flags (`EOPNOTSUPP`), huge and
//! overflowing lengths and negative address lengths (Linux's errnos); pairs
//! count against the descriptor table (`EMFILE`, no unbounded host
//! resource); a thread rewriting a `msghdr` while another uses it cannot
//! make the monitor act on a header it did not check (it copies it once);
//! a pointer outside the program's memory ends the program (137), never the
//! monitor.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;

use cabin_monitor::{EndReason, RunConfig, RunOutcome};

use crate::common::{self, Backend};

on_both_backends!(
    refused_socket_requests_get_their_errnos,
    socket_pairs_count_against_the_table,
    a_msghdr_rewritten_during_the_call_does_not_hurt,
    wild_socket_pointers_end_the_program
);

/// The compiled program and its image, built once.
fn built() -> Option<&'static (std::path::PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(std::path::PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("attack-sockets");
        let exe = common::compile("attack_sockets", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

fn run(b: Backend, img: &[u8], mode: &str, dir: &Path) -> (RunOutcome, String) {
    let out_path = dir.join(format!("out-{mode}"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_sockets".into(), mode.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

/// The confined answers. Where they differ from Linux's on purpose
/// (monitor/src/service/sockets.rs): flags outside the
/// supported set are refused, and addresses the network rules do not name;
/// a negative address length in `recvfrom` is refused before anything is
/// received (Linux receives the byte, then fails), so the next `recv` still
/// finds it.
const REFUSED: &str = "\
sendmsg SCM_RIGHTS                       1
sendmsg controllen without buffer        -1 EFAULT
sendto dgram with an address             -1 EACCES
sendmsg dgram with an address            -1 EACCES
send MSG_OOB                             -1 EOPNOTSUPP
recv MSG_OOB                             -1 EOPNOTSUPP
recv MSG_ERRQUEUE                        -1 EOPNOTSUPP
send all flag bits                       -1 EOPNOTSUPP
sendmsg iovlen 2^40                      -1 EMSGSIZE
recvmsg iovlen 2^40                      -1 EMSGSIZE
sendmsg iov length overflow              -1 EINVAL
getsockname negative length              -1 EINVAL
getsockname null length                  -1 EFAULT
send 1                                   1
recvfrom negative length                 -1 EINVAL
recv after refused recvfrom              1
recvmsg negative namelen                 -1 EINVAL
";

fn refused_socket_requests_get_their_errnos(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, "refused", t.path());
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert_eq!(out, REFUSED, "{b:?}");
}

fn socket_pairs_count_against_the_table(b: Backend) {
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
    assert!((8..=512).contains(&made), "{made}");
}

fn a_msghdr_rewritten_during_the_call_does_not_hurt(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, "race", t.path());
    // A header checked with a good iovec and then pointed at WILD by the
    // other thread: the monitor uses its copy, so the call works; a header
    // read while it names WILD ends the program. Both are fine; the monitor
    // survives (run() returned) and nothing else happens.
    match o.exit_code {
        0 => assert_eq!(out, "race done\n"),
        137 => assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{:?}", o.reason),
        c => panic!("{b:?}: exit {c}: {:?}: {out}", o.reason),
    }
}

fn wild_socket_pointers_end_the_program(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    for mode in [
        "wild-socketpair",
        "wild-msghdr",
        "wild-iov",
        "wild-recv-buf",
        "wild-name",
        "wild-namelen",
        "wild-sendto-buf",
    ] {
        let (o, out) = run(b, img, mode, t.path());
        assert_eq!(o.exit_code, 137, "{mode}: {:?}: {out}", o.reason);
        assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{mode}: {:?}", o.reason);
        assert!(!out.contains("returned"), "{mode}: {out}");
    }
}
