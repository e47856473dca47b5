//! KVM-tier tests: hand-assembled ring-3 programs in tiny static ELF files,
//! run in a real KVM guest.
//!
//! Each test first checks that /dev/kvm is usable; if it is not, it says
//! "KVM test NOT RUN" (`cabin_tests::kvm_available`, which also records it
//! for the summary of `scripts/test.sh`) and returns. With
//! `CABIN_REQUIRE_KVM=1` an unusable /dev/kvm fails the test instead.

use super::*;

/// Whether the KVM tier can run; says NOT RUN when it cannot (the test
/// is named by its thread; `_test` stays for the reader).
pub(crate) fn kvm_or_skip(_test: &str) -> bool {
    cabin_tests::kvm_available(usable)
}

/// A static ELF with one R+X segment holding `code` at 0x401000 (entry) and
/// one RW data page at 0x402000 (`data`).
pub(crate) fn tiny_elf(code: &[u8], data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x3000];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes()); // entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // phnum
    let ph = |f: &mut Vec<u8>, at: usize, flags: u32, off: u64, va: u64, len: u64| {
        f[at..at + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&va.to_le_bytes());
        f[at + 24..at + 32].copy_from_slice(&va.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&len.to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&len.to_le_bytes());
        f[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    };
    ph(&mut f, 64, 5, 0x1000, 0x40_1000, code.len() as u64);
    ph(&mut f, 120, 6, 0x2000, 0x40_2000, 0x1000);
    f[0x1000..0x1000 + code.len()].copy_from_slice(code);
    f[0x2000..0x2000 + data.len()].copy_from_slice(data);
    f
}

/// [`tiny_elf`] as an intact Cabin image: a PT_NOTE with a manifest (no
/// sites) and the launch measurement of its pages, which the session checks
/// before every run. The code is not rewritten: its `syscall`s take the
/// slow-path gate.
pub(crate) fn tiny_image(code: &[u8], data: &[u8]) -> Vec<u8> {
    use cabin_abi::note::{ManifestHeader, FORMAT_VERSION, NT_CABIN_MANIFEST, NT_CABIN_MEASUREMENT};
    use cabin_image::image::encode_note;
    let manifest = ManifestHeader {
        format_version: FORMAT_VERSION,
        original_entry: 0x40_1000,
        entry: 0x40_1000,
        ..ManifestHeader::default()
    }
    .to_bytes();
    let mut f = tiny_elf(code, data);
    let notes = |digest: &[u8]| {
        [encode_note(NT_CABIN_MANIFEST, &manifest), encode_note(NT_CABIN_MEASUREMENT, digest)].concat()
    };
    let at = f.len();
    let len = notes(&[0; 48]).len();
    // A third program header: PT_NOTE over the notes at the end of the file.
    f[56..58].copy_from_slice(&3u16.to_le_bytes());
    let ph = 176;
    f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    f[ph + 4..ph + 8].copy_from_slice(&4u32.to_le_bytes()); // PF_R
    f[ph + 8..ph + 16].copy_from_slice(&(at as u64).to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(len as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&(len as u64).to_le_bytes());
    f[ph + 48..ph + 56].copy_from_slice(&4u64.to_le_bytes());
    f.extend_from_slice(&notes(&[0; 48]));
    let elf = cabin_image::elf::ElfFile::parse(&f).expect("tiny ELF");
    let digest = cabin_image::image::measure(&elf, &manifest).expect("measure");
    f.truncate(at);
    f.extend_from_slice(&notes(&digest));
    f
}

/// Records what the program wrote.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub out: Vec<u8>,
    pub calls: Vec<u64>,
}

impl SyscallService for Recorder {
    fn serve(&mut self, nr: u64, a: [u64; 6], m: &ProgramMemory<'_>) -> Served {
        self.calls.push(nr);
        match nr {
            1 => match m.mem.read(a[1], a[2] as usize) {
                Ok(b) => {
                    self.out.extend_from_slice(&b);
                    Served::Return(a[2] as i64)
                }
                Err(_) => Served::Return(-14),
            },
            60 | 231 => Served::Exit((a[0] & 0xff) as i32),
            _ => Served::Return(-38),
        }
    }
}

pub(crate) fn config() -> KvmConfig {
    KvmConfig {
        shared: None,
        mem_size: layout::DEFAULT_MEM,
        program: ProgramSpec {
            args: vec![b"tiny".to_vec()],
            env: vec![],
            pid: 1000,
            ppid: 999,
            uid: 1000,
            gid: 1000,
            force_trap: false,
            read_ahead: false,
            memory_limit: false,
        },
        timeout: Some(Duration::from_secs(20)),
    }
}

