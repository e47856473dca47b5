//! Builds the libos blob that the rewriter embeds in every image.
//!
//! Steps: compile `cabin-libos` for `x86_64-unknown-none` as a staticlib
//! (position-independent, small code model, soft-float by target default),
//! link it with the system `ld` and `linker-scripts/libos.ld` into
//! `$OUT_DIR/libos.elf`, then refuse the result if it needs any run-time
//! relocation the libos cannot apply itself: `cabin_start` only applies
//! `R_X86_64_RELATIVE` entries into the blob's writable segment (normally
//! there are none at all).
//!
//! The inner cargo uses its own target directory under `OUT_DIR` (the outer
//! build holds the lock on the outer one) and a cleaned environment, so the
//! outer build's flags, wrappers and target do not leak into it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const TARGET: &str = "x86_64-unknown-none";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: building the libos blob failed: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir.parent().ok_or("rewriter has no parent directory")?.to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);

    for dir in ["libos", "abi", "linker-scripts"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CABIN_LD");

    check_target_installed()?;
    let archive = build_staticlib(&root, &out_dir)?;
    let elf = out_dir.join("libos.elf");
    link_blob(&root, &archive, &elf)?;
    let bytes = std::fs::read(&elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    check_relocations(&bytes)?;
    Ok(())
}

/// Fails early, with the fix, when the rust-std for the image target is missing.
fn check_target_installed() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("running {rustc}: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let has_core = std::fs::read_dir(&libdir)
        .map(|rd| rd.flatten().any(|f| f.file_name().to_string_lossy().starts_with("libcore-")))
        .unwrap_or(false);
    if !out.status.success() || !has_core {
        return Err(format!(
            "the Rust target {TARGET} is not installed for this toolchain\n  \
             help: rustup target add {TARGET}"
        ));
    }
    Ok(())
}

fn build_staticlib(root: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out_dir.join("libos-target");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["rustc", "-p", "cabin-libos", "--lib", "--release", "--target", TARGET])
        .args(["--crate-type", "staticlib", "--target-dir"])
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    // Keep the outer build's configuration out of the inner one.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_"]
            .iter()
            .any(|k| key.starts_with(k));
        let leaks = key.starts_with("CARGO_")
            || key.starts_with("RUSTC_")
            || matches!(key.as_str(), "RUSTFLAGS" | "RUSTDOCFLAGS" | "MAKEFLAGS" | "MFLAGS");
        if leaks && !keep {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", ["-Crelocation-model=pie", "-Ccode-model=small"].join("\u{1f}"))
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
        .env("CARGO_TERM_COLOR", "never");
    let out = cmd.output().map_err(|e| format!("running {cargo}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("cargo rustc -p cabin-libos --target {TARGET} failed:\n{stderr}");
        if stderr.contains("can't find crate for `core`") || stderr.contains("target may not be installed") {
            msg.push_str(&format!("\n  help: rustup target add {TARGET}"));
        }
        return Err(msg);
    }
    Ok(target_dir.join(TARGET).join("release").join("libcabin_libos.a"))
}

fn link_blob(root: &Path, archive: &Path, elf: &Path) -> Result<(), String> {
    let ld = env::var("CABIN_LD").unwrap_or_else(|_| "ld".into());
    let script = root.join("linker-scripts").join("libos.ld");
    let out = Command::new(&ld)
        .args(["-pie", "--no-dynamic-linker", "--gc-sections", "--orphan-handling=error", "-S"])
        .args(["--build-id=none", "--hash-style=sysv"])
        .args([
            "-z",
            "norelro",
            "-z",
            "noexecstack",
            "-z",
            "max-page-size=4096",
            "-z",
            "common-page-size=4096",
        ])
        .args(["-e", "cabin_start", "-u", "cabin_syscall_entry", "-u", "CABIN_LINK_INFO"])
        .arg("-T")
        .arg(&script)
        .arg("-o")
        .arg(elf)
        .arg(archive)
        .output()
        .map_err(|e| format!("running {ld} (GNU binutils is needed; set CABIN_LD to override): {e}"))?;
    if !out.status.success() {
        return Err(format!("{ld} failed linking the libos blob:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

fn u16_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?) as u64)
}
fn u32_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?) as u64)
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// Section header fields this check needs.
struct Section {
    kind: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u64,
}

fn elf_sections(b: &[u8]) -> Option<Vec<Section>> {
    let shoff = u64_at(b, 0x28)? as usize;
    let shentsize = u16_at(b, 0x3a)? as usize;
    let shnum = u16_at(b, 0x3c)? as usize;
    (0..shnum)
        .map(|i| {
            let sh = shoff.checked_add(i.checked_mul(shentsize)?)?;
            Some(Section {
                kind: u32_at(b, sh + 4)?,
                addr: u64_at(b, sh + 0x10)?,
                offset: u64_at(b, sh + 0x18)?,
                size: u64_at(b, sh + 0x20)?,
                link: u32_at(b, sh + 0x28)?,
            })
        })
        .collect()
}

/// Value of the defined symbol `name` in `.symtab`.
fn elf_symbol(b: &[u8], sections: &[Section], name: &str) -> Option<u64> {
    const SHT_SYMTAB: u64 = 2;
    let symtab = sections.iter().find(|s| s.kind == SHT_SYMTAB)?;
    let strtab = sections.get(symtab.link as usize)?;
    let strings = b.get(strtab.offset as usize..(strtab.offset + strtab.size) as usize)?;
    let syms = b.get(symtab.offset as usize..(symtab.offset + symtab.size) as usize)?;
    for sym in syms.chunks_exact(24) {
        let at = u32_at(sym, 0)? as usize;
        let sym_name = strings.get(at..)?.split(|&c| c == 0).next()?;
        if sym_name == name.as_bytes() && u16_at(sym, 6)? != 0 {
            return u64_at(sym, 8);
        }
    }
    None
}

/// The blob's writable PT_LOAD as a `[start, end)` address range.
fn writable_segment(b: &[u8]) -> Option<(u64, u64)> {
    let phoff = u64_at(b, 0x20)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    (0..phnum).find_map(|i| {
        let ph = phoff + 56 * i;
        let (kind, flags) = (u32_at(b, ph)?, u32_at(b, ph + 4)?);
        let (vaddr, memsz) = (u64_at(b, ph + 0x10)?, u64_at(b, ph + 0x28)?);
        (kind == 1 && flags & 2 != 0).then_some((vaddr, vaddr + memsz))
    })
}

/// The libos applies only `R_X86_64_RELATIVE` entries into its writable
/// segment, found between `__cabin_rela_start` and `__cabin_rela_end`
/// (libos/src/reloc.rs). Refuses a blob that needs anything else.
fn check_relocations(b: &[u8]) -> Result<(), String> {
    const SHT_RELA: u64 = 4;
    const SHT_REL: u64 = 9;
    const R_X86_64_RELATIVE: u64 = 8;
    let bad = || "libos.elf is not a well-formed ELF64 file".to_string();
    let sections = elf_sections(b).ok_or_else(bad)?;
    let rela_start = elf_symbol(b, &sections, "__cabin_rela_start")
        .ok_or("libos.elf lacks __cabin_rela_start (linker-scripts/libos.ld)")?;
    let rela_end = elf_symbol(b, &sections, "__cabin_rela_end")
        .ok_or("libos.elf lacks __cabin_rela_end (linker-scripts/libos.ld)")?;
    let (data_start, data_end) = writable_segment(b).ok_or("libos.elf has no writable segment")?;
    let mut seen = 0;
    for s in sections.iter().filter(|s| (s.kind == SHT_RELA || s.kind == SHT_REL) && s.size != 0) {
        if s.kind == SHT_REL || s.addr != rela_start || s.addr + s.size != rela_end {
            return Err(format!(
                "libos.elf has a relocation section at {:#x} that cabin_start would not apply \
                 (expected RELA between __cabin_rela_start {rela_start:#x} and __cabin_rela_end {rela_end:#x})",
                s.addr
            ));
        }
        let table = b.get(s.offset as usize..(s.offset + s.size) as usize).ok_or_else(bad)?;
        for entry in table.chunks_exact(24) {
            let offset = u64_at(entry, 0).ok_or_else(bad)?;
            let info = u64_at(entry, 8).ok_or_else(bad)?;
            if info & 0xffff_ffff != R_X86_64_RELATIVE {
                return Err(format!(
                    "the libos needs relocation type {} at {offset:#x}; only R_X86_64_RELATIVE is \
                     supported. Inspect with `readelf -r $OUT_DIR/libos.elf`",
                    info & 0xffff_ffff
                ));
            }
            if offset % 8 != 0 || offset < data_start || offset + 8 > data_end {
                return Err(format!(
                    "the libos needs a relocation at {offset:#x}, outside its writable segment \
                     {data_start:#x}..{data_end:#x} (code and read-only data are never written)"
                ));
            }
            seen += 1;
        }
    }
    if seen != (rela_end - rela_start) / 24 {
        return Err("libos.elf: __cabin_rela_start/__cabin_rela_end do not bracket .rela.dyn".into());
    }
    Ok(())
}
