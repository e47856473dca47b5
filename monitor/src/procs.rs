//! The confined process tree's table (issue 14, docs/processes.md): virtual
//! pids private to the tree, parents, process groups and sessions, zombies
//! and their wait statuses, the selection `wait4`/`waitid` make, the targets
//! of `kill`, and the `processes` limit.
//!
//! Pure bookkeeping: no host call, no program memory. The session keeps one
//! [`ProcessTree`] per run behind a mutex; every answer here is what Linux
//! gives inside a pid namespace that holds exactly the tree, with the
//! monitor standing in for the namespace's `init` (it adopts and reaps
//! orphans). A pid the tree does not hold is never looked up elsewhere:
//! `ESRCH` / `ECHILD`, so the program cannot learn whether a host process
//! exists.
//!
//! Every input is a program-chosen number: nothing here panics or grows
//! without bound on any of them (the table holds at most `limit` entries).

use std::collections::BTreeMap;

/// The highest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit); virtual
/// pids stay below it, so every pid fits a positive `pid_t`.
pub const PID_MAX: u32 = 1 << 22;
/// Where allocation starts again after wrapping (Linux's `RESERVED_PIDS`).
const PID_WRAP: u32 = 300;
/// The `processes` limit when the policy sets none (docs/policy.md).
pub const DEFAULT_PROCESSES: usize = 64;
/// The largest `processes` limit the monitor accepts.
pub const MAX_PROCESSES: usize = 1024;

const ESRCH: i32 = libc::ESRCH;
const ECHILD: i32 = libc::ECHILD;
const EPERM: i32 = libc::EPERM;
const EINVAL: i32 = libc::EINVAL;
const EACCES: i32 = libc::EACCES;
const ENOTTY: i32 = libc::ENOTTY;

/// How a process ended, as its parent's `wait` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It called `exit` (the low 8 bits of the status).
    Exited(u8),
    /// A signal ended it (a fault, `kill`, a monitor stop: `SIGKILL`).
    Killed(i32),
}

impl Ended {
    /// The `wait4` status word: `exited` = code << 8, `killed` = the signal
    /// (Cabin writes no core file, so never the core flag).
    pub fn wait_status(self) -> i32 {
        match self {
            Ended::Exited(code) => i32::from(code) << 8,
            Ended::Killed(sig) => sig & 0x7f,
        }
    }

    /// `waitid`'s `si_code` (`CLD_EXITED` / `CLD_KILLED`) and `si_status`.
    pub fn siginfo(self) -> (i32, i32) {
        match self {
            Ended::Exited(code) => (libc::CLD_EXITED, i32::from(code)),
            Ended::Killed(sig) => (libc::CLD_KILLED, sig),
        }
    }

    /// The exit status a shell shows for it (`128 + signal` when killed),
    /// which `cabinc run` returns for the root.
    pub fn shell_status(self) -> i32 {
        match self {
            Ended::Exited(code) => i32::from(code),
            Ended::Killed(sig) => 128 + sig,
        }
    }
}

/// What a parent's `wait` reports about a child: its end, or a stop or
/// continue (job control: `WUNTRACED`/`WSTOPPED`, `WCONTINUED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It ended (a zombie).
    Ended(Ended),
    /// A stop signal's default action stopped it.
    Stopped(i32),
    /// `SIGCONT` continued it.
    Continued,
}

impl Event {
    /// The `wait4` status word: Linux's `(sig << 8) | 0x7f` for a stop,
    /// `0xffff` for a continue.
    pub fn wait_status(self) -> i32 {
        match self {
            Event::Ended(e) => e.wait_status(),
            Event::Stopped(sig) => (sig & 0xff) << 8 | 0x7f,
            Event::Continued => 0xffff,
        }
    }

    /// `waitid`'s (and `SIGCHLD`'s) `si_code` and `si_status`.
    pub fn siginfo(self) -> (i32, i32) {
        match self {
            Event::Ended(e) => e.siginfo(),
            Event::Stopped(sig) => (libc::CLD_STOPPED, sig),
            Event::Continued => (libc::CLD_CONTINUED, libc::SIGCONT),
        }
    }
}

/// Which kinds of [`Event`] a wait takes (`WEXITED`, `WUNTRACED`/`WSTOPPED`,
/// `WCONTINUED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Ends (zombies).
    pub exited: bool,
    /// Stops not reported yet.
    pub stopped: bool,
    /// Continues not reported yet.
    pub continued: bool,
}

impl Want {
    /// Ends only (`wait4` without options).
    pub const EXITED: Want = Want { exited: true, stopped: false, continued: false };
}

/// Which children a `wait` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// That child (`wait4(pid > 0)`, `P_PID`).
    Pid(u32),
    /// Any child (`wait4(-1)`, `P_ALL`).
    Any,
    /// Any child in that process group (`wait4(0)`, `wait4(< -1)`, `P_PGID`).
    Group(u32),
}

