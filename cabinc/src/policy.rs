//! `cabinc policy …`: check, explain, import and generate syscall policies.
//!
//! The policy logic lives in `cabin_policy`; this file only reads
//! files, prints, and writes results atomically (a temporary file in the
//! target's directory, renamed over it), so a failed run never leaves half a
//! policy behind. Errors exit 1 and name `file:line:column` with a `help:`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use cabin_monitor::trace::{StartInfo, TraceFormat, TraceOptions, DEFAULT_AUDIT_CAP};
use cabin_monitor::GateConfig;
use cabin_policy::net::{NetPolicy, NetRule};
use cabin_policy::{self as policy, explain, generate, groups, oci, probe, render, Policy};
use clap::{Subcommand, ValueEnum};

/// The `cabinc run` options for policy, trace and audit (`#[command(flatten)]`
/// them into `RunArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunPolicyArgs {
    /// Syscall policy (TOML, see docs/policy.md); --allow-read/--allow-write add to its [paths].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Trace every system call: strace-like lines on stderr, or into FILE
    /// (--trace=FILE; --trace=- for stdout). `--format json` makes them JSON lines.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub trace: Option<Option<PathBuf>>,
    /// The old name of `--format` for the trace (text or jsonl).
    #[arg(long, value_enum, hide = true)]
    pub trace_format: Option<TraceFormatArg>,
    /// Write refusals, kills, limit hits and protocol violations as JSON lines to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Size cap of the audit log (reaching it is recorded), e.g. 64K or 1M.
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_AUDIT_CAP, value_parser = crate::run::parse_size)]
    pub audit_max_bytes: u64,
    /// Let the program connect (or send datagrams) to ADDR[/PREFIX]:PORTS, e.g. 127.0.0.1:8080,
    /// 10.0.0.0/8:443, [::1]:1000-2000, 127.0.0.1:* (repeatable; addresses only, no host names).
    /// Added to the policy's [network] connect. Default: no network.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_net_rule)]
    pub allow_connect: Vec<NetRule>,
    /// Let the program bind (listen, or receive datagrams) on ADDR[/PREFIX]:PORTS, same syntax;
    /// `*` as the port also allows port 0 (the kernel picks). Added to [network] listen.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_net_rule)]
    pub allow_listen: Vec<NetRule>,
}

/// clap's parser for `--allow-connect` / `--allow-listen`.
fn parse_net_rule(s: &str) -> Result<NetRule, String> {
    policy::net::parse_rule(s).map_err(|e| e.to_string())
}

/// `--trace-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormatArg {
    /// strace-like lines.
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// What `cabinc run` needs from the policy options.
#[derive(Debug)]
pub struct RunPolicy {
    /// For `RunConfig::gate`.
    pub gate: GateConfig,
    /// `KEY=VALUE` from the policy's [env], to put before the `--env` ones.
    pub env: Vec<String>,
    /// `[limits] memory`, to use as the memory bound when `--mem` is not given.
    pub memory: Option<u64>,
    /// Read-only trees: the policy's `[paths] read` plus `--allow-read`.
    pub allow_read: Vec<PathBuf>,
    /// Read-write trees: the policy's `[paths] write` plus `--allow-write`.
    pub allow_write: Vec<PathBuf>,
    /// `[paths] set-id`.
    pub allow_set_id: bool,
    /// The policy's `[network]` plus `--allow-connect` / `--allow-listen`.
    pub network: NetPolicy,
    /// `[paths] exec = "images"`.
    pub exec_images_only: bool,
    /// The policy's `[view]` (empty without one).
    pub view: cabin_policy::view::ViewSpec,
}

