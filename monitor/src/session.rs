//! One confined run, whatever the backend: the [`Session`] checks the image,
//! opens the policy gate, builds the service, the ring worker and the time
//! watches, places the threads, drives a [`Domain`] through its calls and
//! writes the end-of-run records (trace/audit `exit`, statistics) and the one
//! [`RunOutcome`]. A backend is only a [`Domain`]; see monitor/DESIGN.md,
//! "Session and Domain", for the order of calls.
//!
//! ```ignore
//! let outcome = cabin_monitor::session::run::<cabin_process::ProcessDomain>(&image, &cfg)?;
//! ```

use std::time::Instant;

use cabin_abi::boot::{EndWords, ABORT_RING};
use cabin_abi::thread::MAX_THREADS;
use cabin_image::elf::ElfFile;
use cabin_image::image::Image;
use cabin_policy::limits::{memory_limit_hit, MemoryBound};

use crate::boot::BootPage;
use crate::config::{EndReason, RunConfig, RunError, RunOutcome, EXIT_PROTOCOL_VIOLATION};
use crate::domain::{CpuClock, Domain, DomainEnd, DomainSpec, StopCause};
use crate::gate::{exit_words, Gate, Stop};
use crate::placement::Placement;
use crate::ring::{Served, Shared, Worker, WorkerEnd};
use crate::service::fs::FsPolicy;
use crate::service::net::Network;
use crate::service::Service;
use crate::site_map::SiteMap;
use crate::stats::{self, StatsInput};
use crate::threads::{ExecSlot, Execed, Procs, Threads};
use crate::tree::Tree;
use crate::watch::{ThreadClocks, TimeLimits};

/// What the libos's `ABORT_RING` means, in the words of the record.
const LIBOS_RING_ABORT: &str =
    "the libos found the ring corrupted (impossible indices or a mismatched completion)";

/// Runs `image` confined in a domain of backend `D`, under `cfg`. Blocks
/// until the program ends.
pub fn run<D: Domain + Sync>(image: &[u8], cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    Session::new(image, cfg)?.run::<D>()
}

/// One confined run (one program today; one tree of them with threads and
/// child processes later, all under this one session's gate and limits).
#[derive(Debug)]
pub struct Session<'a> {
    image: &'a [u8],
    elf: ElfFile<'a>,
    cfg: &'a RunConfig,
    t0: Instant,
}

