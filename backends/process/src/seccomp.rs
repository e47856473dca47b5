//! The seccomp-BPF filter of a confined child.
//!
//! Allowed (everything the libos itself needs, nothing that reaches
//! outside the domain):
//! - `exit`, `exit_group`, `rt_sigreturn` (return from the libos's handlers);
//! - `futex` with `FUTEX_WAIT`/`FUTEX_WAKE` on the two ring doorbell words
//!   only (shared futexes: the operation word must be exactly 0 or 1);
//! - `arch_prctl(ARCH_SET_FS, ..)` (the program's TLS pointer);
//! - `rt_sigaction` for SIGSYS and the fault signals only (the libos's own
//!   trap and fault handlers);
//! - the clock reads `clock_gettime`, `clock_getres`, `gettimeofday`, `time`,
//!   each only when the policy allows it plainly (it is not in the boot
//!   page's `check_local` set): a clock read the policy refuses, or decides
//!   by its arguments, is trapped like any other call, so the libos's
//!   forward of it (and a raw read the program makes itself) reaches the
//!   policy, as on the KVM backend.
//!
//! Every other call, and every call from another ABI (`int 0x80` i386
//! calls, x32), is answered with `SECCOMP_RET_TRAP`: the kernel delivers
//! SIGSYS to the libos, which forwards the call over the ring (the slow
//! path; i386 numbers are translated by the libos for the few calls it
//! knows, the rest get `ENOSYS`).

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

use cabin_abi::syscalls::CallSet;

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
fn off_arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// Jump targets while assembling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Next,
    Allow,
    Trap,
    At(usize),
}

#[derive(Clone, Copy, Debug)]
enum Ins {
    Load(u32),
    Jeq(u32, Label, Label),
    Jge(u32, Label, Label),
    Ret(u32),
}

/// The clock reads the libos makes for the program when the policy allows
/// them plainly (`cabin_abi::syscalls::Serve::LocalOrForwarded`).
pub const CLOCK_READS: [i64; 4] =
    [libc::SYS_clock_gettime, libc::SYS_clock_getres, libc::SYS_gettimeofday, libc::SYS_time];

/// Builds the filter for a domain whose ring doorbells are at `sq_doorbell`
/// and `cq_doorbell` (domain addresses); clock reads in `checked` (the
/// calls the policy does not plainly allow) are trapped.
pub fn filter(sq_doorbell: u64, cq_doorbell: u64, checked: &CallSet) -> Vec<SockFilter> {
    use Ins::*;
    use Label::*;
    let nr = |n: i64| n as u32;
    // Blocks, each identified by index in `prog` where it starts; built
    // in two passes: first the instruction list with symbolic labels.
    let mut prog: Vec<Ins> = Vec::new();
    let mut allow_plain = vec![libc::SYS_exit, libc::SYS_exit_group, libc::SYS_rt_sigreturn];
    allow_plain.extend(CLOCK_READS.iter().filter(|&&n| !checked.contains(n as u64)));
    prog.push(Load(OFF_ARCH));
    prog.push(Jeq(AUDIT_ARCH_X86_64, Next, Trap));
    prog.push(Load(OFF_NR));
    prog.push(Jge(X32_SYSCALL_BIT, Trap, Next));
    for n in allow_plain {
        prog.push(Jeq(nr(n), Allow, Next));
    }
    // Placeholders for the three argument-checked calls; targets patched below.
    let j_arch = prog.len();
    prog.push(Jeq(nr(libc::SYS_arch_prctl), At(0), Next));
    let j_futex = prog.len();
    prog.push(Jeq(nr(libc::SYS_futex), At(0), Next));
    let j_sigaction = prog.len();
    prog.push(Jeq(nr(libc::SYS_rt_sigaction), At(0), Next));
    prog.push(Ret(SECCOMP_RET_TRAP));

    // arch_prctl(ARCH_SET_FS = 0x1002, ...)
    let arch = prog.len();
    prog.push(Load(off_arg_lo(0)));
    prog.push(Jeq(0x1002, Next, Trap));
    prog.push(Load(off_arg_hi(0)));
    prog.push(Jeq(0, Allow, Trap));

    // futex(doorbell, FUTEX_WAIT | FUTEX_WAKE, ...)
    let futex = prog.len();
    prog.push(Load(off_arg_hi(0)));
    prog.push(Jeq((sq_doorbell >> 32) as u32, Next, At(usize::MAX))); // patched: check cq hi
    let futex_lo_sq = prog.len();
    prog.push(Load(off_arg_lo(0)));
    prog.push(Jeq(sq_doorbell as u32, At(usize::MAX - 1), At(usize::MAX))); // patched
    let futex_cq = prog.len();
    prog.push(Load(off_arg_hi(0)));
    prog.push(Jeq((cq_doorbell >> 32) as u32, Next, Trap));
    prog.push(Load(off_arg_lo(0)));
    prog.push(Jeq(cq_doorbell as u32, Next, Trap));
    let futex_op = prog.len();
    prog.push(Load(off_arg_lo(1)));
    prog.push(Jeq(0, Allow, Next)); // FUTEX_WAIT
    prog.push(Jeq(1, Allow, Trap)); // FUTEX_WAKE

    // rt_sigaction(sig in {SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP}, ...)
    let sigaction = prog.len();
    prog.push(Load(off_arg_lo(0)));
    let sigs = [libc::SIGSYS, libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP];
    for (i, s) in sigs.iter().enumerate() {
        let f = if i + 1 == sigs.len() { Trap } else { Next };
        prog.push(Jeq(*s as u32, Allow, f));
    }

    // Patch the symbolic forward references.
    prog[j_arch] = Jeq(nr(libc::SYS_arch_prctl), At(arch), Next);
    prog[j_futex] = Jeq(nr(libc::SYS_futex), At(futex), Next);
    prog[j_sigaction] = Jeq(nr(libc::SYS_rt_sigaction), At(sigaction), Next);
    prog[futex + 1] = Jeq((sq_doorbell >> 32) as u32, Next, At(futex_cq));
    prog[futex_lo_sq + 1] = Jeq(sq_doorbell as u32, At(futex_op), At(futex_cq));

    // Terminal instructions.
    let allow = prog.len();
    prog.push(Ret(SECCOMP_RET_ALLOW));
    let trap = prog.len();
    prog.push(Ret(SECCOMP_RET_TRAP));

    let target = |from: usize, l: Label| -> u8 {
        let to = match l {
            Next => from + 1,
            Allow => allow,
            Trap => trap,
            At(i) => i,
        };
        // Classic BPF jumps only forward, relative to the next instruction.
        let d = to.saturating_sub(from + 1);
        u8::try_from(d).unwrap_or(0)
    };
    prog.iter()
        .enumerate()
        .map(|(i, ins)| match *ins {
            Load(off) => SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: off },
            Jeq(k, t, f) => SockFilter { code: BPF_JEQ_K, jt: target(i, t), jf: target(i, f), k },
            Jge(k, t, f) => SockFilter { code: BPF_JGE_K, jt: target(i, t), jf: target(i, f), k },
            Ret(k) => SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k },
        })
        .collect()
}