fn run_code(code: &[u8]) -> (KvmOutcome, Recorder) {
    let mut rec = Recorder::default();
    let out = run_with(&tiny_elf(code, b"hello, world\n"), &config(), &mut rec).expect("run");
    (out, rec)
}

/// `mov edi, CODE; mov eax, 60; syscall`.
fn exit_with(code: u8) -> Vec<u8> {
    vec![0xbf, code, 0, 0, 0, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]
}

#[test]
fn kvm_exit_code_through_the_syscall_gate() {
    if !kvm_or_skip("kvm_exit_code_through_the_syscall_gate") {
        return;
    }
    let (out, rec) = run_code(&exit_with(42));
    assert_eq!(out.status, 42, "{out:?}");
    assert_eq!(rec.calls, vec![60]);
    assert_eq!(out.stats.gate_syscalls, 1);
    assert!(!out.execute_only_enforced);
}

#[test]
fn kvm_write_then_exit_through_the_gate() {
    if !kvm_or_skip("kvm_write_then_exit_through_the_gate") {
        return;
    }
    // mov edi,1; mov esi,0x402000; mov edx,13; mov eax,1; syscall; then exit(7) with rax checked:
    // cmp rax,13; jne fail -> exit(7) else exit(9)
    let mut code =
        vec![0xbf, 1, 0, 0, 0, 0xbe, 0x00, 0x20, 0x40, 0x00, 0xba, 13, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0x0f, 0x05];
    code.extend_from_slice(&[0x48, 0x83, 0xf8, 13, 0x75, 12]); // cmp rax,13; jne +12
    code.extend_from_slice(&exit_with(7));
    code.extend_from_slice(&exit_with(9));
    let (out, rec) = run_code(&code);
    assert_eq!(out.status, 7, "{out:?}");
    assert_eq!(rec.out, b"hello, world\n");
}

fn expect_fault(code: &[u8], status: i32, needle: &str) {
    let (out, _) = run_code(code);
    assert_eq!(out.status, status, "{out:?}");
    let report = out.report.unwrap_or_default();
    assert!(report.contains(needle), "report {report:?} lacks {needle:?}");
}

#[test]
fn kvm_faults_end_the_program_with_128_plus_signal() {
    if !kvm_or_skip("kvm_faults_end_the_program_with_128_plus_signal") {
        return;
    }
    // ud2 -> SIGILL
    expect_fault(&[0x0f, 0x0b], 132, "SIGILL");
    // hlt -> #GP -> SIGSEGV
    expect_fault(&[0xf4], 139, "general protection");
    // cli -> SIGSEGV
    expect_fault(&[0xfa], 139, "SIGSEGV");
    // out 0x80, al -> SIGSEGV (I/O bitmap denies)
    expect_fault(&[0xe6, 0x80], 139, "SIGSEGV");
    // out to the ring-0 syscall port from ring 3 -> SIGSEGV
    expect_fault(&[0xe6, 0xe1], 139, "SIGSEGV");
    // wrmsr -> SIGSEGV
    expect_fault(&[0x0f, 0x30], 139, "SIGSEGV");
    // int 0x80 -> SIGSEGV with a clear message
    expect_fault(&[0xcd, 0x80], 139, "int 0x80");
    // int3 -> SIGTRAP
    expect_fault(&[0xcc], 133, "SIGTRAP");
    // write to code: mov byte [0x401000], 1 -> SIGSEGV, write to a read-only page
    expect_fault(&[0xc6, 0x04, 0x25, 0x00, 0x10, 0x40, 0x00, 0x01], 139, "write to a read-only page");
    // jump to data: mov eax, 0x402000; jmp rax -> execute of a non-executable page
    expect_fault(&[0xb8, 0x00, 0x20, 0x40, 0x00, 0xff, 0xe0], 139, "non-executable");
    // read of the proxy-kernel (supervisor page): mov rax, [PK_VA]
    let mut rd = vec![0x48, 0xa1];
    rd.extend_from_slice(&layout::PK_VA.to_le_bytes());
    expect_fault(&rd, 139, "read of a protected page");
    // divide by zero: xor ecx,ecx; div ecx -> SIGFPE
    expect_fault(&[0x31, 0xc9, 0xf7, 0xf1], 136, "SIGFPE");
}

