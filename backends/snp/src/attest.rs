//! Attestation: checking an SEV-SNP attestation report against AMD's key
//! chain and a Cabin image ([`verify`], `cabinc attest verify`), and asking
//! the firmware for one ([`request`], `cabinc attest request`).
//!
//! A report is trusted only when all of these hold (the `sev` crate does
//! the cryptography):
//!
//! 1. its bytes are exactly one report (1184 bytes) that re-encodes to the
//!    same bytes (nothing the parser would drop, e.g. in reserved fields),
//!    and whose signature area holds nothing but R and S (the verifier
//!    reads 48 of each 72-byte field);
//! 2. the ARK in `--certs DIR` is one of AMD's own (the `sev` crate's
//!    built-in Milan, Genoa and Turin roots), so a self-made chain fails;
//! 3. ARK signs itself and the ASK, the ASK signs the VCEK (RSASSA-PSS,
//!    SHA-384), and the VCEK signs the report (ECDSA P-384 over SHA-384 of
//!    bytes 0x0..0x2A0);
//! 4. with `--image`, the report binds the image: its `MEASUREMENT` is the
//!    image's launch digest (the image was the launched guest), or its
//!    `REPORT_DATA` is that digest followed by 16 zero bytes (what
//!    [`request`] asks for: the domain's VMPL0 vouches for the image it
//!    loaded).
//!
//! Report format: SEV Secure Nested Paging Firmware ABI Specification
//! (AMD 56860), Table "ATTESTATION_REPORT Structure"; `/dev/sev-guest` ABI:
//! Linux `include/uapi/linux/sev-guest.h`.

use std::path::{Path, PathBuf};

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use thiserror::Error;

/// Size of an attestation report.
pub const REPORT_LEN: usize = 1184;
/// Offset of the signature's R component (72 bytes, little-endian).
const SIG_R: usize = 0x2a0;
/// Offset of its S component.
const SIG_S: usize = 0x2e8;
/// Size of `REPORT_DATA`.
pub const REPORT_DATA_LEN: usize = 64;
/// Size of a launch digest.
pub const DIGEST_LEN: usize = 48;

/// Why a report is refused.
#[derive(Debug, Error)]
pub enum AttestError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report is not one well-formed report.
    #[error("{0} is not an SEV-SNP attestation report: {1}")]
    BadReport(PathBuf, String),
    /// A certificate is missing from the directory.
    #[error("{dir} has no {name}.pem or {name}.der; help: fetch the ARK, ASK and VCEK from AMD's KDS (docs/snp.md, \"Attestation\")")]
    MissingCert {
        /// The directory.
        dir: PathBuf,
        /// Which (`ark`, `ask`, `vcek`).
        name: &'static str,
    },
    /// A certificate does not parse.
    #[error("{0} is not an X.509 certificate (PEM or DER): {1}")]
    BadCert(PathBuf, String),
    /// The ARK is not AMD's.
    #[error("the ARK in {0} is not one of AMD's root keys (Milan, Genoa, Turin); the chain proves nothing")]
    UnknownRoot(PathBuf),
    /// The chain does not verify.
    #[error("the certificate chain ARK -> ASK -> VCEK does not verify: {0}")]
    Chain(String),
    /// The VCEK did not sign this report (it was altered, or comes from another chip).
    #[error("the report's signature does not verify with the VCEK (altered, or from another chip): {0}")]
    Signature(String),
    /// The image is not a valid Cabin image.
    #[error("{0}: {1}")]
    Image(PathBuf, cabin_image::image::ImageError),
    /// The report does not bind the image.
    #[error(
        "the report does not bind the image: image measurement {image}, report MEASUREMENT {measurement}, \
         REPORT_DATA {report_data}"
    )]
    NotBound {
        /// The image's launch digest.
        image: String,
        /// The report's `MEASUREMENT`.
        measurement: String,
        /// The report's `REPORT_DATA`.
        report_data: String,
    },
}

/// How a verified report binds the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `MEASUREMENT` is the image's launch digest.
    Measurement,
    /// `REPORT_DATA` is the image's launch digest and 16 zero bytes.
    ReportData,
}

