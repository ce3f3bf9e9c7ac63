"""A lab: a topology brought up in namespaces, shaped, and remembered by name.

    with Lab.create("pair", name="lab1", links={"link": {"rate": "500Mbit", "delay": "20ms"}}) as lab:
        lab.node("h1").run(["ping", "-c", "3", lab.node("h2").ip], timeout_s=10)

``Lab.create`` validates everything before it changes anything on the
machine, then builds; if any step fails, everything already made is removed
before the error propagates. ``Lab.attach(name)`` reopens a running lab (for
``testbed exec/status/down``). Persistent labs (``testbed up``) have no owner;
labs made by a run record the run's pid so ``testbed clean`` can tell a lab
whose owner was killed from one that is still in use.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from testbed.errors import EnvironmentProblem, InputError
from testbed.lab import addressing, build, guard, hostsfile, procs, state, teardown
from testbed.lab.naming import check_lab_name
from testbed.lab.node import Node
from testbed.lab.plan import WIRE_PORT_A, WIRE_PORT_B, LabPlan, make_plan
from testbed.scale import check_scale, scaled_profile
from testbed.shaping import backends
from testbed.shaping.htb import apply_egress, host_gso_max_bytes
from testbed.shaping.userspace import check_alive, read_stats
from testbed.topologies import build_topology, canonical_topology

__all__ = ["Lab", "LabInputs", "require_root", "validate_inputs", "claim_plan", "new_state_doc",
           "min_mtu"]

# Any block big enough: used only to validate a plan before the real block is chosen.
VALIDATION_BLOCK = "10.0.0.0/8"


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the testbed needs root to create network namespaces",
            "run it with sudo (sudo testbed ...)",
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_host_sysctls(values: Mapping[str, object]) -> Dict[str, str]:
    out = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key.startswith("net.") or not all(
            part.replace("_", "").replace("-", "").isalnum() for part in key.split(".")
        ):
            raise InputError(f"host_sysctls.{key}", "only per-namespace net.* sysctls can be set")
        text = str(value)
        if not text or not all(c.isalnum() or c in " ._-" for c in text):
            raise InputError(f"host_sysctls.{key}", f"invalid value {text!r}")
        out[key] = text
    return out


@dataclass(frozen=True)
class LabInputs:
    """A lab's arguments once checked (no root needed): see :func:`validate_inputs`."""

    topology: str
    topo: object
    sysctls: Dict[str, str]
    scale: float
    draft: LabPlan  # the plan on the validation block: every input error raised by now


def validate_inputs(topology, name, params, links, block, backend, host_sysctls,
                    strict_links, scale) -> LabInputs:
    """Every input checked before the machine is touched (errors exit 2, before exit 3's)."""
    check_lab_name(name)
    topology = canonical_topology(topology)  # a topology file: its absolute path is kept
    topo = build_topology(topology, params or {})
    sysctls = check_host_sysctls(host_sysctls or {})
    scale = check_scale(scale)
    backends.check_name(backend)
    draft = make_plan(topo, name, addressing.check_syntax(block) if block else VALIDATION_BLOCK,
                      links or {}, strict_links=strict_links)
    return LabInputs(topology, topo, sysctls, scale, draft)


def claim_plan(inputs: LabInputs, name, block, links, backend, strict_links):
    """Root, the delay backend, and the plan on a block no other lab uses."""
    require_root()
    delay_backend = backends.select(backend)
    others = [d.get("block") for d in (state.read_state(n) for n in state.lab_names())
              if d and d.get("block")]
    block = addressing.check_block(block, others) if block else addressing.choose_block(others)
    return delay_backend, make_plan(inputs.topo, name, block, links or {}, strict_links=strict_links)


def new_state_doc(inputs: LabInputs, name, params, delay_backend, plan: LabPlan,
                  owner_pid: Optional[int]) -> dict:
    """The state document a lab is created with (status "creating")."""
    owner = None
    if owner_pid is not None:
        owner = {"pid": owner_pid, "start": procs.start_time(owner_pid)}
    return {
        "lab": name, "status": "creating", "created_at": _now(), "owner": owner,
        "creator": {"pid": os.getpid(), "start": procs.start_time(os.getpid())},
        "topology": inputs.topology, "params": dict(params or {}), "block": plan.block,
        "backend": delay_backend.name, "host_sysctls": inputs.sysctls, "scale": inputs.scale,
        "plan": plan.to_dict(), "procs": [],
    }


