"""Bring a lab up across machines: plan once, check the underlay, each machine builds its slice.

    lab = create_cluster_lab("two-clouds", "lab1", params={"path": "direct"},
                             placement={"cw": "m1", "gcp": "m2"})          # one box: stand-ins
    lab = create_cluster_lab(..., machines=parse_machines({"m1": "root@192.0.2.10", ...}))

Order, so that a refusal changes nothing and a failure leaves nothing:

1. validate (names, topology, profiles, placement) -- exit 2 before root is checked;
2. claim the lab's name in this machine's state (the ``cluster`` section
   says which machines, how to reach them, where their state is);
3. one box: make the stand-ins (their sshd pids recorded at once);
4. measure the underlay (MTU, RTT, TCP) and refuse a link it cannot carry
   (exit 3, the fix named) -- before any slice is built;
5. every machine builds its slice through its agent and reports readiness.

A failure at any step runs the lab's teardown, which reaches every machine
(:func:`testbed.cluster.control.down_machines`), before the error propagates.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from testbed.cluster import control, slicing, standin, underlay
from testbed.cluster.machines import Machine, node_machines, place_sites, sites_of
from testbed.lab import guard, procs, state, teardown
from testbed.lab.lab import Lab, claim_plan, new_state_doc, validate_inputs

__all__ = ["create_cluster_lab", "DEFAULT_STANDINS"]

DEFAULT_STANDINS = ("m1", "m2")


def _machine_names(machines: Sequence[Machine], placement: Mapping[str, str]) -> List[str]:
    if machines:
        return [m.name for m in machines]
    names = list(dict.fromkeys(placement.values()))
    for extra in DEFAULT_STANDINS:  # a one-box lab always spans at least two stand-ins
        if len(names) >= 2:
            break
        if extra not in names:
            names.append(extra)
    return names


def create_cluster_lab(
    topology: str,
    name: str,
    params: Optional[Mapping[str, object]] = None,
    links: Optional[Mapping[str, object]] = None,
    machines: Sequence[Machine] = (),
    placement: Optional[Mapping[str, str]] = None,
    block: Optional[str] = None,
    backend: str = "auto",
    host_sysctls: Optional[Mapping[str, object]] = None,
    owner_pid: Optional[int] = None,
    strict_links: bool = True,
    seed: int = 0,
    scale: float = 1.0,
    underlay_tcp: bool = True,
) -> Lab:
    """A lab whose sites run on ``machines`` (none: one-box stand-ins named by ``placement``)."""
    inputs = validate_inputs(topology, name, params, links, block, backend, host_sysctls,
                             strict_links, scale)
    names = _machine_names(machines, placement or {})
    site_machine = place_sites(sites_of(inputs.draft), names, placement)
    delay_backend, plan = claim_plan(inputs, name, block, links, backend, strict_links)
    block, sysctls, scale = plan.block, inputs.sysctls, inputs.scale
    where = node_machines(plan, site_machine)
    for link in slicing.cross_links(plan, where):
        link.wire = None  # its wire is two halves, one per machine (slicing.half_wire)

    onebox = not machines
    base = state.state_dir()
    control_dir = f"/tmp/tb-ssh-{name}-{os.getpid()}"
    cluster: Dict[str, object] = {
        "machines": [m.to_dict() for m in machines],
        "placement": where, "sites": site_machine,
        "state_dirs": {n: str(base / ".machines" / n) for n in names} if onebox
        else {n: "/run/testbed/.machines/" + n for n in names},
        "control_dir": control_dir, "onebox": None, "known_hosts": None, "underlay": [],
    }
    doc = {**new_state_doc(inputs, name, params, delay_backend, plan, owner_pid), "cluster": cluster}
    state.create_lab_dir(name, doc)
    records: List[procs.ProcRecord] = []
    try:
        guard.install(name, block)
        if onebox:
            cluster["onebox"] = {"workdir": standin.make_workdir(name)}  # recorded before it fills
            state.write_state(name, doc)
            found, onebox_doc = standin.create_standins(name, names, block, list(plan.segments.values()),
                                                        records, cluster["onebox"]["workdir"])
            doc["procs"] = [r.to_dict() for r in records]
            cluster.update(machines=[m.to_dict() for m in found], onebox=onebox_doc,
                           known_hosts=onebox_doc["known_hosts"],
                           control_dir=str(Path(onebox_doc["workdir"]) / "ctl"))
            state.write_state(name, doc)
        ready = _build_slices(name, plan, where, cluster, delay_backend.name, sysctls, scale, seed,
                              underlay_tcp)
        cluster["ready"] = ready
        doc["ready_after_s"] = max((r.get("ready_after_s") or 0.0) for r in ready.values())
        doc["status"] = "up"
        state.write_state(name, doc)
    except BaseException:
        doc["procs"] = [r.to_dict() for r in records]
        try:
            state.write_state(name, doc)
        except OSError:
            pass
        teardown.teardown(name)
        raise
    return Lab(name, doc)


def _build_slices(name, plan, where, cluster, backend_name, sysctls, scale, seed, underlay_tcp) -> dict:
    machines = control.machines_of(cluster)
    sshs = [control.ssh_for(m, cluster) for m in machines]
    used = {where[n] for n in plan.nodes}
    pairs = underlay.measure_underlay([s for s in sshs if s.machine.name in used], throughput=underlay_tcp)
    cluster["underlay"] = pairs
    slicing.check_underlay_mtu(plan, where, {(p["a"], p["b"]): p["mtu"] for p in pairs})
    slices = slicing.slice_plans(plan, where, {m.name: m.address for m in machines})

    def build(machine: Machine) -> dict:
        payload = {"slice": slices[machine.name], "backend": backend_name, "host_sysctls": sysctls,
                   "scale": scale, "seed": seed,
                   "guard_allow": (cluster.get("onebox") or {}).get("subnet")}
        return control.call_agent(machine, cluster, "build", name, payload, timeout_s=control.BUILD_TIMEOUT_S)

    todo = [m for m in machines if m.name in slices]
    with ThreadPoolExecutor(max_workers=len(todo) or 1) as pool:
        futures = {m.name: pool.submit(build, m) for m in todo}
        answers = {}
        first_error = None
        for machine_name, future in futures.items():
            try:
                answers[machine_name] = future.result()
            except BaseException as exc:  # every build finishes before the teardown starts
                first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return {n: {"ready_after_s": a.get("ready_after_s"), "namespaces": a.get("namespaces", []),
                "delay_lines": [p for p in a.get("procs", []) if p.get("kind") == "delayline"]}
            for n, a in answers.items()}
