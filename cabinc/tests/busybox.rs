//! Differential tests on a real, large static program: Debian's
//! `busybox-static` (/bin/busybox). The image is built once; then dozens of
//! applets run natively and as the image on generated inputs, and stdout,
//! stderr, exit status and any files written must be byte-identical.
//!
//! Without /bin/busybox these tests fail (install busybox-static): a
//! missing input is never a pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use cabin_tests::{
    count_syscall_instructions, diff_runs, load_headers, number_lines, readelf_program_headers, run,
    target_dir, text_corpus, Cabinc, Invocation, Rng,
};

const BUSYBOX: &str = "/bin/busybox";

fn cabinc() -> Cabinc {
    Cabinc::new(env!("CARGO_BIN_EXE_cabinc"))
}

fn busybox() -> &'static Path {
    let path = Path::new(BUSYBOX);
    assert!(path.is_file(), "{BUSYBOX} is missing: install busybox-static (apt-get install busybox-static)");
    assert!(
        !readelf_program_headers(path).contains("INTERP"),
        "{BUSYBOX} is dynamically linked: install busybox-static, not busybox"
    );
    path
}

/// The busybox image, built once per test process.
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = target_dir().join("cabin-test-images");
        std::fs::create_dir_all(&dir).expect("creating image directory");
        let image = dir.join("busybox.cabin");
        let _ = std::fs::remove_file(&image);
        cabinc().build_ok(busybox(), &image, &[]);
        image
    })
}

fn applets() -> Vec<String> {
    let out = run(busybox(), &Invocation::new().arg("--list"));
    out.stdout_str().lines().map(str::to_string).collect()
}

/// One applet run: arguments (after `busybox`), stdin and input files.
#[derive(Debug, Clone)]
struct Case {
    args: Vec<String>,
    stdin: Vec<u8>,
}

fn case(args: &[&str]) -> Case {
    Case { args: args.iter().map(|s| s.to_string()).collect(), stdin: Vec::new() }
}

fn case_in(args: &[&str], stdin: impl Into<Vec<u8>>) -> Case {
    Case { stdin: stdin.into(), ..case(args) }
}

/// The input files every case finds in its working directory.
fn input_files() -> BTreeMap<&'static str, Vec<u8>> {
    let mut rng = Rng::new(0xB05B);
    let text = text_corpus(1, 3000);
    let mut text2 = text_corpus(1, 3000).into_bytes();
    // A few edits so diff/cmp have something to report.
    for at in [100usize, 5000, 20000] {
        if at < text2.len() {
            text2[at] = b'#';
        }
    }
    let data = rng.bytes(64 * 1024);
    let mut data2 = data.clone();
    data2[40_000] ^= 0x55;
    let b64 = {
        let enc =
            run(busybox(), &Invocation::new().arg0("busybox").arg("base64").stdin(data[..3000].to_vec()));
        enc.stdout
    };
    let mut m = BTreeMap::new();
    m.insert("text.txt", text.into_bytes());
    m.insert("text2.txt", text2);
    m.insert("nums.txt", number_lines(2, 5000).into_bytes());
    m.insert("data.bin", data);
    m.insert("data2.bin", data2);
    m.insert("b64.txt", b64);
    m
}

