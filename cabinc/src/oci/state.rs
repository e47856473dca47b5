//! The runtime's state directory: `ROOT/ID/` holds `plan.json` (what the
//! init runs), `state.json` (the init's pid and start time, the bundle,
//! the annotations) and, from `create` to `start`, the fifo `exec.fifo`
//! the init waits on.
//!
//! Every file is written to a temporary name in the same directory and
//! renamed: a reader sees the old file or the new one, never half of one.
//! A container's status is derived, never stored: its init alive (same
//! pid *and* start time, so a recycled pid is not mistaken for it) with
//! the fifo present is `created`, alive without it `running`, else
//! `stopped`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The fifo the init blocks on until `start`.
pub const FIFO: &str = "exec.fifo";
/// The checked plan.
pub const PLAN: &str = "plan.json";
/// The container's record.
pub const STATE: &str = "state.json";

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// The init's start time (field 22 of /proc/PID/stat, clock ticks since boot).
    pub start_time: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
}

/// A container's status (runtime spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// Checks a container id (runc's rule: letters, digits, `_+-.`; not `.`
/// or `..`; at most 1024 bytes): it names a directory under the root.
pub fn check_id(id: &str) -> Result<()> {
    let ok_chars = id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if id.is_empty() || id == "." || id == ".." || !ok_chars || id.len() > 1024 {
        bail!("invalid container id {id:?}; help: use letters, digits and _+-. only");
    }
    Ok(())
}

/// The state root: `--root`, or /run/cabin-runc.
pub fn root_dir(root: Option<&Path>) -> PathBuf {
    root.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/run/cabin-runc"))
}

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> Result<PathBuf> {
    check_id(id)?;
    Ok(root.join(id))
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, synced, renamed).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Reads container `id`'s record; "does not exist" (runc's words, which
/// the shim matches) when there is none.
pub fn load(root: &Path, id: &str) -> Result<(PathBuf, Record)> {
    let d = dir(root, id)?;
    let text = match std::fs::read(d.join(STATE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("container {id} does not exist"),
        Err(e) => bail!("cannot read the state of container {id}: {e}"),
    };
    let rec: Record =
        serde_json::from_slice(&text).map_err(|e| anyhow!("the state of container {id} is damaged: {e}"))?;
    Ok((d, rec))
}

/// The start time of `pid` and whether it is a zombie, from /proc/PID/stat.
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the
    // fields after it start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Is the record's init still the live process it was?
pub fn alive(rec: &Record) -> bool {
    rec.pid > 0 && matches!(proc_start(rec.pid), Some((t, false)) if t == rec.start_time)
}

/// The container's status now.
pub fn status(d: &Path, rec: &Record) -> Status {
    if !alive(rec) {
        Status::Stopped
    } else if d.join(FIFO).exists() {
        Status::Created
    } else {
        Status::Running
    }
}

/// `pid` and its descendants (from /proc: every process whose parent chain reaches `pid`).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            let Some(close) = text.rfind(')') else { continue };
            let ppid = text[close + 1..].split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok());
            if let Some(pp) = ppid {
                parent.insert(p, pp);
            }
        }
    }
    let mut out = vec![pid];
    // Fixed point: at most as many rounds as processes.
    let mut changed = true;
    while changed {
        changed = false;
        for (&p, &pp) in &parent {
            if out.contains(&pp) && !out.contains(&p) {
                out.push(p);
                changed = true;
            }
        }
    }
    out
}

/// Now as RFC 3339 (UTC, nanoseconds), without a date library.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_leave_the_root_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a-b_c.d+e", "0123"] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = std::process::id() as i32;
        let (start, zombie) = proc_start(me).expect("stat");
        assert!(!zombie);
        let mut rec = Record {
            id: "x".into(),
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            pid: me,
            start_time: start,
            created: now_rfc3339(),
            annotations: BTreeMap::new(),
        };
        assert!(alive(&rec));
        rec.start_time += 1;
        assert!(!alive(&rec));
    }

    #[test]
    fn rfc3339_has_the_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}
