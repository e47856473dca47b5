//! Shared helpers for the build scripts that produce Cabin's freestanding blobs.
//!
//! Two build scripts turn a `no_std` workspace crate into a blob that another
//! crate embeds: `rewriter/build.rs` builds the libos and `backends/kvm/build.rs`
//! builds the proxy kernel. Both compile the crate for [`NO_STD_TARGET`] as a
//! staticlib with a nested cargo ([`build_staticlib`]), link the archive with
//! GNU `ld` and a linker script ([`link`]) and then inspect the ELF section
//! headers of the result ([`sections`], [`symbol`], [`loads`], [`relas`]:
//! `object`'s ELF reader, low-level types only). The checks each blob needs
//! stay in its own build script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use object::elf::{self, FileHeader64, Rela64};
use object::read::elf::{FileHeader as _, ProgramHeader as _, Rela as _, SectionHeader as _, Sym as _};
use object::LittleEndian;

/// The Rust target the blobs are compiled for.
pub const NO_STD_TARGET: &str = "x86_64-unknown-none";

/// Flags both blobs are linked with: a position-independent executable
/// without a dynamic linker, unused sections dropped, debug info stripped, no
/// build id, a SysV hash table, no RELRO, a non-executable stack and 4 KiB
/// pages. Callers append their own flags (entry point, kept symbols).
pub const BLOB_LD_ARGS: [&str; 12] = [
    "-pie",
    "--no-dynamic-linker",
    "--gc-sections",
    "-S",
    "--build-id=none",
    "--hash-style=sysv",
    "-z",
    "norelro",
    "-z",
    "noexecstack",
    "-z",
    "max-page-size=4096",
];

/// The `main` of a blob-building build script in a workspace member.
///
/// Asks cargo to rerun the script when the workspace directories `watch`, the
/// script itself or `CABIN_LD` change, then calls `build` with the workspace
/// root (the parent of the package directory) and `OUT_DIR`. An error is
/// printed as `error: building {what} failed: ...` and fails the build.
pub fn blob_main(
    what: &str,
    watch: &[&str],
    build: impl FnOnce(&Path, &Path) -> Result<(), String>,
) -> ExitCode {
    let run = || -> Result<(), String> {
        let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
        let root = manifest_dir
            .parent()
            .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
        let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
        for dir in watch {
            println!("cargo:rerun-if-changed={}", root.join(dir).display());
        }
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-env-changed=CABIN_LD");
        build(root, &out_dir)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: building {what} failed: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Environment variables of the outer cargo that are kept for the nested one
/// (where to find the registry and how to reach the network).
const KEPT_PREFIXES: [&str; 5] =
    ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_"];

/// Fails early, with the fix, when the rust-std for [`NO_STD_TARGET`] is
/// missing from the toolchain in `$RUSTC` (or `rustc`).
pub fn check_target_installed() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", NO_STD_TARGET])
        .output()
        .map_err(|e| format!("running {rustc}: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let has_core = std::fs::read_dir(&libdir)
        .map(|rd| rd.flatten().any(|f| f.file_name().to_string_lossy().starts_with("libcore-")))
        .unwrap_or(false);
    if !out.status.success() || !has_core {
        return Err(format!(
            "the Rust target {NO_STD_TARGET} is not installed for this toolchain\n  \
             help: rustup target add {NO_STD_TARGET}"
        ));
    }
    Ok(())
}

/// Compiles the library of workspace package `package` for [`NO_STD_TARGET`]
/// as a position-independent, small-code-model staticlib (release profile,
/// `opt-level = "s"`, one codegen unit, no LTO, `panic = "abort"`, no debug
/// info) and returns the path of the archive, whose file name is `lib_file`.
///
/// The nested cargo runs in `workspace_root` with its own target directory,
/// `out_dir/<package without "cabin-">-target` (the outer build holds the lock
/// on the outer one), and a cleaned environment, so the outer build's flags,
/// wrappers, profile and target do not leak into it.
pub fn build_staticlib(
    workspace_root: &Path,
    out_dir: &Path,
    package: &str,
    lib_file: &str,
) -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let short = package.strip_prefix("cabin-").unwrap_or(package);
    let target_dir = out_dir.join(format!("{short}-target"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root)
        .args(["rustc", "-p", package, "--lib", "--release", "--target", NO_STD_TARGET])
        .args(["--crate-type", "staticlib", "--target-dir"])
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"));
    // Keep the outer build's configuration out of the inner one.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = KEPT_PREFIXES.iter().any(|k| key.starts_with(k));
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
        let mut msg = format!("cargo rustc -p {package} --target {NO_STD_TARGET} failed:\n{stderr}");
        if stderr.contains("can't find crate for `core`") || stderr.contains("target may not be installed") {
            msg.push_str(&format!("\n  help: rustup target add {NO_STD_TARGET}"));
        }
        return Err(msg);
    }
    Ok(target_dir.join(NO_STD_TARGET).join("release").join(lib_file))
}

/// Links `archive` into `out` with `ld_args` (normally [`BLOB_LD_ARGS`] and
/// the blob's own flags) and `-T script`, using GNU `ld` or
/// the linker named by `CABIN_LD`. `what` names the blob in the error message
/// ("the libos blob").
pub fn link(ld_args: &[&str], script: &Path, archive: &Path, out: &Path, what: &str) -> Result<(), String> {
    let ld = env::var("CABIN_LD").unwrap_or_else(|_| "ld".into());
    let result = Command::new(&ld)
        .args(ld_args)
        .arg("-T")
        .arg(script)
        .arg("-o")
        .arg(out)
        .arg(archive)
        .output()
        .map_err(|e| format!("running {ld} (GNU binutils is needed; set CABIN_LD to override): {e}"))?;
    if !result.status.success() {
        return Err(format!("{ld} failed linking {what}:\n{}", String::from_utf8_lossy(&result.stderr)));
    }
    Ok(())
}

/// The section header fields the build scripts use (`Elf64_Shdr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name from the section-header string table.
    pub name: String,
    /// `sh_type` (`SHT_*`).
    pub kind: u32,
    /// `sh_flags` (`SHF_*`).
    pub flags: u64,
    /// `sh_addr`: the address the section is loaded at.
    pub addr: u64,
    /// `sh_offset`: where the section's bytes start in the file.
    pub offset: u64,
    /// `sh_size` in bytes.
    pub size: u64,
    /// `sh_link`: for a symbol table, the index of its string table.
    pub link: u32,
}

impl Section {
    /// The section's bytes in `elf`, or `None` if they lie outside the file
    /// (or the section occupies no file space and `size` is not zero).
    pub fn data<'a>(&self, elf: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(usize::try_from(self.size).ok()?)?;
        elf.get(start..end)
    }
}

