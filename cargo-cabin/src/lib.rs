//! `cargo-cabin`: the library half of the `cargo cabin` subcommand.
//!
//! `cargo cabin build` runs `cargo build` for `x86_64-unknown-linux-gnu` with `+crt-static`, reads
//! the executables from cargo's JSON messages, refuses dynamically linked ones with the fix, and
//! writes `<bin>.cabin` beside each through the same pipeline as `cabinc build`. `cargo cabin run`
//! runs one confined through `cabinc run`. Settings come from `[package.metadata.cabin]`.
//! This crate never changes the package's sources or Cargo.toml.

pub mod messages;
pub mod settings;

use std::path::Path;

use cabin_image::elf::{ElfError, ElfFile};
use cabin_rewriter::pipeline::{build_image, BuildOptions};
use thiserror::Error;

/// The target every image is built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Why an executable could not be turned into an image.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The executable could not be read or the image written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Dynamically linked.
    #[error("{0} is dynamically linked, so it cannot become a Cabin image; help: build it statically: `cargo cabin build` already sets RUSTFLAGS='-C target-feature=+crt-static' for {TARGET}, so something overrides it (CARGO_ENCODED_RUSTFLAGS, a [target] rustflags in .cargo/config.toml, or a -C prefer-dynamic), or a dependency links a C library dynamically (link it statically, e.g. the crate's `vendored`/`static` feature); the glibc static libraries come from `apt-get install libc6-dev`")]
    Dynamic(String),
    /// Not a usable executable.
    #[error("{0}: {1}")]
    Elf(String, ElfError),
    /// The rewriter refused it.
    #[error("cannot build an image of {0}: {1}")]
    Build(String, cabin_rewriter::pipeline::BuildError),
}

/// Checks that `bytes` is a static executable that `cabinc build` can take.
pub fn check_static(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    match ElfFile::parse(bytes) {
        Ok(_) => Ok(()),
        Err(ElfError::Dynamic) => Err(ImageError::Dynamic(path.display().to_string())),
        Err(e) => Err(ImageError::Elf(path.display().to_string(), e)),
    }
}

/// The image path for an executable: `<exe>.cabin` beside it.
pub fn image_path(exe: &Path) -> std::path::PathBuf {
    let mut s = exe.as_os_str().to_owned();
    s.push(".cabin");
    s.into()
}

/// Rewrites `exe` into `<exe>.cabin`; returns the image path and the number of rewritten sites.
pub fn write_image(exe: &Path, allow_readable_code: bool) -> Result<(std::path::PathBuf, usize), ImageError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ImageError::Io { path, source }
    };
    let bytes = std::fs::read(exe).map_err(io(exe))?;
    check_static(exe, &bytes)?;
    let out =
        build_image(&bytes, &BuildOptions { allow_readable_code, ..BuildOptions::default() }, &mut |_| {})
            .map_err(|e| ImageError::Build(exe.display().to_string(), e))?;
    let dest = image_path(exe);
    let tmp = dest.with_extension(format!("cabin.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out.image)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &dest)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&dest)(e));
    }
    Ok((dest, out.summary.rewritten))
}

/// RUSTFLAGS with `+crt-static` added (kept when already there).
pub fn static_rustflags(existing: Option<&str>) -> String {
    let flag = "-C target-feature=+crt-static";
    match existing.map(str::trim).filter(|s| !s.is_empty()) {
        Some(e) if e.contains("+crt-static") => e.to_string(),
        Some(e) => format!("{e} {flag}"),
        None => flag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustflags() {
        assert_eq!(static_rustflags(None), "-C target-feature=+crt-static");
        assert_eq!(static_rustflags(Some("-g")), "-g -C target-feature=+crt-static");
        assert_eq!(static_rustflags(Some("-Ctarget-feature=+crt-static")), "-Ctarget-feature=+crt-static");
    }

    #[test]
    fn image_paths() {
        assert_eq!(image_path(Path::new("/t/debug/app")), Path::new("/t/debug/app.cabin"));
    }

    #[test]
    fn refuses_dynamic_executables_with_the_fix() {
        // Any dynamically linked system binary will do; skip where none is found.
        let Some(p) = ["/bin/ls", "/usr/bin/env", "/bin/sh"].iter().map(Path::new).find(|p| {
            std::fs::read(p).map(|b| matches!(ElfFile::parse(&b), Err(ElfError::Dynamic))).unwrap_or(false)
        }) else {
            cabin_tests::not_run("dynamic binary", "no dynamically linked system binary found");
            return;
        };
        let bytes = std::fs::read(p).expect("read");
        let e = check_static(p, &bytes).expect_err("dynamic");
        let msg = e.to_string();
        assert!(
            msg.contains("dynamically linked") && msg.contains("help:") && msg.contains("crt-static"),
            "{msg}"
        );
    }
}
