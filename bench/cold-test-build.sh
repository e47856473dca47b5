#!/usr/bin/env bash
# Cold `cargo test --workspace --no-run` of two commits, interleaved A B A B
# ..., each in a fresh checkout and a fresh target directory, so both see the
# same machine load. Prints wall and CPU (user + sys) time per run and the
# load average before each; CPU time is the better measure on a shared
# machine. The crates.io registry cache is shared (downloads are not timed).
#
#   bash bench/cold-test-build.sh BEFORE AFTER [RUNS]     (default RUNS: 2)
#
# Needs ~10 GiB free under $TMPDIR per run (removed after each run).
set -euo pipefail
before=${1:?usage: cold-test-build.sh BEFORE AFTER [RUNS]}
after=${2:?usage: cold-test-build.sh BEFORE AFTER [RUNS]}
runs=${3:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t cabin-cold-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf '%-10s %-12s %8s %8s %8s  %s\n' run commit wall_s user_s sys_s load
for i in $(seq 1 "$runs"); do
    for rev in "$before" "$after"; do
        src="$work/src"
        git -C "$repo" worktree add -q --detach "$src" "$rev"
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        out="$work/time"
        ( cd "$src" && CARGO_TARGET_DIR="$work/target" /usr/bin/time -f '%e %U %S' -o "$out" \
            cargo test --workspace --no-run -q >/dev/null 2>"$work/log" ) \
            || { echo "build of $rev failed:"; tail -20 "$work/log"; exit 1; }
        read -r wall user sys <"$out"
        printf '%-10s %-12s %8s %8s %8s  %s\n' "$i" "$(git -C "$repo" rev-parse --short "$rev")" "$wall" "$user" "$sys" "$load"
        git -C "$repo" worktree remove --force "$src"
        rm -rf "$work/target"
    done
done