class Lab:
    def __init__(self, name: str, doc: dict):
        self.name = name
        self.doc = doc
        self._plan: Optional[LabPlan] = None

    # -- construction ---------------------------------------------------
    @classmethod
    def create(
        cls,
        topology: str,
        name: str,
        params: Optional[Mapping[str, object]] = None,
        links: Optional[Mapping[str, object]] = None,
        block: Optional[str] = None,
        backend: str = "auto",
        host_sysctls: Optional[Mapping[str, object]] = None,
        owner_pid: Optional[int] = None,
        strict_links: bool = True,
        seed: int = 0,
        scale: float = 1.0,
    ) -> "Lab":
        # 1. validate everything before touching the machine
        # (input errors -- exit 2 -- come before environment checks -- exit 3)
        inputs = validate_inputs(topology, name, params, links, block, backend, host_sysctls,
                                 strict_links, scale)
        delay_backend, plan = claim_plan(inputs, name, block, links, backend, strict_links)
        # 2. claim the name and record intent before creating anything
        doc = new_state_doc(inputs, name, params, delay_backend, plan, owner_pid)
        return cls._build(name, plan, doc, delay_backend, inputs.sysctls, inputs.scale, seed)

    @classmethod
    def _build(cls, name: str, plan: LabPlan, doc: dict, delay_backend, sysctls: Mapping[str, str],
               scale: float, seed: int, hosts_file: bool = True, guard_allow: Optional[str] = None) -> "Lab":
        """Claim the name (state written first), build ``plan``, shape it; all or nothing."""
        block = plan.block
        lab_dir = state.create_lab_dir(name, doc)
        lab = cls(name, doc)
        records: List[procs.ProcRecord] = []
        try:
            guard.install(name, block, allow=guard_allow)
            build.create_namespaces(plan)
            # sysctls before any interface exists: with IPv6 still on, every
            # port coming up would send router solicitations and MLD reports,
            # which a big switch floods to every other port (quadratic)
            for node in plan.nodes.values():
                build.set_sysctls(node.netns, build.node_sysctls(node, sysctls))
            for link in plan.links:
                if link.wire:
                    build.set_sysctls(link.wire, build.wire_sysctls(
                        link, delay_backend.name == "userspace"))
            build.create_links(plan)
            build.configure_nodes(plan, host_gso_max_bytes(_slowest_rate_bps(plan, scale), min_mtu(plan)))
            _shape(plan, delay_backend, scale)
            if hosts_file:
                hostsfile.install(plan, lab_dir)  # names resolve with 'ip netns exec' (testbed exec)
            if delay_backend.name == "userspace":
                delay_backend.start(plan, lab_dir, records, seed=seed)
            doc["ready_after_s"] = round(build.wait_ready(plan), 3)
            doc["status"] = "up"
        except BaseException:
            doc["procs"] = [r.to_dict() for r in records]
            try:
                state.write_state(name, doc)
            except OSError:
                pass  # the state is gone (another 'clean'): teardown still finds all by name
            teardown.teardown(name)
            raise
        doc["procs"] = [r.to_dict() for r in records]
        state.write_state(name, doc)
        return lab

    @classmethod
    def create_slice(cls, slice_doc: Mapping, machine: str, backend: str = "auto",
                     host_sysctls: Optional[Mapping[str, object]] = None, scale: float = 1.0,
                     seed: int = 0, guard_allow: Optional[str] = None) -> "Lab":
        """Build one machine's slice of a lab across machines (testbed.cluster.slicing).

        The same build as :meth:`create`, on a plan that holds only this
        machine's nodes and halves of the links that cross to other machines;
        its state says ``slice`` so its teardown removes only its own
        namespaces (stand-ins on one box share ``/run/netns``).
        ``guard_allow``: the underlay subnet when it lies in the lab's block
        (one-box stand-ins), which this machine's guard must let through.
        """
        plan = LabPlan.from_dict(slice_doc)
        name = check_lab_name(plan.lab)
        sysctls = check_host_sysctls(host_sysctls or {})
        scale = check_scale(scale)
        backends.check_name(backend)
        require_root()
        delay_backend = backends.select(backend)
        doc = {
            "lab": name, "status": "creating", "created_at": _now(), "owner": None,
            "creator": {"pid": os.getpid(), "start": procs.start_time(os.getpid())},
            "slice": {"machine": machine, "namespaces": build.all_namespaces(plan)},
            "topology": None, "params": {}, "block": plan.block, "backend": delay_backend.name,
            "host_sysctls": sysctls, "scale": scale, "plan": plan.to_dict(), "procs": [],
        }
        return cls._build(name, plan, doc, delay_backend, sysctls, scale, seed, hosts_file=False,
                          guard_allow=guard_allow)

    @classmethod
    def attach(cls, name: str) -> "Lab":
        check_lab_name(name)
        doc = state.read_state(name)
        if not doc:
            raise InputError("lab", f"no lab named {name!r} is up (see 'testbed status')")
        return cls(name, doc)

    # -- use ------------------------------------------------------------
    @property
    def plan(self) -> LabPlan:
        """The lab's :class:`~testbed.lab.plan.LabPlan` (read back from its state once)."""
        if self._plan is None:
            self._plan = LabPlan.from_dict(self.doc["plan"])
        return self._plan

    @property
    def block(self) -> str:
        return self.doc["block"]

    @property
    def backend(self) -> str:
        return self.doc["backend"]

    @property
    def scale(self) -> float:
        """Link rates are divided by this (1: not scaled); see testbed.scale."""
        return float(self.doc.get("scale", 1.0))

    def node_names(self) -> List[str]:
        return sorted(self.doc["plan"]["nodes"])

    def node(self, name: str) -> Node:
        info = self.doc["plan"]["nodes"].get(name)
        if info is None:
            raise InputError("host", f"lab {self.name!r} has no node {name!r} "
                             f"(nodes: {', '.join(self.node_names())})")
        remote, machine = (), None
        if self.doc.get("cluster"):  # a lab across machines: the node's machine, over ssh
            from testbed.cluster.control import node_remote

            remote, machine = node_remote(self.doc["cluster"], name)
        return Node(name=name, netns=info["netns"], ip=info["ip"], role=info["role"],
                    site=info["site"], intfs=tuple(i["name"] for i in info["intfs"]),
                    remote=remote, machine=machine)

    def hosts(self) -> List[Node]:
        return [self.node(n) for n in self.node_names()
                if self.doc["plan"]["nodes"][n]["role"] == "host"]

    def links(self) -> List[dict]:
        return self.doc["plan"]["links"]

    def proc_records(self) -> List[procs.ProcRecord]:
        return [procs.ProcRecord(**r) for r in self.doc.get("procs", [])]

    def check(self) -> None:
        """Raise DelayLineDied if a delay line of this lab is gone.

        Across machines: MachineError naming a machine that is gone or whose
        slice broke (testbed.cluster.control.check_machines).
        """
        if self.doc.get("cluster"):
            from testbed.cluster.control import check_machines

            check_machines(self.name, self.doc["cluster"], self.doc.get("procs", []))
            return
        check_alive(self.proc_records())

    def delay_line_stats(self) -> List[dict]:
        """Every delay line's stats, current: live lines write them on request first."""
        out = []
        for rec in self.proc_records():  # across machines: the lines live there, not here
            if rec.kind == "delayline":
                doc = read_stats(rec, fresh=True)
                doc["netns"] = rec.netns
                doc["alive"] = procs.is_alive(rec.pid, rec.start)
                out.append(doc)
        return out

    def status(self) -> dict:
        present = set(teardown.lab_namespaces(self.name))  # one listing, not one per node
        cluster = self.doc.get("cluster")
        local = not cluster or cluster.get("onebox")  # real machines keep their nodes there
        missing = [n["netns"] for n in self.doc["plan"]["nodes"].values()
                   if local and n["netns"] not in present]
        lines = self.delay_line_stats()
        return {
            "lab": self.name,
            "status": self.doc.get("status"),
            "topology": self.doc.get("topology"),
            "created_at": self.doc.get("created_at"),
            "block": self.block,
            "backend": self.backend,
            "owner": self.doc.get("owner"),
            "owner_alive": teardown.owner_alive(self.doc),
            "nodes": len(self.doc["plan"]["nodes"]),
            "missing_namespaces": missing,
            "delay_lines": [{"netns": d["netns"], "alive": d["alive"],
                             "queues": len(d.get("queues", []))} for d in lines],
            "guard_dropped_packets": guard.dropped(self.name),
            "machines": sorted(set(cluster["placement"].values())) if cluster else None,
            # a lab still being built (or whose build was cut short) is never healthy
            "healthy": self.doc.get("status") == "up" and not missing and all(d["alive"] for d in lines),
        }

    def destroy(self) -> dict:
        return teardown.teardown(self.name)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()


