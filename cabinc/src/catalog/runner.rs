//! Running a built item once, natively or as a Cabin image (passthrough, or confined through
//! `cabinc run --backend X`), and reading its scores from the output.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use super::builder::Built;
use super::manifest::{duration_scale, expand, ScoreKind, ScoreSpec, ServerSpec, Stream};

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
                // In the score's unit (checked to be ns, us, ms or s when loaded).
                value: wall.as_secs_f64() / duration_scale(&unit).unwrap_or(1.0),
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
                    let Some(mut v) = c.name("value").and_then(|v| v.as_str().trim().parse::<f64>().ok())
                    else {
                        continue;
                    };
                    // A duration with its own unit (`850.5us`, `12.1ms`) in the score's unit.
                    if let Some(u) = c.name("unit") {
                        let (Some(from), Some(to)) = (duration_scale(u.as_str()), duration_scale(&unit))
                        else {
                            continue;
                        };
                        v = v * from / to;
                    }
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
/// output to ours as it arrives. A server workload (`[server]`) starts the program as a server and
/// reads the scores from its native client ([`run_server`]).
pub fn run_once(built: &Built, backend: Backend, args: Option<&[String]>, echo: bool) -> Result<RunResult> {
    let m = &built.item.manifest;
    let scratch = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&built.dir)
        .with_context(|| format!("cannot create a scratch directory in {}", built.dir.display()))?;
    let mut vars: BTreeMap<String, String> = built.vars.clone();
    vars.insert("scratch".into(), scratch.path().display().to_string());
    if m.server.is_some() {
        vars.insert("port".into(), free_port()?.to_string());
    }
    let mut cmd = program_command(built, &backend, args, &vars, scratch.path())?;
    if let Some(srv) = &m.server {
        return run_server(built, &backend, cmd, srv, &vars, echo);
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
    let (status, timed_out) = wait_bounded(&mut child, Duration::from_secs(m.run.timeout_secs))?;
    let wall = started.elapsed();
    let stdout = out_rx.and_then(|r| r.recv().ok()).unwrap_or_default();
    let stderr = err_rx.and_then(|r| r.recv().ok()).unwrap_or_default();
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    let scores = parse_scores(&m.scores, &stdout, &stderr, wall);
    let failure = judge(built, &backend, status, timed_out, &stdout, &stderr, &scores);
    Ok(RunResult { scores, wall, failure })
}

/// The command that starts the program on `backend` (arguments, environment, working directory
/// and stdin set; stdout and stderr left to the caller).
fn program_command(
    built: &Built,
    backend: &Backend,
    args: Option<&[String]>,
    vars: &BTreeMap<String, String>,
    scratch: &Path,
) -> Result<Command> {
    let m = &built.item.manifest;
    let prog_args: Vec<String> = match args {
        Some(a) => a.to_vec(),
        None => m.run.args.iter().map(|a| expand(a, vars, false)).collect::<Result<_, _>>()?,
    };
    let env: Vec<String> = m.run.env.iter().map(|a| expand(a, vars, false)).collect::<Result<_, _>>()?;
    let mut cmd = match backend {
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
                    if let Some(a0) = &m.run.arg0 {
                        c.arg("--arg0").arg(a0);
                    }
                    if sync {
                        c.arg("--forwarding").arg("sync");
                    }
                    c
                }
            };
            for d in &m.run.allow_read {
                c.arg("--allow-read").arg(expand(d, vars, false)?);
            }
            for d in &m.run.allow_write {
                c.arg("--allow-write").arg(expand(d, vars, false)?);
            }
            for a in m.server.iter().flat_map(|s| s.allow_listen.iter()) {
                c.arg("--allow-listen").arg(expand(a, vars, false)?);
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
    cmd.args(&prog_args).current_dir(scratch).env_clear();
    if let (Some(a0), false) = (&m.run.arg0, matches!(backend, Backend::Confined(_))) {
        std::os::unix::process::CommandExt::arg0(&mut cmd, a0);
    }
    if matches!(backend, Backend::Confined(_)) {
        // cabinc's own caches (the image cache and its verified measurements), as a user's
        // `cabinc run` has them, and its switch for the sockets' direct data plane
        // (docs/networking.md: `CABIN_NATIVE_SOCKETS=0` measures the forwarded path); the
        // program's environment is still only `--env`.
        for k in ["HOME", "XDG_CACHE_HOME", "CABIN_NATIVE_SOCKETS"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
    }
    if !matches!(backend, Backend::Confined(_)) {
        for e in &env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    match &m.run.stdin {
        Some(p) => {
            let p = expand(p, vars, false)?;
            let f = std::fs::File::open(&p).with_context(|| format!("cannot open stdin file {p}"))?;
            cmd.stdin(f);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    Ok(cmd)
}

/// Waits for `child`, killing it (SIGKILL) when it outlives `timeout`; says whether it was killed.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<(ExitStatus, bool)> {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            return true;
        }
        false
    });
    let status = child.wait().context("cannot wait for the program")?;
    let _ = done_tx.send(());
    Ok((status, watchdog.join().unwrap_or(false)))
}

