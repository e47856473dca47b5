//! Signals in confined mode (design and reasons: docs/signals.md).
//!
//! The program's signal state is virtual and lives here: dispositions,
//! the blocked mask, the pending set with one `siginfo` per signal, the
//! alternate stack. A handler runs in ring 3 with the frame Linux builds
//! (`rt_sigframe`: return address = the program's `sa_restorer`,
//! `ucontext`, `siginfo`, the FP state in Linux's xsave layout), and the
//! program's `rt_sigreturn` is served here, in ring 3: it can only set
//! state the program could set with its own instructions (no kernel and no
//! ring 0 ever reads the program's frame).
//!
//! Where a signal is taken (each builds a [`Ctx`] of the interrupted
//! program and calls [`deliver`]):
//! - on the way out of every libos call, when the attention word is set
//!   (`arch::x86_64::entry`: the exit window and [`cabin_signal_exit`]);
//! - process backend: in the libos's own kernel handlers (faults, SIGSYS,
//!   and the signals the monitor forwards), by editing the kernel's
//!   `ucontext` so that the kernel's return lands in the program's handler;
//! - KVM backend: at the libos's signal entry, where the monitor sends a
//!   vCPU it stopped in program code (a fault, or a signal posted from
//!   outside), with the interrupted `rip`/RFLAGS in the boot page's mailbox.
//!
//! The libos keeps SIGSYS (its trap path) and the fault signals at the
//! kernel: the program's `rt_sigaction` never reaches the kernel.

// Host builds have no entry paths, so the code they call is unused there.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use cabin_abi::boot::{si_code, BootInfo, SigMailbox, SigPosted};

use super::sigqueue::QUEUE;
use super::{errno, nr, Global};
use crate::sys::syscall6;

pub(crate) const SIGHUP: u64 = 1;
pub(crate) const SIGILL: u64 = 4;
pub(crate) const SIGTRAP: u64 = 5;
pub(crate) const SIGABRT: u64 = 6;
pub(crate) const SIGBUS: u64 = 7;
pub(crate) const SIGFPE: u64 = 8;
pub(crate) const SIGKILL: u64 = 9;
pub(crate) const SIGSEGV: u64 = 11;
pub(crate) const SIGPIPE: u64 = 13;
pub(crate) const SIGCHLD: u64 = 17;
pub(crate) const SIGCONT: u64 = 18;
pub(crate) const SIGSTOP: u64 = 19;
pub(crate) const SIGTSTP: u64 = 20;
pub(crate) const SIGTTIN: u64 = 21;
pub(crate) const SIGTTOU: u64 = 22;
pub(crate) const SIGURG: u64 = 23;
pub(crate) const SIGWINCH: u64 = 28;
pub(crate) const SIGSYS: u64 = 31;
pub(crate) const NSIG: u64 = 64;
/// The first real-time signal (the kernel's; glibc keeps 32 and 33 for
/// itself): from here on every instance queues.
pub(crate) const SIGRTMIN: u64 = 32;

const SA_SIGINFO: u64 = 4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SA_NOCLDSTOP: u64 = 1;
const SA_NOCLDWAIT: u64 = 2;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;

const SS_ONSTACK: u64 = 1;
pub(super) const SS_DISABLE: u64 = 2;
const SS_AUTODISARM: u64 = 1 << 31;
const MINSIGSTKSZ: u64 = 2048;

/// Offsets into `siginfo_t` (x86-64 Linux).
/// `si_code`.
const SI_CODE: usize = 8;
const SI_ADDR: usize = 16;
const SI_SYSCALL: usize = 24;
const SI_ARCH: usize = 28;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// Offsets into the kernel's `ucontext` (x86-64).
const UC_FLAGS: usize = 0;
const UC_STACK: usize = 16;
const UC_GREGS: usize = 40;
const UC_FPSTATE: usize = UC_GREGS + 8 * 23;
const UC_SIGMASK: usize = 296;
const UC_SIZE: usize = 304;
const SIGINFO_SIZE: usize = 128;
/// `rt_sigframe`: return address, `ucontext`, `siginfo`.
const FRAME_SIZE: usize = 8 + UC_SIZE + SIGINFO_SIZE;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// `uc_mcontext.gregs` indices.
const REG_R8: usize = 0;
const REG_R9: usize = 1;
const REG_R10: usize = 2;
const REG_R11: usize = 3;
const REG_R12: usize = 4;
const REG_R13: usize = 5;
const REG_R14: usize = 6;
const REG_R15: usize = 7;
const REG_RDI: usize = 8;
const REG_RSI: usize = 9;
const REG_RBP: usize = 10;
const REG_RBX: usize = 11;
const REG_RDX: usize = 12;
const REG_RAX: usize = 13;
const REG_RCX: usize = 14;
const REG_RSP: usize = 15;
const REG_RIP: usize = 16;
const REG_EFL: usize = 17;
const REG_CSGSFS: usize = 18;
const REG_ERR: usize = 19;
const REG_TRAPNO: usize = 20;
const REG_OLDMASK: usize = 21;
const REG_CR2: usize = 22;

/// RFLAGS bits a ring-3 program may set itself (CF PF AF ZF SF TF DF OF AC
/// ID); the rest of a restored RFLAGS comes from the CPU (`iretq` in ring 3
/// cannot raise IOPL or change IF anyway).
const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | (1 << 18) | (1 << 21);
const RFLAGS_TF: u64 = 0x100;
const RFLAGS_DF: u64 = 0x400;
const RFLAGS_RF: u64 = 1 << 16;

/// The FP state in Linux's signal-frame layout (`_fpx_sw_bytes`).
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const FX_SIZE: usize = 512;
const XSAVE_HEADER: usize = 64;
const SW_BYTES: usize = 464;
/// The largest FP state the libos saves or restores (AVX-512 is 2696 bytes;
/// AMX tile data, which a confined program cannot enable, would be more).
pub(crate) const FP_MAX: usize = 4096;

/// The interrupted program: the layout the restore path pops (general
/// registers, then an `iretq` frame).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of [`Ctx`] (a multiple of 16: the stack stays aligned).
pub const CTX_SIZE: usize = core::mem::size_of::<Ctx>();
const _: () = assert!(CTX_SIZE == 160);

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct KSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

const DFL: KSigaction = KSigaction { handler: SIG_DFL, flags: 0, restorer: 0, mask: 0 };

/// The program's dispositions. Changed only by the
/// program's own calls (inside the libos); read by deliveries, which never
/// run while the libos is inside one of those calls (a kernel signal that
/// interrupts libos code only marks the signal pending).
struct Book {
    actions: [KSigaction; NSIG as usize],
    /// One `siginfo_t` per pending signal.
    info: [[u64; 16]; NSIG as usize],
}

static BOOK: Global<Book> =
    Global::new(Book { actions: [DFL; NSIG as usize], info: [[0; 16]; NSIG as usize] });

/// The calling thread's blocked mask (bit `n - 1` for signal `n`), in its
/// thread block (GS): each thread has its own, as on Linux.
struct ThreadMask;

impl ThreadMask {
    fn load(&self, o: Ordering) -> u64 {
        super::thread::current().sigmask.load(o)
    }
    fn store(&self, v: u64, o: Ordering) {
        super::thread::current().sigmask.store(v, o)
    }
}

static MASK: ThreadMask = ThreadMask;
/// Pending signals (taken by [`deliver`], set by [`post`]).
static PENDING: AtomicU64 = AtomicU64::new(0);
/// A word that stays zero: where [`ATTENTION`] points before [`init`].
static NO_ATTENTION: AtomicU64 = AtomicU64::new(0);
/// The attention word the exit path reads (`BootInfo::sig_attention` once
/// confined).
pub(crate) static ATTENTION: AtomicPtr<AtomicU64> =
    AtomicPtr::new(&NO_ATTENTION as *const AtomicU64 as *mut _);
/// The boot page (null before [`init`]).
static BOOT: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());
/// The program's pid and uid, for the `siginfo` of signals it sends itself.
static IDS: AtomicU64 = AtomicU64::new(0);
/// FP state: bit 63 = XSAVE usable, low bits = bytes to save.
static FP_INFO: AtomicU64 = AtomicU64::new(FX_SIZE as u64);
/// XCR0 (the features XSAVE saves).
static FP_FEATURES: AtomicU64 = AtomicU64::new(0);
/// XCR0 without PKRU, whatever the frame size: the features restored from
/// a kernel signal frame's `fpstate` (0: no XSAVE, `fxrstor`).
static KERNEL_FP_FEATURES: AtomicU64 = AtomicU64::new(0);

/// The libos's private stack for its kernel handlers (process backend: the
/// kernel `sigaltstack` of the main thread), so that a fault on an
/// exhausted program stack still reaches the program's handler. The entry
/// paths run on the program's stack and build frames below themselves
/// (`build_frame`).
#[repr(C, align(64))]
pub struct PrivateStack(pub [u8; PRIVATE_STACK]);
/// Bytes of [`PrivateStack`].
pub const PRIVATE_STACK: usize = 32 * 1024;
/// The stack (its top is used: `PRIVATE_STACK_TOP`).
#[unsafe(no_mangle)]
pub static mut CABIN_PRIVATE_STACK: PrivateStack = PrivateStack([0; PRIVATE_STACK]);

fn bit(sig: u64) -> u64 {
    1u64 << (sig - 1)
}

const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

fn boot() -> *mut BootInfo {
    BOOT.load(Ordering::Relaxed)
}

fn attention() -> &'static AtomicU64 {
    // SAFETY: ATTENTION always points at a live AtomicU64: NO_ATTENTION or
    // the boot page's word (validated by `init`, mapped for the whole run).
    unsafe { &*ATTENTION.load(Ordering::Relaxed) }
}

/// Sets up signal state for a confined run: the boot page words, the FP
/// state size. Process backend: installs the libos's kernel handlers on
/// its private stack.
pub(super) fn init(b: *mut BootInfo, pid: u32, uid: u32, process: bool) -> bool {
    BOOT.store(b, Ordering::Relaxed);
    IDS.store(u64::from(pid) | u64::from(uid) << 32, Ordering::Relaxed);
    // SAFETY: `b` is the validated boot page; the attention word is an
    // aligned u64 in it, accessed only atomically from here on.
    ATTENTION.store(unsafe { addr_of_mut!((*b).sig_attention) }.cast::<AtomicU64>(), Ordering::Relaxed);
    fp_init();
    // An image started by an execve keeps the signals its predecessor
    // ignored (the monitor copied the word); anything else starts default.
    // SAFETY: the validated boot page; one aligned word.
    let ignored = unsafe { addr_of_mut!((*b).sig_ignored).read_volatile() } & !UNBLOCKABLE;
    if ignored != 0 {
        // SAFETY: see `Book`; nothing else runs yet (start-up).
        let book = unsafe { BOOK.get() };
        for (i, a) in book.actions.iter_mut().enumerate() {
            if ignored & (1 << i) != 0 {
                a.handler = SIG_IGN;
            }
        }
    }
    publish_handled();
    // SAFETY: the boot page is validated; these slots are the libos's.
    unsafe {
        addr_of_mut!((*b).libos_text).write_volatile(crate::arch::x86_64::entry::libos_text());
        addr_of_mut!((*b).kvm_signal_entry).write_volatile(crate::arch::x86_64::entry::kvm_signal_entry());
    }
    if process {
        return install();
    }
    true
}

