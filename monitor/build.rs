//! Builds the proxy-kernel blob that the KVM backend copies into every guest.
//!
//! Steps (the same pattern as the libos blob in `rewriter/build.rs`):
//! compile `cabin-proxy-kernel` for `x86_64-unknown-none` as a staticlib
//! (position-independent, soft-float), link it with the system `ld` and
//! `proxy-kernel/link.ld` into `$OUT_DIR/proxy-kernel.elf`, refuse it if it
//! needs run-time relocations or has writable data, then write the flat
//! `$OUT_DIR/proxy-kernel.bin` the monitor embeds.
//!
//! Finally it disassembles all of the blob's code and fails the build if any
//! instruction appears that ends the VM when KVM emulates it in guest ring 0
//! on the machines this project runs on (`xsave*`, `xrstor*`, `xgetbv`,
//! `xsetbv`, `rdtscp`, `rdpkru`/`wrpkru`, `rdpid`) or any x87, MMX, SSE or
//! AVX instruction (see ARCHITECTURE.md, "Facts about the machines").

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use iced_x86::{CpuidFeature, Decoder, DecoderOptions, Instruction, Mnemonic};

const TARGET: &str = "x86_64-unknown-none";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: building the proxy-kernel blob failed: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir.parent().ok_or("monitor has no parent directory")?.to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    for dir in ["proxy-kernel", "abi"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CABIN_LD");

    let archive = build_staticlib(&root, &out_dir)?;
    let elf_path = out_dir.join("proxy-kernel.elf");
    link(&root, &archive, &elf_path)?;
    let elf = std::fs::read(&elf_path).map_err(|e| format!("reading {}: {e}", elf_path.display()))?;
    let sections = sections(&elf)?;
    check_sections(&sections)?;
    let text = sections.iter().find(|s| s.name == ".text").ok_or("the blob has no .text section")?;
    let code = elf
        .get(text.offset as usize..(text.offset + text.size) as usize)
        .ok_or("the .text section lies outside the file")?;
    check_instructions(code, text.addr)?;
    let flat = flatten(&elf, &sections)?;
    std::fs::write(out_dir.join("proxy-kernel.bin"), flat).map_err(|e| format!("writing the blob: {e}"))?;
    Ok(())
}

fn build_staticlib(root: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out_dir.join("proxy-kernel-target");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["rustc", "-p", "cabin-proxy-kernel", "--lib", "--release", "--target", TARGET])
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
        let mut msg = format!("cargo rustc -p cabin-proxy-kernel --target {TARGET} failed:\n{stderr}");
        if stderr.contains("can't find crate for `core`") || stderr.contains("target may not be installed") {
            msg.push_str(&format!("\n  help: rustup target add {TARGET}"));
        }
        return Err(msg);
    }
    Ok(target_dir.join(TARGET).join("release").join("libcabin_proxy_kernel.a"))
}

