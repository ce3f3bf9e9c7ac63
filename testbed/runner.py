"""``testbed run``: bring each variant's lab up, measure, judge, write, clean.

For every variant of a scenario: a lab owned by this process (so ``testbed
clean`` can tell if we were killed), the measurement steps in file order
between the scenario's endpoints, the delay lines checked alive after every
step, fidelity checks, and the lab destroyed in ``finally``. results.json is
rewritten atomically after every variant, so an interrupted run (Ctrl-C,
SIGTERM) leaves valid JSON with ``complete: false``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Callable, List, Optional

from testbed import autoscale, cost, fidelity, plots, report, results, summary
from testbed.collectives.tcpedges import read_sysctls
from testbed.errors import InputError, RunError, TestbedError
from testbed.lab import counters, state
from testbed.lab.lab import Lab, require_root
from testbed.measure import RUNNERS
from testbed.measure.steady import time_to_steady_s
from testbed.preflight import preflight
from testbed.scale import iperf_at_real_scale
from testbed.scenario import Scenario, list_scenarios, load_scenario
from testbed.shaping import backends
from testbed.topologies import TOPOLOGIES

__all__ = ["scenarios_dir", "resolve_scenario", "environment", "run_step", "run_scenario",
           "run_scenario_cli"]

FLAGSHIP = "direct-vs-transit"
TOOL_TIMEOUT_S = 10
CONNECT_DEADLINE_S = 15.0
WATCH_S = 0.5  # how often a running step's delay lines are checked


def scenarios_dir() -> Path:
    return Path(str(resources.files("testbed.scenarios")))


def resolve_scenario(arg: Optional[str]) -> Path:
    """A path, or the name of a shipped scenario; None means the flagship."""
    if arg is None:
        arg = FLAGSHIP
    path = Path(arg)
    if path.suffix in (".yaml", ".yml") or os.sep in arg:
        if not path.is_file():
            raise InputError("scenario", f"no scenario file {arg!r}")
        return path
    shipped = scenarios_dir() / f"{arg}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(n for n, _, _ in list_scenarios(scenarios_dir()))
    raise InputError("scenario", f"no shipped scenario {arg!r} (shipped: {names})")


def _version(argv: List[str]) -> Optional[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else None


def environment() -> dict:
    backend, why = backends.explain()
    return {
        "kernel": platform.release(),
        "delay_backend": backend,
        "delay_backend_reason": why,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tools": {
            "iperf3": _version(["iperf3", "--version"]),
            "ping": _version(["ping", "-V"]),
            "iptables": _version(["iptables", "--version"]),
        },
    }


def _hops(lab: Lab, src: str, dst: str, routers: List[Optional[str]]) -> dict:
    """Name the routers on the path and count the hops between the two sites.

    ``hops`` = routers outside the endpoints' own sites + 1: the direct
    interconnect is 1 hop, transit is one more per transit router.
    """
    by_ip = {}
    for name in lab.node_names():
        for intf in lab.doc["plan"]["nodes"][name]["intfs"]:
            if intf["address"]:
                by_ip[intf["address"].split("/")[0]] = name
    names = [by_ip.get(r) for r in routers if r]
    sites = {lab.node(src).site, lab.node(dst).site}
    outside = [n for n in names if n and lab.node(n).site not in sites]
    return {"hops": len(outside) + 1, "router_names": names}


def _delay_line_summary(lab: Lab) -> List[dict]:
    out = []
    for doc in lab.delay_line_stats():
        for q in doc.get("queues", []):
            out.append({
                "node": doc["netns"].rsplit(".", 1)[-1], "netns": doc["netns"],
                "link": q.get("link"), "direction": q.get("direction"),
                "packets": q.get("received"),
                "dropped": (q.get("dropped_loss") or 0) + (q.get("dropped_queue") or 0),
                "dropped_loss": q.get("dropped_loss"), "dropped_queue": q.get("dropped_queue"),
                "queue_max_packets": q.get("held_max"),
                "late_p50_ms": (q.get("late_ms") or {}).get("p50"),
                "late_p99_ms": (q.get("late_ms") or {}).get("p99"),
                "late_max_ms": (q.get("late_ms") or {}).get("max"),
                "cpu_s": doc.get("cpu_s"),
            })
    return out


def _cpu_times():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_pct(before, after) -> float:
    total = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / total, 1) if total > 0 else 0.0


def _wait_connectivity(src, dst, deadline_s: float = CONNECT_DEADLINE_S) -> float:
    """Seconds from now until a ping crosses (neighbour tables, bridges settle)."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        proc = src.run(["ping", "-n", "-c", "1", "-W", "1", dst.ip], timeout_s=5, check=False)
        if proc.returncode == 0:
            return round(time.monotonic() - start, 3)
    raise RunError(f"no connectivity {src.name} -> {dst.name} within {deadline_s:g} s")