/// Developer aid: runs the image named by `CABIN_KVM_IMAGE` (arguments in
/// `CABIN_KVM_ARGS`, space-separated) with the full monitor and prints the
/// outcome. Does nothing when the variable is unset.
#[test]
#[ignore = "developer aid: set CABIN_KVM_IMAGE and run with --ignored"]
fn kvm_run_image_from_env() {
    let Ok(path) = std::env::var("CABIN_KVM_IMAGE") else {
        return;
    };
    if !kvm_or_skip("kvm_run_image_from_env") {
        return;
    }
    let image = std::fs::read(&path).expect("read image");
    let mut args = vec![path.clone()];
    if let Ok(a) = std::env::var("CABIN_KVM_ARGS") {
        args.extend(a.split_whitespace().map(str::to_string));
    }
    let cfg = cabin_monitor::config::RunConfig {
        args,
        allow_read: std::env::var("CABIN_KVM_READ").ok().into_iter().map(Into::into).collect(),
        allow_write: std::env::var("CABIN_KVM_WRITE").ok().into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    let out = run(&image, &cfg);
    eprintln!("outcome: {out:?}");
}

fn full_run(code: &[u8]) -> cabin_monitor::config::RunOutcome {
    let cfg =
        cabin_monitor::config::RunConfig { args: vec!["tiny".into()], quiet: true, ..Default::default() };
    run(&tiny_image(code, b"hello, world\n"), &cfg).expect("run")
}

#[test]
fn kvm_a_panicking_worker_ends_the_run_instead_of_hanging() {
    if !kvm_or_skip("kvm_a_panicking_worker_ends_the_run_instead_of_hanging") {
        return;
    }
    // mov rdi, MAGIC; mov eax, NR; syscall; exit 3. The service panics on it
    // (cfg(test) only): the vCPU must be stopped, not left waiting.
    let (nr, magic) = cabin_monitor::service::PANIC_TEST_CALL;
    let mut code = vec![0x48, 0xbf];
    code.extend_from_slice(&magic.to_le_bytes());
    code.push(0xb8);
    code.extend_from_slice(&(nr as u32).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x05]);
    code.extend_from_slice(&exit_with(3));
    let cfg =
        cabin_monitor::config::RunConfig { args: vec!["tiny".into()], quiet: true, ..Default::default() };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(&tiny_image(&code, b""), &cfg).map(|o| o.exit_code));
    });
    let r = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the run ended (no hang)");
    match r {
        Err(cabin_monitor::config::RunError::Internal(msg)) => assert!(msg.contains("panicked"), "{msg}"),
        other => panic!("expected an internal error, got {other:?}"),
    }
}

#[test]
fn kvm_gate_call_travels_over_the_ring_to_the_service() {
    if !kvm_or_skip("kvm_gate_call_travels_over_the_ring_to_the_service") {
        return;
    }
    // write(1, "hello, world\n", 13) by a raw syscall; exit 7 if it returned 13, else 9.
    let mut code =
        vec![0xbf, 1, 0, 0, 0, 0xbe, 0x00, 0x20, 0x40, 0x00, 0xba, 13, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0x0f, 0x05];
    code.extend_from_slice(&[0x48, 0x83, 0xf8, 13, 0x75, 12]);
    code.extend_from_slice(&exit_with(7));
    code.extend_from_slice(&exit_with(9));
    let out = full_run(&code);
    assert_eq!(out.exit_code, 7, "{out:?}");
    assert_eq!(out.stats["kvm"]["gate_syscalls"], 2, "{:?}", out.stats);
    assert_eq!(out.stats["syscalls"]["forwarded"], 1, "{:?}", out.stats);
}

#[test]
fn kvm_wild_pointer_ends_the_program_and_the_monitor_survives() {
    if !kvm_or_skip("kvm_wild_pointer_ends_the_program_and_the_monitor_survives") {
        return;
    }
    // write(1, 0xdead0000, 10); then spin forever.
    let code = [
        0xbf, 1, 0, 0, 0, 0xbe, 0x00, 0x00, 0xad, 0xde, 0xba, 10, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0x0f, 0x05,
        0xeb, 0xfe,
    ];
    for _ in 0..3 {
        let out = full_run(&code);
        assert_eq!(out.exit_code, cabin_monitor::config::EXIT_PROTOCOL_VIOLATION, "{out:?}");
        assert!(matches!(out.reason, cabin_monitor::config::EndReason::ProtocolViolation(_)), "{out:?}");
    }
}

#[test]
fn kvm_garbage_on_the_ring_ends_a_spinning_program() {
    if !kvm_or_skip("kvm_garbage_on_the_ring_ends_a_spinning_program") {
        return;
    }
    // mov rax, RING_VA + 128 (sq_tail); mov dword [rax], 0x12345; mov al, 1; out 0xe0, al; jmp $
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&(layout::RING_VA + 128).to_le_bytes());
    code.extend_from_slice(&[0xc7, 0x00, 0x45, 0x23, 0x01, 0x00, 0xb0, 0x01, 0xe6, 0xe0, 0xeb, 0xfe]);
    let out = full_run(&code);
    assert_eq!(out.exit_code, cabin_monitor::config::EXIT_PROTOCOL_VIOLATION, "{out:?}");
}

