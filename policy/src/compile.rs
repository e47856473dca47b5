//! The compiled policy: one table lookup per call.
//!
//! Every call number below [`TABLE_SIZE`] has a slot: either a fixed action
//! (no argument rules: the common case, decided by one load) or a range of
//! rules to try in file order, with the action to take when none matches.
//! Numbers at or above the table size (including x32 numbers with bit 30
//! set) get the default action.
//!
//! Precedence, documented in docs/policy.md: a `[[rule]]` whose conditions
//! hold wins; then `kill` list, then `deny` list, then `allow` list (whether
//! the call is named or reached through a group); then the default. Calls
//! the system-call table marks [`Serve::Always`] (`exit`, `exit_group`) are
//! allowed whatever the lists and the default say (`policy check` refuses a
//! file that names one in a refusal).

use cabin_abi::syscalls::CallSet;

use super::names::Serve;
use super::{errno, names, Action, Entry, ListEntry, Loc, Mode, Policy, Rule};

/// Slots in the decision table (x86-64 numbers are below 512).
pub const TABLE_SIZE: usize = 512;

/// What the monitor does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allow,
    /// Return `-errno`.
    Deny(i32),
    /// End the program with exit status 159.
    Kill,
    /// Complain mode: serve it, but record that enforce mode would have
    /// taken this action (never [`Action::Allow`]).
    Complain(Action),
}

impl Decision {
    /// Whether the call is served.
    pub fn serves(self) -> bool {
        matches!(self, Decision::Allow | Decision::Complain(_))
    }
}

/// Which part of the policy decided a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `[default]` action.
    Default,
    /// A call no policy may refuse: ending the program
    /// ([`Serve::Always`]).
    Always,
    /// An entry of the `allow`, `deny` or `kill` list.
    List {
        /// "allow", "deny" or "kill".
        list: &'static str,
        /// The entry as written (a name, number or `@group`).
        entry: String,
        /// Where.
        loc: Loc,
    },
    /// A `[[rule]]`.
    Rule {
        /// Index in [`Policy::rules`].
        index: usize,
        /// Its conditions in words (empty: unconditional).
        conds: String,
        /// Where.
        loc: Loc,
    },
}

impl Origin {
    /// "the default action", "deny list entry `@network` (line 7)", …
    pub fn describe(&self) -> String {
        match self {
            Origin::Default => "the default action".into(),
            Origin::Always => "always served: a program can always end itself".into(),
            Origin::List { list, entry, loc } => format!("`{list}` entry `{entry}` (line {})", loc.line),
            Origin::Rule { conds, loc, .. } if conds.is_empty() => {
                format!("the [[rule]] at line {}", loc.line)
            }
            Origin::Rule { conds, loc, .. } => format!("the [[rule]] at line {} (when {conds})", loc.line),
        }
    }
}

/// A decision and the part of the policy that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// What to do.
    pub decision: Decision,
    /// Why.
    pub origin: &'a Origin,
    /// Rules exist for this call but none matched these arguments.
    pub no_rule_matched: bool,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Fixed { action: Action, origin: u32 },
    Rules { first: u32, count: u32, fallback: Action, fallback_origin: u32 },
}

#[derive(Debug, Clone)]
struct CompiledRule {
    conds: Vec<super::Cond>,
    action: Action,
    origin: u32,
}

/// A policy turned into its decision table (see the module docs).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    table: Box<[Slot]>,
    rules: Vec<CompiledRule>,
    origins: Vec<Origin>,
    default: Action,
    mode: Mode,
    source: String,
    digest: String,
}

impl CompiledPolicy {
    /// Builds the table for `p`.
    pub fn new(p: &Policy) -> CompiledPolicy {
        let mut origins = vec![Origin::Default];
        let mut table = vec![Slot::Fixed { action: p.default, origin: 0 }; TABLE_SIZE];
        // Lowest precedence first, so later lists overwrite.
        let lists: [(&'static str, &[ListEntry], Action); 3] = [
            ("allow", &p.allow, Action::Allow),
            ("deny", &p.deny, Action::Deny(p.deny_errno)),
            ("kill", &p.kill, Action::Kill),
        ];
        // Which list (and whether by name) last set each slot.
        let mut set_by: Vec<Option<(usize, bool)>> = vec![None; TABLE_SIZE];
        for (li, (list, entries, action)) in lists.into_iter().enumerate() {
            for e in entries {
                let origin = origins.len() as u32;
                origins.push(Origin::List { list, entry: e.entry.spelling(), loc: e.loc });
                let named = matches!(e.entry, Entry::Syscall(_));
                for nr in e.entry.numbers() {
                    let i = nr as usize;
                    if i >= TABLE_SIZE {
                        continue;
                    }
                    // Within one list the first entry naming the call is reported, and a call
                    // named on its own beats a group that contains it.
                    let keep = match set_by[i] {
                        Some((l, was_named)) if l == li => was_named || !named,
                        _ => false,
                    };
                    if !keep {
                        table[i] = Slot::Fixed { action, origin };
                        set_by[i] = Some((li, named));
                    }
                }
            }
        }
        // Rules: group by call, keep file order.
        let mut rules = Vec::new();
        let mut by_nr: Vec<(u64, Vec<(usize, &Rule)>)> = Vec::new();
        for (i, r) in p.rules.iter().enumerate() {
            match by_nr.iter_mut().find(|(nr, _)| *nr == r.nr) {
                Some((_, v)) => v.push((i, r)),
                None => by_nr.push((r.nr, vec![(i, r)])),
            }
        }
        for (nr, rs) in by_nr {
            let Some(slot) = table.get_mut(nr as usize) else { continue };
            let Slot::Fixed { action: fallback, origin: fallback_origin } = *slot else { continue };
            let first = rules.len() as u32;
            for (index, r) in &rs {
                let origin = origins.len() as u32;
                let conds = r.conds.iter().map(|c| c.describe()).collect::<Vec<_>>().join(" and ");
                origins.push(Origin::Rule { index: *index, conds, loc: r.loc });
                rules.push(CompiledRule { conds: r.conds.clone(), action: r.action, origin });
            }
            *slot = Slot::Rules { first, count: rs.len() as u32, fallback, fallback_origin };
        }
        // Ending the program is never refused (a refusal of it by name is an
        // error of the file: file.rs); neither the default nor a group does.
        let always = origins.len() as u32;
        origins.push(Origin::Always);
        for sc in names::TABLE.iter().filter(|sc| sc.serve == Serve::Always) {
            if let Some(slot) = table.get_mut(usize::from(sc.nr)) {
                *slot = Slot::Fixed { action: Action::Allow, origin: always };
            }
        }
        CompiledPolicy {
            table: table.into_boxed_slice(),
            rules,
            origins,
            default: p.default,
            mode: p.mode,
            source: p.source.clone(),
            digest: p.digest.clone(),
        }
    }

    /// The file the policy came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `sha256:…` of the policy file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Enforce or complain.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn finish(&self, action: Action) -> Decision {
        match (action, self.mode) {
            (Action::Allow, _) => Decision::Allow,
            (a, Mode::Complain) => Decision::Complain(a),
            (Action::Deny(e), Mode::Enforce) => Decision::Deny(e),
            (Action::Kill, Mode::Enforce) => Decision::Kill,
        }
    }

