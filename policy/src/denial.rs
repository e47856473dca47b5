//! The stderr message for a refused call: once per call number (numbers
//! that are not x86-64 system calls, 512 and up, once in all), naming the
//! call, its number, the rule, the site address, and a `help:` line that says
//! how to allow it.

use crate::per_call::CallSet;

use super::compile::{Decision, Origin, Verdict};
use super::{names, Action};

/// Remembers which calls were already reported (a fixed table: the
/// program chooses the numbers).
#[derive(Debug, Default)]
pub struct DenialReporter {
    seen: CallSet,
}

impl DenialReporter {
    /// A reporter that has reported nothing.
    pub fn new() -> DenialReporter {
        DenialReporter::default()
    }

    /// The message for this refusal, or `None` when `nr` (for numbers from
    /// 512 up: any of them) was already reported or the verdict is a plain
    /// allow. `site` is the address of the
    /// program's system-call instruction, when known; `policy_file` names the
    /// policy in the `help:` line.
    pub fn report(
        &mut self,
        policy_file: &str,
        nr: u64,
        args: &[u64; 6],
        site: Option<u64>,
        verdict: &Verdict<'_>,
    ) -> Option<String> {
        if verdict.decision == Decision::Allow || !self.seen.insert(nr) {
            return None;
        }
        Some(message(policy_file, nr, args, site, verdict))
    }
}

/// The two-line message (no trailing newline) for one refusal.
pub fn message(
    policy_file: &str,
    nr: u64,
    args: &[u64; 6],
    site: Option<u64>,
    verdict: &Verdict<'_>,
) -> String {
    let name = names::display(nr);
    let at = match site {
        Some(a) => format!(" at {a:#x}"),
        None => String::new(),
    };
    let (what, action) = match verdict.decision {
        Decision::Allow => ("allowed", Action::Allow),
        Decision::Deny(e) => ("denied", Action::Deny(e)),
        Decision::Kill => ("killed the program for", Action::Kill),
        Decision::Complain(a) => ("would deny (complain mode, allowed)", a),
    };
    let outcome = match action {
        Action::Deny(e) => format!("; it returned {}", super::errno::name_or_number(e)),
        Action::Kill => "; exit status 159".to_string(),
        Action::Allow => String::new(),
    };
    let mut why = verdict.origin.describe();
    if verdict.no_rule_matched {
        why = format!("{why}: no [[rule]] for {name} matched its arguments ({})", arg_list(args));
    }
    let first = format!("cabin: policy {what} {name} (system call {nr}){at}: {why}{outcome}");
    format!("{first}\nhelp: {}", help(policy_file, nr, &name, verdict))
}

fn arg_list(args: &[u64; 6]) -> String {
    args.iter().enumerate().map(|(i, a)| format!("arg{i}={a:#x}")).collect::<Vec<_>>().join(" ")
}

/// How to allow call `nr` in the given policy.
fn help(file: &str, nr: u64, name: &str, verdict: &Verdict<'_>) -> String {
    if crate::per_call::slot(nr).is_none() {
        return format!(
            "{nr} is not an x86-64 system call number (those are below 512) and always gets the \
             default action of {file}; later such numbers are not reported one by one"
        );
    }
    let spelled = if names::name(nr).is_some() { format!("\"{name}\"") } else { nr.to_string() };
    match verdict.origin {
        Origin::Default if verdict.no_rule_matched => format!(
            "add a [[rule]] for {name} matching these arguments, or add {spelled} to `allow` under [syscalls] in {file}"
        ),
        Origin::Default => format!("add {spelled} to `allow` under [syscalls] in {file}"),
        Origin::Always => format!("{spelled} is always served; nothing in {file} refuses it"),
        Origin::List { list, entry, loc } if entry.starts_with('@') => format!(
            "{name} is refused through `{entry}` in `{list}` ({file}:{}); add a [[rule]] with \
             syscall = {spelled}, action = \"allow\" to let it through",
            loc.line
        ),
        Origin::List { list, loc, .. } => {
            format!("remove {spelled} from `{list}` ({file}:{}) and add it to `allow`", loc.line)
        }
        Origin::Rule { loc, .. } => {
            format!("change the [[rule]] at {file}:{} to action = \"allow\", or remove it", loc.line)
        }
    }
}
