//! The gate in front of the syscall service: one object a ring worker (or a
//! trap handler) calls around every forwarded call. It asks the policy, checks
//! the limits, reports a refusal once on stderr, and feeds the [`Tracer`].
//!
//! ```ignore
//! match gate.admit(nr, &args, trapped, site, Some(open_fds)) {
//!     Admit::Serve(ticket) => {
//!         let ret = service.handle(mem, nr, args)?;
//!         // The service's note turns a path-rule refusal into a denial record.
//!         if let Some(end) = gate.served_with(ticket, ret, service.take_note()) { /* stop: end */ }
//!         ret
//!     }
//!     Admit::Return(ret) => ret,                  // refused: -errno, not served
//!     Admit::Stop(end) => { /* stop the program with end.exit_code, end.message */ }
//! }
//! ```
//!
//! With no policy and no trace, `admit` is a branch and `served` a return.

use std::time::Instant;

use cabin_policy::limits::{self, LimitCheck, LimitState};
use cabin_policy::note::CallNote;
use cabin_policy::trace::record::path_text;
use cabin_policy::trace::{ExitInfo, LimitHit, Served, StartInfo, SyscallRecord};
use cabin_policy::{
    denial, CompiledPolicy, Decision, DenialReporter, Limits, Policy, KILL_EXIT_CODE, LIMIT_EXIT_CODE,
};

use crate::config::{signal_name, EndReason, GateConfig};
use crate::trace::Tracer;

/// The `exit` record's reason and message for a program that ended as
/// `end`, or for the policy/limit `stop` that caused its end.
pub fn exit_words(end: &EndReason, stop: Option<&Stop>) -> (&'static str, Option<String>) {
    match (end, stop) {
        (_, Some(s)) => (s.reason, Some(s.message.clone())),
        (EndReason::Exited(_), None) => ("exited", None),
        (EndReason::Signal { signo, .. }, None) => ("signal", Some(signal_name(*signo))),
        (EndReason::ProtocolViolation(m), None) => ("protocol-violation", Some(m.clone())),
    }
}

/// Why the gate wants the program stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Exit status for `cabinc run`: 159 for a kill, 137 for a limit.
    pub exit_code: i32,
    /// "killed" or "limit" (the `exit` record's reason).
    pub reason: &'static str,
    /// The message (already printed on stderr, unless printing is off).
    pub message: String,
}

/// A call admitted for serving; hand it back to [`Gate::served`].
#[derive(Debug)]
#[must_use]
pub struct Ticket {
    nr: u64,
    args: [u64; 6],
    served: Served,
    site: Option<u64>,
    start: Option<Instant>,
    complain: Option<String>,
}

/// What to do with one call.
#[derive(Debug)]
pub enum Admit {
    /// Serve it, then call [`Gate::served`].
    Serve(Ticket),
    /// Do not serve it; return this value to the program.
    Return(i64),
    /// Do not serve it; stop the program.
    Stop(Stop),
}

/// A site address asked for at most once, when first needed.
struct LazySite<F> {
    ask: Option<F>,
    site: Option<u64>,
}

impl<F: FnOnce() -> Option<u64>> LazySite<F> {
    fn new(ask: F) -> Self {
        LazySite { ask: Some(ask), site: None }
    }

    fn get(&mut self) -> Option<u64> {
        if let Some(ask) = self.ask.take() {
            self.site = ask();
        }
        self.site
    }
}

/// Policy, limits, denial messages and trace, for one run.
#[derive(Debug)]
pub struct Gate {
    policy: Option<CompiledPolicy>,
    policy_file: String,
    reporter: DenialReporter,
    limits: LimitState,
    tracer: Tracer,
    t0: Instant,
    print: bool,
    /// Print a hint at the first path refusal (then false: once per run).
    path_hint: bool,
    /// Messages printed (or, with printing off, that would have been):
    /// bounded, as the messages are (once per call number).
    pub messages: Vec<String>,
    /// The (virtual) pid of the process whose call is being decided: the
    /// records' `tid` (its main thread's id; 0: not known, `tid` 1).
    caller: u32,
}