impl Select {
    /// `wait4`'s `pid` argument, for `caller` (`0`: the caller's group).
    /// `None` for a caller the tree does not hold.
    pub fn from_wait4(tree: &ProcessTree, caller: u32, pid: i32) -> Option<Select> {
        Some(match pid {
            p if p > 0 => Select::Pid(p as u32),
            -1 => Select::Any,
            0 => Select::Group(tree.procs.get(&caller)?.pgid),
            // i32::MIN has no positive counterpart: no group has it.
            p => Select::Group(p.checked_neg().map_or(u32::MAX, |g| g as u32)),
        })
    }
}

/// Why a fork is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkError {
    /// The tree holds `limit` processes already (zombies included): the
    /// session stops the tree with the limit message.
    Limit {
        /// The `processes` limit.
        limit: usize,
    },
    /// The caller is not a live process of the tree (a monitor bug or a
    /// race with its end): the fork is refused (`ESRCH`).
    NoCaller,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    /// The parent's pid; 0 once the monitor adopted it (orphan).
    ppid: u32,
    pgid: u32,
    sid: u32,
    /// `Some` once it ended and until it is reaped.
    zombie: Option<Ended>,
    /// It called `execve` since its fork (its parent's `setpgid` on it is
    /// then `EACCES`, as Linux).
    execed: bool,
    /// `PR_SET_PDEATHSIG`: the signal it gets when its parent ends (0:
    /// none). Cleared at a fork (the child's is 0), kept across `execve`.
    pdeathsig: u8,
    /// Stopped (job control) by this signal, until continued or ended.
    stopped: Option<i32>,
    /// The last stop or continue, until its parent's wait reports it
    /// (Linux keeps one: a continue replaces an unreported stop and the
    /// other way round).
    change: Option<Event>,
}

impl Proc {
    fn new(ppid: u32, pgid: u32, sid: u32) -> Proc {
        Proc { ppid, pgid, sid, zombie: None, execed: false, pdeathsig: 0, stopped: None, change: None }
    }
}

/// The tree: at most `limit` processes, live or zombie.
#[derive(Debug, Clone)]
pub struct ProcessTree {
    procs: BTreeMap<u32, Proc>,
    root: u32,
    /// What the root's `getppid` says, and an orphan's.
    outside_ppid: u32,
    /// The next pid to try.
    next: u32,
    limit: usize,
    /// The session of the terminal the run was given (the root's first
    /// session): only its processes have it as their controlling terminal.
    tty_sid: u32,
    /// The terminal's foreground process group as the tree sees it
    /// (`tcsetpgrp`; the root's group at first, as a shell makes a job's):
    /// the host terminal's own foreground group is never changed.
    tty_pgrp: u32,
}

impl ProcessTree {
    /// A tree of one process, the root, with pid `root` (the pid the domain
    /// gives it today), whose parent is outside (`outside_ppid`); at most
    /// `limit` processes (clamped to 1..=[`MAX_PROCESSES`]).
    ///
    /// The root leads its own process group, as a shell's job does, in a
    /// session it does not lead, whose id is `outside_ppid` (the session of
    /// the shell that started `cabinc`, as seen from the tree; the root
    /// itself when that is 0). So the root can `setpgid(0, 0)` as natively,
    /// and its `setsid` is `EPERM` (a group leader), as a shell job's is.
    pub fn new(root: u32, outside_ppid: u32, limit: usize) -> ProcessTree {
        let root = if root == 0 || root >= PID_MAX { 1 } else { root };
        let sid = if outside_ppid == 0 || outside_ppid >= PID_MAX { root } else { outside_ppid };
        let mut procs = BTreeMap::new();
        procs.insert(root, Proc::new(0, root, sid));
        ProcessTree {
            procs,
            root,
            outside_ppid,
            next: root + 1,
            limit: limit.clamp(1, MAX_PROCESSES),
            tty_sid: sid,
            tty_pgrp: root,
        }
    }

    /// `tcgetpgrp` (`TIOCGPGRP`) of the run's controlling terminal from
    /// `caller`: the foreground group; `ENOTTY` for a process of another
    /// session (it has no controlling terminal), as Linux.
    pub fn tty_pgrp(&self, caller: u32) -> Result<u32, i32> {
        self.in_tty_session(caller)?;
        Ok(self.tty_pgrp)
    }

    /// `tcgetsid` (`TIOCGSID`) of the run's controlling terminal from
    /// `caller`: its session; `ENOTTY` from another session.
    pub fn tty_sid(&self, caller: u32) -> Result<u32, i32> {
        self.in_tty_session(caller)?;
        Ok(self.tty_sid)
    }

    /// `tcsetpgrp` (`TIOCSPGRP`) of the run's controlling terminal from
    /// `caller`, with Linux's rules: `ENOTTY` from another session, `ESRCH`
    /// when no process group (nor process) has that number, `EPERM` when
    /// it is of another session (a negative group is the caller's
    /// `EINVAL`, checked before).
    pub fn set_tty_pgrp(&mut self, caller: u32, pgrp: u32) -> Result<(), i32> {
        self.in_tty_session(caller)?;
        // As the kernel's session_of_pgrp: a member of the group, else the
        // process with that pid.
        let found =
            self.procs.values().find(|p| p.pgid == pgrp).or_else(|| self.procs.get(&pgrp)).ok_or(ESRCH)?;
        if found.sid != self.tty_sid {
            return Err(EPERM);
        }
        self.tty_pgrp = pgrp;
        Ok(())
    }

