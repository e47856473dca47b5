//! Fuzz target: the monitor's ring worker (`cabin_monitor::ring::Worker`)
//! against a libos side that writes anything: slot contents (tags, flags,
//! numbers, arguments, site hints), indices, doorbells and state words,
//! between the worker's passes.
//!
//! The worker is driven without threads through `Worker::step` (one pass
//! of its loop: serve what is published, then the protocol checks it makes
//! before sleeping). Half of the inputs put the gate in front (a
//! deny-by-default policy with a few limits, and a JSON-lines trace to a
//! sink), so denials, limits and trace records are exercised too.
//!
//! Findings: a panic, an abort or a hang. A protocol violation or a policy
//! stop ending the loop is fine (and ends the input).
//!
//! The service behind it has no allowed directory (only the harmless
//! devices), stdio `/dev/null`, and runs every pass under
//! `common::Watchdog`, which interrupts calls that block.
//!
//! Input: a flag byte, the ring's initial bytes (length u16, then bytes,
//! copied over the ring area from offset 0), a memory seed, then up to 32
//! steps, each a list of writes (offset, value) to the ring before a pass.
//!
//! Run: `cargo +nightly fuzz run ring` (or `fuzz/run.sh`).

#![no_main]

mod common;

use cabin_abi::ring::{RingPtr, RING_BYTES};
use cabin_monitor::gate::Gate;
use cabin_policy::Policy;
use cabin_monitor::ring::{Shared, Worker};
use cabin_monitor::service::fs::FsPolicy;
use cabin_monitor::service::Service;
use cabin_monitor::trace::Tracer;
use common::{Input, Memory, Watchdog};
use libfuzzer_sys::fuzz_target;

#[repr(C, align(4096))]
struct Area([u8; RING_BYTES]);

const POLICY: &str = r#"version = 1
[syscalls]
allow = ["read", "write", "getpid", "getppid", "uname", "getcwd", "openat", "close", "pipe2", "lseek", "fstat"]
kill = ["execve"]
deny = ["socket"]
[[rule]]
syscall = "ioctl"
arg = 1
op = "eq"
value = 0x5401
[limits]
bytes-written = 4096
open-files = 8
file-size = 100
"#;

fuzz_target!(|data: &[u8]| {
    let watchdog = Watchdog::get();
    let mut input = Input::new(data);
    let flags = input.u8();
    let mut area = Box::new(Area([0; RING_BYTES]));
    // SAFETY: the boxed area is aligned, RING_BYTES long, and outlives the
    // worker (dropped at the end of this closure, after it).
    let r = unsafe { RingPtr::new(area.0.as_mut_ptr()) };
    if flags & 1 == 0 {
        r.init();
    }
    let init_len = usize::from(input.u16());
    let init = input.bytes(init_len.min(RING_BYTES));
    area.0[..init.len()].copy_from_slice(init);
    let m = Memory::get();
    let seed_len = usize::from(input.u8());
    m.fill(input.bytes(seed_len));
    let mut s = Service::with_stdio(FsPolicy::default(), b"/".to_vec(), 4242, common::dev_null_stdio());
    s.print_reports = false;
    let mut w = Worker::new(r);
    let gate = (flags & 2 != 0).then(|| {
        let p = Policy::parse("fuzz.toml", POLICY).expect("fuzz policy");
        let limits = p.limits.clone();
        let tracer = Tracer::disabled().with_jsonl(Box::new(std::io::sink()));
        Gate::new(Some(p.compile()), &limits, tracer).quiet()
    });
    let s = Shared::new(s, gate);
    for _ in 0..32 {
        // The libos side's writes before this pass: (offset, bytes).
        let writes = input.u8() % 8;
        for _ in 0..writes {
            let off = usize::from(input.u16()) % RING_BYTES;
            let len = usize::from(input.u8() % 16) + 1;
            let bytes = input.bytes(len);
            let end = (off + bytes.len()).min(RING_BYTES);
            area.0[off..end].copy_from_slice(&bytes[..end - off]);
        }
        if watchdog.call(|| w.step(&m.mem, &s)).is_some() {
            break;
        }
        if input.is_empty() {
            break;
        }
    }
    s.finish_reports();
});
