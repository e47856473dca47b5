//! `cabinc build` on malformed and refused inputs. Each case is made in
//! code by mutating a valid small static sample (header fields, program
//! headers, truncation), or is a real refused program (dynamically linked,
//! hidden `wrpkru`). Every case must: exit 1, say what is wrong in a short
//! message (the substring the ELF validator promises, at most 3 lines of
//! stderr), leave no output or temporary file behind, and not touch its input.
//! Usage errors exit 2.

use std::path::Path;

use cabin_tests::tempfile::TempDir;
use cabin_tests::{dir_entries, expect_exit, Cabinc, Flavour, Samples, EXIT_REFUSED, EXIT_USAGE};

fn cabinc() -> Cabinc {
    Cabinc::new(env!("CARGO_BIN_EXE_cabinc"))
}

fn tempdir() -> TempDir {
    cabin_tests::tempfile::tempdir().expect("creating a temporary directory")
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PHENT: usize = 56;

/// A mutable ELF64 file with field accessors.
#[derive(Debug, Clone)]
struct Elf(Vec<u8>);

impl Elf {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
    fn set16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn set64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn phoff(&self) -> usize {
        self.u64(32) as usize
    }
    fn phnum(&self) -> usize {
        self.u16(56) as usize
    }
    /// File offset of program header `i`.
    fn ph(&self, i: usize) -> usize {
        self.phoff() + i * PHENT
    }
    fn p_type(&self, i: usize) -> u32 {
        self.u32(self.ph(i))
    }
    fn p_flags(&self, i: usize) -> u32 {
        self.u32(self.ph(i) + 4)
    }
    /// Indices of PT_LOAD headers.
    fn loads(&self) -> Vec<usize> {
        (0..self.phnum()).filter(|&i| self.p_type(i) == PT_LOAD).collect()
    }
    /// The first executable PT_LOAD.
    fn exec_load(&self) -> usize {
        *self.loads().iter().find(|&&i| self.p_flags(i) & PF_X != 0).expect("base has an executable LOAD")
    }
    /// The last writable PT_LOAD (data/bss), the last segment in memory.
    fn data_load(&self) -> usize {
        *self.loads().iter().rev().find(|&&i| self.p_flags(i) & PF_W != 0).expect("base has a writable LOAD")
    }
    fn set_offset(&mut self, i: usize, v: u64) {
        let at = self.ph(i) + 8;
        self.set64(at, v);
    }
    fn vaddr(&self, i: usize) -> u64 {
        self.u64(self.ph(i) + 16)
    }
    fn set_vaddr(&mut self, i: usize, v: u64) {
        let at = self.ph(i) + 16;
        self.set64(at, v);
        self.set64(at + 8, v); // p_paddr follows
    }
    fn offset(&self, i: usize) -> u64 {
        self.u64(self.ph(i) + 8)
    }
    fn filesz(&self, i: usize) -> u64 {
        self.u64(self.ph(i) + 32)
    }
    fn set_filesz(&mut self, i: usize, v: u64) {
        let at = self.ph(i) + 32;
        self.set64(at, v);
    }
    fn set_memsz(&mut self, i: usize, v: u64) {
        let at = self.ph(i) + 40;
        self.set64(at, v);
    }
}

/// A named malformed input and the substring its refusal must contain.
struct Case {
    name: &'static str,
    data: Vec<u8>,
    expect: &'static str,
}

/// The valid small static sample the cases are made from.
fn base() -> Elf {
    let path = Samples::get().path("hello", Flavour::Glibc);
    Elf(std::fs::read(path).expect("reading hello.glibc"))
}

fn mutate(name: &'static str, expect: &'static str, f: impl FnOnce(&mut Elf)) -> Case {
    let mut e = base();
    f(&mut e);
    Case { name, data: e.0, expect }
}

fn cases() -> Vec<Case> {
    let b = base();
    let len = b.0.len() as u64;
    let mut v = vec![
        Case { name: "empty file", data: Vec::new(), expect: "not an ELF file" },
        Case { name: "shell script", data: b"#!/bin/sh\necho hi\n".to_vec(), expect: "not an ELF file" },
        mutate("bad magic", "not an ELF file", |e| e.0[3] = b'G'),
        Case { name: "truncated header (40 bytes)", data: b.0[..40].to_vec(), expect: "truncated" },
        Case { name: "truncated header (63 bytes)", data: b.0[..63].to_vec(), expect: "truncated" },
        mutate("ELFCLASS32", "not a 64-bit ELF", |e| e.0[4] = 1),
        mutate("big-endian", "not little-endian", |e| e.0[5] = 2),
        mutate("e_machine i386", "not an x86-64", |e| e.set16(18, 3)),
        mutate("e_machine aarch64", "not an x86-64", |e| e.set16(18, 183)),
        mutate("ET_REL", "not an executable", |e| e.set16(16, 1)),
        mutate("ET_CORE", "not an executable", |e| e.set16(16, 4)),
        mutate("ET_NONE", "not an executable", |e| e.set16(16, 0)),
        mutate("e_phentsize 32", "program header size", |e| e.set16(54, 32)),
        mutate("e_phnum 0", "no program headers", |e| e.set16(56, 0)),
        mutate("e_phnum 129", "too many program headers", |e| e.set16(56, 129)),
        mutate("e_phoff near EOF", "program headers extend past end of file", |e| e.set64(32, len - 100)),
        mutate("e_phoff huge", "program headers extend past end of file", |e| e.set64(32, u64::MAX - 8)),
        mutate("segment past EOF", "extends past end of file", |e| {
            let d = e.data_load();
            e.set_filesz(d, 0x10_0000);
            e.set_memsz(d, 0x10_0000);
        }),
        mutate("p_offset overflow", "extends past end of file", |e| {
            let d = e.data_load();
            let low = e.offset(d) & 0xfff;
            e.set_offset(d, 0xffff_ffff_ffff_f000 | low);
        }),
        mutate("filesz > memsz", "file size larger than memory size", |e| {
            let x = e.exec_load();
            let fs = e.filesz(x);
            e.set_memsz(x, fs - 0x100);
        }),
        mutate("memsz 5 GiB", "too large", |e| {
            let d = e.data_load();
            e.set_memsz(d, 5 << 30);
        }),
        mutate("segment beyond 47-bit user space", "too large", |e| {
            let d = e.data_load();
            let low = e.vaddr(d) & 0xfff;
            e.set_vaddr(d, 0x7fff_ffff_f000 | low);
        }),
        mutate("vaddr + memsz overflows", "too large", |e| {
            let d = e.data_load();
            let low = e.vaddr(d) & 0xfff;
            e.set_vaddr(d, 0xffff_ffff_ffff_f000 | low);
        }),
        mutate("overlapping LOADs", "overlap", |e| {
            let (x, d) = (e.exec_load(), e.data_load());
            let low = e.offset(d) & 0xfff;
            let at = e.vaddr(x) + low;
            e.set_vaddr(d, at);
        }),
        mutate(
            "segment in the lowest 64 KiB",
            "lies below 0x10000: Cabin maps nothing in the lowest 64 KiB",
            |e| {
                let first = e.loads()[0];
                let low = e.offset(first) & 0xfff;
                e.set_vaddr(first, low);
            },
        ),
        mutate("offset/vaddr misaligned", "misaligned", |e| {
            let d = e.data_load();
            let v = e.vaddr(d);
            e.set_vaddr(d, v + 0x10);
        }),
        mutate("no executable segment", "no executable segment", |e| {
            for i in e.loads() {
                let at = e.ph(i) + 4;
                let f = e.u32(at);
                e.set32(at, f & !PF_X);
            }
        }),
        mutate("entry in read-only data", "entry point", |e| {
            let x = e.exec_load();
            let after = e.vaddr(x) + e.filesz(x) + 0x1000 * 2;
            e.set64(24, after);
        }),
        mutate("entry zero", "entry point", |e| e.set64(24, 0)),
        mutate("PT_NOTE turned into PT_INTERP", "dynamically linked", |e| {
            let note = (0..e.phnum()).find(|&i| e.p_type(i) == PT_NOTE).expect("base has a PT_NOTE");
            let at = e.ph(note);
            e.set32(at, PT_INTERP);
        }),
        Case {
            name: "truncated inside the code",
            data: {
                let x = b.exec_load();
                b.0[..(b.offset(x) + 0x100) as usize].to_vec()
            },
            expect: "extends past end of file",
        },
    ];
    let samples = Samples::get();
    v.push(Case {
        name: "dynamically linked hello (gcc default)",
        data: std::fs::read(samples.refuse("hello.dynamic")).expect("reading hello.dynamic"),
        expect: "dynamically linked",
    });
    v.push(Case {
        name: "wrpkru hidden inside a mov immediate",
        data: std::fs::read(samples.refuse("wrpkru.glibc")).expect("reading wrpkru.glibc"),
        expect: "wrpkru",
    });
    v
}

/// Runs `cabinc build` on `data`; returns a description of what went wrong, if anything.
fn check_refused(name: &str, data: &[u8], expect: &str, extra: &[&str]) -> Option<String> {
    let input_dir = tempdir();
    let out_dir = tempdir();
    let input = input_dir.path().join("input.elf");
    std::fs::write(&input, data).expect("writing input");
    let output = out_dir.path().join("out.cabin");
    let out = cabinc().build(&input, &output, extra);
    let mut problems = Vec::new();
    if out.code() != Some(EXIT_REFUSED) {
        problems.push(format!("exit status {:?}, expected {EXIT_REFUSED}", out.code()));
    }
    let stderr = out.stderr_str();
    if !stderr.contains(expect) {
        problems.push(format!("stderr lacks {expect:?}"));
    }
    let lines = stderr.trim_end_matches('\n').lines().count();
    if lines > 3 {
        problems.push(format!("stderr has {lines} lines, at most 3 allowed"));
    }
    let left = dir_entries(out_dir.path());
    if !left.is_empty() {
        problems.push(format!("files left in the output directory: {left:?}"));
    }
    if std::fs::read(&input).ok().as_deref() != Some(data) {
        problems.push("the input file was modified".to_string());
    }
    eprintln!("{name}: exit {:?}: {}", out.code(), stderr.trim_end().replace('\n', " | "));
    if problems.is_empty() {
        None
    } else {
        Some(format!("{name}: {}\n{}", problems.join("; "), out.describe()))
    }
}

#[test]
fn malformed_inputs_are_refused() {
    let cases = cases();
    assert!(cases.len() >= 17, "test bug: only {} cases", cases.len());
    let failures: Vec<String> =
        cases.iter().filter_map(|c| check_refused(c.name, &c.data, c.expect, &[])).collect();
    assert!(
        failures.is_empty(),
        "{} of {} malformed inputs were not refused properly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn refusals_with_json_messages_leave_nothing_behind() {
    // Same exit status and cleanliness with --message-format json, and the
    // result is reported as one JSON object on stdout.
    let mut failures = Vec::new();
    for c in cases() {
        let input_dir = tempdir();
        let out_dir = tempdir();
        let input = input_dir.path().join("input.elf");
        std::fs::write(&input, &c.data).expect("writing input");
        let out = cabinc().build(&input, &out_dir.path().join("out.cabin"), &["--message-format", "json"]);
        let left = dir_entries(out_dir.path());
        let json: Option<cabin_tests::serde_json::Value> =
            cabin_tests::serde_json::from_slice(&out.stdout).ok();
        if out.code() != Some(EXIT_REFUSED) || !left.is_empty() || !json.is_some_and(|v| v.is_object()) {
            failures.push(format!(
                "{}: status {:?}, left {left:?}, stdout must be one JSON object\n{}",
                c.name,
                out.code(),
                out.describe()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn dynamic_refusal_says_how_to_fix() {
    let samples = Samples::get();
    let data = std::fs::read(samples.refuse("hello.dynamic")).expect("reading hello.dynamic");
    let dir = tempdir();
    let input = dir.path().join("hello.dynamic");
    std::fs::write(&input, &data).expect("writing input");
    let out = cabinc().build(&input, &dir.path().join("x.cabin"), &[]);
    expect_exit(&out, EXIT_REFUSED, "dynamic input");
    assert!(
        out.stderr_str().contains("-static"),
        "the message should say to link statically:\n{}",
        out.describe()
    );
}

#[test]
fn missing_input_is_refused() {
    let dir = tempdir();
    let out = cabinc().build(&dir.path().join("does-not-exist"), &dir.path().join("x.cabin"), &[]);
    expect_exit(&out, EXIT_REFUSED, "nonexistent input");
    assert!(
        out.stderr_str().contains("does-not-exist"),
        "the message should name the file:\n{}",
        out.describe()
    );
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new());
}

#[test]
fn unusable_paths_are_refused() {
    let input = Samples::get().path("hello", Flavour::Glibc);
    let dir = tempdir();
    // Output directory does not exist.
    let out = cabinc().build(input, &dir.path().join("no-such-dir").join("x.cabin"), &[]);
    expect_exit(&out, EXIT_REFUSED, "output in a missing directory");
    // Input is a directory.
    let out = cabinc().build(dir.path(), &dir.path().join("x.cabin"), &[]);
    expect_exit(&out, EXIT_REFUSED, "directory as input");
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "a refused build left files behind");
}

#[test]
fn usage_errors_exit_2() {
    let input = Samples::get().path("hello", Flavour::Glibc);
    let dir = tempdir();
    let out_path = dir.path().join("x.cabin");
    let (i, o) = (input.to_str().expect("utf-8 path"), out_path.to_str().expect("utf-8 path"));
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["build"],
        // (`build INPUT` alone is valid: -o defaults to NAME.cabin.)
        vec!["build", i, "-o"],
        vec!["build", i, "-o", o, "--no-such-flag"],
        vec!["build", i, "-o", o, "--message-format", "xml"],
        vec!["frobnicate"],
        vec!["inspect", i, "--format", "yaml"],
        vec!["measure"],
    ];
    let mut failures = Vec::new();
    for args in &cases {
        let out = cabinc().run(args);
        if out.code() != Some(EXIT_USAGE) {
            failures.push(format!("cabinc {args:?}: expected exit {EXIT_USAGE}\n{}", out.describe()));
        }
    }
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "a usage error wrote files");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn base_sample_is_valid() {
    // Guards the mutations above: the unmutated base must build.
    let dir = tempdir();
    let input: &Path = Samples::get().path("hello", Flavour::Glibc);
    cabinc().build_ok(input, &dir.path().join("ok.cabin"), &[]);
}

#[test]
fn an_image_is_not_rebuilt_and_a_failed_build_keeps_the_old_output() {
    let dir = tempdir();
    let input: &Path = Samples::get().path("hello", Flavour::Glibc);
    let image = dir.path().join("hello.cabin");
    cabinc().build_ok(input, &image, &[]);
    let before = std::fs::read(&image).expect("image written");
    // Building from an image is refused, and the existing output is untouched
    // (into itself: refused as overwriting the input, before it is read).
    let out = cabinc().build(&image, &image, &[]);
    expect_exit(&out, EXIT_REFUSED, "rebuilding an image");
    assert!(out.stderr_str().contains("would overwrite the program it rewrites"), "{}", out.stderr_str());
    let out = cabinc().build(&image, &dir.path().join("again.cabin"), &[]);
    expect_exit(&out, EXIT_REFUSED, "rebuilding an image");
    assert!(out.stderr_str().contains("already a Cabin image"), "{}", out.stderr_str());
    assert_eq!(std::fs::read(&image).expect("image still there"), before, "failed build changed the output");
    assert_eq!(dir_entries(dir.path()), vec!["hello.cabin".to_string()], "a failed build left files behind");
}