impl Gate {
    /// A gate for `policy` (none: everything is served) and its limits,
    /// writing to `tracer`. Messages go to stderr.
    pub fn new(policy: Option<CompiledPolicy>, limits: &Limits, tracer: Tracer) -> Gate {
        let policy_file = policy.as_ref().map(|p| p.source().to_string()).unwrap_or_default();
        Gate {
            policy,
            policy_file,
            reporter: DenialReporter::new(),
            limits: LimitState::new(limits),
            tracer,
            t0: Instant::now(),
            print: true,
            path_hint: false,
            messages: Vec::new(),
            caller: 0,
        }
    }

    /// The process whose call is decided next (the tree shares one gate):
    /// its pid goes into the records (`tid`). Set under the same lock as
    /// the decision it names.
    pub fn set_caller(&mut self, pid: u32) {
        self.caller = pid;
    }

    /// The `tid` of a record: the caller's pid, 1 when not known.
    fn tid(&self) -> u32 {
        if self.caller == 0 {
            1
        } else {
            self.caller
        }
    }

    /// Print one hint at the first call the path rules refuse (`cabinc run`
    /// unless `-q`; see [`crate::config::RunConfig::path_hint`]).
    pub fn with_path_hint(mut self, on: bool) -> Gate {
        self.path_hint = on;
        self
    }

    /// Opens the trace and audit files of `cfg`, builds the gate and writes
    /// the `start` record with `backend` ("process", "kvm").
    pub fn open(cfg: &GateConfig, backend: &str) -> std::io::Result<Gate> {
        let tracer = Tracer::open(&cfg.trace)?;
        let limits = cfg.policy.as_ref().map(|p| p.limits.clone()).unwrap_or_default();
        let mut g = Gate::new(cfg.policy.as_ref().map(Policy::compile), &limits, tracer);
        let mut start = cfg.start.clone();
        start.backend = backend.to_string();
        g.start(&start);
        Ok(g)
    }

    /// Whether [`Gate::admit`] needs the open-descriptor count (an
    /// `open-files` limit is set); otherwise pass `None` and save the count.
    pub fn counts_fds(&self) -> bool {
        self.limits.limits().open_files.is_some()
    }

    /// The policy's limits (the backend enforces memory, CPU and wall time).
    pub fn limits(&self) -> &Limits {
        self.limits.limits()
    }

    /// Keep messages in [`Gate::messages`] instead of printing them (tests).
    pub fn quiet(mut self) -> Gate {
        self.print = false;
        self
    }

    /// The tracer (for its summary or error).
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn say(&mut self, m: String) {
        if self.print {
            eprintln!("{m}");
        }
        self.messages.push(m);
    }

    /// Writes the `start` record and starts the clock.
    pub fn start(&mut self, info: &StartInfo) {
        self.t0 = Instant::now();
        let mut info = info.clone();
        if let Some(p) = &self.policy {
            info.policy_digest.get_or_insert_with(|| p.digest().to_string());
            info.policy_mode.get_or_insert_with(|| p.mode().as_str().to_string());
        }
        self.tracer.start(&info);
    }

    fn limit_stop(&mut self, hit: LimitHit) -> Stop {
        let message = limits::message(&hit);
        self.tracer.limit(&hit);
        self.say(message.clone());
        Stop { exit_code: LIMIT_EXIT_CODE, reason: "limit", message }
    }

    /// Decides call `nr` (see the module docs). `trapped`: it came through
    /// the slow path. `site`: the program's call address, when known.
    /// `open_fds`: descriptors the program holds, when the caller knows.
    pub fn admit(
        &mut self,
        nr: u64,
        args: &[u64; 6],
        trapped: bool,
        site: Option<u64>,
        open_fds: Option<u64>,
    ) -> Admit {
        self.admit_lazy(nr, args, trapped, || site, open_fds)
    }