/// Why a finished run does not count, if it does not: timeout, exit status, expected output, no
/// score.
fn judge(
    built: &Built,
    backend: &Backend,
    status: ExitStatus,
    timed_out: bool,
    stdout: &str,
    stderr: &str,
    scores: &[Score],
) -> Option<String> {
    let m = &built.item.manifest;
    let tail = || tail_of(stderr);
    let failure = if timed_out {
        Some(format!("timed out after {}s", m.run.timeout_secs))
    } else if status.code() != Some(m.run.expect_exit) {
        Some(format!(
            "{} ({backend}) {} (expected {}): {}",
            built.item.id(),
            how_ended(status),
            m.run.expect_exit,
            tail()
        ))
    } else if let Some(re) = m.run.expect_output.as_deref().and_then(|r| Regex::new(r).ok()) {
        (!re.is_match(stdout) && !re.is_match(stderr)).then(|| {
            format!("{} ({backend}) output does not match `{}`: {}", built.item.id(), re.as_str(), tail())
        })
    } else {
        None
    };
    failure.or_else(|| {
        (!m.scores.is_empty() && scores.is_empty())
            .then(|| format!("{} ({backend}) printed no score: {}", built.item.id(), tail()))
    })
}

/// The last five lines of `text`, joined with ` | `.
fn tail_of(text: &str) -> String {
    let t: Vec<&str> = text.lines().rev().take(5).collect();
    t.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

fn how_ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended oddly".into(),
    }
}

/// A loopback TCP port that was free a moment ago (bound to port 0 and released). Another
/// process may take it before the server binds it; the run then fails and says so.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free loopback port")?;
    Ok(l.local_addr().context("cannot read the free port")?.port())
}

/// The executable `name` runs as: itself when it has a `/`, else the first match on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exe(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_exe(p))
}