def _run_step(kind: str, options, src, dst, scale: float = 1.0) -> dict:
    runner = RUNNERS.get(kind)
    if kind == "ping":
        return runner.run(src, dst, count=options.count, interval_s=options.interval_s,
                          size_bytes=options.size_bytes)
    if kind == "owd":
        both = runner.run_both(src, dst, count=options.count, interval_ms=options.interval_ms,
                               size_bytes=options.size_bytes)
        fwd = both["forward"]
        return {"forward": fwd, "reverse": both["reverse"],
                "one_way_delay_ms": fwd.get("one_way_delay_ms"),
                "jitter_ms": fwd.get("jitter_ms"), "loss_pct": fwd.get("loss_pct")}
    if kind == "tcp":
        return iperf_at_real_scale(
            runner.run(src, dst, duration_s=options.duration_s, streams=options.streams,
                       congestion=options.cc, window_bytes=options.window_bytes), scale)
    if kind == "udp":
        kwargs = {"bitrate_bps": max(1, int(options.bitrate_bps / scale)), "duration_s": options.duration_s}
        if options.size_bytes:
            kwargs["length_bytes"] = options.size_bytes
        return iperf_at_real_scale(runner.run(src, dst, **kwargs), scale)
    if kind == "path":
        return runner.run(src, dst, max_hops=options.max_hops)
    raise RunError(f"no runner for step {kind!r}")


def _run_collective(lab: Lab, options, progress) -> List[dict]:
    from testbed.collectives.bench import run_sweep

    return run_sweep(lab, options.op, options.algorithm, options.sizes_bytes(),
                     gpus_per_host=options.gpus_per_host, iters=options.iters,
                     warmup=options.warmup, nsocks=options.nsocks,
                     buffsize_bytes=options.buffsize_bytes, order=options.order,
                     protocol=options.protocol, window=options.window, cc=options.cc,
                     progress=progress, scale_enough=(lab.doc.get("scale_decision") or {}).get("enough"))


def _run_timeline(lab: Lab, options, src, dst, progress) -> dict:
    from testbed.measure.timeline import run_timeline

    return run_timeline(lab, src, dst, options.duration_s, options.interval_s, options.parsed_events(),
                        progress, ping_interval_s=options.ping_interval_s, port=options.port,
                        recover_fraction=options.recover_fraction, hold_s=options.hold_s,
                        baseline_s=options.baseline_s, congestion=options.cc)


def _run_training(lab: Lab, options, progress) -> dict:
    from testbed.collectives.training import run_training
    from testbed.collectives.verdict import judged_step

    return judged_step(lab, lambda: run_training(lab, options.engine_options(), progress),
                       (lab.doc.get("scale_decision") or {}).get("enough"))


def _run_storage(lab: Lab, options, progress) -> dict:
    from testbed.collectives.verdict import judged_step
    from testbed.storage.step import run_storage

    return judged_step(lab, lambda: run_storage(lab, options, progress),
                       (lab.doc.get("scale_decision") or {}).get("enough"))


