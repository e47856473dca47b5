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
//! The nested cargo, the link step and the ELF reader are shared
//! with `backends/kvm/build.rs` through `cabin-build-support` (`build-support/`):
//! the inner cargo uses its own target directory under `OUT_DIR` (the outer
//! build holds the lock on the outer one) and a cleaned environment, so the
//! outer build's flags, wrappers and target do not leak into it.

use std::path::Path;
use std::process::ExitCode;

use cabin_build_support::{
    blob_main, build_staticlib, check_target_installed, link, loads, relas, sections, symbol, BLOB_LD_ARGS,
};

fn main() -> ExitCode {
    blob_main("the libos blob", &["libos", "abi", "linker-scripts"], build)
}

fn build(root: &Path, out_dir: &Path) -> Result<(), String> {
    check_target_installed()?;
    let archive = build_staticlib(root, out_dir, "cabin-libos", "libcabin_libos.a")?;
    let elf = out_dir.join("libos.elf");
    let own_args = ["--orphan-handling=error", "-z", "common-page-size=4096"];
    let entry = ["-e", "cabin_start", "-u", "cabin_syscall_entry", "-u", "CABIN_LINK_INFO"];
    let ld_args = [&BLOB_LD_ARGS[..], &own_args, &entry].concat();
    let script = root.join("linker-scripts").join("libos.ld");
    link(&ld_args, &script, &archive, &elf, "the libos blob")?;
    let bytes = std::fs::read(&elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    check_relocations(&bytes)?;
    Ok(())
}

/// The blob's writable PT_LOAD as a `[start, end)` address range.
fn writable_segment(b: &[u8]) -> Result<Option<(u64, u64)>, String> {
    const PF_W: u32 = 2;
    Ok(loads(b)?.into_iter().find(|l| l.flags & PF_W != 0).map(|l| (l.vaddr, l.vaddr + l.memsz)))
}

/// The libos applies only `R_X86_64_RELATIVE` entries into its writable
/// segment, found between `__cabin_rela_start` and `__cabin_rela_end`
/// (libos/src/reloc.rs). Refuses a blob that needs anything else.
fn check_relocations(b: &[u8]) -> Result<(), String> {
    const SHT_RELA: u32 = 4;
    const SHT_REL: u32 = 9;
    const R_X86_64_RELATIVE: u32 = 8;
    let in_libos = |e: String| format!("libos.elf: {e}");
    let sections = sections(b).map_err(in_libos)?;
    let rela_start = symbol(b, "__cabin_rela_start")
        .map_err(in_libos)?
        .ok_or("libos.elf lacks __cabin_rela_start (linker-scripts/libos.ld)")?;
    let rela_end = symbol(b, "__cabin_rela_end")
        .map_err(in_libos)?
        .ok_or("libos.elf lacks __cabin_rela_end (linker-scripts/libos.ld)")?;
    let (data_start, data_end) =
        writable_segment(b).map_err(in_libos)?.ok_or("libos.elf has no writable segment")?;
    let mut seen = 0;
    for s in sections.iter().filter(|s| (s.kind == SHT_RELA || s.kind == SHT_REL) && s.size != 0) {
        if s.kind == SHT_REL || s.addr != rela_start || s.addr + s.size != rela_end {
            return Err(format!(
                "libos.elf has a relocation section at {:#x} that cabin_start would not apply \
                 (expected RELA between __cabin_rela_start {rela_start:#x} and __cabin_rela_end {rela_end:#x})",
                s.addr
            ));
        }
        for (offset, r_type) in relas(b, s).map_err(in_libos)? {
            if r_type != R_X86_64_RELATIVE {
                return Err(format!(
                    "the libos needs relocation type {r_type} at {offset:#x}; only R_X86_64_RELATIVE is \
                     supported. Inspect with `readelf -r $OUT_DIR/libos.elf`"
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
