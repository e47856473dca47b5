//! The unwind-information reader (`analysis::ehframe`) on a real C++
//! program with exceptions, checked against binutils: the FDE starts it
//! finds are exactly the `pc=` starts `readelf --debug-dump=frames` lists,
//! through the `.eh_frame` section and through `.eh_frame_hdr` alike, and the
//! landing pads are the same both ways.
//!
//! Needs `g++` with the static C++ library and `readelf`; without them the
//! test says `NOT RUN` and why.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use cabin_image::elf::ElfFile;
use cabin_rewriter::analysis::{ehframe, elfmeta};

const PROGRAM: &str = r#"
#include <cstdio>
#include <stdexcept>
static int may_throw(int x) { if (x > 3) throw std::runtime_error("big"); return x; }
int main(int argc, char **argv) {
    try { return may_throw(argc); }
    catch (const std::exception &e) { std::puts(e.what()); return 1; }
}
"#;

fn build(dir: &Path) -> Result<Vec<u8>, String> {
    let src = dir.join("p.cc");
    let exe = dir.join("p");
    std::fs::write(&src, PROGRAM).map_err(|e| e.to_string())?;
    let out = Command::new("g++")
        .args(["-static-pie", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("g++ not available ({e})"))?;
    if !out.status.success() {
        return Err(format!("g++ -static-pie failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    std::fs::read(&exe).map_err(|e| e.to_string())
}

/// The FDE start addresses `readelf` lists for `path`.
fn readelf_fde_starts(path: &Path) -> Result<BTreeSet<u64>, String> {
    let out = Command::new("readelf")
        .args(["--debug-dump=frames"])
        .arg(path)
        .output()
        .map_err(|e| format!("readelf not available ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let starts = text
        .lines()
        .filter(|l| l.contains(" FDE "))
        .filter_map(|l| l.split("pc=").nth(1)?.split("..").next().map(str::to_owned))
        .map(|h| u64::from_str_radix(&h, 16).map_err(|e| format!("readelf printed {h}: {e}")))
        .collect::<Result<BTreeSet<u64>, String>>()?;
    Ok(starts)
}

#[test]
fn fde_starts_and_landing_pads_match_readelf_by_section_and_by_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = match build(dir.path()) {
        Ok(b) => b,
        Err(why) => {
            cabin_tests::not_run("toolchain", &why);
            return;
        }
    };
    let expected = match readelf_fde_starts(&dir.path().join("p")) {
        Ok(s) => s,
        Err(why) => {
            cabin_tests::not_run("toolchain", &why);
            return;
        }
    };
    assert!(expected.len() > 100, "readelf listed {} FDEs", expected.len());
    let elf = ElfFile::parse(&bytes).expect("a static-pie executable");
    let secs = elfmeta::sections(&elf);
    let by_section = ehframe::unwind_addrs(&elf, &secs);
    // Without section headers the reader goes through PT_GNU_EH_FRAME.
    let by_header = ehframe::unwind_addrs(&elf, &[]);
    for (how, u) in [("section", &by_section), ("header", &by_header)] {
        assert!(u.warnings.is_empty(), "{how}: {:?}", u.warnings);
        let starts: BTreeSet<u64> = u.fde_starts.iter().copied().collect();
        assert_eq!(starts, expected, "{how}");
    }
    let pads = |u: &ehframe::UnwindAddrs| u.landing_pads.iter().copied().collect::<BTreeSet<u64>>();
    assert!(!pads(&by_section).is_empty(), "a catch has a landing pad");
    assert_eq!(pads(&by_section), pads(&by_header));
    for pad in pads(&by_section) {
        assert!(elf.exec_segments().any(|s| (s.vaddr..s.vaddr + s.memsz).contains(&pad)), "{pad:#x}");
    }
}
