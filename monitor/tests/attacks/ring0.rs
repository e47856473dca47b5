//! Ring 0: every way a ring-3 instruction sequence could enter a more
//! privileged mode, tried one per run by `programs/attack_ring0.c`:
//! `syscall`, `sysenter` and `int 0x80` from 32-bit code (reached with an
//! `lretq` to selector 0x23), `sysenter` in 64-bit mode, far jumps, calls
//! and returns to every GDT selector (and LDT ones), `iretq` with crafted
//! frames, `int N` for every N, `icebp`, `into`, `int3`; plus memory in the
//! lowest 64 KiB (a fixed `mmap`, and an image with a page at 0).
//!
//! Each attempt must end the program with 128 + signal, or continue where a
//! Linux process would too (a far jump to the 64-bit user code segment),
//! and then provably in ring 3: the program reads CS after every transfer
//! and exits 66 ("RING 0 REACHED") if its RPL is 0, 67 if IOPL was raised,
//! 68 if it got a mapping below 64 KiB. Never 125 (a Cabin error).
//!
//! On KVM the guest's own GDT, IDT and MSRs decide (docs/kvm.md, "Ring 0");
//! on the process backend Linux's do, and the same table checks that the
//! program gets what a Linux process gets.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;

use cabin_monitor::{EndReason, RunConfig, RunError};

use crate::common::{self, Backend};

const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGSEGV: i32 = 11;

/// The attack image, built once per test binary (`None`: no gcc, not run).
fn image() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        common::image("attack_ring0", t.path())
    })
    .as_deref()
}

/// How an attempt may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Killed by one of these signals (more than one where the CPU vendor
    /// or this machine's nested KVM decides, see the callers).
    Killed(&'static [i32]),
    /// The CPU let the transfer through and the program continued, in
    /// ring 3 with CS 0x33 (as a Linux process does).
    Ring3,
    /// Either (only where this machine's nested KVM differs from a CPU).
    KilledOrRing3(&'static [i32]),
}

/// Runs one attempt; returns a line describing what was wrong, if anything.
fn check(b: Backend, img: &[u8], attempt: &str, expect: Expect, dir: &Path) -> Option<String> {
    let out_path = dir.join(format!("{}.out", attempt.replace(':', "_")));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_ring0".into(), attempt.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        arena_bytes: 64 << 20,
        ..RunConfig::default()
    };
    let result = b.run(img, &cfg);
    drop(out);
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    let o = match result {
        Ok(o) => o,
        Err(e) => return Some(format!("{attempt}: Cabin error (exit 125): {e}")),
    };
    for marker in ["RING 0 REACHED", "IOPL RAISED", "LOW MAPPING"] {
        if printed.contains(marker) {
            return Some(format!("{attempt}: {marker}: exit {} {}", o.exit_code, printed.trim()));
        }
    }
    let got = format!("exit {} ({:?}) {}", o.exit_code, o.reason, printed.trim());
    let killed = |signals: &[i32]| {
        let signo = o.exit_code - 128;
        signals.contains(&signo) && matches!(o.reason, EndReason::Signal { signo: s, .. } if s == signo)
    };
    let ring3 =
        o.exit_code == 0 && printed == format!("attack_ring0: {attempt}: continued in ring 3 (cs 0x33)\n");
    let ok = match expect {
        Expect::Killed(signals) => killed(signals),
        Expect::Ring3 => ring3,
        Expect::KilledOrRing3(signals) => killed(signals) || ring3,
    };
    (!ok).then(|| format!("{attempt}: expected {expect:?}, got {got}"))
}

