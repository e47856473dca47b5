//! The shared-memory ring between the libos (inside the domain) and the
//! monitor (outside): the layout, the entry formats and the index rules.
//!
//! One ring per domain, in memory both sides map. It has a submission queue
//! (SQ, written by the libos, read by the monitor) and a completion queue (CQ,
//! written by the monitor, read by the libos), each [`RING_ENTRIES`] fixed-size
//! slots. Indices are free-running `u32` counters; a slot is `index % entries`.
//!
//! Publishing (version 2): every slot carries its own sequence number in its
//! `tag`, `index + 1` (wrapping), stored last (SeqCst) after the rest of the
//! slot. A consumer polls the slot at its head for that tag, copies the slot
//! out once and advances its head. So a call
//! crosses between the cores in two cache-line transfers (the submission
//! slot, then the completion slot) instead of the index line plus the slot
//! each way, which is what a round trip costs most on a multi-core machine
//! (docs/ring.md has the measurements). The producers still advance their
//! tails (`sq_tail`, `cq_tail`) after publishing, on their own cache lines:
//! the monitor reads `sq_tail` only before it goes to sleep, to check the
//! libos against the protocol; the KVM gate, which submits on the stopped
//! program's behalf, takes its slot index from it.
//!
//! Sleeping: each queue has a *doorbell* word (a futex, shared between
//! processes, so never `FUTEX_PRIVATE_FLAG`) and a flag saying the consumer
//! may be asleep. The producer publishes the slot and, only when the flag is
//! set, increments the doorbell and wakes it. The consumer reads the
//! doorbell, sets the flag, re-checks the slot and only then waits on the
//! doorbell with the value it read. The publishing store, the flag store and
//! both loads are SeqCst, so one side always sees the other and no wake-up
//! is lost. See docs/ring.md.
//!
//! Back-pressure: a producer may only reuse a slot once the consumer's head
//! has passed it. Heads are published on the consumer's own line and read by
//! the producer only when its cached copy says the queue may be full.
//!
//! Site hints: after the two queues, one `u64` per submission slot
//! ([`SITE_OFFSET`]) where the libos leaves, before publishing slot `i`, a
//! hint of where the program made the call: the trampoline's return address
//! for a rewritten site, or the address of the `syscall` instruction for a
//! trapped one (0: unknown). The monitor reads a hint only when it has a use
//! for it (a denial message, a trace record) and only ever shows it: it is as
//! untrusted as everything else here. It is kept out of [`Submission`] so the
//! slot stays one cache line.
//!
//! Hostility: the monitor treats everything here as written by an adversary.
//! [`pending`] refuses index pairs that cannot be valid; the monitor copies each
//! slot out exactly once with [`RingPtr::read_submission`].

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

/// Magic value of [`RingHeader::magic`]: "CABRING1".
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"CABRING1");
/// Version of this layout.
pub const RING_VERSION: u32 = 2;
/// Slots in each queue (a power of two).
pub const RING_ENTRIES: u32 = 64;

/// Requests a libos thread may leave on its ring without having consumed
/// their completions (a thread start, a thread's exit, a `close` whose
/// answer the libos knows: docs/ring.md, "Posted requests"). The monitor
/// answers each ring's requests in order, so the completion of the
/// thread's next request comes after theirs; whoever waits for a later
/// completion consumes the earlier ones with it (the libos's next call,
/// the KVM gate's trapped call).
pub const MAX_POSTED: u32 = 8;

/// [`RingHeader::state`]: the ring is in service.
pub const STATE_RUNNING: u32 = 0;
/// [`RingHeader::state`]: the monitor has stopped serving (protocol violation
/// or shutdown); the libos must not wait for completions any more.
pub const STATE_DEAD: u32 = 1;

/// [`Submission::flags`]: the call arrived through the SIGSYS/trap slow path.
pub const SUB_TRAPPED: u32 = 1 << 0;

