//! Fuzz target: ELF validation and rewriter analysis on arbitrary bytes.
//!
//! `ElfFile::parse` must reject every malformed input with an error, never
//! panic, hang or read out of bounds; whatever it accepts must be safe to
//! hand to the rewriter's analysis, which must likewise only return errors.
//!
//! Run: `cargo +nightly fuzz run elf_parse` from the workspace root (seed
//! the corpus with `samples/build.sh fuzz/corpus/elf_parse`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(elf) = cabin_image::elf::ElfFile::parse(data) {
        let _ = cabin_rewriter::analysis::analyze(&elf);
    }
});
