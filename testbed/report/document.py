"""report.md: a markdown report made from results.json alone.

Sections: a header (scenario, times, environment, delay backend, complete or
not), one table per group of metrics with a column per variant -- and, with
exactly two variants, a ratio column (second / first, e.g. transit / direct) --
then each step kind's own section (collectives, training, storage, timeline:
declared in :mod:`testbed.steps.registry`), egress cost, the fidelity table of each variant, emulator health, errors,
and links to the plots. Anything missing or null prints as ``-``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from testbed.report.markdown import MISSING, cell, format_number, lookup, ratio, table, verdict_text
from testbed.report.sections import cost_section
from testbed.results import get_value, overall_verdict, write_text_atomic
from testbed.steps.registry import STEPS

__all__ = ["render_report", "write_report", "METRIC_TABLES"]

#: (section title, [(row label, dotted path in a variant), ...]); a row may list
#: alternative paths separated by "|": the first one present is used.
METRIC_TABLES: Sequence[Tuple[str, Sequence[Tuple[str, str]]]] = (
    (
        "Round-trip time (ping)",
        (
            ("RTT mean (ms)", "ping.rtt_ms.mean"),
            ("RTT p50 (ms)", "ping.rtt_ms.p50"),
            ("RTT p99 (ms)", "ping.rtt_ms.p99"),
            ("RTT stdev (ms)", "ping.rtt_ms.stdev"),
            ("Ping loss (%)", "ping.loss_pct"),
        ),
    ),
    (
        "One-way delay and jitter",
        (
            ("OWD forward mean (ms)", "owd.forward.one_way_delay_ms.mean|owd.one_way_delay_ms.mean"),
            ("OWD forward p99 (ms)", "owd.forward.one_way_delay_ms.p99|owd.one_way_delay_ms.p99"),
            ("OWD reverse mean (ms)", "owd.reverse.one_way_delay_ms.mean"),
            ("OWD reverse p99 (ms)", "owd.reverse.one_way_delay_ms.p99"),
            ("Jitter forward (ms)", "owd.forward.jitter_ms|owd.jitter_ms"),
            ("Jitter reverse (ms)", "owd.reverse.jitter_ms"),
            ("Loss forward (%)", "owd.forward.loss_pct|owd.loss_pct"),
            ("Loss reverse (%)", "owd.reverse.loss_pct"),
            ("Reordered forward (packets)", "owd.forward.reordered"),
        ),
    ),
    (
        "Throughput",
        (
            ("TCP throughput (Mbit/s)", "tcp.throughput_mbps"),
            ("TCP retransmits", "tcp.retransmits"),
            ("Time to steady (s)", "tcp.time_to_steady_s|steady.time_to_steady_s"),
            ("Lab up (s)", "lab.up_s"),
            ("Up to first packet (s)", "time_to_first_packet_s"),
            ("Up to steady throughput (s)", "time_to_steady_from_up_s"),
            ("UDP throughput (Mbit/s)", "udp.throughput_mbps"),
            ("UDP jitter (ms)", "udp.jitter_ms"),
            ("UDP loss (%)", "udp.loss_pct"),
        ),
    ),
    (
        "Path",
        (
            ("Router hops", "path.hops"),
            ("TTL to reach destination", "path.ttl_hops"),
            ("Path MTU (bytes)", "path.path_mtu"),
        ),
    ),
)


#: what a row means where its label cannot say it all (printed under its table)
ROW_NOTES = {
    "Lab up (s)": "Lab up: seconds from the start of `testbed up` until every interface was up "
                  "and every bridge port forwarding.",
    "Up to first packet (s)": "Up to first packet: from the start of `up` until the first ping "
                              "crossed from source to destination (time to connectivity).",
    "Up to steady throughput (s)": "Up to steady throughput: from the start of `up` until TCP "
                                   "throughput stayed within the steady step's tolerance.",
}


def _unit_of(metric: str) -> str:
    """The unit a check's metric is in, from its name (tolerances are absolute, in it)."""
    base = metric.split("[", 1)[0]
    for suffix, unit in (("_ms", " ms"), ("_mbps", " Mbit/s"), ("_pct", " %")):
        if base.endswith(suffix):
            return unit
    return ""


