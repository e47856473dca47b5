//! A bundle's `config.json` (OCI runtime spec), the fields Cabin uses, and
//! the [`Plan`] it turns into: what the container's init runs and how.
//!
//! Unknown fields are ignored (serde's default); fields Cabin cannot honour
//! are refused with a one-line error naming the field (`process.user:
//! …`). The mapping of `root` and `mounts` onto what the monitor offers
//! lives in [`Plan::view`] (a `cabin_monitor::View`) and, until the
//! monitor serves views, [`Plan::allowed_trees`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The top of `config.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub process: Option<Process>,
    pub root: Option<Root>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
    #[serde(default)]
    pub hooks: Option<serde_json::Value>,
}

/// `process`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    // `noNewPrivileges` is accepted and not read: a confined program never
    // gains privileges (no set-id execution, no capabilities).
}

/// `process.user`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

/// One of `process.rlimits`.
#[derive(Debug, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    /// The soft limit is the bound the program meets (`hard` is not read).
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Deserialize)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

/// One of `mounts`.
#[derive(Debug, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// `linux` (the parts Cabin reads).
#[derive(Debug, Default, Deserialize)]
pub struct Linux {
    #[serde(default)]
    pub seccomp: Option<serde_json::Value>,
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// `linux.resources`.
#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub memory: Option<MemoryResources>,
}

/// `linux.resources.memory`.
#[derive(Debug, Default, Deserialize)]
pub struct MemoryResources {
    #[serde(default)]
    pub limit: Option<i64>,
}

/// The annotation naming a Cabin policy file (TOML, docs/policy.md).
pub const ANNOTATION_POLICY: &str = "dev.cabin.policy";
/// The annotation choosing the backend: `kvm`, `process` or `auto`.
pub const ANNOTATION_BACKEND: &str = "dev.cabin.backend";

/// The backend a container runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// kvm where /dev/kvm is usable, else process.
    Auto,
    /// A KVM micro-VM.
    Kvm,
    /// A seccomp-confined child process.
    Process,
}

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// No policy: the monitor's defaults (path rules only).
    None,
    /// `dev.cabin.policy`: a policy file on the host.
    File(PathBuf),
    /// `linux.seccomp`, imported as `cabinc policy import --from oci-seccomp` does.
    Seccomp(serde_json::Value),
}

/// A bind mount the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The host path.
    pub source: PathBuf,
    /// Where the container sees it.
    pub destination: String,
    /// `ro` among the options.
    pub readonly: bool,
}

/// A tmpfs mount the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Where the container sees it.
    pub destination: String,
    /// `size=` among the options (bytes), else the monitor's default.
    pub size: u64,
}

/// Whether the container runs in a [`cabin_monitor::View`] (its rootfs as
/// `/`, binds and tmpfs at their destinations): true since the monitor
/// serves views (s26-views, 6155de8). `false` would run it on allowed
/// trees instead ([`Plan::allowed_trees`], host paths; tmpfs refused), as
/// before views existed.
pub const MONITOR_SERVES_VIEWS: bool = true;

/// Everything the container's init needs, checked: written by `create`
/// into the state directory (plan.json), read by the init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The rootfs on the host (absolute).
    pub rootfs: PathBuf,
    /// `root.readonly`.
    pub readonly: bool,
    /// `process.args` (args[0] as the spec gives it: argv[0] of the program).
    pub args: Vec<String>,
    /// The entrypoint, a path in the rootfs (args[0], or found along PATH).
    pub entrypoint: String,
    /// `process.env`.
    pub env: Vec<String>,
    /// `process.terminal`: the program's stdio is a new terminal whose
    /// master goes to `--console-socket`.
    pub terminal: bool,
    /// `process.cwd`.
    pub cwd: String,
    /// The memory bound in bytes (0: the default), the smallest of
    /// RLIMIT_AS, RLIMIT_DATA and linux.resources.memory.limit.
    pub memory: u64,
    /// RLIMIT_NOFILE, carried into the policy's `[limits] open-files` when there is a policy.
    pub open_files: Option<u64>,
    /// RLIMIT_NPROC, carried into `[limits] processes` when there is a policy.
    pub processes: Option<u64>,
    /// RLIMIT_CPU (seconds), carried into `[limits] cpu-time` when there is a policy.
    #[serde(default)]
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_FSIZE (bytes), carried into `[limits] file-size` when there is a policy.
    #[serde(default)]
    pub file_size: Option<u64>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// tmpfs mounts (not the standard ones).
    pub tmpfs: Vec<TmpfsMount>,
    /// The policy.
    pub policy: PolicySource,
    /// The backend.
    pub backend: BackendChoice,
}

