#!/usr/bin/env bash
# Start-up benchmark of the KVM backend beside the process backend: wall
# time of a whole confined run of a hello-world image (domain build, VM
# set-up, the program's start-up and exit), median of N runs, measured
# in-process by the test `kvm_bench_startup` (release build).
#
# Usage: bench/kvm-startup.sh [RUNS]     (default 30; needs /dev/kvm)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
bash samples/build.sh "$work/samples" >/dev/null
cargo build -q --release -p cabinc
for flavour in musl glibc; do
    "$CARGO_TARGET_DIR/release/cabinc" build "$work/samples/hello.$flavour" -o "$work/hello.$flavour.cabin" >/dev/null 2>&1
    CABIN_KVM_BENCH_IMAGE="$work/hello.$flavour.cabin" CABIN_KVM_BENCH_RUNS="$runs" \
        cargo test -q --release -p cabin-kvm --lib kvm_bench_startup -- --ignored --nocapture 2>&1 >/dev/null \
        | grep '^startup' | sed "s|$work/||"
done
