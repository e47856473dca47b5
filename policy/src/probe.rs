//! Generated probes: for each allow entry and allow rule of a policy, one
//! call that must be allowed and one that must be refused. Tests run them
//! against [`super::CompiledPolicy::decide`]; `cabinc policy check --probes`
//! prints them.

use super::{Action, Cond, Op, Policy};

/// One generated call and what the policy must do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Which part of the policy it exercises, in words.
    pub what: String,
    /// Call number.
    pub nr: u64,
    /// Arguments.
    pub args: [u64; 6],
    /// Whether it must be allowed (else refused).
    pub allowed: bool,
}

/// Arguments satisfying `c` (when `want`) or violating it (when `!want`),
/// starting from `base`; `None` when impossible (e.g. `lt 0`).
fn solve(c: &Cond, want: bool, base: &[u64; 6]) -> Option<[u64; 6]> {
    let mut a = *base;
    let i = usize::from(c.arg);
    let v = c.value;
    a[i] = match (c.op, want) {
        (Op::Eq, true) | (Op::Ne, false) | (Op::Le, true) | (Op::Ge, true) => v,
        (Op::Eq, false) | (Op::Ne, true) => v ^ 1,
        (Op::Lt, true) | (Op::Ge, false) => v.checked_sub(1)?,
        (Op::Lt, false) | (Op::Gt, false) => v,
        (Op::Le, false) | (Op::Gt, true) => v.checked_add(1)?,
        (Op::MaskedEq, true) => v | (a[i] & !c.mask),
        (Op::MaskedEq, false) => {
            if c.mask == 0 {
                return None;
            }
            (v ^ (c.mask & c.mask.wrapping_neg())) & c.mask
        }
    };
    (c.matches(&a) == want).then_some(a)
}

/// The probes for `p` (see the module docs). Entries whose refusal
/// counterpart cannot exist (a call allowed for all arguments has no refused
/// form except another call) use the nearest refused call number instead.
pub fn probes(p: &Policy) -> Vec<Probe> {
    // Expectations come from the policy as written, not from the compiled table under test.
    let covered = |list: &[super::ListEntry], nr: u64| list.iter().any(|e| e.entry.numbers().contains(&nr));
    let list_allows = |nr: u64| !covered(&p.kill, nr) && !covered(&p.deny, nr) && covered(&p.allow, nr);
    let refused_nr = |near: u64| -> Option<u64> {
        if p.default == Action::Allow {
            return None;
        }
        super::names::TABLE
            .iter()
            .filter(|s| s.serve != super::names::Serve::Always)
            .map(|s| u64::from(s.nr))
            .filter(|&n| !covered(&p.allow, n) && !p.rules.iter().any(|r| r.nr == n))
            .min_by_key(|&n| n.abs_diff(near))
    };
    let mut out = Vec::new();
    for e in &p.allow {
        for nr in e.entry.numbers() {
            if p.rules.iter().any(|r| r.nr == nr) {
                continue; // exercised through its rules below
            }
            let what = format!(
                "allow entry `{}` (line {}): {}",
                e.entry.spelling(),
                e.loc.line,
                super::names::display(nr)
            );
            out.push(Probe { what: what.clone(), nr, args: [0; 6], allowed: list_allows(nr) });
            if let Some(d) = refused_nr(nr) {
                out.push(Probe {
                    what: format!("{what}, neighbour {}", super::names::display(d)),
                    nr: d,
                    args: [0; 6],
                    allowed: false,
                });
            }
        }
    }
    for (i, r) in p.rules.iter().enumerate() {
        if r.action != Action::Allow || r.conds.is_empty() {
            continue;
        }
        let what = format!("rule at line {} for {}", r.loc.line, super::names::display(r.nr));
        // Allowed: satisfy every condition in turn.
        let mut yes = Some([0u64; 6]);
        for cond in &r.conds {
            yes = yes.and_then(|a| solve(cond, true, &a));
        }
        if let Some(a) = yes.filter(|a| r.conds.iter().all(|k| k.matches(a))) {
            // An earlier rule for the same call may decide first; the probe expects what the
            // first matching rule says, which for rule i is itself unless an earlier one matches.
            let earlier = p.rules[..i].iter().find(|q| q.nr == r.nr && q.conds.iter().all(|k| k.matches(&a)));
            let expect = earlier.is_none_or(|q| q.action == Action::Allow);
            out.push(Probe { what: format!("{what}: conditions hold"), nr: r.nr, args: a, allowed: expect });
        }
        // Refused: violate the first condition, keep the others satisfied, and make sure no
        // other rule for the call allows it and its fallback refuses.
        if p.compile_fallback(r.nr) == Action::Allow {
            continue;
        }
        for (k, cond) in r.conds.iter().enumerate() {
            let mut a = Some([0u64; 6]);
            for (j, other) in r.conds.iter().enumerate() {
                if j != k {
                    a = a.and_then(|x| solve(other, true, &x));
                }
            }
            let Some(a) = a.and_then(|x| solve(cond, false, &x)) else { continue };
            let other_allows = p
                .rules
                .iter()
                .any(|q| q.nr == r.nr && q.action == Action::Allow && q.conds.iter().all(|k| k.matches(&a)));
            if !other_allows {
                out.push(Probe {
                    what: format!("{what}: {} fails", cond.describe()),
                    nr: r.nr,
                    args: a,
                    allowed: false,
                });
                break;
            }
        }
    }
    out
}
