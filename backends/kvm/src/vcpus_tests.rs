//! KVM-tier tests of one vCPU per thread, with hand-written guests
//! (assembled at test time with binutils' `as`, which the build already
//! needs for `ld`). A test service stands in for the threads ABI: call 56
//! starts vCPU `rdi` at `rsi` with stack `rdx` and GS base `r10` (`rdi` of
//! the new thread = its slot), 39 returns the calling vCPU's slot, 110 the
//! number of vCPUs running; `exit` (60) ends a thread, `exit_group` (231)
//! the program.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::*;
use crate::tests::{config, kvm_or_skip, tiny_elf};
use crate::{run_threads, KvmOutcome, ProgramMemory, Served, SyscallService};

/// Assembles Intel-syntax `src` (code at 0x401000) into bytes.
fn assemble(src: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("p.s");
    let o = dir.path().join("p.o");
    let bin = dir.path().join("p.bin");
    let prelude = ".intel_syntax noprefix\n.set SPAWN, 56\n.set GETPID, 39\n.set LIVE, 110\n\
                   .set EXIT, 60\n.set EXIT_GROUP, 231\n";
    std::fs::write(&s, format!("{prelude}{src}\n")).expect("write source");
    let run = |cmd: &str, args: &[&Path], extra: &[&str]| {
        let st = Command::new(cmd).args(extra).args(args).status().expect(cmd);
        assert!(st.success(), "{cmd} failed");
    };
    run("as", &[&s], &["--64", "-o", o.to_str().expect("utf-8 path")]);
    run("objcopy", &[&o, &bin], &["-O", "binary", "-j", ".text"]);
    std::fs::read(bin).expect("read binary")
}

#[derive(Debug, Default)]
struct Threads {
    vcpus: OnceLock<Weak<Vcpus>>,
    out: Mutex<Vec<u8>>,
}

#[derive(Debug)]
struct Factory(Arc<Threads>);

impl ServiceFactory for Factory {
    fn service(&self, slot: usize) -> Result<Box<dyn SyscallService + Send>, SpawnError> {
        Ok(Box::new(ThreadService { slot, t: self.0.clone() }))
    }
}

#[derive(Debug)]
struct ThreadService {
    slot: usize,
    t: Arc<Threads>,
}

impl SyscallService for ThreadService {
    fn serve(&mut self, nr: u64, a: [u64; 6], m: &ProgramMemory<'_>) -> Served {
        let vcpus = || self.t.vcpus.get().and_then(Weak::upgrade);
        match nr {
            1 => match m.mem.read(a[1], a[2] as usize) {
                Ok(b) => {
                    self.t.out.lock().expect("out").extend_from_slice(&b);
                    Served::Return(a[2] as i64)
                }
                Err(_) => Served::Return(-14),
            },
            39 => Served::Return(self.slot as i64),
            56 => {
                let Some(v) = vcpus() else { return Served::Return(-38) };
                let start =
                    VcpuStart { rip: a[1], rsp: a[2], gs_base: a[3], rdi: a[0], ..VcpuStart::default() };
                let clear = (a[4] != 0).then_some(a[4]);
                match v.spawn_when_free(a[0] as usize, start, clear, Duration::ZERO) {
                    Ok(()) => Served::Return(0),
                    Err(SpawnError::InUse(_)) => Served::Return(-16),
                    Err(SpawnError::NoSuchSlot(_) | SpawnError::Ending) => Served::Return(-11),
                    Err(e @ SpawnError::Setup { .. }) => {
                        eprintln!("spawn refused: {e}");
                        Served::Return(-22)
                    }
                }
            }
            110 => Served::Return(vcpus().map_or(-1, |v| v.live() as i64)),
            // The CPUs the calling vCPU's host thread may run on.
            204 => Served::Return(CpuSet::current().map_or(-1, |c| c.cpus().len() as i64)),
            60 => Served::ThreadExit((a[0] & 0xff) as i32),
            231 => Served::Exit((a[0] & 0xff) as i32),
            _ => Served::Return(-38),
        }
    }
}

/// Runs `src` with `data` at 0x402000 on as many vCPUs as it starts.
fn run(src: &str, data: &[u8]) -> (KvmOutcome, Vec<u8>) {
    run_on(src, data, None)
}

