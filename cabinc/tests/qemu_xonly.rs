//! The QEMU tier (issue 16, docs/execute-only.md): execute-only code proven
//! on a CPU with protection keys, which this machine does not have.
//!
//! The test builds a small initramfs from files on the host (busybox-static
//! as the shell, `cabinc` and the C libraries it links, the test programs
//! and their images, a runner script), boots Debian's kernel on it under
//! `qemu-system-x86_64 -accel tcg -cpu max` (TCG emulates PKU) and reads the
//! results from the serial console between `@@` markers. In the guest:
//! - the process backend's read probe finds execute-only enforced
//!   (`execute_only_enforced: true` in `--stats`, `--require-execute-only`
//!   runs);
//! - a program reading its own code dies with SIGSEGV, SEGV_PKUERR;
//! - the XRSTOR, forged-sigreturn and pkey attacks of
//!   monitor/tests/programs/attack_xonly.c do not make code readable, and a
//!   jump straight to a checked `xrstor` (past the mask) ends the program;
//! - a forged frame given to the host's `rt_sigreturn` through a hidden
//!   `syscall` (`native-sigreturn`) resumes at its `rip` and reads code
//!   natively, and on the process backend is killed by the seccomp filter
//!   (SIGSYS) before anything is restored;
//! - a sample program prints and exits as it does natively in the guest.
//!
//! The kvm backend runs there too, nested: the guest loads kvm_amd on TCG's
//! emulated SVM (with NPT and PKU), and the same checks hold (the xrstor
//! attack faults with #GP instead: the guest's XCR0 has no PKRU). Without
//! /dev/kvm in the guest that half says NOT RUN (tier `QEMU-KVM`).
//!
//! NOT RUN (tier `QEMU`) only when qemu-system-x86_64, a kernel image under
//! /boot or busybox-static is missing; scripts/setup.sh installs them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cabin_tests::{compile_static_c, not_run, workspace_root, Cabinc};

/// The whole boot must end within this (TCG on a loaded 2-core machine).
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

fn cabinc() -> Cabinc {
    Cabinc::new(env!("CARGO_BIN_EXE_cabinc"))
}

/// The newest `/boot/vmlinuz-*` (or `CABIN_QEMU_KERNEL`).
fn kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("CABIN_QEMU_KERNEL") {
        return Some(PathBuf::from(k));
    }
    let mut ks: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .collect();
    ks.sort();
    ks.pop()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

/// Copies `src` to `root` + `dst`, creating directories.
fn put(root: &Path, src: &Path, dst: &str) {
    let to = root.join(dst.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
    std::fs::copy(src, &to).unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), to.display()));
}

