//! Running a built item once, natively or as a Cabin image (passthrough, or confined through
//! `cabinc run --backend X`), and reading its scores from the output.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use super::builder::Built;
use super::manifest::{expand, ScoreKind, ScoreSpec, Stream};

/// How a run executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The native static executable.
    Native,
    /// The image run directly as an ordinary process (its libos passes calls through).
    Passthrough,
    /// The image confined by `cabinc run --backend NAME`; a `-sync` suffix adds
    /// `--forwarding sync` (every call traps out of the domain).
    Confined(String),
}

impl Backend {
    /// Parses a backend name.
    pub fn parse(s: &str) -> Result<Backend> {
        Ok(match s {
            "native" => Backend::Native,
            "passthrough" => Backend::Passthrough,
            "process" | "kvm" | "auto" | "process-sync" | "kvm-sync" => Backend::Confined(s.to_string()),
            _ => bail!(
                "unknown backend `{s}`; help: use native, passthrough, process, kvm, auto, process-sync or kvm-sync"
            ),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Native => f.write_str("native"),
            Backend::Passthrough => f.write_str("passthrough"),
            Backend::Confined(b) => f.write_str(b),
        }
    }
}

/// One score read from one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Score name (unique within the item).
    pub name: String,
    /// The value.
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// Whether bigger is better.
    pub higher_is_better: bool,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Scores, in output order.
    pub scores: Vec<Score>,
    /// Wall-clock time from spawn to exit.
    pub wall: Duration,
    /// Why the run does not count, if it does not.
    pub failure: Option<String>,
}

/// Reads scores from a run's output.
pub fn parse_scores(specs: &[ScoreSpec], stdout: &str, stderr: &str, wall: Duration) -> Vec<Score> {
    let mut out: Vec<Score> = Vec::new();
    for spec in specs {
        let unit = spec.unit().to_string();
        let hib = spec.higher_is_better();
        match spec.kind {
            ScoreKind::WallTime => out.push(Score {
                name: spec.name.clone().unwrap_or_else(|| "wall time".into()),
                value: wall.as_secs_f64(),
                unit,
                higher_is_better: hib,
            }),
            ScoreKind::Regex => {
                let Some(re) = spec.compiled() else { continue };
                let text = match spec.stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                for c in re.captures_iter(text) {
                    let Some(v) = c.name("value").and_then(|v| v.as_str().trim().parse::<f64>().ok()) else {
                        continue;
                    };
                    let name = match (c.name("name"), &spec.name) {
                        (Some(n), Some(prefix)) => format!("{prefix} {}", squash(n.as_str())),
                        (Some(n), None) => squash(n.as_str()),
                        (None, Some(p)) => p.clone(),
                        (None, None) => continue,
                    };
                    // A repeated name (e.g. the same algorithm printed twice) gets a suffix.
                    let mut unique = name.clone();
                    let mut k = 2;
                    while out.iter().any(|s| s.name == unique) {
                        unique = format!("{name} #{k}");
                        k += 1;
                    }
                    out.push(Score { name: unique, value: v, unit: unit.clone(), higher_is_better: hib });
                }
            }
        }
    }
    out
}

/// A score value for people: up to four decimals, trailing zeros dropped.
pub fn show(v: f64) -> String {
    let s = if v.abs() >= 1000.0 { format!("{v:.1}") } else { format!("{v:.4}") };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn reader<R: Read + Send + 'static>(
    mut r: R,
    echo: Option<Box<dyn Write + Send>>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        let mut echo = echo;
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if let Some(w) = echo.as_mut() {
                        let _ = w.write_all(&buf[..n]);
                        let _ = w.flush();
                    }
                }
            }
        }
        let _ = tx.send(all);
    });
    rx
}