/// Start-up benchmark (bench/kvm-startup.sh): runs the image named by
/// `CABIN_KVM_BENCH_IMAGE` `CABIN_KVM_BENCH_RUNS` times (default 30) on the
/// KVM and the process backend and prints the median wall time of each.
#[test]
#[ignore = "benchmark: run by bench/kvm-startup.sh"]
fn kvm_bench_startup() {
    let Ok(path) = std::env::var("CABIN_KVM_BENCH_IMAGE") else {
        return;
    };
    if !kvm_or_skip("kvm_bench_startup") {
        return;
    }
    let runs: usize = std::env::var("CABIN_KVM_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let image = std::fs::read(&path).expect("read image");
    let cfg =
        cabin_monitor::config::RunConfig { args: vec![path.clone()], quiet: true, ..Default::default() };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut kvm = Vec::new();
    let mut boot = Vec::new();
    let mut process = Vec::new();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let out = run(&image, &cfg).expect("kvm run");
        kvm.push(t.elapsed().as_secs_f64() * 1e3);
        boot.push(out.stats["kvm"]["boot_ns"].as_f64().unwrap_or(0.0) / 1e6);
        let t = std::time::Instant::now();
        let _ = cabin_process::run(&image, &cfg).expect("process run");
        process.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!(
        "startup {path}: kvm median {:.2} ms (domain build + VM set-up {:.2} ms), process median {:.2} ms, {runs} runs each",
        median(kvm),
        median(boot),
        median(process)
    );
}

#[test]
fn kvm_timeout_stops_a_spinning_program() {
    if !kvm_or_skip("kvm_timeout_stops_a_spinning_program") {
        return;
    }
    let cfg = KvmConfig { timeout: Some(Duration::from_millis(200)), ..config() };
    let mut rec = Recorder::default();
    let r = run_with(&tiny_elf(&[0xeb, 0xfe], b""), &cfg, &mut rec);
    assert!(matches!(r, Err(KvmError::Guest(GuestError::Timeout(_)))), "{r:?}");
}

/// Kicks its own thread (the vCPU thread, outside `KVM_RUN` while it
/// serves) on the program's first call; ends the run once interrupted.
#[derive(Debug, Default)]
struct KicksItself {
    kicked: bool,
}

impl SyscallService for KicksItself {
    fn serve(&mut self, _nr: u64, _a: [u64; 6], _m: &ProgramMemory<'_>) -> Served {
        // SAFETY: the calling thread is alive.
        unsafe { cabin_monitor::kick::kick(cabin_monitor::kick::current_thread()) };
        self.kicked = true;
        Served::Return(0)
    }

    fn interrupted(&mut self) -> Option<Served> {
        self.kicked.then_some(Served::Exit(5))
    }
}

#[test]
fn kvm_one_kick_outside_kvm_run_stops_a_spinning_vcpu() {
    if !kvm_or_skip("kvm_one_kick_outside_kvm_run_stops_a_spinning_vcpu") {
        return;
    }
    // mov eax, 39 (getpid); syscall; jmp $. The kick lands while the vCPU
    // thread serves the call: without immediate_exit it would be lost and
    // the guest would spin until the watchdog (10 s).
    let code = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xfe];
    let cfg = KvmConfig { timeout: Some(Duration::from_secs(10)), ..config() };
    let t0 = std::time::Instant::now();
    let out = run_with(&tiny_elf(&code, b""), &cfg, &mut KicksItself::default()).expect("run");
    assert_eq!(out.status, 5, "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn kvm_trap_site_call_is_redirected_into_the_libos_entry() {
    if !kvm_or_skip("kvm_trap_site_call_is_redirected_into_the_libos_entry") {
        return;
    }
    let slot = layout::BOOT_VA + std::mem::offset_of!(cabin_abi::boot::BootInfo, kvm_trap_entry) as u64;
    let mut c = vec![0x48, 0xb8];
    c.extend_from_slice(&slot.to_le_bytes()); // mov rax, slot
    let lea_at = c.len();
    c.extend_from_slice(&[0x48, 0x8d, 0x0d, 0, 0, 0, 0]); // lea rcx, [rip + entry]
    c.extend_from_slice(&[0x48, 0x89, 0x08]); // mov [rax], rcx   (publish the "libos" entry)
    c.extend_from_slice(&[0x48, 0x89, 0xe3]); // mov rbx, rsp
    c.extend_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]); // getpid via a raw syscall (a trap site)
    c.extend_from_slice(&exit_with(2)); // not reached: the call was redirected
    let entry = c.len();
    c.extend_from_slice(&[0x48, 0x8d, 0xbc, 0x24, 0x80, 0, 0, 0]); // lea rdi, [rsp + 128]
    c.extend_from_slice(&[0x48, 0x39, 0xdf, 0x75, 9]); // cmp rdi, rbx; jne bad
    c.extend_from_slice(&[0x89, 0xc7, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]); // exit(rax = the call's number)
    c.extend_from_slice(&exit_with(1)); // bad: red zone not skipped
    let rel = (entry as i32) - (lea_at as i32 + 7);
    c[lea_at + 3..lea_at + 7].copy_from_slice(&rel.to_le_bytes());
    let out = full_run(&c);
    assert_eq!(out.exit_code, 39, "{out:?}");
    assert_eq!(out.stats["kvm"]["gate_redirects"], 1, "{:?}", out.stats);
}

