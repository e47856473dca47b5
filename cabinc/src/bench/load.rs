//! `cabinc bench --load N`: N CPU hogs (busy threads of cabinc) that run through every native and
//! confined run of an item, so both sides meet the same competition for the CPUs (docs/performance.md,
//! "Benchmarking under load"). The hogs start before an item's first (warm-up) run and stop after
//! its last, so native and confined runs, interleaved, all run under them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;

/// Running CPU hogs; dropping them stops and joins them.
#[derive(Debug)]
pub struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hogs {
    /// Starts `n` busy threads (none for 0).
    pub fn start(n: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .filter_map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new().name(format!("cabinc-hog{i}")).spawn(move || spin(&stop)).ok()
            })
            .collect();
        Hogs { stop, threads }
    }

    /// How many hogs run.
    pub fn count(&self) -> usize {
        self.threads.len()
    }
}

/// Integer work until `stop` (checked every few microseconds).
fn spin(stop: &AtomicBool) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..4096 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The machine's load as the report records it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Load {
    /// CPU hogs cabinc ran during every run (`--load`).
    pub hogs: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the benchmark started, before any hog.
    pub loadavg_start: [f64; 3],
    /// `/proc/loadavg` when the benchmark ended (hogs included while they ran).
    pub loadavg_end: [f64; 3],
}

/// The 1, 5 and 15 minute load averages (zeros where unreadable).
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = s.split_whitespace().map(|w| w.parse::<f64>().unwrap_or(0.0));
    [v.next().unwrap_or(0.0), v.next().unwrap_or(0.0), v.next().unwrap_or(0.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hogs_start_and_stop() {
        let h = Hogs::start(2);
        assert_eq!(h.count(), 2);
        drop(h);
        assert_eq!(Hogs::start(0).count(), 0);
    }

    #[test]
    fn load_average_reads() {
        let l = loadavg();
        assert!(l.iter().all(|v| *v >= 0.0), "{l:?}");
    }
}