/// What a verified report says.
#[derive(Debug)]
pub struct Verified {
    /// The report.
    pub report: AttestationReport,
    /// Which AMD product's root signed the chain.
    pub product: &'static str,
    /// How it binds the image, when one was given.
    pub binding: Option<Binding>,
}

fn read(path: &Path) -> Result<Vec<u8>, AttestError> {
    std::fs::read(path).map_err(|source| AttestError::Read { path: path.to_path_buf(), source })
}

/// Parses a report, refusing anything but exactly the bytes of one report.
pub fn parse_report(bytes: &[u8], path: &Path) -> Result<AttestationReport, AttestError> {
    let bad = |why: String| AttestError::BadReport(path.to_path_buf(), why);
    if bytes.len() != REPORT_LEN {
        return Err(bad(format!("{} bytes, a report has {REPORT_LEN}", bytes.len())));
    }
    let report = AttestationReport::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
    let again = report.to_bytes().map_err(|e| bad(e.to_string()))?;
    if again.as_ref() != bytes {
        return Err(bad("bytes the format reserves are not zero".into()));
    }
    // The signature's R and S are 72-byte little-endian fields of which a
    // P-384 signature uses 48; the rest of the signature area is reserved.
    // Verification reads only the 48, so the others must be checked here.
    let zero = |r: std::ops::Range<usize>| bytes[r].iter().all(|&b| b == 0);
    if !(zero(SIG_R + 48..SIG_R + 72) && zero(SIG_S + 48..SIG_S + 72) && zero(SIG_S + 72..REPORT_LEN)) {
        return Err(bad("the signature area has bytes outside R and S".into()));
    }
    Ok(report)
}

/// Loads `DIR/NAME.pem` or `DIR/NAME.der`.
pub fn load_cert(dir: &Path, name: &'static str) -> Result<Certificate, AttestError> {
    for (ext, pem) in [("pem", true), ("der", false)] {
        let path = dir.join(format!("{name}.{ext}"));
        if !path.exists() {
            continue;
        }
        let bytes = read(&path)?;
        let cert = if pem { Certificate::from_pem(&bytes) } else { Certificate::from_der(&bytes) };
        return cert.map_err(|e| AttestError::BadCert(path, e.to_string()));
    }
    Err(AttestError::MissingCert { dir: dir.to_path_buf(), name })
}

/// Which AMD product `ark` is the root of, if any.
fn amd_root(ark: &Certificate) -> Option<&'static str> {
    let der = ark.to_der().ok()?;
    [("Milan", builtin::milan::ark()), ("Genoa", builtin::genoa::ark()), ("Turin", builtin::turin::ark())]
        .into_iter()
        .find(|(_, c)| c.as_ref().ok().and_then(|c| c.to_der().ok()).as_deref() == Some(&der[..]))
        .map(|(p, _)| p)
}

/// How `report` binds an image whose launch digest is `digest`, if it does.
pub fn binding(report: &AttestationReport, digest: &[u8; DIGEST_LEN]) -> Result<Binding, AttestError> {
    if report.measurement == *digest {
        return Ok(Binding::Measurement);
    }
    if report.report_data == report_data(digest) {
        return Ok(Binding::ReportData);
    }
    Err(AttestError::NotBound {
        image: hex::encode(digest),
        measurement: hex::encode(report.measurement),
        report_data: hex::encode(report.report_data),
    })
}

/// The `REPORT_DATA` that binds an image: its launch digest, then zeros.
pub fn report_data(digest: &[u8; DIGEST_LEN]) -> [u8; REPORT_DATA_LEN] {
    let mut d = [0u8; REPORT_DATA_LEN];
    d[..DIGEST_LEN].copy_from_slice(digest);
    d
}

/// Loads ARK, ASK and VCEK from `certs_dir`, checks that the ARK is AMD's
/// and that the chain verifies; answers the chain and the product.
pub fn load_chain(certs_dir: &Path) -> Result<(Chain, &'static str), AttestError> {
    let ark = load_cert(certs_dir, "ark")?;
    let ask = load_cert(certs_dir, "ask")?;
    let vcek = load_cert(certs_dir, "vcek")?;
    let product = amd_root(&ark).ok_or_else(|| AttestError::UnknownRoot(certs_dir.to_path_buf()))?;
    let chain = Chain { ca: ca::Chain { ark, ask }, vek: vcek };
    chain.verify().map_err(|e| AttestError::Chain(e.to_string()))?;
    Ok((chain, product))
}

