//! Signals in confined mode.
//!
//! - The libos's own handlers: SIGSYS (a trapped system call — a trap site
//!   or a stray `syscall` — is served like a rewritten one and its result
//!   written into the saved `rax`) and the fault signals (the fault is
//!   recorded in the boot block for the monitor's one-line report and the
//!   program ends with 128 + signal).
//! - The program's signal calls are bookkeeping only: dispositions and the
//!   mask are remembered and reported back, but no handler is ever
//!   installed in the kernel (the domain receives no asynchronous signals).
//!   A signal the program sends itself (`raise`, `abort`) is acted on here.

use core::arch::naked_asm;

use super::thread::Lock;
use super::{errno, nr};
use crate::sys::syscall6;

const NR_RT_SIGACTION: u64 = 13;
const NR_RT_SIGRETURN: u64 = 15;

const SIGILL: u64 = 4;
const SIGTRAP: u64 = 5;
const SIGBUS: u64 = 7;
const SIGFPE: u64 = 8;
const SIGKILL: u64 = 9;
const SIGSEGV: u64 = 11;
const SIGCHLD: u64 = 17;
const SIGCONT: u64 = 18;
const SIGSTOP: u64 = 19;
const SIGTSTP: u64 = 20;
const SIGTTIN: u64 = 21;
const SIGTTOU: u64 = 22;
const SIGURG: u64 = 23;
const SIGWINCH: u64 = 28;
const SIGSYS: u64 = 31;
const NSIG: u64 = 64;

const SA_SIGINFO: u64 = 4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;

// Offsets into `siginfo_t` and `ucontext_t` (x86-64 Linux).
/// `si_code`.
const SI_CODE: usize = 8;
const SI_ADDR: usize = 16;
const SI_SYSCALL: usize = 24;
const SI_ARCH: usize = 28;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const REG_RBP: usize = 10;
const REG_RBX: usize = 11;
const REG_RCX: usize = 14;
const UC_GREGS: usize = 40;
const REG_R8: usize = 0;
const REG_R9: usize = 1;
const REG_R10: usize = 2;
const REG_RDI: usize = 8;
const REG_RSI: usize = 9;
const REG_RDX: usize = 12;
const REG_RAX: usize = 13;
const REG_RIP: usize = 16;

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

struct Book {
    actions: [KSigaction; NSIG as usize],
    mask: u64,
    altstack: [u64; 3],
}

static BOOK: Lock<Book> = Lock::new(Book { actions: [DFL; NSIG as usize], mask: 0, altstack: [0, 2, 0] });

/// Installs the SIGSYS and fault handlers. `false` if the kernel refused.
pub(super) fn install() -> bool {
    let sys = KSigaction {
        handler: on_sigsys as extern "C" fn(i32, *mut u8, *mut u8) as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER | SA_NODEFER,
        restorer: restore_rt as extern "C" fn() as usize as u64,
        mask: 0,
    };
    let fault =
        KSigaction { handler: on_fault as extern "C" fn(i32, *mut u8, *mut u8) as usize as u64, ..sys };
    let mut ok = set(SIGSYS, &sys);
    for s in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP] {
        ok &= set(s, &KSigaction { flags: SA_SIGINFO | SA_RESTORER, ..fault });
    }
    ok
}

fn set(sig: u64, act: &KSigaction) -> bool {
    let args = [sig, act as *const KSigaction as u64, 0, 8, 0, 0];
    // SAFETY: installs a handler of this module; the kernel only reads `act`.
    unsafe { syscall6(NR_RT_SIGACTION, &args) == 0 }
}

/// Returns from a signal handler (the `sa_restorer`).
#[unsafe(naked)]
extern "C" fn restore_rt() {
    naked_asm!("mov eax, {nr}", "syscall", "ud2", nr = const NR_RT_SIGRETURN)
}

fn greg(ctx: *mut u8, r: usize) -> *mut u64 {
    ctx.wrapping_add(UC_GREGS + 8 * r).cast()
}

