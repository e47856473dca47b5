//! State kept per system-call number, bounded whatever numbers a program
//! uses.
//!
//! Call numbers come from the program: a loop over `syscall(100000 + i)`
//! would grow any map or set keyed by them without bound (it took the
//! monitor to 1.8 GB and a million stderr lines at a million calls). So every
//! per-number table in the monitor is one of these: a fixed slot for each
//! number below [`SLOTS`] (the x86-64 table ends below it) and one shared
//! bucket for every other number.

/// Numbers below this have a slot of their own (the x86-64 system calls
/// end at 461; the libos's local counters have as many slots).
pub const SLOTS: usize = 512;

const _: () = assert!(SLOTS == cabin_abi::boot::LOCAL_COUNT_SLOTS);

/// The key statistics, the trace summary and messages use for the shared
/// bucket: numbers from [`SLOTS`] up, which are not x86-64 system calls.
pub const OTHER_KEY: &str = "syscall_other";

/// The slot of `nr`, or `None` for the shared bucket.
pub fn slot(nr: u64) -> Option<usize> {
    usize::try_from(nr).ok().filter(|&i| i < SLOTS)
}

/// A counter per number below [`SLOTS`], one for all others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCounts {
    known: Box<[u64; SLOTS]>,
    other: u64,
}

impl Default for CallCounts {
    fn default() -> CallCounts {
        CallCounts { known: Box::new([0; SLOTS]), other: 0 }
    }
}

impl CallCounts {
    /// Adds `n` to the counter of `nr` (saturating).
    pub fn add(&mut self, nr: u64, n: u64) {
        let c = match slot(nr) {
            Some(i) => &mut self.known[i],
            None => &mut self.other,
        };
        *c = c.saturating_add(n);
    }

    /// The counter of `nr` (for a number without a slot: the shared bucket).
    pub fn get(&self, nr: u64) -> u64 {
        slot(nr).map_or(self.other, |i| self.known[i])
    }

    /// Calls with numbers from [`SLOTS`] up.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// All calls counted.
    pub fn total(&self) -> u64 {
        self.known.iter().fold(self.other, |a, &c| a.saturating_add(c))
    }

    /// `(number, count)` of every slot with a count, in number order.
    pub fn known(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.known.iter().enumerate().filter(|(_, &c)| c != 0).map(|(nr, &c)| (nr as u64, c))
    }

    /// `(key, count)` of every counter with a count: the call's name (or
    /// `syscall_N`) for a slot, [`OTHER_KEY`] for the shared bucket last.
    pub fn named(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let other = (self.other != 0).then(|| (OTHER_KEY.to_string(), self.other));
        self.known().map(|(nr, c)| (crate::names::display(nr), c)).chain(other)
    }
}

/// Which numbers were seen: a bit per number below [`SLOTS`], one for all
/// others together (for "report once" sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSet {
    known: [u64; SLOTS / 64],
    other: bool,
}

impl CallSet {
    /// Marks `nr`; true when its slot (or, for a number without one, the
    /// shared bucket) was not marked before.
    pub fn insert(&mut self, nr: u64) -> bool {
        match slot(nr) {
            Some(i) => {
                let (w, b) = (i / 64, 1u64 << (i % 64));
                let new = self.known[w] & b == 0;
                self.known[w] |= b;
                new
            }
            None => !std::mem::replace(&mut self.other, true),
        }
    }
}

/// How many distinct values were seen, exactly up to a cap and "at least
/// the cap" beyond it, in memory bounded by the cap.
#[derive(Clone, Debug, Default)]
pub struct Distinct {
    seen: std::collections::HashSet<u64>,
    saturated: bool,
}

impl Distinct {
    /// Values remembered at most.
    pub const CAP: usize = 1024;

    /// Counts `v`.
    pub fn insert(&mut self, v: u64) {
        if self.seen.len() < Distinct::CAP {
            self.seen.insert(v);
        } else if !self.seen.contains(&v) {
            self.saturated = true;
        }
    }

    /// `"N"`, or `"more than 1024"` once past the cap.
    pub fn describe(&self) -> String {
        if self.saturated {
            format!("more than {}", Distinct::CAP)
        } else {
            self.seen.len().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_x86_64_number_has_a_slot() {
        let max = crate::names::TABLE.iter().map(|s| usize::from(s.nr)).max().unwrap_or(0);
        assert!(max < SLOTS, "syscall {max} has no slot");
    }

    #[test]
    fn counts_and_sets_stay_bounded() {
        let mut c = CallCounts::default();
        let mut s = CallSet::default();
        let mut d = Distinct::default();
        let mut new = 0;
        for nr in (0..3u64).chain(100_000..1_100_000).chain([u64::MAX, 1 << 63, 511, 512]) {
            c.add(nr, 1);
            new += u64::from(s.insert(nr));
            d.insert(nr);
        }
        assert_eq!((c.get(1), c.get(511), c.other(), c.get(u64::MAX)), (1, 1, 1_000_003, 1_000_003));
        assert_eq!(c.total(), 1_000_007);
        assert_eq!(new, 5, "0, 1, 2, 511 and the shared bucket once");
        assert!(!s.insert(7_000_000) && s.insert(7));
        assert_eq!(d.describe(), "more than 1024");
        let named: Vec<_> = c.named().collect();
        assert_eq!(named.first(), Some(&("read".to_string(), 1)));
        assert_eq!(named.last(), Some(&(OTHER_KEY.to_string(), 1_000_003)));
        assert_eq!(named.len(), 5);
        c.add(3, u64::MAX);
        c.add(3, 1);
        assert_eq!(c.get(3), u64::MAX, "saturates");
        let mut d = Distinct::default();
        [5, 5, 6].iter().for_each(|&v| d.insert(v));
        assert_eq!(d.describe(), "2");
    }
}
