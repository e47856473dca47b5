#!/usr/bin/env bash
# Installs what Cabin's build and tests need on a fresh Debian machine.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
pkgs=(gcc binutils musl-tools busybox-static strace golang-go)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The QEMU tier (cabinc/tests/qemu_xonly.rs, docs/execute-only.md): execute-only
# code proven under TCG's emulated protection keys, on Debian's kernel.
qemu_pkgs=(qemu-system-x86 linux-image-amd64)
qemu_missing=()
for p in "${qemu_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || qemu_missing+=("$p")
done
if [ ${#qemu_missing[@]} -gt 0 ]; then
    echo "setup: installing ${qemu_missing[*]} (the QEMU tier)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${qemu_missing[@]}" >/dev/null \
        || echo "setup: could not install ${qemu_missing[*]}; the QEMU tier will say NOT RUN"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    echo "setup: adding Rust target x86_64-unknown-none (the libos and proxy-kernel are built for it)"
    rustup target add x86_64-unknown-none
fi
# Fuzzing (scripts/test.sh runs every fuzz target briefly): cargo-fuzz on the
# nightly toolchain, which also needs x86_64-unknown-none (the fuzz crate
# builds the monitor and the rewriter, whose build scripts build no_std blobs).
# Best effort: without them test.sh says `fuzz: NOT RUN (why)`.
if cargo +nightly --version >/dev/null 2>&1; then
    if ! rustup target list --toolchain nightly --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
        echo "setup: adding x86_64-unknown-none to the nightly toolchain (for fuzzing)"
        rustup target add x86_64-unknown-none --toolchain nightly || echo "setup: could not add it; fuzzing will not run"
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "setup: installing cargo-fuzz (for fuzzing)"
        cargo install cargo-fuzz --locked || echo "setup: cargo-fuzz did not install; fuzzing will not run"
    fi
fi