/// Runs a built item once. `args` replaces the manifest's arguments; `echo` copies the program's
/// output to ours as it arrives.
pub fn run_once(built: &Built, backend: Backend, args: Option<&[String]>, echo: bool) -> Result<RunResult> {
    let m = &built.item.manifest;
    let scratch = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&built.dir)
        .with_context(|| format!("cannot create a scratch directory in {}", built.dir.display()))?;
    let mut vars: BTreeMap<String, String> = built.vars.clone();
    vars.insert("scratch".into(), scratch.path().display().to_string());
    let prog_args: Vec<String> = match args {
        Some(a) => a.to_vec(),
        None => m.run.args.iter().map(|a| expand(a, &vars, false)).collect::<Result<_, _>>()?,
    };
    let env: Vec<String> = m.run.env.iter().map(|a| expand(a, &vars, false)).collect::<Result<_, _>>()?;
    let mut cmd = match &backend {
        Backend::Native => Command::new(&built.native),
        Backend::Passthrough => Command::new(&built.image),
        Backend::Confined(b) => {
            // A stand-in runner (for testing before `cabinc run` exists):
            // `$CABIN_CONFINED_RUNNER [--allow-read D]... [--env K=V]... IMAGE ARGS...`.
            let stand_in = std::env::var("CABIN_CONFINED_RUNNER").ok().filter(|s| !s.trim().is_empty());
            let mut c = match &stand_in {
                Some(r) => {
                    let mut words = r.split_whitespace();
                    let mut c = Command::new(words.next().unwrap_or_default());
                    c.args(words);
                    c
                }
                None => {
                    let exe = std::env::current_exe().context("cannot find the cabinc executable")?;
                    let mut c = Command::new(exe);
                    let (name, sync) = b.strip_suffix("-sync").map_or((b.as_str(), false), |n| (n, true));
                    c.arg("run").arg("--quiet").arg("--backend").arg(name);
                    if sync {
                        c.arg("--forwarding").arg("sync");
                    }
                    c
                }
            };
            for d in &m.run.allow_read {
                c.arg("--allow-read").arg(expand(d, &vars, false)?);
            }
            for d in &m.run.allow_write {
                c.arg("--allow-write").arg(expand(d, &vars, false)?);
            }
            for r in &m.run.allow_connect {
                c.arg("--allow-connect").arg(r);
            }
            for r in &m.run.allow_listen {
                c.arg("--allow-listen").arg(r);
            }
            for e in &env {
                c.arg("--env").arg(e);
            }
            c.arg(&built.image);
            if stand_in.is_none() {
                c.arg("--");
            }
            c
        }
    };
    cmd.args(&prog_args).current_dir(scratch.path()).env_clear();
    if !matches!(backend, Backend::Confined(_)) {
        for e in &env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    match &m.run.stdin {
        Some(p) => {
            let p = expand(p, &vars, false)?;
            let f = std::fs::File::open(&p).with_context(|| format!("cannot open stdin file {p}"))?;
            cmd.stdin(f);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(if m.run.discard_stdout { Stdio::null() } else { Stdio::piped() });
    cmd.stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {} ({backend})", built.item.id()))?;
    let out_rx = child
        .stdout
        .take()
        .map(|o| reader(o, echo.then(|| Box::new(std::io::stdout()) as Box<dyn Write + Send>)));
    let err_rx = child
        .stderr
        .take()
        .map(|e| reader(e, echo.then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>)));
    // A watchdog ends a run that outlives its timeout.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let pid = child.id();
    let timeout = Duration::from_secs(m.run.timeout_secs);
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            return true;
        }
        false
    });
    let status = child.wait().context("cannot wait for the program")?;
    let wall = started.elapsed();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let stdout = out_rx.and_then(|r| r.recv().ok()).unwrap_or_default();
    let stderr = err_rx.and_then(|r| r.recv().ok()).unwrap_or_default();
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    let scores = parse_scores(&m.scores, &stdout, &stderr, wall);
    let tail = || {
        let t: Vec<&str> = stderr.lines().rev().take(5).collect();
        t.into_iter().rev().collect::<Vec<_>>().join(" | ")
    };
    let failure = if timed_out {
        Some(format!("timed out after {}s", m.run.timeout_secs))
    } else if status.code() != Some(m.run.expect_exit) {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended oddly".into(),
        };
        Some(format!("{} ({backend}) {how} (expected {}): {}", built.item.id(), m.run.expect_exit, tail()))
    } else if let Some(re) = m.run.expect_output.as_deref().and_then(|r| Regex::new(r).ok()) {
        (!re.is_match(&stdout) && !re.is_match(&stderr)).then(|| {
            format!("{} ({backend}) output does not match `{}`: {}", built.item.id(), re.as_str(), tail())
        })
    } else {
        None
    };
    let failure = failure.or_else(|| {
        (!m.scores.is_empty() && scores.is_empty())
            .then(|| format!("{} ({backend}) printed no score: {}", built.item.id(), tail()))
    });
    Ok(RunResult { scores, wall, failure })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::manifest::Manifest;

    #[test]
    fn reads_named_scores_and_wall_time() {
        let m = Manifest::parse(
            r#"
format = 1
name = "t"
description = "d"
build = { commands = ["true"] }
run = {}
[[scores]]
kind = "regex"
regex = '^(?P<name>[A-Z][^,]*),(?P<value>[0-9.]+),'
unit = "MB/s"
[[scores]]
kind = "regex"
name = "rsa"
stream = "stderr"
regex = 'rsa (?P<value>[0-9.]+) ops/sec'
unit = "ops/s"
[[scores]]
kind = "wall_time"
"#,
            "t.toml",
            std::path::Path::new("/"),
        )
        .expect("manifest");
        let out = "Algorithm,MB/s,\nAES-128-CBC-enc,153.5,16.1,\nSHA-256,263.6,9.3,\nSHA-256,1.0,9.3,\n";
        let s = parse_scores(&m.scores, out, "rsa 12.5 ops/sec", Duration::from_millis(1500));
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["AES-128-CBC-enc", "SHA-256", "SHA-256 #2", "rsa", "wall time"]);
        assert_eq!(s[0].value, 153.5);
        assert!(s[0].higher_is_better);
        assert_eq!(s[3].value, 12.5);
        assert_eq!(s[4].value, 1.5);
        assert!(!s[4].higher_is_better);
        assert_eq!(s[4].unit, "s");
    }

    #[test]
    fn values_show_briefly() {
        assert_eq!(show(1.020837249), "1.0208");
        assert_eq!(show(320.4), "320.4");
        assert_eq!(show(27187.564), "27187.6");
        assert_eq!(show(2.0), "2");
    }

    #[test]
    fn backends_parse() {
        assert_eq!(Backend::parse("kvm").expect("kvm"), Backend::Confined("kvm".into()));
        assert_eq!(Backend::parse("passthrough").expect("p"), Backend::Passthrough);
        assert!(Backend::parse("qemu").is_err());
    }
}