/// Reads the little-endian unsigned integer of `n` bytes (at most 8) at `off`.
pub fn read_le(b: &[u8], off: usize, n: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(n)?)?;
    let mut word = [0u8; 8];
    word.get_mut(..n)?.copy_from_slice(bytes);
    Some(u64::from_le_bytes(word))
}

/// The blobs are little-endian ELF64 files.
const LE: LittleEndian = LittleEndian;
type Header = FileHeader64<LittleEndian>;

fn bad(what: &str) -> String {
    format!("not a well-formed ELF64 file ({what})")
}

/// The file header of the little-endian ELF64 file `elf`.
fn header(elf: &[u8]) -> Result<&Header, String> {
    let h = Header::parse(elf).map_err(|e| bad(&e.to_string()))?;
    if h.is_big_endian() {
        return Err(bad("big-endian"));
    }
    Ok(h)
}

/// The section headers of the little-endian ELF64 file `elf`, in file order.
pub fn sections(elf: &[u8]) -> Result<Vec<Section>, String> {
    let h = header(elf)?;
    let table = h.sections(LE, elf).map_err(|e| bad(&e.to_string()))?;
    table
        .iter()
        .map(|s| {
            let name = table.section_name(LE, s).map_err(|e| bad(&e.to_string()))?;
            Ok(Section {
                name: String::from_utf8_lossy(name).into_owned(),
                kind: s.sh_type(LE).0,
                flags: s.sh_flags(LE).0,
                addr: s.sh_addr(LE),
                offset: s.sh_offset(LE),
                size: s.sh_size(LE),
                link: s.sh_link(LE),
            })
        })
        .collect()
}