def _metric_tables(variants: List[Dict[str, Any]]) -> List[str]:
    names = [cell(str(v.get("name", f"variant {i}"))) for i, v in enumerate(variants)]
    header = ["Metric", *names]
    with_ratio = len(variants) == 2
    if with_ratio:
        header.append(f"{names[1]} / {names[0]}")
    out: List[str] = []
    for title, rows in METRIC_TABLES:
        table_rows = []
        for label, paths in rows:
            values = [lookup(v, paths) for v in variants]
            if all(value is None for value in values):
                continue  # a step no variant ran: no row of dashes
            row = [label, *(format_number(value) for value in values)]
            if with_ratio:
                row.append(ratio(values[0], values[1]))
            table_rows.append(row)
        if not table_rows:
            continue
        out += [f"## {title}", "", *table(header, table_rows), ""]
        notes = [note for label, note in ROW_NOTES.items() if any(r[0] == label for r in table_rows)]
        if any(r[0] == "TCP throughput (Mbit/s)" for r in table_rows):
            notes += [f"TCP window, {cell(str(v.get('name')))}: {cell(v['tcp']['window_advisory'])}"
                      for v in variants if (v.get("tcp") or {}).get("window_advisory")]
        if notes:
            out += [f"- {note}" for note in notes] + [""]
    return out


#: profile fields shown in the links table, in this order
_LINK_FIELDS = ("rate", "delay", "jitter", "loss", "queue", "mtu")


def _links(variants: List[Dict[str, Any]]) -> List[str]:
    """The configured profile of every link, per direction (forward = the link's first node -> second)."""
    rows = []
    for variant in variants:
        for name, profile in (variant.get("links") or {}).items():
            if not isinstance(profile, dict):
                continue
            if "forward" in profile or "reverse" in profile:
                directions = [(d, profile.get(d) or {}) for d in ("forward", "reverse")]
            else:
                directions = [("both", profile)]
            for direction, fields in directions:
                extra = {k: v for k, v in fields.items() if k not in _LINK_FIELDS}
                rows.append([cell(str(variant.get("name"))), cell(str(name)), direction,
                             *(format_number(fields.get(k)) if fields.get(k) is not None
                               else ("unshaped" if k == "rate" else MISSING) for k in _LINK_FIELDS),
                             cell(", ".join(f"{k} {v}" for k, v in extra.items()))])
    if not rows:
        return []
    return ["## Links as configured", "",
            *table(["Variant", "Link", "Direction", "Rate", "Delay", "Jitter", "Loss", "Queue", "MTU", "Other"],
                   rows), ""]


def _placement(variants: List[Dict[str, Any]]) -> List[str]:
    """A lab across machines: which machine ran which nodes, and each underlay as measured."""
    rows, under = [], []
    for variant in variants:
        lab = variant.get("lab") or {}
        placement = lab.get("placement") or {}
        if not placement:
            continue
        by_machine: Dict[str, List[str]] = {}
        for node, machine in sorted(placement.items()):
            by_machine.setdefault(str(machine), []).append(str(node))
        machines = {m.get("name"): m for m in lab.get("machines") or [] if isinstance(m, dict)}
        for machine, nodes in by_machine.items():
            info = machines.get(machine) or {}
            kind = "one-box stand-in" if info.get("standin") else "machine"
            rows.append([cell(str(variant.get("name"))), cell(machine),
                         cell(f"{info.get('address', MISSING)} ({kind})"), cell(", ".join(nodes))])
        for name, info in machines.items():
            for pair in info.get("underlay") or []:
                if str(name) < str(pair.get("to")):
                    under.append([cell(str(variant.get("name"))), cell(f"{name} - {pair.get('to')}"),
                                  format_number(pair.get("mtu")), format_number(pair.get("rtt_ms")),
                                  format_number(pair.get("tcp_mbps"))])
    if not rows:
        return []
    out = ["## Placement across machines", "",
           *table(["Variant", "Machine", "Address", "Nodes"], rows), ""]
    if under:
        out += ["Underlay between the machines, measured before each variant:", "",
                *table(["Variant", "Machines", "MTU", "RTT (ms)", "TCP (Mbit/s)"], under), ""]
    return out


def _header(results: Dict[str, Any]) -> List[str]:
    env = results.get("environment") or {}
    config = results.get("scenario_config") or {}
    complete = results.get("complete") is True
    lines = [f"# Scenario: {results.get('scenario', MISSING)}", ""]
    if config.get("description"):
        lines += [str(config["description"]), ""]
    tools = env.get("tools") or {}
    tool_text = ", ".join(f"{name} {version}" for name, version in tools.items()) or MISSING
    facts = [
        ("Complete", "yes" if complete else "**NO: the run was interrupted or a variant failed**"),
        ("Started", results.get("started_at") or MISSING),
        ("Finished", results.get("finished_at") or MISSING),
        ("Topology", config.get("topology") or MISSING),
        ("Delay backend", env.get("delay_backend") or MISSING),
        ("Scale", "; ".join(f"{v.get('name')}: {(v.get('lab') or {}).get('scale_decision', {}).get('reason') or (v.get('lab') or {}).get('scale', MISSING)}"
                            for v in results.get("variants") or []) or MISSING),
        ("Kernel", env.get("kernel") or MISSING),
        ("CPUs", format_number(env.get("cpus"))),
        ("Tools", tool_text),
    ]
    if results.get("source"):
        facts.append(("Scenario file", results["source"]))
    if results.get("overrides"):
        facts.append(("Overrides", ", ".join(f"`{item}`" for item in results["overrides"])))
    if results.get("quick"):
        facts.append(("Quick mode", "yes (shortened measurements)"))
    lines += [f"- **{key}:** {cell(str(value))}" for key, value in facts]
    sysctls = results.get("host_sysctls") or {}
    if sysctls:
        lines += ["", "Host sysctls (every host namespace):", ""]
        lines += table(["sysctl", "value"], [[f"`{k}`", cell(str(v))] for k, v in sysctls.items()])
    return lines + [""]


