"""Soak the testbed's no-leak guarantees longer than the test suite does.

    sudo .venv/bin/python benchmarks/soak.py                     # 50 up/down, 10 kills per signal, 120 s RSS
    sudo .venv/bin/python benchmarks/soak.py --updown 200 --kills 20 --rss-seconds 600
    sudo .venv/bin/python benchmarks/soak.py --only kills --kills 3 --signals INT

Three loops, each judged by the fault suite's own oracles (loaded from
``tests/faults/conftest.py``: ``ip -json``, ``tc -json``, ``iptables -S``, the
NFQUEUE bindings, /proc -- never the testbed's view of itself):

* ``updown``: ``Lab.create`` + ``destroy`` of a pair lab with a shaped link,
  N times; leftovers after each round and at the end, and this process's open
  file descriptors and threads (flat, or something leaks per lab).
* ``kills``: ``testbed run --quick`` (a small pair scenario, TCP step of 10 s)
  ended by SIGINT, SIGTERM and SIGKILL, K times each, alternating the signal's
  target between the run's pid and its whole process group (a terminal's
  Ctrl-C). SIGKILL is followed by ``testbed clean LAB``. results.json must be
  valid JSON with ``complete: false``. A bystander lab stays up throughout and
  must still carry a ping and an iperf3 transfer at the end.
* ``rss``: a lab with a userspace delay line carrying back-to-back 10 s iperf3
  transfers for S seconds; the delay line's resident memory (VmRSS) is sampled
  every few seconds and must stay flat (growth after the first sample below
  ``--rss-limit-kib``).

Prints a table of counts and leftovers found (and the RSS series); exit code 0
when every loop found zero leftovers and flat memory, 1 otherwise. Labs are
named ``ft-soak-...``; labs of ``testbed run`` are named by the run
(``run<pid>-0``) and only those of runs started here are touched.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

__all__ = ["soak_updown", "soak_kills", "soak_rss", "main"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
LINK = {"link": {"rate": "200Mbit", "delay": "1ms"}}


def _load_oracles():
    """The fault suite's oracles (tests/faults/conftest.py), as a module."""
    path = REPO_ROOT / "tests" / "faults" / "conftest.py"
    spec = importlib.util.spec_from_file_location("testbed_fault_oracles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


ft = _load_oracles()
helpers = ft.helpers


def _row(check: str, count: int, leftovers: List[str], notes: str, ok: Optional[bool] = None) -> dict:
    return {"check": check, "count": count, "leftovers": len(leftovers), "found": leftovers[:20],
            "notes": notes, "ok": (not leftovers) if ok is None else ok}


# -- lab up/down ------------------------------------------------------------------------------

def soak_updown(rounds: int) -> dict:
    from testbed.lab.lab import Lab

    name = "ft-soak-ud"
    ft.remove_ft_lab(name)
    baseline = ft.root_state()
    trace = ft.LabTrace(lab=name)
    fds, threads, up_s, down_s = [], [], [], []
    found: List[str] = []
    for i in range(rounds):
        start = time.monotonic()
        lab = Lab.create("pair", name, links=LINK)
        up_s.append(time.monotonic() - start)
        try:
            trace.merge(ft.trace_lab(name))
        finally:
            start = time.monotonic()
            lab.destroy()
            down_s.append(time.monotonic() - start)
        if helpers.lab_netns_names(name) or (helpers.STATE_DIR / name).exists():
            found.append(f"round {i}: namespaces or state left")
            ft.remove_ft_lab(name)
        fds.append(ft.open_fds())
        threads.append(ft.thread_count())
    found += ft.wait_no_leftovers(trace, baseline)
    grew = bool(fds) and (max(fds[1:] or fds) > fds[min(1, len(fds) - 1)]
                          or max(threads[1:] or threads) > threads[min(1, len(threads) - 1)])
    if grew:
        found.append(f"fds {fds[:3]}...{fds[-3:]}, threads {threads[:3]}...{threads[-3:]}")
    notes = (f"fds {fds[0]}->{fds[-1]}, threads {threads[0]}->{threads[-1]}, "
             f"up {sum(up_s) / len(up_s):.2f} s, down {sum(down_s) / len(down_s):.2f} s (mean)")
    return _row("lab up/down", rounds, found, notes)


# -- runs killed by signals ----------------------------------------------------------------------

def _one_kill(scenario: Path, workdir: Path, signo: int, group: bool) -> Dict[str, object]:
    baseline = ft.root_state()
    out = workdir / "out"
    run = ft.RunProcess([str(scenario), "--quick", "--out", str(out),
                         "--set", "measure.tcp.duration_s=10"], workdir, new_session=group)
    problems: List[str] = []
    code = None
    try:
        try:
            run.wait_for("] tcp ", 60)
            ft.wait_for_procs_in(f"tb.{run.lab}.h1", 10.0)
            trace = ft.trace_lab(run.lab, extra=ft.descendants(run.pid))
            run.signal(signo, group=group)
            code = run.finish(60)
        finally:
            run.close()
        if signo == signal.SIGKILL:
            clean = helpers.run_cmd([sys.executable, "-m", "testbed.cli", "clean", run.lab], timeout_s=60,
                                    check=False, env=helpers.subprocess_env())
            if clean.returncode != 0:
                problems.append(f"clean exited {clean.returncode}: {clean.stderr.strip()}")
        elif code != 130:
            problems.append(f"exit {code}, not 130")
        try:
            doc = json.loads((out / "results.json").read_text())
            if doc.get("complete") is not False:
                problems.append("results.json complete is not false")
        except (OSError, ValueError) as exc:
            problems.append(f"results.json unreadable: {exc}")
        problems += ft.wait_no_leftovers(trace, baseline)
    except AssertionError as exc:
        problems.append(f"run did not reach the TCP step: {str(exc)[:300]}")
    finally:
        ft.remove_ft_lab(run.lab)
    return {"code": code, "problems": problems}


def soak_kills(per_signal: int, signals=SIGNALS) -> List[dict]:
    from testbed.lab.lab import Lab

    rows = []
    bystander = "ft-soak-by"
    ft.remove_ft_lab(bystander)
    Lab.create("pair", bystander, links={"link": {"delay": "1ms"}})
    try:
        with tempfile.TemporaryDirectory(prefix="ft-soak-") as tmp:
            scenario = Path(tmp) / "ft-fault.yaml"
            scenario.write_text(ft.FAULT_SCENARIO)
            for signo in signals:
                codes: Counter = Counter()
                found: List[str] = []
                for i in range(per_signal):
                    workdir = Path(tmp) / f"{signal.Signals(signo).name}-{i}"
                    workdir.mkdir()
                    seen = _one_kill(scenario, workdir, signo, group=bool(i % 2))
                    codes[str(seen["code"])] += 1
                    found += [f"#{i}: {p}" for p in seen["problems"]]
                name = signal.Signals(signo).name
                rows.append(_row(f"run ended by {name}" + (" + clean" if signo == signal.SIGKILL else ""),
                                 per_signal, found, "exit codes " + ", ".join(
                                     f"{c} x{n}" for c, n in sorted(codes.items()))))
        problems = ft.traffic_problems(bystander)
        rows.append(_row("bystander lab after all kills", 1, problems, "ping + 1 s iperf3 across it"))
    finally:
        ft.remove_ft_lab(bystander)
    return rows


# -- delay-line memory ------------------------------------------------------------------------------

def soak_rss(seconds: float, every_s: float, limit_kib: int) -> dict:
    from testbed.lab.lab import Lab

    name = "ft-soak-rss"
    ft.remove_ft_lab(name)
    lab = Lab.create("pair", name, links=LINK, backend="userspace")
    server = None
    try:
        lines = [r for r in lab.proc_records() if r.kind == "delayline"]
        if not lines:
            return _row("delay line RSS", 0, [], "no delay line (netem backend)", ok=True)
        pid = lines[0].pid
        h1, h2 = lab.node("h1"), lab.node("h2")
        server = subprocess.Popen(h2.argv(["iperf3", "-s", "-p", "5201"]), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # (the first client retries its connection for 3 s anyway)
        samples: List[int] = []
        transfers = 0
        start = time.monotonic()
        next_sample = start
        client = None
        while time.monotonic() - start < seconds:
            if client is None or client.poll() is not None:
                if client is not None:
                    transfers += 1
                client = subprocess.Popen(h1.argv(["iperf3", "-c", h2.ip, "-t", "10", "-p", "5201",
                                                   "--connect-timeout", "3000"]),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if time.monotonic() >= next_sample:
                rss = ft.vm_rss_kib(pid)
                if rss is None:
                    return _row("delay line RSS", len(samples), ["the delay line died"], "")
                samples.append(rss)
                next_sample += every_s
            time.sleep(0.1)
        if client is not None:
            client.wait(timeout=30)
            transfers += 1
        growth = samples[-1] - samples[0] if samples else 0
        print("delay line VmRSS (KiB), every %g s: %s" % (every_s, " ".join(map(str, samples))))
        found = [] if growth <= limit_kib else [f"VmRSS grew {growth} KiB (limit {limit_kib})"]
        notes = (f"{transfers} x 10 s iperf3; VmRSS {samples[0]} -> {samples[-1]} KiB, "
                 f"max {max(samples)} KiB, growth {growth:+d} KiB")
        return _row("delay line RSS", len(samples), found, notes)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        ft.remove_ft_lab(name)


# -- main ------------------------------------------------------------------------------------------

def _print_table(rows: List[dict]) -> None:
    print()
    print(f"{'check':<34} {'count':>6} {'leftovers':>10}  notes")
    print("-" * 100)
    for row in rows:
        print(f"{row['check']:<34} {row['count']:>6} {row['leftovers']:>10}  {row['notes']}")
        for item in row["found"]:
            print(f"{'':<53}{item}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updown", type=int, default=50, help="lab up/down rounds (default 50)")
    parser.add_argument("--kills", type=int, default=10, help="runs killed per signal (default 10)")
    parser.add_argument("--signals", default="INT,TERM,KILL",
                        help="signals for the kills loop (default INT,TERM,KILL)")
    parser.add_argument("--rss-seconds", type=float, default=120.0,
                        help="seconds of traffic through a delay line (default 120)")
    parser.add_argument("--rss-every", type=float, default=10.0, help="RSS sample period (default 10 s)")
    parser.add_argument("--rss-limit-kib", type=int, default=2048,
                        help="allowed VmRSS growth after the first sample (default 2048 KiB)")
    parser.add_argument("--only", action="append", choices=("updown", "kills", "rss"),
                        help="run only this loop (repeatable)")
    parser.add_argument("--json", help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("soak: needs root to create network namespaces (run it with sudo)\n")
        return 3
    only = set(args.only or ("updown", "kills", "rss"))
    rows: List[dict] = []
    started = time.monotonic()
    if "updown" in only:
        rows.append(soak_updown(args.updown))
    if "kills" in only:
        signals = [signal.Signals["SIG" + n.strip().upper().removeprefix("SIG")]
                   for n in args.signals.split(",")]
        rows += soak_kills(args.kills, signals)
    if "rss" in only:
        rows.append(soak_rss(args.rss_seconds, args.rss_every, args.rss_limit_kib))
    _print_table(rows)
    print(f"\n{len(rows)} checks in {time.monotonic() - started:.0f} s; "
          + ("all clean" if all(r["ok"] for r in rows) else "PROBLEMS FOUND"))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