#: steps that use the whole lab rather than the two endpoints
LAB_STEPS = {"collective": _run_collective, "training": _run_training, "storage": _run_storage}
#: steps run by this process's own engine (not tools in the lab): not run in a watched thread
IN_PROCESS_STEPS = ("collective", "training")


def run_step(lab: Lab, kind: str, options, src, dst,
             progress: Callable[[str], None] = lambda _m: None):
    """One measurement step as results.json records it (collective: its rows)."""
    if kind in LAB_STEPS:
        return LAB_STEPS[kind](lab, options, progress)
    if kind == "timeline":
        return _run_timeline(lab, options, src, dst, progress)
    data = _trim(kind, _run_step(kind, options, src, dst, lab.scale))
    if kind == "path":
        data.update(_hops(lab, src.name, dst.name, data.get("routers", [])))
    return data


def _trim(kind: str, data: dict) -> dict:
    """Keep results.json readable: per-packet arrival lists are not kept."""
    if kind == "owd":
        for direction in ("forward", "reverse"):
            (data.get(direction) or {}).pop("packets", None)
    return data


def _variant_cost(scenario: Scenario, lab: Lab, config: dict, before: dict) -> dict:
    """Egress bytes of every inter-site link since ``before``, priced (testbed/cost.py).

    With ``scale`` the counted bytes are multiplied back to real scale. With
    ``cost.daily_volume`` a monthly figure prices that volume a day in the
    variant's own mix of link classes.
    """
    config_cost, daily = scenario._cost or (None, None)
    moved = counters.delta(before, counters.link_bytes(lab))
    if lab.scale != 1:
        for link in moved.values():
            for key in ("a_to_b_bytes", "b_to_a_bytes"):
                link[key] = int(link[key] * lab.scale)
    presets = cost.link_presets(scenario.topology, config["params"], config["links"])
    doc = cost.traffic_cost(moved, presets, config_cost)
    if daily is not None:
        doc["monthly"] = cost.monthly_mix(daily, doc, config_cost)
    return doc


def _lab_name(pid: int, index: int) -> str:
    """``run<pid>-<index>``: unique among live runs (pids are), at most 16 characters.

    A lab left by a killed run whose pid came round again is skipped, not reused.
    """
    taken = set(state.lab_names())
    base = f"run{pid}-{index}"
    for suffix in ("",) + tuple("abcdefghijklmnopqrstuvwxyz"):
        if base + suffix not in taken:
            return base + suffix
    raise RunError(f"labs {base}, {base}a .. {base}z all exist: run 'testbed clean'")