/// [`Submission::flags`]: check only. The call is one the libos serves
/// inside the domain ([`crate::syscalls::Serve::Local`]) and the policy does
/// not plainly allow ([`crate::boot::BootInfo::check_local`]): the monitor
/// decides it as it decides a forwarded call (deny, kill, complain, trace,
/// audit) but does not perform it. The completion is 0 when the call is
/// allowed (the libos then serves it itself) or `-errno` when it is refused;
/// a kill ends the program instead of completing.
pub const SUB_CHECK: u32 = 1 << 1;

/// [`Submission::flags`]: a thread submission of the libos
/// ([`crate::thread`]): `nr` is `clone` (a [`crate::thread::ThreadStart`]
/// at `args[0]`, its size in `args[1]`) or `exit` (this ring's thread
/// ends). Without this bit, `clone` and `exit` are ordinary forwarded
/// calls.
pub const SUB_THREAD: u32 = 1 << 2;

/// [`Submission::flags`]: a child process (issue 14, docs/processes.md):
/// `nr` is `clone`, `args[0]` the libos address where the child starts,
/// `args[1]` the address of the child's start frame (the program's
/// registers; the child's `rsp`), `args[2]` the clone flags. The monitor
/// makes the child from a copy of the domain's memory; the completion is
/// the child's pid or `-errno`. Without this bit, `clone` is an ordinary
/// forwarded call.
pub const SUB_FORK: u32 = 1 << 3;

/// One request: a system call as the program made it. 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submission {
    /// The slot's sequence number, `index + 1` (wrapping), stored last: the
    /// slot is published when it reads so ([`RingPtr::publish_submission`]).
    pub tag: u32,
    /// `SUB_*` bits.
    pub flags: u32,
    /// Linux x86-64 system-call number.
    pub nr: u64,
    /// Arguments in `rdi, rsi, rdx, r10, r8, r9` order. Pointers are the
    /// program's virtual addresses.
    pub args: [u64; 6],
}

/// One reply. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The slot's sequence number, `index + 1` (wrapping), stored last. As
    /// each submission gets exactly one completion, in order, it equals the
    /// [`Submission::tag`] it answers.
    pub tag: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// The value for `rax`: a result, or a negative errno.
    pub result: i64,
}

/// The ring's header, at offset 0 of the ring area. Each side's indices sit
/// on their own 64-byte line so the two sides do not share cache lines.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    /// [`RING_MAGIC`].
    pub magic: u64,
    /// [`RING_VERSION`].
    pub version: u32,
    /// Slots per queue ([`RING_ENTRIES`]).
    pub entries: u32,
    /// `STATE_*`.
    pub state: AtomicU32,
    _pad0: [u32; 11],
    /// SQ consumer (monitor) line: next slot the monitor reads.
    pub sq_head: AtomicU32,
    /// Non-zero while the monitor may be asleep on [`Self::sq_doorbell`].
    pub sq_sleeping: AtomicU32,
    _pad1: [u32; 14],
    /// SQ producer (libos) line: next slot the libos writes.
    pub sq_tail: AtomicU32,
    /// Futex word the monitor sleeps on; bumped by the libos.
    pub sq_doorbell: AtomicU32,
    _pad2: [u32; 14],
    /// CQ consumer (libos) line: next completion the libos reads.
    pub cq_head: AtomicU32,
    /// Non-zero while the libos may be asleep on [`Self::cq_doorbell`].
    pub cq_waiting: AtomicU32,
    _pad3: [u32; 14],
    /// CQ producer (monitor) line: next completion the monitor writes.
    pub cq_tail: AtomicU32,
    /// Futex word the libos sleeps on; bumped by the monitor.
    pub cq_doorbell: AtomicU32,
    _pad4: [u32; 14],
}

/// Offset of the submission slots from the start of the ring.
pub const SQ_OFFSET: usize = 512;
/// Offset of the completion slots from the start of the ring.
pub const CQ_OFFSET: usize = SQ_OFFSET + RING_ENTRIES as usize * size_of::<Submission>();
/// Offset of the site hints (one `u64` per submission slot, see the module docs).
pub const SITE_OFFSET: usize = CQ_OFFSET + RING_ENTRIES as usize * size_of::<Completion>();
/// Bytes the ring occupies (header, both queues and the site hints).
pub const RING_BYTES: usize = SITE_OFFSET + RING_ENTRIES as usize * size_of::<u64>();
/// Offset of the SQ doorbell futex word (for seccomp rules).
pub const SQ_DOORBELL_OFFSET: usize = offset_of!(RingHeader, sq_doorbell);
/// Offset of the CQ doorbell futex word (for seccomp rules).
pub const CQ_DOORBELL_OFFSET: usize = offset_of!(RingHeader, cq_doorbell);

