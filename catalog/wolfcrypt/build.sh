#!/bin/sh
# Builds a static wolfCrypt program (benchmark or test suite) without configure or make.
# Usage: build.sh SOURCE WORK OUT PROGRAM VARIANT [CC]
#   SOURCE   wolfSSL source tree (the one the wolfssl-sys crate ships: its wolfssl-src/)
#   WORK     directory where the library objects are kept (per variant, compiler and source)
#   OUT      the static executable to write
#   PROGRAM  bench | test
#   VARIANT  asm (x86-64 assembly, AES-NI, AVX1/AVX2) | noasm (portable C)
set -eu
src=$1 work=$2 out=$3 prog=$4 variant=$5 cc=${6:-${CC:-gcc}}
here=$(cd "$(dirname "$0")" && pwd)
case $variant in
    asm) defs="-DCABIN_WOLF_ASM" arch="-maes -mpclmul -msse4.2 -mavx -mavx2 -mbmi2 -madx" ;;
    noasm) defs="" arch="" ;;
    *) echo "build.sh: unknown variant $variant (asm|noasm)" >&2; exit 2 ;;
esac
case $prog in
    bench) main=wolfcrypt/benchmark/benchmark.c ;;
    test) main=wolfcrypt/test/test.c ;;
    *) echo "build.sh: unknown program $prog (bench|test)" >&2; exit 2 ;;
esac
cflags="-O2 -static -DWOLFSSL_USER_SETTINGS -DWOLFSSL_IGNORE_FILE_WARN -I$here -I$src $defs $arch"
# Objects are kept per variant, compiler and source tree.
key=$(printf "%s %s" "$src" "$cc" | cksum | cut -d" " -f1)
lib=$work/lib-$variant-$key
mkdir -p "$lib"
# Compile every wolfcrypt source once per variant (files not enabled compile to nothing).
# Two jobs at a time: the machine has two cores.
objs=""
pids=""
n=0
for c in "$src"/wolfcrypt/src/*.c; do
    o=$lib/$(basename "$c" .c).o
    objs="$objs $o"
    if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ "$here/user_settings.h" -nt "$o" ]; then
        $cc $cflags -c "$c" -o "$o.tmp" && mv "$o.tmp" "$o" &
        pids="$pids $!"
        n=$((n + 1))
        if [ $n -ge "${JOBS:-2}" ]; then
            for p in $pids; do wait "$p"; done
            pids="" n=0
        fi
    fi
done
for p in $pids; do wait "$p"; done
if [ "$variant" = asm ]; then
    for s in aes_asm aes_x86_64_asm aes_gcm_asm sha256_asm sha512_asm chacha_asm poly1305_asm fe_x25519_asm sp_x86_64_asm sha3_asm; do
        o=$lib/$s.o
        objs="$objs $o"
        [ -f "$o" ] && [ "$o" -nt "$src/wolfcrypt/src/$s.S" ] || $cc $cflags -c "$src/wolfcrypt/src/$s.S" -o "$o"
    done
fi
$cc $cflags -o "$out" "$src/$main" $objs -lm
