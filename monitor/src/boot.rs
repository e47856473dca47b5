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

use std::sync::atomic::{AtomicU64, Ordering};

use cabin_abi::boot::{BootInfo, EndWords, SigMailbox, SigPosted};
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

    /// Where the libos takes signals in ring 3 (KVM), and its code range,
    /// as it published them: `Some((entry, [start, end)))` when the entry
    /// is a plausible user address. Untrusted: a wrong value only misdirects
    /// the program's own ring-3 control flow.
    pub fn signal_entry(&self) -> Option<(u64, [u64; 2])> {
        // SAFETY: as in `set_spin_ns`; volatile loads of plain integers.
        let (entry, text) = unsafe {
            (
                addr_of_mut!((*self.info).kvm_signal_entry).read_volatile(),
                addr_of_mut!((*self.info).libos_text).read_volatile(),
            )
        };
        (entry != 0 && entry < 0x0000_8000_0000_0000).then_some((entry, text))
    }

    /// The parent pid the backend wrote for the program (read before the
    /// program runs: afterwards the program could have changed it).
    pub fn ppid(&self) -> u32 {
        // SAFETY: as in `set_spin_ns`; a volatile load of one aligned u32.
        unsafe { addr_of_mut!((*self.info).ppid).read_volatile() }
    }

    /// The signals the program ignores, as its libos published them
    /// (untrusted: an `execve` hands them to the next image).
    pub fn sig_ignored(&self) -> u64 {
        // SAFETY: as in `set_spin_ns`; a volatile load of one word.
        unsafe { addr_of_mut!((*self.info).sig_ignored).read_volatile() }
    }

    /// Hands the next image the signals to ignore from its start (written
    /// before it runs).
    pub fn set_sig_ignored(&self, set: u64) {
        // SAFETY: as in `set_spin_ns`; a volatile store of one word.
        unsafe { addr_of_mut!((*self.info).sig_ignored).write_volatile(set) }
    }

    /// Whether the program has a handler for `sig` that it does not block
    /// (as the libos published it; untrusted).
    pub fn handles(&self, sig: u64) -> bool {
        // SAFETY: as in `set_spin_ns`; a volatile load of one word.
        let h = unsafe { addr_of_mut!((*self.info).sig_handled).read_volatile() };
        (1..=64).contains(&sig) && h & (1 << (sig - 1)) != 0
    }

    /// Takes the mailbox for one redirect (`sig_mailbox_busy` 0 → 1);
    /// `false` while another vCPU's redirect has not been read by the libos
    /// yet (or the program scribbled on the word).
    pub fn try_take_mailbox(&self) -> bool {
        // SAFETY: as in `set_spin_ns`; an atomic view of an aligned word.
        let w = unsafe { &*addr_of_mut!((*self.info).sig_mailbox_busy).cast::<AtomicU64>() };
        w.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Gives the mailbox back without a redirect (the redirect failed).
    pub fn release_mailbox(&self) {
        // SAFETY: as in `set_spin_ns`; an atomic view of an aligned word.
        let w = unsafe { &*addr_of_mut!((*self.info).sig_mailbox_busy).cast::<AtomicU64>() };
        w.store(0, Ordering::SeqCst);
    }

    /// Tells the libos where a vCPU sent to its signal entry was stopped
    /// (only while holding the mailbox: [`BootPage::try_take_mailbox`]).
    pub fn set_mailbox(&self, m: &SigMailbox) {
        // SAFETY: as in `set_spin_ns`.
        unsafe { addr_of_mut!((*self.info).sig_mailbox).write_volatile(*m) };
    }

    /// Whether the attention word is set (a posted signal not yet taken).
    pub fn attention(&self) -> bool {
        // SAFETY: as in `set_spin_ns`; an atomic view of an aligned word.
        let w = unsafe { &*addr_of_mut!((*self.info).sig_attention).cast::<AtomicU64>() };
        w.load(Ordering::SeqCst) != 0
    }

    /// The posting side of signals: a [`SignalBox`] that other threads may use.
    pub fn signal_box(&self) -> SignalBox {
        SignalBox { info: self.info }
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

/// Posts signals into a domain's boot page (docs/signals.md): the words of
/// `siginfo`, then the bit in `sig_incoming`, then the attention word. The
/// libos takes them with atomic swaps; the program can scribble on all of
/// it, which only confuses its own signals.
#[derive(Debug, Clone, Copy)]
pub struct SignalBox {
    info: *mut BootInfo,
}

// SAFETY: only atomic and volatile accesses to the boot page, which stays
// mapped while the domain lives; the session keeps every user of a
// SignalBox inside the domain's lifetime (scoped threads).
unsafe impl Send for SignalBox {}
// SAFETY: as above.
unsafe impl Sync for SignalBox {}

impl SignalBox {
    /// Posts signal `sig` (1..=64) with `words`.
    pub fn post(&self, sig: u32, words: SigPosted) {
        if !(1..=64).contains(&sig) {
            return;
        }
        let b = self.info;
        // SAFETY: see the type; volatile store of one slot, then atomic
        // views of two aligned words.
        unsafe {
            addr_of_mut!((*b).sig_posted[(sig - 1) as usize]).write_volatile(words);
            (*addr_of_mut!((*b).sig_incoming).cast::<AtomicU64>()).fetch_or(1 << (sig - 1), Ordering::SeqCst);
            (*addr_of_mut!((*b).sig_attention).cast::<AtomicU64>()).store(1, Ordering::SeqCst);
        }
    }

    /// The libos's `sig_ignored` word (untrusted: a lie only changes how
    /// the program's own children are reaped).
    pub fn ignored(&self) -> u64 {
        // SAFETY: as in `post`; a volatile read of an aligned word.
        unsafe { addr_of_mut!((*self.info).sig_ignored).read_volatile() }
    }

    /// Writes the `ppid` word `getppid` answers from (a re-parented orphan).
    pub fn set_ppid(&self, ppid: u32) {
        // SAFETY: as in `post`; a volatile store of an aligned word.
        unsafe { addr_of_mut!((*self.info).ppid).write_volatile(ppid) };
    }

    /// Whether the attention word is set: a posted or pending signal some
    /// thread of the program can still take.
    pub fn attention(&self) -> bool {
        // SAFETY: as in `post`; an atomic view of an aligned word.
        let w = unsafe { &*addr_of_mut!((*self.info).sig_attention).cast::<AtomicU64>() };
        w.load(Ordering::SeqCst) != 0
    }

    /// Drops the signals of `mask` (bit `n - 1` for signal `n`) posted
    /// and not taken yet (`SIGCONT` discards pending stop signals, and the
    /// other way round).
    pub fn discard(&self, mask: u64) {
        // SAFETY: as in `post`; an atomic view of an aligned word.
        unsafe {
            (*addr_of_mut!((*self.info).sig_incoming).cast::<AtomicU64>()).fetch_and(!mask, Ordering::SeqCst)
        };
    }

    /// Whether signal `sig` is still waiting for the libos to take it.
    pub fn waiting(&self, sig: u32) -> bool {
        if !(1..=64).contains(&sig) {
            return false;
        }
        // SAFETY: as in `post`.
        let incoming =
            unsafe { (*addr_of_mut!((*self.info).sig_incoming).cast::<AtomicU64>()).load(Ordering::SeqCst) };
        incoming & (1 << (sig - 1)) != 0
    }
}