def _watched(lab: Lab, step: Callable[[], object], watch: bool = True):
    """Run ``step``; with ``watch``, check the lab's delay lines every WATCH_S meanwhile.

    A dead delay line darkens its link, and the step would otherwise wait out
    its tool's timeout (tens of seconds) before anyone looks. The step runs in a
    worker thread; on a death the main thread raises DelayLineDied at once and
    the caller's ``lab.destroy()`` ends the step's processes (they are in the
    lab's namespaces), which ends the worker.
    """
    if not watch:
        return step()
    box: dict = {}

    def work() -> None:
        try:
            box["value"] = step()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="testbed-step", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(WATCH_S)
        if worker.is_alive():
            lab.check()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _run_variant(scenario: Scenario, index: int, doc: dict, progress: Callable[[str], None],
                 save: Callable[[], None]) -> None:
    variant = scenario.variants[index]
    config = scenario.variant_config(variant)
    entry = results.new_variant(scenario, variant)
    doc["variants"].append(entry)
    lab_name = _lab_name(os.getpid(), index)
    decision = autoscale.for_variant(scenario, index, progress)
    progress(f"[{variant.name}] scale {decision.scale:g} ({decision.mode}): {decision.reason}")
    progress(f"[{variant.name}] bringing up {scenario.topology} lab {lab_name}")
    up_started = time.monotonic()
    lab = Lab.create(scenario.topology, lab_name, params=config["params"], links=config["links"],
                     host_sysctls=config["host_sysctls"], owner_pid=os.getpid(),
                     strict_links=False, scale=decision.scale)
    lab.doc["scale_decision"] = decision.to_dict()  # the collective rows' verdicts read it
    try:
        up_s = round(time.monotonic() - up_started, 3)
        entry["lab"] = {"block": lab.block, "backend": lab.backend, "nodes": len(lab.node_names()),
                        "scale": lab.scale, "scale_decision": decision.to_dict(), "up_s": up_s}
        entry["links"] = {l["name"]: l["profile"] for l in lab.links()}
        hosts = [h.name for h in lab.hosts()]
        ends = config["endpoints"] or {"src": hosts[0], "dst": hosts[-1]}
        src, dst = lab.node(ends["src"]), lab.node(ends["dst"])
        entry["endpoints"] = {"src": src.name, "dst": dst.name}
        entry["time_to_connectivity_s"] = _wait_connectivity(src, dst)
        entry["time_to_first_packet_s"] = round(up_s + entry["time_to_connectivity_s"], 3)
        counters_before = counters.link_bytes(lab)
        tcp_options = None
        busy = {}
        for kind, options in scenario.steps(index):
            if kind == "steady":
                if entry.get("tcp"):
                    steady_s = time_to_steady_s(entry["tcp"].get("intervals", []), options.tolerance_pct / 100.0)
                    entry["tcp"]["time_to_steady_s"] = steady_s
                    if steady_s is not None and "tcp_started_s" in entry:
                        # from 'up' until the throughput is steady
                        entry["time_to_steady_from_up_s"] = round(entry["tcp_started_s"] + steady_s, 3)
                continue
            if kind == "tcp":
                entry["tcp_started_s"] = round(time.monotonic() - up_started, 3)
            if kind == "collective":
                progress(f"[{variant.name}] collective {options.op}/{options.algorithm} "
                         f"over {len(lab.hosts())} hosts")
            elif kind in LAB_STEPS:
                progress(f"[{variant.name}] {kind} over {len(lab.hosts())} hosts")
            else:
                progress(f"[{variant.name}] {kind} {src.name} -> {dst.name}")
            cpu_before = _cpu_times()
            try:
                data = _watched(lab, lambda: run_step(lab, kind, options, src, dst,
                                                      lambda m: progress(f"[{variant.name}]   {m}")),
                                watch=kind not in IN_PROCESS_STEPS)
            except TestbedError:
                lab.check()  # a dead delay line is the real cause: say so
                raise
            entry["collectives" if kind == "collective" else kind] = data
            busy[kind] = _busy_pct(cpu_before, _cpu_times())
            if kind == "tcp":
                tcp_options = options
            lab.check()
        entry["cost"] = _variant_cost(scenario, lab, config, counters_before)
        entry["emulator"] = {"delay_lines": _delay_line_summary(lab),
                             "cpu_busy_pct": busy.get("tcp"), "cpu_busy_pct_by_step": busy}
        # the measured path when the path step ran, else the routed (shortest) one
        routers = [n for n in (entry.get("path") or {}).get("router_names", []) if n]
        l3 = ([src.name] + routers + [dst.name] if entry.get("path")
              else fidelity.l3_path(lab.doc["plan"], src.name, dst.name))
        pred = fidelity.predict(lab.doc["plan"], l3)
        entry["predicted"] = pred
        window = tcp_options.window_bytes if tcp_options else None
        entry["fidelity"] = {"checks": fidelity.checks(pred, entry, scenario.fidelity.model_dump(), window,
                                                       host_sysctls=read_sysctls(src.netns))}
        entry["complete"] = True
    except TestbedError as exc:
        entry["errors"].append(str(exc))
        raise
    finally:
        entry["finished_at"] = results.utc_now()
        progress(f"[{variant.name}] tearing down")
        lab.destroy()
        save()