/// Mount destinations containerd's runc shim (and Kubernetes) always add
/// for a Linux container, with the types they come with: Cabin's program
/// gets its /proc answers, devices and IPC from the monitor, so these are
/// ignored silently.
const STANDARD_MOUNTS: &[(&str, &[&str])] = &[
    ("/proc", &["proc"]),
    ("/dev", &["tmpfs"]),
    ("/dev/pts", &["devpts"]),
    ("/dev/shm", &["tmpfs", "bind"]),
    ("/dev/mqueue", &["mqueue"]),
    ("/sys", &["sysfs"]),
    ("/sys/fs/cgroup", &["cgroup", "cgroup2"]),
    ("/run", &["tmpfs"]),
];

/// Where the node's policies live (`dev.cabin.policy` picks one of them):
/// `$CABIN_OCI_POLICY_DIR`, else this.
pub const POLICY_DIR: &str = "/etc/cabin/policies";

/// The largest policy file read.
const MAX_POLICY_BYTES: u64 = 1 << 20;

/// The policy file `dev.cabin.policy` names: a file name in the policy
/// directory, or a path that lies in it once resolved. An annotation is
/// written by whoever writes the pod, and the runtime runs as root: a free
/// path would let a pod make the runtime read any host file (its content
/// quoted back in a parse error, or /dev/zero read without end). So only
/// the operator's directory is read, regular files up to 1 MiB.
pub fn policy_file(name: &str) -> anyhow::Result<PathBuf> {
    let field = format!("annotations.{ANNOTATION_POLICY}");
    let dir = std::env::var_os("CABIN_OCI_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(POLICY_DIR));
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        anyhow::anyhow!(
            "{field}: the policy directory {}: {e}; help: put the node's policies there (or set \
             CABIN_OCI_POLICY_DIR for the runtime)",
            dir.display()
        )
    })?;
    let not_ours =
        || anyhow::anyhow!("{field}: {name:?} is not one of the node's policies in {}", dir.display());
    let candidate = if name.contains('/') { PathBuf::from(name) } else { dir.join(name) };
    let real = std::fs::canonicalize(&candidate).map_err(|_| not_ours())?;
    if !real.starts_with(&dir) {
        return Err(not_ours());
    }
    let md = std::fs::metadata(&real).map_err(|_| not_ours())?;
    if !md.is_file() {
        anyhow::bail!("{field}: {} is not a regular file", real.display());
    }
    if md.len() > MAX_POLICY_BYTES {
        anyhow::bail!("{field}: {} is larger than {MAX_POLICY_BYTES} bytes", real.display());
    }
    Ok(real)
}

/// The default PATH to find a bare entrypoint name (runc's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Reads and checks `bundle/config.json` into a [`Plan`]. Errors are one
/// line and name the field.
pub fn load(bundle: &Path) -> anyhow::Result<(Plan, BTreeMap<String, String>)> {
    let file = bundle.join("config.json");
    let text =
        std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: {e}; help: the bundle's config.json must be an OCI runtime spec", file.display())
    })?;
    let plan = plan_of(bundle, &spec)?;
    Ok((plan, spec.annotations))
}

