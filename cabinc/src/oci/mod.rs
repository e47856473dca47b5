//! `cabinc oci …` (and `cabin-runc …`): an OCI runtime with runc's command
//! line, as containerd's runc shim (io.containerd.runc.v2) drives it.
//!
//! One executable: `cabinc` acts as runc when its argv[0]'s file name is
//! `cabin-runc` (a symbolic link to cabinc), because the shim's
//! `BinaryName` / `--runc-binary` names ONE executable that takes runc's
//! command line at top level (docs/kubernetes.md).
//!
//! Life of a container:
//! - `create --bundle B --pid-file F ID` checks `B/config.json` into a
//!   [`spec::Plan`], builds the entrypoint through the image cache (so
//!   every error shows here, not later), writes `ROOT/ID/plan.json`, makes
//!   the fifo `ROOT/ID/exec.fifo` and starts the container's init: this
//!   executable again (`oci init DIR`), in a process group of its own,
//!   with the stdio the shim gave `create`. The init prepares the run and
//!   blocks opening the fifo for writing. `create` writes `state.json` and
//!   the pid file (the init's pid) and exits; the init is then the shim's.
//! - `start ID` opens the fifo for reading: the init's open returns, it
//!   writes one byte, `start` reads it and removes the fifo. The init runs
//!   the program confined (it is the monitor) and exits with its status.
//! - `kill ID SIG` signals the init (`--all`: its process group); the
//!   monitor passes SIGTERM, SIGINT, SIGHUP, SIGUSR1/2 to the program.
//! - `exec ID CMD` (or `--process FILE`) starts another init for that
//!   process (`oci init DIR --exec PLAN`, no fifo) in the container's view,
//!   with its policy and backend, in the init's process group.
//! - `delete ID` removes `ROOT/ID` (`--force` kills a live init first).

mod console;
mod rootfs;
pub mod spec;
mod state;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use cabin_monitor::{GateConfig, RunConfig, RunError};
use serde_json::json;

use spec::{BackendChoice, Plan, PolicySource};
use state::{Record, Status};

/// The OCI runtime spec version `state` reports.
const OCI_VERSION: &str = "1.0.2";

/// The name under which `cabinc` acts as runc (argv[0]'s file name).
pub const RUNC_NAME: &str = "cabin-runc";

/// runc's command line: global options, then a command.
#[derive(Debug, clap::Parser)]
#[command(disable_version_flag = true)]
pub struct RuncCli {
    /// State directory [default: /run/cabin-runc].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Append errors to FILE (the shim reads them from there).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// `text` or `json` lines in the --log file.
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: String,
    /// Accepted (Cabin makes no cgroup).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted (runc's rootless mode: Cabin needs no privilege either way).
    #[arg(long, global = true, value_name = "VALUE", hide = true)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<RuncCommand>,
}

/// The options `create` and `run` share.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The bundle: config.json and the rootfs [default: the current directory].
    #[arg(long, short = 'b', value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Write the init's pid to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to (with process.terminal).
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Accepted (Cabin does not pivot_root).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted (Cabin makes no session keyring).
    #[arg(long)]
    no_new_keyring: bool,
    /// Extra descriptors to pass (only 0 is supported).
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// The container id.
    id: String,
}

/// The options of `exec`.
#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The process (OCI `process` JSON: args, env, cwd, terminal, user).
    #[arg(long, short, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Write the process's pid to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Return once started instead of waiting.
    #[arg(long, short)]
    detach: bool,
    /// The working directory (with a command).
    #[arg(long)]
    cwd: Option<String>,
    /// The container id.
    id: String,
    /// The command (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum RuncCommand {
    /// Create a container: its init waits for `start`.
    Create(CreateArgs),
    /// Let a created container's program run.
    Start {
        /// The container id.
        id: String,
    },
    /// Print the container's state (runtime-spec JSON).
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal to the container's init (default SIGTERM).
    Kill {
        /// Signal every process of the container.
        #[arg(long, short)]
        all: bool,
        /// The container id.
        id: String,
        /// A number or a name (TERM, SIGTERM, 15).
        signal: Option<String>,
    },
    /// Remove a stopped container's state (`--force`: kill it first).
    Delete {
        /// Kill a live container first.
        #[arg(long, short)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// Create and start a container; without --detach, wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(long, short)]
        detach: bool,
    },
    /// List the container's processes.
    Ps {
        /// `table` or `json` (a list of pids).
        #[arg(long, short, default_value = "table")]
        format: String,
        /// The container id.
        id: String,
        /// ps(1) options (ignored).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print what this runtime supports (JSON, as `runc features`).
    Features,
    /// Run another program in a running container.
    Exec(ExecArgs),
    /// The container's init (started by `create`; not for direct use).
    #[command(hide = true)]
    Init {
        /// The container's state directory.
        dir: PathBuf,
        /// An exec'd process's plan (runs at once, removed once read).
        #[arg(long)]
        exec: Option<PathBuf>,
    },
    /// runc's other commands (exec, pause, resume, update, checkpoint, …): refused.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// Is this process `cabin-runc` (argv[0]'s file name)?
pub fn invoked_as_runc() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == RUNC_NAME)
}

