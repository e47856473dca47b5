//! Raw Linux system calls: the one place in the libos that executes the
//! `syscall` instruction from Rust. (The assembly entry in `entry.rs` also
//! issues `rt_sigreturn` and `clone` itself, because those two cannot return
//! through Rust code; see there.)

use core::arch::asm;

/// Linux x86-64 system-call numbers, from the one system-call table.
pub use cabin_abi::syscalls::nr;

/// Linux errno values the libos returns itself.
pub mod errno {
    /// Interrupted system call.
    pub const EINTR: i64 = 4;
    /// Function not implemented.
    pub const ENOSYS: i64 = 38;
}

/// Standard error.
pub const STDERR: u64 = 2;

/// Performs system call `nr` with six arguments and returns the kernel's
/// result (a negative errno on failure).
///
/// # Safety
///
/// A system call can change memory and the process in any way (`munmap`,
/// `mprotect`, `read` into a buffer, ...). The caller must make sure the call
/// and its arguments cannot break the memory safety of the libos itself: in
/// practice it only ever passes on a request the program made at a rewritten
/// site, with the program's own arguments, exactly as the original `syscall`
/// instruction would have done.
pub unsafe fn syscall6(nr: u64, args: &[u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller upholds the contract above; the instruction clobbers
    // only rax (result), rcx and r11 (declared) and memory (no `nomem`).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Writes all of `msg` to `fd`, retrying short writes and `EINTR`; gives up
/// silently on any other error (this is only used for last-words messages).
pub fn write_all(fd: u64, msg: &[u8]) {
    let mut rest = msg;
    while !rest.is_empty() {
        let args = [fd, rest.as_ptr() as u64, rest.len() as u64, 0, 0, 0];
        // SAFETY: write(2) only reads `rest`, which is a live, initialised
        // slice of exactly the length passed.
        let n = unsafe { syscall6(nr::write, &args) };
        if n == -errno::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        rest = rest.get(n as usize..).unwrap_or(&[]);
    }
}

/// Ends every thread of the program with `status`.
pub fn exit_group(status: u64) -> ! {
    loop {
        // SAFETY: exit_group(2) does not return and touches no memory.
        unsafe {
            syscall6(nr::exit_group, &[status, 0, 0, 0, 0, 0]);
        }
    }
}
