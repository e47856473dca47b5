//! `cabin-policy`: the Cabin policy language — what a confined program may
//! do — and the words of what it did.
//!
//! An operator writes a versioned TOML file (`--policy FILE`, described in
//! docs/policy.md); [`Policy::parse`] checks it, rejecting unknown keys and
//! bad values with `file:line:column`, and [`Policy::compile`] turns it into a
//! [`CompiledPolicy`] whose [`CompiledPolicy::decide`] answers, for one call
//! number and its six arguments, allow / deny with an errno / kill, or — in
//! complain mode — what it would have done. Calls without argument rules are
//! decided by one lookup in a 512-entry table.
//!
//! Who calls it: `cabinc policy …` (check, explain, import, generate), and the
//! monitor's gate (`cabin_monitor::gate`) once per forwarded or trapped call.
//! This crate is pure logic, kept apart from the code that handles hostile
//! input: it never touches the confined program, files other than the ones it
//! is asked to read, or the process state, and uses no libc.
//!
//! - [`names`]: x86-64 call numbers and names (a view of the one system-call
//!   table, `cabin_abi::syscalls`, which also says which calls the libos
//!   serves inside the domain); [`groups`]: `@file-read` & co.
//! - [`file`]: the TOML form and its checks; [`render`]: writing it back.
//! - [`compile`]: the decision table; [`denial`]: the once-per-call message.
//! - [`explain`]: a policy in plain words; [`oci`]: Docker/OCI seccomp import;
//!   [`generate`]: the least policy for a recorded run; [`probe`]: calls that
//!   exercise every rule; [`sites`]: call sites a policy refuses.
//! - [`limits`]: what `[limits]` means (open files, bytes written, file size,
//!   the memory bound, the words of a hit); [`per_call`]: state kept per
//!   call number, bounded.
//! - [`net`]: `[network]`: the addresses, unix socket paths and abstract
//!   names a program may connect to or listen on (default: none).
//! - [`trace`]: trace and audit records and their decoder; [`note`]: what the
//!   syscall service tells the gate about a call (path refusals, limit hits).

pub mod compile;
pub mod denial;
pub mod errno;
pub mod explain;
pub mod file;
pub mod generate;
pub mod groups;
pub mod limits;
pub mod names;
pub mod net;
pub mod note;
pub mod oci;
pub mod per_call;
pub mod probe;
pub mod render;
pub mod sites;
pub mod trace;
pub mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use compile::{CompiledPolicy, Decision, Origin, Verdict};
pub use denial::DenialReporter;
pub use file::PolicyError;

/// The policy format version this code reads and writes.
pub const VERSION: u32 = 1;

/// Whether refusals are enforced or only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Deny and kill as the policy says.
    #[default]
    Enforce,
    /// Log what would have been refused, and allow it.
    Complain,
}

impl Mode {
    /// The word used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Complain => "complain",
        }
    }
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Serve it.
    Allow,
    /// Return `-errno` without serving it.
    Deny(i32),
    /// End the program with 159 (128 + SIGSYS), as a seccomp kill does.
    Kill,
}

impl Action {
    /// "allow", "deny with EPERM", "kill".
    pub fn describe(self) -> String {
        match self {
            Action::Allow => "allow".into(),
            Action::Deny(e) => format!("deny with {}", errno::name_or_number(e)),
            Action::Kill => "kill".into(),
        }
    }
}

/// Exit status of a program ended by a `kill` decision (128 + SIGSYS).
pub const KILL_EXIT_CODE: i32 = 159;

/// Exit status when a limit stops the program (128 + SIGKILL, as the
/// kernel's OOM killer or a `timeout -s KILL` would leave it).
pub const LIMIT_EXIT_CODE: i32 = 137;

/// The errno of the default action when the file names none.
pub const DEFAULT_ERRNO: i32 = 38; // ENOSYS
/// The errno of the `deny` list when the file names none.
pub const DEFAULT_DENY_ERRNO: i32 = 1; // EPERM