/// A new child process (docs/processes.md): its own pid for the signals
/// it sends itself, and (process backend) the libos's kernel handlers
/// again, which a new process lacks. `false` if the kernel refused.
pub(super) fn after_fork(pid: u32) -> bool {
    let uid = IDS.load(Ordering::Relaxed) >> 32;
    IDS.store(u64::from(pid) | uid << 32, Ordering::Relaxed);
    // KVM: no kernel handlers (faults and posted signals come through the
    // monitor's redirect to the signal entry, whose address the copied
    // boot page still holds).
    if !super::thread::PROCESS.load(Ordering::Relaxed) {
        return true;
    }
    install()
}

fn fp_init() {
    // CPUID.1:ECX.XSAVE (bit 26). OSXSAVE is not trusted: some hosts hide
    // it from the guest although XCR0 is set (docs/architecture.md).
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 26) == 0 {
        return;
    }
    // SAFETY: XSAVE is supported (checked above).
    let xcr0 = unsafe { crate::arch::x86_64::fpu::cabin_fpu_xgetbv0() };
    // Never PKRU (component 9): a signal frame is the program's memory, and
    // restoring a PKRU from it would let a forged frame lift execute-only
    // (docs/execute-only.md). PKRU is not the program's to save or restore.
    let xcr0 = xcr0 & !u64::from(cabin_abi::pkru::XCR0_PKRU);
    KERNEL_FP_FEATURES.store(xcr0, Ordering::Relaxed);
    // The standard-format size for the features XCR0 enables, from each
    // component's offset and size (CPUID.0xD.i): CPUID.0xD.0:EBX is not
    // trusted, some hosts report it for another XCR0 than the guest's.
    let mut size = FX_SIZE + XSAVE_HEADER;
    for i in 2..63 {
        if xcr0 & (1 << i) != 0 {
            let c = core::arch::x86_64::__cpuid_count(0xd, i);
            size = size.max(c.ebx as usize + c.eax as usize);
        }
    }
    if !(FX_SIZE + XSAVE_HEADER..=FP_MAX - 4).contains(&size) {
        return;
    }
    FP_FEATURES.store(xcr0, Ordering::Relaxed);
    FP_INFO.store(1 << 63 | size as u64, Ordering::Relaxed);
}

/// Bytes the FP state takes in a frame (with the trailing magic).
fn fp_frame_size() -> usize {
    let i = FP_INFO.load(Ordering::Relaxed);
    let size = (i & 0xffff) as usize;
    if i >> 63 != 0 {
        size + 4
    } else {
        FX_SIZE
    }
}

/// Saves the live FP state at `dst` (64-byte aligned, [`fp_frame_size`]
/// bytes) in Linux's signal-frame layout.
///
/// # Safety
///
/// `dst` must be writable for [`fp_frame_size`] bytes and 64-byte aligned.
unsafe fn fp_save(dst: *mut u8) {
    let i = FP_INFO.load(Ordering::Relaxed);
    let size = (i & 0xffff) as usize;
    // SAFETY: by the contract, `dst` is writable and aligned.
    unsafe {
        if i >> 63 != 0 {
            // XSAVE writes only XSTATE_BV of the header: zero the rest first.
            core::ptr::write_bytes(dst.add(FX_SIZE), 0, XSAVE_HEADER);
            crate::arch::x86_64::fpu::xsave(dst, FP_FEATURES.load(Ordering::Relaxed));
            let sw = dst.add(SW_BYTES);
            core::ptr::write_bytes(sw, 0, 48);
            sw.cast::<u32>().write(FP_XSTATE_MAGIC1);
            sw.add(4).cast::<u32>().write((size + 4) as u32);
            sw.add(8).cast::<u64>().write(FP_FEATURES.load(Ordering::Relaxed));
            sw.add(16).cast::<u32>().write(size as u32);
            dst.add(size).cast::<u32>().write_unaligned(FP_XSTATE_MAGIC2);
        } else {
            crate::arch::x86_64::fpu::fxsave(dst);
        }
    }
}

/// Restores the FP state from a program frame's `fpstate` pointer: copied
/// once into a private buffer, then made acceptable to the CPU (MXCSR's
/// reserved bits, the XSAVE header's reserved words, features the CPU is
/// not saving) so that a forged frame cannot fault the libos.
fn fp_restore(src: u64) {
    #[repr(C, align(64))]
    struct Buf([u8; FP_MAX]);
    if src == 0 {
        return;
    }
    // On this thread's stack: threads restore at the same time.
    let mut local = Buf([0; FP_MAX]);
    let buf = &mut local;
    let p = src as *const u8;
    // SAFETY: the program's own frame; a bad pointer faults the program
    // in its own domain, as the kernel would SIGSEGV it.
    unsafe { core::ptr::copy_nonoverlapping(p, buf.0.as_mut_ptr(), FX_SIZE) };
    let word = |b: &[u8; FP_MAX], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    // MXCSR (offset 24): only the architected bits.
    let mxcsr = word(&buf.0, 24) & 0xffff;
    buf.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    let i = FP_INFO.load(Ordering::Relaxed);
    let size = (i & 0xffff) as usize;
    let xsave = i >> 63 != 0
        && word(&buf.0, SW_BYTES) == FP_XSTATE_MAGIC1
        && word(&buf.0, SW_BYTES + 16) as usize == size
        && word(&buf.0, SW_BYTES + 4) as usize == size + 4;
    if xsave {
        // SAFETY: as above; `size` <= FP_MAX - 4 (fp_init).
        let magic2 = unsafe { p.add(size).cast::<u32>().read_unaligned() };
        if magic2 == FP_XSTATE_MAGIC2 {
            // SAFETY: as above.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    p.add(FX_SIZE),
                    buf.0.as_mut_ptr().add(FX_SIZE),
                    size - FX_SIZE,
                )
            };
            let features = FP_FEATURES.load(Ordering::Relaxed);
            let bv = u64::from_le_bytes(buf.0[FX_SIZE..FX_SIZE + 8].try_into().unwrap_or([0; 8])) & features;
            buf.0[FX_SIZE..FX_SIZE + 8].copy_from_slice(&bv.to_le_bytes());
            buf.0[FX_SIZE + 8..FX_SIZE + XSAVE_HEADER].fill(0);
            // SAFETY: an aligned, sanitised standard-format XSAVE area.
            unsafe { crate::arch::x86_64::fpu::xrstor(buf.0.as_ptr(), features) };
            return;
        }
    }
    // SAFETY: an aligned legacy area with a valid MXCSR.
    unsafe { crate::arch::x86_64::fpu::fxrstor(buf.0.as_ptr()) };
}

// ---------------------------------------------------------------------------
// Posting.

/// The default action of `sig` is to ignore it.
fn default_ignores(sig: u64) -> bool {
    matches!(sig, SIGCHLD | SIGCONT | SIGURG | SIGWINCH)
}

/// The stop signals: their default action stops the whole process.
const STOP_SIGNALS: u64 =
    (1 << (SIGSTOP - 1)) | (1 << (SIGTSTP - 1)) | (1 << (SIGTTIN - 1)) | (1 << (SIGTTOU - 1));

/// The default action of `sig` stops the process (job control).
fn default_stops(sig: u64) -> bool {
    (1..=NSIG).contains(&sig) && STOP_SIGNALS & bit(sig) != 0
}

/// The default action of a stop signal: the monitor stops the whole
/// process (every thread) and this call returns once it is continued
/// (docs/processes.md, "Job control"). The request is `kill` of the
/// process's own pid with `sig`, which the libos otherwise serves itself;
/// a monitor without a process tree answers otherwise and the signal is
/// then discarded.
fn stop_self(sig: u64) {
    let pid = IDS.load(Ordering::Relaxed) & 0xffff_ffff;
    let _ = super::forward_wait(nr::kill, &[pid, sig, 0, 0, 0, 0]);
}

/// As Linux when a signal is generated: `SIGCONT` discards the pending
/// stop signals, a stop signal a pending `SIGCONT` (whatever their
/// dispositions).
fn discard_for(sig: u64) {
    if sig == SIGCONT {
        PENDING.fetch_and(!STOP_SIGNALS, Ordering::SeqCst);
    } else if default_stops(sig) {
        PENDING.fetch_and(!bit(SIGCONT), Ordering::SeqCst);
    }
}

/// Whether `sig` is ignored now (a signal that is, is discarded when sent).
/// As Linux, a signal whose default action is to ignore it is kept while
/// it is blocked (by the calling thread or the main one, which Linux looks
/// at for a signal to the process): `sigwaitinfo` can take it (a parent
/// waiting for `SIGCHLD` with it blocked).
fn ignored(sig: u64) -> bool {
    // SAFETY: a copy of one action (see `Book` for why reads do not race).
    let act = unsafe { BOOK.get() }.actions[(sig - 1) as usize];
    if sig == SIGKILL || act.handler == SIG_IGN {
        return sig != SIGKILL;
    }
    let blocked = MASK.load(Ordering::SeqCst) & bit(sig) != 0
        || super::thread::sigmask_of_slot(0).is_some_and(|m| m & bit(sig) != 0);
    act.handler == SIG_DFL && default_ignores(sig) && !blocked
}

/// Whether `sig` is blocked by the calling thread or ignored (`SIG_IGN`):
/// the kernel's `is_ignored` for the terminal's job-control checks.
pub(crate) fn blocked_or_ignored(sig: u64) -> bool {
    if sig == 0 || sig > NSIG {
        return false;
    }
    // SAFETY: a copy of one action (see `Book` for why reads do not race).
    let act = unsafe { BOOK.get() }.actions[(sig - 1) as usize];
    MASK.load(Ordering::SeqCst) & bit(sig) != 0 || act.handler == SIG_IGN
}

/// Marks `sig` pending for the process with `info` (unless it is ignored,
/// or already pending: standard signals do not queue; real-time ones do,
/// [`super::sigqueue`]) and raises the attention word when it can be
/// delivered. `false`: a real-time signal found the queue full.
pub(crate) fn post(sig: u64, info: &[u64; 16]) -> bool {
    if sig == 0 || sig > NSIG {
        return true;
    }
    discard_for(sig);
    if ignored(sig) {
        return true;
    }
    if sig >= SIGRTMIN {
        if !QUEUE.push(sig, 0, info) {
            return false;
        }
        PENDING.fetch_or(bit(sig), Ordering::SeqCst);
        refresh_attention();
        return true;
    }
    if PENDING.load(Ordering::SeqCst) & bit(sig) != 0 {
        return true;
    }
    // SAFETY: the slot of a signal that is not pending is read by nobody.
    unsafe { BOOK.get() }.info[(sig - 1) as usize] = *info;
    PENDING.fetch_or(bit(sig), Ordering::SeqCst);
    refresh_attention();
    true
}

/// Marks `sig` pending for the thread of slot `slot` only (`tkill`,
/// `tgkill`, `rt_tgsigqueueinfo`): queued for it ([`super::sigqueue`]; a
/// standard signal already pending for it is not queued again). `false`:
/// the queue is full.
pub(crate) fn post_thread(sig: u64, slot: u64, info: &[u64; 16]) -> bool {
    if sig == 0 || sig > NSIG || ignored(sig) {
        return true;
    }
    let target = slot + 1;
    if sig < SIGRTMIN && QUEUE.has(sig, target) {
        return true;
    }
    if !QUEUE.push(sig, target, info) {
        return false;
    }
    refresh_attention();
    true
}

