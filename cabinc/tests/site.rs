//! The site address in denial messages and trace records (`cabinc run
//! --policy … --trace=FILE --trace-format jsonl`, process backend): a call
//! refused at a rewritten site (fast path) and at a trap site (slow path) is
//! reported at the address of its `syscall` instruction in the image, the
//! address `objdump` shows for the program.
//!
//! Needs `musl-gcc` (Debian package musl-tools) and `objdump`; without them the
//! tests say so on stderr and return (counted as not run, never as a pass).

use std::path::{Path, PathBuf};
use std::process::Command;

use cabin_abi::note::Tactic;
use cabin_image::image::Image;
use cabin_tests::tempfile::TempDir;

/// A program whose `uname` is made by the one `syscall` instruction of
/// `raw_uname` (no label on the instruction itself: a symbol there would be a
/// branch target inside the patch window and keep the site a trap site).
const POLICY: &str = "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"uname\"]\n";

fn cabinc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cabinc"))
}

/// The site program (cabin_tests::site_program): its path and the address of
/// its `uname` `syscall` instruction, or `None` when the tools are missing.
fn program(dir: &Path) -> Option<(PathBuf, u64)> {
    cabin_tests::site_program(dir)
}

/// Builds the image (`extra` build flags), checks how the site was handled,
/// runs it denying `uname`, and checks the message and the trace record.
fn denial_shows_the_site(trap_all_sites: bool) {
    let t: TempDir = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some((exe, addr)) = program(t.path()) else { return };
    let image = t.path().join("site.cabin");
    let mut build = cabinc();
    build.arg("build").arg(&exe).arg("-o").arg(&image);
    if trap_all_sites {
        build.arg("--trap-all-sites");
    }
    let o = build.output().expect("cabinc build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let bytes = std::fs::read(&image).expect("read the image");
    let img = Image::parse(&bytes).expect("parse the image");
    let site = img.manifest.sites().find(|s| s.addr == addr).expect("the manifest lists the uname site");
    let expected = if trap_all_sites { Tactic::Trap } else { Tactic::Rewritten };
    assert_eq!(site.tactic, expected, "{site:?}");
    if !trap_all_sites {
        assert_ne!(site.trampoline, 0, "{site:?}");
    }

    let policy = t.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    let trace = t.path().join("trace.jsonl");
    let o = cabinc()
        .args(["run", "--backend", "process", "--policy"])
        .arg(&policy)
        .arg(format!("--trace={}", trace.display()))
        .args(["--trace-format", "jsonl"])
        .arg(&image)
        .output()
        .expect("cabinc run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "uname=-1\n");
    let want = format!("cabin: policy denied uname (system call 63) at {addr:#x}: ");
    assert_eq!(stderr.matches(&want).count(), 1, "want `{want}` once in:\n{stderr}");

    let text = std::fs::read_to_string(&trace).expect("read the trace");
    let recs: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let uname: Vec<_> = recs.iter().filter(|r| r["type"] == "syscall" && r["name"] == "uname").collect();
    assert_eq!(uname.len(), 1, "{text}");
    assert_eq!(uname[0]["served"], "denied", "{text}");
    assert_eq!(uname[0]["site"], format!("{addr:#x}"), "{text}");
    // Every forwarded or trapped call names a site inside the program's code,
    // never a trampoline or the libos.
    let cabin_start = img.manifest.header.cabin_vaddr;
    for r in recs.iter().filter(|r| r["type"] == "syscall" && r["served"] != "local") {
        let s = r["site"].as_str().unwrap_or_else(|| panic!("no site in {r}"));
        let s = u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex site");
        assert!(img.manifest.sites().any(|m| m.addr == s), "{s:#x} is not a site of the image ({r})");
        assert!(s < cabin_start, "{s:#x} lies in the Cabin segments ({r})");
    }
}

#[test]
fn denial_at_a_rewritten_site_shows_the_syscall_address() {
    denial_shows_the_site(false);
}

#[test]
fn denial_at_a_trap_site_shows_the_syscall_address() {
    denial_shows_the_site(true);
}