    /// [`Gate::admit`], asking for the site only when a message or a trace
    /// record needs it (a refusal, or an active trace): `site` is called at
    /// most once, and not at all for a plain allowed call.
    pub fn admit_lazy(
        &mut self,
        nr: u64,
        args: &[u64; 6],
        trapped: bool,
        site: impl FnOnce() -> Option<u64>,
        open_fds: Option<u64>,
    ) -> Admit {
        let mut site = LazySite::new(site);
        let served = if trapped { Served::Trapped } else { Served::Forwarded };
        let mut complain = None;
        let refusal = match &self.policy {
            Some(p) => {
                let d = p.decide(nr, args);
                if d == Decision::Allow {
                    None
                } else {
                    let v = p.verdict(nr, args);
                    let report = self.reporter.report(&self.policy_file, nr, args, site.get(), &v);
                    // The one-line reason a kill ends with (built only for a kill).
                    let first_line = if d == Decision::Kill {
                        denial::message(&self.policy_file, nr, args, site.get(), &v)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    } else {
                        String::new()
                    };
                    Some((d, v.origin.describe(), report, first_line))
                }
            }
            None => None,
        };
        if let Some((d, rule, report, first_line)) = refusal {
            if let Some(m) = report {
                self.say(m);
            }
            let mut rec = SyscallRecord::new(nr, *args, 0, served);
            rec.tid = self.tid();
            rec.time_ns = self.now();
            rec.site = site.get();
            rec.rule = Some(rule.clone());
            match d {
                Decision::Deny(e) => {
                    rec.served = Served::Denied;
                    rec.ret = Some(-i64::from(e));
                    self.tracer.syscall(&rec);
                    return Admit::Return(-i64::from(e));
                }
                Decision::Kill => {
                    rec.served = Served::Killed;
                    rec.ret = None;
                    self.tracer.syscall(&rec);
                    return Admit::Stop(Stop {
                        exit_code: KILL_EXIT_CODE,
                        reason: "killed",
                        message: first_line,
                    });
                }
                Decision::Complain(_) => complain = Some(rule),
                Decision::Allow => {}
            }
        }
        if !self.limits.limits().is_empty() {
            let time_ns = self.now();
            match self.limits.before(time_ns, nr, args, open_fds) {
                LimitCheck::Ok => {}
                LimitCheck::Stop(hit) => return Admit::Stop(self.limit_stop(hit)),
            }
        }
        // With any output on, every call is timed and counted (the exit summary covers them all).
        let start = (self.tracer.is_active() || complain.is_some()).then(Instant::now);
        let site = if start.is_some() { site.get() } else { None };
        Admit::Serve(Ticket { nr, args: *args, served, site, start, complain })
    }

    /// The calls the libos serves inside the domain that the policy does
    /// not plainly allow (none without a policy): the backend writes them
    /// into the boot page, and the libos has the monitor decide each one
    /// ([`cabin_abi::ring::SUB_CHECK`]). `close` too when the policy may
    /// refuse it: the libos answers a `close` of a descriptor it saw opened
    /// before the monitor served it (docs/syscalls.md, "close"), which is
    /// only right while the monitor's answer is sure to be 0.
    pub fn check_local(&self) -> cabin_abi::syscalls::CallSet {
        let Some(policy) = self.policy.as_ref() else { return cabin_abi::syscalls::CallSet::EMPTY };
        let mut set = policy.check_local();
        if policy.may_refuse(cabin_abi::syscalls::nr::close) {
            set.insert(cabin_abi::syscalls::nr::close);
        }
        set
    }