def run_scenario(scenario: Scenario, out_dir: Path, overrides=(), quick: bool = False,
                 progress: Callable[[str], None] = print) -> dict:
    preflight(scenario)
    require_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = results.new_results(scenario, environment(), overrides=overrides, quick=quick)
    path = out_dir / "results.json"

    def save() -> None:
        results.write_json_atomic(path, doc)

    for warning in _capacity_warnings(scenario):
        progress(f"warning: {warning}")
        doc.setdefault("warnings", []).append(warning)
    save()
    interrupted = False
    try:
        for index in range(len(scenario.variants)):
            _run_variant(scenario, index, doc, progress, save)
    except KeyboardInterrupt:
        interrupted = True
        doc["errors"].append("interrupted")
    except TestbedError as exc:
        doc["errors"].append(str(exc))
    finally:
        results.finish_results(doc, interrupted=interrupted)
        save()
    plot_files = plots.make_plots(doc, out_dir)
    report.write_report(doc, plot_files, out_dir / "report.md")
    results.validate_results(doc)
    if interrupted:
        raise KeyboardInterrupt
    return doc


_MAIN_PID = os.getpid()


def _capacity_warnings(scenario: Scenario) -> List[str]:
    """Warn before a run whose delayed links ask more than this machine's line carries.

    Reads the cached figure of 'testbed doctor --bench' (no traffic is sent here).
    """
    from testbed import capacity

    cap = capacity.load_cached()
    if cap is None:
        return []
    out = []
    for variant in scenario.variants:
        config = scenario.variant_config(variant)
        present = {link["name"] for link in autoscale.plan_for(
            scenario.topology, config["params"], config["links"])["links"]}  # this variant's own
        rates = [p.rate_bps for name, spec in scenario.variant_links(variant).items() if name in present
                 for p in (spec.forward, spec.reverse) if p.has_impairment]
        if not rates:
            continue
        text = capacity.check_scenario_capacity(capacity.max_configured_rate_bps(rates), cap)
        if text:
            out.append(f"{variant.name}: {text}")
    return out


def _sigterm(signo, _frame):
    """SIGTERM ends a run like Ctrl-C -- in the main process only.

    Forked helpers (pyroute2 runs one per namespace it talks to) inherit this
    handler; they must die as they would by default, not unwind our run.
    """
    if os.getpid() != _MAIN_PID:
        signal.signal(signo, signal.SIG_DFL)
        os.kill(os.getpid(), signo)
        return
    raise KeyboardInterrupt


def run_scenario_cli(arg: Optional[str], out: Optional[str], overrides: List[str], quick: bool) -> int:
    path = resolve_scenario(arg)
    scenario = load_scenario(path, overrides=overrides, quick=quick, topologies=set(TOPOLOGIES))
    preflight(scenario)  # exit 2 / exit 3 before anything is changed
    require_root()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("results") / f"{scenario.name}-{stamp}"
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _sigterm)
    print(f"testbed run {scenario.name}: {len(scenario.variants)} variants -> {out_dir}/", flush=True)
    try:
        doc = run_scenario(scenario, out_dir, overrides, quick,
                           progress=lambda m: print(f"  {m}", flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: partial results in {out_dir}/results.json (complete: false)")
        return 130
    summary.print_summary(doc)
    print(f"wrote {out_dir}/results.json, {out_dir}/report.md and plots")
    failed = [c for v in doc["variants"] for c in (v.get("fidelity") or {}).get("checks", [])
              if c["verdict"] == "fail"]
    if doc["errors"] or not doc["complete"]:
        sys.stderr.write("testbed: error: run failed: " + "; ".join(doc["errors"] or ["incomplete"]) + "\n")
        return 1
    if failed:
        sys.stderr.write("testbed: fidelity failed: " + ", ".join(
            f"{c['metric']} configured {c['configured']} measured {c['measured']}" for c in failed) + "\n")
        return 1
    return 0