/// Parses the report in `bytes` (from `path`) and checks that the chain's
/// VCEK signed it.
pub fn check_report(bytes: &[u8], path: &Path, chain: &Chain) -> Result<AttestationReport, AttestError> {
    let report = parse_report(bytes, path)?;
    (chain, &report).verify().map_err(|e| AttestError::Signature(e.to_string()))?;
    Ok(report)
}

/// Verifies the report in `report_path` with the certificates in
/// `certs_dir` and, given `image_path`, its binding to that image.
pub fn verify(
    report_path: &Path,
    certs_dir: &Path,
    image_path: Option<&Path>,
) -> Result<Verified, AttestError> {
    let bytes = read(report_path)?;
    let (chain, product) = load_chain(certs_dir)?;
    let report = check_report(&bytes, report_path, &chain)?;
    let binding = match image_path {
        None => None,
        Some(p) => {
            let bytes = read(p)?;
            let img = cabin_image::image::Image::parse(&bytes)
                .map_err(|e| AttestError::Image(p.to_path_buf(), e))?;
            let digest = img.verify_measurement().map_err(|e| AttestError::Image(p.to_path_buf(), e))?;
            Some(binding(&report, &digest)?)
        }
    };
    Ok(Verified { report, product, binding })
}

/// `/dev/sev-guest`.
pub const SEV_GUEST: &str = "/dev/sev-guest";

/// `struct snp_report_req` (Linux `uapi/linux/sev-guest.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportReq {
    /// Placed in the report's `REPORT_DATA`.
    pub user_data: [u8; REPORT_DATA_LEN],
    /// The VMPL the report names (the caller's or a less privileged one).
    pub vmpl: u32,
    /// Zero.
    pub rsvd: [u8; 28],
}

/// `struct snp_report_resp`: the firmware's `MSG_REPORT_RSP` (status u32,
/// report size u32, 24 reserved bytes, then the report at 0x20).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ReportResp {
    /// The message.
    pub data: [u8; 4000],
}

/// Offset of the report in [`ReportResp::data`].
pub const REPORT_RESP_REPORT: usize = 0x20;

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRequest {
    /// Message version (1).
    pub msg_version: u8,
    /// Address of the request.
    pub req_data: u64,
    /// Address of the response.
    pub resp_data: u64,
    /// Out: bits 31:0 firmware error, 63:32 VMM error.
    pub exitinfo2: u64,
}

/// `SNP_GET_REPORT`: `_IOWR('S', 0x0, struct snp_guest_request_ioctl)`.
pub const SNP_GET_REPORT: u64 = crate::abi::ioc(3, b'S' as u64, 0, size_of::<GuestRequest>());

/// Why a report could not be requested.
#[derive(Debug, Error)]
pub enum RequestError {
    /// No `/dev/sev-guest`.
    #[error("{SEV_GUEST} is missing: this is not an SEV-SNP guest (or the sev-guest driver is not loaded); help: run inside an SEV-SNP confidential VM (docs/snp.md)")]
    NoDevice,
    /// The device cannot be opened.
    #[error("cannot open {SEV_GUEST}: {0}; help: run as root")]
    Open(std::io::Error),
    /// The firmware or the VMM refused.
    #[error("SNP_GET_REPORT failed: {err} (firmware error {fw:#x}, VMM error {vmm:#x})")]
    Ioctl {
        /// The ioctl's errno.
        err: std::io::Error,
        /// Firmware error.
        fw: u32,
        /// VMM error.
        vmm: u32,
    },
    /// The answer is not a report.
    #[error("the firmware answered status {status:#x} with {size} report bytes")]
    BadResponse {
        /// `MSG_REPORT_RSP.STATUS`.
        status: u32,
        /// `MSG_REPORT_RSP.REPORT_SIZE`.
        size: u32,
    },
}