impl RunPolicyArgs {
    /// Loads and checks the policy, adds the `--allow-*` trees, and
    /// prepares the trace options and the `start` record.
    pub fn prepare(
        &self,
        image: &Path,
        args: &[String],
        allow_read: &[PathBuf],
        allow_write: &[PathBuf],
        format: crate::Format,
    ) -> Result<RunPolicy> {
        let jsonl = format == crate::Format::Json || self.trace_format == Some(TraceFormatArg::Jsonl);
        if jsonl && self.trace.is_some() && !matches!(self.trace, Some(Some(_))) {
            return Err(anyhow!(
                "a JSON-lines trace needs --trace=FILE; help: JSON lines are never mixed with messages on \
                 stderr: write e.g. --trace=run.jsonl (or --trace=- for stdout)"
            ));
        }
        let flags = NetPolicy {
            connect: self.allow_connect.clone(),
            listen: self.allow_listen.clone(),
            ..NetPolicy::default()
        };
        let policy = match &self.policy {
            Some(f) => {
                let mut p = load(f)?;
                p.add_paths(allow_read, allow_write);
                p.network.merge(&flags);
                Some(p)
            }
            None => None,
        };
        let network = policy.as_ref().map_or(flags, |p| p.network.clone());
        let env = policy.as_ref().map(|p| p.env.resolve(|k| std::env::var(k).ok())).unwrap_or_default();
        let memory = policy.as_ref().and_then(|p| p.limits.memory);
        let (allow_read, allow_write) = match &policy {
            Some(p) => (p.paths.read.clone(), p.paths.write.clone()),
            None => (allow_read.to_vec(), allow_write.to_vec()),
        };
        let allow_set_id = policy.as_ref().is_some_and(|p| p.paths.set_id);
        let exec_images_only = policy.as_ref().is_some_and(|p| p.paths.exec_images_only);
        let view = policy.as_ref().map(|p| p.view.clone()).unwrap_or_default();
        let start = StartInfo {
            image: image.display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            args: args.to_vec(),
            unix_time_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            ..StartInfo::default()
        };
        let trace = TraceOptions {
            trace: self.trace.clone(),
            format: if jsonl { TraceFormat::Jsonl } else { TraceFormat::Text },
            audit: self.audit.clone(),
            audit_cap: self.audit_max_bytes,
        };
        Ok(RunPolicy {
            gate: GateConfig { policy, trace, start },
            env,
            memory,
            allow_read,
            allow_write,
            allow_set_id,
            network,
            exec_images_only,
            view,
        })
    }
}

/// Arguments of `cabinc policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `cabinc policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: exit 0 and a summary, or exit 1 with file:line:column.
    Check {
        /// The policy file (TOML, `version = 1`).
        file: PathBuf,
        /// Also generate probes (one allowed and one refused call per allow
        /// entry and rule) and check the compiled policy against them.
        #[arg(long)]
        probes: bool,
        /// Output format: the summary line, or one JSON object.
        #[arg(long, value_enum, default_value_t = crate::Format::Text)]
        format: crate::Format,
    },
    /// Say in plain words what a policy allows.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// Output format: the text, or `{"policy": FILE, "lines": [...]}`.
        #[arg(long, value_enum, default_value_t = crate::Format::Text)]
        format: crate::Format,
    },
    /// Convert another format into a Cabin policy, reporting what could not be carried over.
    Import {
        /// The input format.
        #[arg(long, value_enum)]
        from: ImportFormat,
        /// The profile to convert.
        profile: PathBuf,
        /// Where to write the policy (`-` for stdout).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Write the least policy that allows a recorded run.
    Generate {
        /// A trace written by `cabinc run --trace=FILE --trace-format jsonl`.
        #[arg(long, value_name = "RUN.jsonl")]
        from_trace: PathBuf,
        /// Where to write the policy (`-` for stdout).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// List the named groups (`@file-read`, `@time`, …) and their members.
    Groups {
        /// Output format: the list, or a JSON array.
        #[arg(long, value_enum, default_value_t = crate::Format::Text)]
        format: crate::Format,
    },
}

/// Formats `cabinc policy import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// A Docker / OCI runtime seccomp profile (JSON).
    OciSeccomp,
}

