//! `cabinc build`: rewrite a static executable into a Cabin image.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use cabin_rewriter::pipeline::{build_image, BuildOptions, BuildOutput, Stage};
use cabin_rewriter::plan::ForbiddenFix;
use serde_json::json;

use crate::output::{is_stdout, status};
use crate::{BuildArgs, Format, MessageFormat};

pub fn run(a: &BuildArgs) -> Result<ExitCode> {
    let json = a.format == Format::Json || a.message_format == Some(MessageFormat::Json);
    match build(a, json) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if json => {
            let msg = format!("{e:#}");
            println!("{}", json!({ "reason": "build-finished", "success": false, "error": msg }));
            crate::output::error(&e);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

/// `-o`, or `NAME.cabin` in the current directory.
pub fn output_path(a: &BuildArgs) -> Result<PathBuf> {
    if let Some(o) = &a.output {
        return Ok(o.clone());
    }
    let name = a.input.file_name().with_context(|| {
        format!("{} names no file; help: pass the executable's path, or -o OUT", a.input.display())
    })?;
    let mut out = name.to_os_string();
    out.push(".cabin");
    Ok(PathBuf::from(out))
}

/// Refuses an output that is the input itself (the same file, by any name:
/// a hard link or a symlink too): the build would replace the program it
/// rewrites.
fn refuse_overwriting_input(input: &Path, output: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(output)) else { return Ok(()) };
    if i.dev() == o.dev() && i.ino() == o.ino() {
        anyhow::bail!(
            "the output {} is the input {}: the build would overwrite the program it rewrites; \
             help: write the image elsewhere with -o OUT (by default NAME.cabin)",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// The sites whose constant call number the backends refuse (`ENOSYS`), as
/// `(name, addresses)` by call.
pub fn refused_sites(plan: &cabin_rewriter::plan::PatchPlan) -> Vec<(String, Vec<u64>)> {
    let mut by: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
    for s in &plan.sites {
        if let Some(nr) = s.nr.filter(|&nr| crate::syscalls::refused(nr)) {
            by.entry(nr).or_default().push(s.addr);
        }
    }
    by.into_iter().map(|(nr, addrs)| (crate::syscalls::name(nr), addrs)).collect()
}

fn build(a: &BuildArgs, json: bool) -> Result<()> {
    let started = Instant::now();
    let output = output_path(a)?;
    if !is_stdout(&output) {
        refuse_overwriting_input(&a.input, &output)?;
    }
    let input = std::fs::read(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let human = !json;
    if human {
        status("Analyzing", &format!("{} ({})", a.input.display(), size(input.len())));
    }
    let bar = (human && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(100);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg:>12} [{bar:30}] {percent}%")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut progress = |stage: Stage| {
        if let Some(b) = &bar {
            let (msg, pct) = match stage {
                Stage::Disassembling(done, total) => ("disassemble", (done * 60 / total.max(1)) as u64),
                Stage::Planning => ("plan", 70),
                Stage::Trampolines => ("trampolines", 80),
                Stage::Emitting => ("emit", 90),
                Stage::Measuring => ("measure", 95),
            };
            b.set_message(msg);
            b.set_position(pct);
        }
    };
    let opts = BuildOptions { allow_readable_code: a.allow_readable_code, trap_all_sites: a.trap_all_sites };
    let result = build_image(&input, &opts, &mut progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let out: BuildOutput = result.with_context(|| format!("cannot build {}", a.input.display()))?;
    if is_stdout(&output) && a.plan.as_deref().is_some_and(is_stdout) {
        anyhow::bail!("the image and the plan cannot both go to stdout; help: write one of them to a file");
    }
    if json && (is_stdout(&output) || a.plan.as_deref().is_some_and(is_stdout)) {
        anyhow::bail!(
            "--format json prints its report on stdout; help: write the image and the plan to files"
        );
    }
    if let Some(plan_path) = &a.plan {
        write_out(plan_path, out.plan_json.as_bytes(), 0o644)?;
    }
    write_out(&output, &out.image, 0o755)?;
    let refused = refused_sites(&out.plan);
    if !json && !refused.is_empty() {
        let total: usize = refused.iter().map(|(_, a)| a.len()).sum();
        let list: Vec<String> = refused
            .iter()
            .map(|(n, addrs)| match addrs.as_slice() {
                [one] => format!("{n} (at {one:#x})"),
                many => format!("{n} ({} sites, first at {:#x})", many.len(), many[0]),
            })
            .collect();
        eprintln!(
            "warning: {total} system-call site(s) make calls the backends refuse (the program gets ENOSYS \
             there): {}",
            list.join(", ")
        );
        eprintln!(
            "help: a program may never reach them (library code linked in); `cabinc syscalls` lists what is served"
        );
    }
    if let Some(policy) = &a.policy {
        let sites = out.plan.sites.iter().filter_map(|s| s.nr.map(|nr| (s.addr, nr)));
        for finding in crate::policy::build_findings(policy, sites)? {
            let (what, help) = finding.split_once("; help: ").unwrap_or((finding.as_str(), ""));
            eprintln!("warning: {what}");
            if !help.is_empty() {
                eprintln!("help: {help}");
            }
        }
    }
    let s = &out.summary;
    let elapsed = started.elapsed();
    if json {
        println!(
            "{}",
            json!({
                "reason": "build-finished",
                "success": true,
                "input": a.input,
                "output": output,
                "refused_calls": refused.iter().map(|(n, addrs)| json!({
                    "name": n,
                    "sites": addrs.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "kind": s.kind,
                "sites": { "total": s.sites_total, "rewritten": s.rewritten, "trap": s.trap },
                "forbidden": s.forbidden,
                "execute_only": s.execute_only,
                "measurement": hex::encode(out.measurement),
                "size": out.image.len(),
                "time_ms": elapsed.as_secs_f64() * 1e3,
            })
        );
    } else {
        status(
            "Rewrote",
            &format!(
                "{} system-call sites: {} rewritten, {} trap{}",
                s.sites_total,
                s.rewritten,
                s.trap,
                if s.forbidden > 0 {
                    let left = out.plan.forbidden.iter().filter(|f| f.fix == ForbiddenFix::Left).count();
                    format!(
                        ", {} xrstor-family instructions ({} left unmasked; `cabinc inspect` explains)",
                        s.forbidden, left
                    )
                } else {
                    String::new()
                }
            ),
        );
        status(
            "Finished",
            &format!(
                "{} ({}, {}, {:.2}s)",
                output.display(),
                size(out.image.len()),
                if s.execute_only { "execute-only" } else { "readable code: execute-only OFF" },
                elapsed.as_secs_f64()
            ),
        );
        status("Measurement", &hex::encode(out.measurement));
    }
    Ok(())
}

fn size(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// [`write_atomic`], or stdout for `-`.
pub fn write_out(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if is_stdout(path) {
        crate::output::to_stdout(bytes)
    } else {
        write_atomic(path, bytes, mode)
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it into
/// place, so a failed build never leaves a half-written output.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().with_context(|| format!("output path {} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
