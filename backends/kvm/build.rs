//! Builds the proxy-kernel blob that the KVM backend copies into every guest.
//!
//! Steps (the same pattern as the libos blob in `rewriter/build.rs`; the
//! nested cargo, the link step and the section-header reader are shared
//! through `cabin-build-support` in `build-support/`):
//! compile `cabin-proxy-kernel` for `x86_64-unknown-none` as a staticlib
//! (position-independent, soft-float), link it with the system `ld` and
//! `proxy-kernel/link.ld` into `$OUT_DIR/proxy-kernel.elf`, refuse it if it
//! needs run-time relocations or has writable data, then write the flat
//! `$OUT_DIR/proxy-kernel.bin` the KVM backend embeds.
//!
//! Finally it disassembles all of the blob's code and fails the build if any
//! instruction appears that ends the VM when KVM emulates it in guest ring 0
//! on the machines this project runs on (`xsave*`, `xrstor*`, `xgetbv`,
//! `xsetbv`, `rdtscp`, `rdpkru`/`wrpkru`, `rdpid`) or any x87, MMX, SSE or
//! AVX instruction (see docs/architecture.md, "The machines").

use std::path::Path;
use std::process::ExitCode;

use cabin_build_support::{blob_main, build_staticlib, link, read_le, sections, Section, BLOB_LD_ARGS};
use iced_x86::{CpuidFeature, Decoder, DecoderOptions, Instruction, Mnemonic};

fn main() -> ExitCode {
    // `blob_main` watches and builds relative to this crate's parent
    // (`backends/`): the sources are one level further up.
    blob_main("the proxy-kernel blob", &["../proxy-kernel", "../abi"], |backends, out_dir| {
        let root = backends.parent().ok_or("backends/ has no parent directory")?;
        build(root, out_dir)
    })
}

fn build(root: &Path, out_dir: &Path) -> Result<(), String> {
    let archive = build_staticlib(root, out_dir, "cabin-proxy-kernel", "libcabin_proxy_kernel.a")?;
    let elf_path = out_dir.join("proxy-kernel.elf");
    let ld_args = [&BLOB_LD_ARGS[..], &["-e", "__pk_base", "-u", "__pk_base"]].concat();
    let script = root.join("proxy-kernel").join("link.ld");
    link(&ld_args, &script, &archive, &elf_path, "the proxy-kernel")?;
    let elf = std::fs::read(&elf_path).map_err(|e| format!("reading {}: {e}", elf_path.display()))?;
    let sections = sections(&elf).map_err(|e| format!("proxy-kernel.elf: {e}"))?;
    check_sections(&sections)?;
    let text = sections.iter().find(|s| s.name == ".text").ok_or("the blob has no .text section")?;
    let code = text.data(&elf).ok_or("the .text section lies outside the file")?;
    check_instructions(code, text.addr)?;
    let flat = flatten(&elf, &sections)?;
    std::fs::write(out_dir.join("proxy-kernel.bin"), flat).map_err(|e| format!("writing the blob: {e}"))?;
    Ok(())
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
    let start = read_le(code, 16, 8).ok_or("the .text section is too short for the header")?;
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
             help: build it soft-float and avoid these intrinsics; see docs/architecture.md",
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
        let src = s.data(elf).ok_or_else(|| format!("section {} lies outside the file", s.name))?;
        flat[s.addr as usize..(s.addr + s.size) as usize].copy_from_slice(src);
    }
    Ok(flat)
}