fn cases() -> Vec<Case> {
    let text = text_corpus(1, 3000);
    let big = Rng::new(77).bytes(1 << 20);
    let gz =
        run(busybox(), &Invocation::new().arg0("busybox").args(["gzip", "-c"]).stdin(big.clone())).stdout;
    let bz =
        run(busybox(), &Invocation::new().arg0("busybox").args(["bzip2", "-c"]).stdin(text.clone())).stdout;
    let sh = |script: &str| case(&["sh", "-c", script]);
    vec![
        case(&["sha256sum", "data.bin", "text.txt"]),
        case(&["md5sum", "data.bin"]),
        case(&["sha1sum", "data.bin"]),
        case_in(&["sha512sum"], big.clone()),
        case(&["sha3sum", "data.bin"]),
        case(&["crc32", "data.bin"]),
        case(&["sort", "text.txt"]),
        case(&["sort", "-n", "nums.txt"]),
        case(&["sort", "-r", "-u", "text.txt"]),
        case(&["sort", "-t", ",", "-k", "2", "text.txt"]),
        case(&["uniq", "-c", "text.txt"]),
        case(&["uniq", "-d", "text.txt"]),
        case_in(&["gzip", "-c", "-9"], big.clone()),
        case_in(&["gunzip", "-c"], gz),
        case_in(&["bzip2", "-c"], text.clone()),
        case_in(&["bunzip2", "-c"], bz),
        case(&["awk", "{ s += $1; n++ } END { print s, n, s / n }", "nums.txt"]),
        case(&["awk", "-F,", "{ print NF, $1 }", "text.txt"]),
        case(&["sed", "-e", "s/cabin/CABIN/g", "-e", "/alpha/d", "text.txt"]),
        case(&["sed", "-n", "10,20p", "text.txt"]),
        case(&["wc", "text.txt", "nums.txt", "data.bin"]),
        case_in(&["wc", "-l", "-w", "-c"], big.clone()),
        case(&["base64", "data.bin"]),
        case(&["base64", "-d", "b64.txt"]),
        case(&["od", "-A", "x", "-t", "x1", "data.bin"]),
        case(&["od", "-c", "text.txt"]),
        case(&["hexdump", "-C", "data.bin"]),
        case(&["xxd", "data.bin"]),
        case(&["head", "-n", "7", "text.txt"]),
        case(&["tail", "-n", "9", "text.txt"]),
        case(&["tail", "-c", "100", "data.bin"]),
        case(&["cut", "-d", ",", "-f", "1,3", "text.txt"]),
        case(&["cut", "-c", "2-5", "text.txt"]),
        case_in(&["tr", "a-z", "A-Z"], text.clone()),
        case_in(&["tr", "-d", "0-9"], text.clone()),
        case(&["grep", "-n", "cabin", "text.txt"]),
        case(&["grep", "-c", "-i", "apple", "text.txt"]),
        case(&["grep", "-E", "^-?[0-9]+$", "nums.txt"]),
        case(&["grep", "no-such-word-anywhere", "text.txt"]),
        case(&["expr", "6", "*", "7"]),
        case(&["expr", "1", "=", "2"]),
        case(&["expr", "length", "cabin"]),
        case(&["cat", "text.txt", "data.bin"]),
        case(&["cat", "no-such-file"]),
        case(&["tac", "text.txt"]),
        case(&["seq", "1", "3", "10000"]),
        case(&["seq", "-s", ",", "20"]),
        case(&["printf", "%s-%d-%x-%5.2f\\n", "a", "42", "255", "3.14159"]),
        case(&["echo", "-n", "hello", "there"]),
        case(&["echo", "-e", "a\\tb\\nc"]),
        case(&["basename", "/a/b/c.txt", ".txt"]),
        case(&["dirname", "/a/b/c.txt"]),
        case(&["nl", "text.txt"]),
        case(&["rev", "text.txt"]),
        case(&["fold", "-w", "20", "text.txt"]),
        case(&["paste", "nums.txt", "text.txt"]),
        case(&["expand", "text.txt"]),
        case(&["cmp", "data.bin", "data2.bin"]),
        case(&["diff", "-u", "text.txt", "text2.txt"]),
        case(&["strings", "data.bin"]),
        case(&["factor", "1234567890", "999983", "600851475143"]),
        case_in(&["bc"], "2^100\nscale=20\n1/7\n"),
        case(&["dc", "-e", "2 64 ^ p"]),
        case(&["stat", "-c", "%s %n %F", "text.txt", "data.bin"]),
        case(&["ls", "-1"]),
        case(&["true"]),
        case(&["false"]),
        case(&["test", "-f", "text.txt"]),
        case(&["[", "1", "-gt", "2", "]"]),
        case(&["no-such-applet"]),
        sh("x=0; for i in 1 2 3 4 5; do x=$((x+i)); done; echo $x; echo to-stderr >&2; exit 3"),
        sh("echo hello | tr a-z A-Z; sort -n nums.txt | head -n 3"),
        sh("yes cabin | head -n 3"),
        sh("find . -type f | sort"),
        sh("cp text.txt copy.txt && mkdir sub && mv copy.txt sub/ && ls -R && cat sub/copy.txt | wc -l"),
        sh("tar -cf out.tar text.txt nums.txt && tar -tvf out.tar"),
        sh("dd if=data.bin of=part.bin bs=512 count=3 skip=2 2>/dev/null; wc -c part.bin"),
        sh("gzip -c text.txt > t.gz; gunzip -c t.gz | cmp - text.txt && echo roundtrip ok"),
        sh("exec 3>fd3.txt; echo via-fd3 >&3; exec 3>&-; cat fd3.txt"),
    ]
}

/// A fixed time for every input file, so outputs that show mtimes agree.
fn fixed_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

