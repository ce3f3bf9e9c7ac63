"""What a lab across machines adds to results.json, its predictions and its verdicts.

* ``variants[].lab.placement``: every node -> its machine;
* ``variants[].lab.machines``: each machine with its address, whether it was
  a one-box stand-in, its slice's readiness and its underlay to each other
  machine (MTU, RTT, TCP throughput, measured before the run);
* the prediction of a path adds the underlay's RTT once per crossing link;
* a fidelity check per crossing link: its configured rate (after ``scale``)
  against the TCP throughput its underlay carried -- ``warn`` when the link is
  configured faster than the underlay can carry, ``skip`` when either is
  unknown or the link is unshaped.
"""

from __future__ import annotations

from typing import List, Mapping, Sequence

from testbed.lab.paths import path_links

__all__ = ["cluster_results", "with_underlay", "underlay_checks"]


def _pairs(cluster: Mapping) -> dict:
    out = {}
    for p in cluster.get("underlay") or []:
        out[(p["a"], p["b"])] = p
        out[(p["b"], p["a"])] = p
    return out


def cluster_results(cluster: Mapping) -> dict:
    pairs = cluster.get("underlay") or []
    ready = cluster.get("ready") or {}
    machines = []
    for m in cluster["machines"]:
        underlay = [{"to": p["b"] if p["a"] == m["name"] else p["a"], "mtu": p["mtu"],
                     "rtt_ms": p["rtt_ms"], "tcp_mbps": p["tcp_mbps"]}
                    for p in pairs if m["name"] in (p["a"], p["b"])]
        machines.append({"name": m["name"], "address": m["address"], "standin": bool(m.get("standin")),
                         "ready_after_s": (ready.get(m["name"]) or {}).get("ready_after_s"),
                         "underlay": underlay})
    return {"placement": dict(cluster["placement"]), "machines": machines}


def _crossing(plan, where: Mapping[str, str], l3: Sequence[str]):
    return [link for link, _direction in path_links(plan, l3) if where[link.a] != where[link.b]]


def with_underlay(pred: dict, plan, l3: Sequence[str], cluster: Mapping) -> dict:
    """``pred`` plus the underlay's delay: its RTT once per link of the path that crosses machines."""
    where = cluster["placement"]
    pairs = _pairs(cluster)
    rtts = [(pairs.get((where[l.a], where[l.b])) or {}).get("rtt_ms") or 0.0 for l in _crossing(plan, where, l3)]
    out = dict(pred)
    out["underlay_rtt_ms"] = round(sum(rtts), 3)
    out["crossing_links"] = len(rtts)
    out["rtt_ms"] = pred["rtt_ms"] + out["underlay_rtt_ms"]
    out["owd_forward_ms"] = pred["owd_forward_ms"] + out["underlay_rtt_ms"] / 2.0
    return out


def underlay_checks(plan, cluster: Mapping, scale: float = 1.0) -> List[dict]:
    """One verdict per link that crosses machines: does its underlay carry its configured rate?"""
    where = cluster["placement"]
    pairs = _pairs(cluster)
    out = []
    for link in plan.links:
        ma, mb = where[link.a], where[link.b]
        if ma == mb:
            continue
        rates = [p.rate_bps for p in (link.spec.forward, link.spec.reverse) if p.rate_bps]
        configured = max(rates) / scale / 1e6 if rates else None
        carried = (pairs.get((ma, mb)) or {}).get("tcp_mbps")
        name = f"underlay_carries_mbps[{link.name} {link.a}-{link.b} {ma}-{mb}]"
        check = {"metric": name, "configured": None if configured is None else round(configured, 2),
                 "measured": carried, "tolerance": None}
        if configured is None or carried is None:
            check.update(verdict="skip", detail="the link is unshaped" if configured is None
                         else "the underlay's throughput was not measured")
        elif configured > carried:
            check.update(verdict="warn", detail=(
                f"the link is configured faster ({configured:.0f} Mbit/s) than its underlay carried "
                f"({carried:.0f} Mbit/s between {ma} and {mb}): its throughput is the underlay's, "
                "not the link's"))
        else:
            check.update(verdict="pass", detail=f"the underlay between {ma} and {mb} carries the link's rate")
        out.append(check)
    return out