impl<'a> Session<'a> {
    /// Checks `image`: it must be an intact Cabin image (the manifest
    /// decodes and the recorded launch measurement matches its pages), so an
    /// image edited after `cabinc build`, or a plain executable, never runs,
    /// whichever front end asks.
    pub fn new(image: &'a [u8], cfg: &'a RunConfig) -> Result<Session<'a>, RunError> {
        let t0 = Instant::now();
        let checked = Image::parse(image).map_err(RunError::ImageRejected)?;
        if cfg.measurement_checked != Some(checked.measurement) {
            checked.verify_measurement().map_err(RunError::ImageRejected)?;
        }
        Ok(Session { image, elf: checked.elf, cfg, t0 })
    }

    /// Runs the program in a domain of backend `D` and writes the records.
    pub fn run<D: Domain + Sync>(self) -> Result<RunOutcome, RunError> {
        let Session { image, elf, cfg, t0 } = self;
        // Before any thread starts: they all inherit the mask, so only the
        // forwarder receives these signals (docs/signals.md).
        let _blocked = cfg.forward_signals.then(crate::signals::block);
        D::available()?;
        let xo = D::execute_only(&elf);
        if cfg.require_execute_only && !xo.enforced {
            return Err(RunError::ExecuteOnlyUnavailable);
        }
        if !cfg.quiet {
            eprintln!("{}", xo.notice);
        }
        let (mut policy, cwd) = match &cfg.view {
            None => {
                let cwd = std::env::current_dir()
                    .map(|p| p.into_os_string().into_encoded_bytes())
                    .unwrap_or(b"/".to_vec());
                (FsPolicy::new(&cfg.allow_read, &cfg.allow_write)?, cwd)
            }
            Some(view) => view_policy(cfg, view)?,
        };
        policy.set_allow_set_id(cfg.allow_set_id);
        policy.set_exec_images_only(cfg.exec_images_only);
        policy.set_image_cache(cfg.image_cache.clone());
        // The image cache is never the program's, even inside its trees.
        policy.hide_image_cache();
        if !cfg.quiet {
            // Which way each tree's opens keep device nodes out (docs/policy.md).
            for g in policy.guards() {
                eprintln!("cabin: device opens in {g}");
            }
        }
        let mut service = Service::with_stdio(policy, cwd, 0, cfg.stdio.unwrap_or([0, 1, 2]));
        service.set_network(Network::new(std::sync::Arc::new(cfg.network.clone())));
        let timers = std::sync::Arc::new(crate::timers::Timers::default());
        service.timers = Some(timers.clone());
        service.set_exe(match &cfg.image_shared {
            Some(shared) if std::ptr::eq(shared.as_slice(), image) => shared.clone(),
            _ => std::sync::Arc::new(image.to_vec()),
        });
        // Policy, limits, trace and audit (crate::gate): the worker passes
        // every call through it, fast-path and trapped alike.
        let gate = Gate::open(&cfg.gate, D::BACKEND)
            .map_err(|source| RunError::Host { what: "opening the trace or audit file", source })?
            .with_path_hint(cfg.path_hint);
        let limits = gate.limits().clone();
        let policy_file = cfg.gate.policy.as_ref().map_or("the policy", |p| p.source.as_str());
        let mut memory = MemoryBound::new(cfg.arena_bytes, limits.memory, policy_file);
        // A view's tmpfs are memory: counted against the bound (docs/views.md).
        let tmpfs: u64 = cfg.view.iter().flat_map(|v| &v.tmpfs).fold(0u64, |a, t| a.saturating_add(t.size));
        if tmpfs > 0 {
            if tmpfs >= memory.bytes {
                return Err(RunError::View(format!(
                    "the tmpfs sizes ({tmpfs} bytes) do not fit in the memory bound ({} bytes, {}), which \
                     counts them; help: raise --mem or give the tmpfs a smaller size (--tmpfs DST:SIZE)",
                    memory.bytes, memory.source
                )));
            }
            memory.bytes -= tmpfs;
            memory.source = format!("{} less {tmpfs} bytes of tmpfs", memory.source);
        }
        // The program and the worker on CPUs of their own; the libos learns
        // how long it may spin.
        let all_cpus = crate::placement::CpuSet::current();
        let placement = Placement::choose(cfg.cpu_placement);
        // `--cpus auto` (opt-in): a busy start spins briefly, unpinned, and a
        // preempted spin shortens (docs/ring.md, "CPU placement").
        let auto = cfg.cpu_placement == crate::placement::CpuPlacement::Auto;
        // SAFETY: getuid/getgid have no preconditions.
        let ids = unsafe { (libc::getuid(), libc::getgid()) };
        // The tree's shared memory: as large as one process's memory bound
        // (docs/processes.md, "Shared memory").
        let shared = match D::SHARED_WINDOW {
            Some(at) => Some(std::sync::Arc::new(crate::shm::SharedWindow::new(at, memory.bytes)?)),
            None => None,
        };
        let spec = DomainSpec {
            args: if cfg.args.is_empty() { vec!["program".into()] } else { cfg.args.clone() },
            env: cfg.env.clone(),
            memory: memory.clone(),
            // With tmpfs, the reduced bound (KVM sizes its guest from these
            // two, the process backend from `memory`).
            mem_arg: if tmpfs > 0 { memory.bytes } else { cfg.arena_bytes },
            memory_limit: limits.memory.map(|l| l.saturating_sub(tmpfs)),
            force_trap: cfg.force_trap_path,
            read_ahead: cfg.read_ahead(),
            // The locally served calls the policy does not plainly allow:
            // the libos has the monitor decide them.
            check_local: gate.check_local(),
            program_cpus: placement.map(|p| p.program),
            all_cpus,
            ids,
            threads: limits.threads.map_or(MAX_THREADS as u32, |t| t.clamp(1, MAX_THREADS as u64) as u32),
            shared: shared.clone(),
        };
        let mut domain = D::build(&elf, &spec)?;
        // The program's descriptors are the monitor's: size its table so the
        // monitor keeps a reserve (this also raises the soft RLIMIT_NOFILE).
        service.set_fd_capacity(crate::service::fdtable::program_capacity()?);
        {
            let boot = BootPage::of(domain.memory())?;
            boot.set_spin_ns(crate::placement::spin_ns(placement.as_ref()));
            boot.set_check_local(&spec.check_local);
        }
        // The root's parent, outside the tree, as the backend wrote it
        // (process backend: the monitor; KVM: the monitor's parent, since
        // the root answers the monitor's own pid).
        let outside_ppid = BootPage::of(domain.memory())?.ppid();

        let mut worker = Worker::new(domain.ring())
            .placed(placement.is_some() || !auto)
            .adaptive(auto)
            .asleep_until_first_call();
        let mut sites = SiteMap::for_image(image, domain.entry());
        let mut stopper = domain.stopper();
        domain.start()?;
        service.set_pid(domain.program_pid());
        // What the program may use: all of the run's CPUs (a single-threaded
        // program is placed on some of them, but the threads it creates
        // run on all; docs/threads.md).
        service.set_cpus(spec.all_cpus.map(|c| c.cpus()).unwrap_or_default());
        // The process tree (docs/processes.md): the root is this program.
        let processes = limits
            .processes
            .map_or(crate::procs::DEFAULT_PROCESSES, |p| p.min(crate::procs::MAX_PROCESSES as u64) as usize);
        let tree = Tree::new(domain.program_pid(), outside_ppid, processes, ids.0, t0)
            .with_window(shared)
            .with_memory(memory.clone());

        // Time limits stop the program the way a violation does. CPU time:
        // the tree's (below).
        let clocks = ThreadClocks::default();
        domain.join_clocks(&clocks);
        let program_clock = domain.cpu_clock();
        // The program's own CPU clocks (`clock()`, `getrusage`, `times`):
        // its threads' when they are the monitor's (KVM's vCPU threads),
        // never the ring workers'.
        service.set_program_cpu(match program_clock {
            CpuClock::Process(pid) => crate::service::ProgramCpu::Process(pid),
            CpuClock::RunThread => crate::service::ProgramCpu::Threads(clocks.clone()),
        });
        let shared = std::sync::Arc::new(Shared::new(service, Some(gate)));

        // The tree's CPU time (docs/policy.md, "cpu-time"): every image of
        // every process, their threads, and the monitor threads serving
        // them. The root adds its clocks (its workers; KVM: its vCPU
        // threads) and its image's host process here; each child process
        // and each exec'd image adds its own as it starts.
        tree.cpu().add_threads(&clocks);
        if let Some(m) = domain.cpu_meter() {
            tree.cpu().add_image(m);
        }
        // The root's current image (an `execve` of the root replaces it):
        // how to stop it.
        let now = std::sync::Arc::new(RootNow::new(stopper.clone()));
        let tree_cpu = tree.cpu().clone();
        let cpu_used = move || Some(tree_cpu.used());
        let time_now = now.clone();
        let times = TimeLimits::start(&limits, t0, cpu_used, move || time_now.stop_time());

        let mut signal_box = BootPage::of(domain.memory())?.signal_box();
        tree.join(tree.root(), stopper.clone(), BootPage::of(domain.memory())?.signal_box(), domain.meter());
        let procs_spec = std::sync::Arc::new(spec.clone());
        // Each turn runs one image of the root: the first, then each image
        // an `execve` of the root replaced it with (docs/processes.md,
        // "execve"), with the same service, gate, tree, limits and timers.
        let (ran, end, worker_stats) = loop {
            let exec_slot: ExecSlot = std::sync::Mutex::new(None);
            let forwarding_done = std::sync::atomic::AtomicBool::new(false);
            let mut threads = Threads::new(
                &domain,
                domain.memory(),
                &shared,
                stopper.clone(),
                placement.as_ref(),
                clocks.clone(),
                sites.clone(),
                spec.threads as usize,
            );
            threads.set_procs(Procs { tree: &tree, root: shared.clone(), spec: procs_spec.clone() });
            if D::CAN_EXEC {
                threads.set_exec(&exec_slot);
            }
            let interrupt_workers = || threads.interrupt_all();
            let poster = crate::signals::Poster {
                signals: signal_box,
                stopper: stopper.clone(),
                interrupt: &interrupt_workers,
            };
            let poster = &poster;
            let end_wake = crate::signals::EndWake::new();
            let ran = std::thread::scope(|s| {
                threads.start_main(s, worker);
                if let Some(h) = threads.main_stop_handle() {
                    tree.set_interrupt(tree.root(), h);
                }
                if cfg.forward_signals {
                    let (done, end) = (&forwarding_done, &end_wake);
                    let tree = &tree;
                    let route = move |sig: i32, code: i32| crate::signals::route(tree, sig, code);
                    s.spawn(move || crate::signals::forward_until(done, end, poster, &route));
                }
                {
                    let (done, timers) = (&forwarding_done, &*timers);
                    s.spawn(move || crate::timers::run_until(done, timers, poster));
                }
                // The tree's memory bound (docs/processes.md, "One memory
                // bound for the tree"): unparked at the end.
                let memory_watch = {
                    let (done, tree, root) = (&forwarding_done, &tree, &shared);
                    s.spawn(move || tree.watch_memory(root, done))
                };
                let _clock = (program_clock == CpuClock::RunThread).then(|| clocks.join_as_program_thread(0));
                // This thread runs the program (a vCPU) or waits for it, on the
                // program's CPUs for the run.
                if let Some(p) = &placement {
                    p.program.apply(0);
                }
                let ran = domain.run();
                if exec_slot.lock().map_or(true, |e| e.is_none()) {
                    // The run ends with its root: every other process goes too
                    // (orphans now: nobody is sent their SIGCHLD).
                    tree.ended(tree.root(), crate::tree::ended_of(&ran));
                    tree.stop_all();
                }
                forwarding_done.store(true, std::sync::atomic::Ordering::SeqCst);
                end_wake.wake();
                memory_watch.thread().unpark();
                // Wake the timer thread (it waits up to 100 ms for a change):
                // the run ends when the program does, not at its next tick.
                timers.with(|_| ());
                if let Some(p) = &placement {
                    p.restore();
                }
                threads.stop_all();
                ran
            });
            let (end, worker_stats, panicked, _failed) = threads.finish();
            drop(threads);
            if let Some(why) = panicked {
                return Err(RunError::Internal(format!("the ring worker panicked ({why})")));
            }
            let execed = exec_slot.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(next) = execed else { break (ran, end, worker_stats) };
            let next_domain = match &end {
                // Stopped by the policy (or a limit) while it exec'd: it ends here.
                WorkerEnd::Policy(_) => None,
                _ => now.exec_gap_over().then(|| root_exec_domain::<D>(&next, &tree)).flatten(),
            };
            let Some(d) = next_domain else {
                let killed = if matches!(end, WorkerEnd::Policy(_)) { ran } else { Ok(killed_by_sigkill()) };
                tree.ended(tree.root(), crate::tree::ended_of(&killed));
                tree.stop_all();
                break (killed, end, worker_stats);
            };
            // The old image is gone (its host process reaped by `run`); the
            // new one runs with the same pid, parent, service and gate.
            domain = d;
            let boot = BootPage::of(domain.memory())?;
            boot.set_spin_ns(crate::placement::spin_ns(placement.as_ref()));
            boot.set_check_local(&spec.check_local);
            boot.set_sig_ignored(next.sig_ignored);
            signal_box = boot.signal_box();
            stopper = domain.stopper();
            worker = Worker::new(domain.ring())
                .placed(placement.is_some() || !auto)
                .adaptive(auto)
                .asleep_until_first_call();
            sites = SiteMap::for_image(&next.image, domain.entry());
            if !tree.set_signals(tree.root(), stopper.clone(), signal_box, domain.meter()) {
                // Killed (or the run ended) while it exec'd.
                let killed = Ok(killed_by_sigkill());
                tree.ended(tree.root(), crate::tree::ended_of(&killed));
                tree.stop_all();
                break (killed, end, worker_stats);
            }
            domain.join_clocks(&clocks);
            domain.start()?;
            if let Some(m) = domain.cpu_meter() {
                tree.cpu().add_image(m);
            }
            if let CpuClock::Process(pid) = domain.cpu_clock() {
                shared.lock().service.set_program_cpu(crate::service::ProgramCpu::Process(pid));
            }
            now.swap(stopper.clone());
        };
        let shared = std::sync::Arc::try_unwrap(shared)
            .map_err(|_| RunError::Internal("a child process's service outlived the run".into()))?;
        let Served { mut service, gate } = shared.into_inner();
        let time_hit = times.finish();
        let ended = ran?;
        let words = BootPage::of(domain.memory())?.end_words();
        let mut gate = gate;

        // Why the gate stopped the program (it already said so on stderr).
        let mut stopped: Option<Stop> = match &end {
            WorkerEnd::Policy(stop) => Some(stop.clone()),
            _ => time_hit.and_then(|hit| gate.as_mut().map(|g| g.limit_hit(&hit))),
        };
        // A child process's stop ends the tree as the root's would.
        if stopped.is_none() {
            stopped = tree.take_stop();
        }
        // The libos stops a program that asks for memory beyond the bound
        // (ABORT_MEMORY, exit 137): record it as the limit hit it is.
        if let (None, WorkerEnd::Stopped | WorkerEnd::Policy(_), DomainEnd::Exited(code)) =
            (&stopped, &end, &ended)
        {
            let time_ns = t0.elapsed().as_nanos() as u64;
            if let Some(hit) = memory_limit_hit(&words, *code, &memory, domain.fixed_bytes(), time_ns) {
                stopped = gate.as_mut().map(|g| g.limit_hit(&hit));
            }
        }
        let (exit_code, reason) = outcome(&end, &ended, &words, stopped.as_ref());

        let mut local: Vec<u64> = words.local_counts.iter().map(|&c| u64::from(c)).collect();
        // `--stats` and the exit record total the tree: every child
        // process's calls are added to the root's, and each is listed.
        let children = tree.take_totals();
        let mut processes = vec![serde_json::json!({
            "pid": tree.root(),
            "forwarded": service.stats.per_nr.total(),
            "local": local.iter().sum::<u64>(),
        })];
        for &(pid, forwarded, local) in &children.processes {
            processes.push(serde_json::json!({ "pid": pid, "forwarded": forwarded, "local": local }));
        }
        for (nr, n) in children.forwarded.known() {
            service.stats.per_nr.add(nr, n);
        }
        service.stats.per_nr.add(u64::MAX, children.forwarded.other());
        service.stats.denied = service.stats.denied.saturating_add(children.denied);
        for (a, b) in local.iter_mut().zip(&children.local) {
            *a = a.saturating_add(*b);
        }
        if let Some(g) = gate.as_mut() {
            g.local_counts(local.iter().enumerate().map(|(nr, &c)| (nr as u64, c)));
            let (why, msg) = exit_words(&reason, stopped.as_ref());
            g.finish(exit_code, why, msg);
        }
        service.finish_reports();
        let input = StatsInput {
            backend: D::BACKEND,
            forwarded: service.stats.per_nr.clone(),
            local,
            // The libos counts every trapped call (served locally or not);
            // the worker counts the forwarded ones. The libos figure is
            // untrusted, but it is only a statistic.
            trapped: domain.trapped_calls().unwrap_or(worker_stats.trapped.max(words.trapped)),
            denied: service.stats.denied,
            wall_ns: t0.elapsed().as_nanos(),
            execute_only_enforced: xo.enforced,
            exit_code,
        };
        let mut json = stats::to_json(&input);
        if let Some(o) = json.as_object_mut() {
            for (key, value) in domain.stats(&worker_stats) {
                o.insert(key.into(), value);
            }
            o.insert("cpus".into(), placement.map_or(serde_json::Value::Null, |p| p.to_json()));
            o.insert("spin_preempted".into(), worker_stats.spin_preempted.into());
            o.insert("processes".into(), serde_json::Value::Array(processes));
        }
        if let Some(path) = &cfg.stats {
            let text = serde_json::to_string_pretty(&json).unwrap_or_default();
            std::fs::write(path, text + "\n")
                .map_err(|source| RunError::Stats { path: path.clone(), source })?;
        }
        drop(domain);
        Ok(RunOutcome { exit_code, reason, stats: json })
    }
}