/// Whether something accepts TCP connections on `addr` before `deadline`, checked every 20 ms
/// (each attempt bounded to 1 s); gives up early when `server` has exited (its status).
fn wait_ready(server: &mut Child, addr: SocketAddr, deadline: Instant) -> Result<(), String> {
    loop {
        match server.try_wait() {
            Ok(Some(st)) => return Err(format!("the server {} before it was ready", how_ended(st))),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot check the server: {e}")),
        }
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("nothing accepted a connection on {addr} in time"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a server: SIGTERM, then SIGKILL when it has not exited within `grace`; reaps it.
fn stop_server(server: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(st) = server.try_wait().context("cannot check the server")? {
        return Ok(st);
    }
    let Ok(pid) = libc::pid_t::try_from(server.id()) else {
        server.kill().context("cannot kill the server")?;
        return server.wait().context("cannot wait for the server");
    };
    // SAFETY: kill(2) with a pid we spawned and have not reaped (try_wait above said it runs),
    // so the pid cannot name another process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(st) = server.try_wait().context("cannot check the server")? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill().context("cannot kill the server")?;
    server.wait().context("cannot wait for the server")
}

/// The client command of a server workload, expanded, and the executable of its first word; a
/// missing one is an error naming the package to install.
pub fn client_command(
    srv: &ServerSpec,
    vars: &BTreeMap<String, String>,
    id: &str,
) -> Result<(Vec<String>, PathBuf)> {
    let client: Vec<String> = srv.client.iter().map(|a| expand(a, vars, false)).collect::<Result<_, _>>()?;
    let tool = client.first().context("server.client is empty")?;
    let Some(path) = which(tool) else {
        let pkg = srv.client_package.clone().unwrap_or_else(|| tool.clone());
        bail!("the load generator `{tool}` of {id} is not installed; help: apt-get install {pkg}");
    };
    Ok((client, path))
}

/// A server workload's run: start the server (`cmd`), wait until `srv.ready` accepts a connection,
/// run `srv.client` natively (bounded by `run.timeout_secs`), stop the server, and read the
/// scores from the client's output. The run's wall time is the client's.
pub fn run_server(
    built: &Built,
    backend: &Backend,
    mut cmd: Command,
    srv: &ServerSpec,
    vars: &BTreeMap<String, String>,
    echo: bool,
) -> Result<RunResult> {
    let m = &built.item.manifest;
    let id = built.item.id();
    let (client, tool_path) = client_command(srv, vars, &id)?;
    let tool = &client[0];
    let ready_text = expand(&srv.ready, vars, false)?;
    let ready: SocketAddr = ready_text
        .parse()
        .with_context(|| format!("server.ready `{ready_text}` of {id} is not an ADDR:PORT"))?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut server = cmd.spawn().with_context(|| format!("cannot start the server {id} ({backend})"))?;
    let echo_to = |e: bool| e.then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>);
    let srv_out = server.stdout.take().map(|o| reader(o, echo_to(echo)));
    let srv_err = server.stderr.take().map(|e| reader(e, echo_to(echo)));
    let readiness =
        wait_ready(&mut server, ready, Instant::now() + Duration::from_secs(srv.ready_timeout_secs));
    let client_run = readiness.map(|()| {
        let started = Instant::now();
        let mut c = Command::new(&tool_path);
        c.args(&client[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let ran = c.spawn().map_err(anyhow::Error::from).and_then(|mut child| {
            let out = child.stdout.take().map(|o| reader(o, None));
            let err = child.stderr.take().map(|e| reader(e, None));
            let (status, timed_out) = wait_bounded(&mut child, Duration::from_secs(m.run.timeout_secs))?;
            let out = out.and_then(|r| r.recv().ok()).unwrap_or_default();
            let err = err.and_then(|r| r.recv().ok()).unwrap_or_default();
            Ok((status, timed_out, out, err))
        });
        (ran, started.elapsed())
    });
    let stopped = stop_server(&mut server, Duration::from_secs(srv.stop_timeout_secs));
    let srv_err = srv_err.and_then(|r| r.recv().ok()).unwrap_or_default();
    let _ = srv_out.and_then(|r| r.recv().ok());
    let srv_err = String::from_utf8_lossy(&srv_err);
    stopped.with_context(|| format!("cannot stop the server {id} ({backend})"))?;
    let (ran, wall) = match client_run {
        Ok(r) => r,
        Err(why) => {
            let failure = format!(
                "{id} ({backend}) server not ready within {}s: {why}: {}",
                srv.ready_timeout_secs,
                tail_of(&srv_err)
            );
            return Ok(RunResult { scores: Vec::new(), wall: Duration::ZERO, failure: Some(failure) });
        }
    };
    let (status, timed_out, out, err) = ran.with_context(|| format!("cannot run `{tool}` for {id}"))?;
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    if echo {
        print!("{out}");
        eprint!("{err}");
    }
    let scores = parse_scores(&m.scores, &out, &err, wall);
    let failure = judge(built, backend, status, timed_out, &out, &err, &scores);
    Ok(RunResult { scores, wall, failure })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::manifest::{Manifest, ManifestError};

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

    /// A wall time in its score's unit (catalog/startup.toml reports ms); a unit that is not a
    /// duration is refused when the manifest is loaded.
    #[test]
    fn wall_time_in_its_unit() {
        let manifest = |unit: &str| {
            Manifest::parse(
                &format!(
                    "format = 1\nname = \"t\"\ndescription = \"d\"\nbuild = {{ commands = [\"true\"] }}\n\
                     run = {{}}\n[[scores]]\nkind = \"wall_time\"\nunit = \"{unit}\"\n"
                ),
                "t.toml",
                std::path::Path::new("/"),
            )
        };
        let m = manifest("ms").expect("manifest");
        let s = parse_scores(&m.scores, "", "", Duration::from_micros(4250));
        assert!((s[0].value - 4.25).abs() < 1e-9 && s[0].unit == "ms", "{:?}", s[0]);
        let m = manifest("us").expect("manifest");
        let us = parse_scores(&m.scores, "", "", Duration::from_micros(4250))[0].value;
        assert!((us - 4250.0).abs() < 1e-6, "{us}");
        assert!(manifest("MB/s").is_err());
    }

    /// wrk's `--latency` output: the 99% line's unit varies (us, ms, s); the score is in ms.
    #[test]
    fn durations_with_their_own_unit_convert_to_the_score_unit() {
        let m = Manifest::parse(
            r#"
format = 1
name = "t"
description = "d"
build = { commands = ["true"] }
run = { args = ["127.0.0.1:{port}"] }
server = { client = ["wrk", "http://127.0.0.1:{port}/"] }
[[scores]]
kind = "regex"
name = "requests/s"
regex = '^Requests/sec:\s+(?P<value>[0-9.]+)'
[[scores]]
kind = "regex"
name = "p99"
regex = '^\s+99%\s+(?P<value>[0-9.]+)(?P<unit>us|ms|s)\s*$'
unit = "ms"
higher_is_better = false
"#,
            "t.toml",
            std::path::Path::new("/"),
        )
        .expect("manifest");
        let srv = m.server.as_ref().expect("server");
        assert_eq!(srv.ready, "127.0.0.1:{port}");
        assert_eq!(srv.allow_listen, vec!["127.0.0.1:{port}".to_string()]);
        let wrk = |p99: &str| {
            format!("  Latency Distribution\n     50%  600.00us\n     99%   {p99}\nRequests/sec:  12345.67\n")
        };
        let s = parse_scores(&m.scores, &wrk("850.50us"), "", Duration::ZERO);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].value, 12345.67);
        assert!((s[1].value - 0.8505).abs() < 1e-9, "{s:?}");
        let s = parse_scores(&m.scores, &wrk("1.20s"), "", Duration::ZERO);
        assert!((s[1].value - 1200.0).abs() < 1e-9, "{s:?}");
        // A unit group needs a duration unit on the score.
        let bad = r#"
format = 1
name = "t"
description = "d"
build = { commands = ["true"] }
run = {}
[[scores]]
kind = "regex"
name = "p99"
regex = '(?P<value>[0-9.]+)(?P<unit>ms)'
unit = "req/s"
"#;
        let e = Manifest::parse(bad, "t.toml", std::path::Path::new("/")).expect_err("unit");
        assert!(e.to_string().contains("ns, us, ms or s"), "{e}");
        // {port} exists only for server workloads.
        let e = Manifest::parse(
            &bad.replace("run = {}", "run = { args = [\"{port}\"] }").replace("req/s", "ms"),
            "t.toml",
            std::path::Path::new("/"),
        )
        .expect_err("port");
        assert!(matches!(e, ManifestError::Placeholder(ref p, _) if p == "port"), "{e}");
    }

    /// A missing load generator is one error that says what to install.
    #[test]
    fn a_missing_client_names_the_package() {
        let srv: ServerSpec =
            toml::from_str("client = [\"cabin-no-such-wrk\", \"-d1s\"]\nclient_package = \"wrk\"")
                .expect("spec");
        let e = client_command(&srv, &BTreeMap::new(), "http").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "the load generator `cabin-no-such-wrk` of http is not installed; help: apt-get install wrk"
        );
        let srv: ServerSpec = toml::from_str("client = [\"sh\", \"-c\", \"{port}\"]").expect("spec");
        let vars = BTreeMap::from([("port".to_string(), "8080".to_string())]);
        let (argv, path) = client_command(&srv, &vars, "t").expect("sh is on PATH");
        assert_eq!(argv, vec!["sh", "-c", "8080"]);
        assert!(path.is_absolute(), "{}", path.display());
    }

    #[test]
    fn a_free_port_is_bindable() {
        let p = free_port().expect("port");
        assert_ne!(p, 0);
        drop(TcpListener::bind(("127.0.0.1", p)));
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
