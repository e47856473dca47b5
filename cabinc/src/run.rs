//! `cabinc run`: run an image confined.
//!
//! Exit status: the program's own status passes through (128 + signal for a
//! fault or kill); 125 when cabinc itself fails (a usage error included), 126
//! when the image is invalid, 127 when it is missing (as `docker run`).
//!
//! Messages: the backend and execute-only notices print only with `-v`; the
//! first path the path rules refuse gets one hint on stderr (not with `-q`).

use std::path::PathBuf;
use std::process::ExitCode;

use cabin_monitor::placement::CpuPlacement;
use cabin_monitor::{RunConfig, RunError, RunOutcome};
use cabin_rewriter::verified::Checked;
use clap::ValueEnum;

use crate::output::{self, is_stdout, Format};

/// The status of every error of `cabinc run` itself.
pub const EXIT_CABINC_ERROR: u8 = 125;

/// Arguments of `cabinc run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Cabin image to run, or a plain static executable (built once
    /// into the image cache, $XDG_CACHE_HOME/cabin/images, and run from
    /// there), then the program's arguments: everything after the image
    /// goes to the program, options too (cabinc's own come before the
    /// image); a `--` right after the image is dropped (the older form
    /// `cabinc run IMAGE -- ARGS`). argv[0] is the image's file name.
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        value_name = "IMAGE [ARGS]"
    )]
    command: Vec<String>,
    /// The image (the first word of the command).
    #[arg(skip)]
    pub image: PathBuf,
    /// Where to run it: a KVM micro-VM, a seccomp-confined process, or
    /// whichever is available (kvm where /dev/kvm is usable).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// A directory (everything below it) or a file (that object only) the
    /// program may read (repeatable).
    #[arg(long, value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,
    /// A directory the program may read and write, creating and removing
    /// names; or a file it may read and write, never rename or remove
    /// (repeatable).
    #[arg(long, value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Show the program a view of the file system with DIR as `/`: what
    /// lies outside the view does not exist for it (ENOENT), `..` and
    /// absolute symlinks stay inside (docs/views.md).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Show host path SRC (a directory or a file) at DST in the view; `:ro`:
    /// a change under it is EROFS (repeatable; makes a view).
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// A fresh memory-backed directory at DST in the view, of SIZE bytes
    /// (default 64M; writes past it are ENOSPC), counted against --mem and
    /// gone at the end (repeatable; makes a view).
    #[arg(long, value_name = "DST[:SIZE]")]
    pub tmpfs: Vec<String>,
    /// The program's starting directory, a path in the view (default `/`;
    /// makes a view).
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Add KEY=VALUE to the program's (otherwise empty) environment (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Write run statistics as JSON to FILE (`-`: stdout, after the program ends).
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
    /// round trip between the two, and the worker spins between calls), `shared` (leave
    /// it to the scheduler), or `auto`: split when the machine is idle at the start;
    /// when other work wants the CPUs, nothing pinned and brief spins only (better for
    /// programs streaming data on a busy machine, worse for calls made back to back).
    #[arg(long, value_enum, default_value_t = Cpus::Split)]
    pub cpus: Cpus,
    /// Print the backend and execute-only notices (`cabin: …`) too.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print no notice or hint of cabinc's own, only errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Format of cabinc's own reports: --trace as text lines or as JSON lines
    /// (schema: docs/trace-schema.json); --stats and --audit are JSON either way.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Policy, trace and audit options.
    #[command(flatten)]
    pub policy: crate::policy::RunPolicyArgs,
    /// argv[0] the program sees [default: the image's file name].
    #[arg(long, value_name = "NAME")]
    pub arg0: Option<String>,
    /// The program's arguments (the rest of the command).
    #[arg(skip)]
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
    /// Split on an idle machine; unpinned with brief spins on a busy one (looked at once, at the start).
    Auto,
    /// The worker on one CPU, the program on the others.
    Split,
    /// Left to the scheduler.
    Shared,
}

