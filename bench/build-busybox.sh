#!/usr/bin/env bash
# Benchmarks `cabinc build` on Debian's busybox-static (the reference input).
# Usage: bench/build-busybox.sh [RUNS]   (needs hyperfine and busybox-static)
# Prints hyperfine's table and writes bench/results/build-busybox.json.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
command -v hyperfine >/dev/null || { echo "error: hyperfine not found; help: apt-get install hyperfine" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "error: /bin/busybox not found; help: apt-get install busybox-static" >&2; exit 1; }
cargo build --release -q -p cabinc
cabinc=${CARGO_TARGET_DIR:-target}/release/cabinc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p bench/results
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
hyperfine --warmup 3 --runs "$runs" --export-json bench/results/build-busybox.json \
    "$cabinc build /bin/busybox -o $out/busybox.cabin"
