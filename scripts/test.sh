#!/usr/bin/env bash
# Runs Cabin's whole test suite: installs prerequisites, says which hardware
# tiers can run here, then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    echo "tiers: KVM usable: KVM-tier tests run"
else
    echo "tiers: /dev/kvm NOT usable: KVM-tier tests are reported as NOT RUN"
fi
echo "tiers: no SEV-SNP hardware: SNP hardware tier NOT RUN (pure SNP logic is unit-tested)"
cargo test --workspace "$@"
