//! `cabinc build --policy FILE`: which of an image's call sites (those whose
//! call number the rewriter could see as a constant) the policy would refuse.
//! Sites whose number is unknown are not judged here.

use std::collections::BTreeMap;

use super::compile::{CompiledPolicy, Decision};
use super::{names, Action};

/// One call number the policy refuses, and where the image makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFinding {
    /// Call number.
    pub nr: u64,
    /// What enforce mode would do (never [`Action::Allow`]).
    pub action: Action,
    /// The part of the policy that decides, in words.
    pub origin: String,
    /// `true` when refused whatever the arguments; `false` when only some
    /// arguments are refused (argument rules).
    pub always: bool,
    /// Site addresses, ascending.
    pub sites: Vec<u64>,
}

impl SiteFinding {
    /// One line for `cabinc build`, with a `; help: …` part.
    pub fn message(&self, policy_file: &str) -> String {
        let shown: Vec<String> = self.sites.iter().take(4).map(|a| format!("{a:#x}")).collect();
        let more =
            if self.sites.len() > 4 { format!(" and {} more", self.sites.len() - 4) } else { String::new() };
        let when = if self.always { "" } else { " for some arguments" };
        let name = names::display(self.nr);
        format!(
            "{policy_file} refuses {name} (system call {}){when}, which the image makes at {} ({}{more}): {}, by {}; \
             help: allow \"{name}\" in {policy_file} if the program needs it",
            self.nr,
            if self.sites.len() == 1 { "1 site".to_string() } else { format!("{} sites", self.sites.len()) },
            shown.join(", "),
            self.action.describe(),
            self.origin,
        )
    }
}

fn action_of(d: Decision) -> Action {
    match d {
        Decision::Allow => Action::Allow,
        Decision::Deny(e) => Action::Deny(e),
        Decision::Kill => Action::Kill,
        Decision::Complain(a) => a,
    }
}

/// The refused calls among `sites` (`(address, call number)` pairs), by number.
pub fn refused_sites(c: &CompiledPolicy, sites: impl IntoIterator<Item = (u64, u64)>) -> Vec<SiteFinding> {
    let mut by_nr: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (addr, nr) in sites {
        by_nr.entry(nr).or_default().push(addr);
    }
    let mut out = Vec::new();
    for (nr, mut addrs) in by_nr {
        addrs.sort_unstable();
        addrs.dedup();
        let v = c.verdict(nr, &[0; 6]);
        if c.refuses_unconditionally(nr) {
            out.push(SiteFinding {
                nr,
                action: action_of(v.decision),
                origin: v.origin.describe(),
                always: true,
                sites: addrs,
            });
        } else if c.has_rules(nr) && c.may_refuse(nr) {
            let action = c.refusing_action(nr).unwrap_or(Action::Deny(super::DEFAULT_ERRNO));
            out.push(SiteFinding {
                nr,
                action,
                origin: "argument rules".into(),
                always: false,
                sites: addrs,
            });
        }
    }
    out
}