/// Parses argv as runc's command line (`cabin-runc …`).
pub fn main_as_runc() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = RuncCli::command()
        .name(RUNC_NAME)
        .bin_name(RUNC_NAME)
        .try_get_matches()
        .and_then(|m| RuncCli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => run(&cli),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
    }
}

/// Runs one runc command; errors are one line on stderr and in `--log`, exit 1.
pub fn run(cli: &RuncCli) -> ExitCode {
    if cli.version {
        println!("{RUNC_NAME} version {}\nspec: {OCI_VERSION}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = &cli.command else {
        log_error(cli, &anyhow!("a command is needed; help: run `{RUNC_NAME} --help`"));
        return ExitCode::from(2);
    };
    let root = state::root_dir(cli.root.as_deref());
    let result = match command {
        RuncCommand::Create(a) => create(&root, a).map(|_| ExitCode::SUCCESS),
        RuncCommand::Start { id } => start(&root, id).map(|()| ExitCode::SUCCESS),
        RuncCommand::State { id } => print_state(&root, id),
        RuncCommand::Kill { all, id, signal } => kill(&root, id, signal.as_deref(), *all),
        RuncCommand::Delete { force, id } => delete(&root, id, *force),
        RuncCommand::Run { create: a, detach } => run_container(&root, a, *detach),
        RuncCommand::Ps { format, id, .. } => ps(&root, id, format),
        RuncCommand::Features => features(),
        RuncCommand::Exec(a) => exec(&root, a),
        RuncCommand::Init { dir, exec } => return init(dir, exec.as_deref()),
        RuncCommand::Other(words) => Err(anyhow!(
            "`{}` is not supported by {RUNC_NAME}; help: it serves create, start, state, kill, delete, run, \
             exec, ps and features (docs/kubernetes.md)",
            words.first().map_or("", String::as_str)
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log_error(cli, &e);
            ExitCode::from(1)
        }
    }
}

/// Prints `e` on stderr and appends it to `--log` (a JSON line with
/// `--log-format json`, which the shim reads back into its error).
fn log_error(cli: &RuncCli, e: &anyhow::Error) {
    crate::output::error(e);
    let Some(path) = &cli.log else { return };
    let msg = format!("{e:#}");
    let line = if cli.log_format == "json" {
        json!({ "level": "error", "msg": msg, "time": state::now_rfc3339() }).to_string()
    } else {
        format!("time=\"{}\" level=error msg={:?}", state::now_rfc3339(), msg)
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// Removes a half-made container directory unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The image cache: the user's ($XDG_CACHE_HOME or ~/.cache), else
/// /var/cache/cabin/images (containerd runs runtimes without HOME).
fn image_cache() -> Result<cabin_rewriter::cache::ImageCache> {
    use cabin_rewriter::cache::ImageCache;
    match cabin_rewriter::cache::default_dir() {
        Ok(d) => Ok(ImageCache::open(&d)?),
        Err(_) => Ok(ImageCache::open(Path::new("/var/cache/cabin/images"))?),
    }
}

/// The image the init runs: the entrypoint itself when it is a Cabin
/// image (the session checks its measurement), else a static ELF's image
/// from the cache (built there the first time). A dynamic ELF is refused.
fn image_for(plan: &Plan) -> Result<Vec<u8>> {
    use cabin_image::elf::ElfError;
    use cabin_image::image::{Image, ImageError};
    let bytes = rootfs::read_entrypoint(&plan.rootfs, &plan.entrypoint)?;
    match Image::parse(&bytes) {
        Err(ImageError::NoManifest) => {}
        Err(ImageError::Elf(ElfError::Dynamic)) => bail!(
            "process.args[0]: {} is a dynamically linked executable; help: Cabin runs static executables \
             (link with -static) and Cabin images (cabinc build)",
            plan.entrypoint
        ),
        Err(e) => bail!(
            "process.args[0]: {} is neither a static executable nor a Cabin image: {e}",
            plan.entrypoint
        ),
        Ok(_) => return Ok(bytes),
    }
    let cache = image_cache().context("the image cache")?;
    match cache.get_or_build(&bytes) {
        Ok(c) => Ok(c.image),
        Err(cabin_rewriter::cache::CacheError::Build(e)) => {
            bail!("process.args[0]: cannot build {}: {e}", plan.entrypoint)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("process.args[0]: {}", plan.entrypoint))),
    }
}

/// `create`: returns the init's pid.
fn create(root: &Path, a: &CreateArgs) -> Result<i32> {
    if a.preserve_fds != 0 {
        bail!(
            "--preserve-fds {}: not supported; help: Cabin passes the container stdio only",
            a.preserve_fds
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode_0700()
        .create(root)
        .with_context(|| format!("cannot make the state root {}", root.display()))?;
    let d = state::dir(root, &a.id)?;
    match std::fs::create_dir(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!("container with id {} exists", a.id),
        Err(e) => bail!("cannot make {}: {e}", d.display()),
    }
    let mut cleanup = Cleanup(Some(d.clone()));
    let bundle = match &a.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().context("the current directory")?,
    };
    let bundle = std::fs::canonicalize(&bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    let (plan, annotations) = spec::load(&bundle)?;
    image_for(&plan)?;
    // The policy and limits too, so that their errors show here.
    run_config(&plan)?;
    state::write_atomically(&d.join(state::PLAN), &serde_json::to_vec_pretty(&plan)?)?;
    let fifo = std::ffi::CString::new(d.join(state::FIFO).into_os_string().into_encoded_bytes())
        .map_err(|_| anyhow!("a NUL in the state path"))?;
    // SAFETY: mkfifo reads the NUL-terminated path, alive for the call.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } != 0 {
        bail!("cannot make the fifo in {}: {}", d.display(), std::io::Error::last_os_error());
    }
    let child = spawn_init(&d, None, &plan, a.console_socket.as_deref(), None)?;
    let pid = child.id() as i32;
    let Some((start_time, _)) = state::proc_start(pid) else {
        // SAFETY: kill(2) of the init just started; no memory involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        bail!("cannot read the start time of the container's init (pid {pid})");
    };
    let rec = Record {
        id: a.id.clone(),
        bundle,
        rootfs: plan.rootfs.clone(),
        pid,
        start_time,
        created: state::now_rfc3339(),
        annotations,
    };
    let written =
        state::write_atomically(&d.join(state::STATE), &serde_json::to_vec_pretty(&rec)?).and_then(|()| {
            match &a.pid_file {
                Some(f) => state::write_atomically(&absolute(f)?, pid.to_string().as_bytes()),
                None => Ok(()),
            }
        });
    if let Err(e) = written {
        // SAFETY: kill(2) of the init just started; no memory involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(e);
    }
    cleanup.0 = None;
    Ok(pid)
}

/// Starts an init for `plan`: `oci init DIR` (the container's, which
/// waits on the fifo) or `oci init DIR --exec PLAN` (an `exec`'d process,
/// which runs at once). A terminal: the slave is its stdio and controlling
/// terminal (a session of its own, so also a process group of its own),
/// the master goes to the console socket. Else the caller's stdio (the
/// shim's), and a process group: its own, or `join`'s (the container's
/// init, so `kill --all` reaches an exec'd process too).
fn spawn_init(
    d: &Path,
    exec_plan: Option<&Path>,
    plan: &Plan,
    console_socket: Option<&Path>,
    join: Option<i32>,
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(RUNC_NAME).arg("init").arg(d);
    if let Some(p) = exec_plan {
        cmd.arg("--exec").arg(p);
    }
    let master = match (plan.terminal, console_socket) {
        (true, Some(socket)) => {
            let (master, slave) = console::open_pty()?;
            cmd.stdin(slave.try_clone()?).stdout(slave.try_clone()?).stderr(slave);
            // SAFETY: between fork and exec the closure calls only setsid
            // and ioctl, both async-signal-safe, and touches no memory of
            // the parent's.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some((master, socket.to_path_buf()))
        }
        (true, None) => bail!("process.terminal: a terminal needs --console-socket"),
        (false, _) => {
            cmd.process_group(join.unwrap_or(0));
            None
        }
    };
    let child = match cmd.spawn() {
        Ok(c) => c,
        // The container's group may be gone (or in another session): a group of its own.
        Err(_) if join.is_some() && !plan.terminal => cmd.process_group(0).spawn()?,
        Err(e) => return Err(anyhow!("cannot start the container's init ({}): {e}", exe.display())),
    };
    if let Some((master, socket)) = master {
        if let Err(e) = console::send_master(&socket, &master) {
            // SAFETY: kill(2) of the init just started; no memory involved.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            return Err(e);
        }
    }
    Ok(child)
}

/// `exec`: runs another program in a running container: a new confined
/// run in the container's view, with the container's policy and backend,
/// and the process of `--process FILE` (or the command words): its args,
/// env, cwd, terminal. Its pid goes to `--pid-file`; without `--detach`,
/// `exec` waits and passes its status.
fn exec(root: &Path, a: &ExecArgs) -> Result<ExitCode> {
    let (d, rec) = state::load(root, &a.id)?;
    if state::status(&d, &rec) != Status::Running {
        bail!("cannot exec in a container that is not running");
    }
    let text = std::fs::read(d.join(state::PLAN)).context("the container's plan")?;
    let mut plan: Plan = serde_json::from_slice(&text).context("the container's plan")?;
    let process: spec::Process = match &a.process {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?
        }
        None if !a.command.is_empty() => spec::Process {
            args: a.command.clone(),
            env: plan.env.clone(),
            cwd: a.cwd.clone().unwrap_or_else(|| plan.cwd.clone()),
            ..Default::default()
        },
        None => bail!("exec: a command or --process FILE is needed"),
    };
    spec::apply_process(&mut plan, &process)?;
    image_for(&plan)?;
    run_config(&plan)?;
    let name = format!("exec-{}.json", std::process::id());
    let plan_file = d.join(&name);
    state::write_atomically(&plan_file, &serde_json::to_vec_pretty(&plan)?)?;
    let mut child = match spawn_init(&d, Some(&plan_file), &plan, a.console_socket.as_deref(), Some(rec.pid))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&plan_file);
            return Err(e);
        }
    };
    let pid = child.id() as i32;
    if let Some(f) = &a.pid_file {
        state::write_atomically(&absolute(f)?, pid.to_string().as_bytes())?;
    }
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// `path` made absolute against the current directory.
fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

/// `DirBuilder` with mode 0700.
trait Mode0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl Mode0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// How long `start` waits for the init to open the fifo.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `start`: releases the init.
fn start(root: &Path, id: &str) -> Result<()> {
    let (d, rec) = state::load(root, id)?;
    match state::status(&d, &rec) {
        Status::Created => {}
        Status::Running => bail!("cannot start an already running container"),
        Status::Stopped => bail!("cannot start a container that has stopped"),
    }
    let fifo = d.join(state::FIFO);
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .with_context(|| format!("cannot open {}", fifo.display()))?;
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + START_WAIT;
    loop {
        let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll reads and writes the one pollfd, alive for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            // SAFETY: read writes at most 1 byte into `b`.
            let r = unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            if r == 1 {
                break;
            }
        }
        if !state::alive(&rec) {
            let _ = std::fs::remove_file(&fifo);
            bail!("the container's init exited before start (its stderr says why)");
        }
        if std::time::Instant::now() > deadline {
            bail!("the container's init did not answer within {}s", START_WAIT.as_secs());
        }
    }
    std::fs::remove_file(&fifo).with_context(|| format!("cannot remove {}", fifo.display()))?;
    Ok(())
}

