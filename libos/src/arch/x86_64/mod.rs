//! x86-64 specifics: the raw system-call instruction ([`sys`]) and the two
//! assembly entry points of the image (`entry`, built for the image target
//! only because it refers to linker-script symbols).

#[cfg(target_os = "none")]
mod entry;
pub mod sys;
