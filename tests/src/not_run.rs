//! Saying that a test, or a part of one, did not run.
//!
//! libtest shows the output of failing tests only, so a test that returns
//! early because a tier cannot run here (no usable /dev/kvm, no gcc, not
//! root) looks like a pass. Every such place calls [`not_run`]: it says
//! `TIER test NOT RUN: TEST: WHY` on stderr and, when [`NOT_RUN_LOG`] names a
//! file, appends `TIER<TAB>TEST<TAB>WHY` to it. `scripts/test.sh` sets that
//! variable and prints, at the end of the run, how many tests did not run,
//! by tier (`scripts/not-run-summary.sh`).
//!
//! KVM tests go through [`kvm_available`], which also honours
//! `CABIN_REQUIRE_KVM=1` (an unusable /dev/kvm fails the test) and the
//! test-only knob [`HIDE_KVM`].

use std::io::Write;

/// The environment variable naming the file that collects NOT RUN lines.
pub const NOT_RUN_LOG: &str = "CABIN_NOT_RUN_LOG";

/// Test-only knob: `CABIN_TEST_HIDE_KVM=1` makes [`kvm_available`] act as if
/// /dev/kvm were not usable (the product never reads it). It shows what a
/// run looks like on a machine without KVM: `CABIN_TEST_HIDE_KVM=1
/// scripts/test.sh`.
pub const HIDE_KVM: &str = "CABIN_TEST_HIDE_KVM";

/// Says that (part of) the running test did not run because `tier` is
/// missing here (`KVM`, `gcc`, `root`, ...), and why.
///
/// The test is named by its binary and its thread (libtest names each test's
/// thread after the test), e.g. `paths::rename_race_kvm`.
pub fn not_run(tier: &str, why: &str) {
    let test = current_test();
    let why = why.replace(['\n', '\t'], " ");
    eprintln!("{tier} test NOT RUN: {test}: {why}");
    let Some(log) = std::env::var_os(NOT_RUN_LOG).filter(|p| !p.is_empty()) else { return };
    let log = std::path::Path::new(&log);
    if let Err(e) = record(log, tier, &test, &why) {
        panic!("cannot record a NOT RUN test in {NOT_RUN_LOG}={}: {e}", log.display());
    }
}

/// Appends `TIER<TAB>TEST<TAB>WHY` to `log`, in one write in append mode so
/// that lines from concurrent tests do not mix.
fn record(log: &std::path::Path, tier: &str, test: &str, why: &str) -> std::io::Result<()> {
    let line = format!("{tier}\t{test}\t{why}\n");
    std::fs::OpenOptions::new().create(true).append(true).open(log)?.write_all(line.as_bytes())
}

/// The gate of every KVM-tier test: `probe` says whether /dev/kvm is usable
/// (`cabin_kvm::usable`, or an open of the device). When it is not
/// (or [`HIDE_KVM`] is set): with `CABIN_REQUIRE_KVM=1` this panics,
/// otherwise it says NOT RUN (tier `KVM`) and returns `false`, and the caller
/// returns without asserting.
pub fn kvm_available<E: std::fmt::Display>(probe: impl FnOnce() -> Result<(), E>) -> bool {
    let usable = if std::env::var(HIDE_KVM).as_deref() == Ok("1") {
        Err(format!("hidden by {HIDE_KVM}=1"))
    } else {
        probe().map_err(|e| e.to_string())
    };
    match usable {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CABIN_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{}: CABIN_REQUIRE_KVM=1 but /dev/kvm is not usable: {why}", current_test());
            }
            not_run("KVM", &format!("/dev/kvm not usable ({why})"));
            false
        }
    }
}

/// `BINARY::TEST`: the test binary's name without cargo's hash, and the
/// current thread's name.
pub fn current_test() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
    let binary = stem.map(|s| strip_hash(&s).to_string()).unwrap_or_else(|| "?".into());
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => format!("{binary}::{name}"),
        _ => binary,
    }
}

/// `paths-0123456789abcdef` → `paths`.
fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_lose_cargos_hash() {
        assert_eq!(strip_hash("paths-0123456789abcdef"), "paths");
        assert_eq!(strip_hash("cabin_monitor-89abcdef01234567"), "cabin_monitor");
        assert_eq!(strip_hash("cargo-cabin"), "cargo-cabin");
        assert_eq!(strip_hash("x-0123"), "x-0123");
    }

    #[test]
    fn records_are_appended_one_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("not-run");
        record(&log, "KVM", "a::b", "why").expect("first record");
        record(&log, "gcc", "c", "no gcc").expect("second record");
        assert_eq!(std::fs::read_to_string(&log).expect("the log"), "KVM\ta::b\twhy\ngcc\tc\tno gcc\n");
    }

    #[test]
    fn the_current_test_is_named_after_its_thread() {
        assert_eq!(current_test(), "cabin_tests::not_run::tests::the_current_test_is_named_after_its_thread");
    }
}