    /// What to do with call `nr` with arguments `args`.
    #[inline]
    pub fn decide(&self, nr: u64, args: &[u64; 6]) -> Decision {
        match self.table.get(nr as usize) {
            Some(Slot::Fixed { action, .. }) => self.finish(*action),
            Some(_) => self.verdict(nr, args).decision,
            None => self.finish(self.default),
        }
    }

    /// As [`Self::decide`], and which part of the policy decided.
    pub fn verdict(&self, nr: u64, args: &[u64; 6]) -> Verdict<'_> {
        let (action, origin, no_rule_matched) = match self.table.get(nr as usize) {
            None => (self.default, 0, false),
            Some(Slot::Fixed { action, origin }) => (*action, *origin, false),
            Some(Slot::Rules { first, count, fallback, fallback_origin }) => {
                let rs = &self.rules[*first as usize..(*first + *count) as usize];
                match rs.iter().find(|r| r.conds.iter().all(|c| c.matches(args))) {
                    Some(r) => (r.action, r.origin, false),
                    None => (*fallback, *fallback_origin, true),
                }
            }
        };
        Verdict { decision: self.finish(action), origin: &self.origins[origin as usize], no_rule_matched }
    }

    /// Whether `nr` is refused whatever its arguments.
    pub fn refuses_unconditionally(&self, nr: u64) -> bool {
        match self.table.get(nr as usize) {
            None => self.default != Action::Allow,
            Some(Slot::Fixed { action, .. }) => *action != Action::Allow,
            Some(Slot::Rules { first, count, fallback, .. }) => {
                *fallback != Action::Allow
                    && self.rules[*first as usize..(*first + *count) as usize]
                        .iter()
                        .all(|r| r.action != Action::Allow)
            }
        }
    }

    /// Whether `nr` has argument rules.
    pub fn has_rules(&self, nr: u64) -> bool {
        matches!(self.table.get(nr as usize), Some(Slot::Rules { .. }))
    }

    /// Whether `nr` is refused for at least some arguments.
    pub fn may_refuse(&self, nr: u64) -> bool {
        self.refusing_action(nr).is_some()
    }

    /// The first refusing action `nr` can get (a rule's or the fallback), if any.
    pub fn refusing_action(&self, nr: u64) -> Option<Action> {
        match self.table.get(nr as usize) {
            None => Some(self.default).filter(|a| *a != Action::Allow),
            Some(Slot::Fixed { action, .. }) => Some(*action).filter(|a| *a != Action::Allow),
            Some(Slot::Rules { first, count, fallback, .. }) => self.rules
                [*first as usize..(*first + *count) as usize]
                .iter()
                .map(|r| r.action)
                .chain(std::iter::once(*fallback))
                .find(|a| *a != Action::Allow),
        }
    }

    /// The calls the libos serves inside the domain
    /// ([`Serve::Local`], [`Serve::LocalOrForwarded`]) that this policy
    /// does not plainly allow: refused for some or all arguments, or
    /// complained about. The monitor hands the set to the libos (the boot
    /// page's `check_local`), which then has the monitor decide each of
    /// these calls; the rest it serves without asking.
    pub fn check_local(&self) -> CallSet {
        let mut set = CallSet::EMPTY;
        for sc in names::TABLE {
            let nr = u64::from(sc.nr);
            if matches!(sc.serve, Serve::Local | Serve::LocalOrForwarded) && self.may_refuse(nr) {
                set.insert(nr);
            }
        }
        set
    }

    /// Whether `nr` is allowed for at least some arguments.
    pub fn may_allow(&self, nr: u64) -> bool {
        !self.refuses_unconditionally(nr)
    }

    /// One line for messages: "openat (system call 257)".
    pub fn call_name(nr: u64) -> String {
        format!("{} (system call {nr})", names::display(nr))
    }

    /// "EPERM" etc. for a deny decision.
    pub fn errno_name(e: i32) -> String {
        errno::name_or_number(e)
    }
}
