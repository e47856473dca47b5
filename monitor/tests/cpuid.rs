//! The CPU a confined program sees is the one it sees natively:
//! `tests/programs/cpuid.c` prints the user-visible CPUID leaves and
//! XGETBV (and leaf 1 and XCR0 again from a second thread), natively and
//! confined on both backends, and the dumps must be equal. Only the
//! differences docs/kvm.md lists ("The CPU a program sees") are masked, and
//! only on the KVM backend: the bits this host's KVM will not pass to a
//! guest whatever its CPUID table says (INVPCID, RDPID, CET shadow stacks,
//! XSAVES and the supervisor state components), PKU/OSPKE and PKRU in XCR0
//! (the program never gets protection keys). The process backend runs on
//! the host CPU itself and must match exactly.
//!
//! Before the fix the KVM dump had no OSXSAVE (so no AVX for any library
//! that checks it), no PCID, no LZCNT/SSE4A, no RDTSCP and no brand string.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

/// Bits of `(line key, register)` the KVM backend may show differently
/// from native, as masks over eax, ebx, ecx, edx.
fn kvm_mask(key: &str) -> [u32; 4] {
    match key {
        // INVPCID (EBX 10); PKU, OSPKE (ECX 3, 4), CET_SS (ECX 7), RDPID (ECX 22).
        "00000007.0" => [0, 1 << 10, (1 << 3) | (1 << 4) | (1 << 7) | (1 << 22), 0],
        // XSAVES (EAX 3), the size with supervisor state (EBX), the
        // supervisor components (ECX, EDX).
        "0000000d.1" => [1 << 3, !0, !0, !0],
        _ => [0; 4],
    }
}

/// Parses "LEAF.SUB eax ebx ecx edx".
fn regs(line: &str) -> Option<(String, [u32; 4])> {
    let mut w = line.split_whitespace();
    let key = w.next()?.to_string();
    let mut r = [0u32; 4];
    for v in &mut r {
        *v = u32::from_str_radix(w.next()?, 16).ok()?;
    }
    Some((key, r))
}

/// Whether a confined line equals the native one up to the KVM masks:
/// the register masks above, a supervisor state component (CPUID.0xD.n
/// with ECX bit 0 natively) and XCR0's PKRU bit.
fn same_on_kvm(native: &str, confined: &str) -> bool {
    if native == confined {
        return true;
    }
    if let (Some(x), Some(y)) = (native.strip_prefix("xcr0 "), confined.strip_prefix("xcr0 ")) {
        let (Ok(x), Ok(y)) = (u64::from_str_radix(x, 16), u64::from_str_radix(y, 16)) else { return false };
        return x & !(1 << 9) == y;
    }
    let (Some((kn, rn)), Some((kc, rc))) = (regs(native), regs(confined)) else { return false };
    if kn != kc {
        return false;
    }
    if kn.starts_with("0000000d.") && kn != "0000000d.0" && kn != "0000000d.1" && rn[2] & 1 == 1 {
        return true;
    }
    let m = kvm_mask(&kn);
    (0..4).all(|i| rn[i] & !m[i] == rc[i] & !m[i])
}

fn cpu_matches_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("cpuid", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    assert!(native.status.success(), "natively: {:?}", native.status);
    let native = String::from_utf8_lossy(&native.stdout).into_owned();

    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["cpuid".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let confined = std::fs::read_to_string(&out_path).expect("stdout");
    assert_eq!(o.exit_code, 0, "{b:?}: {:?}\n{confined}", o.reason);
    println!("{b:?}:\n{confined}");

    let (n, c): (Vec<&str>, Vec<&str>) = (native.lines().collect(), confined.lines().collect());
    assert_eq!(n.len(), c.len(), "{b:?}: different leaves\nnative:\n{native}\nconfined:\n{confined}");
    for (x, y) in n.iter().zip(&c) {
        let same = match b {
            Backend::Process => x == y,
            Backend::Kvm => same_on_kvm(x, y),
        };
        assert!(same, "{b:?}: differs from native\n native:   {x}\n confined: {y}");
    }
    assert!(confined.contains("xcr0 "), "{b:?}: OSXSAVE hidden:\n{confined}");
}

on_both_backends!(cpu_matches_native);

#[test]
fn masks_cover_only_the_documented_bits() {
    assert!(same_on_kvm(
        "00000007.0 00000000 219c07ab 00400684 00000010",
        "00000007.0 00000000 219c03ab 00000604 00000010"
    ));
    assert!(!same_on_kvm(
        "00000007.0 00000000 219c07ab 00400684 00000010",
        "00000007.0 00000000 219c07aa 00400684 00000010"
    ));
    assert!(!same_on_kvm(
        "00000001.0 00a00f11 00020800 fffa3203 178bfbff",
        "00000001.0 00a00f11 00020800 f7fa3203 178bfbff"
    ));
    assert!(same_on_kvm(
        "0000000d.11 00000010 00000000 00000001 00000000",
        "0000000d.11 00000000 00000000 00000000 00000000"
    ));
    assert!(!same_on_kvm(
        "0000000d.2 00000100 00000240 00000000 00000000",
        "0000000d.2 00000000 00000000 00000000 00000000"
    ));
    assert!(same_on_kvm("xcr0 00000000000002e7", "xcr0 00000000000000e7"));
    assert!(!same_on_kvm("xcr0 00000000000000e7", "xcr0 0000000000000007"));
}