/// Checks a parsed spec; `bundle` resolves a relative `root.path`.
pub fn plan_of(bundle: &Path, spec: &Spec) -> anyhow::Result<Plan> {
    use anyhow::bail;
    let p = spec.process.as_ref().ok_or_else(|| anyhow::anyhow!("process: missing"))?;
    if p.user.uid != 0 || p.user.gid != 0 {
        bail!(
            "process.user: uid {} gid {}: the program runs as the runtime's own user; only uid 0 and gid 0 \
             are accepted",
            p.user.uid,
            p.user.gid
        );
    }
    if p.args.is_empty() || p.args[0].is_empty() {
        bail!("process.args: empty; help: the image needs an entrypoint or a command");
    }
    if !p.cwd.is_empty() && !p.cwd.starts_with('/') {
        bail!("process.cwd: {:?} is not an absolute path", p.cwd);
    }
    for kv in &p.env {
        if !kv.contains('=') {
            bail!("process.env: {kv:?} is not KEY=VALUE");
        }
    }
    let mut memory = 0u64;
    let mut shrink = |v: u64| {
        if v > 0 && (memory == 0 || v < memory) {
            memory = v;
        }
    };
    let (mut open_files, mut processes, mut cpu_seconds, mut file_size) = (None, None, None, None);
    for r in &p.rlimits {
        match r.kind.as_str() {
            // RLIM_INFINITY is u64::MAX: no bound.
            "RLIMIT_AS" | "RLIMIT_DATA" if r.soft != u64::MAX => shrink(r.soft),
            "RLIMIT_NOFILE" if r.soft != u64::MAX => open_files = Some(r.soft),
            "RLIMIT_NPROC" if r.soft != u64::MAX => processes = Some(r.soft),
            "RLIMIT_CPU" if r.soft != u64::MAX => cpu_seconds = Some(r.soft),
            "RLIMIT_FSIZE" if r.soft != u64::MAX => file_size = Some(r.soft),
            "RLIMIT_AS" | "RLIMIT_DATA" | "RLIMIT_NOFILE" | "RLIMIT_NPROC" | "RLIMIT_CPU"
            | "RLIMIT_FSIZE" => {}
            // Resource limits Cabin has no bound for are the host's own
            // business (core dumps, locked memory, …): carried by nothing.
            k if k.starts_with("RLIMIT_") => {}
            k => bail!("process.rlimits: unknown type {k:?}"),
        }
    }
    if let Some(l) = spec.linux.as_ref().and_then(|l| l.resources.as_ref()).and_then(|r| r.memory.as_ref()) {
        if let Some(limit) = l.limit.filter(|&v| v > 0) {
            shrink(limit as u64);
        }
    }
    let root = spec.root.as_ref().ok_or_else(|| anyhow::anyhow!("root: missing"))?;
    if root.path.is_empty() {
        bail!("root.path: empty");
    }
    let rootfs = bundle.join(&root.path);
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| anyhow::anyhow!("root.path: {}: {e}", rootfs.display()))?;
    if !rootfs.is_dir() {
        bail!("root.path: {} is not a directory", rootfs.display());
    }
    let mut binds = Vec::new();
    let mut tmpfs = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let is_bind = m.kind == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
        let standard = STANDARD_MOUNTS
            .iter()
            .any(|(dst, kinds)| *dst == m.destination && (kinds.contains(&m.kind.as_str()) || is_bind));
        if standard {
            continue;
        }
        if !m.destination.starts_with('/') {
            bail!("mounts[{i}].destination: {:?} is not an absolute path", m.destination);
        }
        if is_bind {
            if !Path::new(&m.source).is_absolute() {
                bail!("mounts[{i}].source: {:?} is not an absolute host path", m.source);
            }
            let source = std::fs::canonicalize(&m.source)
                .map_err(|e| anyhow::anyhow!("mounts[{i}].source: {}: {e}", m.source))?;
            binds.push(Bind {
                source,
                destination: m.destination.clone(),
                readonly: m.options.iter().any(|o| o == "ro"),
            });
            continue;
        }
        if m.kind == "tmpfs" && MONITOR_SERVES_VIEWS {
            tmpfs.push(TmpfsMount { destination: m.destination.clone(), size: tmpfs_size(i, &m.options)? });
            continue;
        }
        bail!(
            "mounts[{i}]: type {:?} at {} is not supported; help: Cabin serves bind mounts{} (and ignores \
             the standard /proc, /dev, /sys mounts)",
            m.kind,
            m.destination,
            if MONITOR_SERVES_VIEWS { " and tmpfs" } else { "" }
        );
    }
    let has_hooks = spec
        .hooks
        .as_ref()
        .and_then(|h| h.as_object())
        .is_some_and(|o| o.values().any(|v| v.as_array().is_some_and(|a| !a.is_empty())));
    if has_hooks {
        bail!("hooks: not supported; help: Cabin runs no host hooks for a container");
    }
    let policy = match spec.annotations.get(ANNOTATION_POLICY) {
        Some(f) if !f.is_empty() => PolicySource::File(policy_file(f)?),
        _ => match spec.linux.as_ref().and_then(|l| l.seccomp.clone()) {
            Some(s) if !s.is_null() => {
                // Checked now, so a bad profile fails `create`, not the init.
                cabin_policy::oci::import("linux.seccomp", &s.to_string())
                    .map_err(|e| anyhow::anyhow!("linux.seccomp: {e}"))?;
                PolicySource::Seccomp(s)
            }
            _ => PolicySource::None,
        },
    };
    if let PolicySource::File(f) = &policy {
        crate::policy::load(f).map_err(|e| anyhow::anyhow!("annotations.{ANNOTATION_POLICY}: {e}"))?;
    }
    let backend = match spec.annotations.get(ANNOTATION_BACKEND).map(String::as_str) {
        None | Some("") | Some("auto") => BackendChoice::Auto,
        Some("kvm") => BackendChoice::Kvm,
        Some("process") => BackendChoice::Process,
        Some(other) => bail!("annotations.{ANNOTATION_BACKEND}: {other:?} is not kvm, process or auto"),
    };
    let path = p.env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_string();
    let entrypoint = find_entrypoint(&rootfs, &p.args[0], &path)?;
    Ok(Plan {
        rootfs,
        readonly: root.readonly,
        args: p.args.clone(),
        entrypoint,
        env: p.env.clone(),
        terminal: p.terminal,
        cwd: if p.cwd.is_empty() { "/".into() } else { p.cwd.clone() },
        memory,
        open_files,
        processes,
        cpu_seconds,
        file_size,
        binds,
        tmpfs,
        policy,
        backend,
    })
}