    /// A check-only call ([`cabin_abi::ring::SUB_CHECK`]) that [`Gate::admit`]
    /// let through: the libos serves it inside the domain, so there is no
    /// result to record. Written to the trace (as `local`, without `ret`)
    /// when one is active or the policy complained; not counted in the exit
    /// summary, which counts the libos's locally served calls itself.
    pub fn checked(&mut self, t: Ticket) {
        if let Some(start) = t.start {
            let mut rec = SyscallRecord::new(t.nr, t.args, 0, Served::Local);
            rec.tid = self.tid();
            rec.ret = None;
            rec.duration_ns = start.elapsed().as_nanos() as u64;
            rec.time_ns = self.now().saturating_sub(rec.duration_ns);
            rec.site = t.site;
            rec.complain = t.complain.is_some();
            rec.rule = t.complain;
            self.tracer.syscall(&rec);
        }
    }

    /// Records a served call and its result; `Some` when a limit stopped
    /// the program instead (the service found a write limit hit).
    pub fn served(&mut self, t: Ticket, ret: i64) -> Option<Stop> {
        self.served_with(t, ret, CallNote::default())
    }

    /// Whether connected sockets may be used natively by the program
    /// (docs/networking.md, "The direct data plane"): those calls never
    /// reach the gate, so only when nothing would have been decided,
    /// recorded or counted for them: no trace or audit stream, no limits,
    /// and a policy (if any) that allows, whatever the arguments, every
    /// call of the program's the libos then makes natively. (The libos's
    /// own native `close`, `dup3` and `fcntl(F_GETFL)` on its copies are
    /// no calls of the program's: its `close` and the `fcntl` that asks
    /// for a socket are forwarded and decided as before.)
    pub fn allows_native_sockets(&self) -> bool {
        const NATIVE: [i64; 6] = [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
        ];
        !self.tracer.is_active()
            && self.limits.limits().is_empty()
            && self.policy.as_ref().is_none_or(|p| NATIVE.iter().all(|&nr| !p.may_refuse(nr as u64)))
    }

    /// Whether the service should note every call's path argument
    /// ([`crate::service::Service::set_record_paths`]): only when a trace
    /// or audit stream is written.
    pub fn wants_paths(&self) -> bool {
        self.tracer.is_active()
    }

    /// As [`Gate::served`], with what the service noticed: its path
    /// argument (shown in the record); when the path rules refused the
    /// call, the refusal, which makes the record `denied` by a `[paths]`
    /// rule, and so an audit event (exactly one per refused call); when a
    /// write limit stopped it ([`cabin_policy::limits::WriteLimits`]), the
    /// hit, which stops the program (`Some`).
    pub fn served_with(&mut self, t: Ticket, ret: i64, note: CallNote) -> Option<Stop> {
        if let Some(refusal) = &note.refusal {
            // Not reported on stderr: programs meet EACCES on paths as an
            // ordinary error (probing for optional files), so a message would
            // be noise; the trace, audit log and stats keep it.
            let mut rec = SyscallRecord::new(t.nr, t.args, ret, Served::Denied);
            rec.tid = self.tid();
            rec.duration_ns = t.start.map_or(0, |s| s.elapsed().as_nanos() as u64);
            rec.time_ns = self.now().saturating_sub(rec.duration_ns);
            rec.site = t.site;
            rec.rule = Some(refusal.rule());
            rec.path = note.path.as_deref().map(path_text);
            rec.host_path = note.host_path.as_deref().map(path_text);
            self.tracer.syscall(&rec);
            if self.path_hint {
                // Once per run: the first refusal is the one a user needs
                // to see to fix the command line; the rest would be noise.
                self.path_hint = false;
                let hint = path_hint(refusal, writes(t.nr, &t.args));
                self.say(hint);
            }
        } else if let Some(rule) = note.network {
            // A network refusal: a `denied` record naming the address (and
            // so an audit event), and once per run a hint on stderr.
            let mut rec = SyscallRecord::new(t.nr, t.args, ret, Served::Denied);
            rec.duration_ns = t.start.map_or(0, |s| s.elapsed().as_nanos() as u64);
            rec.time_ns = self.now().saturating_sub(rec.duration_ns);
            rec.site = t.site;
            rec.path = note.path.as_deref().map(path_text);
            rec.host_path = note.host_path.as_deref().map(path_text);
            rec.addr = note.addr;
            if self.path_hint {
                self.path_hint = false;
                self.say(format!(
                    "cabin: denied {rule}; help: allow it with --allow-connect/--allow-listen or the policy's [network] section"
                ));
            }
            rec.rule = Some(rule);
            self.tracer.syscall(&rec);
        } else if let Some(hit) = note.limit {
            // A write limit the service applied before the call: not served.
            let mut rec = SyscallRecord::new(t.nr, t.args, ret, Served::Denied);
            rec.tid = self.tid();
            rec.time_ns = self.now();
            rec.site = t.site;
            rec.rule = Some(format!("[limits] {}", hit.limit.as_str()));
            rec.path = note.path.as_deref().map(path_text);
            rec.host_path = note.host_path.as_deref().map(path_text);
            self.tracer.syscall(&rec);
            return Some(self.limit_stop(LimitHit { time_ns: rec.time_ns, ..hit }));
        } else if let Some(start) = t.start {
            let mut rec = SyscallRecord::new(t.nr, t.args, ret, t.served);
            rec.tid = self.tid();
            rec.duration_ns = start.elapsed().as_nanos() as u64;
            rec.time_ns = self.now().saturating_sub(rec.duration_ns);
            rec.site = t.site;
            rec.complain = t.complain.is_some();
            rec.rule = t.complain;
            rec.path = note.path.as_deref().map(path_text);
            rec.host_path = note.host_path.as_deref().map(path_text);
            rec.addr = note.addr;
            self.tracer.syscall(&rec);
        }
        None
    }

