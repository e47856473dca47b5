#!/usr/bin/env bash
# Runs Cabin's whole test suite: installs prerequisites, says which hardware
# tiers can run here, then `cargo test --workspace`, then every fuzz target
# for a short bounded time (fuzz/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    echo "tiers: KVM usable: KVM-tier tests run (CABIN_REQUIRE_KVM=1: a KVM test that cannot run fails)"
    export CABIN_REQUIRE_KVM=1
else
    echo "tiers: /dev/kvm NOT usable: KVM-tier tests are reported as NOT RUN"
fi
echo "tiers: no SEV-SNP hardware: SNP hardware tier NOT RUN (pure SNP logic is unit-tested)"
cargo test --workspace "$@"
# Every fuzz target for a short bounded time (FUZZ_SECONDS, default 30 s
# each; docs/fuzzing.md): a crash fails the run; without nightly or
# cargo-fuzz it says `fuzz: NOT RUN (why)` and the run goes on.
fuzz_rc=0
bash fuzz/run.sh "${FUZZ_SECONDS:-30}" || fuzz_rc=$?
case $fuzz_rc in
    0) echo "fuzz: every target ran ${FUZZ_SECONDS:-30} s without a crash" ;;
    2) ;; # NOT RUN, said by fuzz/run.sh
    *) echo "fuzz: FAILED (see fuzz/logs/ and fuzz/artifacts/)"; exit 1 ;;
esac
