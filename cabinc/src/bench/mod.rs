//! `cabinc bench`: runs catalog items natively and confined, interleaved (native, then each
//! confined backend, round after round, every other round in reverse order), takes the median of every score on each side, and
//! reports confined/native ratios (higher is better) per item and their geometric mean per backend.
//! Writes `DIR/bench.json`, `DIR/bench.svg` and `DIR/bench.txt`.

pub mod load;
pub mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::catalog::runner::{self, Backend};
use crate::catalog::{builder, CatalogContext, CommonArgs, Item};
use crate::output::status;
use report::{ItemResult, Machine, Report};

/// Arguments of `cabinc bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Catalog entries (NAME for all its variants, or NAME/VARIANT) [default: every entry].
    pub names: Vec<String>,
    /// Confined backends to compare with native: passthrough, process, kvm, auto, or `all`
    /// (passthrough plus every confined backend this machine and cabinc offer); comma-separated.
    /// `process-sync` and `kvm-sync` run the same backend with every call trapping out of the
    /// domain (`cabinc run --forwarding sync`): the synchronous path the ring replaces.
    #[arg(long, default_value = "all")]
    pub backend: String,
    /// Runs of each side (native and each backend), interleaved.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Directory for bench.json, bench.svg and bench.txt.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Source tree for the (single) entry named (overrides the manifest's source).
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Untimed warm-up runs of each side before measuring.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// CPU hogs (busy threads) to run during every native and confined run, interleaved, so
    /// both sides meet the same load; recorded in the report.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub load: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Whether this cabinc has a `run` subcommand (or a stand-in runner is set).
fn has_run_subcommand() -> bool {
    if std::env::var("CABIN_CONFINED_RUNNER").is_ok_and(|s| !s.trim().is_empty()) {
        return true;
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| {
            Command::new(e).args(["run", "--help"]).stdout(Stdio::null()).stderr(Stdio::null()).status().ok()
        })
        .is_some_and(|s| s.success())
}

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// The backends a `--backend` value names.
pub fn backends(spec: &str) -> Result<Vec<Backend>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if part == "all" {
            out.push(Backend::Passthrough);
            if has_run_subcommand() {
                out.push(Backend::Confined("process".into()));
                if kvm_usable() {
                    out.push(Backend::Confined("kvm".into()));
                } else {
                    status("Skipping", "kvm backend: /dev/kvm is not usable here");
                }
            } else {
                status("Skipping", "process and kvm backends: this cabinc has no `run` subcommand yet");
            }
        } else {
            let b = Backend::parse(part)?;
            if b == Backend::Native {
                bail!("`native` is the baseline of every comparison; help: name a confined backend");
            }
            if matches!(b, Backend::Confined(_)) && !has_run_subcommand() {
                bail!("backend `{part}` needs `cabinc run`, which this cabinc does not have; help: use --backend passthrough");
            }
            out.push(b);
        }
    }
    out.dedup();
    if out.is_empty() {
        bail!("no backend selected");
    }
    Ok(out)
}

/// Seconds since the epoch as an RFC 3339 UTC date.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[derive(Debug, Default)]
struct Samples {
    unit: String,
    higher_is_better: bool,
    values: Vec<f64>,
}