const _: () = {
    assert!(size_of::<Submission>() == 64);
    assert!(size_of::<Completion>() == 16);
    assert!(offset_of!(RingHeader, sq_head) == 64);
    assert!(offset_of!(RingHeader, sq_tail) == 128);
    assert!(offset_of!(RingHeader, cq_head) == 192);
    assert!(offset_of!(RingHeader, cq_tail) == 256);
    assert!(size_of::<RingHeader>() <= SQ_OFFSET);
    assert!(RING_ENTRIES.is_power_of_two());
    assert!(SITE_OFFSET.is_multiple_of(64));
};

/// Why a ring could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Magic, version or entry count is not what this reader expects.
    BadHeader,
    /// `tail - head` is larger than the queue: the indices were scribbled on.
    BadIndices {
        /// The head index read.
        head: u32,
        /// The tail index read.
        tail: u32,
    },
}

/// How many published entries lie between `head` and `tail`, or an error
/// when the pair is impossible (more than `entries` outstanding).
pub fn pending(head: u32, tail: u32, entries: u32) -> Result<u32, RingError> {
    let n = tail.wrapping_sub(head);
    if n > entries {
        return Err(RingError::BadIndices { head, tail });
    }
    Ok(n)
}

/// A raw pointer to a ring in shared memory, with the only operations either
/// side performs on it. It never hands out references into the ring except
/// to the atomics, which are made for concurrent access.
#[derive(Clone, Copy, Debug)]
pub struct RingPtr {
    base: *mut u8,
}

impl RingPtr {
    /// # Safety
    ///
    /// `base` must be 64-byte aligned and point at [`RING_BYTES`] bytes that
    /// stay mapped, readable and writable for as long as this value (or a
    /// copy) is used. The memory may be written concurrently by the other
    /// side: every access below is atomic or a volatile copy.
    pub const unsafe fn new(base: *mut u8) -> RingPtr {
        RingPtr { base }
    }

