//! The `--stats` JSON.

use serde_json::{json, Map, Value};

use cabin_abi::boot::LOCAL_COUNT_SLOTS;

use crate::sysnames;

/// Inputs for the statistics record.
#[derive(Clone, Debug, Default)]
pub struct StatsInput {
    /// "process", "kvm", ...
    pub backend: &'static str,
    /// Forwarded calls per number.
    pub forwarded: Vec<(u64, u64)>,
    /// Calls served inside the domain, per number (reported by the libos).
    pub local: Vec<u64>,
    /// Calls that arrived through the trap path.
    pub trapped: u64,
    /// Calls refused (policy) or unsupported.
    pub denied: u64,
    /// Wall-clock time of the run.
    pub wall_ns: u128,
    /// Whether execute-only code was enforced.
    pub execute_only_enforced: bool,
    /// Exit status passed on.
    pub exit_code: i32,
}

fn name(nr: u64) -> String {
    sysnames::name(nr).map_or_else(|| format!("syscall_{nr}"), str::to_string)
}

/// Builds the JSON value.
pub fn to_json(s: &StatsInput) -> Value {
    let mut per = Map::new();
    let mut forwarded = 0u64;
    for &(nr, c) in &s.forwarded {
        forwarded += c;
        per.insert(name(nr), json!({ "forwarded": c }));
    }
    let mut local = 0u64;
    for (nr, &c) in s.local.iter().enumerate().take(LOCAL_COUNT_SLOTS) {
        if c == 0 {
            continue;
        }
        local += c;
        let e = per.entry(name(nr as u64)).or_insert_with(|| json!({}));
        if let Value::Object(o) = e {
            o.insert("local".into(), json!(c));
        }
    }
    json!({
        "backend": s.backend,
        "syscalls": {
            "total": local + forwarded,
            "local": local,
            "forwarded": forwarded,
            "trapped": s.trapped,
            "denied": s.denied,
        },
        "per_syscall": per,
        "wall_ns": s.wall_ns as u64,
        "execute_only_enforced": s.execute_only_enforced,
        "exit_code": s.exit_code,
    })
}