/// Compiles `src` with `gcc -static` and rewrites it into an image; `None`
/// (with a NOT RUN line) when gcc is missing.
fn real_image(src: &std::path::Path, dir: &std::path::Path) -> Option<Vec<u8>> {
    let exe = dir.join(src.file_stem().unwrap_or_default());
    let out = std::process::Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&exe).arg(src).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("gcc failed for {}: {}", src.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            cabin_tests::not_run("gcc", &format!("gcc is not available ({e}); help: apt-get install gcc"));
            return None;
        }
    }
    let input = std::fs::read(&exe).expect("read compiled program");
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    let built = cabin_rewriter::pipeline::build_image(&input, &opts, &mut |_| {}).expect("build image");
    Some(built.image)
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn cfg_args(args: &[&str]) -> cabin_monitor::config::RunConfig {
    cabin_monitor::config::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        ..Default::default()
    }
}

/// Real images (compiled C, rewritten by the rewriter) on the KVM backend:
/// the same outcomes the process backend's tests (monitor/tests/confined.rs)
/// expect, plus a file copy and an exit code from the samples.
#[test]
fn kvm_real_images_behave_as_on_the_process_backend() {
    use cabin_monitor::config::EndReason;
    if !kvm_or_skip("kvm_real_images_behave_as_on_the_process_backend") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exitcode) = real_image(&repo("samples/c/exitcode.c"), t.path()) else { return };
    let o = run(&exitcode, &cfg_args(&["exitcode"])).expect("run");
    assert_eq!(o.exit_code, 42, "{:?}", o.reason);

    // filecopy: 512-byte reads and writes, allowed dirs, byte-identical result,
    // and (nearly) no VM exits per forwarded call.
    let Some(filecopy) = real_image(&repo("samples/c/filecopy.c"), t.path()) else { return };
    let (src_dir, dst_dir) = (t.path().join("in"), t.path().join("out"));
    std::fs::create_dir_all(&src_dir).expect("mkdir");
    std::fs::create_dir_all(&dst_dir).expect("mkdir");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(src_dir.join("f"), &data).expect("write input");
    let (src, dst) = (src_dir.join("f"), dst_dir.join("f"));
    let mut c = cfg_args(&["filecopy", src.to_str().unwrap_or_default(), dst.to_str().unwrap_or_default()]);
    c.allow_read.push(src_dir.clone());
    c.allow_write.push(dst_dir.clone());
    let o = run(&filecopy, &c).expect("run");
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    assert_eq!(std::fs::read(&dst).expect("copied file"), data);
    // About 1 950 writes and, with the libos reading ahead, a few dozen
    // reads and readvs instead of about 1 950 reads.
    let forwarded = o.stats["syscalls"]["forwarded"].as_u64().unwrap_or(0);
    let exits = o.stats["vm_exits"].as_u64().unwrap_or(u64::MAX);
    assert!(forwarded > 1900, "{}", o.stats);
    eprintln!("kvm filecopy: {forwarded} forwarded calls, {exits} VM exits ({})", o.stats["kvm"]);

    let programs = repo("monitor/tests/programs");
    let Some(scribble) = real_image(&programs.join("scribble.c"), t.path()) else { return };
    let o = run(&scribble, &cfg_args(&["scribble"])).expect("monitor survives");
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{:?}", o.reason);

    let Some(wildptr) = real_image(&programs.join("wildptr.c"), t.path()) else { return };
    for args in [&["wildptr"][..], &["wildptr", "huge"]] {
        let o = run(&wildptr, &cfg_args(args)).expect("monitor survives");
        assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    }

    let Some(fault) = real_image(&programs.join("fault.c"), t.path()) else { return };
    let o = run(&fault, &cfg_args(&["fault"])).expect("run");
    assert_eq!(o.exit_code, 139, "{:?}", o.reason);
    assert!(
        matches!(o.reason, EndReason::Signal { signo: 11, addr: Some(0x10), rip: Some(_), .. }),
        "{:?}",
        o.reason
    );

    let Some(escape) = real_image(&programs.join("escape.c"), t.path()) else { return };
    let root = t.path().canonicalize().expect("canon");
    let dir = root.join("allowed");
    std::fs::create_dir(&dir).expect("mkdir");
    let secret = root.join("secret");
    std::fs::write(&secret, "SECRET").expect("write");
    std::fs::write(dir.join("ok.txt"), "fine").expect("write");
    std::os::unix::fs::symlink(&secret, dir.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../secret", dir.join("rel")).expect("symlink");
    let mut c = cfg_args(&["escape", dir.to_str().unwrap_or_default(), secret.to_str().unwrap_or_default()]);
    c.allow_write.push(dir.clone());
    let o = run(&escape, &c).expect("run");
    assert_eq!(o.exit_code, 0, "an escape attempt succeeded: {:?}", o.reason);
}

