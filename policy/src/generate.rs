//! The least policy that allows a recorded run (`cabinc policy generate
//! --from-trace run.jsonl`).
//!
//! Input: a JSON-lines trace (docs/trace-schema.json). Output: a policy whose
//! default is deny (ENOSYS) and whose `allow` list is exactly the set of calls
//! the run made — by name, no groups, no argument rules — plus `[paths]` for
//! the paths the run used (when the trace carries them), read-write where the
//! run wrote, read-only elsewhere. Calls that were refused in the recorded run
//! are included (the point is a policy under which the run is not refused)
//! and listed in the report.
//!
//! Paths are granted as narrowly as `[paths]` allows: only paths of calls
//! that succeeded (a failed `readlink("/proc/self/exe")` or an `open` of a
//! missing file used nothing), never an empty path (`newfstatat(fd, "",
//! AT_EMPTY_PATH)` names the descriptor, not `.`); a directory the run used
//! as a directory (listed it, made it its cwd) is granted itself, a
//! directory the run created, removed, renamed or linked names in (or
//! opened a file with `O_CREAT` in) is granted as a directory, read-write;
//! every other file the run read or wrote is granted as that file alone (a
//! file grant: that object, nothing else in its directory). A file that
//! cannot be granted alone (a relative path, a symlink, gone since the run)
//! falls back to its directory, and the report names the files behind each
//! such grant.
//!
//! `[network]` comes from the `addr` field of socket-call records
//! (`NetUse::add` says which calls grant what): exact addresses and
//! ports, never a block, and no resolver (the resolver's address is a
//! `connect` rule like any other).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use super::{names, Entry, ListEntry, Loc, Paths, Policy};

/// Why a trace could not be used.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// A line is not JSON.
    #[error("line {line}: not a JSON trace record: {source}")]
    Json {
        /// 1-based line.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A record lacks what it needs.
    #[error("line {line}: {message}")]
    Record {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No `syscall` record at all.
    #[error("the trace has no syscall records; help: record it with `cabinc run --trace=FILE --trace-format jsonl`")]
    Empty,
}

/// What `generate` found.
#[derive(Debug, Default, Clone)]
pub struct GenerateReport {
    /// Syscall records read.
    pub records: u64,
    /// Distinct calls allowed, with their counts.
    pub calls: BTreeMap<String, u64>,
    /// Calls that were refused in the recorded run.
    pub were_refused: BTreeSet<String>,
    /// Calls known only from the exit summary: served inside the domain by
    /// the libos (allowed too, so the policy states the whole run).
    pub local: BTreeSet<String>,
    /// Records of other types seen, by type.
    pub other: BTreeMap<String, u64>,
    /// Call numbers too large for any list (they get the default action, deny).
    pub out_of_range: BTreeSet<u64>,
    /// Paths of calls that failed in the recorded run: not granted.
    pub not_granted: BTreeSet<String>,
    /// Granted directory -> the files read or written in it that made it
    /// granted (they could not be granted alone).
    pub files: BTreeMap<PathBuf, BTreeSet<String>>,
    /// Files granted alone (read or write), not their directory.
    pub file_grants: BTreeSet<PathBuf>,
    /// `[network]` entries granted although the recorded run was refused
    /// them (`connect 10.0.0.1:80`).
    pub net_were_refused: BTreeSet<String>,
    /// Socket addresses not granted, with why.
    pub net_not_granted: BTreeSet<String>,
}

/// What a path names on the host, for [`from_trace_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A directory.
    Dir,
    /// Anything else that is not a symlink (granted alone).
    File,
    /// A symlink, a missing path, or a relative one: its directory is granted.
    Other,
}

