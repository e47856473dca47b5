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

use crate::output::status;
use crate::{BuildArgs, MessageFormat};

pub fn run(a: &BuildArgs) -> Result<ExitCode> {
    let json = a.message_format == MessageFormat::Json;
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

fn build(a: &BuildArgs, json: bool) -> Result<()> {
    let started = Instant::now();
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
    if let Some(plan_path) = &a.plan {
        write_atomic(plan_path, out.plan_json.as_bytes(), 0o644)?;
    }
    write_atomic(&a.output, &out.image, 0o755)?;
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
                "output": a.output,
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
                a.output.display(),
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
