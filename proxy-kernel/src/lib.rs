//! The ring-0 proxy-kernel of a Cabin domain.
//!
//! The KVM backend (`backends/kvm`, crate `cabin-kvm`) copies this kernel, built as a flat
//! blob by `backends/kvm/build.rs`, into every guest and points all 256 IDT
//! vectors and `MSR_LSTAR` at it. The program and its libos run in ring 3;
//! the proxy-kernel runs only when they trap, which is never on the hot path
//! (system calls travel over the shared ring without leaving ring 3). It
//! keeps no state: the monitor builds the page tables, descriptor tables and
//! stacks before boot, and this kernel only
//!
//! - forwards a stray `syscall` (the slow-path gate) to the monitor by
//!   hypercall and returns to the instruction after it, both where `syscall`
//!   enters ring 0 normally and where, as on the nested KVM this project is
//!   tested on, it arrives as a page fault at the `LSTAR` address;
//! - reports every other exception to the monitor, which ends the program;
//! - on SEV-SNP (VMPL1), hands every `#VC` to VMPL0 as a request in the
//!   vCPU's calling area ([`vc`]; KVM never raises `#VC`, so the same blob
//!   serves both backends and the KVM path is unchanged).
//!
//! It must never contain an instruction that KVM's ring-0 emulator cannot
//! run here (`xsave`, `xgetbv`, `xsetbv`, `rdtscp`, `rdpkru`, SSE/AVX): it is
//! compiled soft-float and the build disassembles it to prove it (the `#VC`
//! handler's `wrmsr`, `VMGEXIT` and CR3 reload run only on SNP, where ring
//! 0 is not emulated). The pure logic ([`trap`], [`header`], [`vc`])
//! builds and unit-tests on the host, where the monitor also uses it to
//! read the blob and describe faults (and the SNP backend to serve `#VC`).
#![cfg_attr(not(test), no_std)]

pub mod header;
pub mod trap;
pub mod vc;

#[cfg(target_os = "none")]
mod arch;