/// Puts an `exec`'d process (its args, env, cwd, terminal; uid 0 only)
/// in place of the container's own in `plan`.
pub fn apply_process(plan: &mut Plan, p: &Process) -> anyhow::Result<()> {
    use anyhow::bail;
    if p.user.uid != 0 || p.user.gid != 0 {
        bail!("process.user: uid {} gid {}: only uid 0 and gid 0 are accepted", p.user.uid, p.user.gid);
    }
    if p.args.is_empty() || p.args[0].is_empty() {
        bail!("process.args: empty");
    }
    if !p.cwd.is_empty() && !p.cwd.starts_with('/') {
        bail!("process.cwd: {:?} is not an absolute path", p.cwd);
    }
    let path = p.env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_string();
    plan.entrypoint = find_entrypoint(&plan.rootfs, &p.args[0], &path)?;
    plan.args = p.args.clone();
    plan.env = p.env.clone();
    plan.terminal = p.terminal;
    if !p.cwd.is_empty() {
        plan.cwd = p.cwd.clone();
    }
    Ok(())
}

/// The entrypoint as a path in the rootfs: `name` itself when it has a
/// slash, else the first PATH entry where the rootfs has it.
fn find_entrypoint(rootfs: &Path, name: &str, path: &str) -> anyhow::Result<String> {
    if name.contains('/') {
        let abs = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
        return Ok(abs);
    }
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        if super::rootfs::open_in_root(rootfs, &candidate).is_ok() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("process.args[0]: {name:?} is not in the rootfs along PATH {path}")
}

