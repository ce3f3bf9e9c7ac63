"""The coordinator's side of a lab across machines: the agent on each machine, over ssh.

Each machine runs the same ``testbed`` (``python -m testbed.cluster.agent``,
the machine entry's ``python``) with its own state directory, so slices of
one lab never share state even when stand-ins share a filesystem. ``build``
reads its slice on stdin and answers with its readiness as JSON; ``check``
says whether its slice still works; ``down`` removes it.

``cluster`` below is the ``cluster`` section of the coordinator's lab state:
``machines`` (list of :class:`~testbed.cluster.machines.Machine` dicts),
``state_dirs`` (machine -> state directory there), ``control_dir`` (ssh
control sockets), ``known_hosts`` (one-box: the stand-ins' host keys) and
``onebox`` (one-box only: what the stand-ins are made of).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from testbed.cluster.machines import Machine
from testbed.cluster.ssh import Ssh
from testbed.errors import MachineError, TestbedError

__all__ = ["machines_of", "ssh_for", "agent_argv", "call_agent", "down_machines", "forget_machines",
           "BUILD_TIMEOUT_S", "node_remote", "check_machines"]

BUILD_TIMEOUT_S = 120.0
DOWN_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 20.0


def machines_of(cluster: Mapping) -> List[Machine]:
    return [Machine.from_dict(m) for m in cluster["machines"]]


def ssh_for(machine: Machine, cluster: Mapping) -> Ssh:
    return Ssh(machine, cluster["control_dir"], cluster.get("known_hosts"))


def agent_argv(machine: Machine, cluster: Mapping, verb: str, lab: str) -> List[str]:
    state_dir = cluster["state_dirs"][machine.name]
    return ["env", f"TESTBED_STATE_DIR={state_dir}", machine.python, "-m", "testbed.cluster.agent",
            verb, "--lab", lab, "--machine", machine.name]


def call_agent(machine: Machine, cluster: Mapping, verb: str, lab: str, payload: Optional[dict] = None,
               timeout_s: float = CHECK_TIMEOUT_S) -> dict:
    """Run the agent's ``verb`` on ``machine``; its JSON answer, or MachineError naming the machine."""
    proc = ssh_for(machine, cluster).run(
        agent_argv(machine, cluster, verb, lab), timeout_s=timeout_s, check=False,
        input_text=json.dumps(payload) if payload is not None else None)
    lines = (proc.stdout or "").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if proc.returncode != 0 or not isinstance(answer, dict) or "error" in answer:
        err = (answer.get("error") if isinstance(answer, dict) else None) or \
            ((proc.stderr or "").strip().splitlines() or ["no answer"])[-1]
        raise MachineError(machine.name, f"{verb} failed: {err}")
    return answer


def down_machines(lab: str, cluster: Mapping) -> List[dict]:
    """Every machine removes its slice of ``lab``; one that cannot is reported, not fatal."""
    out = []
    for machine in machines_of(cluster):
        try:
            call_agent(machine, cluster, "down", lab, timeout_s=DOWN_TIMEOUT_S)
            out.append({"machine": machine.name, "removed": True})
        except TestbedError as exc:
            out.append({"machine": machine.name, "removed": False, "error": str(exc)})
        ssh_for(machine, cluster).close()
    return out


def forget_machines(lab: str, cluster: Mapping) -> None:
    """What this machine keeps of the other machines: one-box stand-ins' state and keys.

    Stand-ins share this machine's filesystem, so their slices' state
    directories are removed here too (a stand-in that died cannot).
    """
    control_dir = cluster.get("control_dir")
    if control_dir and Path(control_dir).name.startswith("tb-ssh-"):
        shutil.rmtree(control_dir, ignore_errors=True)  # its sockets: the masters were told to exit
    onebox = cluster.get("onebox")
    if not onebox:
        return
    for machine in machines_of(cluster):
        slice_dir = Path(cluster["state_dirs"][machine.name])
        shutil.rmtree(slice_dir / lab, ignore_errors=True)
        _rmdir_empty(slice_dir)
        _rmdir_empty(slice_dir.parent)
    workdir = onebox.get("workdir")
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def _rmdir_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (another lab's slice) or already gone


def node_remote(cluster: Mapping, node: str) -> Tuple[tuple, str]:
    """(ssh argv up to the remote command, machine name) for a node of the lab."""
    machine_name = cluster["placement"][node]
    machine = next(m for m in machines_of(cluster) if m.name == machine_name)
    return tuple(ssh_for(machine, cluster).prefix()), machine_name


CHECK_EVERY_S = 2.0  # one shared-connection command per machine, not on every poll
_last_check: Dict[str, float] = {}


def _slice_problem(ssh: Ssh, ready: Mapping) -> str:
    """Why a machine's slice no longer works ("" while it does): a namespace or a delay line gone."""
    listing = ssh.run(["ls", "-1", "/run/netns"], timeout_s=CHECK_TIMEOUT_S).stdout.split()
    missing = [n for n in ready.get("namespaces", []) if n not in listing]
    if missing:
        return f"its slice's namespaces are gone: {', '.join(missing[:4])}"
    lines = ready.get("delay_lines", [])
    if lines:
        proc = ssh.run(["cat", *[f"/proc/{p['pid']}/stat" for p in lines]], timeout_s=CHECK_TIMEOUT_S,
                       check=False)
        alive = set()
        for text in proc.stdout.splitlines():
            pid, _, rest = text.partition(" (")
            fields = rest.rpartition(") ")[2].split()
            if pid.isdigit() and len(fields) > 19:
                alive.add((int(pid), int(fields[19])))  # field 22 (start time) from field 3 on
        dead = [p for p in lines if (int(p["pid"]), int(p["start"])) not in alive]
        if dead:
            return "delay line died: " + ", ".join(f"{p['netns']} (pid {p['pid']})" for p in dead)
    return ""


def check_machines(lab: str, cluster: Mapping, procs_docs: Sequence[Mapping] = ()) -> None:
    """MachineError naming the first machine that is gone or whose slice broke.

    Every call, locally: a one-box stand-in's namespace and its sshd. Every
    ``CHECK_EVERY_S``, on each machine over its shared connection: its slice's
    namespaces and delay lines (a machine that died takes that connection
    down with it: ssh says so with exit 255).
    """
    from testbed.cluster.standin import standin_alive
    from testbed.lab.procs import ProcRecord

    sshd = {r["netns"]: ProcRecord(**r) for r in procs_docs if r.get("kind") == "sshd"}
    machines = machines_of(cluster)
    for machine in machines:
        if machine.standin and machine.standin in sshd:
            why = standin_alive(machine, sshd[machine.standin])
            if why:
                raise MachineError(machine.name, why)
    now = time.monotonic()
    if now - _last_check.get(lab, 0.0) < CHECK_EVERY_S:
        return
    ready = cluster.get("ready") or {}
    for machine in machines:
        if machine.name in ready:
            why = _slice_problem(ssh_for(machine, cluster), ready[machine.name])
            if why:
                raise MachineError(machine.name, why)
    _last_check[lab] = time.monotonic()