/// Runs every attempt and fails with the whole list of wrong outcomes.
fn run_table(b: Backend, table: &[(String, Expect)]) {
    let Some(img) = image() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let wrong: Vec<String> = table.iter().filter_map(|(a, e)| check(b, img, a, *e, t.path())).collect();
    eprintln!("ring 0 ({b:?}): {} attempts, {} wrong", table.len(), wrong.len());
    assert!(
        wrong.is_empty(),
        "{b:?}: {} of {} attempts went wrong:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
}

/// `syscall`, `sysenter` and `int 0x80` from 32-bit code, 64-bit
/// `sysenter`, the one-byte traps, and `iretq` with crafted frames.
fn entry_instructions(b: Backend) {
    let kvm = b == Backend::Kvm;
    // KVM: there is no 32-bit code segment, so the `lretq` to 0x23 already
    // faults. Linux: AMD runs a compat `syscall` through CSTAR (the seccomp
    // filter traps the i386 call; the libos cannot return to 32-bit code:
    // SIGSEGV); Intel raises #UD.
    let compat = |linux: Expect| if kvm { Expect::Killed(&[SIGSEGV]) } else { linux };
    // `sysenter` in 64-bit mode: #UD on AMD (SIGILL); on Intel SYSENTER_CS is
    // 0 in a KVM domain (#GP, SIGSEGV) and Linux returns through a vDSO
    // landing pad a confined process does not have (SIGSEGV).
    let sysenter = Expect::Killed(&[SIGILL, SIGSEGV]);
    let table = [
        ("compat-syscall", compat(Expect::Killed(&[SIGSEGV, SIGILL]))),
        ("compat-sysenter", compat(Expect::Killed(&[SIGILL, SIGSEGV]))),
        // Linux: an i386 system call, served by the libos (ENOSYS here).
        ("compat-int80", compat(Expect::Ring3)),
        ("sysenter", sysenter),
        ("icebp", Expect::Killed(&[SIGTRAP])),
        ("into", Expect::Killed(&[SIGILL])),
        ("int3", Expect::Killed(&[SIGTRAP])),
        ("iret:cs10", Expect::Killed(&[SIGSEGV])),
        ("iret:cs08", Expect::Killed(&[SIGSEGV])),
        ("iret:cs23", compat(Expect::Ring3)),
        ("iret:ss28", Expect::Killed(&[SIGSEGV])),
        ("iret:noncanonical", Expect::Killed(&[SIGSEGV])),
        // IOPL cannot be raised from ring 3: the program continues with IOPL 0.
        ("iret:iopl3", Expect::Ring3),
        ("iret:nt", Expect::Killed(&[SIGSEGV])),
    ];
    run_table(b, &table.map(|(a, e)| (a.to_string(), e)));
}

/// Far `jmp`, `call` and `ret` to every GDT selector (Cabin's GDT has 10
/// slots, Linux's 16; one past the end too), at RPL 0 and 3, and to LDT
/// selectors (there is no LDT).
fn far_transfers(b: Backend) {
    let kvm = b == Backend::Kvm;
    // Code segments ring 3 may use: Cabin's GDT has only the 64-bit user
    // code segment (0x30); Linux's also has the 32-bit one (0x20).
    let user_code: &[u16] = if kvm { &[0x30] } else { &[0x20, 0x30] };
    // This machine's nested KVM injects #UD where the CPU raises #GP for a
    // far jump or call through a null descriptor (measured): SIGILL there.
    let refused_jump: Expect =
        if kvm { Expect::Killed(&[SIGSEGV, SIGILL]) } else { Expect::Killed(&[SIGSEGV]) };
    let mut selectors: Vec<u16> = (0..=16u16).flat_map(|i| [i * 8, i * 8 + 3]).collect();
    selectors.extend([0x04, 0x07, 0x0f, 0x47]); // TI = 1: LDT
    let mut table = Vec::new();
    for &sel in &selectors {
        let usable = sel & 4 == 0 && user_code.contains(&(sel & !3));
        for kind in ["jmp", "call"] {
            // A jump or call may name a DPL-3 code segment with any RPL; CS gets RPL 3.
            table.push((format!("{kind}:{sel:x}"), if usable { Expect::Ring3 } else { refused_jump }));
        }
        // A far return to RPL 0 would raise the privilege level: #GP.
        let ret = if usable && sel & 3 == 3 { Expect::Ring3 } else { Expect::Killed(&[SIGSEGV]) };
        table.push((format!("ret:{sel:x}"), ret));
    }
    run_table(b, &table);
}

/// `int N` for every N: only `int3` is open to ring 3 (SIGTRAP); every
/// other gate raises #GP (SIGSEGV, as on Linux; this machine's nested KVM
/// delivers #UD for most vectors, which the monitor recognises by the
/// instruction). On Linux `int 0x80` is the i386 system call (served by
/// the libos).
fn int_n(b: Backend) {
    let kvm = b == Backend::Kvm;
    let table: Vec<(String, Expect)> = (0..=255u16)
        .map(|n| {
            let e = match n {
                3 => Expect::Killed(&[SIGTRAP]),
                0x80 if !kvm => Expect::Ring3,
                // Measured on this machine's nested KVM: `int 0x1a` from
                // ring 3 does nothing (no exit, no exception in the guest);
                // the program goes on, in ring 3. A CPU raises #GP.
                0x1a if kvm => Expect::KilledOrRing3(&[SIGSEGV]),
                _ => Expect::Killed(&[SIGSEGV]),
            };
            (format!("int:{n}"), e)
        })
        .collect();
    run_table(b, &table);
}

/// `mmap` with `MAP_FIXED` or a hint below 64 KiB never maps there.
fn no_mapping_below_64k(b: Backend) {
    let Some(img) = image() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let out_path = t.path().join("out");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["attack_ring0".into(), "mmap-low".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        arena_bytes: 64 << 20,
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("runs");
    drop(out);
    let printed = std::fs::read_to_string(&out_path).expect("stdout");
    assert_eq!(o.exit_code, 0, "{printed}");
    assert_eq!(printed, "attack_ring0: mmap-low: no mapping below 64 KiB\n");
}

/// An image with a page at 0 (the attack program's first segment moved
/// there) is refused by both loaders with the same one line (the one
/// `cabinc build` gives for such an input); it never runs.
fn page_at_0_is_refused(b: Backend) {
    let Some(img) = image() else { return };
    let mut img = img.to_vec();
    let u64_at = |d: &[u8], at: usize| u64::from_le_bytes(d[at..at + 8].try_into().expect("8 bytes"));
    let phoff = u64_at(&img, 32) as usize;
    let phnum = u16::from_le_bytes([img[56], img[57]]) as usize;
    let first = (0..phnum)
        .find(|&i| {
            let ph = phoff + 56 * i;
            u32::from_le_bytes(img[ph..ph + 4].try_into().expect("4 bytes")) == 1 && u64_at(&img, ph + 8) == 0
        })
        .expect("a PT_LOAD at file offset 0");
    let ph = phoff + 56 * first;
    img[ph + 16..ph + 32].fill(0); // p_vaddr = p_paddr = 0
    let cfg =
        RunConfig { args: vec!["attack_ring0".into(), "int3".into()], quiet: true, ..RunConfig::default() };
    // The session's image check refuses it (the ELF validator's line), before
    // any backend lays out the domain.
    match b.run(&img, &cfg) {
        Err(RunError::ImageRejected(cabin_image::image::ImageError::Elf(e))) => assert_eq!(
            e.to_string(),
            format!(
                "segment {first} at 0x0..0x1000 lies below 0x10000: Cabin maps nothing in the lowest 64 KiB; help: \
                 link the program at a higher address (ld's default for x86-64 is 0x400000)"
            )
        ),
        Err(e) => panic!("refused with another error: {e}"),
        Ok(o) => panic!("an image with a page at 0 ran: exit {} ({:?})", o.exit_code, o.reason),
    }
}

on_both_backends!(entry_instructions, far_transfers, int_n, no_mapping_below_64k, page_at_0_is_refused);
