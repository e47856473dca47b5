#!/usr/bin/env bash
# Cabin's main job on a bundled sample: build an image, run it confined, show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== building cabinc"
cargo build --release -q -p cabinc
cabinc=${CARGO_TARGET_DIR:-target}/release/cabinc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== compiling samples/c/sha256.c statically (gcc -static)"
gcc -static -O2 -o "$work/sha256" samples/c/sha256.c
echo "== cabinc build"
"$cabinc" build "$work/sha256" -o "$work/sha256.cabin"
echo "== cabinc inspect"
"$cabinc" inspect "$work/sha256.cabin"
echo "== native run"
echo "hello, cabin" | "$work/sha256"
if "$cabinc" run --help >/dev/null 2>&1; then
    echo "== confined run (cabinc run)"
    echo "hello, cabin" | "$cabinc" run "$work/sha256.cabin"
else
    echo "== passthrough run (this build of cabinc has no 'run' yet)"
    echo "hello, cabin" | "$work/sha256.cabin"
fi