/// Runs `cabinc policy …`.
pub fn run(args: &PolicyArgs) -> Result<ExitCode> {
    match &args.command {
        PolicyCommand::Check { file, probes, format } => check(file, *probes, *format),
        PolicyCommand::Explain { file, format } => {
            let p = load(file)?;
            let text = explain::explain(&p);
            match format {
                crate::Format::Text => print!("{text}"),
                crate::Format::Json => {
                    let lines: Vec<&str> = text.lines().collect();
                    println!("{}", serde_json::json!({ "policy": file, "lines": lines }));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Import { from: ImportFormat::OciSeccomp, profile, output } => import(profile, output),
        PolicyCommand::Generate { from_trace, output } => generate(from_trace, output),
        PolicyCommand::Groups { format: crate::Format::Json } => {
            let v: Vec<serde_json::Value> = groups::GROUPS
                .iter()
                .map(|g| serde_json::json!({ "name": g.name, "about": g.about, "members": g.members }))
                .collect();
            println!("{}", serde_json::Value::Array(v));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Groups { format: crate::Format::Text } => {
            for g in groups::GROUPS {
                println!("@{}: {} ({} calls)", g.name, g.about, g.members.len());
                println!("    {}", g.members.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// For `cabinc build --policy FILE`: one message (with `; help: …`) per call
/// number the image makes at constant-number sites (`(address, number)`)
/// that the policy would refuse.
pub fn build_findings(
    policy_file: &Path,
    sites: impl IntoIterator<Item = (u64, u64)>,
) -> Result<Vec<String>> {
    let p = load(policy_file)?;
    let name = policy_file.display().to_string();
    Ok(policy::sites::refused_sites(&p.compile(), sites).iter().map(|f| f.message(&name)).collect())
}

/// Loads and checks a policy; the error carries `file:line:column` and `; help: …`.
pub fn load(file: &Path) -> Result<Policy> {
    Policy::load(file).map_err(|e| match e.help() {
        Some(h) => anyhow!("{e}; help: {h}"),
        None => anyhow!("{e}"),
    })
}

fn check(file: &Path, with_probes: bool, format: crate::Format) -> Result<ExitCode> {
    let p = match load(file) {
        Ok(p) => p,
        Err(e) if format == crate::Format::Json => {
            println!("{}", serde_json::json!({ "policy": file, "ok": false, "error": e.to_string() }));
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if format == crate::Format::Text {
        for w in &p.warnings {
            eprintln!("warning: {}: {w}", file.display());
        }
    }
    let c = p.compile();
    let allowed = (0..policy::compile::TABLE_SIZE as u64).filter(|&n| c.may_allow(n)).count();
    let default = p.default.describe();
    let mut parts = vec![
        format!("version {}", policy::VERSION),
        p.mode.as_str().to_string(),
        format!("default {default}"),
        format!("{allowed} calls may be allowed"),
        format!("{} argument rules", p.rules.len()),
    ];
    // Calls the libos serves inside the domain that the policy restricts:
    // the monitor decides each one (docs/policy.md).
    let checked = c.check_local();
    if !checked.is_empty() {
        let n = (0..policy::compile::TABLE_SIZE as u64).filter(|&n| checked.contains(n)).count();
        parts.push(format!("{n} locally served calls checked by the monitor"));
    }
    if !(p.paths.read.is_empty() && p.paths.write.is_empty()) {
        let file = |d: &&PathBuf| std::fs::metadata(d).is_ok_and(|m| !m.is_dir());
        let (rf, wf) = (p.paths.read.iter().filter(file).count(), p.paths.write.iter().filter(file).count());
        parts.push(format!("{} read and {} write trees", p.paths.read.len() - rf, p.paths.write.len() - wf));
        if rf + wf > 0 {
            parts.push(format!("{rf} read and {wf} write files (file grants: those objects only)"));
        }
    }
    if !p.view.is_empty() {
        let v = &p.view;
        let root = if v.root.is_some() { "a root" } else { "an empty root" };
        parts.push(format!("a view ({root}, {} binds, {} tmpfs)", v.binds.len(), v.tmpfs.len()));
    }
    if !p.limits.is_empty() {
        parts.push("limits set".into());
    }
    let n = &p.network;
    parts.push(if n.is_empty() {
        "no network".into()
    } else {
        format!(
            "network: {} connect, {} listen, {} unix, {} abstract rules{}",
            n.connect.len(),
            n.listen.len(),
            n.unix.len(),
            n.abstract_names.len(),
            n.resolver.map(|r| format!(", resolver {r}")).unwrap_or_default()
        )
    });
    if with_probes {
        let probes = probe::probes(&p);
        let mut failed = 0;
        for pr in &probes {
            let serves = c.decide(pr.nr, &pr.args).serves();
            if serves != pr.allowed {
                failed += 1;
                eprintln!(
                    "probe failed: {}: {} with {:x?} was {}",
                    pr.what,
                    policy::names::display(pr.nr),
                    pr.args,
                    if serves { "allowed" } else { "refused" }
                );
            }
        }
        if failed > 0 {
            return Err(anyhow!(
                "{failed} of {} probes failed; help: this is a bug in cabinc, please report it",
                probes.len()
            ));
        }
        parts.push(format!("{} probes passed", probes.len()));
    }
    match format {
        crate::Format::Text => println!("ok: {}: {}", file.display(), parts.join(", ")),
        crate::Format::Json => println!(
            "{}",
            serde_json::json!({
                "policy": file,
                "ok": true,
                "version": policy::VERSION,
                "mode": p.mode.as_str(),
                "default": default,
                "calls_may_be_allowed": allowed,
                "argument_rules": p.rules.len(),
                "read_trees": p.paths.read,
                "write_trees": p.paths.write,
                "file_grants": p
                    .paths
                    .read
                    .iter()
                    .chain(&p.paths.write)
                    .filter(|d| std::fs::metadata(d).is_ok_and(|m| !m.is_dir()))
                    .collect::<Vec<_>>(),
                "network": network_json(&p.network),
                "probes": with_probes.then(|| probe::probes(&p).len()),
                "warnings": p.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "summary": parts.join(", "),
            })
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `[network]` as JSON: the same strings as the policy file.
fn network_json(n: &NetPolicy) -> serde_json::Value {
    let rules = |v: &[NetRule]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    serde_json::json!({
        "connect": rules(&n.connect),
        "listen": rules(&n.listen),
        "unix": n.unix,
        "abstract": n.abstract_names.iter().map(|a| policy::net::abstract_text(a)).collect::<Vec<_>>(),
        "resolver": n.resolver.map(|r| r.to_string()),
    })
}

/// Writes `text` to `out` atomically (or to stdout for `-`).
fn write_atomically(out: &Path, text: &str) -> Result<()> {
    if out == Path::new("-") {
        std::io::stdout().write_all(text.as_bytes()).context("cannot write to stdout")?;
        return Ok(());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out.file_name().ok_or_else(|| anyhow!("{} is not a file name", out.display()))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("cannot write {}: {e}", out.display()));
    }
    Ok(())
}

/// Renders, re-checks (the output must pass `policy check`) and writes a policy.
fn emit(p: &Policy, header: &[String], out: &Path) -> Result<()> {
    let text = render::to_toml(p, header);
    let name = out.display().to_string();
    Policy::parse(&name, &text)
        .map_err(|e| anyhow!("internal error: the policy written would not check: {e}"))?;
    write_atomically(out, &text)
}

fn import(profile: &Path, out: &Path) -> Result<ExitCode> {
    let json =
        std::fs::read_to_string(profile).with_context(|| format!("cannot read {}", profile.display()))?;
    let name = profile.display().to_string();
    let (p, report) = oci::import(&name, &json).map_err(|e| {
        anyhow!(
            "{}: {e}; help: pass a Docker/OCI seccomp profile such as moby's profiles/seccomp/default.json",
            name
        )
    })?;
    let header = vec![
        format!("Imported by `cabinc policy import --from oci-seccomp` from {name}."),
        "No [network]: an OCI seccomp profile has no network allow-list, so this policy allows no network;"
            .to_string(),
        "add a [network] section or run with --allow-connect/--allow-listen (docs/networking.md)."
            .to_string(),
        String::new(),
    ];
    emit_with_report(&p, header, &report.to_text(), out)
}

/// Writes `p` with `header` and the conversion report as its leading
/// comment, and shows the report on stderr.
fn emit_with_report(p: &Policy, mut header: Vec<String>, report: &str, out: &Path) -> Result<ExitCode> {
    header.extend(report.lines().map(str::to_string));
    emit(p, &header, out)?;
    eprint!("{report}");
    if out != Path::new("-") {
        eprintln!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(trace: &Path, out: &Path) -> Result<ExitCode> {
    let jsonl = std::fs::read_to_string(trace).with_context(|| format!("cannot read {}", trace.display()))?;
    let name = trace.display().to_string();
    let (p, report) = generate::from_trace(&name, &jsonl).map_err(|e| anyhow!("{name}: {e}"))?;
    let header = vec![
        format!("Generated by `cabinc policy generate` from {name}: the least policy that allows that run."),
        "Review it: a different input may need more.".to_string(),
        String::new(),
    ];
    emit_with_report(&p, header, &report.to_text(), out)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: RunPolicyArgs,
    }

    fn prepare(args: &[&str]) -> RunPolicy {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).expect("flags parse");
        t.a.prepare(Path::new("x.cabin"), &[], &[], &[], crate::Format::Text).expect("prepare")
    }

    /// `--allow-connect`/`--allow-listen` reach the monitor's
    /// `RunConfig::network` with no policy, and add to the policy's
    /// `[network]` with one (like `--allow-read` adds to `[paths]`).
    #[test]
    fn network_flags_merge_with_the_policy_file() {
        let none = prepare(&[]);
        assert!(none.network.is_empty(), "default: no network");
        let flags = prepare(&["--allow-connect", "127.0.0.1:8080", "--allow-listen", "[::1]:*"]);
        assert!(flags.network.connect_allowed(&"127.0.0.1:8080".parse().expect("addr")));
        assert!(flags.network.listen_allowed(&"[::1]:0".parse().expect("addr")));
        assert!(!flags.network.connect_allowed(&"127.0.0.1:8081".parse().expect("addr")));

        let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "version = 1\n[network]\nconnect = [\"10.0.0.0/8:443\"]\nunix = [\"/run/a.sock\"]\nresolver = \"127.0.0.53\"\n",
        )
        .expect("policy");
        let f = file.to_str().expect("utf-8");
        let both = prepare(&["--policy", f, "--allow-connect", "127.0.0.1:8080"]);
        let n = &both.network;
        for a in ["10.1.1.1:443", "127.0.0.1:8080", "127.0.0.53:53"] {
            assert!(n.connect_allowed(&a.parse().expect("addr")), "{a}");
        }
        assert!(n.unix_path_allowed(Path::new("/run/a.sock")));
        assert_eq!(both.gate.policy.as_ref().map(|p| &p.network), Some(n), "the gate sees the same rules");
        assert!(T::try_parse_from(["t", "--allow-connect", "example.com:80"]).is_err());
    }
}