fn populate(dir: &Path, files: &BTreeMap<&'static str, Vec<u8>>) {
    for (name, data) in files {
        let path = dir.join(name);
        std::fs::write(&path, data).expect("writing input file");
        let f = std::fs::File::options().write(true).open(&path).expect("opening input file");
        f.set_modified(fixed_mtime()).expect("setting mtime");
    }
}

/// Files left in `dir` after a run (relative path → contents).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("reading directory").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(&p, root, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn run_in_fresh_dir(
    program: &Path,
    c: &Case,
    files: &BTreeMap<&'static str, Vec<u8>>,
) -> (cabin_tests::Output, BTreeMap<String, Vec<u8>>) {
    let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
    populate(dir.path(), files);
    let inv = Invocation::new()
        .arg0("busybox")
        .args(&c.args)
        .stdin(c.stdin.clone())
        .cwd(dir.path())
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    let out = run(program, &inv);
    let files = snapshot(dir.path());
    (out, files)
}

#[test]
fn busybox_applets_identical() {
    let bb = busybox();
    let image = image();
    let available = applets();
    let files = input_files();
    let cases = cases();
    let mut used: Vec<&str> = cases.iter().map(|c| c.args[0].as_str()).collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 24, "test bug: only {} distinct applets", used.len());
    let mut failures = Vec::new();
    let mut passed = 0;
    for c in &cases {
        let applet = c.args[0].as_str();
        if applet != "no-such-applet" && !available.iter().any(|a| a == applet) {
            failures.push(format!("{:?}: applet {applet} not in `busybox --list` (test bug)", c.args));
            continue;
        }
        let (n1, f1) = run_in_fresh_dir(bb, c, &files);
        let (n2, f2) = run_in_fresh_dir(bb, c, &files);
        if diff_runs(&n1, &n2).is_err() || f1 != f2 {
            failures.push(format!("{:?}: not deterministic natively (test bug)", c.args));
            continue;
        }
        eprintln!(
            "busybox {:?}: native {}, {} bytes out, {} bytes err",
            c.args,
            cabin_tests::describe_status(n1.status),
            n1.stdout.len(),
            n1.stderr.len()
        );
        let (i, fi) = run_in_fresh_dir(image, c, &files);
        let mut problems = Vec::new();
        if let Err(msg) = diff_runs(&n1, &i) {
            problems.push(msg);
        }
        if f1 != fi {
            let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
            let differing: Vec<&String> =
                f1.iter().filter(|(k, v)| fi.get(*k) != Some(*v)).map(|(k, _)| k).collect();
            problems.push(format!(
                "files differ: native {:?}, image {:?}, differing {differing:?}",
                names(&f1),
                names(&fi)
            ));
        }
        if problems.is_empty() {
            passed += 1;
        } else {
            failures.push(format!("busybox {:?}:\n{}", c.args, problems.join("\n")));
        }
    }
    eprintln!("busybox: {passed} of {} cases identical ({} applets)", cases.len(), used.len());
    assert!(
        failures.is_empty(),
        "{} of {} busybox cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn busybox_sites_rewritten() {
    let report = cabinc().inspect_json(image());
    let sites = &report["sites"];
    let total = sites["total"].as_u64().unwrap_or_else(|| panic!("sites.total missing: {report:#}"));
    let rewritten =
        sites["rewritten"].as_u64().unwrap_or_else(|| panic!("sites.rewritten missing: {report:#}"));
    let objdump = count_syscall_instructions(busybox()) as u64;
    assert_eq!(total, objdump, "inspect sites.total vs syscall instructions found by objdump -d");
    assert!(
        rewritten * 100 >= total * 99,
        "only {rewritten} of {total} sites rewritten (< 99%); traps: {}",
        sites["trap"]
    );
}

#[test]
fn busybox_image_is_execute_only() {
    let loads = load_headers(image());
    assert!(loads.iter().any(|l| l.executable()), "no executable LOAD: {loads:?}");
    for l in loads.iter().filter(|l| l.executable()) {
        assert_eq!(l.flags, "  E", "executable LOAD at {:#x} is not execute-only", l.vaddr);
    }
    assert_eq!(cabinc().inspect_json(image())["execute_only"], true);
}

#[test]
fn busybox_build_is_deterministic() {
    let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
    let again = dir.path().join("busybox-again.cabin");
    cabinc().build_ok(busybox(), &again, &[]);
    let a = std::fs::read(image()).expect("reading image");
    let b = std::fs::read(&again).expect("reading second image");
    assert!(a == b, "two builds of busybox differ ({} vs {} bytes)", a.len(), b.len());
    assert_eq!(cabinc().measure(image()), cabinc().measure(&again));
}