/// [`run`], with every CPU of the run `all` ([`Vcpus::set_all_cpus`]).
fn run_on(src: &str, data: &[u8], all: Option<CpuSet>) -> (KvmOutcome, Vec<u8>) {
    let t = Arc::new(Threads::default());
    let image = tiny_elf(&assemble(src), data);
    let out = run_threads(&image, &config(), Box::new(Factory(t.clone())), |v| {
        t.vcpus.set(Arc::downgrade(v)).expect("set once");
        v.set_all_cpus(all);
    })
    .expect("run");
    let printed = t.out.lock().expect("out").clone();
    (out, printed)
}

const TWO_THREADS: &str = r#"
# two threads: the child reports its getpid (its slot) and exits; main exit_groups with it
_start:
  mov edi, 1
  lea rsi, [rip + child]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
1: pause
  cmp dword ptr [0x402100], 0
  je 1b
  mov edi, [0x402104]
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
child:
  mov eax, GETPID
  syscall
  mov [0x402104], eax
  mov dword ptr [0x402100], 1
  mov edi, 7
  mov eax, EXIT
  syscall
  ud2
"#;

#[test]
fn kvm_a_second_vcpu_runs_a_thread_with_its_own_service() {
    if !kvm_or_skip("kvm_a_second_vcpu_runs_a_thread_with_its_own_service") {
        return;
    }
    let (out, _) = run(TWO_THREADS, b"");
    assert_eq!(out.status, 1, "the child's gate call was served as vCPU 1's: {out:?}");
    assert_eq!(out.stats.vcpus, 2);
}

const MAIN_EXITS_FIRST: &str = r#"
# main exits first (exit 3); the child waits until it is the only thread,
# then exit(7): the program's status is the last thread's, 7 (as Linux)
_start:
  mov edi, 1
  lea rsi, [rip + child]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
  mov edi, 3
  mov eax, EXIT
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
child:
  pause
  mov eax, LIVE
  syscall
  cmp eax, 1
  jne child
  mov edi, 7
  mov eax, EXIT
  syscall
  ud2
"#;

#[test]
fn kvm_the_last_threads_exit_ends_the_program_with_its_status() {
    if !kvm_or_skip("kvm_the_last_threads_exit_ends_the_program_with_its_status") {
        return;
    }
    let (out, _) = run(MAIN_EXITS_FIRST, b"");
    assert_eq!(out.status, 7, "{out:?}");
    assert!(out.fault.is_none() && out.report.is_none(), "{out:?}");
}

/// Main starts the child at the address in the first data word, then spins
/// in ring 3 forever: only the child can end the program.
const CHILD_ENDS_IT: &str = r#"
_start:
  mov edi, 1
  mov rsi, [0x402000]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
1: jmp 1b
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
.p2align 6
child_ud2:
  ud2
.p2align 6
child_sgdt:
  sgdt [0x402500]
  mov edi, 55
  mov eax, EXIT_GROUP
  syscall
.p2align 6
child_exit_group:
  mov edi, 42
  mov eax, EXIT_GROUP
  syscall
"#;

fn child_at(offset: u64) -> Vec<u8> {
    (0x40_1000 + offset).to_le_bytes().to_vec()
}

#[test]
fn kvm_a_fault_in_any_thread_ends_the_whole_program() {
    if !kvm_or_skip("kvm_a_fault_in_any_thread_ends_the_whole_program") {
        return;
    }
    let (out, _) = run(CHILD_ENDS_IT, &child_at(0x40));
    assert_eq!(out.status, 128 + 4, "ud2 in the child: SIGILL, main kicked out of ring 3: {out:?}");
    let f = out.fault.expect("fault report");
    assert_eq!((f.vector, f.rip), (6, 0x40_1040));
    assert!(out.report.as_deref().is_some_and(|r| r.contains("invalid opcode")), "{out:?}");
}

#[test]
fn kvm_exit_group_in_a_thread_stops_a_vcpu_spinning_in_ring_3() {
    if !kvm_or_skip("kvm_exit_group_in_a_thread_stops_a_vcpu_spinning_in_ring_3") {
        return;
    }
    let (out, _) = run(CHILD_ENDS_IT, &child_at(0xc0));
    assert_eq!(out.status, 42, "{out:?}");
}