/// Every call through the slow path (`force_trap_path`, as if every site
/// were a trap site): the program still runs correctly.
#[test]
fn kvm_all_calls_through_the_trap_path() {
    if !kvm_or_skip("kvm_all_calls_through_the_trap_path") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(filecopy) = real_image(&repo("samples/c/filecopy.c"), t.path()) else { return };
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::write(&src, &data).expect("write input");
    let mut c = cfg_args(&["filecopy", src.to_str().unwrap_or_default(), dst.to_str().unwrap_or_default()]);
    c.allow_write.push(t.path().to_path_buf());
    c.force_trap_path = true;
    let o = run(&filecopy, &c).expect("run");
    assert_eq!(o.exit_code, 0, "{:?} {}", o.reason, o.stats);
    assert_eq!(std::fs::read(&dst).expect("copied"), data);
    let gate = o.stats["kvm"]["gate_syscalls"].as_u64().unwrap_or(0);
    assert!(gate > 300, "calls did not take the gate: {}", o.stats);
    eprintln!("kvm force-trap filecopy: {}", o.stats["kvm"]);
}

/// Runs `code` like [`run_code`], after `tweak` has changed the built
/// domain's memory and `msrs` the vCPU's MSRs, and `cr4_clear` bits off CR4
/// (tests of what the real set-up prevents).
fn run_tweaked(
    code: &[u8],
    tweak: impl FnOnce(&Guest),
    msrs: impl FnOnce(&Guest) -> Vec<(u32, u64)>,
    cr4_clear: u64,
) -> Result<LoopEnd, KvmError> {
    let cfg = config();
    let p = prepare(&tiny_elf(code, b""), &cfg).expect("prepare");
    tweak(&p.guest);
    let mut m = vcpu::create(&p.kvm, &p.cpuid, &p.features, &p.guest).expect("vcpu");
    let entries: Vec<kvm_bindings::kvm_msr_entry> = msrs(&p.guest)
        .into_iter()
        .map(|(index, data)| kvm_bindings::kvm_msr_entry { index, data, ..Default::default() })
        .collect();
    let list = kvm_bindings::Msrs::from_entries(&entries).expect("MSR list");
    m.vcpu.set_msrs(&list).expect("SET_MSRS");
    let mut s = m.vcpu.get_sregs().expect("GET_SREGS");
    s.cr4 &= !cr4_clear;
    m.vcpu.set_sregs(&s).expect("SET_SREGS");
    let mut rec = Recorder::default();
    let mut stats = KvmStats::default();
    let ending = AtomicBool::new(false);
    run_loop(&mut m.vcpu, &m.vm, &p.guest, cfg.timeout, &mut rec, &mut stats, p.start, &ending)
}

/// Linux's user 32-bit code descriptor, which Cabin's GDT leaves out; put
/// back into slot 0x20 by tests that need compatibility mode.
const USER_CODE32: u64 = 0x00cf_fb00_0000_ffff;

/// `push 0x23; push 0x401010; retfq` (into 32-bit code at 0x401010), then
/// at 0x401010: `mov eax, 20; syscall; hlt`.
fn compat_syscall_code() -> Vec<u8> {
    let mut code = vec![0x6a, 0x23, 0x68, 0x10, 0x10, 0x40, 0x00, 0x48, 0xcb];
    code.resize(0x10, 0x90);
    code.extend_from_slice(&[0xb8, 20, 0, 0, 0, 0x0f, 0x05, 0xf4]);
    code
}