/// The queue target of the calling thread.
fn own_target() -> u64 {
    super::thread::current().slot.load(Ordering::Relaxed) + 1
}

/// What the calling thread has pending: the process's signals and its own.
fn pending_here() -> u64 {
    PENDING.load(Ordering::SeqCst) | QUEUE.pending(own_target())
}

/// Takes pending `sig` for the calling thread into `out`: its own instance
/// first (as Linux dequeues the thread's private set first), else the
/// process's. `false`: another thread took it meanwhile. (Into `out`: see
/// [`super::sigqueue::Queue::take`] on the delivery path's stack.)
fn take(sig: u64, out: &mut [u64; 16]) -> bool {
    if QUEUE.take(sig, own_target(), out) {
        return true;
    }
    if PENDING.load(Ordering::SeqCst) & bit(sig) == 0 {
        return false;
    }
    if sig < SIGRTMIN {
        // SAFETY: see `Book`.
        *out = unsafe { BOOK.get() }.info[(sig - 1) as usize];
        PENDING.fetch_and(!bit(sig), Ordering::SeqCst);
        return true;
    }
    let got = QUEUE.take(sig, 0, out);
    // Cleared, then set again if an instance is left (a post in between
    // queued first and set the bit after: it is seen here either way).
    PENDING.fetch_and(!bit(sig), Ordering::SeqCst);
    if QUEUE.has(sig, 0) {
        PENDING.fetch_or(bit(sig), Ordering::SeqCst);
    }
    got
}

/// `rt_sigqueueinfo` to the process (`slot` `None`) or
/// `rt_tgsigqueueinfo` to the thread of `slot`: the program's `siginfo`
/// at `uinfo` (copied once; `si_signo` becomes `sig`, as Linux sets it).
pub(crate) fn queue(sig: u64, uinfo: u64, slot: Option<u64>) -> i64 {
    if sig > NSIG {
        return -errno::EINVAL;
    }
    if sig == 0 {
        return 0;
    }
    // SAFETY: the program's own pointer, read once as the kernel would; a
    // bad one faults in the program's own domain.
    let mut info = unsafe { (uinfo as *const [u64; 16]).read_unaligned() };
    info[0] = (info[0] & !0xffff_ffff) | sig;
    let ok = match slot {
        None => post(sig, &info),
        Some(k) if k + 1 == own_target() => post_thread(sig, k, &info),
        Some(k) => {
            post_thread(sig, k, &info) && {
                super::thread::wake_thread(k);
                true
            }
        }
    };
    if ok {
        0
    } else {
        -errno::EAGAIN
    }
}

/// A `siginfo_t` with `si_signo`, `si_code` and the program's own pid/uid.
pub(crate) fn own_info(sig: u64, code: i32) -> [u64; 16] {
    let mut info = [0u64; 16];
    info[0] = sig;
    info[1] = code as u32 as u64;
    info[2] = IDS.load(Ordering::Relaxed);
    info
}

/// The program signals itself (`kill` to the process, `tkill`/`tgkill` to
/// the calling thread): the signal is taken on the way out of this very
/// call when this thread does not block it, as Linux does. A
/// thread-directed one (`SI_TKILL`) is the calling thread's alone; a
/// process-directed one this thread blocks goes to a thread that does not
/// block it (the monitor wakes that thread).
pub(crate) fn raise(sig: u64, code: i32) -> i64 {
    if sig > NSIG {
        return -errno::EINVAL;
    }
    if sig == 0 {
        return 0;
    }
    let info = own_info(sig, code);
    if code == si_code::SI_TKILL {
        let slot = own_target() - 1;
        return if post_thread(sig, slot, &info) { 0 } else { -errno::EAGAIN };
    }
    if !post(sig, &info) {
        return -errno::EAGAIN;
    }
    if MASK.load(Ordering::SeqCst) & bit(sig) != 0 {
        if let Some(k) = super::thread::slot_not_blocking(sig) {
            super::thread::wake_thread(k);
        }
    }
    signalfd_sync();
    0
}

/// SIGPIPE for a write that found no reader (the kernel sends it with EPIPE).
pub(crate) fn sigpipe() {
    post(SIGPIPE, &own_info(SIGPIPE, si_code::SI_USER));
}

/// Recomputes the attention word (set when something pending can be
/// delivered or the monitor posted something) and the published set of
/// handled, unblocked signals (`BootInfo::sig_handled`).
fn refresh_attention() {
    publish_handled();
    let b = boot();
    let incoming = if b.is_null() {
        0
    } else {
        // SAFETY: the validated boot page; an atomic view of an aligned word.
        unsafe { (*addr_of_mut!((*b).sig_incoming).cast::<AtomicU64>()).load(Ordering::SeqCst) }
    };
    // Set while some thread can take a pending signal, not only this one:
    // a signal this thread blocks may be another's (a thread spinning in
    // program code is sent to the signal entry while the word is set).
    let ready = PENDING.load(Ordering::SeqCst) & !super::thread::blocked_by_every_thread() != 0
        // A signal queued for one thread that does not block it.
        || QUEUE.any(|t, sig| {
            t > 0 && (1..=NSIG).contains(&sig) && super::thread::sigmask_of_slot(t - 1).is_some_and(|m| m & bit(sig) == 0)
        });
    attention().store(u64::from(ready || incoming != 0), Ordering::SeqCst);
}

/// Publishes which signals have a handler (the monitor sends only those
/// faults to the libos).
fn publish_handled() {
    let b = boot();
    if b.is_null() {
        return;
    }
    // SAFETY: see `Book`; a copy of the dispositions' handlers.
    let book = unsafe { BOOK.get() };
    let (mut handled, mut ignoring) = (0u64, 0u64);
    for (i, a) in book.actions.iter().enumerate() {
        if a.handler != SIG_DFL && a.handler != SIG_IGN {
            handled |= 1 << i;
        }
        if a.handler == SIG_IGN {
            ignoring |= 1 << i;
        }
    }
    // SA_NOCLDWAIT on SIGCHLD: the monitor reaps this process's children
    // itself (the bit of SIGKILL, which is never ignored, says so).
    if book.actions[(SIGCHLD - 1) as usize].flags & SA_NOCLDWAIT != 0 {
        ignoring |= cabin_abi::boot::SIG_IGNORED_NOCLDWAIT;
    }
    // SA_NOCLDSTOP: no SIGCHLD when a child stops or continues (the bit
    // of SIGSTOP, never ignored either).
    if book.actions[(SIGCHLD - 1) as usize].flags & SA_NOCLDSTOP != 0 {
        ignoring |= cabin_abi::boot::SIG_IGNORED_NOCLDSTOP;
    }
    // SAFETY: the validated boot page; the libos's own word (what an
    // execve keeps: the monitor hands it to the next image).
    unsafe { addr_of_mut!((*b).sig_ignored).write_volatile(ignoring) };
    // Not masked here: the mask is per thread and this word is shared by
    // every vCPU; the libos's signal entry checks the faulting thread's
    // own mask (blocked: the program ends with the signal, as Linux).
    // SAFETY: the validated boot page; the libos's own word.
    unsafe { addr_of_mut!((*b).sig_handled).write_volatile(handled) };
}

/// Takes what the monitor posted into the pending set.
fn take_incoming() {
    let b = boot();
    if b.is_null() {
        return;
    }
    attention().store(0, Ordering::SeqCst);
    // SAFETY: the validated boot page; atomic views of aligned words.
    let incoming =
        unsafe { (*addr_of_mut!((*b).sig_incoming).cast::<AtomicU64>()).swap(0, Ordering::SeqCst) };
    let mut rest = incoming;
    while rest != 0 {
        let sig = u64::from(rest.trailing_zeros()) + 1;
        rest &= rest - 1;
        // SAFETY: the boot page; a volatile copy of the monitor's words.
        let p: SigPosted = unsafe { addr_of_mut!((*b).sig_posted[(sig - 1) as usize]).read_volatile() };
        let mut info = [0u64; 16];
        info[0] = sig;
        info[1] = p.code as u32 as u64;
        info[2] = u64::from(p.pid) | u64::from(p.uid) << 32;
        info[3] = p.value;
        post(sig, &info);
    }
    refresh_attention();
}

// ---------------------------------------------------------------------------
// Delivery.

/// How a system call the program made ended, for the restart rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Restart {
    /// The call's number.
    pub nr: u64,
    /// How far back `rip` goes to make the call again (the trampoline's
    /// `call`, 5 bytes; a trapped `syscall`, 2).
    pub back: u64,
}

/// Whether call `nr` is restarted after a handler with `SA_RESTART` (the
/// calls Linux restarts; sleeps, waits for signals and the polls return
/// `EINTR` whatever the flag).
fn restartable(nr: u64) -> bool {
    matches!(
        nr,
        nr::read
            | nr::write
            | nr::readv
            | nr::writev
            | nr::pread64
            | nr::pwrite64
            | nr::preadv
            | nr::pwritev
            | nr::open
            | nr::openat
            | nr::ioctl
            | nr::fcntl
            | nr::flock
            | nr::wait4
            | nr::waitid
            | nr::sendfile
            | nr::accept
            | nr::accept4
            | nr::recvfrom
            | nr::sendto
            | nr::recvmsg
            | nr::sendmsg
            | nr::futex
    )
}

/// Where the FP state of the interrupted program is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fp {
    /// In the registers (the libos never touches them).
    Live,
    /// In a kernel signal frame (process backend: the kernel reset the
    /// registers for the libos's handler): Linux's layout at this address.
    Saved(u64),
}

/// What a synchronous fault adds to the frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FaultInfo {
    pub trapno: u64,
    pub err: u64,
    pub cr2: u64,
    /// The fault's own signal (0: none) and `siginfo` (a copy in the
    /// caller's frame, alive while `deliver` runs), delivered first and
    /// never through the process-wide pending set: a fault is this
    /// thread's, and two threads faulting at once must not take each
    /// other's `si_addr` (the set holds one `siginfo` per signal). A
    /// pointer, not the words: `deliver` may run on the program's own
    /// stack just below a frame it was handed (`rt_sigreturn`), so its
    /// frame stays as small as it was.
    pub sig: u64,
    pub info: *const [u64; 16],
}

impl Default for FaultInfo {
    fn default() -> FaultInfo {
        FaultInfo { trapno: 0, err: 0, cr2: 0, sig: 0, info: core::ptr::null() }
    }
}

