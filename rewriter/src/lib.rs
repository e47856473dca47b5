//! ELF analysis and rewriting for Cabin.
//!
//! `cabinc build` calls [`pipeline::build_image`], which runs the stages in
//! order and keeps deciding and doing apart:
//!
//! 1. [`cabin_image::elf`] validates the input;
//! 2. [`analysis`] disassembles it and produces a [`plan::PatchPlan`]: every
//!    system-call site with its tactic and reason, forbidden instructions and
//!    code-as-data accesses — plain data that can be printed and tested;
//! 3. [`trampoline`] turns the plan into trampoline code and code patches;
//! 4. [`emit`] links the [`libos_blob`] and writes the image with its notes
//!    and measurement.
//!
//! Nothing here executes the input. Every input is untrusted: malformed
//! bytes give errors, never panics.

pub mod analysis;
pub mod cache;
pub mod emit;
pub mod libos_blob;
pub mod pipeline;
pub mod plan;
pub mod trampoline;
pub mod verified;