fn restore_code32(d: &Guest) {
    d.phys.write(layout::GDT_GPA + 0x20, &USER_CODE32.to_le_bytes()).expect("GDT slot 0x20");
}

const MSR_CSTAR: u32 = 0xc000_0083;

#[test]
fn kvm_there_is_no_32bit_code_segment() {
    if !kvm_or_skip("kvm_there_is_no_32bit_code_segment") {
        return;
    }
    // The far return to 0x23 itself faults (#GP; #UD on this machine's nested KVM).
    let (out, _) = run_code(&compat_syscall_code());
    assert!(out.status == 139 || out.status == 132, "{out:?}");
    assert_eq!(out.fault.map(|f| f.rip), Some(0x40_1007), "the retfq faulted: {out:?}");
}

#[test]
fn kvm_compat_syscall_reaches_the_cstar_entry_and_ends_the_program() {
    if !kvm_or_skip("kvm_compat_syscall_reaches_the_cstar_entry_and_ends_the_program") {
        return;
    }
    // With a 32-bit code segment put back, `syscall` from 32-bit code
    // enters ring 0 through CSTAR (or arrives as a page fault there): the
    // proxy-kernel's entry ends the program with SIGSEGV.
    let end =
        run_tweaked(&compat_syscall_code(), restore_code32, |_| Vec::new(), 0).expect("a program fault");
    let LoopEnd::Fault { status, fault: f, report, .. } = end else { panic!("not a fault: {end:?}") };
    assert_eq!(status, 139, "{report:?}");
    assert_eq!(f.reason, cabin_abi::hypercall::fault::REASON_COMPAT_SYSCALL, "{f:?}");
    assert_eq!(f.rip, 0x40_1017, "the return address after the syscall");
    assert_eq!(
        report,
        "program killed by SIGSEGV: `syscall` from 32-bit code is not supported (return address 0x401017)"
    );
}

#[test]
fn kvm_sysenter_never_enters_ring_0() {
    if !kvm_or_skip("kvm_sysenter_never_enters_ring_0") {
        return;
    }
    // #UD on AMD (no sysenter in long mode), #GP on Intel (SYSENTER_CS = 0).
    let (out, _) = run_code(&[0x0f, 0x34]);
    assert!(out.status == 132 || out.status == 139, "{out:?}");
    assert_eq!(out.fault.map(|f| (f.rip, f.cs & 3)), Some((0x40_1000, 3)), "{out:?}");
}

#[test]
fn kvm_cr4_has_smep_smap_umip_where_the_cpu_does() {
    if !kvm_or_skip("kvm_cr4_has_smep_smap_umip_where_the_cpu_does") {
        return;
    }
    let cfg = config();
    let p = prepare(&tiny_elf(&exit_with(0), b""), &cfg).expect("prepare");
    let features = p.features;
    let m = vcpu::create(&p.kvm, &p.cpuid, &features, &p.guest).expect("vcpu");
    let cr4 = m.vcpu.get_sregs().expect("GET_SREGS").cr4;
    for (has, bit, name) in [
        (features.smep(), vcpu::CR4_SMEP, "SMEP"),
        (features.smap(), vcpu::CR4_SMAP, "SMAP"),
        (features.umip(), vcpu::CR4_UMIP, "UMIP"),
    ] {
        eprintln!("{name}: CPU {has}, CR4 {}", cr4 & bit != 0);
        assert_eq!(cr4 & bit != 0, has, "{name}");
    }
}

#[test]
fn kvm_smep_stops_ring_0_running_a_user_page() {
    if !kvm_or_skip("kvm_smep_stops_ring_0_running_a_user_page") {
        return;
    }
    let (_, _, features) = vcpu::open().expect("KVM");
    if !features.smep() {
        cabin_tests::not_run("SMEP", "this CPU has no SMEP");
        return;
    }
    // CSTAR pointed (by the test) at the program's own page 0x401020,
    // which holds `hlt`: a compat `syscall` makes ring 0 fetch from it.
    let mut code = compat_syscall_code();
    code.resize(0x20, 0x90);
    code.push(0xf4);
    let user_page = |_: &Guest| vec![(MSR_CSTAR, 0x40_1020)];
    // Control: without SMEP ring 0 runs the program's `hlt`.
    let without = run_tweaked(&code, restore_code32, user_page, vcpu::CR4_SMEP);
    let msg = format!("{without:?}");
    assert!(msg.contains("halted"), "without SMEP ring 0 should have run the user page: {msg}");
    // With SMEP the fetch faults in ring 0 (a Cabin error here, since only
    // this test points CSTAR at the program): the program's code never runs.
    let with = run_tweaked(&code, restore_code32, user_page, 0);
    let msg = format!("{with:?}");
    assert!(msg.contains("proxy-kernel fault") && !msg.contains("halted"), "{msg}");
    eprintln!("SMEP: {msg}");
}