/// A place in the policy file, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// 1-based line (0 when the item did not come from a file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One entry of an allow / deny / kill list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A single call, by number.
    Syscall(u64),
    /// A named group.
    Group(&'static groups::Group),
}

impl Entry {
    /// The call numbers this entry covers.
    pub fn numbers(&self) -> Vec<u64> {
        match self {
            Entry::Syscall(nr) => vec![*nr],
            Entry::Group(g) => g.members.iter().filter_map(|m| names::number(m)).collect(),
        }
    }

    /// How the entry is written in a policy file: a name, `@group` or a number.
    pub fn spelling(&self) -> String {
        match self {
            Entry::Syscall(nr) => match names::name(*nr) {
                Some(n) => n.to_string(),
                None => nr.to_string(),
            },
            Entry::Group(g) => format!("@{}", g.name),
        }
    }
}

/// A list entry and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The entry.
    pub entry: Entry,
    /// Where.
    pub loc: Loc,
}

/// Comparison of one argument against a value (in policy files: `eq`, `ne`,
/// `lt`, `le`, `gt`, `ge`, `masked-eq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// `arg == value`
    Eq,
    /// `arg != value`
    Ne,
    /// `arg < value` (unsigned)
    Lt,
    /// `arg <= value` (unsigned)
    Le,
    /// `arg > value` (unsigned)
    Gt,
    /// `arg >= value` (unsigned)
    Ge,
    /// `arg & mask == value`
    MaskedEq,
}

impl Op {
    /// The word used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::MaskedEq => "masked-eq",
        }
    }
}

/// One argument condition of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    /// Argument index, 0..=5.
    pub arg: u8,
    /// Comparison.
    pub op: Op,
    /// Mask for [`Op::MaskedEq`] (all ones otherwise).
    pub mask: u64,
    /// Value compared against.
    pub value: u64,
}

impl Cond {
    /// Whether `args` satisfy the condition. Comparisons are on the full
    /// 64-bit register values, unsigned, as seccomp does.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        let a = args[usize::from(self.arg) % 6];
        match self.op {
            Op::Eq => a == self.value,
            Op::Ne => a != self.value,
            Op::Lt => a < self.value,
            Op::Le => a <= self.value,
            Op::Gt => a > self.value,
            Op::Ge => a >= self.value,
            Op::MaskedEq => a & self.mask == self.value,
        }
    }

    /// `arg2 & 0x3 == 0x0`, `arg0 != 0x28`.
    pub fn describe(&self) -> String {
        let sym = match self.op {
            Op::Eq | Op::MaskedEq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        };
        if self.op == Op::MaskedEq {
            format!("arg{} & {:#x} {} {:#x}", self.arg, self.mask, sym, self.value)
        } else {
            format!("arg{} {} {:#x}", self.arg, sym, self.value)
        }
    }
}

/// A per-call rule: when every condition holds, take `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The call.
    pub nr: u64,
    /// What to do when the conditions hold.
    pub action: Action,
    /// All must hold (none: the rule always applies).
    pub conds: Vec<Cond>,
    /// Free text from the file.
    pub comment: Option<String>,
    /// Where the rule starts.
    pub loc: Loc,
}

/// Filesystem trees and files the program may see: a directory is a tree
/// (everything below it), anything else a file grant (that object only;
/// decided by the monitor at start from what the path names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    /// Read-only trees and files (`--allow-read`).
    pub read: Vec<PathBuf>,
    /// Read-write trees and files (`--allow-write`).
    pub write: Vec<PathBuf>,
    /// `set-id = true`: the program may make set-uid/set-gid files and
    /// `chown` to any owner the monitor's user may (default: never; owners
    /// only its own; docs/policy.md).
    pub set_id: bool,
    /// `exec = "images"`: `execve` runs Cabin images only; a plain static
    /// executable is `ENOEXEC` (default `"any"`: built through the image
    /// cache; docs/processes.md).
    pub exec_images_only: bool,
}

