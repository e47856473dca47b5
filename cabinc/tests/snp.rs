//! `cabinc run --backend snp` where there is no SEV-SNP (a clear one-line
//! error, exit 125), and `cabinc attest verify` on a real report and its
//! AMD chain (backends/snp/tests/fixtures), tampered copies, and an image it
//! does not bind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cabinc(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cabinc")).args(args).output().expect("run cabinc")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../backends/snp/tests/fixtures/sev-8.0.0-milan")
}

/// A small image: monitor/tests/programs/fault.c built by `cabinc build`.
fn image(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/tests/programs/fault.c");
    let exe = dir.join("fault");
    cabin_tests::compile_static_c("gcc", "gcc", &src, &exe)?;
    let img = dir.join("fault.cabin");
    let out = cabinc(&["build".as_ref(), exe.as_os_str(), "-o".as_ref(), img.as_os_str()]);
    assert!(out.status.success(), "cabinc build: {}", String::from_utf8_lossy(&out.stderr));
    Some(img)
}

#[test]
fn run_backend_snp_says_why_it_cannot_run_here() {
    if cabin_snp::available().is_ok() {
        cabin_tests::not_run("no-SEV-SNP", "this machine can run the SNP backend; the refusal is not tested");
        return;
    }
    cabin_tests::not_run(
        "SEV-SNP",
        "no SEV-SNP guest with /dev/cabin-vmpl here: the hardware tier (docs/snp.md)",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(img) = image(dir.path()) else { return };
    let out = cabinc(&["run".as_ref(), "--backend".as_ref(), "snp".as_ref(), img.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and its help: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("SEV-SNP"), "{err}");
    assert!(lines[1].starts_with("help: "), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn attest_verify_accepts_the_real_report_and_refuses_tampered_ones() {
    let f = fixtures();
    let report = f.join("report.bin");
    let certs = ["--certs".as_ref(), f.as_os_str()];
    let out = cabinc(&[&["attest".as_ref(), "verify".as_ref(), report.as_os_str()][..], &certs[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("verified:"));
    // The same for scripts: one JSON object.
    let fmt = ["--format".as_ref(), "json".as_ref()];
    let out = cabinc(
        &[&["attest".as_ref(), "verify".as_ref(), report.as_os_str()][..], &certs[..], &fmt[..]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(j["verified"], true);
    assert_eq!(j["measurement"].as_str().map(str::len), Some(96), "{j}");
    assert!(j["bound_by"].is_null(), "{j}");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(&report).expect("read");
    bytes[0x90] ^= 0x10; // in MEASUREMENT
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, &bytes).expect("write");
    let out = cabinc(&[&["attest".as_ref(), "verify".as_ref(), bad.as_os_str()][..], &certs[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.contains("signature"), "{err}");

    // A genuine report that does not bind this image is refused too.
    let Some(img) = image(dir.path()) else { return };
    let out = cabinc(
        &[
            &["attest".as_ref(), "verify".as_ref(), report.as_os_str(), "--image".as_ref(), img.as_os_str()]
                [..],
            &certs[..],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not bind the image"), "{err}");
}

#[test]
fn attest_request_outside_an_snp_guest_says_so() {
    if Path::new(cabin_snp::attest::SEV_GUEST).exists() {
        cabin_tests::not_run("no-SEV-SNP", "/dev/sev-guest exists here");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(img) = image(dir.path()) else { return };
    let out_path = dir.path().join("report.bin");
    let out = cabinc(&[
        "attest".as_ref(),
        "request".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out_path.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/sev-guest is missing") && err.contains("help:"), "{err}");
    assert!(!out_path.exists());
}