#[test]
fn kvm_every_vcpu_has_umip() {
    if !kvm_or_skip("kvm_every_vcpu_has_umip") {
        return;
    }
    let (_, _, f) = vcpu::open().expect("open KVM");
    let (out, _) = run(CHILD_ENDS_IT, &child_at(0x80));
    if f.umip() {
        assert_eq!(out.status, 128 + 11, "sgdt in a second vCPU faults: {out:?}");
    } else {
        eprintln!("no UMIP on this CPU: sgdt allowed ({out:?})");
    }
}

const REFUSED_SPAWNS: &str = r#"
# refused spawns: bit k of the exit status says refusal k was right
_start:
  xor ebx, ebx
  mov edi, 1
  lea rsi, [rip + spin]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
  # slot 1 again: in use
  mov edi, 1
  lea rsi, [rip + spin]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  cmp rax, -16
  jne 1f
  or ebx, 1
1: # slot 0 (the main thread's own)
  xor edi, edi
  lea rsi, [rip + spin]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  cmp rax, -16
  jne 1f
  or ebx, 2
1: # slot 64: the 65th thread
  mov edi, 64
  lea rsi, [rip + spin]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  cmp rax, -11
  jne 1f
  or ebx, 4
1: # a kernel rip
  mov edi, 2
  movabs rsi, 0xffffffff80000000
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  cmp rax, -22
  jne 1f
  or ebx, 8
1: # a non-canonical rsp
  mov edi, 2
  lea rsi, [rip + spin]
  movabs rdx, 0x0000800000000000
  mov eax, SPAWN
  syscall
  cmp rax, -22
  jne 1f
  or ebx, 16
1: # a kernel GS base (r10)
  mov edi, 2
  lea rsi, [rip + spin]
  mov edx, 0x402800
  movabs r10, 0xffffffff80004000
  mov eax, SPAWN
  syscall
  cmp rax, -22
  jne 1f
  or ebx, 32
1:
  mov edi, ebx
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
spin:
  jmp spin
"#;

#[test]
fn kvm_forged_spawns_are_refused() {
    if !kvm_or_skip("kvm_forged_spawns_are_refused") {
        return;
    }
    let (out, _) = run(REFUSED_SPAWNS, b"");
    assert_eq!(
        out.status, 63,
        "every refusal (bits: slot in use, main's slot, 65th, kernel rip, bad rsp, kernel GS): {out:?}"
    );
    assert_eq!(out.stats.vcpus, 2, "only the first spawn started a vCPU");
}

const MANY_THREADS: &str = r#"
# threads in slots 1..N-1 (N = word at 0x402008), each checks its own gate
# calls (getpid = its slot, 0x402010 times), counts itself and exits; main
# does the same, waits for all, then reuses slot 1 once more. Exit status:
# the number of wrong answers.
_start:
  mov r12d, 1
1:
  mov edi, r12d
  lea rsi, [rip + child]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
  inc r12d
  cmp r12d, [0x402008]
  jb 1b
  xor edi, edi
  call check
  mov r13d, [0x402008]
  dec r13d
2: pause
  cmp [0x402200], r13d
  jne 2b
  # every child has exited (not only counted itself): reuse slot 1
6: pause
  mov eax, LIVE
  syscall
  cmp eax, 1
  jne 6b
  mov edi, 1
  lea rsi, [rip + child]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
  inc r13d
3: pause
  cmp [0x402200], r13d
  jne 3b
  mov edi, [0x402400]
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
# check(slot in edi): getpid N times through the gate (ring 0 on this
# vCPU's own stacks), each must return the slot
check:
  mov ecx, [0x402010]
4:
  mov r8d, edi
  mov eax, GETPID
  push rcx
  push r8
  syscall
  pop r8
  pop rcx
  cmp eax, r8d
  je 5f
  lock inc dword ptr [0x402400]
5:
  mov edi, r8d
  dec ecx
  jnz 4b
  ret
child:
  # rdi = slot (the start state); a private 64-byte stack per slot
  mov eax, edi
  shl eax, 6
  mov esp, 0x403000
  sub esp, eax
  call check
  lock inc dword ptr [0x402200]
  xor edi, edi
  mov eax, EXIT
  syscall
  ud2
"#;

fn many(threads: u32, calls: u32) -> Vec<u8> {
    let mut d = vec![0u8; 0x18];
    d[8..12].copy_from_slice(&threads.to_le_bytes());
    d[0x10..0x14].copy_from_slice(&calls.to_le_bytes());
    d
}