/// Entry point of `cabinc bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let load =
        std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse().ok());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for w in stats::warnings(args.runs, load, cpus) {
        status("Warning", &w);
    }
    let ctx = CatalogContext::new(&args.common)?;
    let backends = backends(&args.backend)?;
    let mut items: Vec<Item> = Vec::new();
    if args.names.is_empty() {
        for m in ctx.entries() {
            items.extend(m.variant_names().into_iter().map(|v| Item { manifest: m.clone(), variant: v }));
        }
    } else {
        for n in &args.names {
            items.extend(ctx.select(n)?);
        }
    }
    if args.source.is_some() && args.names.len() != 1 {
        bail!("--source applies to one entry; help: name exactly one entry");
    }
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let loadavg_start = load::loadavg();
    let names: Vec<String> = backends.iter().map(ToString::to_string).collect();
    status(
        "Benchmarking",
        &format!("{} item(s), backends: {}, {} run(s) each", items.len(), names.join(", "), args.runs),
    );

    let mut results: Vec<ItemResult> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for item in &items {
        let built = match builder::build(&ctx, item, args.source.as_deref(), false) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("{}: build failed: {e:#}", item.id());
                crate::output::error(&anyhow::anyhow!(msg.clone()));
                failures.push(msg);
                continue;
            }
        };
        // A server workload's client must be installed: one error, before any run.
        if let Some(srv) = &item.manifest.server {
            let mut vars = built.vars.clone();
            vars.insert("port".into(), "0".into());
            vars.insert("scratch".into(), String::new());
            if let Err(e) = runner::client_command(srv, &vars, &item.id()) {
                crate::output::error(&e);
                failures.push(format!("{e:#}"));
                continue;
            }
        }
        settle(&built.image);
        let sides: Vec<Backend> = std::iter::once(Backend::Native).chain(backends.iter().cloned()).collect();
        // The hogs run through every run of this item (both sides, warm-ups included) and stop
        // at the end of this loop iteration.
        let hogs = load::Hogs::start(args.load);
        if args.load > 0 {
            status("Loading", &format!("{} CPU hog(s) running", hogs.count()));
        }
        for w in 0..args.warmup {
            for side in &sides {
                status("Warming", &format!("{} {}/{} {side}", item.id(), w + 1, args.warmup));
                let _ = runner::run_once(&built, side.clone(), None, false);
            }
        }
        // side -> score name -> samples, in first-seen order of names.
        let mut samples: BTreeMap<String, BTreeMap<String, Samples>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for r in 0..args.runs {
            // Odd rounds go in reverse order (A B C, C B A, …) so that no side is always first
            // after a cold start or always last before a change of load.
            let round: Vec<&Backend> =
                if r % 2 == 0 { sides.iter().collect() } else { sides.iter().rev().collect() };
            for side in round {
                status("Running", &format!("{} run {}/{} {side}", item.id(), r + 1, args.runs));
                let res = match runner::run_once(&built, side.clone(), None, false) {
                    Ok(res) => res,
                    Err(e) => {
                        failures.push(format!("{} ({side}): {e:#}", item.id()));
                        continue;
                    }
                };
                if let Some(f) = res.failure {
                    status("Failed", &f);
                    failures.push(f);
                    continue;
                }
                let per = samples.entry(side.to_string()).or_default();
                for s in res.scores {
                    if !order.contains(&s.name) {
                        order.push(s.name.clone());
                    }
                    let e = per.entry(s.name).or_insert_with(|| Samples {
                        unit: s.unit,
                        higher_is_better: s.higher_is_better,
                        values: Vec::new(),
                    });
                    e.values.push(s.value);
                }
            }
        }
        let native = samples.get("native");
        for b in &backends {
            let bname = b.to_string();
            let Some(conf) = samples.get(&bname) else { continue };
            for score in &order {
                let (Some(n), Some(c)) = (native.and_then(|m| m.get(score)), conf.get(score)) else {
                    continue;
                };
                let (Some(nm), Some(cm)) = (stats::median(&n.values), stats::median(&c.values)) else {
                    continue;
                };
                let Some(ratio) = stats::ratio(nm, cm, n.higher_is_better) else {
                    failures
                        .push(format!("{}: {score}: no ratio from native {nm} and {bname} {cm}", item.id()));
                    continue;
                };
                results.push(ItemResult {
                    name: format!("{}: {score}", item.id()),
                    entry: item.id(),
                    score: score.clone(),
                    backend: bname.clone(),
                    native: nm,
                    confined: cm,
                    unit: n.unit.clone(),
                    higher_is_better: n.higher_is_better,
                    ratio,
                    runs: n.values.len().min(c.values.len()),
                    ratio_range: stats::ratio_range(nm, &c.values, n.higher_is_better),
                });
            }
        }
    }
    let load = load::Load { hogs: args.load, loadavg_start, loadavg_end: load::loadavg() };
    let report =
        Report::new(results, failures, Machine::detect(), rfc3339(started), args.runs).with_load(load);
    let table = report.table();
    print!("{table}");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
    crate::build::write_atomic(&args.out.join("bench.json"), json.as_bytes(), 0o644)?;
    crate::build::write_atomic(&args.out.join("bench.svg"), report.svg().as_bytes(), 0o644)?;
    crate::build::write_atomic(&args.out.join("bench.txt"), table.as_bytes(), 0o644)?;
    status("Wrote", &format!("{}/bench.{{json,svg,txt}}", args.out.display()));
    Ok(if report.failures.is_empty() && !report.items.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Waits until `image` (just built or rebuilt) is older than
/// `cabin_rewriter::verified::RACY_NS`: `cabinc run` stores and uses an
/// image's checked measurement only for a file that old (a file written in
/// the last moments could still change under the same key), so runs of a
/// fresh image would each hash it in full, which is a first run's cost, not
/// the cost of the runs a user makes after the first (a 2 MB image's start-up
/// measured 17-18 ms this way and 11 ms once the image had settled).
fn settle(image: &std::path::Path) {
    let Ok(wait) = std::fs::File::open(image).and_then(|f| cabin_rewriter::verified::time_to_settle(&f))
    else {
        return;
    };
    if !wait.is_zero() {
        // Some margin: `cabinc run` compares with its own clock, read
        // before the image is read.
        let wait = wait + std::time::Duration::from_millis(100);
        status(
            "Waiting",
            &format!(
                "{:.1} s for the new image to settle (its measurement is then cached as for a user's second run)",
                wait.as_secs_f64()
            ),
        );
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
