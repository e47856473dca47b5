#!/usr/bin/env bash
# Thread benchmarks, native vs confined on both backends: thread create+join
# and futex ping-pong between two threads (bench/threads/threads.c: ns per
# operation, timed inside the program). Prints, per case and backend, the
# median of RUNS runs and the spread (min-max), with the machine's load.
#
# Usage: bench/threads/run.sh [RUNS] [CREATE_N] [PINGPONG_N]
#        (defaults 7, 2000, 20000; needs gcc, and /dev/kvm for kvm)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-7}"; create_n="${2:-2000}"; pingpong_n="${3:-20000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p cabinc
cabinc="$CARGO_TARGET_DIR/release/cabinc"
gcc -O2 -static -pthread -o "$work/threads" bench/threads/threads.c
"$cabinc" build "$work/threads" -o "$work/threads.cabin" >/dev/null 2>&1
echo "date $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n | awk '{v[NR]=$1} END {printf "%d (%d-%d)", v[int((NR+1)/2)], v[1], v[NR]}'; }
for c in "create $create_n" "pingpong $pingpong_n"; do
    for b in native process kvm; do
        for _ in $(seq "$runs"); do
            case $b in
                native) "$work/threads" $c ;;
                *) "$cabinc" run --quiet --backend "$b" "$work/threads.cabin" -- $c ;;
            esac | awk '{print $2}'
        done | median | sed "s|^|${c%% *} $b: |; s|$| ns/op|"
        echo
    done
done
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