    /// The start of the ring.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    fn atomic(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: by the contract of `new`, base+offset (a field offset of
        // RingHeader, 4-byte aligned) is mapped for the lifetime of self;
        // AtomicU32 permits concurrent access from the other side.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast::<u32>()) }
    }

    /// `state`.
    pub fn state(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, state))
    }
    /// `sq_head`.
    pub fn sq_head(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, sq_head))
    }
    /// `sq_tail`.
    pub fn sq_tail(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, sq_tail))
    }
    /// `sq_doorbell`.
    pub fn sq_doorbell(&self) -> &AtomicU32 {
        self.atomic(SQ_DOORBELL_OFFSET)
    }
    /// `sq_sleeping`.
    pub fn sq_sleeping(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, sq_sleeping))
    }
    /// `cq_head`.
    pub fn cq_head(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, cq_head))
    }
    /// `cq_tail`.
    pub fn cq_tail(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, cq_tail))
    }
    /// `cq_doorbell`.
    pub fn cq_doorbell(&self) -> &AtomicU32 {
        self.atomic(CQ_DOORBELL_OFFSET)
    }
    /// `cq_waiting`.
    pub fn cq_waiting(&self) -> &AtomicU32 {
        self.atomic(offset_of!(RingHeader, cq_waiting))
    }

    /// Writes a fresh header: magic, version, entries, all indices zero.
    /// Only the side that creates the ring (the monitor) calls this, before
    /// the other side runs.
    pub fn init(&self) {
        self.write_ids();
        for a in [
            self.state(),
            self.sq_head(),
            self.sq_tail(),
            self.sq_doorbell(),
            self.sq_sleeping(),
            self.cq_head(),
            self.cq_tail(),
            self.cq_doorbell(),
            self.cq_waiting(),
        ] {
            a.store(0, Ordering::SeqCst);
        }
        for i in 0..RING_ENTRIES {
            self.write_submission_raw(i, &Submission::default());
            // SAFETY: see `cq_slot`; written before the other side exists.
            unsafe { self.cq_slot(i).write_volatile(Completion::default()) };
            self.write_site_hint(i, 0);
        }
    }

    /// [`RingPtr::init`] for a ring whose `RING_BYTES` are known to be all
    /// zero (fresh memory: a child process's ring region is never copied
    /// from its parent, docs/processes.md): every index, slot and hint of
    /// the initial state is zero already, so only the magic, version and
    /// entry count are written (16 bytes instead of every byte of the ring).
    /// The result is the same as `init`'s (tested); on memory that is not
    /// zero it is not, so only the monitor calls it, on memory it just made.
    pub fn init_zeroed(&self) {
        self.write_ids();
    }

    fn write_ids(&self) {
        // SAFETY: see `new`; the header's first 16 bytes are plain words,
        // written before the other side exists.
        unsafe {
            self.base.cast::<u64>().write_volatile(RING_MAGIC);
            self.base.add(8).cast::<u32>().write_volatile(RING_VERSION);
            self.base.add(12).cast::<u32>().write_volatile(RING_ENTRIES);
        }
    }

    /// Checks magic, version and entry count.
    pub fn check_header(&self) -> Result<(), RingError> {
        // SAFETY: see `new`; volatile reads of plain words.
        let (magic, version, entries) = unsafe {
            (
                self.base.cast::<u64>().read_volatile(),
                self.base.add(8).cast::<u32>().read_volatile(),
                self.base.add(12).cast::<u32>().read_volatile(),
            )
        };
        if magic != RING_MAGIC || version != RING_VERSION || entries != RING_ENTRIES {
            return Err(RingError::BadHeader);
        }
        Ok(())
    }

    fn sq_slot(&self, index: u32) -> *mut Submission {
        let slot = (index % RING_ENTRIES) as usize;
        // SAFETY: slot < RING_ENTRIES, so the slot lies inside RING_BYTES.
        unsafe { self.base.add(SQ_OFFSET + slot * size_of::<Submission>()).cast() }
    }

    fn cq_slot(&self, index: u32) -> *mut Completion {
        let slot = (index % RING_ENTRIES) as usize;
        // SAFETY: slot < RING_ENTRIES, so the slot lies inside RING_BYTES.
        unsafe { self.base.add(CQ_OFFSET + slot * size_of::<Completion>()).cast() }
    }

    fn sq_tag(&self, index: u32) -> &AtomicU32 {
        // SAFETY: `tag` is the first field of the slot (inside the mapped
        // ring, 4-byte aligned); AtomicU32 permits the other side's access.
        unsafe { AtomicU32::from_ptr(self.sq_slot(index).cast::<u32>()) }
    }

    fn cq_tag(&self, index: u32) -> &AtomicU32 {
        // SAFETY: as for `sq_tag`.
        unsafe { AtomicU32::from_ptr(self.cq_slot(index).cast::<u32>()) }
    }

    /// Has submission `index` been published (its tag reads `index + 1`)?
    /// On true, the rest of the slot is visible. (A SeqCst load, which the
    /// sleep check needs and which costs a plain load on x86.)
    pub fn submission_ready(&self, index: u32) -> bool {
        self.sq_tag(index).load(Ordering::SeqCst) == index.wrapping_add(1)
    }

    /// Copies submission slot `index % entries` out (once).
    pub fn read_submission(&self, index: u32) -> Submission {
        // SAFETY: the slot is inside the mapped ring (see `sq_slot`) and
        // aligned; a volatile copy of plain integers has no invalid values.
        unsafe { self.sq_slot(index).read_volatile() }
    }

    /// Writes submission slot `index % entries` and publishes it: the body
    /// first, then the tag `index + 1` with a SeqCst store (release, and the
    /// full fence the producer needs before it reads the sleeping flag).
    pub fn publish_submission(&self, index: u32, flags: u32, nr: u64, args: &[u64; 6]) {
        let slot = self.sq_slot(index);
        // SAFETY: as for `read_submission`; the fields after the tag are
        // plain integers written with volatile stores.
        unsafe {
            core::ptr::addr_of_mut!((*slot).flags).write_volatile(flags);
            core::ptr::addr_of_mut!((*slot).nr).write_volatile(nr);
            core::ptr::addr_of_mut!((*slot).args).write_volatile(*args);
        }
        self.sq_tag(index).store(index.wrapping_add(1), Ordering::SeqCst);
    }

    /// Has completion `index` been published (its tag reads `index + 1`)?
    /// On true, the result is visible (SeqCst, as for `submission_ready`).
    pub fn completion_ready(&self, index: u32) -> bool {
        self.cq_tag(index).load(Ordering::SeqCst) == index.wrapping_add(1)
    }

    /// Copies completion slot `index % entries` out (once).
    pub fn read_completion(&self, index: u32) -> Completion {
        // SAFETY: as for `read_submission`.
        unsafe { self.cq_slot(index).read_volatile() }
    }

    /// Writes completion slot `index % entries` and publishes it: the result
    /// first, then the tag `index + 1` with a SeqCst store (as for
    /// `publish_submission`).
    pub fn publish_completion(&self, index: u32, result: i64) {
        let slot = self.cq_slot(index);
        // SAFETY: as for `publish_submission`.
        unsafe {
            core::ptr::addr_of_mut!((*slot).flags).write_volatile(0);
            core::ptr::addr_of_mut!((*slot).result).write_volatile(result);
        }
        self.cq_tag(index).store(index.wrapping_add(1), Ordering::SeqCst);
    }

    /// Overwrites a whole submission slot as it is (tests and fuzzing: a
    /// hostile producer's view of the slot).
    pub fn write_submission_raw(&self, index: u32, s: &Submission) {
        // SAFETY: as for `read_submission`.
        unsafe { self.sq_slot(index).write_volatile(*s) }
    }

    fn site_slot(&self, index: u32) -> *mut u64 {
        let slot = (index % RING_ENTRIES) as usize;
        // SAFETY: slot < RING_ENTRIES, so the hint lies inside RING_BYTES.
        unsafe { self.base.add(SITE_OFFSET + slot * size_of::<u64>()).cast() }
    }

    /// Reads the site hint of submission slot `index % entries` (untrusted:
    /// only ever shown, never acted on).
    pub fn read_site_hint(&self, index: u32) -> u64 {
        // SAFETY: the hint is inside the mapped ring (see `site_slot`) and
        // 8-byte aligned; any bit pattern is a valid u64.
        unsafe { self.site_slot(index).read_volatile() }
    }

    /// Writes the site hint of submission slot `index % entries`; the
    /// producer does this before publishing the slot.
    pub fn write_site_hint(&self, index: u32, site: u64) {
        // SAFETY: as for `read_site_hint`.
        unsafe { self.site_slot(index).write_volatile(site) }
    }
}

