//! Helpers shared by the monitor's integration tests: the C programs in
//! `tests/programs/`, compiled statically with gcc and rewritten into Cabin
//! images in-process. Each test file uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `monitor/tests/programs`.
pub fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// Compiles `tests/programs/NAME.c` into `DIR/NAME`; `None` when gcc is
/// missing (said on stderr as `SKIPPED (NOT RUN)`).
pub fn compile(name: &str, dir: &Path) -> Option<PathBuf> {
    let exe = dir.join(name);
    cabin_tests::compile_static_c("gcc", "gcc", &programs().join(format!("{name}.c")), &exe)?;
    Some(exe)
}

/// Rewrites the static executable `input` into a Cabin image (default options).
pub fn rewrite(input: &[u8]) -> Vec<u8> {
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    cabin_rewriter::pipeline::build_image(input, &opts, &mut |_| {}).expect("build image").image
}

/// Compiles `tests/programs/NAME.c` and builds its image; `None` when gcc is missing.
pub fn image(name: &str, dir: &Path) -> Option<Vec<u8>> {
    let exe = compile(name, dir)?;
    Some(rewrite(&std::fs::read(&exe).expect("read compiled program")))
}
