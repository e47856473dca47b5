//! The guest kernel module (`module/`): it builds against kernel headers
//! (never loaded here), and its C ioctl ABI is the Rust one
//! (`cabin_snp::abi`), size by size, offset by offset, number by number.

use std::path::{Path, PathBuf};
use std::process::Command;

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("module")
}

/// Kernel build trees to build against: the running kernel's, then any
/// Debian `linux-headers-*-amd64` (what `linux-headers-amd64` installs).
fn kernel_build_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(rel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        dirs.push(PathBuf::from(format!("/lib/modules/{}/build", rel.trim())));
    }
    if let Ok(rd) = std::fs::read_dir("/usr/src") {
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("linux-headers-") && n.ends_with("-amd64"))
            })
            .collect();
        v.sort();
        dirs.extend(v);
    }
    dirs.into_iter().filter(|d| d.join("Makefile").exists()).collect()
}

#[test]
fn module_builds_against_kernel_headers() {
    let Some(kdir) = kernel_build_dirs().into_iter().next() else {
        cabin_tests::not_run(
            "kernel headers",
            "no kernel headers (/lib/modules/*/build or /usr/src/linux-headers-*-amd64); help: apt-get install linux-headers-amd64 (scripts/setup.sh does)",
        );
        return;
    };
    // Build a copy: the source tree stays clean.
    let tmp = tempfile::tempdir().expect("tempdir");
    for f in ["Kbuild", "cabin_vmpl.c", "cabin_vmpl.h"] {
        std::fs::copy(module_dir().join(f), tmp.path().join(f)).expect("copy module source");
    }
    let out = Command::new("make")
        .arg("-C")
        .arg(&kdir)
        .arg(format!("M={}", tmp.path().display()))
        .arg("modules")
        .output()
        .expect("run make");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "module build against {} failed:\n{log}", kdir.display());
    assert!(tmp.path().join("cabin_vmpl.ko").exists(), "no cabin_vmpl.ko:\n{log}");
    // No compiler warnings: the module is reviewed code.
    assert!(!log.contains("warning:"), "the module build warns:\n{log}");
}

#[test]
fn abi_matches_the_c_header() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"cabin_vmpl.h\"\nint main(void) {\n",
    );
    for (name, _, fields) in cabin_snp::abi::layout() {
        c += &format!("printf(\"{name} %zu\\n\", sizeof(struct {name}));\n");
        for (field, _) in fields {
            c += &format!("printf(\"{name}.{field} %zu\\n\", offsetof(struct {name}, {field}));\n");
        }
    }
    for (name, _) in cabin_snp::abi::ioctls() {
        c += &format!("printf(\"{name} %lu\\n\", (unsigned long){name});\n");
    }
    c += "printf(\"CABIN_VMPL_VERSION %d\\n\", CABIN_VMPL_VERSION);\nreturn 0;\n}\n";
    let src = tmp.path().join("abi.c");
    std::fs::write(&src, c).expect("write");
    let exe = tmp.path().join("abi");
    let out = match Command::new("gcc").arg("-I").arg(module_dir()).arg("-o").arg(&exe).arg(&src).output() {
        Ok(o) => o,
        Err(e) => {
            cabin_tests::not_run("gcc", &format!("gcc is not available ({e}); help: apt-get install gcc"));
            return;
        }
    };
    assert!(out.status.success(), "compiling the header failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = Command::new(&exe).output().expect("run");
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    let mut want = String::new();
    for (name, size, fields) in cabin_snp::abi::layout() {
        want += &format!("{name} {size}\n");
        for (field, off) in fields {
            want += &format!("{name}.{field} {off}\n");
        }
    }
    for (name, n) in cabin_snp::abi::ioctls() {
        want += &format!("{name} {n}\n");
    }
    want += &format!("CABIN_VMPL_VERSION {}\n", cabin_snp::abi::VERSION);
    assert_eq!(printed, want);
}
