//! Descriptors passed over unix sockets (`SCM_RIGHTS`, issue 19):
//! `tests/programs/fdpass.c` passes them within a process, over stream,
//! datagram and seqpacket sockets, from a forked child to its parent,
//! truncated (`MSG_CTRUNC`), at the 253 limit, with `SCM_CREDENTIALS`, and
//! receives one from a peer outside the run (this test, natively: a file
//! outside the run's path trees) and sends one back; the confined run on
//! each backend must print the same lines and exit as the native run.
//!
//! `blocked_receives_hold_nothing_up`: one thread blocked in `recvmsg`, one
//! in `recvmmsg` and one in `accept` (served without the service lock; a
//! `recvmmsg` under it stopped the run at the wall-time limit before
//! 67367fc) while the main thread
//! does file I/O and passes a descriptor; a `[limits] wall-time` ends the
//! run if anything waits for the blocked threads, so it can never hang.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cabin_monitor::{GateConfig, RunConfig};
use cabin_policy::net::NetPolicy;
use common::Backend;

on_both_backends!(
    descriptors_pass_as_natively,
    a_peer_outside_hands_one_in,
    blocked_receives_hold_nothing_up
);

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("fdpass");
        let exe = common::compile("fdpass", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

/// Sends `fd` over `s` with one byte (`SCM_RIGHTS`).
fn send_fd(s: &UnixStream, fd: RawFd) {
    let mut data = *b"o";
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
    let mut buf = [0u64; 4];
    // SAFETY: msghdr is plain data.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic.
    m.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
    // SAFETY: `m` has a control buffer of CMSG_SPACE(4) bytes (32 of `buf`).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::copy_nonoverlapping((&fd as *const i32).cast::<u8>(), libc::CMSG_DATA(c), 4);
    }
    // SAFETY: `m` names live buffers.
    assert_eq!(unsafe { libc::sendmsg(s.as_raw_fd(), &m, 0) }, 1, "sendmsg");
}

/// Receives one descriptor over `s`.
fn recv_fd(s: &UnixStream) -> Option<OwnedFd> {
    let mut data = [0u8; 1];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
    let mut buf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = buf.as_mut_ptr().cast();
    m.msg_controllen = std::mem::size_of_val(&buf);
    // SAFETY: `m` names live buffers.
    if unsafe { libc::recvmsg(s.as_raw_fd(), &mut m, libc::MSG_CMSG_CLOEXEC) } < 1 {
        return None;
    }
    // SAFETY: the kernel wrote a control message into `buf`; one fd after the header.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&m);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        let mut fd = -1i32;
        std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c), (&mut fd as *mut i32).cast::<u8>(), 4);
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// The peer outside the run: hands in a file of `outside` (not in the
/// run's trees) and returns what the descriptor the program sends back reads.
fn peer(listener: UnixListener, outside: PathBuf) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        // Never waits for ever: a program that does not connect within a
        // minute fails the test.
        listener.set_nonblocking(true).expect("nonblocking");
        let t0 = std::time::Instant::now();
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if t0.elapsed() < std::time::Duration::from_secs(60) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => return format!("no connection: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
        let f = std::fs::File::open(&outside).expect("outside file");
        send_fd(&s, f.as_raw_fd());
        let back = recv_fd(&s).map(|fd| {
            let mut text = String::new();
            let mut f = std::fs::File::from(fd);
            // The program wrote it: its offset is at the end.
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = f.read_to_string(&mut text);
            text
        });
        let _ = s.write_all(b"d");
        back.unwrap_or_default()
    })
}

struct Run {
    out: String,
    code: i32,
}

fn native(exe: &Path, args: &[&str]) -> Run {
    let o = std::process::Command::new(exe).args(args).output().expect("run natively");
    Run { out: String::from_utf8_lossy(&o.stdout).into_owned(), code: o.status.code().unwrap_or(-1) }
}

fn confined(
    b: Backend,
    img: &[u8],
    args: &[&str],
    dir: &Path,
    network: NetPolicy,
    policy: Option<&str>,
) -> Run {
    let out_path = dir.join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: std::iter::once("fdpass").chain(args.iter().copied()).map(String::from).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: vec![dir.to_path_buf()],
        network,
        gate: GateConfig {
            policy: policy.map(|t| cabin_policy::Policy::parse("fdpass.toml", t).expect("policy")),
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let r = b.run(img, &cfg).expect("the run happens");
    drop(out);
    Run { out: std::fs::read_to_string(&out_path).unwrap_or_default(), code: r.exit_code }
}

fn same(b: Backend, what: &str, native: &Run, got: &Run) {
    if got.out != native.out {
        for (i, (a, c)) in native.out.lines().zip(got.out.lines()).enumerate() {
            if a != c {
                panic!("{b:?} {what}: line {} differs:\n native: {a}\n cabin:  {c}\n{}", i + 1, got.out);
            }
        }
        panic!("{b:?} {what}: outputs differ in length:\n{}\n--- native:\n{}", got.out, native.out);
    }
    assert_eq!(got.code, native.code, "{b:?} {what}: exit status");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

fn descriptors_pass_as_natively(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (nd, cd) = (t.path().join("native"), t.path().join("cabin"));
    std::fs::create_dir(&nd).expect("dir");
    std::fs::create_dir(&cd).expect("dir");
    let n = native(exe, &["local", path_str(&nd)]);
    assert_eq!(n.code, 0, "natively:\n{}", n.out);
    let c = confined(b, img, &["local", path_str(&cd)], &cd, NetPolicy::default(), None);
    same(b, "local", &n, &c);
}

fn a_peer_outside_hands_one_in(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let outside = t.path().join("outside.txt");
    std::fs::write(&outside, "from outside the run\n").expect("outside file");
    let mut runs = Vec::new();
    for which in ["native", "cabin"] {
        let d = t.path().join(which);
        std::fs::create_dir(&d).expect("dir");
        let sock = d.join("peer.sock");
        let h = peer(UnixListener::bind(&sock).expect("bind peer"), outside.clone());
        let args = ["outside", path_str(&d), path_str(&sock)];
        let r = if which == "native" {
            native(exe, &args)
        } else {
            let net = NetPolicy { unix: vec![sock.clone()], ..NetPolicy::default() };
            confined(b, img, &args, &d, net, None)
        };
        let back = h.join().expect("peer");
        assert_eq!(back, "from the confined program\n", "{which}: what the peer got back\n{}", r.out);
        runs.push(r);
    }
    same(b, "outside", &runs[0], &runs[1]);
    assert!(runs[1].out.contains("from outside the run"), "{}", runs[1].out);
}

fn blocked_receives_hold_nothing_up(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (nd, cd) = (t.path().join("native"), t.path().join("cabin"));
    std::fs::create_dir(&nd).expect("dir");
    std::fs::create_dir(&cd).expect("dir");
    let n = native(exe, &["blocked", path_str(&nd)]);
    assert_eq!(n.code, 0, "natively:\n{}", n.out);
    // A stall would leave the main thread waiting for ever: the wall-time
    // limit ends the run (137, the output cut short) instead.
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"60s\"\n";
    let c = confined(b, img, &["blocked", path_str(&cd)], &cd, NetPolicy::default(), Some(policy));
    same(b, "blocked", &n, &c);
}
