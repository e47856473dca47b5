//! Cabin's SEV-SNP backend: the confined program runs at VMPL1 of an AMD
//! SEV-SNP confidential VM under the proxy-kernel, its code execute-only
//! through the RMP, while the guest kernel and `cabinc`'s monitor run at
//! VMPL0 and serve its system calls over the same ring as the other
//! backends.
//!
//! The domain is the KVM backend's, built by the same code
//! ([`cabin_kvm::domain::build`], [`cabin_kvm::vcpu::cpu_state`]); this crate
//! adds what differs and tests it on any host:
//!
//! - [`rmp`]: the `RMPADJUST` operand encoding and a small RMP model;
//! - [`plan`]: VMPL1's permissions on every page of a domain;
//! - [`launch`]: the launch digest of a built domain (= `cabinc measure`);
//! - [`vmsa`]: the VMPL1 save area from the KVM backend's vCPU state;
//! - [`ghcb`]: the GHCB MSR protocol values and `VMGEXIT` exit codes;
//! - [`vc`]: VMPL0's side of the proxy-kernel's `#VC` requests (decode,
//!   serve through the KVM backend's exit decoder and ring gate);
//! - [`abi`]: the ioctl ABI of the guest kernel module (`module/`);
//! - [`domain`]: building, relocating to the module's pages;
//! - [`attest`]: attestation reports: verification (ARK → ASK → VCEK, the
//!   report's signature, the image binding) and requests (`/dev/sev-guest`).
//!
//! Who calls it: `cabinc run --backend snp` ([`SnpDomain`]) and `cabinc
//! attest`. What it must never do: give VMPL1 a page that is writable and
//! executable, or any permission on VMPL0's pages; trust a report before
//! its chain and signature are checked. docs/snp.md is the bring-up guide.

pub mod abi;
pub mod attest;
mod backend;
pub mod domain;
pub mod ghcb;
pub mod launch;
pub mod plan;
pub mod rmp;
pub mod vc;
pub mod vmsa;

pub use backend::{available, available_in, SnpDomain, Unavailable};

/// Runs `image` confined at VMPL1 (a session over [`SnpDomain`]).
pub fn run(
    image: &[u8],
    cfg: &cabin_monitor::config::RunConfig,
) -> Result<cabin_monitor::config::RunOutcome, cabin_monitor::config::RunError> {
    cabin_monitor::session::run::<SnpDomain>(image, cfg)
}
