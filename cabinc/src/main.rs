//! `cabinc`: the Cabin command-line tool.
//!
//! Builds execute-only Cabin images from static x86-64 executables, shows
//! what is in them, prints their launch measurement, runs them confined and
//! verifies SEV-SNP attestation reports that bind them.
//! Exit status: 0 success, 1 refused or malformed input, 2 usage error;
//! `cabinc run` passes the program's status through and uses 125 for its own
//! errors, 126 for an invalid image and 127 for a missing one.

mod attest;
mod bench;
mod build;
mod catalog;
mod inspect;
mod output;
mod policy;
mod run;
mod syscalls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Confine untrusted x86-64 Linux programs: build, inspect and run Cabin images.
#[derive(Debug, Parser)]
#[command(name = "cabinc", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rewrite a static executable into an execute-only Cabin image.
    Build(BuildArgs),
    /// Show what a Cabin image contains.
    Inspect(InspectArgs),
    /// Print an image's SEV-SNP launch measurement (96 hex digits).
    Measure(MeasureArgs),
    /// Run an image confined (KVM micro-VM or seccomp-confined process).
    Run(run::RunArgs),
    /// List how each system call of a confined program is handled.
    Syscalls(syscalls::SyscallsArgs),
    /// Check, explain, import and generate syscall policies.
    Policy(policy::PolicyArgs),
    /// Build, list and run benchmark catalog entries.
    Catalog(catalog::CatalogArgs),
    /// Compare catalog entries native vs confined: table, bench.json and bench.svg.
    Bench(bench::BenchArgs),
    /// Verify or request SEV-SNP attestation reports that bind an image.
    Attest(attest::AttestArgs),
}

/// Arguments of `cabinc build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The static x86-64 ELF executable to rewrite.
    pub input: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Keep code segments readable (R+X) when the program reads its own code.
    #[arg(long)]
    pub allow_readable_code: bool,
    /// Leave every system-call site as a trap site, served by the slow path
    /// (for testing the backends' trap handling; much slower).
    #[arg(long)]
    pub trap_all_sites: bool,
    /// How to report progress and the result.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
    /// Report system calls the image can be seen to make (constant numbers at
    /// its sites) that this policy would deny.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also write the patch plan (every site's decision) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

/// Output style of `cabinc build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    /// Cargo-style status lines on stderr.
    Human,
    /// One JSON object on stdout.
    Json,
}

/// Arguments of `cabinc inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The Cabin image.
    pub image: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
}

/// Output format of `cabinc inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// A readable summary.
    Text,
    /// The full report as JSON.
    Json,
}

/// Arguments of `cabinc measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// The Cabin image.
    pub image: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // Report-printing commands end quietly when their reader goes away
        // (`cabinc inspect img | head`), as command-line tools do. `run`
        // keeps SIGPIPE ignored: the monitor must outlive a closed pipe and
        // hand EPIPE to the confined program instead.
        // SAFETY: restoring a signal's default disposition at start-up,
        // before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Build(a) => build::run(&a),
        Command::Inspect(a) => inspect::inspect(&a),
        Command::Measure(a) => inspect::measure(&a),
        Command::Run(a) => return run::run(&a),
        Command::Policy(a) => policy::run(&a),
        Command::Catalog(a) => catalog::run_catalog(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Attest(a) => attest::run(&a),
        Command::Syscalls(a) => {
            syscalls::run(&a);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::from(1)
        }
    }
}