/// How a root killed between its exec's point of no return and its new
/// image's start ended (as Linux's late exec failures: `SIGKILL`).
fn killed_by_sigkill() -> DomainEnd {
    DomainEnd::Fault { signo: libc::SIGKILL, addr: None, rip: None, code: None, report: None }
}

/// The new domain of an `execve` of the root (`None`, said on stderr: it
/// could not be built, and the root ends killed by `SIGKILL`).
fn root_exec_domain<D: Domain>(next: &Execed, tree: &Tree) -> Option<D> {
    let built = Image::parse(&next.image)
        .map_err(RunError::ImageRejected)
        .and_then(|i| D::exec_image(&i.elf, &next.spec, tree.root(), std::process::id()));
    match built {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "cabin: execve {}: building the new domain failed: {e}",
                String::from_utf8_lossy(&next.path)
            );
            None
        }
    }
}

/// The root process's current image, for the time limits: how to stop
/// it. A time limit that fires between two images is kept and stops the
/// next one as it starts. (The CPU time of the images an `execve` of the
/// root replaced stays in the tree's [`crate::watch::TreeCpu`].)
struct RootNow {
    stopper: std::sync::Mutex<std::sync::Arc<dyn crate::domain::Stopper>>,
    time_hit: std::sync::atomic::AtomicBool,
}

