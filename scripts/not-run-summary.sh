#!/usr/bin/env bash
# Prints the NOT RUN summary of a test run from the log the tests wrote
# (CABIN_NOT_RUN_LOG, one `TIER<TAB>TEST<TAB>WHY` line per test or part of a
# test that could not run here; see tests/src/not_run.rs and fuzz/run.sh):
#
#   summary: 3 tests NOT RUN
#     KVM: /dev/kvm not usable (...): 2: paths::path_table_kvm, site::kvm_gate_...
#     fuzz: no nightly toolchain (...): 1: fuzz/run.sh
#
# or `summary: every test ran`. A test that said NOT RUN twice for the same
# reason is listed once. Usage: scripts/not-run-summary.sh LOG
set -euo pipefail
log=${1:?usage: not-run-summary.sh LOG}
if [ ! -s "$log" ]; then
    echo "summary: every test ran"
    exit 0
fi
# Distinct (tier, why, test), grouped by tier and reason.
sort -u "$log" | awk -F'\t' '
    NF < 3 { next }
    {
        key = $1 ": " $3
        if (!(key in count)) { order[++groups] = key }
        count[key]++
        names[key] = (count[key] == 1) ? $2 : names[key] ", " $2
        if (!($2 in seen)) { seen[$2] = 1; tests++ }
    }
    END {
        printf "summary: %d test%s NOT RUN\n", tests, (tests == 1 ? "" : "s")
        for (i = 1; i <= groups; i++) {
            k = order[i]
            printf "  %s: %d: %s\n", k, count[k], names[k]
        }
    }'
