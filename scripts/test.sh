#!/usr/bin/env bash
# Runs Cabin's whole test suite: installs prerequisites, says which hardware
# tiers can run here, then `cargo test --workspace`, then every fuzz target
# for a short bounded time (fuzz/run.sh), and ends with a summary of what did
# not run.
#
# A test that cannot run here (no usable /dev/kvm, no gcc, not root, ...)
# says NOT RUN and appends one line to $CABIN_NOT_RUN_LOG (tests/src/not_run.rs;
# fuzz/run.sh does the same); libtest hides the output of passing tests, so
# the summary at the end (scripts/not-run-summary.sh) is where a skipped tier
# shows: `summary: N tests NOT RUN` with the tests by tier and reason, or
# `summary: every test ran`. It is printed when a step fails too.
#
# CABIN_TEST_HIDE_KVM=1 (test-only) makes the KVM tier act as if /dev/kvm were
# not usable: shows what a run on a machine without KVM reports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CABIN_NOT_RUN_LOG=$(mktemp -t cabin-not-run.XXXXXX)
export CABIN_NOT_RUN_LOG
summary() {
    local rc=$?
    echo
    bash scripts/not-run-summary.sh "$CABIN_NOT_RUN_LOG"
    echo "  tier SEV-SNP hardware: $snp_tier"
    rm -f "$CABIN_NOT_RUN_LOG"
    exit $rc
}
# The SEV-SNP hardware tier (backends/snp, docs/snp.md): `cabinc run
# --backend snp` needs an SNP guest with the cabin-vmpl module loaded.
if [ -e /dev/cabin-vmpl ]; then
    snp_tier="an SEV-SNP guest with /dev/cabin-vmpl: bring the backend up by hand (docs/snp.md); no automated hardware tests yet"
elif [ -e /dev/sev-guest ] || grep -qw sev_snp /proc/cpuinfo 2>/dev/null; then
    snp_tier="NOT RUN (an SEV-SNP guest, but the cabin-vmpl module is not loaded: docs/snp.md)"
else
    snp_tier="NOT RUN (no SEV-SNP here; the SNP backend's pure parts, module build and attestation fixtures are tested: cargo test -p cabin-snp)"
fi
trap summary EXIT
if [ "${CABIN_TEST_HIDE_KVM:-}" = 1 ]; then
    echo "tiers: /dev/kvm hidden by CABIN_TEST_HIDE_KVM=1: KVM-tier tests are reported as NOT RUN"
elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    echo "tiers: KVM usable: KVM-tier tests run (CABIN_REQUIRE_KVM=1: a KVM test that cannot run fails)"
    export CABIN_REQUIRE_KVM=1
else
    echo "tiers: /dev/kvm NOT usable: KVM-tier tests are reported as NOT RUN"
fi
echo "tiers: SEV-SNP hardware: $snp_tier"
cargo test --workspace "$@"
# The launch digest cross-checked against virtee's sev crate (its crypto
# stack builds only here, not in every `cargo test --workspace`; the default
# run checks pinned answers of it: image/src/measure.rs).
cargo test -p cabin-image --lib --features sev-crosscheck sev_crosscheck
# Every fuzz target for a short bounded time (FUZZ_SECONDS, default 30 s
# each; docs/fuzzing.md): a crash fails the run; without nightly or
# cargo-fuzz it says `fuzz: NOT RUN (why)` and the run goes on.
fuzz_rc=0
bash fuzz/run.sh "${FUZZ_SECONDS:-30}" || fuzz_rc=$?
case $fuzz_rc in
    0) echo "fuzz: every target ran ${FUZZ_SECONDS:-30} s without a crash" ;;
    2) ;; # NOT RUN, said by fuzz/run.sh (and listed in the summary)
    *) echo "fuzz: FAILED (see fuzz/logs/ and fuzz/artifacts/)"; exit 1 ;;
esac
