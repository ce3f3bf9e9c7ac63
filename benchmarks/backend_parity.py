"""Backend parity: each impairment measured through one delay backend, for docs/parity.md.

Run as root from the repository root, once per backend::

    .venv/bin/python benchmarks/backend_parity.py --backend userspace [--out parity-userspace.json]
    .venv/bin/python benchmarks/backend_parity.py --backend netem  # a kernel with netem

The netem figures in docs/parity.md come from the stock-kernel VM:
``TESTBED_VM_GUEST=benchmarks/parity_guest.sh sudo tests/vm/run.sh`` (see
docs/parity.md). Each case is a fresh ``pair`` lab ``bench-par`` with one
profile on its link, measured with the testbed's own runners from h1 to h2:

* ``baseline``: a 10 Gbit/s htb-only link (the path of a shaped link, no
  delay): the machine's own RTT, subtracted from the delay figures;
* delay: ping RTT mean minus twice the delay and minus the baseline;
* jitter (each distribution): one-way-delay probes, their stdev against the
  configured jitter, and how many arrived out of order;
* loss random and Gilbert-Elliott, duplicate, corrupt, reorder: one-way-delay
  probes counted by sequence number (a corrupted UDP probe fails its checksum
  and counts as lost);
* rate with delay: iperf3 TCP goodput against the rate.

A profile a backend refuses is reported with the refusal message. Prints a
Markdown table and writes JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # the checkout's package, and the suite's helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from helpers import loss_bursts  # noqa: E402  (tests/helpers.py: the suite's burst counter)
from testbed.errors import TestbedError  # noqa: E402
from testbed.lab.lab import Lab  # noqa: E402
from testbed.lab.teardown import teardown  # noqa: E402
from testbed.measure import RUNNERS  # noqa: E402

LAB = "bench-par"
DELAY_MS = 20.0
REORDER_DELAY_MS = 10.0

#: name, link profile, what to measure
CASES = [
    ("baseline", {"rate": "10Gbit"}, "rtt"),
    ("delay 20 ms", {"delay": "20ms"}, "rtt"),
    ("jitter 5 ms normal", {"delay": "20ms", "jitter": "5ms", "jitter_distribution": "normal"}, "jitter"),
    ("jitter 5 ms uniform", {"delay": "20ms", "jitter": "5ms", "jitter_distribution": "uniform"}, "jitter"),
    ("jitter 5 ms pareto", {"delay": "20ms", "jitter": "5ms", "jitter_distribution": "pareto"}, "jitter"),
    ("jitter 5 ms paretonormal", {"delay": "20ms", "jitter": "5ms",
                                  "jitter_distribution": "paretonormal"}, "jitter"),
    ("loss 2 % random", {"delay": "1ms", "loss": "2%"}, "probes"),
    ("loss 2 % Gilbert-Elliott, bursts of 4", {"delay": "1ms", "loss": "2%",
                                                "loss_model": "gilbert-elliott", "loss_burst": "4"},
     "probes"),
    ("duplicate 2 %", {"delay": "1ms", "duplicate": "2%"}, "probes"),
    ("corrupt 2 %", {"delay": "1ms", "corrupt": "2%"}, "probes"),
    ("reorder 10 % (delay 10 ms)", {"delay": f"{REORDER_DELAY_MS:g}ms", "reorder": "10%"}, "probes"),
    ("rate 20 Mbit/s + delay 20 ms", {"rate": "20Mbit", "delay": "20ms"}, "tcp"),
]


def measure(kind: str, h1, h2, args) -> dict:
    if kind == "rtt":
        RUNNERS["ping"].run(h1, h2, count=2, interval_s=0.05, timeout_s=2.0)
        means = [statistics.mean(RUNNERS["ping"].run(h1, h2, count=50, interval_s=0.02,
                                                      timeout_s=2.0)["samples_ms"]) for _ in range(3)]
        return {"rtt_ms": round(statistics.median(means), 3),
                "rtt_spread_ms": round(max(means) - min(means), 3)}
    if kind == "tcp":
        r = RUNNERS["tcp"].run(h1, h2, duration_s=args.tcp_s)
        return {"goodput_mbps": round(r["throughput_mbps"], 2), "retransmits": r["retransmits"]}
    count = args.probes if kind == "probes" else 500
    interval = 1.0 if kind == "probes" else 10.0
    r = RUNNERS["owd"].run(h1, h2, count=count, interval_ms=interval, port=5391)
    seqs = [p["seq"] for p in r["packets"]]
    unique = set(seqs)
    out = {"probes": count, "lost_pct": round(100.0 * (count - len(unique)) / count, 3),
           "duplicates_pct": round(100.0 * (len(seqs) - len(unique)) / count, 3),
           "reordered_pct": round(100.0 * r["reordered"] / count, 3),
           # netem's reorder sends its share without the delay: in under half of it
           "at_once_pct": round(100.0 * sum(1 for x in r["samples_ms"] if x < REORDER_DELAY_MS / 2)
                                / max(len(r["samples_ms"]), 1), 3),
           "owd_mean_ms": round(statistics.mean(r["samples_ms"]), 3),
           "owd_stdev_ms": round(statistics.pstdev(r["samples_ms"]), 3)}
    bursts = loss_bursts(seqs, count)
    out["mean_loss_burst"] = round(statistics.mean(bursts), 2) if bursts else None
    return out


def run_case(name, link, kind, args) -> dict:
    teardown(LAB)
    row = {"case": name, "link": link}
    try:
        lab = Lab.create("pair", LAB, links={"link": link}, backend=args.backend, seed=1)
    except TestbedError as exc:
        row["refused"] = str(exc).splitlines()[0]
        return row
    try:
        row.update(measure(kind, lab.node("h1"), lab.node("h2"), args))
    finally:
        lab.destroy()
    return row


def cell(row, baseline_ms) -> str:
    if "refused" in row:
        return f"refused: {row['refused']}"
    link = row["link"]
    if "rtt_ms" in row:
        if "delay" not in link:
            return f"RTT {row['rtt_ms']:.3f} ms (spread {row['rtt_spread_ms']:.3f})"
        excess = row["rtt_ms"] - 2 * DELAY_MS - baseline_ms
        return f"RTT {row['rtt_ms']:.2f} ms: {excess:+.2f} ms beyond 2 x delay + baseline"
    if "goodput_mbps" in row:
        return f"{row['goodput_mbps']:.2f} Mbit/s ({row['retransmits']} retransmits)"
    if "jitter" in link:
        return (f"stdev {row['owd_stdev_ms']:.2f} ms (of 5), mean {row['owd_mean_ms']:.2f} ms, "
                f"reordered {row['reordered_pct']:g} %")
    parts = [f"lost {row['lost_pct']:g} %"]
    if link.get("loss_model"):
        parts.append(f"mean burst {row['mean_loss_burst']}")
    if "duplicate" in link:
        parts.append(f"duplicated {row['duplicates_pct']:g} %")
    if "reorder" in link:
        parts.append(f"sent at once {row['at_once_pct']:g} %, overtaken {row['reordered_pct']:g} %")
    return ", ".join(parts) + f" of {row['probes']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("netem", "userspace"), required=True)
    parser.add_argument("--probes", type=int, default=5000)
    parser.add_argument("--tcp-s", type=float, default=8.0)
    parser.add_argument("--out", default=None, help="JSON file for every figure")
    parser.add_argument("--only", default=None, metavar="TEXT",
                        help="only the cases whose name contains TEXT (and the baseline)")
    args = parser.parse_args()
    started = time.monotonic()
    cases = [c for i, c in enumerate(CASES) if i == 0 or args.only is None or args.only in c[0]]
    rows = [run_case(name, link, kind, args) for name, link, kind in cases]
    baseline_ms = rows[0].get("rtt_ms", 0.0)
    doc = {"backend": args.backend, "kernel": platform.release(), "rows": rows,
           "seconds": round(time.monotonic() - started, 1)}
    print(f"\n| impairment | {args.backend} ({platform.release()}) |\n|---|---|")
    for row in rows:
        print(f"| {row['case']} | {cell(row, baseline_ms)} |")
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
