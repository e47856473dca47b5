//! `cabinc attest`: SEV-SNP attestation reports for Cabin images.
//!
//! - `verify REPORT --certs DIR [--image app.cabin]`: the report's chain
//!   (ARK -> ASK -> VCEK, AMD's root), its signature and, with `--image`,
//!   that it binds the image (cabin_snp::attest). Exit 0 verified, 1
//!   refused (one `error:` line saying why).
//! - `request IMAGE -o REPORT`: inside an SEV-SNP guest, asks the firmware
//!   (`/dev/sev-guest`) for a report whose REPORT_DATA is the image's
//!   launch measurement.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Arguments of `cabinc attest`.
#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    #[command(subcommand)]
    command: AttestCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AttestCommand {
    /// Verify an SEV-SNP attestation report (and that it binds an image).
    Verify {
        /// The report: the 1184 raw bytes the firmware returns.
        report: PathBuf,
        /// Directory with ark.pem|der, ask.pem|der and vcek.pem|der (from AMD's KDS).
        #[arg(long, value_name = "DIR")]
        certs: PathBuf,
        /// The Cabin image the report must bind (MEASUREMENT or REPORT_DATA).
        #[arg(long, value_name = "IMAGE")]
        image: Option<PathBuf>,
        /// Output format (`json`: one object on stdout).
        #[arg(long, value_enum, default_value_t)]
        format: crate::Format,
    },
    /// Ask the firmware for a report binding an image (inside an SEV-SNP guest).
    Request {
        /// The Cabin image.
        image: PathBuf,
        /// Where to write the report (`-`: stdout).
        #[arg(short, long, value_name = "REPORT")]
        output: PathBuf,
    },
}

/// Runs `cabinc attest`.
pub fn run(a: &AttestArgs) -> Result<ExitCode> {
    match &a.command {
        AttestCommand::Verify { report, certs, image, format } => {
            let v = cabin_snp::attest::verify(report, certs, image.as_deref())?;
            let bound_by = v.binding.map(|b| match b {
                cabin_snp::attest::Binding::Measurement => "MEASUREMENT",
                cabin_snp::attest::Binding::ReportData => "REPORT_DATA",
            });
            if *format == crate::Format::Json {
                let j = serde_json::json!({
                    "verified": true,
                    "report": report.display().to_string(),
                    "product": v.product.to_string(),
                    "measurement": hex::encode(v.report.measurement),
                    "report_data": hex::encode(v.report.report_data),
                    "vmpl": v.report.vmpl,
                    "image": image.as_ref().map(|i| i.display().to_string()),
                    "bound_by": bound_by,
                });
                println!("{j}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("verified: {} signed by a VCEK of AMD's {} chain", report.display(), v.product);
            println!("measurement: {}", hex::encode(v.report.measurement));
            println!("report_data: {}", hex::encode(v.report.report_data));
            println!("vmpl:        {}", v.report.vmpl);
            match (bound_by, image) {
                (Some(b), Some(i)) => println!("image:       {} bound by {b}", i.display()),
                _ => println!("image:       not checked (pass --image)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Request { image, output } => {
            let data = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
            let img = cabin_image::image::Image::parse(&data)
                .with_context(|| format!("{} is not a valid Cabin image", image.display()))?;
            let digest = img.verify_measurement().with_context(|| image.display().to_string())?;
            let report =
                cabin_snp::attest::request(std::path::Path::new(cabin_snp::attest::SEV_GUEST), &digest)?;
            if crate::output::is_stdout(output) {
                crate::output::to_stdout(&report)?;
            } else {
                std::fs::write(output, &report)
                    .with_context(|| format!("cannot write {}", output.display()))?;
                println!("{}", output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