/// Delivers what can be delivered onto `ctx`: each handler gets a frame on
/// the program's stack (or its alternate stack) and `ctx` becomes the
/// handler's entry state; a default action that terminates ends the
/// program here. `restart`: `ctx` is the return of a call that the
/// monitor interrupted (`rax` = `-EINTR`).
/// Returns the `ucontext` address of the first frame built (the one whose
/// return resumes the interrupted program), if any.
pub(crate) fn deliver(ctx: &mut Ctx, fp: Fp, restart: Option<Restart>, fault: FaultInfo) -> Option<u64> {
    take_incoming();
    let mut restart = restart;
    let mut fp = fp;
    let mut first = None;
    let mut own = (fault.sig != 0 && !fault.info.is_null()).then_some(fault.sig);
    // One copy of a pending signal's words (another thread may post the
    // same signal meanwhile), as small a frame as before: this may run on
    // the program's stack right below a frame it was handed.
    let mut copy = [0u64; 16];
    for _ in 0..NSIG {
        // SAFETY: see `Book`.
        let book = unsafe { BOOK.get() };
        let (sig, info): (u64, &[u64; 16]) = match own.take() {
            // The caller checked its handler and this thread's mask.
            // SAFETY: `FaultInfo::info` points at the caller's copy, alive
            // for this call (checked non-null above).
            Some(s) => (s, unsafe { &*fault.info }),
            None => {
                let ready = pending_here() & !MASK.load(Ordering::SeqCst);
                if ready == 0 {
                    break;
                }
                // Synchronous signals first, as Linux does (then the lowest number).
                let sync = ready
                    & (bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS));
                let pick = if sync != 0 { sync } else { ready };
                let sig = u64::from(pick.trailing_zeros()) + 1;
                // Another thread may have taken it meanwhile: look again.
                if !take(sig, &mut copy) {
                    continue;
                }
                (sig, &copy)
            }
        };
        let act = book.actions[(sig - 1) as usize];
        match act.handler {
            SIG_IGN => continue,
            SIG_DFL if default_ignores(sig) => continue,
            SIG_DFL if default_stops(sig) => {
                // Stopped until continued; then what came meanwhile (the
                // SIGCONT, with its handler) is delivered here as well.
                stop_self(sig);
                take_incoming();
                continue;
            }
            SIG_DFL => terminate(sig, info, ctx),
            _ => {}
        }
        if let Some(r) = restart.take() {
            if act.flags & SA_RESTART != 0 && restartable(r.nr) {
                ctx.rax = r.nr;
                ctx.rip = ctx.rip.wrapping_sub(r.back);
            }
        }
        let f = if sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP {
            fault
        } else {
            FaultInfo::default()
        };
        if !build_frame(ctx, sig, &act, info, fp, &f) {
            // No room for the frame (bad stack): Linux forces SIGSEGV.
            terminate(SIGSEGV, &own_info(SIGSEGV, si_code::SI_KERNEL), ctx);
        }
        first = first.or(Some(ctx.rdx));
        fp = Fp::Live;
        let old = MASK.load(Ordering::SeqCst);
        let mut mask = old | act.mask;
        if act.flags & SA_NODEFER == 0 {
            mask |= bit(sig);
        }
        MASK.store(mask & !UNBLOCKABLE, Ordering::SeqCst);
        if act.flags & SA_RESETHAND != 0 {
            book.actions[(sig - 1) as usize] = DFL;
        }
    }
    if let Some(r) = restart {
        // Interrupted, but no handler ran: Linux restarts the call.
        ctx.rax = r.nr;
        ctx.rip = ctx.rip.wrapping_sub(r.back);
    }
    refresh_attention();
    first
}

/// The default action of a terminating signal: the program ends with 128 +
/// signal (recorded for the monitor's report, like a fault).
fn terminate(sig: u64, info: &[u64; 16], ctx: &Ctx) -> ! {
    let addr = if matches!(sig, SIGSEGV | SIGBUS | SIGILL | SIGFPE) { info[2] } else { 0 };
    let rip = if addr != 0 { ctx.rip } else { 0 };
    super::record_fault(sig, addr, rip);
    crate::sys::exit_group(128 + sig)
}

/// The calling thread's alternate stack (`ss_sp`, `ss_flags`, `ss_size`).
fn altstack() -> [u64; 3] {
    let b = &super::thread::current().altstack;
    [b[0].load(Ordering::Relaxed), b[1].load(Ordering::Relaxed), b[2].load(Ordering::Relaxed)]
}

fn store_altstack(s: [u64; 3]) {
    for (w, v) in super::thread::current().altstack.iter().zip(s) {
        w.store(v, Ordering::Relaxed);
    }
}

/// Whether `sp` is on the calling thread's alternate stack.
fn on_altstack(sp: u64) -> bool {
    let [base, flags, size] = altstack();
    flags & SS_DISABLE == 0 && sp > base && sp - base <= size
}

/// Builds the `rt_sigframe` for `sig` and points `ctx` at the handler.
/// `false` when the stack cannot hold it.
fn build_frame(ctx: &mut Ctx, sig: u64, act: &KSigaction, info: &[u64; 16], fp: Fp, f: &FaultInfo) -> bool {
    let alt = altstack();
    let on_alt = on_altstack(ctx.rsp);
    let mut sp = ctx.rsp;
    let mut stack = alt;
    stack[1] = if on_alt { SS_ONSTACK } else { stack[1] & (SS_DISABLE | SS_AUTODISARM) };
    let switch = act.flags & SA_ONSTACK != 0 && alt[1] & SS_DISABLE == 0 && !on_alt;
    if switch {
        sp = alt[0].wrapping_add(alt[2]);
        if alt[1] & SS_AUTODISARM != 0 {
            store_altstack([0, SS_DISABLE, 0]);
        }
    } else {
        sp = sp.wrapping_sub(128);
    }
    // The libos may be running on this very stack (the entry paths, and a
    // kernel handler of a thread without the private stack): then the
    // frame goes well below the code building it. Never on a switch to the
    // alternate stack: the libos is not running there (the program was
    // not), and an alternate stack just above the program's stack (Go's
    // heap-allocated ones) would otherwise move the frame off it.
    let here = current_sp();
    let private = core::ptr::addr_of!(CABIN_PRIVATE_STACK) as u64;
    let on_private = (private..private + PRIVATE_STACK as u64).contains(&here);
    if !switch && !on_private && here < sp && sp - here < 1 << 20 {
        sp = here - FRAME_GAP;
    }
    let fp_size = match fp {
        Fp::Live => fp_frame_size(),
        Fp::Saved(src) => saved_fp_size(src),
    } as u64;
    let fpstate = sp.wrapping_sub(fp_size) & !63;
    let frame = (fpstate.wrapping_sub(FRAME_SIZE as u64) & !15).wrapping_sub(8);
    if !(0x1_0000..0x0000_8000_0000_0000).contains(&frame) || act.flags & SA_RESTORER == 0 {
        return false;
    }
    let uc = frame + 8;
    let si = uc + UC_SIZE as u64;
    let mut g = [0u64; 23];
    g[REG_R8] = ctx.r8;
    g[REG_R9] = ctx.r9;
    g[REG_R10] = ctx.r10;
    g[REG_R11] = ctx.r11;
    g[REG_R12] = ctx.r12;
    g[REG_R13] = ctx.r13;
    g[REG_R14] = ctx.r14;
    g[REG_R15] = ctx.r15;
    g[REG_RDI] = ctx.rdi;
    g[REG_RSI] = ctx.rsi;
    g[REG_RBP] = ctx.rbp;
    g[REG_RBX] = ctx.rbx;
    g[REG_RDX] = ctx.rdx;
    g[REG_RAX] = ctx.rax;
    g[REG_RCX] = ctx.rcx;
    g[REG_RSP] = ctx.rsp;
    g[REG_RIP] = ctx.rip;
    g[REG_EFL] = ctx.rflags;
    g[REG_CSGSFS] = (ctx.cs & 0xffff) | (ctx.ss & 0xffff) << 48;
    g[REG_ERR] = f.err;
    g[REG_TRAPNO] = f.trapno;
    g[REG_OLDMASK] = MASK.load(Ordering::SeqCst);
    g[REG_CR2] = f.cr2;
    let xstate = FP_INFO.load(Ordering::Relaxed) >> 63 != 0;
    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xstate { UC_FP_XSTATE } else { 0 };
    // SAFETY: the program's own stack (or alternate stack), as the kernel
    // would write it; an address the program made bad faults the program in
    // its own domain (a fault inside the libos ends it with SIGSEGV).
    unsafe {
        let w = |a: u64, v: u64| (a as *mut u64).write_volatile(v);
        match fp {
            Fp::Live => fp_save(fpstate as *mut u8),
            Fp::Saved(src) => {
                core::ptr::copy_nonoverlapping(src as *const u8, fpstate as *mut u8, fp_size as usize)
            }
        }
        w(frame, act.restorer);
        w(uc + UC_FLAGS as u64, uc_flags);
        w(uc + 8, 0);
        for (i, v) in stack.iter().enumerate() {
            w(uc + (UC_STACK + 8 * i) as u64, *v);
        }
        for (i, v) in g.iter().enumerate() {
            w(uc + (UC_GREGS + 8 * i) as u64, *v);
        }
        w(uc + UC_FPSTATE as u64, fpstate);
        for i in 0..8 {
            w(uc + (UC_FPSTATE + 8 + 8 * i) as u64, 0);
        }
        w(uc + UC_SIGMASK as u64, MASK.load(Ordering::SeqCst));
        for (i, v) in info.iter().enumerate() {
            w(si + 8 * i as u64, *v);
        }
    }
    ctx.rip = act.handler;
    ctx.rsp = frame;
    ctx.rdi = sig;
    ctx.rsi = si;
    ctx.rdx = uc;
    ctx.rax = 0;
    ctx.rflags &= !(RFLAGS_TF | RFLAGS_DF | RFLAGS_RF);
    true
}

/// Room left between the libos's own stack and a frame it builds below
/// it on the same stack (its deepest use while building is far less).
const FRAME_GAP: u64 = 8192;

