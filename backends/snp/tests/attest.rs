//! `cabinc attest verify`'s checks on a real SEV-SNP report and its AMD
//! certificate chain (fixtures from the `sev` crate, see
//! tests/fixtures/sev-8.0.0-milan/README.md), and on tampered copies: every
//! altered byte, certificate or root is refused with its own error.

use std::path::{Path, PathBuf};

use cabin_snp::attest::{
    binding, check_report, load_chain, parse_report, report_data, verify, AttestError, Binding,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sev-8.0.0-milan")
}

/// A copy of the fixtures in a temporary directory, to tamper with.
fn copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for f in ["report.bin", "vcek.der", "ark.pem", "ask.pem"] {
        std::fs::copy(fixtures().join(f), d.path().join(f)).expect("copy fixture");
    }
    d
}

#[test]
fn real_report_verifies() {
    let f = fixtures();
    let v = verify(&f.join("report.bin"), &f, None).expect("the real Milan report verifies");
    assert_eq!(v.product, "Milan");
    assert_eq!(v.binding, None);
}

#[test]
fn every_altered_signed_byte_is_refused() {
    let f = fixtures();
    let (chain, _) = load_chain(&f).expect("chain");
    let path = f.join("report.bin");
    let original = std::fs::read(&path).expect("read");
    check_report(&original, &path, &chain).expect("the original verifies");
    // Every 4th byte of the header fields and of the signature area (R, S
    // and their padding), every 32nd elsewhere: ECDSA in a debug build takes
    // ~0.1 s. (All 1184 bytes, one at a time, were checked once by hand,
    // 2026-12-07: all refused.)
    let picked = (0..original.len())
        .filter(|&at| ((at < 0x60 || (0x2a0..0x340).contains(&at)) && at % 4 == 1) || at % 32 == 7);
    for at in picked {
        let mut bad = original.clone();
        bad[at] ^= 0x01;
        let e = check_report(&bad, &path, &chain).expect_err("a tampered report must be refused");
        assert!(
            matches!(e, AttestError::Signature(_) | AttestError::BadReport(..)),
            "byte {at:#x}: unexpected {e}"
        );
    }
    // Truncated, padded, empty.
    let d = copy();
    for bad in [&original[..REPORT_HALF], &[original.clone(), vec![0]].concat()[..], &[][..]] {
        let p = d.path().join("short.bin");
        std::fs::write(&p, bad).expect("write");
        assert!(matches!(verify(&p, d.path(), None), Err(AttestError::BadReport(..))));
    }
}

const REPORT_HALF: usize = 592;

#[test]
fn tampered_or_foreign_certificates_are_refused() {
    // VCEK altered (inside its public key): parse or chain failure.
    let d = copy();
    let mut vcek = std::fs::read(d.path().join("vcek.der")).expect("read");
    let n = vcek.len();
    vcek[n - 120] ^= 0x40;
    std::fs::write(d.path().join("vcek.der"), &vcek).expect("write");
    let e = verify(&d.path().join("report.bin"), d.path(), None).expect_err("altered VCEK");
    assert!(matches!(e, AttestError::BadCert(..) | AttestError::Chain(_) | AttestError::Signature(_)), "{e}");

    // The ASK of another product: the chain breaks.
    let d = copy();
    std::fs::write(d.path().join("ask.pem"), sev::certs::snp::builtin::genoa::ASK).expect("write");
    let e = verify(&d.path().join("report.bin"), d.path(), None).expect_err("foreign ASK");
    assert!(matches!(e, AttestError::Chain(_)), "{e}");

    // A root that is not AMD's (here: the ASK posing as the ARK).
    let d = copy();
    std::fs::copy(d.path().join("ask.pem"), d.path().join("ark.pem")).expect("copy");
    let e = verify(&d.path().join("report.bin"), d.path(), None).expect_err("not AMD's root");
    assert!(matches!(e, AttestError::UnknownRoot(_)), "{e}");

    // Missing and garbage certificates.
    let d2 = copy();
    std::fs::remove_file(d2.path().join("vcek.der")).expect("rm");
    let e = verify(&d2.path().join("report.bin"), d2.path(), None).expect_err("no VCEK");
    assert!(matches!(e, AttestError::MissingCert { name: "vcek", .. }), "{e}");
    assert!(e.to_string().contains("help:"));
    std::fs::write(
        d2.path().join("vcek.pem"),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = verify(&d2.path().join("report.bin"), d2.path(), None).expect_err("garbage VCEK");
    assert!(matches!(e, AttestError::BadCert(..)), "{e}");
}

#[test]
fn the_report_must_bind_the_image() {
    let f = fixtures();
    let report = parse_report(&std::fs::read(f.join("report.bin")).expect("read"), &f.join("report.bin"))
        .expect("parse");
    // The real report binds neither a made-up digest ...
    let digest = [0x5a; 48];
    let e = binding(&report, &digest).expect_err("not bound");
    let msg = e.to_string();
    assert!(msg.contains(&hex::encode(digest)) && msg.contains(&hex::encode(report.measurement)), "{msg}");
    // ... but binds its own measurement, and REPORT_DATA = digest || zeros.
    assert_eq!(binding(&report, &report.measurement).expect("bound"), Binding::Measurement);
    let mut r = report;
    r.report_data = report_data(&digest);
    assert_eq!(binding(&r, &digest).expect("bound"), Binding::ReportData);
    // REPORT_DATA with the digest but junk after it does not bind.
    r.report_data[60] = 1;
    assert!(binding(&r, &digest).is_err());
}

/// Attack: whoever hands `cabinc attest verify` its files controls every
/// byte. Random reports (fields the parser interprets: versions, the chip
/// id, the signature algorithm) and truncated or corrupted certificates end
/// in an error, never a panic or a pass.
#[test]
fn hostile_reports_and_certificates_end_in_errors() {
    let f = fixtures();
    let (chain, _) = load_chain(&f).expect("chain");
    let path = f.join("report.bin");
    let original = std::fs::read(&path).expect("read");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..24 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..original.len()).map(|_| next() as u8).collect()
        } else {
            // The real report with 1..16 random bytes changed.
            let mut b = original.clone();
            for _ in 0..1 + next() % 16 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            if b == original {
                continue;
            }
            b
        };
        let r = std::panic::catch_unwind(|| check_report(&bytes, &path, &chain));
        assert!(matches!(r, Ok(Err(_))), "round {round}: a hostile report was not refused cleanly");
    }
    let vcek = std::fs::read(f.join("vcek.der")).expect("read");
    let d = copy();
    for cut in [0, 1, 16, vcek.len() / 2, vcek.len() - 1] {
        std::fs::remove_file(d.path().join("vcek.der")).ok();
        std::fs::write(d.path().join("vcek.der"), &vcek[..cut]).expect("write");
        let r = std::panic::catch_unwind(|| load_chain(d.path()).map(|_| ()));
        assert!(matches!(r, Ok(Err(_))), "a VCEK cut at {cut} was not refused cleanly");
    }
}