/// Issue 16: with a code key, the domain's code pages carry it in their
/// leaf entries and no other page does; without one, none does. (Pure
/// page-table check: needs no /dev/kvm and no PKU.)
#[test]
fn code_pages_carry_the_protection_key_in_the_page_tables() {
    let image = tiny_elf(&exit_with(0), b"hello, world\n");
    let elf = cabin_image::elf::ElfFile::parse(&image).expect("tiny ELF");
    let code: Vec<(u64, u64)> = elf.exec_segments().map(|s| (s.vaddr, s.end())).collect();
    let data: Vec<(u64, u64)> =
        elf.loads().filter(|s| s.flags & cabin_image::elf::PF_X == 0).map(|s| (s.vaddr, s.end())).collect();
    assert!(!code.is_empty() && !data.is_empty());
    for key in [pku::CODE_PKEY, 0] {
        let cfg = config();
        let g = domain::build(&image, cfg.mem_size, &cfg.program, [0; 16], (0, 0), key).expect("domain");
        assert_eq!(g.code_pkey, key);
        let pt = g.pt.lock().expect("page tables");
        let key_of = |va: u64| {
            let e = pt.entry(&g.phys, va & !0xfff).expect("walk").expect("mapped");
            (e >> paging::PTE_PKEY_SHIFT) & 0xf
        };
        for &(start, _) in &code {
            assert_eq!(key_of(start), u64::from(key), "code page {start:#x}");
        }
        for &(start, _) in &data {
            assert_eq!(key_of(start), 0, "data page {start:#x}");
        }
        assert_eq!(key_of(g.rsp - 8), 0, "stack");
    }
}

/// `/dev/kvm` and the CPU tables are computed once per process: every
/// `vcpu::open` after the first gives its own descriptor (a `dup`, so one
/// VM's owner closing it leaves the others working) and the same tables as
/// an uncached open.
#[test]
fn kvm_open_is_computed_once_and_each_caller_gets_its_own_descriptor() {
    use std::os::fd::AsRawFd;
    if !kvm_or_skip("kvm_open_is_computed_once_and_each_caller_gets_its_own_descriptor") {
        return;
    }
    let (a, cpuid_a, f_a) = vcpu::open().expect("open");
    let (b, cpuid_b, f_b) = vcpu::open().expect("open again");
    let (_, cpuid_fresh, f_fresh) = vcpu::open_uncached().expect("uncached open");
    assert_ne!(a.as_raw_fd(), b.as_raw_fd());
    assert_eq!((f_a, f_b), (f_fresh, f_fresh));
    // The APIC ids in KVM's table are those of the CPU the query ran on (two
    // queries on two CPUs differ there, cached or not): leaf 1's EBX[31:24],
    // the x2APIC id in EDX of leaves 0xB and 0x1F, leaf 0x8000001E's EAX.
    let table = |c: &kvm_bindings::CpuId| -> Vec<[u32; 6]> {
        c.as_slice()
            .iter()
            .map(|e| {
                let ebx = if e.function == 1 { e.ebx & 0x00ff_ffff } else { e.ebx };
                let edx = if matches!(e.function, 0xb | 0x1f) { 0 } else { e.edx };
                let eax = if e.function == 0x8000_001e { 0 } else { e.eax };
                [e.function, e.index, eax, ebx, e.ecx, edx]
            })
            .collect()
    };
    assert_eq!(table(&cpuid_a), table(&cpuid_fresh));
    assert_eq!(table(&cpuid_b), table(&cpuid_fresh));
    drop(a);
    // The other descriptor still works after one is closed.
    assert!(b.create_vm().is_ok());
    // (That a check leaves no VM open is counted by monitor/tests/processes.rs,
    // whose tests run one at a time; here other tests open VMs meanwhile.)
    usable().expect("usable");
    usable().expect("usable again");
    // Two guests, two VMs.
    let (image, cfg) = (tiny_elf(&exit_with(0), b"x"), config());
    let guest = || domain::build(&image, cfg.mem_size, &cfg.program, [0; 16], (0, 0), 0).expect("guest");
    let (g1, g2) = (guest(), guest());
    let vm1 = vcpu::create_vm(&b, &g1).expect("vm 1");
    let vm2 = vcpu::create_vm(&b, &g2).expect("vm 2");
    assert_ne!(vm1.as_raw_fd(), vm2.as_raw_fd());
    // Each VM has its own memory: a vCPU can be made in each.
    assert!(vm1.create_vcpu(0).is_ok() && vm2.create_vcpu(0).is_ok());
}