fn current_sp() -> u64 {
    let sp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Bytes of a kernel frame's FP state at `src` (its `_fpx_sw_bytes`).
fn saved_fp_size(src: u64) -> usize {
    // SAFETY: the kernel's own frame for the libos's handler.
    let (magic, ext) = unsafe {
        let sw = (src as *const u8).add(SW_BYTES);
        (sw.cast::<u32>().read(), sw.add(4).cast::<u32>().read() as usize)
    };
    if magic == FP_XSTATE_MAGIC1 && (FX_SIZE + XSAVE_HEADER..=FP_MAX).contains(&ext) {
        ext
    } else {
        FX_SIZE
    }
}

/// The program's `rt_sigreturn`, with `uc` its stack pointer at the call
/// (the `ucontext` of the frame whose return address its handler popped):
/// the registers, mask and alternate stack come back from the frame, and
/// whatever the restored mask lets through is delivered at once.
pub(crate) fn sigreturn(uc: u64, ctx: &mut Ctx) {
    let mut raw = [0u64; UC_SIZE / 8];
    // SAFETY: the program's own stack; a bad pointer faults the program.
    unsafe { core::ptr::copy_nonoverlapping(uc as *const u64, raw.as_mut_ptr(), raw.len()) };
    let g = |r: usize| raw[UC_GREGS / 8 + r];
    ctx.r8 = g(REG_R8);
    ctx.r9 = g(REG_R9);
    ctx.r10 = g(REG_R10);
    ctx.r11 = g(REG_R11);
    ctx.r12 = g(REG_R12);
    ctx.r13 = g(REG_R13);
    ctx.r14 = g(REG_R14);
    ctx.r15 = g(REG_R15);
    ctx.rdi = g(REG_RDI);
    ctx.rsi = g(REG_RSI);
    ctx.rbp = g(REG_RBP);
    ctx.rbx = g(REG_RBX);
    ctx.rdx = g(REG_RDX);
    ctx.rax = g(REG_RAX);
    ctx.rcx = g(REG_RCX);
    ctx.rsp = g(REG_RSP);
    ctx.rip = g(REG_RIP);
    // Only flags ring 3 may set; CS and SS stay the program's own (ctx).
    ctx.rflags = (g(REG_EFL) & USER_RFLAGS) | 0x202;
    let stack = [raw[UC_STACK / 8], raw[UC_STACK / 8 + 1], raw[UC_STACK / 8 + 2]];
    let sp_now = uc;
    if !on_altstack(sp_now) {
        let _ = set_altstack(&stack);
    }
    MASK.store(raw[UC_SIGMASK / 8] & !UNBLOCKABLE, Ordering::SeqCst);
    // What Linux refuses ends the program with SIGSEGV here too: another
    // code segment than the program's own (Linux forces RPL 3 and the
    // return then faults), a non-canonical `rip`/`rsp` (the return
    // faults), an FP state with reserved MXCSR bits (a bad frame). The
    // registers restored below are ring-3 state the program could set
    // itself; CS and SS stay the current ones whatever the frame says.
    let cs = g(REG_CSGSFS) & 0xffff;
    if cs != ctx.cs & 0xffff || ctx.rip >= 0x0000_8000_0000_0000 || ctx.rsp >= 0x0000_8000_0000_0000 {
        terminate(SIGSEGV, &own_info(SIGSEGV, si_code::SI_KERNEL), ctx);
    }
    let fpstate = raw[UC_FPSTATE / 8];
    if fpstate != 0 {
        // SAFETY: the program's own frame; a bad pointer faults the program.
        let mxcsr = unsafe { ((fpstate + 24) as *const u32).read_unaligned() };
        if mxcsr & !0xffff != 0 {
            terminate(SIGSEGV, &own_info(SIGSEGV, si_code::SI_KERNEL), ctx);
        }
    }
    fp_restore(fpstate);
    // This runs on the program's stack right below the frame it was handed
    // (which may sit just above data the program cares about): the full
    // delivery path, the deepest, only when something can be delivered.
    take_incoming();
    if pending_here() & !MASK.load(Ordering::SeqCst) == 0 {
        return;
    }
    deliver(ctx, Fp::Live, None, FaultInfo::default());
}

// ---------------------------------------------------------------------------
// The program's calls.

/// `rt_sigaction`.
pub(super) fn sigaction(sig: u64, act: u64, oact: u64, size: u64) -> i64 {
    if size != 8 || sig == 0 || sig > NSIG {
        return -errno::EINVAL;
    }
    // The kernel's SIGSYS stays the libos's (its trap path): a program's
    // disposition for SIGSYS is only kept in the book, for the SIGSYS it
    // sends itself (Go's runtime installs a handler for every signal and
    // stops if one is refused; docs/signals.md).
    if act != 0 && (sig == SIGKILL || sig == SIGSTOP) {
        return -errno::EINVAL;
    }
    // SAFETY: see `Book`.
    let book = unsafe { BOOK.get() };
    let old = book.actions[(sig - 1) as usize];
    if act != 0 {
        // SAFETY: the program's own pointer, read as the kernel would; a bad
        // one faults in the program's own domain.
        let mut new = unsafe { (act as *const KSigaction).read_unaligned() };
        new.mask &= !UNBLOCKABLE;
        book.actions[(sig - 1) as usize] = new;
        publish_handled();
        // Setting a pending signal to be ignored discards it (POSIX).
        if new.handler == SIG_IGN || (new.handler == SIG_DFL && default_ignores(sig)) {
            PENDING.fetch_and(!bit(sig), Ordering::SeqCst);
            QUEUE.discard(sig);
        }
    }
    if oact != 0 {
        // SAFETY: as above.
        unsafe { (oact as *mut KSigaction).write_unaligned(old) };
    }
    0
}

/// `rt_sigprocmask`.
pub(super) fn sigprocmask(how: u64, set: u64, oset: u64, size: u64) -> i64 {
    if size != 8 {
        return -errno::EINVAL;
    }
    let old = MASK.load(Ordering::SeqCst);
    if set != 0 {
        // SAFETY: the program's own pointer (see `sigaction`).
        let s = unsafe { (set as *const u64).read_unaligned() };
        let new = match how {
            0 => old | s,
            1 => old & !s,
            2 => s,
            _ => return -errno::EINVAL,
        };
        MASK.store(new & !UNBLOCKABLE, Ordering::SeqCst);
        refresh_attention();
    }
    if oset != 0 {
        // SAFETY: as above.
        unsafe { (oset as *mut u64).write_unaligned(old) };
    }
    0
}

/// `rt_sigpending`: the pending signals that are blocked.
pub(super) fn sigpending(set: u64, size: u64) -> i64 {
    if size != 8 {
        return -errno::EINVAL;
    }
    take_incoming();
    let p = pending_here() & MASK.load(Ordering::SeqCst);
    // SAFETY: the program's own pointer (see `sigaction`).
    unsafe { (set as *mut u64).write_unaligned(p) };
    0
}

fn set_altstack(ss: &[u64; 3]) -> i64 {
    // `ss_flags` is an `int`: the padding after it is not the program's word.
    let flags = ss[1] & 0xffff_ffff;
    if flags & !(SS_DISABLE | SS_ONSTACK | SS_AUTODISARM) != 0 {
        return -errno::EINVAL;
    }
    if flags & SS_DISABLE != 0 {
        store_altstack([0, SS_DISABLE, 0]);
        return 0;
    }
    if ss[2] < MINSIGSTKSZ {
        return -errno::ENOMEM;
    }
    store_altstack([ss[0], flags & SS_AUTODISARM, ss[2]]);
    0
}

/// `sigaltstack`; `sp` is the program's stack pointer at the call.
pub(super) fn sigaltstack(ss: u64, old: u64, sp: u64) -> i64 {
    let on = on_altstack(sp);
    let mut prev = altstack();
    prev[1] = if on { SS_ONSTACK } else { prev[1] };
    if ss != 0 {
        // SAFETY: the program's own pointer (see `sigaction`).
        let new = unsafe { (ss as *const [u64; 3]).read_unaligned() };
        if on {
            return -errno::EPERM;
        }
        let r = set_altstack(&new);
        if r != 0 {
            return r;
        }
    }
    if old != 0 {
        // SAFETY: as above.
        unsafe { (old as *mut [u64; 3]).write_unaligned(prev) };
    }
    0
}

/// `rt_sigsuspend` and `pause`: with `mask` (if any) in force, waits until a
/// signal is delivered; returns `EINTR`. The mask the handler's frame
/// restores is the one from before the call.
pub(super) fn suspend(mask: Option<u64>) -> i64 {
    let old = MASK.load(Ordering::SeqCst);
    if let Some(m) = mask {
        MASK.store(m & !UNBLOCKABLE, Ordering::SeqCst);
    }
    loop {
        take_incoming();
        if pending_here() & !MASK.load(Ordering::SeqCst) != 0 {
            break;
        }
        // Only the monitor can bring a signal now (this is the one
        // thread): wait in the monitor until it posts one.
        let r = super::forward_wait(nr::pause, &[0; 6]);
        if r != -errno::EINTR && r != 0 {
            MASK.store(old, Ordering::SeqCst);
            return r;
        }
    }
    if mask.is_some() {
        super::thread::current().suspend_restore.store(old | 1 << 63, Ordering::SeqCst);
    }
    refresh_attention();
    -errno::EINTR
}

/// The signal-mask argument of a wait (`ppoll`, `pselect6`, `epoll_pwait`,
/// `epoll_pwait2`): the mask's address and `sigsetsize`. `None`: no mask
/// (a null pointer, or `pselect6` without its sixth argument).
fn wait_mask_arg(nr: u64, a: &[u64; 6]) -> Option<(u64, u64)> {
    let (ptr, size) = match nr {
        nr::ppoll => (a[3], a[4]),
        nr::epoll_pwait | nr::epoll_pwait2 => (a[4], a[5]),
        nr::pselect6 if a[5] != 0 => {
            // SAFETY: the program's own pointer, read once as the kernel
            // would; a bad one faults in the program's own domain.
            let w = unsafe { (a[5] as *const [u64; 2]).read_unaligned() };
            (w[0], w[1])
        }
        _ => return None,
    };
    (ptr != 0).then_some((ptr, size))
}

/// A wait with a signal mask (`ppoll`, `pselect6`, `epoll_pwait`,
/// `epoll_pwait2`): the mask is the thread's for the duration of the wait,
/// as Linux installs it. A signal it leaves open that is pending already, or
/// arrives during the wait (the monitor interrupts the wait), ends it with
/// `EINTR` and its handler runs on the way out, its frame restoring the
/// mask from before the call (as `rt_sigsuspend`); otherwise the old mask
/// comes back when the wait ends. `None`: no mask (served as usual). A
/// `sigsetsize` other than 8 is left to the monitor (`EINVAL`).
pub(super) fn wait_with_mask(nr: u64, a: &[u64; 6], flags: u32, site: u64) -> Option<i64> {
    let (ptr, size) = wait_mask_arg(nr, a)?;
    if size != 8 {
        return None;
    }
    // SAFETY: as in `wait_mask_arg`.
    let new = unsafe { (ptr as *const u64).read_unaligned() } & !UNBLOCKABLE;
    let old = MASK.load(Ordering::SeqCst);
    MASK.store(new, Ordering::SeqCst);
    take_incoming();
    let r = if pending_here() & !new != 0 { -errno::EINTR } else { super::forward_from(nr, a, flags, site) };
    if r == -errno::EINTR && pending_here() & !MASK.load(Ordering::SeqCst) != 0 {
        // Delivered on the way out under `new`; the first frame restores `old`.
        super::thread::current().suspend_restore.store(old | 1 << 63, Ordering::SeqCst);
        refresh_attention();
        return Some(-errno::EINTR);
    }
    MASK.store(old, Ordering::SeqCst);
    refresh_attention();
    Some(r)
}

/// Delivers onto `ctx`; after a `rt_sigsuspend`, the program's own mask
/// comes back: it is what the first handler frame's `uc_sigmask` holds (as
/// Linux's `saved_sigmask`), or the mask again if no handler ran.
pub(crate) fn suspend_epilogue(ctx: &mut Ctx, fp: Fp, restart: Option<Restart>) {
    let saved = super::thread::current().suspend_restore.swap(0, Ordering::SeqCst);
    let first = deliver(ctx, fp, restart, FaultInfo::default());
    if saved >> 63 == 0 {
        return;
    }
    let original = saved & !(1 << 63) & !UNBLOCKABLE;
    match first {
        // SAFETY: the frame just built on the program's stack.
        Some(uc) => unsafe { ((uc + UC_SIGMASK as u64) as *mut u64).write_volatile(original) },
        None => {
            MASK.store(original, Ordering::SeqCst);
            refresh_attention();
        }
    }
}

/// `rt_sigtimedwait` for signals already pending (or posted by the monitor
/// meanwhile): takes one of `set` and returns its number; otherwise waits in
/// the monitor (`pause`) unless `timeout` is zero (`EAGAIN`).
pub(super) fn sigtimedwait(set: u64, info: u64, timeout: u64, size: u64) -> i64 {
    if size != 8 {
        return -errno::EINVAL;
    }
    // SAFETY: the program's own pointers (see `sigaction`).
    let want = unsafe { (set as *const u64).read_unaligned() } & !UNBLOCKABLE;
    let zero_wait = timeout != 0 && {
        // SAFETY: as above.
        let ts = unsafe { (timeout as *const [u64; 2]).read_unaligned() };
        ts == [0, 0]
    };
    let mut waited = false;
    loop {
        take_incoming();
        let p = pending_here() & want;
        if p != 0 {
            let sig = u64::from(p.trailing_zeros()) + 1;
            let mut i = [0u64; 16];
            if !take(sig, &mut i) {
                continue;
            }
            refresh_attention();
            if info != 0 {
                // SAFETY: as above.
                unsafe { (info as *mut [u64; 16]).write_unaligned(i) };
            }
            return sig as i64;
        }
        if zero_wait || waited {
            return -errno::EAGAIN;
        }
        // Wait in the monitor: for a signal, or at most the timeout (a
        // sleep the monitor interrupts when it posts one). A signal the
        // program does not wait for and keeps blocked restarts the whole
        // timeout (docs/signals.md).
        let r = if timeout != 0 {
            const CLOCK_MONOTONIC: u64 = 1;
            super::forward_wait(nr::clock_nanosleep, &[CLOCK_MONOTONIC, 0, timeout, 0, 0, 0])
        } else {
            super::forward_wait(nr::pause, &[0; 6])
        };
        if r == 0 && timeout != 0 {
            // The timeout passed: a last look at what is pending.
            waited = true;
            continue;
        }
        if r != -errno::EINTR && r != 0 {
            return r;
        }
        if pending_here() & !MASK.load(Ordering::SeqCst) & !want != 0 {
            return -errno::EINTR;
        }
    }
}

// ---------------------------------------------------------------------------
// Process backend: the libos's kernel handlers.

const NR_RT_SIGACTION: u64 = 13;
const NR_SIGALTSTACK: u64 = 131;

/// The signals another host process may send a process-backend child: the
/// libos takes them as posted signals (with the kernel's `siginfo`).
const FORWARDED: [u64; 9] = [SIGHUP, 2, 3, 10, 12, 14, 15, SIGABRT, 26];

/// The signal the monitor wakes a process-backend child with after it
/// posted signals in the boot page (`cabin_abi::boot::WAKE_SIGNAL`): never
/// a signal of the program's itself.
const WAKE: u64 = cabin_abi::boot::WAKE_SIGNAL as u64;

/// Installs the SIGSYS, fault and forwarded-signal handlers, all on the
/// private stack. `false` if the kernel refused.
fn install() -> bool {
    // The stack static is only ever used as raw memory by the kernel and
    // the entry paths; taking its address creates no reference.
    let base = core::ptr::addr_of_mut!(CABIN_PRIVATE_STACK) as u64;
    let ss = [base, 0, PRIVATE_STACK as u64];
    // SAFETY: sigaltstack only reads `ss`.
    if unsafe { syscall6(NR_SIGALTSTACK, &[&ss as *const [u64; 3] as u64, 0, 0, 0, 0, 0]) } != 0 {
        return false;
    }
    use crate::arch::x86_64::entry::{cabin_kernel_async, cabin_kernel_fault, cabin_kernel_sigsys};
    let restorer = restore_rt as extern "C" fn() as usize as u64;
    let flags = SA_SIGINFO | SA_RESTORER | SA_ONSTACK;
    let sys = KSigaction {
        handler: cabin_kernel_sigsys as unsafe extern "C" fn() as usize as u64,
        flags: flags | SA_NODEFER,
        restorer,
        mask: 0,
    };
    let fault = KSigaction {
        handler: cabin_kernel_fault as unsafe extern "C" fn() as usize as u64,
        flags,
        restorer,
        mask: 0,
    };
    let asynchronous = KSigaction {
        handler: cabin_kernel_async as unsafe extern "C" fn() as usize as u64,
        flags,
        restorer,
        mask: 0,
    };
    let mut ok = set(SIGSYS, &sys);
    for s in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP] {
        ok &= set(s, &fault);
    }
    for s in FORWARDED.into_iter().chain([WAKE]) {
        ok &= set(s, &asynchronous);
    }
    ok
}

