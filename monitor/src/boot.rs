//! The boot page ([`cabin_abi::boot::BootInfo`]) as the monitor reads and
//! writes it, the same on every backend: through the monitor's mapping of
//! the domain's [`RegionKind::BootPage`] region.
//!
//! The monitor writes its own words before the program starts
//! ([`BootPage::set_spin_ns`], [`BootPage::set_check_local`]) and reads what
//! the libos left once the program has ended ([`BootPage::end_words`]). The
//! program can write the page at any time: every access is a volatile copy
//! of one field, and nothing read back is trusted ([`EndWords`]).

use std::marker::PhantomData;
use std::ptr::addr_of_mut;

use cabin_abi::boot::{BootInfo, EndWords};
use cabin_abi::syscalls::CallSet;

use crate::config::RunError;
use crate::memory::{GuestMemory, RegionKind};

/// The boot page of one domain, through the monitor's mapping.
#[derive(Debug)]
pub struct BootPage<'a> {
    info: *mut BootInfo,
    _memory: PhantomData<&'a GuestMemory>,
}

impl<'a> BootPage<'a> {
    /// The boot page of `mem` (its one [`RegionKind::BootPage`] region).
    pub fn of(mem: &'a GuestMemory) -> Result<BootPage<'a>, RunError> {
        let region = mem
            .regions()
            .iter()
            .find(|r| r.kind == RegionKind::BootPage)
            .filter(|r| r.len >= std::mem::size_of::<BootInfo>() as u64 && r.host.align_offset(8) == 0)
            .ok_or_else(|| RunError::Layout("the domain has no boot page".into()))?;
        Ok(BootPage { info: region.host.cast(), _memory: PhantomData })
    }

    /// How long the libos may spin for a completion ([`BootInfo::spin_ns`]).
    pub fn set_spin_ns(&self, ns: u64) {
        // SAFETY: `info` is the boot page in a mapping that outlives `self`
        // (the GuestMemory's regions stay mapped while it lives), aligned and
        // large enough (checked in `of`); a volatile store of one field.
        unsafe { addr_of_mut!((*self.info).spin_ns).write_volatile(ns) };
    }

    /// The locally served calls the libos must have the monitor decide
    /// ([`BootInfo::check_local`]).
    pub fn set_check_local(&self, set: &CallSet) {
        // SAFETY: as in `set_spin_ns`.
        unsafe { addr_of_mut!((*self.info).check_local).write_volatile(*set) };
    }

    /// The guest TSC rate the libos may use as a clock ([`BootInfo::tsc_khz`]).
    pub fn set_tsc_khz(&self, khz: u64) {
        // SAFETY: as in `set_spin_ns`.
        unsafe { addr_of_mut!((*self.info).tsc_khz).write_volatile(khz) };
    }

    /// The libos's trap entry, as it published it (KVM), if it is a
    /// plausible user address. Untrusted: it only redirects the program's
    /// own ring-3 control flow.
    pub fn kvm_trap_entry(&self) -> Option<u64> {
        // SAFETY: as in `set_spin_ns`; a volatile load of one field.
        let v = unsafe { addr_of_mut!((*self.info).kvm_trap_entry).read_volatile() };
        (v != 0 && v < 0x0000_8000_0000_0000).then_some(v)
    }

    /// What the libos left for the monitor (untrusted, see [`EndWords`]).
    pub fn end_words(&self) -> EndWords {
        let b = self.info;
        // SAFETY: as in `set_spin_ns`; volatile loads of plain integers the
        // program may have written (any value is a valid integer).
        unsafe {
            EndWords {
                fault_signo: addr_of_mut!((*b).fault_signo).read_volatile(),
                fault_addr: addr_of_mut!((*b).fault_addr).read_volatile(),
                fault_rip: addr_of_mut!((*b).fault_rip).read_volatile(),
                fault_code: addr_of_mut!((*b).fault_code).read_volatile(),
                trapped: addr_of_mut!((*b).trapped).read_volatile(),
                abort: addr_of_mut!((*b).abort).read_volatile(),
                memory_request: addr_of_mut!((*b).memory_request).read_volatile(),
                memory_used: addr_of_mut!((*b).memory_used).read_volatile(),
                local_counts: addr_of_mut!((*b).local_counts).read_volatile(),
            }
        }
    }
}