/// A tmpfs mount's `size=` option (bytes, or with k/m/g), else the default.
fn tmpfs_size(i: usize, options: &[String]) -> anyhow::Result<u64> {
    match options.iter().find_map(|o| o.strip_prefix("size=")) {
        None => Ok(cabin_monitor::Tmpfs::DEFAULT_SIZE),
        Some(v) => {
            crate::run::parse_size(v).map_err(|e| anyhow::anyhow!("mounts[{i}].options: size={v}: {e}"))
        }
    }
}

impl Plan {
    /// The one place where `root`, `mounts` and `process.cwd` become a
    /// view of the file system: the rootfs is `/` (read-only with
    /// `root.readonly`), each bind shows its source at its destination
    /// (`ro`: read-only), each tmpfs is a memory-backed directory, the cwd
    /// is the starting directory.
    pub fn view(&self) -> cabin_monitor::View {
        cabin_monitor::View {
            root: Some(self.rootfs.clone()),
            root_readonly: self.readonly,
            binds: self
                .binds
                .iter()
                .map(|b| cabin_monitor::Bind {
                    src: b.source.clone(),
                    dst: PathBuf::from(&b.destination),
                    readonly: b.readonly,
                })
                .collect(),
            tmpfs: self
                .tmpfs
                .iter()
                .map(|t| cabin_monitor::Tmpfs { dst: PathBuf::from(&t.destination), size: t.size })
                .collect(),
            chdir: Some(PathBuf::from(&self.cwd)),
        }
    }

    /// Until the monitor serves views ([`MONITOR_SERVES_VIEWS`]): the
    /// program sees host paths, so the rootfs and each bind's source are
    /// allowed trees (read, write): the rootfs read-only with
    /// `root.readonly`, a bind read-only with `ro`; destinations and the
    /// cwd are not applied.
    pub fn allowed_trees(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        if self.readonly {
            read.push(self.rootfs.clone());
        } else {
            write.push(self.rootfs.clone());
        }
        for b in &self.binds {
            if b.readonly {
                read.push(b.source.clone());
            } else {
                write.push(b.source.clone());
            }
        }
        (read, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).expect("spec")
    }

