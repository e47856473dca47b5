#!/usr/bin/env bash
# Ring benchmark: a null forwarded system call and a syscall-heavy workload
# (busybox sha256sum of a 100 MB file, and dd with 512-byte reads), native
# versus confined under the process backend. Prints a Markdown table.
#
# Usage: bench/ring/run.sh [SIZE_MB]
# Env:   CABINC   cabinc binary            (default: target/release/cabinc)
#        RUNNER   "cabinc run" equivalent  (default: cabinc run --backend process -q)
#        BUSYBOX  static busybox           (default: /bin/busybox)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size=${1:-100}
tgt=${CARGO_TARGET_DIR:-$root/target}
CABINC=${CABINC:-$tgt/release/cabinc}
RUNNER=${RUNNER:-$CABINC run --backend process -q}
BUSYBOX=${BUSYBOX:-/bin/busybox}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -static -O2 -o "$work/nullfwd" "$here/nullfwd.c"
"$CABINC" build "$work/nullfwd" -o "$work/nullfwd.cabin" >/dev/null 2>&1
"$CABINC" build "$BUSYBOX" -o "$work/busybox.cabin" >/dev/null 2>&1
head -c "${size}M" /dev/urandom > "$work/big"

# median of 3 wall-clock runs, in ms
time_ms() {
    local ts=()
    for _ in 1 2 3; do
        local t0 t1
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1
        t1=$(date +%s%N)
        ts+=($(( (t1 - t0) / 1000000 )))
    done
    printf '%s\n' "${ts[@]}" | sort -n | sed -n 2p
}

n_native=$("$work/nullfwd" 2000000 | sed 's/.*: \([0-9.]*\) ns.*/\1/')
n_conf=$($RUNNER "$work/nullfwd.cabin" -- 2000000 | sed 's/.*: \([0-9.]*\) ns.*/\1/')

sha_native=$(time_ms "$BUSYBOX" sha256sum "$work/big")
sha_conf=$(time_ms $RUNNER --allow-read "$work" "$work/busybox.cabin" -- sha256sum "$work/big")
dd_native=$(time_ms "$BUSYBOX" dd if="$work/big" of=/dev/null bs=512)
dd_conf=$(time_ms $RUNNER --allow-read "$work" "$work/busybox.cabin" -- dd if="$work/big" of=/dev/null bs=512)
reads=$(( size * 1024 * 1024 / 512 ))

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "| workload | native | confined (process backend) | ratio |"
echo "|---|---|---|---|"
echo "| null forwarded call (fcntl F_GETFD), per call | ${n_native} ns | ${n_conf} ns | $(ratio "$n_conf" "$n_native") |"
echo "| busybox sha256sum ${size} MB | ${sha_native} ms | ${sha_conf} ms | $(ratio "$sha_conf" "$sha_native") |"
echo "| busybox dd bs=512, ${size} MB (${reads} reads + writes) | ${dd_native} ms | ${dd_conf} ms | $(ratio "$dd_conf" "$dd_native") |"
