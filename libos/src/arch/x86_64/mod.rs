//! x86-64 specifics: the raw system-call instruction ([`sys`]), the FP
//! state instructions the signal paths use ([`fpu`]) and the assembly entry
//! points of the image (`entry`, built for the image target only because it
//! refers to linker-script symbols; host builds get inert stand-ins).

#[cfg(target_os = "none")]
pub(crate) mod entry;
pub mod fpu;
pub mod sys;

/// Host builds: the image's entry points do not exist.
#[cfg(not(target_os = "none"))]
pub(crate) mod entry {
    /// No libos code on the host.
    pub fn libos_text() -> [u64; 2] {
        [0, 0]
    }
    /// No signal entry on the host.
    pub fn kvm_signal_entry() -> u64 {
        0
    }
    /// No exit window on the host.
    pub fn in_exit_window(_rip: u64) -> bool {
        false
    }
    /// No resume window on the host.
    pub fn resume_window_ctx(_rip: u64, _rsp: u64) -> Option<u64> {
        None
    }
    /// No kernel handlers on the host (never installed there).
    ///
    /// # Safety
    ///
    /// Inert.
    pub unsafe extern "C" fn cabin_kernel_sigsys() {}
    /// As [`cabin_kernel_sigsys`].
    ///
    /// # Safety
    ///
    /// Inert.
    pub unsafe extern "C" fn cabin_kernel_fault() {}
    /// As [`cabin_kernel_sigsys`].
    ///
    /// # Safety
    ///
    /// Inert.
    pub unsafe extern "C" fn cabin_kernel_async() {}
}
