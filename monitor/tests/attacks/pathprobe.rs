//! The path probe (`tests/programs/paths.c`, its step language is described
//! there) run confined with chosen trees, its output and audit records
//! collected; and snapshots of directory trees (names, contents, modes,
//! owners, times) to prove that a refused attack changed nothing.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::GateConfig;
use cabin_monitor::RunConfig;
use serde_json::Value;

use crate::common::{self, Backend};

/// The probe's image, built once per test binary; `None` without gcc.
pub fn image() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = common::scratch_dir("attack-paths");
        common::image("paths", &dir)
    })
    .as_deref()
}

/// What one confined run of the probe did.
#[derive(Debug)]
pub struct Outcome {
    /// The probe's output lines, one per step.
    pub lines: Vec<String>,
    /// The run's exit status.
    pub exit: i32,
    /// The audit log's `syscall` records (refusals).
    pub denials: Vec<Value>,
}

impl Outcome {
    /// The last step's line.
    pub fn last(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

/// Runs the probe with `steps` (arguments separated by spaces; ` -- `
/// between steps) on backend `b`; `cfg` says the trees (its args, stdio and
/// gate are set here).
pub fn run(b: Backend, steps: &str, mut cfg: RunConfig) -> Outcome {
    let img = image().expect("probe image (checked by the caller)");
    let scratch = tempfile::tempdir().expect("scratch");
    let audit = scratch.path().join("audit.jsonl");
    let out = scratch.path().join("out");
    let fo = std::fs::File::create(&out).expect("stdout file");
    cfg.args = std::iter::once("paths".to_string()).chain(steps.split(' ').map(str::to_string)).collect();
    cfg.quiet = true;
    cfg.stdio = Some([0, fo.as_raw_fd(), 2]);
    cfg.gate = GateConfig {
        trace: TraceOptions {
            trace: None,
            format: TraceFormat::Jsonl,
            audit: Some(audit.clone()),
            audit_cap: 1 << 30,
        },
        ..GateConfig::default()
    };
    let o = b.run(img, &cfg).unwrap_or_else(|e| panic!("{b:?} run failed: {e}"));
    drop(fo);
    let text = std::fs::read_to_string(&out).expect("probe output");
    let denials = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "syscall")
        .collect();
    Outcome { lines: text.lines().map(str::to_string).collect(), exit: o.exit_code, denials }
}

/// A tree's state: every name below `root` (not following symlinks) with
/// its type, mode, owner, modification time and content or link target.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        let what = if md.file_type().is_symlink() {
            format!("-> {:?}", std::fs::read_link(&p).ok())
        } else if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
            "dir".to_string()
        } else if md.is_file() {
            format!("{:?}", String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()))
        } else {
            format!("rdev {:x}", md.rdev())
        };
        let meta =
            format!("mode {:o} uid {} gid {} mtime {} {what}", md.mode(), md.uid(), md.gid(), md.mtime());
        m.insert(p, meta);
    }
    m
}

/// The differences between two snapshots, one line each.
pub fn diff(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut d = Vec::new();
    for (p, v) in before {
        match after.get(p) {
            None => d.push(format!("{} removed (was {v})", p.display())),
            Some(w) if w != v => d.push(format!("{} changed: {v} => {w}", p.display())),
            _ => {}
        }
    }
    for (p, w) in after {
        if !before.contains_key(p) {
            d.push(format!("{} appeared: {w}", p.display()));
        }
    }
    d
}

/// A canonical temporary directory.
pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().canonicalize().expect("canonical");
    (t, root)
}

/// Whether the last line is a refusal by the path rules: `err ERRNO` and
/// one `denied` audit record naming a `[paths]` rule.
pub fn refused(o: &Outcome, errno: i32) -> Result<(), String> {
    if o.last() != format!("err {errno}") {
        return Err(format!("expected err {errno}, got {:?}", o.last()));
    }
    let paths = o
        .denials
        .iter()
        .filter(|r| r["served"] == "denied" && r["rule"].as_str().is_some_and(|s| s.starts_with("[paths] ")))
        .count();
    if paths == 0 {
        return Err(format!("no [paths] audit record: {:?}", o.denials));
    }
    Ok(())
}