    /// The live members of the terminal's foreground group when it is not
    /// the root's own group (a job the program put in the foreground), in
    /// pid order: where a signal from the terminal goes (`None`: to the
    /// root, as before any `tcsetpgrp`).
    pub fn foreground_job(&self) -> Option<Vec<u32>> {
        let root_group = self.procs.get(&self.root)?.pgid;
        if self.tty_pgrp == root_group {
            return None;
        }
        let live: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.pgid == self.tty_pgrp && p.zombie.is_none())
            .map(|(&k, _)| k)
            .collect();
        (!live.is_empty()).then_some(live)
    }

    /// Whether `caller` is in a background process group of the run's
    /// terminal (in its session, not in its foreground group): `Some`,
    /// with whether that group is orphaned; `None` for a foreground process
    /// or one without the terminal (docs/processes.md, "Job control").
    pub fn background(&self, caller: u32) -> Option<bool> {
        let p = self.procs.get(&caller)?;
        (p.sid == self.tty_sid && p.pgid != self.tty_pgrp).then(|| self.orphaned_group(caller))
    }

    fn in_tty_session(&self, caller: u32) -> Result<(), i32> {
        match self.procs.get(&caller) {
            Some(p) if p.sid == self.tty_sid => Ok(()),
            _ => Err(ENOTTY),
        }
    }

    /// The root's pid.
    pub fn root(&self) -> u32 {
        self.root
    }

    /// The `processes` limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Processes held, live and zombie.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether the tree is empty (never: the root stays until the run ends).
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Whether `pid` is a live (not ended) process of the tree.
    pub fn is_live(&self, pid: u32) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.zombie.is_none())
    }

    /// The live processes' pids, in pid order (what the session stops at the
    /// end of the run).
    pub fn live(&self) -> Vec<u32> {
        self.procs.iter().filter(|(_, p)| p.zombie.is_none()).map(|(&k, _)| k).collect()
    }

    /// `getppid` of `pid` (an orphan's is the root's parent: the monitor
    /// stands in for init).
    pub fn ppid(&self, pid: u32) -> Option<u32> {
        self.procs.get(&pid).map(|p| if p.ppid == 0 { self.outside_ppid } else { p.ppid })
    }

    /// The parent of `pid` in the tree (0: the monitor), if it is held.
    pub fn ppid_of(&self, pid: u32) -> Option<u32> {
        self.procs.get(&pid).map(|p| p.ppid).filter(|&p| p != 0)
    }

    /// `getpgid(pid)` from `caller` (`pid` 0: the caller).
    pub fn pgid(&self, caller: u32, pid: u32) -> Result<u32, i32> {
        let pid = if pid == 0 { caller } else { pid };
        self.procs.get(&pid).map(|p| p.pgid).ok_or(ESRCH)
    }

    /// `getsid(pid)` from `caller` (`pid` 0: the caller).
    pub fn sid(&self, caller: u32, pid: u32) -> Result<u32, i32> {
        let pid = if pid == 0 { caller } else { pid };
        self.procs.get(&pid).map(|p| p.sid).ok_or(ESRCH)
    }

    fn in_use(&self, n: u32) -> bool {
        self.procs.contains_key(&n) || self.procs.values().any(|p| p.pgid == n || p.sid == n)
    }

    /// A new child of `parent` (same group and session): its pid, the next
    /// number no process, group or session of the tree uses.
    pub fn fork(&mut self, parent: u32) -> Result<u32, ForkError> {
        let Some(p) = self.procs.get(&parent).filter(|p| p.zombie.is_none()) else {
            return Err(ForkError::NoCaller);
        };
        if self.procs.len() >= self.limit {
            return Err(ForkError::Limit { limit: self.limit });
        }
        let (pgid, sid) = (p.pgid, p.sid);
        // At most 3 * limit numbers are in use, far fewer than the space.
        let mut n = self.next;
        loop {
            if n >= PID_MAX {
                n = PID_WRAP;
            }
            if !self.in_use(n) {
                break;
            }
            n += 1;
        }
        self.next = n + 1;
        self.procs.insert(n, Proc::new(parent, pgid, sid));
        Ok(n)
    }

    /// `pid` ended `how`. Its children are adopted by the monitor (their
    /// zombies reaped at once). It becomes a zombie for its parent, unless
    /// the parent reaps automatically (`SIGCHLD` ignored or
    /// `SA_NOCLDWAIT`: `auto_reap`) or it is an orphan or the root (the
    /// monitor reaps those). The parent to send `SIGCHLD` to, if any (a
    /// parent in the tree, also when it reaps automatically: Linux still
    /// sends the signal unless it is ignored, which the libos decides).
    pub fn ended(&mut self, pid: u32, how: Ended, auto_reap: bool) -> Option<u32> {
        let p = self.procs.get_mut(&pid)?;
        if p.zombie.is_some() {
            return None;
        }
        p.zombie = Some(how);
        p.stopped = None;
        p.change = None;
        let ppid = p.ppid;
        let orphans: Vec<u32> = self.procs.iter().filter(|(_, c)| c.ppid == pid).map(|(&k, _)| k).collect();
        for c in orphans {
            if self.procs.get(&c).is_some_and(|c| c.zombie.is_some()) {
                self.procs.remove(&c);
            } else if let Some(c) = self.procs.get_mut(&c) {
                c.ppid = 0;
            }
        }
        if ppid == 0 {
            // The root stays (as a zombie) until the run ends: its end is
            // the run's end; an orphan is reaped by the monitor now.
            if pid != self.root {
                self.procs.remove(&pid);
            }
            return None;
        }
        if auto_reap {
            self.procs.remove(&pid);
        }
        Some(ppid)
    }

    /// What a `wait` by `caller` for `which` finds, of the kinds `want`
    /// takes: `Ok(Some((pid, event)))` the first matching child with such
    /// an event (a zombie is not reaped: see [`ProcessTree::reap`]; a stop
    /// or continue stays until [`ProcessTree::reported`]; `WNOWAIT` leaves
    /// both), `Ok(None)` children match but none has one (block, or 0 with
    /// `WNOHANG`), `Err(ECHILD)` no child matches. Per child, as Linux
    /// looks: its end, then a stop, then a continue.
    pub fn wait(&self, caller: u32, which: Select, want: Want) -> Result<Option<(u32, Event)>, i32> {
        let mut matched = false;
        for (&pid, p) in self.procs.iter().filter(|(_, p)| p.ppid == caller && caller != 0) {
            let hit = match which {
                Select::Pid(want) => pid == want,
                Select::Any => true,
                Select::Group(g) => p.pgid == g,
            };
            if hit {
                matched = true;
                match (p.zombie, p.change) {
                    (Some(how), _) if want.exited => return Ok(Some((pid, Event::Ended(how)))),
                    (None, Some(Event::Stopped(sig))) if want.stopped => {
                        return Ok(Some((pid, Event::Stopped(sig))))
                    }
                    (None, Some(Event::Continued)) if want.continued => {
                        return Ok(Some((pid, Event::Continued)))
                    }
                    _ => {}
                }
            }
        }
        if matched {
            Ok(None)
        } else {
            Err(ECHILD)
        }
    }

    /// A wait reported `pid`'s stop or continue (without `WNOWAIT`): it is
    /// not reported again.
    pub fn reported(&mut self, caller: u32, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid).filter(|p| p.ppid == caller && caller != 0) {
            p.change = None;
        }
    }

    /// `pid` stops by signal `sig` (the default action of a stop signal):
    /// `true` when it was running (a stopped process does not stop again,
    /// and its parent hears nothing new).
    pub fn stop(&mut self, pid: u32, sig: i32) -> bool {
        match self.procs.get_mut(&pid) {
            Some(p) if p.zombie.is_none() && p.stopped.is_none() => {
                p.stopped = Some(sig);
                p.change = Some(Event::Stopped(sig));
                true
            }
            _ => false,
        }
    }

    /// `pid` is continued (`SIGCONT`): `true` when it was stopped.
    pub fn cont(&mut self, pid: u32) -> bool {
        match self.procs.get_mut(&pid) {
            Some(p) if p.zombie.is_none() && p.stopped.is_some() => {
                p.stopped = None;
                p.change = Some(Event::Continued);
                true
            }
            _ => false,
        }
    }

    /// Whether `pid`'s process group is orphaned, as Linux decides it: no
    /// live member has a parent in another group of the same session. The
    /// root's parent (outside: the shell that started `cabinc`) counts as
    /// such a parent, as a shell's job's does; an adopted orphan's (the
    /// monitor, standing in for init) does not. The stop signals but
    /// `SIGSTOP` do nothing to an orphaned group.
    pub fn orphaned_group(&self, pid: u32) -> bool {
        let Some(g) = self.procs.get(&pid).map(|p| p.pgid) else { return true };
        !self.procs.iter().filter(|(_, m)| m.pgid == g && m.zombie.is_none()).any(|(&k, m)| {
            if k == self.root {
                return true;
            }
            self.procs.get(&m.ppid).is_some_and(|p| m.ppid != 0 && p.pgid != g && p.sid == m.sid)
        })
    }

    /// Whether `pid` is stopped (job control).
    pub fn is_stopped(&self, pid: u32) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.stopped.is_some())
    }

    /// Removes the zombie `pid`, a child of `caller` (after a `wait` found
    /// it); false if it is not one.
    pub fn reap(&mut self, caller: u32, pid: u32) -> bool {
        let is = self.procs.get(&pid).is_some_and(|p| p.ppid == caller && caller != 0 && p.zombie.is_some());
        if is {
            self.procs.remove(&pid);
        }
        is
    }

    /// The live processes `kill(pid, _)` from `caller` reaches: `pid > 0`
    /// that process; `0` the caller's group; `-1` every process but the
    /// caller; `< -1` group `-pid`. A zombie is a valid target that
    /// receives nothing (as Linux). No process matched is `ESRCH`; every
    /// process of the tree may signal every other (one principal).
    pub fn kill_targets(&self, caller: u32, pid: i32) -> Result<Vec<u32>, i32> {
        let group = |g: u32| -> Result<Vec<u32>, i32> {
            let all: Vec<(u32, bool)> = self
                .procs
                .iter()
                .filter(|(_, p)| p.pgid == g)
                .map(|(&k, p)| (k, p.zombie.is_none()))
                .collect();
            if all.is_empty() {
                return Err(ESRCH);
            }
            Ok(all.into_iter().filter(|&(_, live)| live).map(|(k, _)| k).collect())
        };
        match pid {
            p if p > 0 => match self.procs.get(&(p as u32)) {
                None => Err(ESRCH),
                Some(t) if t.zombie.is_some() => Ok(Vec::new()),
                Some(_) => Ok(vec![p as u32]),
            },
            0 => group(self.procs.get(&caller).ok_or(ESRCH)?.pgid),
            -1 => {
                let all: Vec<u32> = self.live().into_iter().filter(|&k| k != caller).collect();
                if all.is_empty() {
                    Err(ESRCH)
                } else {
                    Ok(all)
                }
            }
            // i32::MIN names no group.
            p => group(p.checked_neg().map_or(u32::MAX, |g| g as u32)),
        }
    }

    /// `setpgid(pid, pgid)` from `caller` (0s mean the target itself), with
    /// Linux's rules: the target is the caller or its child (`ESRCH`), in
    /// the caller's session (`EPERM`), not a session leader (`EPERM`); the
    /// group is the target's own pid or an existing group of the caller's
    /// session (`EPERM`); a negative group is `EINVAL`.
    pub fn setpgid(&mut self, caller: u32, pid: i32, pgid: i32) -> Result<(), i32> {
        if pid < 0 || pgid < 0 {
            return Err(EINVAL);
        }
        let target = if pid == 0 { caller } else { pid as u32 };
        let group = if pgid == 0 { target } else { pgid as u32 };
        let me = self.procs.get(&caller).ok_or(ESRCH)?.clone();
        let t = self.procs.get(&target).filter(|t| t.zombie.is_none()).ok_or(ESRCH)?;
        if target != caller {
            if t.ppid != caller {
                return Err(ESRCH);
            }
            if t.sid != me.sid {
                return Err(EPERM);
            }
            if t.execed {
                return Err(EACCES);
            }
        }
        if t.sid == target {
            return Err(EPERM);
        }
        if group != target && !self.procs.values().any(|p| p.pgid == group && p.sid == me.sid) {
            return Err(EPERM);
        }
        if let Some(t) = self.procs.get_mut(&target) {
            t.pgid = group;
        }
        Ok(())
    }

    /// `pid` replaced its image (`execve`).
    pub fn execed(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.execed = true;
        }
    }

    /// `PR_SET_PDEATHSIG` of `pid` (`sig` 0..=64, checked by the caller).
    pub fn set_pdeathsig(&mut self, pid: u32, sig: u8) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.pdeathsig = sig;
        }
    }

    /// `PR_GET_PDEATHSIG` of `pid`.
    pub fn pdeathsig(&self, pid: u32) -> u8 {
        self.procs.get(&pid).map_or(0, |p| p.pdeathsig)
    }

    /// The live children of `pid` with their parent-death signals (what
    /// its end re-parents, and signals).
    pub fn live_children(&self, pid: u32) -> Vec<(u32, u8)> {
        self.procs
            .iter()
            .filter(|(_, c)| c.ppid == pid && pid != 0 && c.zombie.is_none())
            .map(|(&k, c)| (k, c.pdeathsig))
            .collect()
    }

    /// `setsid()` from `caller`: a new session and group led by it, unless
    /// it already leads a group (`EPERM`).
    pub fn setsid(&mut self, caller: u32) -> Result<u32, i32> {
        if self.procs.values().any(|p| p.pgid == caller) {
            return Err(EPERM);
        }
        let me = self.procs.get_mut(&caller).ok_or(ESRCH)?;
        me.pgid = caller;
        me.sid = caller;
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> ProcessTree {
        ProcessTree::new(1000, 77, 8)
    }

    #[test]
    fn fork_gives_fresh_pids_in_the_parents_group() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        let b = t.fork(a).unwrap();
        assert_eq!((a, b), (1001, 1002));
        assert_eq!(t.ppid(b), Some(a));
        assert_eq!(t.ppid(1000), Some(77), "the root's parent is outside");
        assert_eq!(t.pgid(b, 0), Ok(1000));
        assert_eq!(t.sid(b, b), Ok(77), "the session cabinc runs in");
        assert_eq!(t.pgid(b, 5), Err(ESRCH), "outside the tree");
    }

    #[test]
    fn the_limit_counts_zombies_and_the_root() {
        let mut t = tree();
        let kids: Vec<u32> = (0..7).map(|_| t.fork(1000).unwrap()).collect();
        assert_eq!(t.fork(1000), Err(ForkError::Limit { limit: 8 }));
        t.ended(kids[0], Ended::Exited(0), false);
        assert_eq!(t.fork(1000), Err(ForkError::Limit { limit: 8 }), "a zombie still counts");
        assert!(t.reap(1000, kids[0]));
        assert!(t.fork(1000).is_ok());
        assert_eq!(ProcessTree::new(1, 0, 0).limit(), 1);
        assert_eq!(ProcessTree::new(1, 0, usize::MAX).limit(), MAX_PROCESSES);
    }

    #[test]
    fn a_zombie_or_dead_caller_cannot_fork() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        t.ended(a, Ended::Exited(1), false);
        assert_eq!(t.fork(a), Err(ForkError::NoCaller));
        assert_eq!(t.fork(4242), Err(ForkError::NoCaller));
    }

    #[test]
    fn pids_skip_numbers_in_use_and_wrap() {
        let mut t = ProcessTree::new(PID_MAX - 2, 1, 8);
        let a = t.fork(PID_MAX - 2).unwrap();
        let b = t.fork(PID_MAX - 2).unwrap();
        assert_eq!((a, b), (PID_MAX - 1, PID_WRAP));
        // A group id still in use is never handed out as a pid.
        let mut t = ProcessTree::new(10, 1, 8);
        let c = t.fork(10).unwrap();
        t.setpgid(c, 0, 0).unwrap();
        let d = t.fork(c).unwrap();
        t.ended(c, Ended::Exited(0), false);
        assert!(t.reap(10, c));
        assert_eq!(t.pgid(0, d), Ok(c), "the group outlives its leader");
        t.next = c;
        assert_eq!(t.fork(10), Ok(d + 1), "neither the group's number nor d's pid");
        assert!(ProcessTree::new(0, 0, 4).is_live(1), "pid 0 is never a process");
    }

    #[test]
    fn wait_finds_zombies_blocks_or_says_echild() {
        let mut t = tree();
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Err(ECHILD));
        let a = t.fork(1000).unwrap();
        let b = t.fork(1000).unwrap();
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Ok(None));
        assert_eq!(t.ended(b, Ended::Killed(15), false), Some(1000));
        assert_eq!(t.wait(1000, Select::Pid(a), Want::EXITED), Ok(None));
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Ok(Some((b, Event::Ended(Ended::Killed(15))))));
        assert_eq!(
            t.wait(1000, Select::Pid(b), Want::EXITED),
            Ok(Some((b, Event::Ended(Ended::Killed(15))))),
            "WNOWAIT leaves it"
        );
        assert!(t.reap(1000, b));
        assert!(!t.reap(1000, b));
        assert_eq!(t.wait(1000, Select::Pid(b), Want::EXITED), Err(ECHILD));
        assert_eq!(t.wait(1000, Select::Pid(999_999), Want::EXITED), Err(ECHILD));
        assert_eq!(t.wait(a, Select::Any, Want::EXITED), Err(ECHILD), "a grandchild is not a child");
        assert_eq!(t.wait(1000, Select::Group(1000), Want::EXITED), Ok(None));
        assert_eq!(t.wait(1000, Select::Group(4), Want::EXITED), Err(ECHILD));
        assert!(!t.reap(a, 1000), "no one reaps its parent");
    }

    #[test]
    fn stops_and_continues_are_reported_once_as_linux_does() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        let all = Want { exited: true, stopped: true, continued: true };
        assert!(t.stop(a, libc::SIGTSTP));
        assert!(!t.stop(a, libc::SIGSTOP), "a stopped process does not stop again");
        assert!(t.is_stopped(a));
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Ok(None), "no WUNTRACED: not seen");
        assert_eq!(t.wait(1000, Select::Any, all), Ok(Some((a, Event::Stopped(libc::SIGTSTP)))));
        t.reported(1000, a);
        assert_eq!(t.wait(1000, Select::Any, all), Ok(None), "reported once");
        assert!(t.cont(a));
        assert!(!t.cont(a), "continued once");
        assert_eq!(t.wait(1000, Select::Pid(a), Want { continued: false, ..all }), Ok(None));
        assert_eq!(t.wait(1000, Select::Pid(a), all), Ok(Some((a, Event::Continued))));
        // A continue replaces a stop not reported yet, and the other way round.
        assert!(t.stop(a, libc::SIGSTOP));
        assert!(t.cont(a));
        assert_eq!(t.wait(1000, Select::Any, Want { continued: false, ..all }), Ok(None));
        assert!(t.stop(a, libc::SIGTTIN));
        assert_eq!(t.wait(1000, Select::Any, all), Ok(Some((a, Event::Stopped(libc::SIGTTIN)))));
        // The end of a stopped process is its end only.
        assert_eq!(t.ended(a, Ended::Killed(libc::SIGKILL), false), Some(1000));
        assert!(!t.is_stopped(a) && !t.cont(a) && !t.stop(a, libc::SIGSTOP));
        assert_eq!(t.wait(1000, Select::Any, Want { exited: false, ..all }), Ok(None));
        assert_eq!(t.wait(1000, Select::Any, all), Ok(Some((a, Event::Ended(Ended::Killed(9))))));
        assert!(!t.stop(4242, libc::SIGSTOP) && !t.cont(4242), "outside the tree");
        // Orphaned groups: the root's is not (its parent is the shell).
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        assert!(!t.orphaned_group(a) && !t.orphaned_group(1000));
        t.setpgid(a, 0, 0).unwrap();
        let b = t.fork(a).unwrap();
        assert!(!t.orphaned_group(b), "a's parent, the root, is in another group of the session");
        t.ended(a, Ended::Exited(0), false);
        // b alone in group a, adopted by the monitor: orphaned.
        assert!(t.orphaned_group(b));
        assert_eq!(Event::Stopped(libc::SIGTSTP).wait_status(), 0x147f);
        assert_eq!(Event::Continued.wait_status(), 0xffff);
        assert_eq!(Event::Stopped(19).siginfo(), (libc::CLD_STOPPED, 19));
        assert_eq!(Event::Continued.siginfo(), (libc::CLD_CONTINUED, libc::SIGCONT));
    }

    #[test]
    fn wait4_pid_arguments() {
        let t = tree();
        assert_eq!(Select::from_wait4(&t, 1000, 5), Some(Select::Pid(5)));
        assert_eq!(Select::from_wait4(&t, 1000, -1), Some(Select::Any));
        assert_eq!(Select::from_wait4(&t, 1000, 0), Some(Select::Group(1000)));
        assert_eq!(Select::from_wait4(&t, 1000, -7), Some(Select::Group(7)));
        assert_eq!(Select::from_wait4(&t, 1000, i32::MIN), Some(Select::Group(u32::MAX)));
        assert_eq!(Select::from_wait4(&t, 3, 0), None);
    }

    #[test]
    fn orphans_go_to_the_monitor() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        let b = t.fork(a).unwrap();
        let c = t.fork(a).unwrap();
        t.ended(c, Ended::Exited(0), false);
        t.ended(a, Ended::Exited(2), false);
        assert_eq!(t.ppid(b), Some(77), "adopted: getppid is the root's parent");
        assert!(!t.procs.contains_key(&c), "a zombie of an ended parent is reaped");
        assert_eq!(t.ended(b, Ended::Exited(0), false), None, "no SIGCHLD to anyone");
        assert!(!t.procs.contains_key(&b), "the monitor reaps an orphan");
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Ok(Some((a, Event::Ended(Ended::Exited(2))))));
    }

    #[test]
    fn auto_reap_leaves_no_zombie() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        assert_eq!(t.ended(a, Ended::Exited(0), true), Some(1000));
        assert_eq!(t.wait(1000, Select::Any, Want::EXITED), Err(ECHILD));
        assert_eq!(t.ended(a, Ended::Exited(0), true), None, "twice is nothing");
    }

    #[test]
    fn the_root_stays_until_the_end() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        assert_eq!(t.ended(1000, Ended::Killed(9), false), None);
        assert_eq!(t.len(), 2);
        assert!(!t.is_live(1000));
        assert_eq!(t.live(), vec![a], "what the session still has to stop");
        assert_eq!(t.ppid(a), Some(77));
    }

    #[test]
    fn kill_reaches_only_the_tree() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        let b = t.fork(1000).unwrap();
        assert_eq!(t.kill_targets(a, 1), Err(ESRCH), "init of the host is outside");
        assert_eq!(t.kill_targets(a, 77), Err(ESRCH), "the monitor is outside");
        assert_eq!(t.kill_targets(a, i32::MAX), Err(ESRCH));
        assert_eq!(t.kill_targets(a, i32::MIN), Err(ESRCH));
        assert_eq!(t.kill_targets(a, b as i32), Ok(vec![b]));
        assert_eq!(t.kill_targets(a, 0), Ok(vec![1000, a, b]));
        assert_eq!(t.kill_targets(a, -1), Ok(vec![1000, b]));
        assert_eq!(t.kill_targets(a, -1000), Ok(vec![1000, a, b]));
        assert_eq!(t.kill_targets(a, -5), Err(ESRCH));
        t.ended(b, Ended::Exited(0), false);
        assert_eq!(t.kill_targets(a, b as i32), Ok(vec![]), "a zombie is found but gets nothing");
        assert_eq!(t.kill_targets(4242, 0), Err(ESRCH));
    }

    #[test]
    fn process_groups_and_sessions_follow_linux() {
        let mut t = tree();
        let a = t.fork(1000).unwrap();
        let b = t.fork(1000).unwrap();
        let g = t.fork(a).unwrap();
        assert_eq!(t.setpgid(1000, a as i32, 0), Ok(()), "a child into a group of its own");
        assert_eq!(t.pgid(0, a), Ok(a));
        assert_eq!(t.setpgid(1000, b as i32, a as i32), Ok(()), "into an existing group");
        assert_eq!(t.setpgid(1000, g as i32, 0), Err(ESRCH), "a grandchild");
        assert_eq!(t.setpgid(1000, b as i32, 31337), Err(EPERM), "no such group");
        assert_eq!(t.setpgid(1000, 0, 0), Ok(()), "the root leads its group, not its session");
        assert_eq!(t.sid(0, 1000), Ok(77), "the session is the one cabinc runs in");
        t.execed(b);
        assert_eq!(t.setpgid(1000, b as i32, 0), Err(EACCES), "a child that exec'd");
        assert_eq!(t.setpgid(b, 0, 0), Ok(()), "but it may itself");
        assert_eq!(t.setpgid(b, 0, a as i32), Ok(()), "and back");
        assert_eq!(t.setpgid(1000, -1, 0), Err(EINVAL));
        assert_eq!(t.setsid(a), Err(EPERM), "a group leader");
        assert_eq!(t.setsid(g), Ok(g));
        assert_eq!((t.sid(0, g), t.pgid(0, g)), (Ok(g), Ok(g)));
        assert_eq!(t.setpgid(g, 0, 0), Err(EPERM), "a session leader");
        assert_eq!(t.setsid(1000), Err(EPERM), "the root leads its group");
        assert_eq!(t.setpgid(a, g as i32, a as i32), Err(EPERM), "another session");
        assert_eq!(t.kill_targets(1000, -(a as i32)), Ok(vec![a, b]));
    }

    #[test]
    fn the_terminals_foreground_group_follows_linux() {
        let mut t = tree();
        assert_eq!(t.tty_pgrp(1000), Ok(1000), "the root's group is in the foreground");
        assert_eq!(t.tty_sid(1000), Ok(77));
        let c = t.fork(1000).expect("fork");
        t.setpgid(1000, c as i32, c as i32).expect("setpgid");
        assert_eq!(t.set_tty_pgrp(1000, c), Ok(()));
        assert_eq!(t.tty_pgrp(c), Ok(c), "the child sees itself in the foreground");
        assert_eq!(t.set_tty_pgrp(1000, 4242), Err(ESRCH), "no such group");
        assert_eq!(t.set_tty_pgrp(1000, 0), Err(ESRCH));
        let d = t.fork(1000).expect("fork");
        t.setsid(d).expect("setsid");
        assert_eq!(t.tty_pgrp(d), Err(ENOTTY), "another session has no controlling terminal");
        assert_eq!(t.set_tty_pgrp(d, d), Err(ENOTTY));
        assert_eq!(t.set_tty_pgrp(1000, d), Err(EPERM), "a group of another session");
        assert_eq!(t.tty_pgrp(1000), Ok(c), "unchanged by the refusals");
        assert_eq!(t.tty_pgrp(9999), Err(ENOTTY), "not a process of the tree");
        assert_eq!(t.foreground_job(), Some(vec![c]), "the terminal's signals go to the child's group");
        t.set_tty_pgrp(1000, 1000).expect("back");
        assert_eq!(t.foreground_job(), None, "the root's group: to the root");
    }

    #[test]
    fn background_groups_of_the_terminal_and_whether_they_are_orphaned() {
        let mut t = tree();
        assert_eq!(t.background(1000), None, "the root's group is in the foreground");
        let c = t.fork(1000).expect("fork");
        assert_eq!(t.background(c), None, "a child in the root's group");
        t.setpgid(c, 0, 0).expect("setpgid");
        assert_eq!(t.background(c), Some(false), "its own group, its parent in another");
        t.set_tty_pgrp(1000, c).expect("tcsetpgrp");
        assert_eq!((t.background(c), t.background(1000)), (None, Some(false)), "the root in the background");
        t.set_tty_pgrp(1000, 1000).expect("back");
        let g = t.fork(c).expect("fork");
        t.setpgid(g, 0, 0).expect("setpgid");
        assert_eq!(t.background(g), Some(false));
        t.ended(c, Ended::Exited(0), false);
        assert_eq!(t.background(g), Some(true), "its parent ended: orphaned");
        let d = t.fork(1000).expect("fork");
        t.setsid(d).expect("setsid");
        assert_eq!(t.background(d), None, "another session has no controlling terminal");
        assert_eq!(t.background(9999), None, "not a process of the tree");
    }

    #[test]
    fn statuses_as_linux_encodes_them() {
        assert_eq!(Ended::Exited(3).wait_status(), 0x300);
        assert_eq!(Ended::Killed(libc::SIGSEGV).wait_status(), 11);
        let w = Ended::Exited(255).wait_status();
        assert!(libc::WIFEXITED(w) && libc::WEXITSTATUS(w) == 255);
        let w = Ended::Killed(libc::SIGTERM).wait_status();
        assert!(libc::WIFSIGNALED(w) && libc::WTERMSIG(w) == libc::SIGTERM && !libc::WCOREDUMP(w));
        assert_eq!(Ended::Killed(9).siginfo(), (libc::CLD_KILLED, 9));
        assert_eq!(Ended::Exited(4).siginfo(), (libc::CLD_EXITED, 4));
        assert_eq!(Ended::Killed(11).shell_status(), 139);
    }

    #[test]
    fn a_fork_bomb_stays_bounded() {
        let mut t = ProcessTree::new(1, 0, MAX_PROCESSES);
        let mut parent = 1;
        let mut forked = 0;
        while let Ok(c) = t.fork(parent) {
            parent = if forked % 2 == 0 { c } else { parent };
            forked += 1;
        }
        assert_eq!(t.len(), MAX_PROCESSES);
        assert_eq!(forked, MAX_PROCESSES - 1);
    }
}