    fn bundle_with(prog: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("rootfs/bin")).expect("mkdir");
        std::fs::write(d.path().join("rootfs/bin").join(prog), b"x").expect("write");
        d
    }

    fn err(json: &str) -> String {
        let d = bundle_with("app");
        plan_of(d.path(), &spec(json)).expect_err("refused").to_string()
    }

    #[test]
    fn a_minimal_spec_plans() {
        let d = bundle_with("app");
        let p = plan_of(
            d.path(),
            &spec(
                r#"{"process":{"args":["app","x"],"cwd":"/","env":["PATH=/bin"]},"root":{"path":"rootfs"},
                "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                          {"destination":"/dev","type":"tmpfs","source":"tmpfs"}],
                "unknownField":{"a":1}}"#,
            ),
        )
        .expect("plan");
        assert_eq!(p.entrypoint, "/bin/app");
        assert_eq!(p.args, vec!["app", "x"]);
        assert_eq!(p.backend, BackendChoice::Auto);
        assert_eq!(p.policy, PolicySource::None);
        assert!(p.binds.is_empty());
    }

    #[test]
    fn refusals_name_the_field() {
        let root = r#""root":{"path":"rootfs"}"#;
        assert!(err(&format!(r#"{{"process":{{"args":["/bin/app"],"user":{{"uid":1000}}}},{root}}}"#))
            .starts_with("process.user:"));
        assert!(err(&format!(r#"{{"process":{{"args":[]}},{root}}}"#)).starts_with("process.args:"));
        assert!(err(&format!(r#"{{"process":{{"args":["nope"]}},{root}}}"#)).starts_with("process.args[0]:"));
        assert!(err(r#"{"process":{"args":["/bin/app"]}}"#).starts_with("root:"));
        assert!(
            err(r#"{"process":{"args":["/bin/app"]},"root":{"path":"missing"}}"#).starts_with("root.path:")
        );
        assert!(err(&format!(
            r#"{{"process":{{"args":["/bin/app"]}},{root},"mounts":[{{"destination":"/x","type":"nfs","source":"h:/x"}}]}}"#
        ))
        .starts_with("mounts[0]:"));
        assert!(err(&format!(
            r#"{{"process":{{"args":["/bin/app"]}},{root},"annotations":{{"dev.cabin.backend":"qemu"}}}}"#
        ))
        .starts_with("annotations.dev.cabin.backend:"));
        assert!(err(&format!(
            r#"{{"process":{{"args":["/bin/app"]}},{root},"linux":{{"seccomp":{{"defaultAction":"SCMP_ACT_WHAT"}}}}}}"#
        ))
        .starts_with("linux.seccomp:"));
        assert!(err(&format!(
            r#"{{"process":{{"args":["/bin/app"]}},{root},"hooks":{{"prestart":[{{"path":"/bin/true"}}]}}}}"#
        ))
        .starts_with("hooks:"));
        // No line breaks: one line each.
        assert!(!err(r#"{"process":{"args":["/bin/app"],"user":{"uid":7}},"root":{"path":"rootfs"}}"#)
            .contains('\n'));
    }

    #[test]
    fn limits_binds_and_annotations_are_carried() {
        let d = bundle_with("app");
        let src = tempfile::tempdir().expect("tempdir");
        let json = format!(
            r#"{{"process":{{"args":["/bin/app"],"rlimits":[{{"type":"RLIMIT_AS","hard":1073741824,"soft":536870912}},
               {{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}},{{"type":"RLIMIT_CORE","hard":0,"soft":0}},
               {{"type":"RLIMIT_CPU","hard":10,"soft":5}},{{"type":"RLIMIT_FSIZE","hard":4096,"soft":4096}}]}},
               "root":{{"path":"rootfs","readonly":true}},
               "mounts":[{{"destination":"/data","type":"bind","source":"{}","options":["rbind","ro"]}}],
               "linux":{{"resources":{{"memory":{{"limit":268435456}}}}}},
               "annotations":{{"dev.cabin.backend":"process"}}}}"#,
            src.path().display()
        );
        let p = plan_of(d.path(), &spec(&json)).expect("plan");
        assert_eq!(p.memory, 256 << 20);
        assert_eq!(p.open_files, Some(1024));
        assert_eq!(p.cpu_seconds, Some(5));
        assert_eq!(p.file_size, Some(4096));
        assert_eq!(p.backend, BackendChoice::Process);
        assert_eq!(p.binds.len(), 1);
        assert!(p.binds[0].readonly);
        let (read, write) = p.allowed_trees();
        assert_eq!(read.len(), 2);
        assert!(write.is_empty());
        let v = p.view();
        assert_eq!(v.root.as_deref(), Some(p.rootfs.as_path()));
        assert!(v.root_readonly);
        assert_eq!(v.binds.len(), 1);
        assert_eq!(v.binds[0].dst, PathBuf::from("/data"));
        assert_eq!(v.binds[0].src, std::fs::canonicalize(src.path()).expect("canonical"));
        assert!(v.binds[0].readonly);
        assert_eq!(v.chdir, Some(PathBuf::from("/")));
    }

    #[test]
    fn tmpfs_mounts_map_with_their_size() {
        let d = bundle_with("app");
        let p = plan_of(
            d.path(),
            &spec(
                r#"{"process":{"args":["/bin/app"],"cwd":"/work"},"root":{"path":"rootfs"},
                "mounts":[{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["size=1m","mode=1777"]},
                          {"destination":"/cache","type":"tmpfs","source":"tmpfs"},
                          {"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["size=65536k"]}]}"#,
            ),
        )
        .expect("plan");
        let v = p.view();
        assert_eq!(v.tmpfs.len(), 2, "the standard /dev/shm is not one");
        assert_eq!(v.tmpfs[0].dst, PathBuf::from("/tmp"));
        assert_eq!(v.tmpfs[0].size, 1 << 20);
        assert_eq!(v.tmpfs[1].size, cabin_monitor::Tmpfs::DEFAULT_SIZE);
        assert_eq!(v.chdir, Some(PathBuf::from("/work")));
        assert!(!v.root_readonly);
    }
}
