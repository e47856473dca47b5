#!/usr/bin/env bash
# Before/after comparison of thread create+join on a loaded machine: runs
# native and each given cabinc binary in turn, ROUNDS times, so that every
# binary sees the same stretch of load; prints one line per run (name,
# round, ns/op timed inside the program, CPU seconds of the whole run from
# /usr/bin/time) and the load at the start and end. CPU time is the steadier
# figure under load: wall time then measures the other work too.
#
# Usage: bench/threads/alternate.sh ROUNDS ITERS BACKEND IMAGE NATIVE NAME=CABINC[:IMAGE2]...
#   (NAME=CABINC:IMAGE2 runs that binary on its own image: binaries whose libos differs.)
#   IMAGE: the Cabin image of bench/micro/threads.c (e.g. from
#   `cabinc bench threads/create_join --cache-dir DIR`: DIR/catalog/threads/create_join/threads.cabin),
#   NATIVE: the same program, plain.
# Example (docs/performance.md, "Create+join: fewer spins"):
#   bench/threads/alternate.sh 8 2000 kvm $D/threads.cabin $D/threads old=/tmp/cabinc-old new=target/release/cabinc
set -euo pipefail
rounds=$1; iters=$2; backend=$3; image=$4; native=$5; shift 5
echo "start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$rounds"); do
  for v in native "$@"; do
    name=${v%%=*}
    if [ "$v" = native ]; then
      out=$( { /usr/bin/time -f "cpu %U %S" "$native" - - "$iters" create_join; } 2>&1 )
    else
      spec=${v#*=}; bin=${spec%%:*}; img=$image
      if [ "$bin" != "$spec" ]; then img=${spec#*:}; fi
      out=$( { /usr/bin/time -f "cpu %U %S" "$bin" run -q --backend "$backend" "$img" - - "$iters" create_join; } 2>&1 )
    fi
    ns=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) ns\/op.*/\1/p')
    cpu=$(echo "$out" | awk '/^cpu/ {print $2 + $3}')
    echo "$name $i $ns $cpu"
  done
done
echo "end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
