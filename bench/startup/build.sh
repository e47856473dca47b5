#!/bin/sh
# Builds one variant of catalog/startup.toml: build.sh VARIANT OUT CC
# busybox_true: Debian's busybox-static (/bin/busybox, about 2 MB);
# big: bench/startup/big.c, a static program of about 20 MB that returns at once.
set -eu
case "$1" in
busybox_true) cp /bin/busybox "$2" ;;
big) "$3" -O2 -static -o "$2" "$(dirname "$0")/big.c" ;;
*) echo "build.sh: unknown variant $1" >&2; exit 2 ;;
esac