fn link(root: &Path, archive: &Path, elf: &Path) -> Result<(), String> {
    let ld = env::var("CABIN_LD").unwrap_or_else(|_| "ld".into());
    let script = root.join("proxy-kernel").join("link.ld");
    let out = Command::new(&ld)
        .args(["-pie", "--no-dynamic-linker", "--gc-sections", "-S", "--build-id=none", "--hash-style=sysv"])
        .args(["-z", "norelro", "-z", "noexecstack", "-z", "max-page-size=4096"])
        .args(["-e", "__pk_base", "-u", "__pk_base"])
        .arg("-T")
        .arg(&script)
        .arg("-o")
        .arg(elf)
        .arg(archive)
        .output()
        .map_err(|e| format!("running {ld} (GNU binutils is needed; set CABIN_LD to override): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{ld} failed linking the proxy-kernel:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

struct Section {
    name: String,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

fn rd(b: &[u8], off: usize, n: usize) -> Result<u64, String> {
    let s = b.get(off..off + n).ok_or("proxy-kernel.elf is not a well-formed ELF64 file")?;
    let mut w = [0u8; 8];
    w[..n].copy_from_slice(s);
    Ok(u64::from_le_bytes(w))
}

fn sections(b: &[u8]) -> Result<Vec<Section>, String> {
    let shoff = rd(b, 0x28, 8)? as usize;
    let shentsize = rd(b, 0x3a, 2)? as usize;
    let shnum = rd(b, 0x3c, 2)? as usize;
    let shstrndx = rd(b, 0x3e, 2)? as usize;
    let strtab_off = rd(b, shoff + shstrndx * shentsize + 0x18, 8)? as usize;
    let mut out = Vec::new();
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let name_off = strtab_off + rd(b, sh, 4)? as usize;
        let name_bytes = b.get(name_off..).ok_or("bad section name")?;
        let end = name_bytes.iter().position(|&c| c == 0).ok_or("bad section name")?;
        out.push(Section {
            name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
            kind: rd(b, sh + 4, 4)? as u32,
            flags: rd(b, sh + 8, 8)?,
            addr: rd(b, sh + 0x10, 8)?,
            offset: rd(b, sh + 0x18, 8)?,
            size: rd(b, sh + 0x20, 8)?,
        });
    }
    Ok(out)
}

/// No run-time relocations (nothing relocates the kernel) and no writable
/// data (the kernel is mapped read-only and keeps no state).
fn check_sections(sections: &[Section]) -> Result<(), String> {
    const SHT_RELA: u32 = 4;
    const SHT_REL: u32 = 9;
    const SHF_WRITE: u64 = 1;
    const SHF_ALLOC: u64 = 2;
    for s in sections {
        if (s.kind == SHT_RELA || s.kind == SHT_REL) && s.size != 0 {
            return Err(format!(
                "the proxy-kernel needs {} bytes of run-time relocations ({}); it is loaded without a \
                 relocator. help: find the absolute address with `readelf -r $OUT_DIR/proxy-kernel.elf`",
                s.size, s.name
            ));
        }
        let writable = s.flags & SHF_WRITE != 0 && s.flags & SHF_ALLOC != 0;
        if writable && s.name != ".dynamic" && s.size != 0 {
            return Err(format!(
                "the proxy-kernel has writable data (section {}, {} bytes); it must keep no state of its \
                 own (the blob is mapped read-only)",
                s.name, s.size
            ));
        }
    }
    Ok(())
}

/// Fails on any instruction KVM's ring-0 emulation cannot run here.
fn check_instructions(code: &[u8], addr: u64) -> Result<(), String> {
    // The first bytes of .text are the data header; the code starts at the
    // first vector stub, whose offset the header holds at byte 16.
    let start = rd(code, 16, 8)?;
    let skip = start.checked_sub(addr).ok_or("the header's stub offset lies before .text")? as usize;
    let code = code.get(skip..).ok_or("the header's stub offset lies outside .text")?;
    let mut decoder = Decoder::with_ip(64, code, addr + skip as u64, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut bad = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            bad.push(format!("{:#x}: undecodable bytes", insn.ip()));
            continue;
        }
        if let Some(why) = forbidden(&insn) {
            bad.push(format!("{:#x}: {:?} ({why})", insn.ip(), insn.mnemonic()));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the proxy-kernel contains instructions that end the VM in emulated ring 0:\n  {}\n  \
             help: build it soft-float and avoid these intrinsics; see ARCHITECTURE.md",
            bad.join("\n  ")
        ))
    }
}

fn forbidden(insn: &Instruction) -> Option<&'static str> {
    use Mnemonic::*;
    match insn.mnemonic() {
        Xsave | Xsave64 | Xsaveopt | Xsaveopt64 | Xsavec | Xsavec64 | Xsaves | Xsaves64 | Xrstor
        | Xrstor64 | Xrstors | Xrstors64 => return Some("xsave family"),
        Xgetbv | Xsetbv => return Some("xgetbv/xsetbv"),
        Rdtscp => return Some("rdtscp"),
        Rdpkru | Wrpkru => return Some("protection-key register access"),
        Rdpid => return Some("rdpid"),
        Fxsave | Fxsave64 | Fxrstor | Fxrstor64 => return Some("fxsave family"),
        _ => {}
    }
    for f in insn.cpuid_features() {
        let name = format!("{f:?}");
        let vector = matches!(f, CpuidFeature::FPU | CpuidFeature::MMX)
            || name.starts_with("SSE")
            || name.starts_with("AVX")
            || name.starts_with("FMA")
            || name.starts_with("F16C")
            || name.starts_with("AES")
            || name.starts_with("PCLMUL")
            || name.starts_with("SHA")
            || name.starts_with("GFNI")
            || name.starts_with("VAES")
            || name.starts_with("VPCLMUL")
            || name.starts_with("AMX");
        if vector {
            return Some("x87/MMX/SSE/AVX instruction");
        }
    }
    None
}

/// The loadable bytes from address 0 up to the end of the last allocated
/// section, as one flat image.
fn flatten(elf: &[u8], sections: &[Section]) -> Result<Vec<u8>, String> {
    const SHF_ALLOC: u64 = 2;
    const SHT_NOBITS: u32 = 8;
    let end =
        sections.iter().filter(|s| s.flags & SHF_ALLOC != 0).map(|s| s.addr + s.size).max().unwrap_or(0);
    let mut flat = vec![0u8; end as usize];
    for s in sections.iter().filter(|s| s.flags & SHF_ALLOC != 0 && s.kind != SHT_NOBITS && s.size != 0) {
        let src = elf
            .get(s.offset as usize..(s.offset + s.size) as usize)
            .ok_or_else(|| format!("section {} lies outside the file", s.name))?;
        flat[s.addr as usize..(s.addr + s.size) as usize].copy_from_slice(src);
    }
    Ok(flat)
}