fn set(sig: u64, act: &KSigaction) -> bool {
    let args = [sig, act as *const KSigaction as u64, 0, 8, 0, 0];
    // SAFETY: installs a handler of this module; the kernel only reads `act`.
    unsafe { syscall6(NR_RT_SIGACTION, &args) == 0 }
}

/// The `sa_restorer` of the libos's kernel handlers, which x86-64 Linux
/// requires but which is never reached: every handler returns through
/// `arch::x86_64::entry::cabin_kernel_return`, never the host's
/// `rt_sigreturn` (the seccomp filter kills it).
#[unsafe(naked)]
extern "C" fn restore_rt() {
    core::arch::naked_asm!("ud2")
}

/// What `cabin_kernel_return` resumes from, below the kernel's frame: the
/// interrupted context and the signal mask to put back.
#[repr(C)]
pub struct KernelReturn {
    /// The context, as the `iretq` path pops it.
    pub ctx: Ctx,
    /// The frame's `uc_sigmask`.
    pub mask: u64,
    /// Keeps the size a multiple of 16.
    pub pad: u64,
}

/// Prepares the return from a kernel handler (called by
/// `cabin_kernel_return`, which then restores the mask and resumes `out`):
/// copies the context and mask of the kernel's `ucontext` once, and
/// restores the FP state from its `fpstate`.
///
/// # Safety
///
/// `uc` must be the kernel's `ucontext` of the handler that is returning;
/// `out` writable. The frame is on the thread's private stack, which other
/// threads of the program can write: whatever it holds is only ever
/// resumed in ring 3, and the FP restore cannot load PKRU.
pub(crate) unsafe extern "C" fn cabin_kernel_prepare(uc: *mut u8, out: &mut KernelReturn) {
    // SAFETY: by the contract.
    let (mut ctx, mask, fp) = unsafe {
        (
            ctx_from_kernel(uc),
            uc.add(UC_SIGMASK).cast::<u64>().read_volatile(),
            uc.add(UC_FPSTATE).cast::<u64>().read_volatile(),
        )
    };
    ctx.rflags = (ctx.rflags & USER_RFLAGS) | 0x202;
    // The interrupted code segment (a program may run 32-bit code: `int
    // 0x80` from compat mode comes back to compat mode), if it is a ring-3
    // selector: an `iretq` in ring 3 can only ever reach ring 3, and a
    // selector that is not a code segment faults there (the program ends).
    let frame_cs = ctx.cs;
    own_segments(&mut ctx);
    if frame_cs & 3 == 3 {
        ctx.cs = frame_cs;
    }
    out.ctx = ctx;
    out.mask = mask;
    out.pad = 0;
    kernel_fp_restore(fp);
}

/// Restores the FP/SSE/AVX state from a kernel frame's `fpstate` (Linux's
/// layout, written by the kernel for this handler), in place: an `xrstor`
/// of XCR0's features without PKRU, followed by the PKRU check, when the
/// frame says it is an XSAVE area, else `fxrstor`. A frame another thread
/// scribbled on can at worst fault here (the program ends: a fault in the
/// libos), never load PKRU.
fn kernel_fp_restore(fp: u64) {
    if fp == 0 {
        return;
    }
    if !fp.is_multiple_of(64) {
        crate::die(b"cabin: kernel signal frame with a misaligned FP state\n");
    }
    let p = fp as *const u8;
    let features = KERNEL_FP_FEATURES.load(Ordering::Relaxed);
    // SAFETY: the kernel's fpstate of this handler's frame (at least the
    // 512-byte legacy area; an XSAVE area when magic1 is there).
    unsafe {
        if features != 0 && p.add(SW_BYTES).cast::<u32>().read_volatile() == FP_XSTATE_MAGIC1 {
            crate::arch::x86_64::fpu::xrstor(p, features);
        } else {
            crate::arch::x86_64::fpu::fxrstor(p);
        }
    }
}

fn greg(uc: *mut u8, r: usize) -> *mut u64 {
    uc.wrapping_add(UC_GREGS + 8 * r).cast()
}

/// The program's context from a kernel `ucontext`.
///
/// # Safety
///
/// `uc` must be the kernel's `ucontext` for one of the libos's handlers.
unsafe fn ctx_from_kernel(uc: *mut u8) -> Ctx {
    // SAFETY: by the contract.
    unsafe {
        let g = |r: usize| greg(uc, r).read();
        let csgsfs = g(REG_CSGSFS);
        Ctx {
            r8: g(REG_R8),
            r9: g(REG_R9),
            r10: g(REG_R10),
            r11: g(REG_R11),
            r12: g(REG_R12),
            r13: g(REG_R13),
            r14: g(REG_R14),
            r15: g(REG_R15),
            rdi: g(REG_RDI),
            rsi: g(REG_RSI),
            rbp: g(REG_RBP),
            rbx: g(REG_RBX),
            rdx: g(REG_RDX),
            rax: g(REG_RAX),
            rcx: g(REG_RCX),
            rsp: g(REG_RSP),
            rip: g(REG_RIP),
            rflags: g(REG_EFL),
            cs: csgsfs & 0xffff,
            ss: csgsfs >> 48,
        }
    }
}

/// Writes `ctx` back into a kernel `ucontext` (the kernel's return then
/// resumes it; it keeps CS/SS and sanitises RFLAGS itself).
///
/// # Safety
///
/// As for [`ctx_from_kernel`].
unsafe fn ctx_to_kernel(uc: *mut u8, c: &Ctx) {
    // SAFETY: by the contract.
    unsafe {
        let w = |r: usize, v: u64| greg(uc, r).write(v);
        w(REG_R8, c.r8);
        w(REG_R9, c.r9);
        w(REG_R10, c.r10);
        w(REG_R11, c.r11);
        w(REG_R12, c.r12);
        w(REG_R13, c.r13);
        w(REG_R14, c.r14);
        w(REG_R15, c.r15);
        w(REG_RDI, c.rdi);
        w(REG_RSI, c.rsi);
        w(REG_RBP, c.rbp);
        w(REG_RBX, c.rbx);
        w(REG_RDX, c.rdx);
        w(REG_RAX, c.rax);
        w(REG_RCX, c.rcx);
        w(REG_RSP, c.rsp);
        w(REG_RIP, c.rip);
        w(REG_EFL, c.rflags);
    }
}

fn in_libos(rip: u64) -> bool {
    let [start, end] = crate::arch::x86_64::entry::libos_text();
    (start..end).contains(&rip)
}

/// Delivers on a kernel frame: the program's context is in `uc`.
///
/// # Safety
///
/// As for [`ctx_from_kernel`].
unsafe fn deliver_on_kernel_frame(uc: *mut u8, restart: Option<Restart>, fault: Option<FaultInfo>) {
    // SAFETY: by the contract.
    let mut ctx = unsafe { ctx_from_kernel(uc) };
    // SAFETY: as above.
    let fp = unsafe { (uc.add(UC_FPSTATE).cast::<u64>()).read() };
    let fp = if fp == 0 { Fp::Live } else { Fp::Saved(fp) };
    match fault {
        Some(f) => {
            deliver(&mut ctx, fp, None, f);
        }
        None => suspend_epilogue(&mut ctx, fp, restart),
    }
    // SAFETY: as above.
    unsafe { ctx_to_kernel(uc, &ctx) };
}