#[test]
fn kvm_concurrent_gate_calls_use_each_vcpus_own_ring0_stacks() {
    if !kvm_or_skip("kvm_concurrent_gate_calls_use_each_vcpus_own_ring0_stacks") {
        return;
    }
    let (out, _) = run(MANY_THREADS, &many(4, 300));
    assert_eq!(out.status, 0, "every gate call answered for its own vCPU: {out:?}");
    assert_eq!(out.stats.vcpus, 5, "main, three threads, slot 1 reused");
    assert!(out.stats.gate_syscalls >= 4 * 300, "{:?}", out.stats);
}

#[test]
fn kvm_64_threads_run_and_the_65th_is_refused() {
    if !kvm_or_skip("kvm_64_threads_run_and_the_65th_is_refused") {
        return;
    }
    let (out, _) = run(MANY_THREADS, &many(64, 5));
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stats.vcpus, 65, "64 slots, then slot 1 again");
}

const CLEAR_TID: &str = r#"
# the child's CLONE_CHILD_CLEARTID word (0x402100, set to 1234 first) is 0
# once the child has exited, and only then: main waits for it in ring 3
_start:
  mov dword ptr [0x402100], 1234
  mov edi, 1
  lea rsi, [rip + child]
  mov edx, 0x402800
  xor r10d, r10d
  mov r8d, 0x402100
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
1: pause
  cmp dword ptr [0x402100], 0
  jne 1b
  # the child is gone: one vCPU left
  mov eax, LIVE
  syscall
  mov edi, eax
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
child:
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
"#;

#[test]
fn kvm_clear_child_tid_is_cleared_after_the_thread_has_left_its_vcpu() {
    if !kvm_or_skip("kvm_clear_child_tid_is_cleared_after_the_thread_has_left_its_vcpu") {
        return;
    }
    let (out, _) = run(CLEAR_TID, b"");
    assert_eq!(out.status, 1, "{out:?}");
}

/// Thread 1 fills every register it can reach (GPRs, FS base, the whole
/// AVX state, x87, DF) with non-zero values and exits; main then starts a
/// second thread on the same slot, which reuses the parked vCPU, and that
/// thread stores what it finds: the OR of its GPRs (but `rsp`, and `rdi` =
/// its slot), its FS base, the OR of all sixteen `ymm` registers, the
/// x87 top-of-stack tag (FSTENV's tag word) and RFLAGS, then writes them.
const REUSED_VCPU: &str = r#"
_start:
  mov edi, 1
  lea rsi, [rip + dirty]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
2: pause
  mov edi, 1
  lea rsi, [rip + fresh]
  mov edx, 0x402c00
  xor r10d, r10d
  mov eax, SPAWN
  syscall
  cmp rax, -16
  je 2b
  test rax, rax
  jnz fail