// SAFETY: RingPtr is a pointer to shared memory whose every access is atomic
// or a volatile copy; moving it between threads changes nothing.
unsafe impl Send for RingPtr {}
// SAFETY: every access through a RingPtr is atomic or a volatile copy of
// memory the other side writes concurrently anyway: sharing it between the
// monitor's threads (one worker per ring) adds nothing.
unsafe impl Sync for RingPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Area([u8; RING_BYTES]);

    #[test]
    fn pending_counts_and_refuses() {
        assert_eq!(pending(0, 0, 64), Ok(0));
        assert_eq!(pending(5, 9, 64), Ok(4));
        assert_eq!(pending(u32::MAX, 1, 64), Ok(2));
        assert_eq!(pending(0, 65, 64), Err(RingError::BadIndices { head: 0, tail: 65 }));
        assert_eq!(pending(10, 9, 64), Err(RingError::BadIndices { head: 10, tail: 9 }));
    }

    #[test]
    fn round_trip() {
        let mut area = Area([0xAA; RING_BYTES]);
        // SAFETY: the area is aligned, RING_BYTES long and outlives `r`.
        let r = unsafe { RingPtr::new(area.0.as_mut_ptr()) };
        assert!(r.check_header().is_err());
        r.init();
        assert_eq!(r.check_header(), Ok(()));
        assert!(
            (0..RING_ENTRIES).all(|i| !r.submission_ready(i) && !r.completion_ready(i)),
            "init clears the slots"
        );
        r.publish_submission(70, SUB_TRAPPED, 1, &[1, 2, 3, 4, 5, 6]);
        let s = Submission { tag: 71, flags: SUB_TRAPPED, nr: 1, args: [1, 2, 3, 4, 5, 6] };
        assert_eq!(r.read_submission(6), s);
        assert!(r.submission_ready(70));
        // The same slot one lap earlier or later is not this publication.
        assert!(!r.submission_ready(6) && !r.submission_ready(134));
        r.publish_completion(67, -2);
        assert!(r.completion_ready(67) && !r.completion_ready(3));
        let c = Completion { tag: 68, flags: 0, result: -2 };
        assert_eq!(r.read_completion(3), c);
        assert_eq!(r.sq_tail().load(Ordering::SeqCst), 0);
        assert_eq!(r.read_site_hint(5), 0, "init clears the hints");
        r.write_site_hint(69, 0x40_1234);
        assert_eq!(r.read_site_hint(5), 0x40_1234);
        // The hints sit after the completions and do not overlap them.
        assert_eq!(r.read_completion(3), c);
        assert_eq!(r.read_submission(6), s);
    }

    /// `init_zeroed` on zero memory leaves exactly what `init` leaves on
    /// memory full of a parent's old requests (a forked child's rings).
    #[test]
    fn init_zeroed_equals_init() {
        let mut used = Area([0xAA; RING_BYTES]);
        let mut fresh = Area([0; RING_BYTES]);
        // SAFETY: both areas are aligned, RING_BYTES long and outlive the pointers.
        let (a, b) = unsafe { (RingPtr::new(used.0.as_mut_ptr()), RingPtr::new(fresh.0.as_mut_ptr())) };
        a.init();
        a.publish_submission(3, SUB_FORK, 57, &[1, 2, 3, 4, 5, 6]);
        a.publish_completion(3, 9);
        a.write_site_hint(3, 0x40_1000);
        a.init();
        b.init_zeroed();
        assert_eq!(b.check_header(), Ok(()));
        let words = |r: &RingPtr| {
            [
                r.state(),
                r.sq_head(),
                r.sq_tail(),
                r.sq_doorbell(),
                r.sq_sleeping(),
                r.cq_head(),
                r.cq_tail(),
                r.cq_doorbell(),
                r.cq_waiting(),
            ]
            .map(|w| w.load(Ordering::SeqCst))
        };
        assert_eq!(words(&a), words(&b));
        for i in 0..RING_ENTRIES {
            assert_eq!(a.read_submission(i), b.read_submission(i), "submission {i}");
            assert_eq!(a.read_completion(i), b.read_completion(i), "completion {i}");
            assert_eq!(a.read_site_hint(i), b.read_site_hint(i), "hint {i}");
        }
        // And byte for byte what `init` writes on zero memory (a fresh domain's rings).
        let mut zero = Area([0; RING_BYTES]);
        // SAFETY: as above.
        unsafe { RingPtr::new(zero.0.as_mut_ptr()) }.init();
        assert!(zero.0 == fresh.0, "init_zeroed on zero memory differs from init");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut area = Area([0; RING_BYTES]);
        // SAFETY: as above.
        let r = unsafe { RingPtr::new(area.0.as_mut_ptr()) };
        r.init();
        r.publish_submission(u32::MAX, 0, 39, &[0; 6]);
        assert_eq!(r.read_submission(u32::MAX).tag, 0);
        assert!(r.submission_ready(u32::MAX));
        r.publish_completion(u32::MAX, 5);
        assert!(r.completion_ready(u32::MAX));
    }
}