/// SIGSYS: a system call the seccomp filter trapped.
pub(crate) extern "C" fn on_sigsys(_sig: i32, info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid siginfo and ucontext for an
    // SA_SIGINFO handler; offsets are the x86-64 Linux ABI.
    unsafe {
        let nr = info.add(SI_SYSCALL).cast::<i32>().read() as u32 as u64;
        let rip = greg(uc, REG_RIP).read();
        let site = super::trap_site(rip);
        if info.add(SI_ARCH).cast::<u32>().read() == AUDIT_ARCH_I386 {
            // `int 0x80`: i386 numbers, arguments in ebx, ecx, edx, esi, edi, ebp.
            let low = |r: usize| greg(uc, r).read() & 0xffff_ffff;
            let args = [low(REG_RBX), low(REG_RCX), low(REG_RDX), low(REG_RSI), low(REG_RDI), low(REG_RBP)];
            let r = match i386_to_x86_64(nr) {
                Some(n) => super::serve(n, &args, true, site),
                None => -errno::ENOSYS,
            };
            greg(uc, REG_RAX).write(r as u64);
            return;
        }
        if nr == nr::rt_sigreturn && !in_libos(rip) {
            // A trapped `rt_sigreturn` (never reached: the filter kills the
            // process for a native one); kept for completeness.
            return;
        }
        let args = [
            greg(uc, REG_RDI).read(),
            greg(uc, REG_RSI).read(),
            greg(uc, REG_RDX).read(),
            greg(uc, REG_R10).read(),
            greg(uc, REG_R8).read(),
            greg(uc, REG_R9).read(),
        ];
        super::set_site_rsp(greg(uc, REG_RSP).read());
        let r = super::serve(nr, &args, true, site);
        greg(uc, REG_RAX).write(r as u64);
        if !in_libos(rip) && attention().load(Ordering::SeqCst) != 0 {
            let restart = take_interrupted(nr, r).map(|nr| Restart { nr, back: 2 });
            deliver_on_kernel_frame(uc, restart, None);
        }
    }
}

/// The call the monitor interrupted, if `r` is its `EINTR` and it came from
/// `ret` (cleared either way).
pub(crate) fn take_interrupted(nr: u64, r: i64) -> Option<u64> {
    let inr = super::thread::current().interrupted_call.swap(0, Ordering::SeqCst);
    (r == -errno::EINTR && inr == nr + 1).then_some(nr)
}

/// Call `nr` came back `EINTR` (the monitor interrupted it because it
/// posted a signal): `true` when a signal is there to be taken on the way
/// out, which then decides between `EINTR` and a restart (recorded for
/// [`take_interrupted`]); `false` when there is none (blocked or ignored):
/// the caller makes the call again.
/// Whether the monitor has posted a signal the libos has not taken yet.
pub(crate) fn incoming_waiting() -> bool {
    let b = boot();
    if b.is_null() {
        return false;
    }
    // SAFETY: the validated boot page; an atomic view of an aligned word.
    unsafe { (*addr_of_mut!((*b).sig_incoming).cast::<AtomicU64>()).load(Ordering::SeqCst) != 0 }
}

pub(crate) fn interrupted(nr: u64) -> bool {
    take_incoming();
    if attention().load(Ordering::SeqCst) == 0 {
        return false;
    }
    super::thread::current().interrupted_call.store(nr + 1, Ordering::SeqCst);
    true
}

/// The x86-64 number of the few i386 system calls the trap path translates.
fn i386_to_x86_64(nr: u64) -> Option<u64> {
    // i386 numbers (asm/unistd_32.h) on the left; x86-64 from the table.
    Some(match nr {
        1 => nr::exit,
        3 => nr::read,
        4 => nr::write,
        6 => nr::close,
        20 => nr::getpid,
        64 => nr::getppid,
        224 => nr::gettid,
        252 => nr::exit_group,
        _ => return None,
    })
}

/// A fault: the program's handler if it has one (and the signal is not
/// blocked), else the end of the program with 128 + signal.
pub(crate) extern "C" fn on_fault(sig: i32, info: *mut u8, uc: *mut u8) {
    let sig = sig as u64;
    // SAFETY: as for `on_sigsys`.
    let (addr, rip) = unsafe { (info.add(SI_ADDR).cast::<u64>().read(), greg(uc, REG_RIP).read()) };
    let handled = {
        // SAFETY: see `Book` (a fault in program code never interrupts a
        // libos update of the book).
        let act = unsafe { BOOK.get() }.actions[(sig - 1) as usize];
        act.handler != SIG_DFL && act.handler != SIG_IGN && MASK.load(Ordering::SeqCst) & bit(sig) == 0
    };
    if in_libos(rip) || !handled {
        super::record_fault(sig, addr, rip);
        // SAFETY: as above (`si_code`, an int at offset 8).
        super::record_fault_code(unsafe { info.add(SI_CODE).cast::<i32>().read() } as i64 as u64);
        crate::sys::exit_group(128 + sig)
    }
    let mut kinfo = [0u64; 16];
    // SAFETY: the kernel's siginfo, 128 bytes.
    unsafe { core::ptr::copy_nonoverlapping(info.cast::<u64>(), kinfo.as_mut_ptr(), 16) };
    // SAFETY: as above.
    let (trapno, err, cr2) =
        unsafe { (greg(uc, REG_TRAPNO).read(), greg(uc, REG_ERR).read(), greg(uc, REG_CR2).read()) };
    // SAFETY: the kernel's frame for this handler.
    unsafe { deliver_on_kernel_frame(uc, None, Some(FaultInfo { trapno, err, cr2, sig, info: &kinfo })) };
}

/// A signal from outside the child (the monitor forwards the ones sent to
/// `cabinc`; it posted their words in the boot page first) or from another
/// host process: posted, and delivered now unless the libos was running.
///
/// Returns the address of the resume window's [`KernelReturn`] when this
/// signal came in the resume window of an outer handler's return (that
/// return is abandoned): `cabin_kernel_return` resumes from that place
/// again rather than from a new one below this frame, so queued wake
/// signals taken one in the window of another cannot nest down the
/// alternate stack until it overflows. 0 otherwise.
pub(crate) extern "C" fn on_async(sig: i32, info: *mut u8, uc: *mut u8) -> u64 {
    let sig = sig as u64;
    let b = boot();
    // SAFETY: the validated boot page; an atomic view of an aligned word.
    let from_monitor = sig == WAKE
        || !b.is_null()
            && unsafe { (*addr_of_mut!((*b).sig_incoming).cast::<AtomicU64>()).load(Ordering::SeqCst) }
                & bit(sig)
                != 0;
    if !from_monitor {
        let mut kinfo = [0u64; 16];
        // SAFETY: the kernel's siginfo, 128 bytes.
        unsafe { core::ptr::copy_nonoverlapping(info.cast::<u64>(), kinfo.as_mut_ptr(), 16) };
        post(sig, &kinfo);
    }
    // SAFETY: as for `on_sigsys`.
    let mut rip = unsafe { greg(uc, REG_RIP).read() };
    // SAFETY: as above.
    let rsp = unsafe { greg(uc, REG_RSP).read() };
    let mut reuse = 0;
    if let Some(at) = crate::arch::x86_64::entry::resume_window_ctx(rip, rsp) {
        reuse = reusable_return(at, uc as u64);
        // A kernel handler's return had put the mask back and was resuming
        // the context in the `Ctx` at `at` (FP state and mask already
        // live): this signal interrupted that context, not the window.
        // The outer return is abandoned; what follows decides on the
        // context's own `rip` (program code, the exit window, the libos).
        // SAFETY: `at` is the `Ctx` of `cabin_kernel_return` on this
        // thread's stack, above this handler's frame (only read).
        unsafe {
            let c = (at as *const Ctx).read_volatile();
            ctx_to_kernel(uc, &c);
            let csgsfs = greg(uc, REG_CSGSFS);
            csgsfs.write((csgsfs.read() & !0xffff) | (c.cs & 0xffff));
            rip = c.rip;
        }
    }
    if crate::arch::x86_64::entry::in_exit_window(rip) {
        // Between the libos's last check and its `ret`: every register is
        // the program's (but rcx and r11, which the call clobbers anyway)
        // and the return address is at rsp. Resume as the program.
        // SAFETY: as above; rsp points at the trampoline's return address.
        unsafe {
            let rsp = greg(uc, REG_RSP).read();
            greg(uc, REG_RIP).write((rsp as *const u64).read());
            greg(uc, REG_RSP).write(rsp + 8);
        }
    } else if in_libos(rip) {
        // The libos looks at the attention word on its way out.
        refresh_attention();
        return reuse;
    }
    // SAFETY: the kernel's frame for this handler.
    unsafe { deliver_on_kernel_frame(uc, None, None) };
    reuse
}