3: pause
  cmp dword ptr [0x402300], 0
  je 3b
  mov edi, 1
  mov esi, 0x402200
  mov edx, 64
  mov eax, 1
  syscall
  xor edi, edi
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
dirty:
  mov rax, 0x414141414000
  wrfsbase rax
  mov rax, 0x4141414141414141
  vpcmpeqd ymm0, ymm0, ymm0
  vpcmpeqd ymm1, ymm1, ymm1
  vpcmpeqd ymm2, ymm2, ymm2
  vpcmpeqd ymm3, ymm3, ymm3
  vpcmpeqd ymm4, ymm4, ymm4
  vpcmpeqd ymm5, ymm5, ymm5
  vpcmpeqd ymm6, ymm6, ymm6
  vpcmpeqd ymm7, ymm7, ymm7
  vpcmpeqd ymm8, ymm8, ymm8
  vpcmpeqd ymm9, ymm9, ymm9
  vpcmpeqd ymm10, ymm10, ymm10
  vpcmpeqd ymm11, ymm11, ymm11
  vpcmpeqd ymm12, ymm12, ymm12
  vpcmpeqd ymm13, ymm13, ymm13
  vpcmpeqd ymm14, ymm14, ymm14
  vpcmpeqd ymm15, ymm15, ymm15
  fld1
  fld1
  std
  mov rbx, rax
  mov rcx, rax
  mov rdx, rax
  mov rsi, rax
  mov rbp, rax
  mov r8, rax
  mov r9, rax
  mov r10, rax
  mov r11, rax
  mov r12, rax
  mov r13, rax
  mov r14, rax
  mov r15, rax
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
fresh:
  or rax, rbx
  or rax, rcx
  or rax, rdx
  or rax, rsi
  or rax, rbp
  or rax, r8
  or rax, r9
  or rax, r10
  or rax, r11
  or rax, r12
  or rax, r13
  or rax, r14
  or rax, r15
  mov [0x402200], rax
  rdfsbase rax
  mov [0x402208], rax
  vpor ymm0, ymm0, ymm1
  vpor ymm0, ymm0, ymm2
  vpor ymm0, ymm0, ymm3
  vpor ymm0, ymm0, ymm4
  vpor ymm0, ymm0, ymm5
  vpor ymm0, ymm0, ymm6
  vpor ymm0, ymm0, ymm7
  vpor ymm0, ymm0, ymm8
  vpor ymm0, ymm0, ymm9
  vpor ymm0, ymm0, ymm10
  vpor ymm0, ymm0, ymm11
  vpor ymm0, ymm0, ymm12
  vpor ymm0, ymm0, ymm13
  vpor ymm0, ymm0, ymm14
  vpor ymm0, ymm0, ymm15
  vmovdqu [0x402210], ymm0
  pushfq
  pop rax
  and eax, 0x400
  mov [0x402230], rax
  fnstenv [0x402400]
  movzx eax, word ptr [0x402408]
  xor eax, 0xffff
  mov [0x402238], rax
  mov dword ptr [0x402300], 1
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
"#;

#[test]
fn kvm_a_reused_vcpu_shows_nothing_of_the_previous_thread() {
    if !kvm_or_skip("kvm_a_reused_vcpu_shows_nothing_of_the_previous_thread") {
        return;
    }
    // The slot's host thread waits for the second thread and starts it on
    // the same vCPU (`vcpu::restart`, the registers through `kvm_run`).
    let (out, printed) = run(REUSED_VCPU, b"");
    assert_eq!(out.stats.warm_starts, 1, "the second thread started on the waiting host thread");
    nothing_of_the_previous_thread(&out, &printed);
}

/// The same with the host thread gone (it waited 0 s): the second thread
/// gets a new host thread and the full reset (`vcpu::setup`).
#[test]
fn kvm_a_reused_vcpu_reset_in_full_shows_nothing_of_the_previous_thread() {
    if !kvm_or_skip("kvm_a_reused_vcpu_reset_in_full_shows_nothing_of_the_previous_thread") {
        return;
    }
    let t = Arc::new(Threads::default());
    let image = tiny_elf(&assemble(REUSED_VCPU), b"");
    let out = run_threads(&image, &config(), Box::new(Factory(t.clone())), |v| {
        t.vcpus.set(Arc::downgrade(v)).expect("set once");
        v.lock().park_idle = Duration::ZERO;
    })
    .expect("run");
    let printed = t.out.lock().expect("out").clone();
    assert_eq!(out.stats.warm_starts, 0, "no host thread waited");
    nothing_of_the_previous_thread(&out, &printed);
}

fn nothing_of_the_previous_thread(out: &KvmOutcome, printed: &[u8]) {
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stats.vcpus, 3, "{out:?}");
    assert_eq!(printed.len(), 64, "{out:?}");
    let word = |i: usize| u64::from_le_bytes(printed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    assert_eq!(word(0), 0, "general registers of the previous thread");
    assert_eq!(word(1), 0, "FS base of the previous thread");
    assert_eq!((word(2), word(3), word(4), word(5)), (0, 0, 0, 0), "ymm registers of the previous thread");
    assert_eq!(word(6), 0, "RFLAGS.DF of the previous thread");
    assert_eq!(word(7), 0, "x87 registers of the previous thread (tag word not all empty)");
}

/// A hostile program starts two threads on one slot whose host thread is
/// waiting for the next: the first start takes it, the second is refused
/// (`EBUSY`, -16, the slot is in use) and the thread runs once. Exit
/// status 0; 1 when the second start was not refused, 2 when the thread
/// ran other than once.
const TWO_STARTS_ON_A_WAITING_SLOT: &str = r#"
_start:
  mov edi, 1
  lea rsi, [rip + quick]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
