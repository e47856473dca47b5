//! Attacks on the boundary, in one place, so the next attacker finds them.
//!
//! Each module is one class of attack a program that owns its whole domain
//! (the libos, the ring, any ring-3 instruction) can try. Every test runs the
//! attack confined, on both backends where the attack applies
//! (`on_both_backends!`; the KVM variants only where /dev/kvm is usable, and
//! they say `KVM test NOT RUN` otherwise), and checks that the run ends the
//! way docs/threat-model.md says: the program refused or killed
//! (128 + signal, or 137 for a protocol violation), with its records
//! written, and the monitor intact.
//!
//! The programs are C files in `monitor/tests/programs/attack_*.c`, compiled
//! with `gcc -static` and rewritten into images in-process
//! (`common::image`).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod events;
mod fake_failure;
mod file_grant;
mod fork_frames;
mod limits;
mod locks;
mod memprot;
mod network;
mod pathprobe;
mod paths_nested;
mod policy_local;
mod process_child;
mod procfs;
mod ring0;
mod scatter;
mod service_input;
mod setid;
mod shared;
mod sigqueue;
mod sigreturn;
mod sockets;
mod threads;
mod vcpu_threads;
mod views;
mod xonly_sigreturn;