def _fidelity(variants: List[Dict[str, Any]]) -> List[str]:
    out = ["## Fidelity", ""]
    for variant in variants:
        name = cell(str(variant.get("name")))
        checks = get_value(variant, "fidelity.checks") or []
        verdict = overall_verdict(variant)
        out.append(f"### {name}: {verdict_text(verdict) if verdict else 'not judged'}")
        out.append("")
        if not checks:
            out += ["No fidelity checks.", ""]
            continue
        rows = []
        for check in checks:
            tolerance = check.get("tolerance")
            tol_text = (f"{format_number(tolerance)}{_unit_of(str(check.get('metric', '')))}"
                        if isinstance(tolerance, (int, float)) else format_number(tolerance))
            row = [
                cell(str(check.get("metric", MISSING))),
                format_number(check.get("configured")),
                format_number(check.get("measured")),
                tol_text,
                verdict_text(check.get("verdict")),
            ]
            row.append(cell(str(check["detail"])) if check.get("detail") else "")
            rows.append(row)
        out += table(["Metric", "Configured", "Measured", "Tolerance", "Verdict", "Note"], rows) + [""]
    return out


def _emulator(variants: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for variant in variants:
        emulator = variant.get("emulator") or {}
        for line in emulator.get("delay_lines") or []:
            rows.append(
                [
                    cell(str(variant.get("name"))),
                    cell(str(line.get("node", MISSING))),
                    format_number(line.get("link")),
                    format_number(line.get("direction")),
                    format_number(line.get("packets")),
                    format_number(line.get("dropped")),
                    format_number(line.get("late_p99_ms")),
                    format_number(emulator.get("cpu_busy_pct")),
                ]
            )
    if not rows:
        return []
    header = ["Variant", "Node", "Link", "Direction", "Packets", "Dropped", "Late p99 (ms)", "CPU busy (%)"]
    return ["## Emulator (userspace delay lines)", "", *table(header, rows), ""]


def _errors(results: Dict[str, Any], variants: List[Dict[str, Any]]) -> List[str]:
    items = [f"- run: {error}" for error in results.get("errors") or []]
    for variant in variants:
        name = variant.get("name")
        if variant.get("complete") is not True:
            items.append(f"- {name}: did not complete")
        items += [f"- {name}: {error}" for error in variant.get("errors") or []]
    if not items:
        return []
    return ["## Errors", "", *(item.replace("\n", " ") for item in items), ""]


def _plots(plot_files: Sequence[Union[str, Path]], base_dir: Optional[Union[str, Path]]) -> List[str]:
    if not plot_files:
        return []
    out = ["## Plots", ""]
    for plot in plot_files:
        path = Path(plot)
        if base_dir is not None and path.is_absolute():
            target = os.path.relpath(path, base_dir)
        else:
            target = str(path)
        title = path.stem.replace("_", " ")
        out += [f"![{title}]({Path(target).as_posix()})", ""]
    return out


def render_report(
    results: Dict[str, Any],
    plot_files: Sequence[Union[str, Path]] = (),
    base_dir: Optional[Union[str, Path]] = None,
) -> str:
    """Markdown for ``results``; plot links are relative to ``base_dir`` if given."""
    variants = [v for v in results.get("variants") or [] if isinstance(v, dict)]
    lines = _header(results)
    if not variants:
        lines += ["No variant produced results.", ""]
    else:
        lines += _links(variants)
        lines += _placement(variants)
        lines += _metric_tables(variants)
        for step in STEPS.values():  # each step kind's own section (testbed.steps.registry)
            if step.report_section is not None:
                lines += step.report_section(variants)
        lines += cost_section(variants)
        lines += _fidelity(variants)
        lines += _emulator(variants)
    lines += _errors(results, variants)
    lines += _plots(plot_files, base_dir)
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: Dict[str, Any], plot_files: Sequence[Union[str, Path]], path: Union[str, Path]) -> Path:
    """Render and write ``report.md`` atomically; plot links relative to its directory."""
    target = Path(path)
    return write_text_atomic(target, render_report(results, plot_files, base_dir=target.parent))
