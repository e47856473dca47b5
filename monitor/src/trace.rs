//! Trace and audit output of a confined run.
//!
//! A [`Tracer`] is what the monitor's service calls: [`Tracer::start`] once,
//! [`Tracer::syscall`] for every call (served locally, forwarded, trapped or
//! refused), [`Tracer::limit`] and [`Tracer::violation`] when those happen,
//! and [`Tracer::exit`] once at the end. It writes up to three streams:
//!
//! - `--trace[=FILE]`: one strace-like text line per call (stderr without FILE);
//! - `--trace-format jsonl`: the same stream as JSON lines instead (a `start`
//!   record, one `syscall` record per call, `limit`/`violation` records, an
//!   `exit` record with a summary) — never mixed with human text;
//! - `--audit FILE`: JSON lines of the same schema, but only refusals, kills,
//!   complain-mode allowances, limit hits and protocol violations, framed by
//!   `start` and `exit`; size-capped, and reaching the cap writes one
//!   `audit-truncated` record.
//!
//! A call refused by the path rules (`--allow-read`/`--allow-write`,
//! `[paths]`) is a `denied` record like a policy denial, its rule
//! `[paths] PATH: why`; calls with a path argument carry it in `path`
//! ([`record::path_text`]: escaped, at most 256 bytes of it).
//!
//! The schema is docs/trace-schema.json. Writing never fails the run: the
//! first I/O error is kept ([`Tracer::error`]) and that stream stops.
//! This module never reads program memory; the caller passes what it knows.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

pub use cabin_policy::trace::{decode, record};
pub use cabin_policy::trace::{ExitInfo, LimitHit, LimitKind, Served, StartInfo, SyscallRecord};

use cabin_policy::per_call::CallCounts;

/// Default size cap of the audit log (`--audit-max-bytes`).
pub const DEFAULT_AUDIT_CAP: u64 = 16 << 20;

/// Bytes kept free under the cap for the `audit-truncated` and `exit` records.
const AUDIT_RESERVE: u64 = 2048;

/// Text or JSON lines for `--trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceFormat {
    /// strace-like lines.
    #[default]
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// What `cabinc run` asks for (the `--trace`, `--trace-format`, `--audit`
/// options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceOptions {
    /// `None`: no trace; `Some(None)`: trace to stderr; `Some(Some(f))`: to `f`.
    pub trace: Option<Option<PathBuf>>,
    /// Format of the trace.
    pub format: TraceFormat,
    /// Where to write the audit log.
    pub audit: Option<PathBuf>,
    /// Size cap of the audit log in bytes (0: [`DEFAULT_AUDIT_CAP`]).
    pub audit_cap: u64,
}

/// Counters for the `exit` record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// All calls.
    pub total: u64,
    /// Per [`Served`] kind.
    pub local: u64,
    /// Forwarded over the ring.
    pub forwarded: u64,
    /// Trapped (slow path).
    pub trapped: u64,
    /// Denied by the policy.
    pub denied: u64,
    /// Killed by the policy.
    pub killed: u64,
    /// Allowed only because of complain mode.
    pub complained: u64,
    /// Calls returning an error.
    pub errors: u64,
    /// Per call number (numbers from 512 up share one counter, shown as
    /// `syscall_other`).
    pub per_syscall: CallCounts,
    /// Limit hits.
    pub limits: u64,
    /// Protocol violations.
    pub violations: u64,
}

impl Summary {
    fn add(&mut self, r: &SyscallRecord) {
        if r.served == Served::Local && r.ret.is_none() {
            // A locally served call the policy checked first
            // (`Gate::checked`, no result): the libos's counts, added at
            // the end, hold it.
            if r.complain {
                self.complained += 1;
            }
            return;
        }
        self.total += 1;
        match r.served {
            Served::Local => self.local += 1,
            Served::Forwarded => self.forwarded += 1,
            Served::Trapped => self.trapped += 1,
            Served::Denied => self.denied += 1,
            Served::Killed => self.killed += 1,
        }
        if r.complain {
            self.complained += 1;
        }
        if matches!(r.ret, Some(v) if (-4095..0).contains(&v)) {
            self.errors += 1;
        }
        self.per_syscall.add(r.nr, 1);
    }