/// The runtime-spec state of container `id`.
fn state_json(root: &Path, id: &str) -> Result<serde_json::Value> {
    let (d, rec) = state::load(root, id)?;
    let status = state::status(&d, &rec);
    Ok(json!({
        "ociVersion": OCI_VERSION,
        "id": rec.id,
        "status": status.as_str(),
        "pid": if status == Status::Stopped { 0 } else { rec.pid },
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
        "annotations": rec.annotations,
    }))
}

fn print_state(root: &Path, id: &str) -> Result<ExitCode> {
    let v = state_json(root, id)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

/// A signal by number or name (`9`, `KILL`, `SIGKILL`).
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        "WINCH" => libc::SIGWINCH,
        _ => bail!("invalid signal {s:?}; help: a number (15) or a name (TERM, SIGKILL)"),
    })
}

/// Sends `sig` to the init, or with `all` to its process group.
fn signal(rec: &Record, sig: i32, all: bool) -> Result<()> {
    let target = if all { -rec.pid } else { rec.pid };
    // SAFETY: kill(2): no memory involved.
    if unsafe { libc::kill(target, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            bail!("cannot signal container {}: {e}", rec.id);
        }
    }
    Ok(())
}

fn kill(root: &Path, id: &str, sig: Option<&str>, all: bool) -> Result<ExitCode> {
    let sig = parse_signal(sig.unwrap_or("SIGTERM"))?;
    let (d, rec) = state::load(root, id)?;
    if state::status(&d, &rec) == Status::Stopped {
        bail!("container not running");
    }
    signal(&rec, sig, all)?;
    Ok(ExitCode::SUCCESS)
}