/// The request for a report at VMPL0 carrying `digest` in `REPORT_DATA`.
pub fn report_request(digest: &[u8; DIGEST_LEN]) -> ReportReq {
    ReportReq { user_data: report_data(digest), vmpl: 0, rsvd: [0; 28] }
}

/// Takes the report out of a `MSG_REPORT_RSP`.
pub fn report_from_response(resp: &ReportResp) -> Result<Vec<u8>, RequestError> {
    let word =
        |o: usize| u32::from_le_bytes([resp.data[o], resp.data[o + 1], resp.data[o + 2], resp.data[o + 3]]);
    let (status, size) = (word(0), word(4));
    if status != 0 || size as usize != REPORT_LEN {
        return Err(RequestError::BadResponse { status, size });
    }
    Ok(resp.data[REPORT_RESP_REPORT..REPORT_RESP_REPORT + REPORT_LEN].to_vec())
}

/// Asks the firmware (through `device`, normally [`SEV_GUEST`]) for a report
/// whose `REPORT_DATA` binds the image with launch digest `digest`.
pub fn request(device: &Path, digest: &[u8; DIGEST_LEN]) -> Result<Vec<u8>, RequestError> {
    use std::os::fd::AsRawFd;
    if !device.exists() {
        return Err(RequestError::NoDevice);
    }
    let f = std::fs::File::options().read(true).write(true).open(device).map_err(RequestError::Open)?;
    let mut req = report_request(digest);
    let mut resp = ReportResp { data: [0; 4000] };
    let mut ioc = GuestRequest {
        msg_version: 1,
        req_data: &mut req as *mut ReportReq as u64,
        resp_data: &mut resp as *mut ReportResp as u64,
        exitinfo2: 0,
    };
    // SAFETY: SNP_GET_REPORT reads `ioc` and the request, writes `ioc` and
    // at most size_of::<ReportResp>() bytes at resp_data; all three live
    // until the call returns.
    let r =
        unsafe { libc::ioctl(f.as_raw_fd(), SNP_GET_REPORT as libc::c_ulong, &mut ioc as *mut GuestRequest) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        return Err(RequestError::Ioctl { err, fw: ioc.exitinfo2 as u32, vmm: (ioc.exitinfo2 >> 32) as u32 });
    }
    report_from_response(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_is_linuxs() {
        use std::mem::offset_of;
        assert_eq!(size_of::<ReportReq>(), 96);
        assert_eq!(
            (offset_of!(ReportReq, user_data), offset_of!(ReportReq, vmpl), offset_of!(ReportReq, rsvd)),
            (0, 64, 68)
        );
        assert_eq!(size_of::<ReportResp>(), 4000);
        assert_eq!(size_of::<GuestRequest>(), 32);
        let offs = (
            offset_of!(GuestRequest, msg_version),
            offset_of!(GuestRequest, req_data),
            offset_of!(GuestRequest, resp_data),
            offset_of!(GuestRequest, exitinfo2),
        );
        assert_eq!(offs, (0, 8, 16, 24));
        assert_eq!(SNP_GET_REPORT, 0xc020_5300);
        let d = [0xab; DIGEST_LEN];
        let r = report_request(&d);
        assert_eq!(&r.user_data[..48], &d[..]);
        assert_eq!(&r.user_data[48..], &[0; 16][..]);
        assert_eq!((r.vmpl, r.rsvd), (0, [0; 28]));
    }

    #[test]
    fn responses_are_checked() {
        let mut resp = ReportResp { data: [0; 4000] };
        resp.data[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        resp.data[0x20] = 5;
        assert_eq!(report_from_response(&resp).expect("report")[0], 5);
        resp.data[0] = 0x16; // INVALID_PARAM
        assert!(matches!(report_from_response(&resp), Err(RequestError::BadResponse { status: 0x16, .. })));
        resp.data[0] = 0;
        resp.data[4..8].copy_from_slice(&4000u32.to_le_bytes());
        assert!(report_from_response(&resp).is_err(), "a size larger than a report");
    }

    #[test]
    fn request_without_the_device_says_so() {
        let e = request(Path::new("/nonexistent/sev-guest"), &[0; 48]).expect_err("no device");
        assert!(matches!(e, RequestError::NoDevice));
        assert!(e.to_string().contains("help:"));
    }
}
