//! Differential test: busybox-static applets run natively and confined
//! (process backend, and KVM backend where /dev/kvm is usable) must give byte-identical stdout, stderr, exit status
//! and written files. Inputs live under an `--allow-read` dir, outputs are
//! written under an `--allow-write` dir.
//!
//! Needs /bin/busybox (Debian package busybox-static): without it the test
//! fails with the fix. The KVM variant prints `KVM test NOT RUN` and returns
//! where /dev/kvm is not usable (fails instead with CABIN_REQUIRE_KVM=1).

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use cabin_monitor::RunConfig;
use common::Backend;

const BUSYBOX: &str = "/bin/busybox";

/// (name, arguments; `IN` and `OUT` are replaced by the input and output dirs)
const CASES: &[(&str, &str)] = &[
    ("cat", "cat IN/a.txt IN/sub/s.txt"),
    ("cat_stdin", "cat"),
    ("head", "head -n 3 IN/nums.txt"),
    ("tail", "tail -n 5 IN/nums.txt"),
    ("wc", "wc IN/a.txt IN/nums.txt"),
    ("sort", "sort IN/a.txt"),
    ("sort_o", "sort -u -o OUT/sorted.txt IN/a.txt"),
    ("uniq", "uniq -c IN/a.txt"),
    ("cut", "cut -c 1-3 IN/a.txt"),
    ("tr", "tr a-z A-Z"),
    ("sed", "sed -e s/an/AN/g IN/a.txt"),
    ("grep", "grep -n apple IN/a.txt"),
    ("grep_r", "grep -r hello IN"),
    ("md5sum", "md5sum IN/rand.bin IN/a.txt"),
    ("sha256sum", "sha256sum IN/rand.bin"),
    ("cp", "cp IN/rand.bin OUT/copy.bin"),
    ("cp_r", "cp -r IN/sub OUT/subcopy"),
    ("ls", "ls IN"),
    ("od", "od -x IN/a.txt"),
    ("hexdump", "hexdump -C IN/a.txt"),
    ("base64", "base64 IN/a.txt"),
    ("tac", "tac IN/a.txt"),
    ("nl", "nl IN/a.txt"),
    ("cmp", "cmp IN/a.txt IN/nums.txt"),
    ("diff", "diff IN/a.txt IN/sub/s.txt"),
    ("find", "find IN -name s.txt"),
    ("stat", "stat -c %s:%n IN/rand.bin"),
    ("tee", "tee OUT/teed.txt"),
    ("dd", "dd if=IN/rand.bin of=OUT/dd.bin bs=4096 count=10"),
    ("gzip", "gzip -c IN/nums.txt"),
    ("mkdir", "mkdir -p OUT/x/y/z"),
    ("touch_ln", "ln -s target OUT/link"),
    ("awk", "awk {s+=$1}END{print(s)} IN/nums.txt"),
    ("seq", "seq 5 3 40"),
    ("printf", "printf %05d:%s\\n 42 abc"),
    ("expr", "expr 6 * 7"),
    ("false", "false"),
    ("test", "test -f IN/a.txt"),
    ("missing", "cat IN/does-not-exist"),
];

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
                out.push((rel + "/", Vec::new()));
            } else if ft.is_symlink() {
                out.push((rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()));
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn busybox_applets_are_identical_native_and_process() {
    busybox_differential(Backend::Process);
}

#[test]
fn busybox_applets_are_identical_native_and_kvm() {
    if !Backend::Kvm.available("busybox applets on kvm") {
        return;
    }
    busybox_differential(Backend::Kvm);
}

fn busybox_differential(backend: Backend) {
    assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} is missing; help: apt-get install busybox-static");
    let input = std::fs::read(BUSYBOX).unwrap();
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    let image = cabin_rewriter::pipeline::build_image(&input, &opts, &mut |_| {}).expect("build").image;

    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let inp = root.join("in");
    std::fs::create_dir_all(inp.join("sub")).unwrap();
    std::fs::write(inp.join("a.txt"), "banana\napple\ncherry\napple\n\tindented\nno newline").unwrap();
    let nums: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    std::fs::write(inp.join("nums.txt"), nums).unwrap();
    let rand: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(inp.join("rand.bin"), rand).unwrap();
    std::fs::write(inp.join("sub/s.txt"), "hello sub\n").unwrap();

    let mut failures = Vec::new();
    for (name, cmd) in CASES {
        let mut results = Vec::new();
        for confined in [false, true] {
            // Both runs use the same output path so that messages naming it match.
            let run = root.join("run");
            let _ = std::fs::remove_dir_all(&run);
            let out = run.join("out");
            std::fs::create_dir_all(&out).unwrap();
            let args: Vec<String> = cmd
                .split(' ')
                .map(|a| a.replace("IN", inp.to_str().unwrap()).replace("OUT", out.to_str().unwrap()))
                .collect();
            let (so, se) = (run.join("stdout"), run.join("stderr"));
            let stdin = File::open(inp.join("a.txt")).unwrap();
            let (fo, fe) = (File::create(&so).unwrap(), File::create(&se).unwrap());
            let code = if confined {
                let mut all = vec!["busybox".to_string()];
                all.extend(args.clone());
                let cfg = RunConfig {
                    args: all,
                    allow_read: vec![inp.clone()],
                    allow_write: vec![out.clone()],
                    quiet: true,
                    stdio: Some([stdin.as_raw_fd(), fo.as_raw_fd(), fe.as_raw_fd()]),
                    ..RunConfig::default()
                };
                backend.run(&image, &cfg).expect("run").exit_code
            } else {
                let st = Command::new(BUSYBOX)
                    .args(&args)
                    .env_clear()
                    .current_dir(&run)
                    .stdin(Stdio::from(stdin))
                    .stdout(Stdio::from(fo))
                    .stderr(Stdio::from(fe))
                    .status()
                    .unwrap();
                st.code().unwrap_or(-1)
            };
            results.push((code, std::fs::read(&so).unwrap(), std::fs::read(&se).unwrap(), files_in(&out)));
        }
        if results[0] != results[1] {
            let (n, c) = (&results[0], &results[1]);
            failures.push(format!(
                "{name}: exit {} vs {}; stdout {:?} vs {:?}; stderr {:?} vs {:?}; files equal: {}",
                n.0,
                c.0,
                String::from_utf8_lossy(&n.1[..n.1.len().min(120)]),
                String::from_utf8_lossy(&c.1[..c.1.len().min(120)]),
                String::from_utf8_lossy(&n.2),
                String::from_utf8_lossy(&c.2),
                n.3 == c.3
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} applets differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    eprintln!("{} busybox applet runs identical on {backend:?}", CASES.len());
}