/// Parses sizes like `256M`, `1G`, `65536`, `512K`, `1GiB`, `64KB`, `100B`:
/// every unit is binary (K = KiB = KB = 1024), as `docker run --memory` reads them.
/// The view of `--root`/`--bind`/`--tmpfs`/`--chdir` over the policy's
/// `[view]` (a flag's root or chdir replaces the policy's; binds and tmpfs
/// add to its): `None` when neither says anything.
fn view_of(
    a: &RunArgs,
    policy: &cabin_policy::view::ViewSpec,
) -> Result<Option<cabin_monitor::View>, String> {
    let mut v = policy.clone();
    if a.root.is_some() {
        v.root = a.root.clone();
    }
    for b in &a.bind {
        v.binds.push(cabin_policy::view::parse_bind(b).map_err(|e| format!("--{e}"))?);
    }
    for t in &a.tmpfs {
        v.tmpfs.push(cabin_policy::view::parse_tmpfs(t).map_err(|e| format!("--{e}"))?);
    }
    if let Some(c) = &a.chdir {
        let text = c.to_string_lossy();
        v.chdir =
            Some(cabin_policy::view::check_view_path("--chdir", &text, true).map_err(|e| e.to_string())?);
    }
    if v.is_empty() {
        return Ok(None);
    }
    Ok(Some(cabin_monitor::View {
        root: v.root,
        root_readonly: v.root_readonly,
        binds: v
            .binds
            .into_iter()
            .map(|b| cabin_monitor::Bind { src: b.src, dst: b.dst, readonly: b.readonly })
            .collect(),
        tmpfs: v
            .tmpfs
            .into_iter()
            .map(|t| cabin_monitor::Tmpfs {
                dst: t.dst,
                size: t.size.unwrap_or(cabin_monitor::Tmpfs::DEFAULT_SIZE),
            })
            .collect(),
        chdir: v.chdir,
    }))
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mul: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        u => return Err(format!("unknown size unit '{u}' (use K, M, G or T, e.g. 256M or 1GiB)")),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 256M)"))?;
    n.checked_mul(mul).ok_or_else(|| format!("size '{s}' is too large"))
}

/// `KEY=VALUE` entries in order, a later entry of a key replacing an earlier
/// one in its place (`--env` over the policy's `[env]`, the last `--env` of a
/// key over the others): the program sees each key once.
fn merge_env<'a>(entries: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in entries {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        match out.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
            Some(e) => e.clone_from(kv),
            None => out.push(kv.clone()),
        }
    }
    out
}

/// The image to run: `bytes` itself when it is a Cabin image (the session
/// checks it), else (a plain static ELF) its image from the cache, built
/// there the first time. `Err` is the exit status, the error printed.
/// The measurement of a Cabin image the verified-measurement cache vouches
/// for (this very file, checked before), else checked now and recorded
/// when the file was stable; `None` when it is not a Cabin image or does
/// not check (the session hashes it again and says why).
fn cached_measurement(
    bytes: &[u8],
    key: Option<&cabin_rewriter::verified::FileKey>,
) -> Option<([u8; cabin_image::measure::DIGEST_LEN], Checked)> {
    use cabin_rewriter::verified::{check, VerifiedCache};
    let image = cabin_image::image::Image::parse(bytes).ok()?;
    let cache = key.and_then(|_| VerifiedCache::open(None));
    check(cache.as_ref(), key, &image).ok()
}

fn image_of(a: &RunArgs, bytes: Vec<u8>) -> Result<Vec<u8>, ExitCode> {
    use cabin_image::elf::ElfError;
    use cabin_image::image::{Image, ImageError};
    match Image::parse(&bytes) {
        Err(ImageError::NoManifest) => {}
        Err(ImageError::Elf(ElfError::Dynamic)) => {
            // The words of `cabinc build`.
            output::error(&anyhow::anyhow!("cannot build {}: {}", a.image.display(), ElfError::Dynamic));
            return Err(ExitCode::from(126));
        }
        // An image (the session checks its measurement), or not an ELF
        // the session would run: its message.
        _ => return Ok(bytes),
    }
    let cache = match cabin_rewriter::cache::ImageCache::open_default() {
        Ok(c) => c,
        Err(e) => {
            output::error(&anyhow::Error::new(e).context(format!("cannot run {}", a.image.display())));
            return Err(ExitCode::from(EXIT_CABINC_ERROR));
        }
    };
    let started = std::time::Instant::now();
    match cache.get_or_build(&bytes) {
        Ok(c) => {
            if let Some(why) = &c.refused {
                // Always said: someone or something wrote the cache.
                eprintln!(
                    "cabin: warning: the cached image {} was refused ({why}); rebuilt",
                    c.path.display()
                );
            }
            if a.verbose {
                if c.built {
                    eprintln!(
                        "cabin: building {} (cached for next time: {}, {:.2}s)",
                        a.image.display(),
                        c.path.display(),
                        started.elapsed().as_secs_f64()
                    );
                } else {
                    eprintln!("cabin: image of {} from the cache: {}", a.image.display(), c.path.display());
                }
            }
            Ok(c.image)
        }
        Err(cabin_rewriter::cache::CacheError::Build(e)) => {
            output::error(&anyhow::anyhow!("cannot build {}: {e}", a.image.display()));
            Err(ExitCode::from(126))
        }
        Err(e) => {
            output::error(&anyhow::Error::new(e).context(format!("cannot run {}", a.image.display())));
            Err(ExitCode::from(EXIT_CABINC_ERROR))
        }
    }
}

impl RunArgs {
    /// Splits the command into the image and the program's arguments (a
    /// `--` right after the image is cabinc's).
    pub fn split_command(&mut self) {
        let mut words = std::mem::take(&mut self.command).into_iter();
        self.image = words.next().map(PathBuf::from).unwrap_or_default();
        let rest: Vec<String> = words.collect();
        self.args = match rest.first() {
            Some(d) if d == "--" => rest[1..].to_vec(),
            _ => rest,
        };
    }
}