impl RootNow {
    fn new(stopper: std::sync::Arc<dyn crate::domain::Stopper>) -> RootNow {
        RootNow {
            stopper: std::sync::Mutex::new(stopper),
            time_hit: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A time limit fired: stop the current image (and any next one).
    fn stop_time(&self) {
        self.time_hit.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stopper.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stop(StopCause::TimeLimit);
    }

    /// Whether the root may start its next image (no time limit fired
    /// meanwhile).
    fn exec_gap_over(&self) -> bool {
        !self.time_hit.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn swap(&self, stopper: std::sync::Arc<dyn crate::domain::Stopper>) {
        *self.stopper.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stopper;
        if self.time_hit.load(std::sync::atomic::Ordering::SeqCst) {
            self.stop_time();
        }
    }
}

/// The exit status and reason of a run, from how the worker and the domain
/// ended, what the libos left in the boot page (untrusted: it only chooses
/// between the program's own ends) and the gate's stop; prints the one line
/// a person sees for it (a stop was already reported by the gate).
fn outcome(end: &WorkerEnd, ended: &DomainEnd, words: &EndWords, stopped: Option<&Stop>) -> (i32, EndReason) {
    if let Some(s) = stopped {
        return (
            s.exit_code,
            EndReason::Signal { signo: s.exit_code - 128, addr: None, rip: None, code: None },
        );
    }
    let violation = |msg: String, line: String| {
        eprintln!("cabin: {line}");
        (EXIT_PROTOCOL_VIOLATION, EndReason::ProtocolViolation(msg))
    };
    if let WorkerEnd::Violation(v) = end {
        let msg = v.to_string();
        let line = format!("ring protocol violation: {msg}; the program was killed");
        return violation(msg, line);
    }
    match ended {
        DomainEnd::Fault { signo, addr, rip, code, report } => {
            if let Some(line) = report {
                eprintln!("cabin: {line}");
            }
            (128 + signo, EndReason::Signal { signo: *signo, addr: *addr, rip: *rip, code: *code })
        }
        DomainEnd::Exited(EXIT_PROTOCOL_VIOLATION) if words.abort == ABORT_RING => {
            let line = format!("ring protocol violation: {LIBOS_RING_ABORT}; the program was stopped");
            violation(LIBOS_RING_ABORT.into(), line)
        }
        DomainEnd::Violation(msg) => {
            let line = format!("ring protocol violation: {msg}; the program was killed");
            violation(line.clone(), line)
        }
        DomainEnd::Exited(code) => (*code, EndReason::Exited(*code)),
    }
}

/// The trees of `view` and the program's starting directory (a view path
/// that must be a directory in the view).
fn view_policy(cfg: &RunConfig, view: &crate::config::View) -> Result<(FsPolicy, Vec<u8>), RunError> {
    if let Some(p) = cfg.allow_read.iter().chain(&cfg.allow_write).next() {
        return Err(RunError::View(format!(
            "--allow-read/--allow-write {} names a host path, and a view shows only what it binds; \
             help: bind it instead (--bind {}:{}:ro)",
            p.display(),
            p.display(),
            p.display()
        )));
    }
    let policy = FsPolicy::with_view(view)?;
    let cwd = match &view.chdir {
        None => b"/".to_vec(),
        Some(d) => {
            let b = d.as_os_str().as_encoded_bytes();
            if b.first() != Some(&b'/') {
                return Err(RunError::View(format!(
                    "--chdir {}: a view path must be absolute; help: write /{}",
                    d.display(),
                    d.display()
                )));
            }
            crate::service::fs::normalize(b)
        }
    };
    match policy.inspect(&cwd, true) {
        Ok((_, st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
        _ => {
            return Err(RunError::View(format!(
                "--chdir {}: not a directory in the view; help: name a directory under --root or a --bind",
                String::from_utf8_lossy(&cwd)
            )))
        }
    }
    Ok((policy, cwd))
}
