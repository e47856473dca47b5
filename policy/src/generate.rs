//! The least policy that allows a recorded run (`cabinc policy generate
//! --from-trace run.jsonl`).
//!
//! Input: a JSON-lines trace (docs/trace-schema.json). Output: a policy whose
//! default is deny (ENOSYS) and whose `allow` list is exactly the set of calls
//! the run made — by name, no groups, no argument rules — plus `[paths]` for
//! the directories of the paths the run used (when the trace carries them),
//! read-write where the run wrote, read-only elsewhere. Calls that were
//! refused in the recorded run are included (the point is a policy under
//! which the run is not refused) and listed in the report.

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

/// Builds the least policy allowing the run in `jsonl`.
pub fn from_trace(source: &str, jsonl: &str) -> Result<(Policy, GenerateReport), GenerateError> {
    let mut rep = GenerateReport::default();
    let mut nrs: BTreeSet<u64> = BTreeSet::new();
    let mut read_dirs = BTreeSet::new();
    let mut write_dirs = BTreeSet::new();
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
        if let Some(p) = v.get("path").and_then(Value::as_str) {
            let args: Vec<u64> = v
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(parse_hex).collect())
                .unwrap_or_default();
            let path = Path::new(p);
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if is_write_use(&name, &args) {
                write_dirs.insert(dir);
            } else {
                read_dirs.insert(dir);
            }
        }
    }
    if rep.records == 0 {
        return Err(GenerateError::Empty);
    }
    let write = minimise(write_dirs, &BTreeSet::new());
    let write_set: BTreeSet<PathBuf> = write.iter().cloned().collect();
    let read = minimise(read_dirs, &write_set);
    let p = Policy {
        source: source.to_string(),
        allow: nrs
            .into_iter()
            .map(|nr| ListEntry { entry: Entry::Syscall(nr), loc: Loc::default() })
            .collect(),
        paths: Paths { read, write, set_id: false },
        ..Policy::default()
    };
    Ok((p, rep))
}