/// The shared libraries `exe` loads (from `ldd`), as absolute paths.
fn libraries(exe: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().expect("running ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// The address of an `xrstor64 [rdi]` followed by the PKRU check in the
/// image (the libos's signal-return restore, or a masked trampoline): where
/// the `jump` attack lands, past any mask.
fn checked_xrstor_rdi(image: &Path) -> u64 {
    let data = std::fs::read(image).expect("reading the image");
    let elf = cabin_image::elf::ElfFile::parse(&data).expect("image parses");
    let mut pattern = vec![0x48, 0x0f, 0xae, 0x2f];
    pattern.extend_from_slice(&cabin_abi::pkru::PKRU_CHECK);
    let found = elf.exec_segments().find_map(|s| {
        let b = elf.bytes(s);
        b.windows(pattern.len()).position(|w| w == pattern.as_slice()).map(|i| s.vaddr + i as u64)
    });
    found.expect("a checked xrstor [rdi] in the image")
}

/// The guest's /init: mounts what the runs need, runs every case, powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
case_() {
    name=$1; shift
    echo "@@CASE $name"
    "$@" >/tmp/out 2>/tmp/err
    rc=$?
    echo "@@OUT"; cat /tmp/out
    echo "@@ERR"; cat /tmp/err
    echo "@@RC $rc"
}
echo "@@BEGIN"
case_ cpu sh -c 'grep -m1 -o -w -e pku -e ospke /proc/cpuinfo | sort -u | tr "\n" " "; echo; uname -r'
case_ hello_native /t/hello
case_ hello_process /cabinc run -v --backend process --stats /tmp/stats.json /t/hello.cabin
case_ stats cat /tmp/stats.json
case_ hello_require /cabinc run --backend process --require-execute-only -q /t/hello.cabin
for m in read xrstor sigreturn pkey native-sigreturn; do
    case_ native_$m /t/attack_xonly $m
    case_ process_$m /cabinc run --backend process -q /t/attack_xonly.cabin -- $m
done
case_ process_jump /cabinc run --backend process -q /t/attack_xonly.cabin -- jump @JUMP@
# The kvm backend under TCG: nested SVM/VMX, if the guest kernel takes it.
case_ kvm_modules sh -c 'for m in irqbypass ccp kvm kvm-amd kvm-intel; do insmod /m/$m.ko 2>&1; done; ls -l /dev/kvm 2>&1; grep -m1 -o -w -e svm -e vmx /proc/cpuinfo'
if [ -c /dev/kvm ]; then
    case_ kvm_hello timeout 120 /cabinc run -v --backend kvm --stats /tmp/kstats.json /t/hello.cabin
    case_ kvm_stats cat /tmp/kstats.json
    case_ kvm_require timeout 120 /cabinc run --backend kvm --require-execute-only -q /t/hello.cabin
    for m in read xrstor sigreturn pkey native-sigreturn; do
        case_ kvm_$m timeout 120 /cabinc run --backend kvm -q /t/attack_xonly.cabin -- $m
    done
    case_ kvm_jump timeout 120 /cabinc run --backend kvm -q /t/attack_xonly.cabin -- jump @JUMP@
fi
echo "@@DONE"
poweroff -f
"#;

/// One case's result.
#[derive(Debug, Default, Clone)]
struct Case {
    out: String,
    err: String,
    rc: Option<i32>,
}

/// Splits the console text into cases.
fn parse(console: &str) -> BTreeMap<String, Case> {
    let mut cases = BTreeMap::new();
    let mut cur: Option<(String, Case, u8)> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(name) = line.strip_prefix("@@CASE ") {
            if let Some((n, c, _)) = cur.take() {
                cases.insert(n, c);
            }
            cur = Some((name.to_string(), Case::default(), 0));
            continue;
        }
        let Some((_, c, part)) = cur.as_mut() else { continue };
        match line {
            "@@OUT" => *part = 1,
            "@@ERR" => *part = 2,
            _ if line.starts_with("@@RC ") => {
                c.rc = line[5..].trim().parse().ok();
                *part = 3;
            }
            _ if line.starts_with("@@") => *part = 3,
            _ if *part == 1 => {
                c.out.push_str(line);
                c.out.push('\n');
            }
            _ if *part == 2 => {
                c.err.push_str(line);
                c.err.push('\n');
            }
            _ => {}
        }
    }
    if let Some((n, c, _)) = cur.take() {
        cases.insert(n, c);
    }
    cases
}

/// Boots the initramfs at `initrd` with `kernel`; the console text.
fn boot(qemu: &Path, kernel: &Path, initrd: &Path) -> String {
    let mut child = Command::new(qemu)
        // `-smap`: QEMU's TCG performs a ring-3 `iretq` (the libos's
        // signal return) with supervisor-mode stack reads, which SMAP
        // faults; the guest kernel then oopses and kills the program with
        // SIGKILL (seen with QEMU 7.2 and kernel 6.1). Protection keys do
        // not depend on SMAP.
        .args(["-accel", "tcg", "-cpu", "max,-smap", "-smp", "2", "-m", "1024", "-nographic", "-no-reboot"])
        .args(["-monitor", "none", "-serial", "stdio", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 rdinit=/init quiet loglevel=1 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-x86_64");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting for qemu").is_some() {
            break;
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    eprintln!("qemu: {:.0?} for boot and every case", start.elapsed());
    text
}

#[test]
fn execute_only_is_enforced_under_qemu_with_protection_keys() {
    let Some(qemu) = which("qemu-system-x86_64") else {
        not_run(
            "QEMU",
            "qemu-system-x86_64 is missing; help: apt-get install qemu-system-x86 (scripts/setup.sh)",
        );
        return;
    };
    let Some(kernel) = kernel().filter(|k| k.is_file()) else {
        not_run(
            "QEMU",
            "no kernel image under /boot; help: apt-get install linux-image-amd64 (scripts/setup.sh)",
        );
        return;
    };
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        not_run("QEMU", "/bin/busybox is missing; help: apt-get install busybox-static (scripts/setup.sh)");
        return;
    }
    let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let programs = workspace_root().join("monitor/tests/programs");
    // The programs, built static on the host, and their images.
    let hello_c = dir.path().join("hello.c");
    std::fs::write(
        &hello_c,
        "#include <stdio.h>\nint main(void){printf(\"hello from %s\\n\", \"cabin\");return 3;}\n",
    )
    .expect("writing hello.c");
    for (name, src) in [("hello", hello_c), ("attack_xonly", programs.join("attack_xonly.c"))] {
        let exe = dir.path().join(name);
        if compile_static_c("gcc", "gcc", &src, &exe).is_none() {
            return;
        }
        let image = dir.path().join(format!("{name}.cabin"));
        cabinc().build_ok(&exe, &image, &[]);
        put(&root, &exe, &format!("t/{name}"));
        put(&root, &image, &format!("t/{name}.cabin"));
    }
    let cabinc_bin = Path::new(env!("CARGO_BIN_EXE_cabinc"));
    put(&root, cabinc_bin, "cabinc");
    for lib in libraries(cabinc_bin) {
        put(&root, &lib, lib.to_str().expect("utf-8 library path"));
    }
    put(&root, busybox, "bin/busybox");
    // The KVM modules of the same kernel, for the nested try.
    let release = kernel.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("vmlinuz-"));
    if let Some(rel) = release {
        let m = Path::new("/lib/modules").join(rel).join("kernel");
        for (src, name) in [
            ("virt/lib/irqbypass.ko", "irqbypass"),
            ("drivers/crypto/ccp/ccp.ko", "ccp"),
            ("arch/x86/kvm/kvm.ko", "kvm"),
            ("arch/x86/kvm/kvm-amd.ko", "kvm-amd"),
            ("arch/x86/kvm/kvm-intel.ko", "kvm-intel"),
        ] {
            if m.join(src).is_file() {
                put(&root, &m.join(src), &format!("m/{name}.ko"));
            }
        }
    }
    let jump = checked_xrstor_rdi(&dir.path().join("attack_xonly.cabin"));
    let init = root.join("init");
    std::fs::write(&init, INIT.replace("@JUMP@", &format!("{jump:#x}"))).expect("writing init");
    let chmod = Command::new("chmod").arg("755").arg(&init).status().expect("chmod");
    assert!(chmod.success());
    // newc cpio of the tree, by busybox.
    let initrd = dir.path().join("initrd.cpio");
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("find . | /bin/busybox cpio -o -H newc > \"$1\"")
        .arg("sh")
        .arg(&initrd)
        .current_dir(&root)
        .status()
        .expect("running cpio");
    assert!(cpio.success(), "building the initramfs");

    let console = boot(&qemu, &kernel, &initrd);
    let cases = parse(&console);
    let show = || format!("console:\n{console}");
    // The guest must finish, except for one emulator hazard checked below
    // (a hang of the nested KVM half): every process case comes first.
    let finished = console.contains("@@DONE");
    let unfinished =
        console.rsplit("@@CASE ").next().and_then(|t| t.lines().next()).unwrap_or("").to_string();
    assert!(
        finished || (unfinished.starts_with("kvm_") && console.contains("soft lockup")),
        "the guest did not finish\n{}",
        show()
    );
    let case = |name: &str| cases.get(name).cloned().unwrap_or_else(|| panic!("no case {name}\n{}", show()));
    eprintln!("guest cpu: {}", case("cpu").out.trim());
    eprintln!("kvm modules: {:?}", case("kvm_modules"));
    assert!(case("cpu").out.contains("ospke"), "TCG -cpu max has no PKU enabled?\n{}", show());

    // A sample runs as natively, and the run reports enforcement.
    let (native, confined) = (case("hello_native"), case("hello_process"));
    assert_eq!(native.out, "hello from cabin\n");
    assert_eq!((confined.out.as_str(), confined.rc), (native.out.as_str(), native.rc), "{confined:?}");
    assert!(confined.err.contains("execute-only code is enforced"), "{confined:?}");
    assert!(case("stats").out.contains("\"execute_only_enforced\": true"), "{:?}", case("stats"));
    let req = case("hello_require");
    assert_eq!((req.out.as_str(), req.rc), (native.out.as_str(), native.rc), "{req:?}");

    // Natively the attacks read code (the static binary's code is readable).
    for m in ["read", "xrstor", "sigreturn", "pkey"] {
        let n = case(&format!("native_{m}"));
        assert!(n.out.contains(&format!("{m}: read code:")), "native {m}: {n:?}");
        // Confined: no read succeeds, and the program ends with SIGSEGV
        // for a protection key (or is stopped before it can try).
        let c = case(&format!("process_{m}"));
        assert!(!c.out.contains("read code:"), "process {m} read its code: {c:?}");
        assert_eq!(c.rc, Some(128 + 11), "process {m}: {c:?}");
        assert!(c.err.contains("SIGSEGV") && c.err.contains("SEGV_PKUERR"), "process {m}: {c:?}");
    }
    // The host's rt_sigreturn with a forged frame (PKRU = 0): natively
    // Linux restores it and the program reads its code; confined, the
    // filter kills the call (SIGSYS) before anything is restored.
    let n = case("native_native-sigreturn");
    assert!(n.out.contains("resumed at the forged rip") && n.out.contains("read code:"), "native: {n:?}");
    let c = case("process_native-sigreturn");
    eprintln!("process native-sigreturn: {c:?}");
    assert_eq!(c.out, "native-sigreturn: jumping\n", "process native-sigreturn: {c:?}");
    assert_eq!(c.rc, Some(128 + 31), "process native-sigreturn: {c:?}");
    assert!(c.err.contains("SIGSYS"), "process native-sigreturn: {c:?}");
    // A jump straight to a checked xrstor with PKRU = 0 in the area: the
    // check ends the program (exit_group(139)) before any read.
    let j = case("process_jump");
    assert!(j.out.contains("jump: to ") && !j.out.contains("read code:"), "process jump: {j:?}");
    assert_eq!(j.rc, Some(139), "process jump: {j:?}");
    let refused = [
        "pkey_alloc refused",
        "pkey_mprotect of code refused",
        "mprotect(PROT_READ|PROT_EXEC) of code refused",
    ];
    let pkey = case("process_pkey");
    for what in refused {
        assert!(pkey.out.contains(what), "{what}: {pkey:?}");
    }

    // The kvm backend, nested: the guest's KVM runs on TCG's emulated SVM
    // (with NPT and PKU).
    if !cases.contains_key("kvm_hello") {
        not_run("QEMU-KVM", &format!("no /dev/kvm in the QEMU guest: {:?}", case("kvm_modules")));
        return;
    }
    if !finished {
        // Seen once, at host load 4-5: the guest kernel itself stopped
        // (soft lockups on both of its CPUs, idle ones included) during a
        // nested-KVM case, which no guest-side timeout can end. The process
        // half above passed; the kvm half is reported as not run, with the
        // evidence, never as passed (docs/execute-only.md, "The QEMU tier").
        let tail: Vec<&str> = console.lines().rev().take(8).collect();
        eprintln!("console tail (newest first): {tail:#?}");
        not_run(
            "QEMU-KVM",
            &format!(
                "the QEMU guest's kernel hung (soft lockup) during nested-KVM case {unfinished}; the \
                 process half passed; rerun cargo test -p cabinc --test qemu_xonly"
            ),
        );
        return;
    }
    let k = case("kvm_hello");
    assert_eq!((k.out.as_str(), k.rc), (native.out.as_str(), native.rc), "kvm: {k:?}");
    assert!(k.err.contains("execute-only code is enforced"), "kvm: {k:?}");
    assert!(case("kvm_stats").out.contains("\"execute_only_enforced\": true"), "{:?}", case("kvm_stats"));
    let req = case("kvm_require");
    assert_eq!((req.out.as_str(), req.rc), (native.out.as_str(), native.rc), "kvm: {req:?}");
    for m in ["read", "xrstor", "sigreturn", "pkey"] {
        let c = case(&format!("kvm_{m}"));
        eprintln!("kvm {m}: {c:?}");
        assert!(!c.out.contains("read code:"), "kvm {m} read its code: {c:?}");
        assert_eq!(c.rc, Some(128 + 11), "kvm {m}: {c:?}");
        assert!(c.err.contains("SIGSEGV"), "kvm {m}: {c:?}");
        // xrstor: XCR0 has no PKRU, so the forged area faults (#GP)
        // before anything is read; the others reach the read.
        if m != "xrstor" {
            assert!(c.err.contains("protection key") && c.err.contains("SEGV_PKUERR"), "kvm {m}: {c:?}");
        }
    }
    // kvm: never the host's rt_sigreturn (the guest has none to reach),
    // and the libos's own never loads PKRU: code stays unreadable.
    let c = case("kvm_native-sigreturn");
    eprintln!("kvm native-sigreturn: {c:?}");
    assert!(!c.out.contains("read code:"), "kvm native-sigreturn read its code: {c:?}");
    // Where `syscall` enters ring 0 normally (the entry stub, as in this
    // guest) the gate cannot redirect: refused (ENOSYS), then the `ud2`
    // after it ends the program; where it arrives as a page fault (this
    // project's nested host) it resumes at the forged rip and its read faults.
    let stub_refused = c.err.contains("rt_sigreturn (15) is not supported") && c.rc == Some(132);
    let resumed = c.out.contains("resumed at the forged rip") && c.rc == Some(139);
    assert!(stub_refused || resumed, "kvm native-sigreturn: {c:?}");
    // kvm: XCR0 has no PKRU, so the area naming it faults (#GP).
    let j = case("kvm_jump");
    assert!(
        !j.out.contains("read code:") && j.rc == Some(139) && j.err.contains("SIGSEGV"),
        "kvm jump: {j:?}"
    );
    let pkey = case("kvm_pkey");
    for what in refused {
        assert!(pkey.out.contains(what), "kvm {what}: {pkey:?}");
    }
}
