//! `cabinc`: the Cabin command-line tool.
//!
//! Builds execute-only Cabin images from static x86-64 executables, shows
//! what is in them, prints their launch measurement, runs them confined and
//! verifies SEV-SNP attestation reports that bind them.
//! Exit status: 0 success, 1 refused or malformed input, 2 usage error;
//! `cabinc run` passes the program's status through and uses 125 for its own
//! errors (usage errors included: 2 is a status programs return too), 126
//! for an invalid image and 127 for a missing one, as `docker run` does.
//!
//! Conventions shared by every subcommand: `--format json` for output meant
//! for scripts, `-` for stdout wherever a FILE is written, sizes with units
//! (`512K`, `256M`, `1G`, `1GiB`).

mod attest;
mod bench;
mod build;
mod cache;
mod catalog;
mod docs;
mod inspect;
mod oci;
mod output;
mod policy;
mod run;
mod syscalls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::Format;

/// What `--help` ends with: the exit statuses and the shared conventions.
const AFTER_HELP: &str = "\
Exit status: 0 success; 1 when cabinc refuses or fails (malformed input, a failed build);
2 for a usage error. `cabinc run` passes the program's status through (128 + N when a
signal N ended it) and uses 125 for every error of its own, usage errors included, 126 for
an image that is not a runnable Cabin image and 127 for a missing image (as `docker run`).

Every subcommand that prints a report takes `--format json`; `-` names stdout for every
output FILE; sizes take units (512K, 256M, 1G, 1GiB).";

/// Confine untrusted x86-64 Linux programs: build, inspect and run Cabin images.
#[derive(Debug, Parser)]
#[command(name = "cabinc", version, about, long_about = None, propagate_version = true)]
#[command(after_help = AFTER_HELP)]
pub struct Cli {
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
    Run(Box<run::RunArgs>),
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
    /// Act as an OCI runtime with runc's command line (containerd's runc shim drives it;
    /// `cabinc` named `cabin-runc` through a symbolic link takes the same command line at top level).
    Oci(oci::RuncCli),
    /// List or empty the image cache of plain executables ($XDG_CACHE_HOME/cabin/images).
    Cache(cache::CacheArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Write the manual pages (cabinc.1 and one per subcommand).
    Man(docs::ManArgs),
}

/// Arguments of `cabinc build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The static x86-64 ELF executable to rewrite.
    pub input: PathBuf,
    /// Where to write the image (`-` for stdout) [default: NAME.cabin in the
    /// current directory, NAME being the input's file name]. Never the input
    /// itself; written to a temporary file beside it and renamed, so a failed
    /// build leaves nothing behind.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Keep code segments readable (R+X) when the program reads its own code.
    #[arg(long)]
    pub allow_readable_code: bool,
    /// Leave every system-call site as a trap site, served by the slow path
    /// (for testing the backends' trap handling; much slower).
    #[arg(long)]
    pub trap_all_sites: bool,
    /// How to report the result: status lines on stderr (text), or one JSON
    /// object on stdout (json).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The old name of `--format` (human = text).
    #[arg(long, value_enum, hide = true)]
    pub message_format: Option<MessageFormat>,
    /// Report system calls the image can be seen to make (constant numbers at
    /// its sites) that this policy would deny.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also write the patch plan (every site's decision) as JSON to this file
    /// (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

/// The values of the hidden `--message-format` (kept for scripts).
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
    /// Output format: a readable summary, or the full report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Arguments of `cabinc measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// The Cabin image.
    pub image: PathBuf,
    /// Output format: the 96 hex digits, or `{"image": …, "measurement": …}`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Parses the command line. A usage error of `cabinc run` exits 125 (its own
/// errors are 125, and 2 is a status programs return too); of every other
/// subcommand, 2. `--help` and `--version` exit 0.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ if std::env::args_os().nth(1).is_some_and(|a| a == "run") => run::EXIT_CABINC_ERROR,
                _ => 2,
            };
            Err(ExitCode::from(code))
        }
    }
}

fn main() -> ExitCode {
    if oci::invoked_as_runc() {
        // containerd's shim runs `cabin-runc create …` (docs/kubernetes.md).
        return oci::main_as_runc();
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if !matches!(cli.command, Command::Run(_) | Command::Oci(_)) {
        // Report-printing commands end quietly when their reader goes away
        // (`cabinc inspect img | head`), as command-line tools do. `run`
        // keeps SIGPIPE ignored: the monitor must outlive a closed pipe and
        // hand EPIPE to the confined program instead; so does a container's
        // init (`oci`).
        // SAFETY: restoring a signal's default disposition at start-up,
        // before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Build(a) => build::run(&a),
        Command::Inspect(a) => inspect::inspect(&a),
        Command::Measure(a) => inspect::measure(&a),
        Command::Run(mut a) => {
            a.split_command();
            return run::run(&a);
        }
        Command::Policy(a) => policy::run(&a),
        Command::Catalog(a) => catalog::run_catalog(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Attest(a) => attest::run(&a),
        Command::Syscalls(a) => syscalls::run(&a),
        Command::Cache(a) => cache::run(&a),
        Command::Oci(a) => return oci::run(&a),
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::from(1)
        }
    }
}