/// What absolute `p` names on the host, not following a final symlink.
pub fn host_kind(p: &Path) -> PathKind {
    if !p.is_absolute() {
        return PathKind::Other;
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => PathKind::Dir,
        Ok(m) if m.file_type().is_symlink() => {
            if p.is_dir() {
                PathKind::Dir
            } else {
                PathKind::Other
            }
        }
        Ok(_) => PathKind::File,
        Err(_) => PathKind::Other,
    }
}

impl GenerateReport {
    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "read {} syscall records: {} distinct system calls allowed\n",
            self.records,
            self.calls.len()
        );
        if !self.were_refused.is_empty() {
            s.push_str(&format!(
                "allowed although refused in the recorded run: {}\n",
                self.were_refused.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.local.is_empty() {
            s.push_str(&format!(
                "served inside the domain in the recorded run: {}\n",
                self.local.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.file_grants.is_empty() {
            s.push_str(&format!(
                "granted as files (only those objects, not their directories): {}\n",
                self.file_grants.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        for (dir, files) in &self.files {
            s.push_str(&format!(
                "{} is granted as a directory for the files {} (they could not be granted alone: review it)\n",
                dir.display(),
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.not_granted.is_empty() {
            s.push_str(&format!(
                "not granted: the calls on {} failed in the recorded run\n",
                self.not_granted.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.net_were_refused.is_empty() {
            s.push_str(&format!(
                "[network] granted although refused in the recorded run: {}\n",
                self.net_were_refused.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for n in &self.net_not_granted {
            s.push_str(&format!("[network] not granted: {n}\n"));
        }
        if !self.out_of_range.is_empty() {
            s.push_str(&format!(
                "not allowed: call numbers {} are not x86-64 system calls and keep the default action\n",
                self.out_of_range.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        s
    }
}

fn is_write_use(name: &str, args: &[u64]) -> bool {
    const O_ACCMODE: u64 = 3;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    let flags = |i: usize| args.get(i).copied().unwrap_or(0);
    match name {
        "openat" => flags(2) & O_ACCMODE != 0 || flags(2) & (O_CREAT | O_TRUNC) != 0,
        "open" => flags(1) & O_ACCMODE != 0 || flags(1) & (O_CREAT | O_TRUNC) != 0,
        "creat" | "mkdir" | "mkdirat" | "unlink" | "unlinkat" | "rmdir" | "rename" | "renameat"
        | "renameat2" | "link" | "linkat" | "symlink" | "symlinkat" | "truncate" | "chmod" | "fchmodat"
        | "utimensat" | "mknod" | "mknodat" => true,
        _ => false,
    }
}

fn parse_hex(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => u64::from_str_radix(s.strip_prefix("0x")?, 16).ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Whether the call creates, removes, renames or links a name (its
/// directory must be granted as a directory): `O_CREAT` opens included, as
/// the trace cannot tell whether the file existed.
fn changes_names(name: &str, args: &[u64]) -> bool {
    const O_CREAT: u64 = 0o100;
    const O_TMPFILE: u64 = 0o20000000;
    let flags = |i: usize| args.get(i).copied().unwrap_or(0);
    match name {
        "openat" => flags(2) & (O_CREAT | O_TMPFILE) != 0,
        "open" => flags(1) & (O_CREAT | O_TMPFILE) != 0,
        "creat" | "mkdir" | "mkdirat" | "unlink" | "unlinkat" | "rmdir" | "rename" | "renameat"
        | "renameat2" | "link" | "linkat" | "symlink" | "symlinkat" | "mknod" | "mknodat" => true,
        _ => false,
    }
}

/// Removes directories that lie inside another directory of the list.
fn minimise(dirs: BTreeSet<PathBuf>, covered_by: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    dirs.iter()
        .filter(|d| {
            !dirs.iter().chain(covered_by.iter()).any(|o| o != *d && d.starts_with(o))
                && !covered_by.contains(*d)
        })
        .cloned()
        .collect()
}

/// Whether the call (by name and arguments) uses its path as a directory
/// whatever it names: `opendir`'s `openat(O_DIRECTORY)`, `chdir`, `mkdir`, `rmdir`.
fn uses_as_directory(name: &str, args: &[u64]) -> bool {
    const O_DIRECTORY: u64 = 0o200000;
    let flags = |i: usize| args.get(i).copied().unwrap_or(0);
    match name {
        "openat" => flags(2) & O_DIRECTORY != 0,
        "open" => flags(1) & O_DIRECTORY != 0,
        "chdir" | "chroot" => true,
        _ => false,
    }
}

/// Builds the least policy allowing the run in `jsonl`, asking the host
/// what each absolute path names ([`host_kind`]).
pub fn from_trace(source: &str, jsonl: &str) -> Result<(Policy, GenerateReport), GenerateError> {
    from_trace_with(source, jsonl, &host_kind)
}

/// [`from_trace`] with `kind` telling what each path names.
pub fn from_trace_with(
    source: &str,
    jsonl: &str,
    kind: &dyn Fn(&Path) -> PathKind,
) -> Result<(Policy, GenerateReport), GenerateError> {
    let mut rep = GenerateReport::default();
    let mut nrs: BTreeSet<u64> = BTreeSet::new();
    let mut read_dirs = BTreeSet::new();
    let mut write_dirs = BTreeSet::new();
    let mut read_files = BTreeSet::new();
    let mut write_files = BTreeSet::new();
    let mut net = NetUse::default();
    for (i, line) in jsonl.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|source| GenerateError::Json { line: line_no, source })?;
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        if ty == "exit" {
            // Calls the libos served inside the domain appear only as counts here.
            if let Some(per) = v.pointer("/summary/per_syscall").and_then(Value::as_object) {
                for name in per.keys() {
                    if let Some(nr) = names::number(name) {
                        if nrs.insert(nr) {
                            rep.local.insert(name.clone());
                            rep.calls.entry(name.clone()).or_insert(0);
                        }
                    }
                }
            }
        }
        if ty != "syscall" {
            *rep.other.entry(ty.to_string()).or_insert(0) += 1;
            continue;
        }
        rep.records += 1;
        let nr = match (v.get("nr").and_then(Value::as_u64), v.get("name").and_then(Value::as_str)) {
            (Some(nr), _) => nr,
            (None, Some(n)) => names::number(n).ok_or_else(|| GenerateError::Record {
                line: line_no,
                message: format!("unknown system call `{n}`"),
            })?,
            (None, None) => {
                return Err(GenerateError::Record {
                    line: line_no,
                    message: "a syscall record without `nr`".into(),
                })
            }
        };
        if nr >= super::compile::TABLE_SIZE as u64 {
            // No list can name it: such calls always get the default action.
            rep.out_of_range.insert(nr);
            continue;
        }
        let name = names::display(nr);
        nrs.insert(nr);
        *rep.calls.entry(name.clone()).or_insert(0) += 1;
        match v.get("served").and_then(Value::as_str) {
            Some("denied" | "killed") => {
                rep.were_refused.insert(name.clone());
            }
            Some("local") => {
                rep.local.insert(name.clone());
            }
            _ => {}
        }
        if v.get("complain").and_then(Value::as_bool) == Some(true) {
            rep.were_refused.insert(name.clone());
        }
        if let Some(a) = v.get("addr").and_then(Value::as_str) {
            net.add(&name, a, &v, &mut rep);
        }
        // An empty path names the descriptor (AT_EMPTY_PATH), not a place.
        if let Some(p) = v.get("path").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            let args: Vec<u64> = v
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(parse_hex).collect())
                .unwrap_or_default();
            // A failed call (refused, or the path is missing) used nothing.
            let ret = v.get("ret").and_then(parse_hex).map(|r| r as i64);
            let failed = matches!(ret, Some(r) if (-4095..0).contains(&r))
                || v.get("errno").is_some()
                || matches!(v.get("served").and_then(Value::as_str), Some("denied" | "killed"));
            if failed {
                rep.not_granted.insert(p.to_string());
                continue;
            }
            let path = Path::new(p);
            let writes = is_write_use(&name, &args);
            let parent = || match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let k = kind(path);
            let (set, granted) = if uses_as_directory(&name, &args) || (!writes && k == PathKind::Dir) {
                (if writes { &mut write_dirs } else { &mut read_dirs }, path.to_path_buf())
            } else if changes_names(&name, &args) {
                // A name made or removed in its directory: a directory grant.
                (&mut write_dirs, parent())
            } else if k == PathKind::File {
                (if writes { &mut write_files } else { &mut read_files }, path.to_path_buf())
            } else if k == PathKind::Dir {
                // chmod/utimes/truncate of a directory: the directory itself.
                (&mut write_dirs, path.to_path_buf())
            } else {
                let d = parent();
                rep.files.entry(d.clone()).or_default().insert(p.to_string());
                (if writes { &mut write_dirs } else { &mut read_dirs }, d)
            };
            set.insert(granted);
        }
    }
    if rep.records == 0 {
        return Err(GenerateError::Empty);
    }
    let write = minimise(write_dirs, &BTreeSet::new());
    let write_set: BTreeSet<PathBuf> = write.iter().cloned().collect();
    let read = minimise(read_dirs, &write_set);
    let granted: BTreeSet<&PathBuf> = read.iter().chain(&write).collect();
    rep.files.retain(|d, _| granted.contains(d));
    // A file is granted alone only where no directory grant already covers
    // it (a written file inside a read-only directory stays a write grant).
    let under = |f: &PathBuf, dirs: &[PathBuf]| dirs.iter().any(|d| f.starts_with(d));
    let write_files: Vec<PathBuf> = write_files.into_iter().filter(|f| !under(f, &write)).collect();
    let read_files: Vec<PathBuf> = read_files
        .into_iter()
        .filter(|f| !under(f, &write) && !under(f, &read) && !write_files.contains(f))
        .collect();
    rep.file_grants = read_files.iter().chain(&write_files).cloned().collect();
    let mut read = read;
    read.extend(read_files);
    let mut write = write;
    write.extend(write_files);
    let p = Policy {
        source: source.to_string(),
        allow: nrs
            .into_iter()
            .map(|nr| ListEntry { entry: Entry::Syscall(nr), loc: Loc::default() })
            .collect(),
        paths: Paths { read, write, set_id: false, exec_images_only: false },
        network: net.finish(),
        ..Policy::default()
    };
    Ok((p, rep))
}

/// The socket addresses a run used (`addr` of its socket-call records).
#[derive(Default)]
struct NetUse {
    connect: BTreeSet<String>,
    listen: BTreeSet<String>,
    unix: BTreeSet<PathBuf>,
    abstract_names: BTreeSet<Vec<u8>>,
}

impl NetUse {
    /// Records the address of one socket call. Calls that send or connect
    /// grant `connect`, `bind` grants `listen` (port 0: `ADDR:*`); peers
    /// that `accept`/`recvfrom` returned grant nothing. Calls refused by
    /// the policy (the usual first trace: no network by default) and calls
    /// that failed after using the address (ECONNREFUSED, EINPROGRESS, …)
    /// are granted; calls whose address itself was bad are not.
    fn add(&mut self, call: &str, text: &str, v: &Value, rep: &mut GenerateReport) {
        use crate::net::{self, normalize_ip};
        use crate::trace::record::{parse_addr_text, TraceAddr};
        let listen = match call {
            "connect" | "sendto" | "sendmsg" | "sendmmsg" => false,
            "bind" => true,
            _ => return,
        };
        let ret = v.get("ret").and_then(parse_hex).map(|r| r as i64).unwrap_or(0);
        // EBADF, EFAULT, EINVAL, ENOTSOCK, EAFNOSUPPORT: the address was not used.
        if matches!(-ret, 9 | 14 | 22 | 88 | 97) {
            rep.net_not_granted.insert(format!("{call} {text}: the call failed before using the address"));
            return;
        }
        let refused = matches!(v.get("served").and_then(Value::as_str), Some("denied" | "killed"))
            || v.get("complain").and_then(Value::as_bool) == Some(true);
        let key = match parse_addr_text(text) {
            Some(TraceAddr::Inet(sa)) => {
                if let std::net::SocketAddr::V6(v6) = sa {
                    if v6.scope_id() != 0 {
                        rep.net_not_granted.insert(format!(
                            "{call} {text}: an IPv6 zone id cannot be granted (docs/networking.md)"
                        ));
                        return;
                    }
                }
                let ip = normalize_ip(sa.ip());
                let host = if ip.is_ipv4() { ip.to_string() } else { format!("[{ip}]") };
                let rule = match sa.port() {
                    0 if listen => format!("{host}:*"),
                    0 => {
                        rep.net_not_granted.insert(format!("{call} {text}: port 0"));
                        return;
                    }
                    p => format!("{host}:{p}"),
                };
                if listen {
                    self.listen.insert(rule.clone());
                } else {
                    self.connect.insert(rule.clone());
                }
                rule
            }
            Some(TraceAddr::Unix(p)) => {
                let p = String::from_utf8_lossy(&p).into_owned();
                if p.contains('\\') {
                    rep.net_not_granted
                        .insert(format!("{call} {text}: an escaped or cut name (name it yourself)"));
                    return;
                }
                match net::parse_unix_path(&p) {
                    Ok(path) => {
                        self.unix.insert(path);
                    }
                    Err(e) => {
                        rep.net_not_granted.insert(format!("{call} {text}: {}", e.message));
                        return;
                    }
                }
                text.to_string()
            }
            Some(TraceAddr::Abstract(n)) => {
                let n = String::from_utf8_lossy(&n).into_owned();
                match net::parse_abstract(&n) {
                    Ok(name) if !n.contains("...(+") => {
                        self.abstract_names.insert(name);
                    }
                    _ => {
                        rep.net_not_granted.insert(format!("{call} {text}: a cut or malformed name"));
                        return;
                    }
                }
                text.to_string()
            }
            Some(TraceAddr::Unnamed) => return,
            Some(TraceAddr::Family(_)) | None => {
                rep.net_not_granted.insert(format!("{call} {text}: not an address [network] can name"));
                return;
            }
        };
        if refused {
            rep.net_were_refused.insert(format!("{} {key}", if listen { "listen" } else { "connect" }));
        }
    }

    fn finish(self) -> crate::net::NetPolicy {
        let rules =
            |set: BTreeSet<String>| set.iter().filter_map(|r| crate::net::parse_rule(r).ok()).collect();
        crate::net::NetPolicy {
            connect: rules(self.connect),
            listen: rules(self.listen),
            unix: self.unix.into_iter().collect(),
            abstract_names: self.abstract_names.into_iter().collect(),
            resolver: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, args: &[u64], ret: i64, path: &str) -> String {
        let nr = names::number(name).expect("known call");
        let args: Vec<String> = args.iter().map(|a| format!("\"{a:#x}\"")).collect();
        let errno = if (-4095..0).contains(&ret) { ",\"errno\":\"E\"" } else { "" };
        format!(
            "{{\"type\":\"syscall\",\"nr\":{nr},\"name\":\"{name}\",\"args\":[{}],\"ret\":\"{:#x}\",\
             \"served\":\"forwarded\",\"path\":{}{errno}}}",
            args.join(","),
            ret as u64,
            serde_json::Value::String(path.into())
        )
    }

    /// Grants only what the run used: no `.` from an empty-path
    /// `newfstatat`, no `/proc/self` from a failed `readlink`, nothing from
    /// a failed open; a directory opened as one is granted itself, a file
    /// read its own directory (never the directory's parent).
    #[test]
    fn grants_only_what_the_run_used() {
        const AT_FDCWD: u64 = (-100i64) as u64;
        let lines = [
            rec("newfstatat", &[3, 0x1000, 0x2000, 0x1000], 0, ""),
            rec("readlink", &[0x1000, 0x2000, 4096], -2, "/proc/self/exe"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], -2, "/etc/missing.conf"),
            rec("openat", &[AT_FDCWD, 0x1000, 0o200000], 3, "/srv/tree"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], 4, "/data/in/a.txt"),
            rec("newfstatat", &[AT_FDCWD, 0x1000, 0x2000, 0], 0, "/data/in"),
            rec("openat", &[AT_FDCWD, 0x1000, 0o1101], 5, "/out/b.txt"),
        ];
        let kind = |p: &Path| match p.to_str() {
            Some("/data/in" | "/srv/tree") => PathKind::Dir,
            _ => PathKind::File,
        };
        let (p, rep) = from_trace_with("t", &lines.join("\n"), &kind).expect("generates");
        assert_eq!(p.paths.read, vec![PathBuf::from("/data/in"), PathBuf::from("/srv/tree")]);
        // O_CREAT makes a name: the directory is granted.
        assert_eq!(p.paths.write, vec![PathBuf::from("/out")]);
        assert!(rep.not_granted.contains("/proc/self/exe") && rep.not_granted.contains("/etc/missing.conf"));
        // a.txt lies in /data/in, granted as a directory (the run stat'ed it
        // as one): no file grant on top.
        assert!(rep.file_grants.is_empty(), "{:?}", rep.file_grants);
        let text = rep.to_text();
        assert!(
            text.contains("not granted: the calls on /etc/missing.conf, /proc/self/exe failed"),
            "{text}"
        );
        // The calls themselves are still allowed (the run made them).
        assert!(rep.calls.contains_key("readlink") && rep.calls.contains_key("newfstatat"));
    }

    /// Files the run only read or wrote are granted alone, not their
    /// directory; a directory the run listed or made names in stays a
    /// directory grant; a symlink or missing file falls back to its
    /// directory (named in the report).
    #[test]
    fn grants_files_not_their_directories() {
        const AT_FDCWD: u64 = (-100i64) as u64;
        const O_WRONLY_TRUNC: u64 = 0o1001;
        let lines = [
            rec("openat", &[AT_FDCWD, 0x1000, 0], 3, "/etc/app.conf"),
            rec("newfstatat", &[AT_FDCWD, 0x1000, 0x2000, 0], 0, "/etc/app.conf"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], 3, "/data/in.txt"),
            rec("openat", &[AT_FDCWD, 0x1000, O_WRONLY_TRUNC], 4, "/data/out.txt"),
            rec("openat", &[AT_FDCWD, 0x1000, O_WRONLY_TRUNC], 4, "/var/log/app.log"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], 4, "/var/log/app.log"),
            rec("openat", &[AT_FDCWD, 0x1000, 0o200000], 5, "/srv/list"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], 6, "/srv/list/x"),
            rec("unlinkat", &[AT_FDCWD, 0x1000, 0], 0, "/tmp/work/old"),
            rec("openat", &[AT_FDCWD, 0x1000, 0], 7, "/tmp/work/keep"),
            rec("readlink", &[0x1000, 0x2000, 4096], 5, "/etc/localtime"),
        ];
        let kind = |p: &Path| match p.to_str() {
            Some("/srv/list") => PathKind::Dir,
            Some("/etc/localtime") => PathKind::Other,
            _ => PathKind::File,
        };
        let (p, rep) = from_trace_with("t", &lines.join("\n"), &kind).expect("generates");
        let v = |a: &[&str]| a.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(p.paths.read, v(&["/etc", "/srv/list", "/data/in.txt"]));
        assert_eq!(p.paths.write, v(&["/tmp/work", "/data/out.txt", "/var/log/app.log"]));
        let files: Vec<_> = rep.file_grants.iter().cloned().collect();
        assert_eq!(files, v(&["/data/in.txt", "/data/out.txt", "/var/log/app.log"]));
        // /etc is a directory grant only because of the symlink; app.conf
        // lies in it, so it is not granted a second time.
        assert!(rep.files[Path::new("/etc")].contains("/etc/localtime"));
        let text = rep.to_text();
        assert!(text.contains("granted as files (only those objects"), "{text}");
    }

    fn net_rec(name: &str, ret: i64, served: &str, addr: &str) -> String {
        let nr = names::number(name).expect("known call");
        format!(
            "{{\"type\":\"syscall\",\"nr\":{nr},\"name\":\"{name}\",\"args\":[\"0x3\",\"0x1000\",\"0x10\"],\
             \"ret\":\"{:#x}\",\"served\":\"{served}\",\"addr\":{}}}",
            ret as u64,
            serde_json::Value::String(addr.into())
        )
    }

    /// `[network]` from the `addr` of socket calls: connects and sends grant
    /// `connect` (IPv4-mapped written as IPv4, refused ones too: the first
    /// trace runs with no network), binds grant `listen` (port 0: `*`),
    /// accepted peers and bad addresses nothing.
    #[test]
    fn network_from_socket_addresses() {
        let lines = [
            net_rec("connect", -13, "denied", "127.0.0.1:8080"),
            net_rec("connect", -115, "forwarded", "[::ffff:10.0.0.1]:443"),
            net_rec("sendto", 12, "forwarded", "[::1]:53"),
            net_rec("connect", -111, "forwarded", "127.0.0.1:8080"),
            net_rec("bind", 0, "forwarded", "0.0.0.0:0"),
            net_rec("bind", 0, "forwarded", "[::]:9000"),
            net_rec("accept4", 5, "forwarded", "127.0.0.1:40000"),
            net_rec("connect", -22, "forwarded", "127.0.0.9:1"),
            net_rec("connect", 0, "forwarded", "[fe80::1%2]:80"),
            net_rec("connect", 0, "forwarded", "unix:/run/app.sock"),
            net_rec("connect", 0, "forwarded", "unix:relative.sock"),
            net_rec("bind", 0, "forwarded", "unix:@bus\\x00x"),
            net_rec("bind", 0, "forwarded", "unix:"),
            net_rec("sendto", 0, "forwarded", "family:16"),
        ];
        let (p, rep) = from_trace_with("t", &lines.join("\n"), &|_| PathKind::Other).expect("generates");
        let n = &p.network;
        let shown = |v: &[crate::net::NetRule]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(shown(&n.connect), ["10.0.0.1:443", "127.0.0.1:8080", "[::1]:53"]);
        assert_eq!(shown(&n.listen), ["0.0.0.0:*", "[::]:9000"]);
        assert_eq!(n.unix, [PathBuf::from("/run/app.sock")]);
        assert_eq!(n.abstract_names, [b"bus\0x".to_vec()]);
        assert!(rep.net_were_refused.contains("connect 127.0.0.1:8080"), "{rep:?}");
        let not = rep.net_not_granted.iter().cloned().collect::<Vec<_>>().join("\n");
        for s in ["127.0.0.9:1", "fe80::1%2", "relative.sock", "family:16"] {
            assert!(not.contains(s), "{s}: {not}");
        }
        assert!(!not.contains("40000"), "{not}");
        // The written policy reads back with the same network.
        let text = crate::render::to_toml(&p, &[]);
        let again = Policy::parse("g.toml", &text).expect("parses back");
        assert_eq!(shown(&again.network.connect), shown(&n.connect), "{text}");
        assert_eq!(again.network.abstract_names, n.abstract_names, "{text}");
    }
}