/// Resource limits; `None` means no limit beyond the backend's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory the program may map.
    pub memory: Option<u64>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
    /// Threads at once (`threads`): creating one more is `EAGAIN`, as
    /// Linux answers at `RLIMIT_NPROC` (at most, and by default,
    /// `cabin_abi::thread::MAX_THREADS`).
    pub threads: Option<u64>,
    /// Processes of the confined tree at once, the root and zombies
    /// included (`processes`; default 64, at most 1024: docs/processes.md).
    /// The fork that would make one more stops the tree.
    pub processes: Option<u64>,
    /// CPU time.
    pub cpu_time: Option<Duration>,
    /// Wall-clock time.
    pub wall_time: Option<Duration>,
    /// Total bytes written through any descriptor.
    pub bytes_written: Option<u64>,
    /// Largest file the program may create or extend.
    pub file_size: Option<u64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// The program's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// Variables set to fixed values.
    pub set: BTreeMap<String, String>,
    /// Variables copied from the environment of `cabinc run`, when present.
    pub pass: Vec<String>,
}

impl Env {
    /// `KEY=VALUE` strings for the program: `pass` first (from `host`), then
    /// `set`, which wins.
    pub fn resolve(&self, host: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for k in &self.pass {
            if let Some(v) = host(k) {
                out.insert(k.clone(), v);
            }
        }
        for (k, v) in &self.set {
            out.insert(k.clone(), v.clone());
        }
        out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// A checked policy, as written (lists keep their groups), ready to compile,
/// explain or write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from (a path, or a description), for messages.
    pub source: String,
    /// `sha256:<hex>` of the file's bytes (empty for a policy built in memory).
    pub digest: String,
    /// Enforce or complain.
    pub mode: Mode,
    /// Action for calls no list or rule names.
    pub default: Action,
    /// `[syscalls] allow`.
    pub allow: Vec<ListEntry>,
    /// `[syscalls] deny`.
    pub deny: Vec<ListEntry>,
    /// errno returned for the `deny` list.
    pub deny_errno: i32,
    /// `[syscalls] kill`.
    pub kill: Vec<ListEntry>,
    /// `[[rule]]`s, in file order.
    pub rules: Vec<Rule>,
    /// `[paths]`.
    pub paths: Paths,
    /// `[limits]`.
    pub limits: Limits,
    /// `[network]` (default: no network). `cabinc run` merges
    /// `--allow-connect`/`--allow-listen` into it and hands the result to
    /// the monitor as `RunConfig::network` (docs/networking.md).
    pub network: net::NetPolicy,
    /// `[env]`.
    pub env: Env,
    /// `[view]`: a view of the file system (docs/views.md); empty when the
    /// policy has none.
    pub view: view::ViewSpec,
    /// Things that are allowed but probably not meant (shown by `check`).
    pub warnings: Vec<String>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            source: "(built-in)".into(),
            digest: String::new(),
            mode: Mode::Enforce,
            default: Action::Deny(DEFAULT_ERRNO),
            allow: Vec::new(),
            deny: Vec::new(),
            deny_errno: DEFAULT_DENY_ERRNO,
            kill: Vec::new(),
            rules: Vec::new(),
            paths: Paths::default(),
            limits: Limits::default(),
            network: net::NetPolicy::default(),
            env: Env::default(),
            view: view::ViewSpec::default(),
            warnings: Vec::new(),
        }
    }
}

impl Policy {
    /// Checks `text` (the contents of `source`) and returns the policy.
    pub fn parse(source: &str, text: &str) -> Result<Policy, PolicyError> {
        file::parse(source, text)
    }

    /// Reads and checks the policy file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
        Policy::parse(&path.display().to_string(), &text)
    }

    /// Builds the decision table.
    pub fn compile(&self) -> CompiledPolicy {
        CompiledPolicy::new(self)
    }

    /// Adds `--allow-read` / `--allow-write` directories (the command-line
    /// shorthands for `[paths]`).
    pub fn add_paths(&mut self, read: &[PathBuf], write: &[PathBuf]) {
        self.paths.read.extend(read.iter().cloned());
        self.paths.write.extend(write.iter().cloned());
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
