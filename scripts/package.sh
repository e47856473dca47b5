#!/usr/bin/env bash
# Makes dist/cabin-VERSION-x86_64-linux.tar.gz, to install Cabin on a machine
# without the checkout: `tar -C /usr/local -xzf cabin-VERSION-x86_64-linux.tar.gz`
# (or any PREFIX). Layout, relative to PREFIX:
#   bin/cabinc, bin/cargo-cabin           release builds, stripped of debug info
#   share/cabin/catalog/                  the benchmark catalog (cabinc finds it from bin/cabinc)
#   share/cabin/bench/micro/              the sources its manifests name (../bench/micro)
#   share/man/man1/cabinc*.1              from `cabinc man`
#   share/bash-completion/completions/cabinc, share/zsh/site-functions/_cabinc,
#   share/fish/vendor_completions.d/cabinc.fish   from `cabinc completions`
#   share/doc/cabin/                      README.md, LICENSE
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
cargo build --release -p cabinc -p cargo-cabin
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/bin" "$root/share/cabin/bench" "$root/share/man/man1" "$root/share/doc/cabin" \
    "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d"
cp target/release/cabinc target/release/cargo-cabin "$root/bin/"
cp -r catalog "$root/share/cabin/catalog"
cp -r bench/micro "$root/share/cabin/bench/micro"
"$root/bin/cabinc" man "$root/share/man/man1" >/dev/null 2>&1
"$root/bin/cabinc" completions bash >"$root/share/bash-completion/completions/cabinc"
"$root/bin/cabinc" completions zsh >"$root/share/zsh/site-functions/_cabinc"
"$root/bin/cabinc" completions fish >"$root/share/fish/vendor_completions.d/cabinc.fish"
cp README.md LICENSE "$root/share/doc/cabin/"
# The installed cabinc must list the packaged catalog, not this checkout's.
env -u CABIN_CATALOG -u CABIN_CATALOG_PATH XDG_DATA_HOME="$stage/none" \
    "$root/bin/cabinc" catalog dirs --cache-dir "$stage/cache" | grep -q "^$root/share/cabin/catalog\$"
mkdir -p dist
out="dist/cabin-$version-x86_64-linux.tar.gz"
tar -C "$root" -czf "$out" .
echo "wrote $out ($(du -h "$out" | cut -f1)); install with: tar -C /usr/local -xzf $out"
