"""Report sections of the step kinds (collective, training, storage, timeline) and of egress cost.

Each builder takes the variants of results.json and returns markdown lines,
or nothing when no variant ran that step. The step registry
(:mod:`testbed.steps.registry`) names each step's section;
:func:`testbed.report.document.render_report` adds them in registry order,
then :func:`cost_section`.
"""

from __future__ import annotations

from typing import Any, Dict, List

from testbed.report.markdown import cell, format_number, table

__all__ = ["collectives_section", "training_section", "storage_section", "timeline_section",
           "cost_section"]


def _name(variant: Dict[str, Any]) -> str:
    return cell(str(variant.get("name")))


def collectives_section(variants: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for variant in variants:
        for item in variant.get("collectives") or []:
            rows.append(
                [
                    cell(str(variant.get("name"))),
                    *(
                        format_number(item.get(key))
                        for key in (
                            "op",
                            "algorithm",
                            "ranks",
                            "bytes",
                            "time_us",
                            "algbw_gbps",
                            "busbw_gbps",
                            "model_time_us",
                            "correct",
                        )
                    ),
                    cell(f"{item['verdict']}: {item.get('verdict_reason', '')}" if item.get("verdict")
                         else "-"),
                ]
            )
    if not rows:
        return []
    header = [
        "Variant",
        "Op",
        "Algorithm",
        "Ranks",
        "Bytes",
        "Time (us)",
        "algbw (GB/s)",
        "busbw (GB/s)",
        "Model (us)",
        "Correct",
        "Verdict",
    ]
    return ["## Collectives", "", *table(header, rows), ""]


def training_section(variants: List[Dict[str, Any]]) -> List[str]:
    ran = [v for v in variants if isinstance(v.get("training"), dict)]
    if not ran:
        return []
    rows, ranks = [], []
    for variant in ran:
        data = variant["training"]
        for placement, p in (data.get("placements") or {}).items():
            stragglers = p.get("stragglers") or {}
            rows.append([_name(variant), placement, format_number(p.get("ring_crossings")),
                         format_number((p.get("step_ms") or {}).get("p50")),
                         format_number((p.get("step_ms") or {}).get("p99")),
                         format_number(p.get("compute_share")), format_number(p.get("comm_share")),
                         format_number(p.get("scaling_efficiency")),
                         cell(str(stragglers.get("slowest_site"))),
                         cell(str(stragglers.get("bottleneck_link")))])
            for r in stragglers.get("by_rank") or []:
                ranks.append([_name(variant), placement, format_number(r.get("rank")), cell(str(r.get("host"))),
                              cell(str(r.get("gpu"))), format_number(r.get("compute_ms")),
                              format_number(r.get("waited_compute_ms")), cell(str(r.get("waited_compute_on"))),
                              format_number(r.get("waited_comm_ms")), cell(str(r.get("waited_comm_on")))])
    first = ran[0]["training"]
    lines = ["## Training across sites", "",
             f"Data-parallel steps: {format_number(first.get('ranks'))} ranks, gradient "
             f"{format_number(first.get('model_size_bytes'))} B allreduced with `{first.get('algorithm')}` in "
             f"{format_number(first.get('buckets'))} bucket(s). Scaling efficiency compares with the same "
             "ranks in one site (the same compute plus the model's allreduce over the site fabric).", ""]
    lines += table(["Variant", "Placement", "Ring crossings", "Step p50 (ms)", "Step p99 (ms)",
                     "Compute share", "Comm share", "Scaling eff.", "Slowest site", "Bottleneck link"], rows)
    lines += ["", "Straggler attribution (mean per step): what each rank waited on.", ""]
    lines += table(["Variant", "Placement", "Rank", "Host", "GPU", "Compute (ms)", "Waited compute (ms)",
                     "on", "Waited comm (ms)", "on"], ranks)
    return lines + [""]


def storage_section(variants: List[Dict[str, Any]]) -> List[str]:
    ran = [v for v in variants if isinstance(v.get("storage"), dict)]
    if not ran:
        return []
    rows = []
    for variant in ran:
        data = variant["storage"]
        for epoch in data.get("epochs") or []:
            rows.append([_name(variant), "yes" if data.get("cache_enabled") else "no",
                         format_number(epoch.get("epoch")), format_number(epoch.get("reads")),
                         format_number(epoch.get("latency_p50_ms")), format_number(epoch.get("latency_p99_ms")),
                         format_number(epoch.get("throughput_mbps")), format_number(epoch.get("hit_ratio")),
                         format_number(epoch.get("origin_bytes_sent")),
                         f"{format_number(epoch.get('corrupt_detected'))} / {format_number(epoch.get('corrupt_injected'))}",
                         format_number(epoch.get("retries")), format_number(epoch.get("failed_reads"))])
    lines = ["## Central storage reads", "",
             "Every object is verified against its sha256 by the reader (and by the cache before it stores "
             "it); corrupt answers are counted and retried, never accepted (docs/storage.md).", ""]
    lines += table(["Variant", "Cache", "Epoch", "Reads", "Latency p50 (ms)", "Latency p99 (ms)",
                     "Throughput (Mbit/s)", "Hit ratio", "Origin bytes sent", "Corrupt detected / injected",
                     "Retries", "Failed"], rows)
    return lines + [""]


def cost_section(variants: List[Dict[str, Any]]) -> List[str]:
    ran = [v for v in variants if isinstance(v.get("cost"), dict)]
    if not ran:
        return []
    rows = []
    for variant in ran:
        cost = variant["cost"]
        for key, link in (cost.get("links") or {}).items():
            if not link.get("egress_bytes"):
                continue
            rows.append([_name(variant), cell(str(key)), cell(str(link.get("class"))),
                         format_number(link.get("egress_bytes")), format_number(link.get("usd"))])
        rows.append([_name(variant), "**total**", "", format_number(cost.get("total_bytes")),
                     format_number(cost.get("total_usd"))])
    lines = ["## Egress cost", "",
             "Bytes leaving each site over inter-site links during the variant, priced per link class "
             "(the price table and its sources: docs/cost.md).", ""]
    lines += table(["Variant", "Link", "Class", "Egress bytes", "USD"], rows)
    monthly = [(v, v["cost"].get("monthly")) for v in ran if isinstance(v["cost"].get("monthly"), dict)]
    if monthly:
        lines += ["", "Per month at the stated daily volume:", ""]
        lines += table(["Variant", "Daily bytes", "Class", "USD per month"],
                        [[_name(v), format_number(m.get("daily_bytes")), cell(str(m.get("link_class"))),
                          format_number(m.get("usd"))] for v, m in monthly])
    return lines + [""]


def timeline_section(variants: List[Dict[str, Any]]) -> List[str]:
    ran = [v for v in variants if isinstance(v.get("timeline"), dict)]
    if not ran:
        return []
    rows, fired = [], []
    for variant in ran:
        data = variant["timeline"]
        for record in data.get("events") or []:
            fired.append([_name(variant), cell(str(record.get("label") or record.get("kind"))),
                          format_number(record.get("planned_s")), format_number(record.get("actual_s")),
                          cell(str(record.get("error") or ""))])
        for item in data.get("analysis") or []:
            tput = item.get("throughput_mbps") or {}
            rtt = item.get("rtt_ms") or {}
            rows.append([_name(variant), cell(str(item.get("label") or item.get("kind"))),
                         format_number(item.get("actual_s")), format_number(item.get("outage_s")),
                         format_number(item.get("time_to_recover_s")),
                         " / ".join(format_number(tput.get(k)) for k in ("before", "during", "after")),
                         " / ".join(format_number(rtt.get(k)) for k in ("before", "during", "after"))])
    lines = ["## Events over time", "",
             "Per disruptive event: the outage (the longest stretch without throughput from the event on) "
             "and the time until throughput is back near its level before the event (docs/events.md). "
             "Throughput and RTT are medians before / during / after.", ""]
    lines += table(["Variant", "Event", "Fired (s)", "Outage (s)", "Recovered after (s)",
                     "Throughput (Mbit/s)", "RTT (ms)"], rows)
    lines += ["", "Every action as planned and as fired:", ""]
    lines += table(["Variant", "Action", "Planned (s)", "Fired (s)", "Error"], fired)
    return lines + [""]
