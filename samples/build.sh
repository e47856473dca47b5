#!/usr/bin/env bash
# Builds every Cabin sample program into OUTDIR, statically linked, in
# several flavours:
#
#   OUTDIR/NAME.glibc       gcc -static -O2
#   OUTDIR/NAME.glibc-pie   gcc -static-pie -O2
#   OUTDIR/NAME.musl        musl-gcc -static -O2
#   OUTDIR/NAME.musl-pie    musl static-pie (rcrt1.o, --no-dynamic-linker)
#   OUTDIR/hello-rs.rust    Rust, -C target-feature=+crt-static
#
# Inputs that `cabinc build` must refuse go to OUTDIR/refuse/:
#   refuse/hello.dynamic    gcc default (dynamically linked)
#   refuse/wrpkru.glibc     hides a wrpkru inside another instruction
#
# OUTDIR/MANIFEST lists what was built ("NAME FLAVOUR FILE" per line);
# OUTDIR/SKIPPED says which flavours were skipped and why. A flavour whose
# compiler is missing is skipped with a message; a compile error fails.
#
# Usage: samples/build.sh OUTDIR

set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
mkdir -p "$out/refuse"
: >"$out/MANIFEST"
: >"$out/SKIPPED"

CFLAGS=(-O2 -g0 -Wall -Wextra -pthread)
samples=()
for src in "$here"/c/*.c; do
    samples+=("$(basename "$src" .c)")
done

skip() {
    echo "build.sh: SKIPPED flavour $1: $2" >&2
    echo "$1: $2" >>"$out/SKIPPED"
}

record() { echo "$1 $2 $3" >>"$out/MANIFEST"; }

# check_static FILE: fails when FILE asks for a program interpreter.
check_static() {
    if readelf -lW "$1" | grep -q INTERP; then
        echo "build.sh: $1 is not statically linked (has PT_INTERP)" >&2
        return 1
    fi
}

build_c_flavour() { # flavour, then the compiler command (without sources/-o)
    local flavour="$1"
    shift
    for name in "${samples[@]}"; do
        "$@" "$here/c/$name.c" -o "$out/$name.$flavour"
        check_static "$out/$name.$flavour"
        record "$name" "$flavour" "$name.$flavour"
    done
    echo "build.sh: built ${#samples[@]} C samples, flavour $flavour" >&2
}

# --- glibc ---------------------------------------------------------------
if command -v gcc >/dev/null 2>&1; then
    build_c_flavour glibc gcc -static "${CFLAGS[@]}"
    build_c_flavour glibc-pie gcc -static-pie -fPIE "${CFLAGS[@]}"
    gcc "${CFLAGS[@]}" "$here/c/hello.c" -o "$out/refuse/hello.dynamic"
    record hello dynamic refuse/hello.dynamic
    gcc -static "${CFLAGS[@]}" "$here/c/refuse/wrpkru.c" -o "$out/refuse/wrpkru.glibc"
    record wrpkru glibc refuse/wrpkru.glibc
else
    skip glibc "gcc not found (apt-get install gcc libc6-dev)"
    skip glibc-pie "gcc not found (apt-get install gcc libc6-dev)"
fi

# --- musl ----------------------------------------------------------------
if command -v musl-gcc >/dev/null 2>&1; then
    build_c_flavour musl musl-gcc -static "${CFLAGS[@]}"
    # Debian's musl-gcc specs always link Scrt1.o and a dynamic linker, so
    # static-pie is assembled by hand: rcrt1.o self-relocates.
    # (musl-gcc -print-file-name reports glibc's files, so look for musl's.)
    mlib=""
    for cand in /usr/lib/x86_64-linux-musl /usr/lib/musl/lib /usr/local/musl/lib; do
        if [ -f "$cand/rcrt1.o" ] && [ -f "$cand/libc.a" ]; then mlib="$cand"; break; fi
    done
    if [ -n "$mlib" ]; then
        musl_pie=(musl-gcc -fPIE -static-pie -nostartfiles -Wl,-static -Wl,-pie
                  -Wl,--no-dynamic-linker -Wl,-z,text "${CFLAGS[@]}"
                  "$mlib/rcrt1.o" "$mlib/crti.o" "$(gcc -print-file-name=crtbeginS.o)")
        musl_pie_end=("$(gcc -print-file-name=crtendS.o)" "$mlib/crtn.o")
        probe="$out/.musl-pie-probe"
        if "${musl_pie[@]}" "$here/c/hello.c" "${musl_pie_end[@]}" -o "$probe" 2>/dev/null &&
            check_static "$probe" 2>/dev/null && "$probe" >/dev/null 2>&1; then
            for name in "${samples[@]}"; do
                "${musl_pie[@]}" "$here/c/$name.c" "${musl_pie_end[@]}" -o "$out/$name.musl-pie"
                check_static "$out/$name.musl-pie"
                record "$name" musl-pie "$name.musl-pie"
            done
            echo "build.sh: built ${#samples[@]} C samples, flavour musl-pie" >&2
        else
            skip musl-pie "musl static-pie link or probe run failed"
        fi
        rm -f "$probe"
    else
        skip musl-pie "rcrt1.o not found in the musl installation"
    fi
else
    skip musl "musl-gcc not found (apt-get install musl-tools)"
    skip musl-pie "musl-gcc not found (apt-get install musl-tools)"
fi

# --- Rust ----------------------------------------------------------------
if command -v cargo >/dev/null 2>&1; then
    # Clear what an outer cargo (e.g. `cargo test`) may have set.
    # CABIN_SAMPLES_RUST_TARGET lets callers share one cargo target dir.
    rust_target="${CABIN_SAMPLES_RUST_TARGET:-$out/.rust-target}"
    unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR RUSTC_WORKSPACE_WRAPPER
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
        --manifest-path "$here/rust/hello-rs/Cargo.toml" \
        --target x86_64-unknown-linux-gnu --target-dir "$rust_target"
    cp "$rust_target/x86_64-unknown-linux-gnu/release/hello-rs" "$out/hello-rs.rust"
    check_static "$out/hello-rs.rust"
    record hello-rs rust hello-rs.rust
    echo "build.sh: built hello-rs, flavour rust" >&2
else
    skip rust "cargo not found (install a Rust toolchain)"
fi

echo "build.sh: done: $(wc -l <"$out/MANIFEST") binaries in $out" >&2