/// `at` (a resume window's [`Ctx`]) as the place for this handler's
/// [`KernelReturn`] when it is one a kernel handler's return left there:
/// 16-aligned and above this handler's kernel frame `uc` on the same
/// stack (within [`PRIVATE_STACK`] of it), so the copy there neither
/// overlaps the return's own copy below the frame nor reaches far. A
/// program that jumped into the window with an `rsp` of its choosing gets
/// at most a write of its own context into its own domain's memory near
/// the libos stack, which it can write anyway; else 0 (a new place).
fn reusable_return(at: u64, uc: u64) -> u64 {
    let fits = at.is_multiple_of(16)
        && at > uc
        && at - uc < PRIVATE_STACK as u64
        && at.checked_add(core::mem::size_of::<KernelReturn>() as u64).is_some();
    if fits {
        at
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// Entry points called by the assembly (arch/x86_64/entry.rs).

/// The code and stack selectors ring 3 runs with now: the only ones a
/// context is ever resumed with.
fn own_segments(ctx: &mut Ctx) {
    let (cs, ss): (u64, u64);
    // SAFETY: reads two segment registers.
    unsafe {
        core::arch::asm!("mov {0:e}, cs", "mov {1:e}, ss", out(reg) cs, out(reg) ss,
            options(nomem, nostack, preserves_flags))
    };
    ctx.cs = cs;
    ctx.ss = ss;
}

/// The exit path found the attention word set: `ctx` is the program at the
/// return of call `nr` (its `rax` the result).
pub(crate) extern "C" fn cabin_signal_exit(ctx: &mut Ctx, nr: u64) {
    own_segments(ctx);
    let restart = take_interrupted(nr, ctx.rax as i64).map(|nr| Restart { nr, back: 5 });
    suspend_epilogue(ctx, Fp::Live, restart);
    own_segments(ctx);
}

/// A signal came in the exit window after the last check: `ctx.rsp` points
/// at the return address.
pub(crate) extern "C" fn cabin_signal_late(ctx: &mut Ctx) {
    let rsp = entry_rsp(ctx);
    // SAFETY: the exit window's stack: the trampoline's return address.
    ctx.rip = unsafe { (rsp as *const u64).read() };
    ctx.rsp = rsp + 8;
    own_segments(ctx);
    let inr = super::thread::current().interrupted_call.swap(0, Ordering::SeqCst);
    let restart = (inr != 0 && ctx.rax as i64 == -errno::EINTR).then(|| Restart { nr: inr - 1, back: 5 });
    suspend_epilogue(ctx, Fp::Live, restart);
    own_segments(ctx);
}

/// The program's `rt_sigreturn`: `uc` is its `rsp` at the call.
pub(crate) extern "C" fn cabin_signal_return(ctx: &mut Ctx, uc: u64) {
    own_segments(ctx);
    sigreturn(uc, ctx);
    own_segments(ctx);
}

/// KVM: the monitor sent the vCPU here (fault or posted signal); the
/// interrupted `rip`/RFLAGS are in the boot page's mailbox.
pub(crate) extern "C" fn cabin_signal_kvm(ctx: &mut Ctx) {
    own_segments(ctx);
    kvm_entry(ctx);
    own_segments(ctx);
}

/// The program's `rsp` when a signal entry saved `ctx` (below the red zone).
fn entry_rsp(ctx: &Ctx) -> u64 {
    ctx as *const Ctx as u64 + CTX_SIZE as u64 + 128
}

fn kvm_entry(ctx: &mut Ctx) {
    ctx.rsp = entry_rsp(ctx);
    let b = boot();
    if b.is_null() {
        crate::die(b"cabin: signal entry before start-up\n");
    }
    // SAFETY: the validated boot page; a volatile copy of the mailbox.
    let m: SigMailbox = unsafe { addr_of_mut!((*b).sig_mailbox).read_volatile() };
    // Copied: another vCPU may be redirected now (the monitor's lock).
    // SAFETY: the validated boot page; an atomic view of an aligned word.
    unsafe { (*addr_of_mut!((*b).sig_mailbox_busy).cast::<AtomicU64>()).store(0, Ordering::SeqCst) };
    ctx.rip = m.rip;
    ctx.rflags = (m.rflags & USER_RFLAGS) | 0x202;
    if m.signo == 0 {
        suspend_epilogue(ctx, Fp::Live, None);
        return;
    }
    let sig = m.signo;
    if !(1..=NSIG).contains(&sig) {
        crate::die(b"cabin: bad signal in the mailbox\n");
    }
    let act = {
        // SAFETY: see `Book`.
        unsafe { BOOK.get() }.actions[(sig - 1) as usize]
    };
    let handled =
        act.handler != SIG_DFL && act.handler != SIG_IGN && MASK.load(Ordering::SeqCst) & bit(sig) == 0;
    if !handled {
        super::record_fault(sig, m.addr, m.rip);
        crate::sys::exit_group(128 + sig)
    }
    let mut info = [0u64; 16];
    info[0] = sig;
    info[1] = m.code & 0xffff_ffff;
    info[2] = m.addr;
    deliver(ctx, Fp::Live, None, FaultInfo { trapno: m.trapno, err: m.err, cr2: m.addr, sig, info: &info });
}

// ---------------------------------------------------------------------------
// signalfd: a descriptor of the monitor's (a placeholder it opens, so the
// number is the program's like any other) whose reads the libos serves from
// its pending set.

/// Most signalfds a program may hold.
const MAX_SIGNALFDS: usize = 8;
const SFD_NONBLOCK: u64 = 0o4000;
const SFD_CLOEXEC: u64 = 0o2000000;

/// Open signalfds: (descriptor + 1, mask, non-blocking); 0 = free slot.
static SIGNALFDS: Global<[(u64, u64, bool); MAX_SIGNALFDS]> = Global::new([(0, 0, false); MAX_SIGNALFDS]);
/// How many slots of [`SIGNALFDS`] are taken (the cheap test on every read).
static SIGNALFD_COUNT: AtomicU64 = AtomicU64::new(0);

fn signalfd_slot(fd: u64) -> Option<usize> {
    if SIGNALFD_COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    // SAFETY: see `Book` (only the program's own calls touch the table).
    unsafe { SIGNALFDS.get() }.iter().position(|s| s.0 == fd.wrapping_add(1))
}

/// `signalfd4` (and `signalfd`, `flags` 0): a new descriptor (`fd` = -1),
/// or a new mask for one of the libos's signalfds.
pub(super) fn signalfd4(fd: u64, mask: u64, size: u64, flags: u64) -> i64 {
    if size != 8 || flags & !(SFD_NONBLOCK | SFD_CLOEXEC) != 0 {
        return -errno::EINVAL;
    }
    // SAFETY: the program's own pointer (see `sigaction`).
    let m = unsafe { (mask as *const u64).read_unaligned() } & !UNBLOCKABLE;
    let nonblock = flags & SFD_NONBLOCK != 0;
    if fd as i32 != -1 {
        let Some(i) = signalfd_slot(fd & 0xffff_ffff) else { return -errno::EINVAL };
        // SAFETY: see `Book`.
        let table = unsafe { SIGNALFDS.get() };
        table[i].1 = m;
        return fd as i64;
    }
    // SAFETY: see `Book`.
    let table = unsafe { SIGNALFDS.get() };
    let Some(i) = table.iter().position(|s| s.0 == 0) else { return -errno::EMFILE };
    // The monitor opens the placeholder descriptor (the number space is its).
    let r = super::forward(nr::signalfd4, &[u64::MAX, 0, 8, flags & SFD_CLOEXEC, 0, 0], 0);
    if r < 0 {
        return r;
    }
    table[i] = (r as u64 + 1, m, nonblock);
    SIGNALFD_COUNT.fetch_add(1, Ordering::Relaxed);
    r
}

/// Whether each signalfd's placeholder eventfd holds a count (it is
/// readable for the monitor's `poll`/`select`/`epoll`).
static SIGNALFD_ARMED: [AtomicBool; MAX_SIGNALFDS] = [const { AtomicBool::new(false) }; MAX_SIGNALFDS];

/// Makes each signalfd's readiness visible to the monitor's waits: its
/// placeholder eventfd holds 1 while a signal of its mask is pending for
/// the calling thread (the process's or its own), 0 otherwise (a forwarded
/// `write` of 1 or `read` of the count when that changes). Called before a
/// wait is forwarded and made again, after a signalfd read, and after the
/// program signals itself; never from a kernel handler.
pub(crate) fn signalfd_sync() {
    if SIGNALFD_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    take_incoming();
    let pending = pending_here();
    for (i, armed) in SIGNALFD_ARMED.iter().enumerate() {
        // SAFETY: see `Book`; a copy of one entry.
        let (fd1, mask, _) = unsafe { SIGNALFDS.get() }[i];
        if fd1 == 0 {
            continue;
        }
        let fd = fd1 - 1;
        let mut word = 1u64;
        let at = &mut word as *mut u64 as u64;
        if pending & mask != 0 {
            if !armed.swap(true, Ordering::SeqCst) {
                super::forward(nr::write, &[fd, at, 8, 0, 0, 0], 0);
            }
        } else if armed.swap(false, Ordering::SeqCst) {
            super::forward(nr::read, &[fd, at, 8, 0, 0, 0], 0);
        }
    }
}

/// A `read` of one of the libos's signalfds (`None`: not one of them).
pub(super) fn signalfd_read(fd: u64, buf: u64, len: u64) -> Option<i64> {
    let i = signalfd_slot(fd)?;
    if len < 128 {
        return Some(-errno::EINVAL);
    }
    // SAFETY: see `Book`.
    let (_, mask, nonblock) = unsafe { SIGNALFDS.get() }[i];
    let mut n = 0u64;
    loop {
        take_incoming();
        while n + 128 <= len {
            let p = pending_here() & mask;
            if p == 0 {
                break;
            }
            let sig = u64::from(p.trailing_zeros()) + 1;
            let mut info = [0u64; 16];
            if !take(sig, &mut info) {
                continue;
            }
            // SAFETY: the program's buffer, 128 bytes at offset n (len checked).
            unsafe { ((buf + n) as *mut [u8; 128]).write_unaligned(signalfd_siginfo(&info)) };
            n += 128;
        }
        refresh_attention();
        if n > 0 {
            signalfd_sync();
            return Some(n as i64);
        }
        if nonblock {
            return Some(-errno::EAGAIN);
        }
        let r = super::forward_wait(nr::pause, &[0; 6]);
        if r != -errno::EINTR && r != 0 {
            return Some(r);
        }
        if pending_here() & !MASK.load(Ordering::SeqCst) & !mask != 0 {
            // A handler is due first: EINTR (restarted with SA_RESTART).
            return Some(-errno::EINTR);
        }
    }
}

/// The program closes a descriptor: forget it if it is a signalfd.
pub(super) fn signalfd_close(fd: u64) {
    if let Some(i) = signalfd_slot(fd) {
        // SAFETY: see `Book`.
        let table = unsafe { SIGNALFDS.get() };
        table[i] = (0, 0, false);
        SIGNALFD_COUNT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `struct signalfd_siginfo` from a `siginfo_t` (the fields Linux copies
/// for each kind of signal).
fn signalfd_siginfo(info: &[u64; 16]) -> [u8; 128] {
    let mut o = [0u8; 128];
    let mut put32 = |at: usize, v: u32| o[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let code = info[1] as u32 as i32;
    put32(0, info[0] as u32);
    put32(4, (info[0] >> 32) as u32);
    put32(8, code as u32);
    let sig = info[0] & 0xffff_ffff;
    let fault = matches!(sig, SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP) && code > 0;
    if code == si_code::SI_TIMER {
        put32(24, info[2] as u32); // ssi_tid
        put32(32, (info[2] >> 32) as u32); // ssi_overrun
        put32(44, info[3] as u32); // ssi_int
    } else if !fault {
        put32(12, info[2] as u32); // ssi_pid
        put32(16, (info[2] >> 32) as u32); // ssi_uid
        put32(44, info[3] as u32); // ssi_int
    }
    if code == si_code::SI_TIMER || !fault {
        o[48..56].copy_from_slice(&info[3].to_le_bytes()); // ssi_ptr
    } else {
        o[72..80].copy_from_slice(&info[2].to_le_bytes()); // ssi_addr
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The place a nested handler's return reuses: only an aligned one
    /// above its own frame and near it; anything a program could make of
    /// the window's `rsp` otherwise gets a new place (0).
    #[test]
    fn a_resume_window_place_is_reused_only_above_the_frame_and_near_it() {
        let uc = 0x7000_0000u64;
        assert_eq!(reusable_return(uc + 0x1000, uc), uc + 0x1000);
        assert_eq!(reusable_return(uc + PRIVATE_STACK as u64 - 16, uc), uc + PRIVATE_STACK as u64 - 16);
        // Misaligned, at or below the frame, too far, or wrapping.
        assert_eq!(reusable_return(uc + 0x1008, uc), 0);
        assert_eq!(reusable_return(uc, uc), 0);
        assert_eq!(reusable_return(uc - 0x100, uc), 0);
        assert_eq!(reusable_return(uc + PRIVATE_STACK as u64, uc), 0);
        assert_eq!(reusable_return(u64::MAX - 15, u64::MAX - 0x1000), 0);
        assert_eq!(reusable_return(0, uc), 0);
    }
}
