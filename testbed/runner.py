"""``testbed run``: bring each variant's lab up, measure, judge, write, clean.

For every variant of a scenario: a lab owned by this process (so ``testbed
clean`` can tell if we were killed), the measurement steps in file order
between the scenario's endpoints, the delay lines checked alive after every
step, fidelity checks, and the lab destroyed in ``finally``. results.json is
rewritten atomically after every variant, so an interrupted run (Ctrl-C,
SIGTERM) leaves valid JSON with ``complete: false``.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Callable, List, Optional

from testbed import autoscale, capacity, cost, fidelity, results, tcpmodel
from testbed.cluster.results import cluster_results, underlay_checks, with_underlay
from testbed.collectives import verdict as line_verdict
from testbed.collectives.tcpedges import read_node_sysctls, read_sysctls
from testbed.errors import InputError, RunError, TestbedError
from testbed.graph import graph_doc
from testbed.lab import counters, state
from testbed.lab.lab import Lab, require_root
from testbed.lab.paths import l3_path, path_profile
from testbed.preflight import preflight
from testbed.report.document import write_report
from testbed.report.plotting import make_plots
from testbed.scenario import Scenario, list_scenarios
from testbed.shaping import backends
from testbed.steps.kind import StepContext
from testbed.steps.registry import get_step
from testbed.versions import version_line
from testbed.window_advisory import window_advisory

__all__ = ["scenarios_dir", "resolve_scenario", "environment", "run_step", "run_scenario", "FLAGSHIP"]

FLAGSHIP = "direct-vs-transit"
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


def environment() -> dict:
    backend, why = backends.explain()
    return {
        "kernel": platform.release(),
        "delay_backend": backend,
        "delay_backend_reason": why,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tools": {
            "iperf3": version_line("iperf3"),
            "ping": version_line("ping"),
            "iptables": version_line("iptables"),
        },
    }


def _delay_line_summary(lab: Lab, late_by_step: dict, self_judged: List[str]) -> List[dict]:
    """Each line direction's counters over the whole variant, and its lateness while the
    steps ran that the variant's checks judge (``late_p99_ms_in_steps``, the worst step's
    p99, and ``late_step``): the steps whose rows carry their own verdict are left out, and
    so are bring-up, teardown and the gaps between steps."""
    out = []
    for doc in lab.delay_line_stats():
        for q in doc.get("queues", []):
            node = doc["netns"].rsplit(".", 1)[-1]
            key = f"{q.get('link')}:{q.get('direction')}@{node}"  # verdict.snapshot's key
            in_steps = [(lines[key]["late_p99_ms"], kind) for kind, lines in late_by_step.items()
                        if kind not in self_judged and lines.get(key, {}).get("late_p99_ms") is not None]
            worst_ms, worst_step = max(in_steps) if in_steps else (None, None)
            out.append({
                "node": node, "netns": doc["netns"],
                "link": q.get("link"), "direction": q.get("direction"),
                "packets": q.get("received"),
                "dropped": (q.get("dropped_loss") or 0) + (q.get("dropped_queue") or 0),
                "dropped_loss": q.get("dropped_loss"), "dropped_queue": q.get("dropped_queue"),
                "queue_max_packets": q.get("held_max"),
                "late_p50_ms": (q.get("late_ms") or {}).get("p50"),
                "late_p99_ms": (q.get("late_ms") or {}).get("p99"),
                "late_max_ms": (q.get("late_ms") or {}).get("max"),
                "late_p99_ms_in_steps": worst_ms, "late_step": worst_step,
                "cpu_s": doc.get("cpu_s"),
            })
    return out


def _step_lateness(before: dict, after: dict) -> dict:
    """Per line direction, the packets a step sent through it and their lateness p99 (ms);
    directions that carried fewer than verdict.MIN_PACKETS are left out (no p99 to speak of)."""
    lines = line_verdict.judge(before, after)["evidence"]["lines"]
    return {key: {"packets": v["packets"], "late_p99_ms": v["late_p99_ms"]} for key, v in lines.items()}


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


def run_step(lab: Lab, kind: str, options, src, dst,
             progress: Callable[[str], None] = lambda _m: None, ctx: Optional[StepContext] = None):
    """One measurement step as results.json records it (collective: its rows).

    ``ctx`` carries the variant's entry so far (the ``steady`` step reads the
    ``tcp`` one); without it the step runs on its own.
    """
    step = get_step(kind)
    ctx = ctx or StepContext(lab, src, dst, progress)
    return step.run(ctx, options)


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
    if scenario.machines or scenario.placement:  # a lab across machines (testbed.cluster)
        from testbed.cluster.create import create_cluster_lab
        from testbed.cluster.machines import parse_machines

        lab = create_cluster_lab(scenario.topology, lab_name, params=config["params"], links=config["links"],
                                 machines=parse_machines(scenario.machines), placement=scenario.placement,
                                 host_sysctls=config["host_sysctls"], owner_pid=os.getpid(),
                                 strict_links=False, scale=decision.scale)
    else:
        lab = Lab.create(scenario.topology, lab_name, params=config["params"], links=config["links"],
                         host_sysctls=config["host_sysctls"], owner_pid=os.getpid(),
                         strict_links=False, scale=decision.scale)
    lab.doc["scale_decision"] = decision.to_dict()  # the collective rows' verdicts read it
    try:
        up_s = round(time.monotonic() - up_started, 3)
        entry["lab"] = {"block": lab.block, "backend": lab.backend, "nodes": len(lab.node_names()),
                        "scale": lab.scale, "scale_decision": decision.to_dict(), "up_s": up_s,
                        "graph": graph_doc(lab.plan)}
        if lab.doc.get("cluster"):
            entry["lab"].update(cluster_results(lab.doc["cluster"]))
        entry["links"] = {l["name"]: l["profile"] for l in lab.links()}
        hosts = [h.name for h in lab.hosts()]
        ends = config["endpoints"] or {"src": hosts[0], "dst": hosts[-1]}
        src, dst = lab.node(ends["src"]), lab.node(ends["dst"])
        entry["endpoints"] = {"src": src.name, "dst": dst.name}
        entry["time_to_connectivity_s"] = _wait_connectivity(src, dst)
        entry["time_to_first_packet_s"] = round(up_s + entry["time_to_connectivity_s"], 3)
        # a lab on real machines has its interfaces there: no egress counters (cost) here
        counted = not lab.doc.get("cluster") or bool(lab.doc["cluster"].get("onebox"))
        counters_before = counters.link_bytes(lab) if counted else None
        tcp_options = None
        busy, late_by_step, self_judged = {}, {}, []
        ctx = StepContext(lab, src, dst, lambda m: progress(f"[{variant.name}]   {m}"), entry, up_started)
        for kind, options in scenario.steps(index):
            step = get_step(kind)
            if not step.measures:  # derived from earlier steps: no traffic
                step.run(ctx, options)
                continue
            progress(f"[{variant.name}] {step.progress_line(options, ctx)}")
            cpu_before = _cpu_times()
            lines_before = line_verdict.snapshot(lab)
            try:
                data = _watched(lab, lambda: run_step(lab, kind, options, src, dst, ctx=ctx),
                                watch=not step.in_process)
            except TestbedError:
                lab.check()  # a dead delay line is the real cause: say so
                raise
            entry[step.key] = data
            busy[kind] = _busy_pct(cpu_before, _cpu_times())
            late_by_step[kind] = _step_lateness(lines_before, line_verdict.snapshot(lab))
            if step.judges_itself:
                self_judged.append(kind)
            if kind == "tcp":
                tcp_options = options
            lab.check()
        if counted:
            entry["cost"] = _variant_cost(scenario, lab, config, counters_before)
        entry["emulator"] = {"delay_lines": _delay_line_summary(lab, late_by_step, self_judged),
                             "cpu_busy_pct": busy.get("tcp"), "cpu_busy_pct_by_step": busy,
                             "late_by_step": late_by_step}
        # the measured path when the path step ran, else the routed (shortest) one
        routers = [n for n in (entry.get("path") or {}).get("router_names", []) if n]
        l3 = ([src.name] + routers + [dst.name] if entry.get("path")
              else l3_path(lab.plan, src.name, dst.name))
        pred = path_profile(lab.plan, l3)
        if lab.doc.get("cluster"):  # a crossing link's packets also cross the underlay
            pred = with_underlay(pred, lab.plan, l3, lab.doc["cluster"])
        entry["predicted"] = pred
        # once: the advisory and the TCP check both read them
        src_sysctls = read_sysctls(src.netns) if not src.remote else read_node_sysctls(src)
        if entry.get("tcp") and tcp_options is not None:  # the window, not the link, may be the limit
            host = tcpmodel.HostTcp.from_sysctls(src_sysctls, congestion=tcp_options.cc)
            advisory = window_advisory(src.name, dst.name, pred, host, tcp_options.streams)
            if advisory and not tcp_options.window_bytes:
                entry["tcp"]["window_advisory"] = advisory
                progress(f"[{variant.name}] advisory: {advisory}")
        window = tcp_options.window_bytes if tcp_options else None
        entry["fidelity"] = {"checks": fidelity.checks(pred, entry, scenario.fidelity.model_dump(), window,
                                                       host_sysctls=src_sysctls)}
        if lab.doc.get("cluster"):
            entry["fidelity"]["checks"] += underlay_checks(lab.plan, lab.doc["cluster"], lab.scale)
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
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("out", f"cannot make {out_dir}: {exc.strerror or exc}") from exc
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
    plot_files = make_plots(doc, out_dir)
    write_report(doc, plot_files, out_dir / "report.md")
    results.validate_results(doc)
    if interrupted:
        raise KeyboardInterrupt
    return doc


def _capacity_warnings(scenario: Scenario) -> List[str]:
    """Warn before a run whose delayed links ask more than this machine's line carries.

    Reads the cached figure of 'testbed doctor --bench' (no traffic is sent here).
    """
    cap = capacity.load_cached()
    if cap is None:
        return []
    out = []
    for index, variant in enumerate(scenario.variants):
        config = scenario.variant_config(variant)
        present = {link.name for link in autoscale.plan_for(
            scenario.topology, config["params"], config["links"]).links}  # this variant's own
        rates = [p.rate_bps for name, spec in scenario.variant_links(variant).items() if name in present
                 for p in (spec.forward, spec.reverse) if p.has_impairment]
        if not rates:
            continue
        top = capacity.max_configured_rate_bps(rates)
        # the rate the lab is shaped at: the K this variant will run at (scale: auto
        # decides it from the same cached capacity)
        k = autoscale.for_variant(scenario, index, capacity_doc=cap).scale
        text = capacity.check_scenario_capacity(top, cap, k)
        if text:
            out.append(f"{variant.name}: {text}")
    return out
