#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another,
# with its corpus in fuzz/corpus/TARGET (kept between runs, not committed)
# and the committed seeds of fuzz/seeds/TARGET. Exits non-zero when a target crashes, hangs or
# leaks (libFuzzer's artifact is in fuzz/artifacts/TARGET/), or when
# `cargo +nightly fuzz` cannot run (then it prints `fuzz: NOT RUN (why)`,
# and appends the reason to $CABIN_NOT_RUN_LOG when that is set, for the
# summary of scripts/test.sh).
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (targets: all by default)
# Each target's summary line ("TARGET: N s, N execs, N crashes") goes to
# stdout; libFuzzer's own output to fuzz/logs/TARGET.log.
set -uo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(elf_parse image_parse service ring)

not_run() {
    echo "fuzz: NOT RUN ($1)"
    if [ -n "${CABIN_NOT_RUN_LOG:-}" ]; then
        printf 'fuzz\tfuzz/run.sh\t%s\n' "$1" >>"$CABIN_NOT_RUN_LOG"
    fi
    exit 2
}
if ! cargo +nightly --version >/dev/null 2>&1; then
    not_run "no nightly toolchain: rustup toolchain install nightly"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    not_run "cargo-fuzz is not installed: cargo install cargo-fuzz --locked"
fi
if ! rustup target list --toolchain nightly --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    not_run "nightly lacks x86_64-unknown-none: rustup target add x86_64-unknown-none --toolchain nightly"
fi

mkdir -p fuzz/logs
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    extra=()
    case "$t" in
        elf_parse) extra=(-max_len=1048576) ;;
        image_parse) extra=(-max_len=262144) ;;
        service | ring) extra=(-max_len=4096) ;;
    esac
    log="fuzz/logs/$t.log"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak.
    # fuzz/seeds/TARGET (committed, read only): hand-made inputs that reach
    # deep paths (the PR_SET_NAME crossing, pipes, a gated ring ...).
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=0
    if [ $rc -ne 0 ]; then
        crashes=1
        failed=1
    fi
    echo "$t: $secs s, ${execs:-0} execs, $crashes crashes (exit $rc; log $log)"
    if [ $rc -ne 0 ]; then
        grep -E "ERROR|panicked|SUMMARY|Test unit written" "$log" | head -5
    fi
done
exit $failed
