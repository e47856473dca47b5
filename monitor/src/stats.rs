//! The `--stats` JSON.

use serde_json::{json, Map, Value};

use cabin_abi::boot::LOCAL_COUNT_SLOTS;

use crate::sysnames;
use cabin_policy::per_call::{CallCounts, OTHER_KEY};

/// Inputs for the statistics record.
#[derive(Clone, Debug, Default)]
pub struct StatsInput {
    /// "process", "kvm", ...
    pub backend: &'static str,
    /// Forwarded calls per number (numbers from 512 up share one counter,
    /// shown as `syscall_other`).
    pub forwarded: CallCounts,
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
    for (nr, c) in s.forwarded.known() {
        forwarded += c;
        per.insert(name(nr), json!({ "forwarded": c }));
    }
    if s.forwarded.other() != 0 {
        forwarded += s.forwarded.other();
        per.insert(OTHER_KEY.into(), json!({ "forwarded": s.forwarded.other() }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_512_up_share_one_entry() {
        let mut forwarded = CallCounts::default();
        forwarded.add(1, 2);
        for i in 0..100_000 {
            forwarded.add(100_000 + i, 1);
        }
        let v = to_json(&StatsInput { forwarded, local: vec![0, 0, 0, 4], ..StatsInput::default() });
        let per = v["per_syscall"].as_object().map(|o| o.len());
        assert_eq!(per, Some(3), "{}", v["per_syscall"]);
        assert_eq!(v["per_syscall"]["write"]["forwarded"], 2);
        assert_eq!(v["per_syscall"]["close"]["local"], 4);
        assert_eq!(v["per_syscall"][OTHER_KEY]["forwarded"], 100_000);
        assert_eq!(v["syscalls"]["forwarded"], 100_002);
        assert_eq!(v["syscalls"]["total"], 100_006);
    }
}
