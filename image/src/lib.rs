//! What a Cabin image is, as data: ELF reading and validation shared by the
//! rewriter (for inputs) and the monitor (for images), the Cabin notes, the
//! domain layout of an image's pages, and the SEV-SNP launch measurement.
//!
//! Everything here treats its input as hostile: files may be truncated,
//! malformed or crafted. No function panics on input; all return errors.

pub mod elf;
pub mod image;
pub mod measure;