    /// A limit the backend enforces (memory, CPU or wall time) was hit.
    pub fn limit_hit(&mut self, hit: &LimitHit) -> Stop {
        self.limit_stop(hit.clone())
    }

    /// The program broke the ring protocol.
    pub fn violation(&mut self, message: &str) {
        let t = self.now();
        self.tracer.violation(t, message);
    }

    /// Adds the libos's counts of locally served calls (`(number, count)`)
    /// to the exit summary.
    pub fn local_counts(&mut self, counts: impl IntoIterator<Item = (u64, u64)>) {
        self.tracer.add_local_counts(counts);
    }

    /// Writes the `exit` record and flushes; reports a trace write error.
    pub fn finish(&mut self, exit_code: i32, reason: &str, message: Option<String>) {
        let info = ExitInfo { exit_code, reason: reason.to_string(), message, time_ns: self.now() };
        self.tracer.exit(&info);
        if let Some(e) = self.tracer.error() {
            let m = format!("cabin: writing the trace or audit log failed: {e}; the output is incomplete");
            self.say(m);
        }
    }
}

/// Whether call `nr` with `args` changes what its path names (open for
/// writing, create, remove, rename, ...), for the path hint's wording.
fn writes(nr: u64, args: &[u64; 6]) -> bool {
    use cabin_abi::syscalls::nr as n;
    const O_ACCMODE: u64 = 3;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    let open_writes = |flags: u64| flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0;
    match nr {
        n::open => open_writes(args[1]),
        n::openat => open_writes(args[2]),
        n::creat
        | n::mkdir
        | n::mkdirat
        | n::unlink
        | n::unlinkat
        | n::rmdir
        | n::rename
        | n::renameat
        | n::renameat2
        | n::link
        | n::linkat
        | n::symlink
        | n::symlinkat
        | n::truncate
        | n::chmod
        | n::fchmodat
        | n::utimensat
        | n::mknod
        | n::mknodat
        | n::chown
        | n::lchown
        | n::fchownat => true,
        _ => false,
    }
}

