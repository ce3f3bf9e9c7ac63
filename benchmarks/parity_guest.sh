#!/usr/bin/env bash
# benchmarks/backend_parity.py --backend netem inside the stock-kernel VM:
#   TESTBED_VM_GUEST=benchmarks/parity_guest.sh sudo tests/vm/run.sh [BENCHMARK ARGS...]
# (OUT_DIR, the VM's one writable host directory, is the first argument; the
# rest go to the benchmark, e.g. --only reorder.)
set -u
out="$1"
shift
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
echo 1 > "$out/started"
modprobe sch_netem
.venv/bin/python benchmarks/backend_parity.py --backend netem --out "$out/parity-netem.json" "$@"
echo $? > "$out/rc"