    fn to_json(&self) -> Value {
        json!({
            "total": self.total,
            "local": self.local,
            "forwarded": self.forwarded,
            "trapped": self.trapped,
            "denied": self.denied,
            "killed": self.killed,
            "complained": self.complained,
            "errors": self.errors,
            "limits": self.limits,
            "violations": self.violations,
            "per_syscall": self.per_syscall.named().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// A size-capped JSON-lines audit log.
#[derive(Debug)]
pub struct AuditLog<W: Write> {
    out: W,
    written: u64,
    cap: u64,
    truncated: bool,
    dropped: u64,
}

impl<W: Write> AuditLog<W> {
    /// A log writing to `out`, at most `cap` bytes in all (at least
    /// `AUDIT_RESERVE` (2 KiB) twice, so the end records fit).
    pub fn new(out: W, cap: u64) -> AuditLog<W> {
        AuditLog { out, written: 0, cap: cap.max(2 * AUDIT_RESERVE), truncated: false, dropped: 0 }
    }

    fn put(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        // Audit records are rare and meant to survive a crash of the monitor: flush each.
        self.out.flush()?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    /// Writes one event record, or — past the cap — counts it as dropped
    /// (writing the `audit-truncated` record the first time).
    pub fn record(&mut self, v: &Value, time_ns: u64) -> io::Result<()> {
        let line = v.to_string();
        if self.truncated {
            self.dropped += 1;
            return Ok(());
        }
        if self.written + line.len() as u64 + 1 > self.cap - AUDIT_RESERVE {
            self.truncated = true;
            self.dropped += 1;
            let t = json!({
                "type": "audit-truncated",
                "t_ns": time_ns,
                "cap_bytes": self.cap,
                "message": format!(
                    "audit log reached its cap of {} bytes; later events are counted in the exit record, not written",
                    self.cap
                ),
            });
            return self.put(t.to_string().as_bytes());
        }
        self.put(line.as_bytes())
    }

    /// Writes a framing record (`start`, `exit`), which the reserve keeps room for.
    pub fn frame(&mut self, v: &Value) -> io::Result<()> {
        let line = v.to_string();
        if self.written + line.len() as u64 + 1 > self.cap {
            self.dropped += 1;
            return Ok(());
        }
        self.put(line.as_bytes())
    }

    /// Past the cap, counts an event as dropped without building it (true);
    /// before the cap, false: the caller writes it with [`AuditLog::record`].
    pub fn drop_if_full(&mut self) -> bool {
        if self.truncated {
            self.dropped += 1;
        }
        self.truncated
    }

    /// Events not written because of the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

type Sink = Box<dyn Write + Send>;

/// Writes the trace and audit streams of one run (see the module docs).
pub struct Tracer {
    text: Option<Sink>,
    jsonl: Option<Sink>,
    audit: Option<AuditLog<Sink>>,
    seq: u64,
    summary: Summary,
    error: Option<io::Error>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("text", &self.text.is_some())
            .field("jsonl", &self.jsonl.is_some())
            .field("audit", &self.audit.is_some())
            .field("seq", &self.seq)
            .finish()
    }
}

impl Default for Tracer {
    fn default() -> Tracer {
        Tracer::disabled()
    }
}

impl Tracer {
    /// A tracer that writes nothing (but still counts).
    pub fn disabled() -> Tracer {
        Tracer { text: None, jsonl: None, audit: None, seq: 0, summary: Summary::default(), error: None }
    }

    /// Opens the files `opts` names (created or truncated).
    pub fn open(opts: &TraceOptions) -> io::Result<Tracer> {
        let mut t = Tracer::disabled();
        if let Some(dest) = &opts.trace {
            let sink: Sink = match dest {
                // `--trace=-`: stdout (shared with the program's own output).
                Some(path) if path.as_os_str() == "-" => Box::new(io::stdout()),
                Some(path) => Box::new(BufWriter::new(File::create(path)?)),
                None => Box::new(io::stderr()),
            };
            match opts.format {
                TraceFormat::Text => t.text = Some(sink),
                TraceFormat::Jsonl => t.jsonl = Some(sink),
            }
        }
        if let Some(path) = &opts.audit {
            let cap = if opts.audit_cap == 0 { DEFAULT_AUDIT_CAP } else { opts.audit_cap };
            let sink: Sink =
                if path.as_os_str() == "-" { Box::new(io::stdout()) } else { Box::new(File::create(path)?) };
            t.audit = Some(AuditLog::new(sink, cap));
        }
        Ok(t)
    }

    /// Sends the text trace to `w`.
    pub fn with_text(mut self, w: Sink) -> Tracer {
        self.text = Some(w);
        self
    }

    /// Sends the JSON-lines trace to `w`.
    pub fn with_jsonl(mut self, w: Sink) -> Tracer {
        self.jsonl = Some(w);
        self
    }

    /// Sends the audit log to `w`, capped at `cap` bytes.
    pub fn with_audit(mut self, w: Sink, cap: u64) -> Tracer {
        self.audit = Some(AuditLog::new(w, cap));
        self
    }

    /// Whether anything is written: when not, the caller may skip building
    /// records for allowed calls (refusals should still be passed, for the
    /// summary).
    pub fn is_active(&self) -> bool {
        self.text.is_some() || self.jsonl.is_some() || self.audit.is_some()
    }

    /// Whether a full per-call trace is on (text or jsonl).
    pub fn traces_every_call(&self) -> bool {
        self.text.is_some() || self.jsonl.is_some()
    }

    /// The first write error, if any stream failed.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// The counters so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn keep(&mut self, r: io::Result<()>, which: u8) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(e);
            }
            match which {
                0 => self.text = None,
                1 => self.jsonl = None,
                _ => self.audit = None,
            }
        }
    }

    /// One line in one write, so lines on a shared stderr are not torn.
    fn line(w: &mut Sink, s: &str) -> io::Result<()> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(b'\n');
        w.write_all(&b)
    }

    /// Adds calls the libos served locally, which the monitor only learns as
    /// counts at the end (call before [`Tracer::exit`]).
    pub fn add_local_counts(&mut self, counts: impl IntoIterator<Item = (u64, u64)>) {
        for (nr, n) in counts {
            if n == 0 {
                continue;
            }
            self.summary.total += n;
            self.summary.local += n;
            self.summary.per_syscall.add(nr, n);
        }
    }

    /// The `start` record.
    pub fn start(&mut self, info: &StartInfo) {
        let v = record::start_json(info);
        if let Some(w) = self.text.as_mut() {
            let r = Tracer::line(
                w,
                &format!(
                    "cabin trace: {} on the {} backend{}",
                    info.image,
                    info.backend,
                    info.policy_digest.as_ref().map(|d| format!(", policy {d}")).unwrap_or_default()
                ),
            );
            self.keep(r, 0);
        }
        if let Some(w) = self.jsonl.as_mut() {
            let r = Tracer::line(w, &v.to_string());
            self.keep(r, 1);
        }
        if let Some(a) = self.audit.as_mut() {
            let r = a.frame(&v);
            self.keep(r, 2);
        }
    }

    /// One system call.
    pub fn syscall(&mut self, rec: &SyscallRecord) {
        self.summary.add(rec);
        self.seq += 1;
        if let Some(w) = self.text.as_mut() {
            let r = Tracer::line(w, &record::syscall_text(rec));
            self.keep(r, 0);
        }
        let mut audit = rec.is_audit_event() && self.audit.is_some();
        if audit && self.jsonl.is_none() && self.audit.as_mut().is_some_and(AuditLog::drop_if_full) {
            // Past the audit cap the record is only counted: not built.
            audit = false;
        }
        if self.jsonl.is_some() || audit {
            let v = record::syscall_json(self.seq, rec);
            if let Some(w) = self.jsonl.as_mut() {
                let r = Tracer::line(w, &v.to_string());
                self.keep(r, 1);
            }
            if audit {
                if let Some(a) = self.audit.as_mut() {
                    let r = a.record(&v, rec.time_ns);
                    self.keep(r, 2);
                }
            }
        }
    }

    /// A limit was reached.
    pub fn limit(&mut self, hit: &LimitHit) {
        self.summary.limits += 1;
        self.event(&record::limit_json(hit), hit.time_ns, || {
            format!(
                "--- limit {} reached: {} of {} ({}) ---",
                hit.limit.as_str(),
                hit.value,
                hit.max,
                hit.action
            )
        });
    }

    /// The program broke the ring protocol (or another contract).
    pub fn violation(&mut self, time_ns: u64, message: &str) {
        self.summary.violations += 1;
        self.event(&record::violation_json(time_ns, message), time_ns, || {
            format!("--- protocol violation: {message} ---")
        });
    }

    fn event(&mut self, v: &Value, time_ns: u64, text: impl FnOnce() -> String) {
        if let Some(w) = self.text.as_mut() {
            let r = Tracer::line(w, &text());
            self.keep(r, 0);
        }
        if let Some(w) = self.jsonl.as_mut() {
            let r = Tracer::line(w, &v.to_string());
            self.keep(r, 1);
        }
        if let Some(a) = self.audit.as_mut() {
            let r = a.record(v, time_ns);
            self.keep(r, 2);
        }
    }

    /// The `exit` record; flushes every stream.
    pub fn exit(&mut self, info: &ExitInfo) {
        let mut v = json!({
            "type": "exit",
            "t_ns": info.time_ns,
            "exit_code": info.exit_code,
            "reason": info.reason,
            "summary": self.summary.to_json(),
        });
        if let Some(m) = &info.message {
            v["message"] = json!(m);
        }
        if let Some(w) = self.text.as_mut() {
            let s = &self.summary;
            let r = Tracer::line(
                w,
                &format!(
                    "+++ {} with {} ({}): {} calls: {} local, {} forwarded, {} trapped, {} denied, {} killed +++",
                    info.reason,
                    info.exit_code,
                    info.message.as_deref().unwrap_or("-"),
                    s.total,
                    s.local,
                    s.forwarded,
                    s.trapped,
                    s.denied,
                    s.killed
                ),
            )
            .and_then(|()| w.flush());
            self.keep(r, 0);
        }
        if let Some(w) = self.jsonl.as_mut() {
            let r = Tracer::line(w, &v.to_string()).and_then(|()| w.flush());
            self.keep(r, 1);
        }
        if let Some(a) = self.audit.as_mut() {
            let mut v = v.clone();
            v["audit_dropped"] = json!(a.dropped());
            let r = a.frame(&v);
            self.keep(r, 2);
        }
    }
}