/// The one-line hint printed at the first path refusal of a run.
fn path_hint(r: &cabin_policy::note::PathRefusal, writes: bool) -> String {
    use cabin_policy::note::Refusal;
    let path = path_text(&r.resolved);
    // The directory to suggest: the refused path's parent (what the program
    // looked for may not exist yet). The path is the monitor's resolved,
    // absolute one; `path_text` escapes whatever bytes the program chose.
    let dir = match r.resolved.iter().rposition(|&b| b == b'/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path_text(&r.resolved[..i]),
    };
    match (r.why, writes) {
        (Refusal::Outside, false) => {
            format!("cabin: denied read of {path}: outside --allow-read; add --allow-read {dir}")
        }
        (Refusal::Outside, true) => {
            format!("cabin: denied write of {path}: outside --allow-write; add --allow-write {dir}")
        }
        (Refusal::ReadOnly, _) => {
            format!("cabin: denied write of {path}: under an --allow-read tree; add --allow-write {dir}")
        }
        (why, _) => format!("cabin: denied access to {path}: {}", why.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_policy::{names, Policy};

    fn nr(n: &str) -> u64 {
        names::number(n).unwrap_or(u64::MAX)
    }

    fn gate(text: &str) -> Gate {
        let p = Policy::parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
        let limits = p.limits.clone();
        Gate::new(Some(p.compile()), &limits, Tracer::disabled()).quiet()
    }

    #[test]
    fn serves_denies_kills_and_counts() {
        let mut g = gate(
            "version = 1\n[syscalls]\nallow = [\"read\", \"write\"]\nkill = [\"execve\"]\n[limits]\nbytes-written = 10\n",
        );
        let Admit::Serve(t) = g.admit(nr("read"), &[0; 6], false, None, None) else { panic!("read") };
        assert!(g.served(t, 5).is_none());
        assert!(matches!(g.admit(nr("openat"), &[0; 6], true, Some(0x401000), None), Admit::Return(-38)));
        assert!(matches!(g.admit(nr("openat"), &[0; 6], true, Some(0x401000), None), Admit::Return(-38)));
        assert_eq!(g.messages.len(), 1, "once per call ({:?})", g.messages);
        assert!(g.messages[0].contains("openat (system call 257) at 0x401000"));
        let Admit::Stop(s) = g.admit(nr("execve"), &[0; 6], false, None, None) else { panic!("execve") };
        assert_eq!((s.exit_code, s.reason), (159, "killed"));
        assert!(g.messages[1].starts_with("cabin: policy killed the program for execve"), "{:?}", g.messages);
        let Admit::Serve(t) = g.admit(nr("write"), &[1, 0, 8, 0, 0, 0], false, None, None) else {
            panic!("write")
        };
        assert!(g.served(t, 8).is_none());
        // The service found the write limit hit before the call.
        let Admit::Serve(t) = g.admit(nr("write"), &[1, 0, 8, 0, 0, 0], false, None, None) else {
            panic!("write")
        };
        let mut w = cabin_policy::limits::WriteLimits::new(g.limits()).expect("bytes-written");
        w.wrote(10);
        let hit = w.allow("write", 8, None).expect_err("nothing left");
        let note = CallNote { limit: Some(hit), ..CallNote::default() };
        let s = g.served_with(t, -27, note).expect("stopped");
        assert_eq!((s.exit_code, s.reason), (137, "limit"));
        assert!(s.message.contains("bytes-written"));
        // The write the limit stopped was not served: a denied record too.
        let sum = g.tracer().summary();
        assert_eq!((sum.denied, sum.killed, sum.limits), (3, 1, 1));
    }

    #[test]
    fn complain_mode_serves() {
        let mut g = gate("version = 1\nmode = \"complain\"\n[syscalls]\nallow = [\"read\"]\n");
        let Admit::Serve(t) = g.admit(nr("socket"), &[0; 6], false, None, None) else {
            panic!("complain serves")
        };
        assert!(g.served(t, 3).is_none());
        assert!(g.messages[0].contains("would deny (complain mode, allowed)"), "{:?}", g.messages);
        assert_eq!(g.tracer().summary().complained, 1);
    }

    #[test]
    fn site_is_asked_for_only_when_needed() {
        let mut g = gate("version = 1\n[syscalls]\nallow = [\"read\"]\n");
        // Allowed, no trace: the site is never read.
        let never = || -> Option<u64> { panic!("site read for an allowed call") };
        let Admit::Serve(t) = g.admit_lazy(nr("read"), &[0; 6], false, never, None) else { panic!("read") };
        assert!(g.served(t, 0).is_none());
        // Refused: read once, shown in the message.
        let mut asked = 0;
        let once = || {
            asked += 1;
            Some(0x40_1234)
        };
        assert!(matches!(g.admit_lazy(nr("openat"), &[0; 6], false, once, None), Admit::Return(-38)));
        assert_eq!(asked, 1);
        assert!(g.messages[0].contains("at 0x401234"), "{:?}", g.messages);
    }

    #[test]
    fn distinct_numbers_say_little() {
        // A deny-by-default policy meets a million numbers of the program's
        // choosing: stderr gets one message for them, the summary one
        // counter for all of them. (Write limits are the service's.)
        let mut g = gate("version = 1\n[syscalls]\nallow = [\"ftruncate\"]\n");
        for i in 0..1_000_000u64 {
            assert!(matches!(g.admit(100_000 + i, &[0; 6], false, None, None), Admit::Return(-38)));
        }
        assert!(matches!(g.admit(u64::MAX, &[0; 6], false, None, None), Admit::Return(-38)));
        assert_eq!(g.messages.len(), 1, "{:?}", g.messages);
        assert!(g.messages[0].contains("(system call 100000)"), "{}", g.messages[0]);
        assert!(g.messages[0].contains("not an x86-64 system call number"), "{}", g.messages[0]);
        let sum = g.tracer().summary();
        assert_eq!((sum.denied, sum.limits), (1_000_001, 0));
        assert_eq!(sum.per_syscall.other(), 1_000_001);
    }

    #[test]
    fn no_policy_serves_everything() {
        let mut g = Gate::new(None, &Limits::default(), Tracer::disabled()).quiet();
        for n in 0..512 {
            let Admit::Serve(t) = g.admit(n, &[0; 6], false, None, None) else { panic!("{n}") };
            assert!(g.served(t, 0).is_none());
        }
        assert!(g.messages.is_empty());
    }

    /// The first-refusal hint names the path (escaped: the program chose
    /// its bytes), read or write, and the directory to allow.
    #[test]
    fn path_hints_say_what_to_add() {
        use cabin_policy::note::{PathRefusal, Refusal};
        let r = |why, p: &[u8]| PathRefusal { why, resolved: p.to_vec() };
        assert_eq!(
            super::path_hint(&r(Refusal::Outside, b"/etc/hostname"), false),
            "cabin: denied read of /etc/hostname: outside --allow-read; add --allow-read /etc"
        );
        assert_eq!(
            super::path_hint(&r(Refusal::Outside, b"/tmp/x\n"), true),
            "cabin: denied write of /tmp/x\\x0a: outside --allow-write; add --allow-write /tmp"
        );
        assert!(
            super::path_hint(&r(Refusal::ReadOnly, b"/data/f"), true).ends_with("add --allow-write /data")
        );
        assert!(super::path_hint(&r(Refusal::Outside, b"/f"), false).ends_with("add --allow-read /"));
        assert!(super::path_hint(&r(Refusal::Proc, b"/proc/1/mem"), false).contains("/proc entry"));
        let open_wr = [(-100i64) as u64, 0, 0o1101, 0, 0, 0];
        assert!(super::writes(cabin_abi::syscalls::nr::openat, &open_wr));
        assert!(!super::writes(cabin_abi::syscalls::nr::openat, &[0; 6]));
    }
}
