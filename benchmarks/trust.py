"""Do results hold without the user knowing this machine's limits? (issue 13)

Runs ``testbed collective`` exactly as a user types it -- no ``scale`` flag,
so ``scale: auto`` picks K -- on ``star`` labs of 4, 8 and 16 hosts whose
host links run at 1, 2 or 5 Gbit/s with 0.5-5 ms each, a 128 MiB ring
allreduce, and prints measured time, the model, measured/model, the K chosen
and the row's verdict. Then the same lab with ``--backend gloo`` beside our
engine running gloo's ring (``--order naive --nchunks 2 --protocol
rendezvous``): gloo / ours should be within 30 %.

Target (issue 13): every ratio in [0.9, 1.2] on this machine at rest. Run as
root from the repository root, ideally on an idle machine (the load average
is printed before and after each case):

    sudo .venv/bin/python benchmarks/trust.py              # everything (long)
    sudo .venv/bin/python benchmarks/trust.py --cases 4x1Gbit/5ms 8x2Gbit/2ms
    sudo .venv/bin/python benchmarks/trust.py --no-gloo --iters 3

The first run measures the machine's capacity once (``testbed doctor
--bench`` does it too; cached in /run/testbed/capacity.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = ["4x1Gbit/5ms", "4x5Gbit/0.5ms", "8x1Gbit/5ms", "8x2Gbit/2ms", "16x1Gbit/2ms", "16x5Gbit/0.5ms"]
GLOO_CASE = "4x1Gbit/2ms"
TESTBED = str(Path(sys.executable).with_name("testbed"))


def _argv(case: str, size: str, iters: int, extra=()) -> list:
    hosts, link = case.split("x", 1)
    rate, delay = link.split("/")
    return [TESTBED, "collective", "--topology", "star", "--set", f"hosts={hosts}",
            "--set", f"fabric.rate={rate}", "--set", f"fabric.delay={delay}",
            "--op", "allreduce", "--algo", "ring", "-b", size, "-e", size, "-n", str(iters),
            "--json", *extra]


def _run(argv: list, timeout_s: float) -> list:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=CASES, help="HOSTSxRATE/DELAY, e.g. 8x2Gbit/2ms")
    p.add_argument("--size", default="128M")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--no-gloo", action="store_true")
    p.add_argument("--timeout-s", type=float, default=1800)
    args = p.parse_args()
    print(f"128 MiB ring allreduce on star labs, scale: auto; {os.cpu_count()} CPUs")
    print(f"{'case':<16} {'measured s':>10} {'model s':>8} {'ratio':>6} {'K':>5} {'verdict':>7}  "
          f"{'load':>11}  command")
    for case in args.cases:
        before = _load()
        argv = _argv(case, args.size, args.iters)
        rows = _run(argv, args.timeout_s)
        for row in rows:
            k = (row.get("scale_decision") or {}).get("scale", row.get("scale"))
            print(f"{case:<16} {row['time_us'] / 1e6:>10.3f} {row['model_time_us'] / 1e6:>8.3f} "
                  f"{row['meas_over_model']:>6.2f} {k:>5g} {row.get('verdict', '-'):>7}  "
                  f"{before}->{_load():<5}  {' '.join(x for x in argv[1:] if x != '--json')}", flush=True)
            print(f"{'':<16} verdict: {row.get('verdict_reason', '-')}; TCP-limited paths: "
                  f"{', '.join(row.get('tcp_limited') or []) or 'none'}", flush=True)
    if not args.no_gloo:
        before = _load()
        argv = _argv(GLOO_CASE, args.size, args.iters, ["--order", "naive", "--nchunks", "2",
                                                          "--protocol", "rendezvous", "--backend", "both"])
        rows = _run(argv, args.timeout_s)
        ours = [r for r in rows if r.get("engine") == "testbed"]
        theirs = [r for r in rows if r.get("engine") != "testbed"]
        for a, b in zip(ours, theirs):
            print(f"gloo {GLOO_CASE}: gloo {b['time_us'] / 1e6:.3f} s, our rendezvous ring "
                  f"{a['time_us'] / 1e6:.3f} s, gloo/ours {b['time_us'] / a['time_us']:.2f} "
                  f"(target 0.77-1.3), K {a.get('scale', 1):g}, load {before}->{_load()}; "
                  f"{' '.join(x for x in argv[1:] if x != '--json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