/// How long `delete --force` waits for a killed init to go.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn delete(root: &Path, id: &str, force: bool) -> Result<ExitCode> {
    let d = state::dir(root, id)?;
    let (d, rec) = match state::load(root, id) {
        Ok(x) => x,
        // A directory without a record: a `create` that died half-way;
        // with --force, also one whose record is damaged (its init, if
        // any, cannot be known: nothing is signalled).
        Err(_) if d.is_dir() && (force || !d.join(state::STATE).exists()) => {
            std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    match state::status(&d, &rec) {
        Status::Stopped => {}
        Status::Running if !force => {
            bail!("cannot delete container {id} that is not stopped: running; help: kill it first or use --force")
        }
        // A created container never ran: deleting it ends its init (as runc does).
        Status::Created | Status::Running => {
            signal(&rec, libc::SIGKILL, true)?;
            let deadline = std::time::Instant::now() + KILL_WAIT;
            while state::alive(&rec) {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "container {id}'s init (pid {}) did not end within {}s of SIGKILL",
                        rec.pid,
                        KILL_WAIT.as_secs()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn run_container(root: &Path, a: &CreateArgs, detach: bool) -> Result<ExitCode> {
    let pid = create(root, a)?;
    if let Err(e) = start(root, &a.id) {
        let _ = delete(root, &a.id, true);
        return Err(e);
    }
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child (create spawned it), writing `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if r != pid {
        1
    } else if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    };
    delete(root, &a.id, true)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn ps(root: &Path, id: &str, format: &str) -> Result<ExitCode> {
    let (d, rec) = state::load(root, id)?;
    let pids =
        if state::status(&d, &rec) == Status::Stopped { Vec::new() } else { state::descendants(rec.pid) };
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("PID");
            for p in pids {
                println!("{p}");
            }
        }
        f => bail!("invalid format {f:?}; help: --format table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

fn features() -> Result<ExitCode> {
    let v = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw"],
        "linux": {
            "namespaces": [],
            "capabilities": [],
            "cgroup": { "v1": false, "v2": false, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE",
                            "SCMP_ACT_NOTIFY"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
                              "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": {
            "dev.cabin.runtime": "cabin",
            "dev.cabin.version": env!("CARGO_PKG_VERSION")
        }
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

/// The RunConfig of a plan (policy loaded, limits and the view applied).
fn run_config(plan: &Plan) -> Result<(RunConfig, BackendChoice)> {
    let (read, write) =
        if spec::MONITOR_SERVES_VIEWS { (Vec::new(), Vec::new()) } else { plan.allowed_trees() };
    let mut policy = match &plan.policy {
        PolicySource::None => None,
        PolicySource::File(f) => Some(
            crate::policy::load(f).map_err(|e| anyhow!("annotations.{}: {e}", spec::ANNOTATION_POLICY))?,
        ),
        PolicySource::Seccomp(v) => Some(
            cabin_policy::oci::import("linux.seccomp", &v.to_string())
                .map_err(|e| anyhow!("linux.seccomp: {e}"))?
                .0,
        ),
    };
    let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    if let Some(p) = &mut policy {
        if spec::MONITOR_SERVES_VIEWS && !p.view.is_empty() {
            bail!(
                "annotations.{}: the policy has a [view], and a container's view is its root and mounts; \
                 help: drop [view] from the policy",
                spec::ANNOTATION_POLICY
            );
        }
        if spec::MONITOR_SERVES_VIEWS && !(p.paths.read.is_empty() && p.paths.write.is_empty()) {
            bail!(
                "annotations.{}: the policy's [paths] read/write name host trees, and a container sees its \
                 view only; help: drop them and bind-mount what the program needs",
                spec::ANNOTATION_POLICY
            );
        }
        p.add_paths(&read, &write);
        p.limits.open_files = min(p.limits.open_files, plan.open_files);
        p.limits.processes = min(p.limits.processes, plan.processes);
        p.limits.file_size = min(p.limits.file_size, plan.file_size);
        let cpu = plan.cpu_seconds.map(std::time::Duration::from_secs);
        p.limits.cpu_time = match (p.limits.cpu_time, cpu) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    let memory = min(Some(plan.memory).filter(|&m| m > 0), policy.as_ref().and_then(|p| p.limits.memory));
    let mut env = policy.as_ref().map(|p| p.env.resolve(|_| None)).unwrap_or_default();
    env.extend(plan.env.iter().cloned());
    let start = cabin_policy::trace::StartInfo {
        image: plan.entrypoint.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        args: plan.args.clone(),
        unix_time_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        ..Default::default()
    };
    let cfg = RunConfig {
        args: plan.args.clone(),
        env,
        allow_read: policy.as_ref().map_or(read, |p| p.paths.read.clone()),
        allow_write: policy.as_ref().map_or(write, |p| p.paths.write.clone()),
        allow_set_id: policy.as_ref().is_some_and(|p| p.paths.set_id),
        network: policy.as_ref().map(|p| p.network.clone()).unwrap_or_default(),
        exec_images_only: policy.as_ref().is_some_and(|p| p.paths.exec_images_only),
        quiet: true,
        path_hint: true,
        arena_bytes: memory.unwrap_or(0),
        forward_signals: true,
        gate: GateConfig { policy, trace: Default::default(), start },
        view: spec::MONITOR_SERVES_VIEWS.then(|| plan.view()),
        ..RunConfig::default()
    };
    Ok((cfg, plan.backend))
}

/// The container's init: prepares the run, waits for `start` on the
/// fifo, runs the program confined and exits with its status (125 for an
/// error of its own, as `cabinc run`).
fn init(dir: &Path, exec_plan: Option<&Path>) -> ExitCode {
    let fail = |e: anyhow::Error| {
        crate::output::error(&e);
        ExitCode::from(crate::run::EXIT_CABINC_ERROR)
    };
    let prepared = (|| -> Result<(Vec<u8>, RunConfig, BackendChoice)> {
        let file = exec_plan.map_or_else(|| dir.join(state::PLAN), Path::to_path_buf);
        let text = std::fs::read(&file).context("the container's plan")?;
        if exec_plan.is_some() {
            // Read once: exec'd processes (probes) leave no file behind.
            let _ = std::fs::remove_file(&file);
        }
        let plan: Plan = serde_json::from_slice(&text).context("the container's plan")?;
        let image = image_for(&plan)?;
        let (cfg, backend) = run_config(&plan)?;
        Ok((image, cfg, backend))
    })();
    let (image, cfg, backend) = match prepared {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    // Blocks until `start` opens the fifo for reading (an exec'd process runs at once).
    let released = if exec_plan.is_some() {
        Ok(())
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(state::FIFO))
            .and_then(|mut f| f.write_all(b"0"))
    };
    if let Err(e) = released {
        return fail(anyhow!("waiting for start: {e}"));
    }
    let backend = match backend {
        BackendChoice::Kvm => BackendChoice::Kvm,
        BackendChoice::Process => BackendChoice::Process,
        BackendChoice::Auto if cabin_kvm::usable().is_ok() => BackendChoice::Kvm,
        BackendChoice::Auto => BackendChoice::Process,
    };
    let result = match backend {
        BackendChoice::Kvm => cabin_kvm::run(&image, &cfg),
        _ => cabin_process::run(&image, &cfg),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code.clamp(0, 255) as u8),
        Err(e @ (RunError::ImageRejected(_) | RunError::InvalidImage(_))) => {
            crate::output::error(&anyhow::Error::new(e));
            ExitCode::from(126)
        }
        Err(e) => fail(anyhow::Error::new(e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_parse() {
        assert_eq!(super::parse_signal("9").ok(), Some(libc::SIGKILL));
        assert_eq!(super::parse_signal("SIGTERM").ok(), Some(libc::SIGTERM));
        assert_eq!(super::parse_signal("term").ok(), Some(libc::SIGTERM));
        assert!(super::parse_signal("0").is_err());
        assert!(super::parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        super::RuncCli::command().debug_assert();
    }
}
