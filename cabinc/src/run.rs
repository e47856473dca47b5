//! `cabinc run`: run an image confined.
//!
//! Exit status: the program's own status passes through (128 + signal for a
//! fault or kill); 125 when cabinc itself fails, 126 when the image is
//! invalid, 127 when it is missing.

use std::path::PathBuf;
use std::process::ExitCode;

use cabin_monitor::placement::CpuPlacement;
use cabin_monitor::{RunConfig, RunError, RunOutcome};
use clap::ValueEnum;

use crate::output;

/// Arguments of `cabinc run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Cabin image to run.
    pub image: PathBuf,
    /// Where to run it: a KVM micro-VM, a seccomp-confined process, or
    /// whichever is available (kvm where /dev/kvm is usable).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// A directory the program may read (repeatable).
    #[arg(long, value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// A directory the program may read and write (repeatable).
    #[arg(long, value_name = "DIR")]
    pub allow_write: Vec<PathBuf>,
    /// Add KEY=VALUE to the program's (otherwise empty) environment (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Write run statistics as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Refuse to run where execute-only code cannot be enforced.
    #[arg(long)]
    pub require_execute_only: bool,
    /// The bound on the program's memory, e.g. 512M or 1G (default 256M, on both
    /// backends): the domain's memory (image, stack, heap, anonymous mappings) is sized
    /// to it, and a program that asks for more is stopped (exit 137). With a policy's
    /// `[limits] memory` too, the smaller wins.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub mem: Option<u64>,
    /// How system calls leave the program: `ring` (rewritten sites hand them to the
    /// libos, which serves them or puts them on the shared-memory ring: no exit), or `sync`
    /// (every call first traps out of the domain: a seccomp trap per call on process, a VM
    /// exit per call on kvm; for measuring what the ring saves).
    #[arg(long, value_enum, default_value_t = Forwarding::Ring)]
    pub forwarding: Forwarding,
    /// Where the program and the monitor's ring worker run: `split` (the worker on one CPU,
    /// the program on the others, when at least two are allowed: a forwarded call is a
    /// round trip between the two, and the worker spins between calls) or `shared` (leave
    /// it to the scheduler).
    #[arg(long, value_enum, default_value_t = Cpus::Split)]
    pub cpus: Cpus,
    /// Do not print the execute-only notice.
    #[arg(long, short)]
    pub quiet: bool,
    /// Policy, trace and audit options.
    #[command(flatten)]
    pub policy: crate::policy::RunPolicyArgs,
    /// Arguments passed to the program (after `--`); argv[0] is the image's file name.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// A backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// kvm where /dev/kvm is usable, else process.
    Auto,
    /// A KVM micro-VM: ring 0 is the proxy-kernel, ring 3 the program.
    Kvm,
    /// A child process under seccomp.
    Process,
    /// VMPL1 of an SEV-SNP confidential VM (needs an SNP guest and /dev/cabin-vmpl; docs/snp.md).
    Snp,
}

/// How system calls leave the program (`--forwarding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Forwarding {
    /// Through the libos and the shared-memory ring, without leaving the domain.
    Ring,
    /// Every call traps out of the domain first (the synchronous path).
    Sync,
}

/// CPU placement (`--cpus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cpus {
    /// The worker on one CPU, the program on the others.
    Split,
    /// Left to the scheduler.
    Shared,
}

/// Parses sizes like `256M`, `1G`, `65536`, `512K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix '{c}' (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 256M)"))?;
    n.checked_mul(mul).ok_or_else(|| format!("size '{s}' is too large"))
}

pub fn run(a: &RunArgs) -> ExitCode {
    let image = match std::fs::read(&a.image) {
        Ok(b) => b,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 125 };
            output::error(&anyhow::anyhow!("cannot read image {}: {e}", a.image.display()));
            return ExitCode::from(code);
        }
    };
    let argv0 = a.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into());
    let mut args = vec![argv0];
    args.extend(a.args.iter().cloned());
    for kv in &a.env {
        if !kv.contains('=') {
            output::error(&anyhow::anyhow!("--env {kv:?} is not KEY=VALUE; help: write --env {kv}=value"));
            return ExitCode::from(125);
        }
    }
    let rp = match a.policy.prepare(&a.image, &args, &a.allow_read, &a.allow_write) {
        Ok(rp) => rp,
        Err(e) => {
            output::error(&e);
            return ExitCode::from(125);
        }
    };
    let cfg = RunConfig {
        args,
        env: rp.env.iter().chain(&a.env).cloned().collect(),
        allow_read: rp.allow_read,
        allow_write: rp.allow_write,
        allow_set_id: rp.allow_set_id,
        gate: rp.gate,
        stats: a.stats.clone(),
        require_execute_only: a.require_execute_only,
        quiet: a.quiet,
        arena_bytes: a.mem.or(rp.memory).unwrap_or(0),
        force_trap_path: a.forwarding == Forwarding::Sync,
        forward_signals: true,
        cpu_placement: match a.cpus {
            Cpus::Split => CpuPlacement::Split,
            Cpus::Shared => CpuPlacement::Shared,
        },
        ..RunConfig::default()
    };
    let backend = match a.backend {
        Backend::Auto => match cabin_kvm::usable() {
            Ok(()) => Backend::Kvm,
            Err(why) => {
                if !a.quiet {
                    eprintln!("cabin: backend process (KVM not usable: {why})");
                }
                Backend::Process
            }
        },
        b => b,
    };
    if a.backend == Backend::Auto && backend == Backend::Kvm && !a.quiet {
        eprintln!("cabin: backend kvm");
    }
    // The session checks the image first: an image that is not an intact
    // Cabin image (no manifest, or a recorded measurement that does not
    // match its pages: edited after `cabinc build`) never runs.
    let result: Result<RunOutcome, RunError> = match backend {
        Backend::Kvm => cabin_kvm::run(&image, &cfg),
        Backend::Snp => cabin_snp::run(&image, &cfg),
        _ => cabin_process::run(&image, &cfg),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code.clamp(0, 255) as u8),
        Err(RunError::ImageRejected(e)) => {
            output::error(&anyhow::anyhow!("{} is not a runnable Cabin image: {e}", a.image.display()));
            ExitCode::from(126)
        }
        Err(e) => {
            let code = if matches!(e, RunError::InvalidImage(_)) { 126 } else { 125 };
            output::error(&anyhow::Error::new(e));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