/// A tiny classic-BPF interpreter for the subset [`filter`] emits, so tests
/// can check the policy without installing it.
pub fn evaluate(prog: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc = 0u32;
    let mut pc = 0usize;
    while let Some(ins) = prog.get(pc) {
        match ins.code {
            BPF_LD_W_ABS => {
                let o = ins.k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or([0; 4]));
                pc += 1;
            }
            BPF_JEQ_K | BPF_JGE_K => {
                let taken = if ins.code == BPF_JEQ_K { acc == ins.k } else { acc >= ins.k };
                pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
            }
            BPF_RET_K => return ins.k,
            _ => return SECCOMP_RET_KILL_PROCESS,
        }
    }
    SECCOMP_RET_KILL_PROCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQ: u64 = 0x2000_0000_1084;
    const CQ: u64 = 0x2000_0000_1104;

    fn run(nr: i64, args: [u64; 6]) -> u32 {
        evaluate(&filter(SQ, CQ, &CallSet::EMPTY), nr as u32, AUDIT_ARCH_X86_64, args)
    }

    #[test]
    fn policy() {
        assert_eq!(run(libc::SYS_exit_group, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigreturn, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_clock_gettime, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_write, [1, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_openat, [0; 6]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_mmap, [0; 6]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1002, 5, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1001, 5, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1_0000_1002, 5, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_futex, [SQ, 1, 1, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_futex, [CQ, 0, 5, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_futex, [CQ, 9, 5, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_futex, [CQ + 4, 0, 5, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_futex, [SQ + (1 << 32), 0, 5, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGSYS as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGTRAP as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGINT as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4000_0001, [0; 6]), SECCOMP_RET_TRAP, "x32");
        assert_eq!(
            evaluate(&filter(SQ, CQ, &CallSet::EMPTY), 1, 0x4000_0003, [0; 6]),
            SECCOMP_RET_TRAP,
            "i386"
        );
        // An i386 call whose number matches an allowed x86-64 one is still trapped.
        assert_eq!(evaluate(&filter(SQ, CQ, &CallSet::EMPTY), 60, 0x4000_0003, [0; 6]), SECCOMP_RET_TRAP);
    }

    #[test]
    fn clock_reads_the_policy_checks_are_trapped() {
        let mut checked = CallSet::EMPTY;
        checked.insert(libc::SYS_clock_gettime as u64);
        let f = filter(SQ, CQ, &checked);
        let run = |nr: i64| evaluate(&f, nr as u32, AUDIT_ARCH_X86_64, [1, 0x1000, 0, 0, 0, 0]);
        assert_eq!(run(libc::SYS_clock_gettime), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_gettimeofday), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_exit_group), SECCOMP_RET_ALLOW);
        for nr in CLOCK_READS {
            assert_eq!(
                cabin_abi::syscalls::serve(nr as u64),
                cabin_abi::syscalls::Serve::LocalOrForwarded,
                "the table and the filter agree on clock reads"
            );
        }
    }

    #[test]
    fn jumps_are_in_range() {
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        for (i, ins) in f.iter().enumerate().filter(|(_, x)| x.code != BPF_RET_K) {
            assert!(i + 1 + (ins.jt as usize) < f.len() && i + 1 + (ins.jf as usize) < f.len());
        }
        assert!(f.len() < 100, "fits the loader scratch");
    }
}
