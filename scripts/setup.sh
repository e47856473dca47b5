#!/usr/bin/env bash
# Installs what Cabin's build and tests need on a fresh Debian machine.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
# containerd: cabinc/tests/oci.rs drives cabin-runc through containerd's runc shim.
pkgs=(gcc binutils musl-tools busybox-static strace golang-go wrk curl containerd)
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
# Kernel headers for building the SEV-SNP backend's guest module
# (backends/snp/module; compiled by `cargo test -p cabin-snp --test module`,
# never loaded). Best effort: without them that test says NOT RUN.
have_headers=0
for d in /usr/src/linux-headers-*-amd64 "/lib/modules/$(uname -r)/build"; do
    [ -e "$d/Makefile" ] && have_headers=1
done
if [ "$have_headers" -eq 0 ]; then
    echo "setup: installing linux-headers-amd64 (to build the SEV-SNP guest module)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq linux-headers-amd64 >/dev/null; } ||
        echo "setup: linux-headers-amd64 did not install; the module build test will say NOT RUN"
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
# The real sqlite3 shell for monitor/tests/sqlite.rs is built from the
# sqlite3-src crate's sources (shell.c + the amalgamation) in cargo's
# registry; fetch the crate there once (not a dependency of the workspace).
if ! ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/sqlite3-src-*/source/shell.c >/dev/null 2>&1; then
    echo "setup: fetching the sqlite3-src crate's sources (for the SQLite test)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src" && echo 'fn main() {}' >"$tmp/src/main.rs"
    printf '[package]\nname = "fetch-sqlite3-src"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nsqlite3-src = "0.6"\n' >"$tmp/Cargo.toml"
    (cd "$tmp" && cargo fetch -q) || echo "setup: could not fetch sqlite3-src; the SQLite test will say NOT RUN"
    rm -rf "$tmp"
fi