/// SIGSYS: a system call the seccomp filter trapped.
extern "C" fn on_sigsys(_sig: i32, info: *mut u8, ctx: *mut u8) {
    // SAFETY: the kernel passes a valid siginfo and ucontext for an
    // SA_SIGINFO handler; offsets are the x86-64 Linux ABI.
    unsafe {
        let nr = info.add(SI_SYSCALL).cast::<i32>().read() as u32 as u64;
        if info.add(SI_ARCH).cast::<u32>().read() == AUDIT_ARCH_I386 {
            // `int 0x80`: i386 numbers, arguments in ebx, ecx, edx, esi, edi, ebp.
            let low = |r: usize| greg(ctx, r).read() & 0xffff_ffff;
            let args = [low(REG_RBX), low(REG_RCX), low(REG_RDX), low(REG_RSI), low(REG_RDI), low(REG_RBP)];
            let site = super::trap_site(greg(ctx, REG_RIP).read());
            let r = match i386_to_x86_64(nr) {
                Some(n) => super::serve(n, &args, true, site),
                None => -super::errno::ENOSYS,
            };
            greg(ctx, REG_RAX).write(r as u64);
            return;
        }
        let args = [
            greg(ctx, REG_RDI).read(),
            greg(ctx, REG_RSI).read(),
            greg(ctx, REG_RDX).read(),
            greg(ctx, REG_R10).read(),
            greg(ctx, REG_R8).read(),
            greg(ctx, REG_R9).read(),
        ];
        let site = super::trap_site(greg(ctx, REG_RIP).read());
        let r = super::serve(nr, &args, true, site);
        greg(ctx, REG_RAX).write(r as u64);
    }
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

/// A fault: record it for the monitor and end with 128 + signal.
extern "C" fn on_fault(sig: i32, info: *mut u8, ctx: *mut u8) {
    // SAFETY: as for `on_sigsys`.
    let (addr, rip, code) = unsafe {
        (
            info.add(SI_ADDR).cast::<u64>().read(),
            greg(ctx, REG_RIP).read(),
            info.add(SI_CODE).cast::<i32>().read(),
        )
    };
    super::record_fault(sig as u64, addr, rip);
    super::record_fault_code(code as i64 as u64);
    crate::sys::exit_group(128 + sig as u64)
}

/// `rt_sigaction` bookkeeping.
pub(super) fn sigaction(sig: u64, act: u64, oact: u64, size: u64) -> i64 {
    if size != 8 || sig == 0 || sig > NSIG {
        return -errno::EINVAL;
    }
    if act != 0 && (sig == SIGKILL || sig == SIGSTOP) {
        return -errno::EINVAL;
    }
    // Under the lock, released at the end of the statement or scope.
    let mut book = BOOK.lock();
    let slot = &mut book.actions[(sig - 1) as usize];
    let old = *slot;
    if act != 0 {
        // SAFETY: the program's own pointer, read as the kernel would; a
        // bad one faults in the program's own domain.
        *slot = unsafe { (act as *const KSigaction).read_unaligned() };
    }
    if oact != 0 {
        // SAFETY: as above.
        unsafe { (oact as *mut KSigaction).write_unaligned(old) };
    }
    0
}

/// `rt_sigprocmask` bookkeeping.
pub(super) fn sigprocmask(how: u64, set: u64, oset: u64, size: u64) -> i64 {
    if size != 8 {
        return -errno::EINVAL;
    }
    // Under the lock, released at the end of the statement or scope.
    let mut book = BOOK.lock();
    let old = book.mask;
    if set != 0 {
        // SAFETY: the program's own pointer (see `sigaction`).
        let s = unsafe { (set as *const u64).read_unaligned() };
        let unblockable = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));
        book.mask = match how {
            0 => old | s,
            1 => old & !s,
            2 => s,
            _ => return -errno::EINVAL,
        } & !unblockable;
    }
    if oset != 0 {
        // SAFETY: as above.
        unsafe { (oset as *mut u64).write_unaligned(old) };
    }
    0
}

/// `sigaltstack` bookkeeping (`stack_t` is three words).
pub(super) fn sigaltstack(ss: u64, old: u64) -> i64 {
    // Under the lock, released at the end of the statement or scope.
    let mut book = BOOK.lock();
    let prev = book.altstack;
    if ss != 0 {
        // SAFETY: the program's own pointer (see `sigaction`).
        book.altstack = unsafe { (ss as *const [u64; 3]).read_unaligned() };
    }
    if old != 0 {
        // SAFETY: as above.
        unsafe { (old as *mut [u64; 3]).write_unaligned(prev) };
    }
    0
}

/// A signal the program sends itself: ignore, run its handler, or end the
/// program as the default action would (128 + signal, like a shell shows).
pub(super) fn raise(sig: u64) -> i64 {
    if sig == 0 {
        return 0;
    }
    if sig > NSIG {
        return -errno::EINVAL;
    }
    // Under the lock, released at the end of the statement or scope.
    let act = BOOK.lock().actions[(sig - 1) as usize];
    match act.handler {
        SIG_IGN if sig != SIGKILL && sig != SIGSTOP => 0,
        SIG_DFL | SIG_IGN => match sig {
            SIGCHLD | SIGCONT | SIGURG | SIGWINCH | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => 0,
            _ => {
                super::record_fault(sig, 0, 0);
                crate::sys::exit_group(128 + sig)
            }
        },
        h => {
            let _ = SA_ONSTACK;
            if act.flags & SA_SIGINFO != 0 {
                let info = [sig, 0u64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                // SAFETY: the program registered this address as its handler
                // for `sig`; calling it is what delivery would do.
                let f: extern "C" fn(i32, *const u64, *const u8) = unsafe { core::mem::transmute(h) };
                f(sig as i32, info.as_ptr(), core::ptr::null());
            } else {
                // SAFETY: as above.
                let f: extern "C" fn(i32) = unsafe { core::mem::transmute(h) };
                f(sig as i32);
            }
            0
        }
    }
}
