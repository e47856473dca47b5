//! Importing a Docker / OCI seccomp profile (`cabinc policy import --from
//! oci-seccomp`).
//!
//! The profile's JSON (`defaultAction`, `defaultErrnoRet`, `syscalls[]` with
//! `names`, `action`, `errnoRet`, `args`, `includes`, `excludes`) is mapped
//! onto a [`Policy`]. What cannot be carried over is not silently dropped:
//! every such item is listed in the [`ImportReport`] with the reason.
//! Entries that only apply with a capability are skipped (a confined
//! program holds none); entries for other architectures are skipped; names
//! that are not x86-64 system calls are skipped; `SCMP_ACT_TRACE`,
//! `SCMP_ACT_NOTIFY` and `SCMP_ACT_TRAP` become a deny; `SCMP_ACT_LOG`
//! becomes an allow.

use serde::Deserialize;
use thiserror::Error;

use super::{errno, names, Action, Cond, Entry, ListEntry, Loc, Op, Policy, Rule, DEFAULT_DENY_ERRNO};

/// Why a profile could not be imported at all.
#[derive(Debug, Error)]
pub enum OciError {
    /// Not valid JSON, or not the shape of a seccomp profile.
    #[error("not an OCI seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    /// An action this importer does not know.
    #[error("unknown seccomp action `{0}`")]
    Action(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<serde_json::Value>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Vec<SyscallEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallEntry {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What an import did and did not carry over.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    /// Items not carried over, each with its reason.
    pub dropped: Vec<String>,
    /// Items carried over with a change of meaning worth knowing.
    pub notes: Vec<String>,
    /// Number of calls the result allows unconditionally.
    pub allowed: usize,
    /// Number of argument rules carried over.
    pub rules: usize,
}

impl ImportReport {
    /// The report as text, one item a line.
    pub fn to_text(&self) -> String {
        let mut s =
            format!("imported: {} system calls allowed, {} argument rules\n", self.allowed, self.rules);
        if self.dropped.is_empty() {
            s.push_str("everything was carried over\n");
        } else {
            s.push_str(&format!("not carried over ({}):\n", self.dropped.len()));
            for d in &self.dropped {
                s.push_str(&format!("  - {d}\n"));
            }
        }
        if !self.notes.is_empty() {
            s.push_str(&format!("notes ({}):\n", self.notes.len()));
            for n in &self.notes {
                s.push_str(&format!("  - {n}\n"));
            }
        }
        s
    }
}

const X86_64_ARCHES: &[&str] = &["amd64", "x86_64", "SCMP_ARCH_X86_64"];

fn applies_to_x86_64(arches: &[String]) -> bool {
    arches.iter().any(|a| X86_64_ARCHES.contains(&a.as_str()))
}

fn action(
    a: &str,
    errno_ret: Option<u32>,
    default_errno: i32,
    what: &str,
    report: &mut ImportReport,
) -> Result<Action, OciError> {
    let errno = errno_ret.and_then(|e| i32::try_from(e).ok()).filter(|e| (1..=errno::MAX_ERRNO).contains(e));
    Ok(match a {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_LOG" => {
            report
                .notes
                .push(format!("{what}: SCMP_ACT_LOG became allow (Cabin's --audit/--trace do the logging)"));
            Action::Allow
        }
        "SCMP_ACT_ERRNO" => Action::Deny(errno.unwrap_or(default_errno)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" | "SCMP_ACT_KILL_PROCESS" => Action::Kill,
        "SCMP_ACT_TRAP" | "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => {
            let e = errno.unwrap_or(DEFAULT_DENY_ERRNO);
            report.dropped.push(format!(
                "{what}: {a} (a signal, a tracer or a user-space agent decides) has no Cabin equivalent; \
                 it became deny with {}",
                errno::name_or_number(e)
            ));
            Action::Deny(e)
        }
        other => return Err(OciError::Action(other.to_string())),
    })
}

fn op(s: &str) -> Option<Op> {
    Some(match s {
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        _ => return None,
    })
}

/// Converts profile JSON into a policy and a report. `source` names the
/// profile in comments and messages.
pub fn import(source: &str, json: &str) -> Result<(Policy, ImportReport), OciError> {
    let prof: Profile = serde_json::from_str(json)?;
    let mut report = ImportReport::default();
    let mut p = Policy { source: source.to_string(), ..Policy::default() };

    let default_errno = prof
        .default_errno_ret
        .and_then(|e| i32::try_from(e).ok())
        .filter(|e| (1..=errno::MAX_ERRNO).contains(e))
        .unwrap_or(DEFAULT_DENY_ERRNO);
    p.default =
        action(&prof.default_action, prof.default_errno_ret, default_errno, "defaultAction", &mut report)?;
    p.deny_errno = default_errno;
    if !prof.architectures.is_empty() || !prof.arch_map.is_empty() {
        let mut arches: Vec<String> = prof.architectures.clone();
        for m in &prof.arch_map {
            if let Some(a) = m.get("architecture").and_then(|a| a.as_str()) {
                arches.push(a.to_string());
            }
            if let Some(subs) = m.get("subArchitectures").and_then(|s| s.as_array()) {
                arches.extend(subs.iter().filter_map(|s| s.as_str().map(str::to_string)));
            }
        }
        arches.sort();
        arches.dedup();
        arches.retain(|a| a != "SCMP_ARCH_X86_64");
        if !arches.is_empty() {
            report.dropped.push(format!(
                "architectures {}: Cabin runs x86-64 programs only; 32-bit (x86, x32) system calls \
                 never reach the monitor",
                arches.join(", ")
            ));
        }
    }
    for f in &prof.flags {
        report.dropped.push(format!("flag {f}: a seccomp filter flag with no meaning for the monitor"));
    }
    if let Some(l) = &prof.listener_path {
        report.dropped.push(format!("listenerPath {l}: Cabin has no user-space notification agent"));
    }

    let mut unknown_names: Vec<String> = Vec::new();
    for (i, e) in prof.syscalls.iter().enumerate() {
        let mut names_here: Vec<String> = e.names.clone();
        if let Some(n) = &e.name {
            names_here.push(n.clone());
        }
        let label = {
            let shown: Vec<&str> = names_here.iter().take(3).map(String::as_str).collect();
            let more = if names_here.len() > 3 {
                format!(" and {} more", names_here.len() - 3)
            } else {
                String::new()
            };
            format!("syscalls[{i}] ({}{more})", shown.join(", "))
        };
        if !e.includes.caps.is_empty() {
            report.dropped.push(format!(
                "{label}: applies only with capability {}; a confined program holds no capabilities",
                e.includes.caps.join(", ")
            ));
            continue;
        }
        if !e.includes.arches.is_empty() && !applies_to_x86_64(&e.includes.arches) {
            report.dropped.push(format!("{label}: only for architectures {}", e.includes.arches.join(", ")));
            continue;
        }
        if applies_to_x86_64(&e.excludes.arches) {
            report.dropped.push(format!("{label}: excluded on x86-64"));
            continue;
        }
        if let Some(k) = e.includes.min_kernel.as_ref().or(e.excludes.min_kernel.as_ref()) {
            report
                .notes
                .push(format!("{label}: kernel version condition {k} ignored (the monitor is not a kernel)"));
        }
        if !e.excludes.caps.is_empty() {
            report.notes.push(format!(
                "{label}: kept (it is excluded only when {} is held, which a confined program never is)",
                e.excludes.caps.join(", ")
            ));
        }
        let act = action(&e.action, e.errno_ret, default_errno, &label, &mut report)?;
        let mut conds = Vec::new();
        let mut bad = None;
        for a in &e.args {
            let Some(o) = op(&a.op) else {
                bad = Some(format!("unknown comparison {}", a.op));
                break;
            };
            if a.index > 5 {
                bad = Some(format!("argument index {}", a.index));
                break;
            }
            let (mask, value) = if o == Op::MaskedEq { (a.value, a.value_two) } else { (u64::MAX, a.value) };
            conds.push(Cond { arg: a.index as u8, op: o, mask, value });
        }
        if let Some(why) = bad {
            report.dropped.push(format!("{label}: {why} cannot be expressed"));
            continue;
        }
        // seccomp compares each argument once; several conditions on the same argument are
        // ANDed in libseccomp too, so the meaning is the same.
        for n in &names_here {
            let Some(nr) = names::number(n) else {
                unknown_names.push(n.clone());
                continue;
            };
            if conds.is_empty() {
                match act {
                    Action::Allow => push_unique(&mut p.allow, nr),
                    Action::Deny(er) if er == default_errno => push_unique(&mut p.deny, nr),
                    Action::Kill => push_unique(&mut p.kill, nr),
                    Action::Deny(_) => p.rules.push(Rule {
                        nr,
                        action: act,
                        conds: Vec::new(),
                        comment: e.comment.clone().filter(|c| !c.is_empty()),
                        loc: Loc::default(),
                    }),
                }
            } else {
                p.rules.push(Rule {
                    nr,
                    action: act,
                    conds: conds.clone(),
                    comment: e.comment.clone().filter(|c| !c.is_empty()),
                    loc: Loc::default(),
                });
            }
        }
    }
    // A deny list equal to the default is noise.
    if p.default == Action::Deny(default_errno) {
        p.deny.clear();
    }
    unknown_names.sort();
    unknown_names.dedup();
    if !unknown_names.is_empty() {
        report.dropped.push(format!(
            "{} names that are not x86-64 system calls (32-bit or other-architecture calls): {}",
            unknown_names.len(),
            unknown_names.join(", ")
        ));
    }
    // A call both allowed outright and given argument rules: the unconditional allow makes the
    // rules pointless; seccomp would allow it too, so keep the allow and say so.
    let allowed: Vec<u64> = p.allow.iter().flat_map(|e| e.entry.numbers()).collect();
    p.rules.retain(|r| {
        let redundant = allowed.contains(&r.nr) && r.action == Action::Allow;
        if redundant {
            report.notes.push(format!(
                "argument rule for {} dropped: the call is allowed outright",
                names::display(r.nr)
            ));
        }
        !redundant
    });
    report.allowed = p.allow.len();
    report.rules = p.rules.len();
    Ok((p, report))
}

fn push_unique(list: &mut Vec<ListEntry>, nr: u64) {
    if !list.iter().any(|e| e.entry == Entry::Syscall(nr)) {
        list.push(ListEntry { entry: Entry::Syscall(nr), loc: Loc::default() });
    }
}