/// The value of the defined symbol `name` in `.symtab`, if there is one.
pub fn symbol(elf: &[u8], name: &str) -> Result<Option<u64>, String> {
    let h = header(elf)?;
    let table = h.sections(LE, elf).map_err(|e| bad(&e.to_string()))?;
    let symbols = table.symbols(LE, elf, elf::SHT_SYMTAB).map_err(|e| bad(&e.to_string()))?;
    Ok(symbols
        .iter()
        .find(|s| !s.is_undefined(LE) && symbols.symbol_name(LE, s).is_ok_and(|n| n == name.as_bytes()))
        .map(|s| s.st_value(LE)))
}

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// `p_flags` (`PF_*`).
    pub flags: u32,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

/// The `PT_LOAD` segments of `elf`, in file order.
pub fn loads(elf: &[u8]) -> Result<Vec<Load>, String> {
    let h = header(elf)?;
    let phdrs = h.program_headers(LE, elf).map_err(|e| bad(&e.to_string()))?;
    Ok(phdrs
        .iter()
        .filter(|p| p.p_type(LE) == elf::PT_LOAD)
        .map(|p| Load { flags: p.p_flags(LE).0, vaddr: p.p_vaddr(LE), memsz: p.p_memsz(LE) })
        .collect())
}

/// The `(r_offset, r_type)` of each entry of `section`, a `SHT_RELA` table of `elf`.
pub fn relas(elf: &[u8], section: &Section) -> Result<Vec<(u64, u32)>, String> {
    let bytes = section.data(elf).ok_or_else(|| bad("relocation table outside the file"))?;
    let n = bytes.len() / std::mem::size_of::<Rela64<LittleEndian>>();
    let (entries, _) = object::pod::slice_from_bytes::<Rela64<LittleEndian>>(bytes, n)
        .map_err(|()| bad("relocation table"))?;
    Ok(entries.iter().map(|r| (r.r_offset(LE), r.r_type(LE, false).0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header plus two section headers: the null section and
    /// `.shstrtab`.
    fn tiny_elf() -> Vec<u8> {
        let strtab = b"\0.shstrtab\0";
        let shoff = 64 + strtab.len();
        let mut b = vec![0u8; shoff + 2 * 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // ELFDATA2LSB
        b[6] = 1; // EV_CURRENT
        b[64..64 + strtab.len()].copy_from_slice(strtab);
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let sh = shoff + 64;
        b[sh..sh + 4].copy_from_slice(&1u32.to_le_bytes());
        b[sh + 4..sh + 8].copy_from_slice(&3u32.to_le_bytes());
        b[sh + 0x18..sh + 0x20].copy_from_slice(&64u64.to_le_bytes());
        b[sh + 0x20..sh + 0x28].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
        b
    }

    #[test]
    fn reads_section_headers() {
        let elf = tiny_elf();
        let s = sections(&elf).expect("well-formed");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "");
        assert_eq!(s[1].name, ".shstrtab");
        assert_eq!(s[1].kind, 3);
        assert_eq!(s[1].data(&elf), Some(&b"\0.shstrtab\0"[..]));
    }

    #[test]
    fn rejects_truncated_files() {
        let elf = tiny_elf();
        for len in [0, 0x30, 100, elf.len() - 1] {
            assert!(sections(&elf[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn reads_symbols_segments_and_relocations_of_a_real_file() {
        // This test binary: a PIE with a symbol table and `.rela.dyn`.
        let exe = std::fs::read(std::env::current_exe().expect("current exe")).expect("read exe");
        let main = symbol(&exe, "main").expect("parses").expect("main is defined");
        assert_ne!(main, 0);
        assert_eq!(symbol(&exe, "no such symbol, surely").expect("parses"), None);
        let loads = loads(&exe).expect("parses");
        assert!(loads.iter().any(|l| l.flags & 1 != 0 && (l.vaddr..l.vaddr + l.memsz).contains(&main)));
        let secs = sections(&exe).expect("parses");
        let rela = secs.iter().find(|s| s.name == ".rela.dyn").expect(".rela.dyn");
        let entries = relas(&exe, rela).expect("parses");
        assert_eq!(entries.len() as u64, rela.size / 24);
        assert!(entries.iter().any(|&(_, t)| t == 8), "R_X86_64_RELATIVE entries");
    }

    #[test]
    fn read_le_bounds() {
        assert_eq!(read_le(&[1, 2, 3], 1, 2), Some(0x0302));
        assert_eq!(read_le(&[1, 2, 3], 2, 2), None);
        assert_eq!(read_le(&[1, 2, 3], usize::MAX, 2), None);
    }
}