2: pause
  mov edi, 1
  lea rsi, [rip + waiter]
  mov edx, 0x402c00
  xor r10d, r10d
  mov eax, SPAWN
  syscall
  cmp rax, -16
  je 2b
  test rax, rax
  jnz fail
  mov edi, 1
  lea rsi, [rip + waiter]
  mov edx, 0x402e00
  xor r10d, r10d
  mov eax, SPAWN
  syscall
  mov [0x402108], rax
  mov dword ptr [0x402310], 1
3: pause
  cmp dword ptr [0x402300], 0
  je 3b
  mov edi, 1
  cmp qword ptr [0x402108], -16
  jne 4f
  mov edi, 2
  cmp dword ptr [0x402304], 1
  jne 4f
  xor edi, edi
4: mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 99
  mov eax, EXIT_GROUP
  syscall
quick:
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
waiter:
  lock inc dword ptr [0x402304]
1: pause
  cmp dword ptr [0x402310], 0
  je 1b
  mov dword ptr [0x402300], 1
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
"#;

#[test]
fn kvm_two_starts_on_a_waiting_slot_start_one_thread() {
    if !kvm_or_skip("kvm_two_starts_on_a_waiting_slot_start_one_thread") {
        return;
    }
    let (out, _) = run(TWO_STARTS_ON_A_WAITING_SLOT, b"");
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stats.warm_starts, 1, "{out:?}");
    assert_eq!(out.stats.vcpus, 3, "main, quick, one waiter: {out:?}");
}

const CPUS_OF_THREADS: &str = r#"
# main reports its CPU count, starts a thread, which reports its own; main
# then reports again: exit status = before + 10 * thread + 100 * after
_start:
  mov eax, 204
  syscall
  mov [0x402108], eax
  mov edi, 1
  lea rsi, [rip + child]
  mov edx, 0x402800
  mov eax, SPAWN
  syscall
  test rax, rax
  jnz fail
1: pause
  cmp dword ptr [0x402100], 0
  je 1b
  mov eax, 204
  syscall
  imul edi, eax, 100
  imul eax, dword ptr [0x402104], 10
  add edi, eax
  add edi, [0x402108]
  mov eax, EXIT_GROUP
  syscall
fail:
  mov edi, 255
  mov eax, EXIT_GROUP
  syscall
child:
  mov eax, 204
  syscall
  mov [0x402104], eax
  mov dword ptr [0x402100], 1
  mov edi, 0
  mov eax, EXIT
  syscall
  ud2
"#;

/// `--cpus split` puts a program on one CPU (the ring worker on another);
/// at its first thread every vCPU thread, vCPU 0's too, must move to all
/// of the run's CPUs: two threads on one CPU can never hand a futex over
/// in ring 3 (docs/threads.md, "CPU placement of threads").
#[test]
fn kvm_the_first_thread_moves_every_vcpu_thread_to_all_cpus() {
    if !kvm_or_skip("kvm_the_first_thread_moves_every_vcpu_thread_to_all_cpus") {
        return;
    }
    let Some(all) = CpuSet::current() else {
        println!("NOT RUN: kvm_the_first_thread_moves_every_vcpu_thread_to_all_cpus (no CPU set)");
        return;
    };
    let n = all.cpus().len() as i32;
    if !(2..=2).contains(&n) {
        // The status packs three counts in one byte: 2 CPUs exactly.
        println!("NOT RUN: kvm_the_first_thread_moves_every_vcpu_thread_to_all_cpus (needs exactly 2 CPUs, has {n})");
        return;
    }
    let first = all.cpus()[0];
    // On a thread of its own (vCPU 0 runs on the calling thread), placed
    // as the session places a program: on one CPU.
    let out = std::thread::spawn(move || {
        // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes one bit.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `first` < CPU_SETSIZE (it came from the current set).
        unsafe { libc::CPU_SET(first, &mut one) };
        // SAFETY: `one` is a whole cpu_set_t.
        let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) };
        assert_eq!(r, 0, "pin to CPU {first}");
        run_on(CPUS_OF_THREADS, b"", Some(all)).0
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(
        out.status,
        1 + 10 * 2 + 100 * 2,
        "main on 1 CPU before, thread and main on both after: {out:?}"
    );
}