def _netem_leaf(delay_backend, profile, ns, index, parent, handle, limit_pkts) -> None:
    """The netem qdisc carrying ``profile``'s impairments under htb (or at the root)."""
    delay_backend.apply(ns, index, parent, handle, profile, limit_pkts)


def _slowest_rate_bps(plan: LabPlan, scale: float) -> Optional[int]:
    """The lowest rate the kernel will shape to (after ``scale``); None if nothing is shaped."""
    rates = [scaled_profile(spec, scale).rate_bps for link in plan.links
             for spec in (link.spec.forward, link.spec.reverse) if spec.rate_bps]
    return min(rates) if rates else None


def min_mtu(plan: LabPlan) -> int:
    """The smallest MTU of the plan's links: the largest packet every path carries."""
    return min((link.mtu for link in plan.links), default=1500)


def _shape(plan: LabPlan, delay_backend, scale: float = 1.0) -> None:
    """Rate/queue (and netem leaves) on each wire port, for the direction leaving by it.

    Rates are divided by ``scale`` here and only here (:mod:`testbed.scale`).
    """
    for link in plan.links:
        if not link.wire:
            continue
        rtt_ms = link.spec.forward.delay_ms + link.spec.reverse.delay_ms
        if link.tunnel:  # half of a link across machines: queues sized for the whole link
            rtt_ms = float(link.tunnel.get("rtt_ms", rtt_ms))
        with build.open_ns(link.wire) as ns:
            for port, configured in ((WIRE_PORT_B, link.spec.forward), (WIRE_PORT_A, link.spec.reverse)):
                profile = scaled_profile(configured, scale)
                leaf = None
                if delay_backend.name == "netem" and profile.has_impairment:
                    leaf = functools.partial(_netem_leaf, delay_backend, profile)
                if not profile.rate_bps and leaf is None:
                    continue
                apply_egress(ns, port, profile, rtt_ms, link.mtu, netem_leaf=leaf)