pub fn run(a: &RunArgs) -> ExitCode {
    // Read once into memory (the bytes checked are the bytes run), with the
    // file's identity when it was stable, for the verified-measurement cache.
    let read =
        std::fs::File::open(&a.image).and_then(|mut f| cabin_rewriter::verified::read(&mut f, u64::MAX));
    let (bytes, key) = match read {
        Ok(r) => (r.bytes, r.key),
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 125 };
            output::error(&anyhow::anyhow!("cannot read image {}: {e}", a.image.display()));
            return ExitCode::from(code);
        }
    };
    let measurement_checked = cached_measurement(&bytes, key.as_ref()).map(|(m, how)| {
        if a.verbose {
            let how = match how {
                Checked::Cached => "taken from the verified-measurement cache",
                Checked::Hashed => "checked against its pages",
            };
            eprintln!("cabin: measurement of {} {how}", a.image.display());
        }
        m
    });
    let image = match image_of(a, bytes) {
        Ok(i) => std::sync::Arc::new(i),
        Err(code) => return code,
    };
    let argv0 = a.arg0.clone().unwrap_or_else(|| {
        a.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into())
    });
    let mut args = vec![argv0];
    args.extend(a.args.iter().cloned());
    for kv in &a.env {
        if !kv.contains('=') {
            output::error(&anyhow::anyhow!("--env {kv:?} is not KEY=VALUE; help: write --env {kv}=value"));
            return ExitCode::from(EXIT_CABINC_ERROR);
        }
    }
    let rp = match a.policy.prepare(&a.image, &args, &a.allow_read, &a.allow_write, a.format) {
        Ok(rp) => rp,
        Err(e) => {
            output::error(&e);
            return ExitCode::from(EXIT_CABINC_ERROR);
        }
    };
    let view = match view_of(a, &rp.view) {
        Ok(v) => v,
        Err(e) => {
            output::error(&anyhow::anyhow!("{e}"));
            return ExitCode::from(EXIT_CABINC_ERROR);
        }
    };
    // `--stats -`: the monitor keeps the report, printed after the program's output.
    let stats_to_stdout = a.stats.as_deref().is_some_and(is_stdout);
    let cfg = RunConfig {
        args,
        env: merge_env(rp.env.iter().chain(&a.env)),
        allow_read: rp.allow_read,
        allow_write: rp.allow_write,
        allow_set_id: rp.allow_set_id,
        network: rp.network,
        exec_images_only: rp.exec_images_only,
        gate: rp.gate,
        stats: a.stats.clone().filter(|_| !stats_to_stdout),
        require_execute_only: a.require_execute_only,
        quiet: !a.verbose,
        path_hint: !a.quiet,
        arena_bytes: a.mem.or(rp.memory).unwrap_or(0),
        force_trap_path: a.forwarding == Forwarding::Sync,
        forward_signals: true,
        cpu_placement: match a.cpus {
            Cpus::Auto => CpuPlacement::Auto,
            Cpus::Split => CpuPlacement::Split,
            Cpus::Shared => CpuPlacement::Shared,
        },
        view,
        measurement_checked,
        image_shared: Some(image.clone()),
        ..RunConfig::default()
    };
    let backend = match a.backend {
        Backend::Auto => match cabin_kvm::usable() {
            Ok(()) => Backend::Kvm,
            Err(why) => {
                if a.verbose {
                    eprintln!("cabin: backend process (KVM not usable: {why})");
                }
                Backend::Process
            }
        },
        b => b,
    };
    if a.backend == Backend::Auto && backend == Backend::Kvm && a.verbose {
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
        Ok(outcome) => {
            if stats_to_stdout {
                let text = serde_json::to_string_pretty(&outcome.stats).unwrap_or_default() + "\n";
                if let Err(e) = output::to_stdout(text.as_bytes()) {
                    output::error(&e);
                    return ExitCode::from(EXIT_CABINC_ERROR);
                }
            }
            ExitCode::from(outcome.exit_code.clamp(0, 255) as u8)
        }
        Err(RunError::ImageRejected(e)) => {
            output::error(&anyhow::anyhow!("{} is not a runnable Cabin image: {e}", a.image.display()));
            ExitCode::from(126)
        }
        Err(e) => {
            let code = if matches!(e, RunError::InvalidImage(_)) { 126 } else { EXIT_CABINC_ERROR };
            output::error(&anyhow::Error::new(e));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn later_env_entries_replace_earlier_ones() {
        let v: Vec<String> = ["A=1", "B=2", "A=3", "C", "C=4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(super::merge_env(v.iter()), vec!["A=3", "B=2", "C=4"]);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1M").is_err());
    }
}
