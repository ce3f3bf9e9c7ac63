"""The gloo backend: the same collectives timed by ``torch.distributed`` on a lab.

A cross-check of the testbed's own engine against a production library. One
worker process per rank (:mod:`testbed.collectives.gloo_worker`) is started
inside its host's namespace (``ip netns exec``, through
:meth:`testbed.lab.node.Node.popen`), ``gpus_per_host`` of them per host, with

* ``GLOO_SOCKET_IFNAME`` = the host's lab interface (``Node.intfs[0]``), so
  gloo binds its sockets to the lab address, never to anything else;
* ``MASTER_ADDR`` = the first host's lab address and ``MASTER_PORT`` a port
  found free in that host's namespace (the rendezvous store of rank 0);
* ``RANK``/``WORLD_SIZE``; ``OMP_NUM_THREADS=1`` unless set (many ranks share
  few cores).

Rows have the shape of :func:`testbed.collectives.bench.run_sweep`'s
(:func:`testbed.collectives.table.row_dict`) with ``algorithm`` and
``engine`` both ``"gloo"``, so one table shows both engines side by side.
``time_us`` is the mean over iterations of the slowest rank's time (each
iteration starts after a barrier). Correctness uses the same inputs and
expected values as the engine (:mod:`testbed.collectives.ops`).

What differs from the testbed engine, by construction: ranks of one host talk
over TCP on the host's own address (the kernel's loopback), not the engine's
NVLink-like local path; gloo picks its own algorithms (allreduce is a ring
in rank order, which is topology-aware when hosts are given site by site, as
``lab.hosts()`` is). Only allreduce gets a model time: the simulated time of
gloo's ring -- rank order, two segments per block, rendezvous with two
receives posted per peer (:func:`_allreduce_model_us`) -- which our engine can
also run (:data:`testbed.collectives.bench.GLOO_RING`); gloo's algorithms for
the other operations are not modelled. An operation gloo does
not implement gives a row with ``unsupported`` set and no time.

torch is optional (``pip install 'interconnect-testbed[gloo]'``):
:func:`require_torch` raises :class:`~testbed.errors.EnvironmentProblem` with
that hint when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from testbed.collectives import ops
from testbed.collectives.algorithms import build_schedule
from testbed.collectives.bench import simulated_model_us, site_params
from testbed.collectives.engine import place_ranks
from testbed.collectives.protocol import DEFAULT_WINDOW, RENDEZVOUS, apply_protocol, gloo_ring_params
from testbed.collectives.table import row_dict
from testbed.errors import EnvironmentProblem, InputError, RunError, ToolError
from testbed.lab.nssocket import ns_socket
from testbed.scale import scaled_bytes

__all__ = [
    "ENGINE",
    "WORKER_MODULE",
    "require_torch",
    "worker_argv",
    "worker_env",
    "default_timeout_s",
    "parse_worker_output",
    "gloo_row",
    "free_port",
    "wait_workers",
    "reap_workers",
    "run_gloo_sweep",
]

ENGINE = "gloo"
WORKER_MODULE = "testbed.collectives.gloo_worker"
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the directory holding testbed/
POLL_S = 0.05
REAP_TIMEOUT_S = 10.0
STDERR_TAIL_LINES = 5


def require_torch() -> None:
    """Fail early, before any process starts, when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise EnvironmentProblem(
            "the gloo backend needs torch (torch.distributed), which is not installed",
            "pip install 'interconnect-testbed[gloo]' (CPU torch 2.13.0)")


def worker_argv(op: str, sizes: Sequence[int], iters: int, warmup: int, timeout_s: float,
                python: str = sys.executable) -> List[str]:
    """The argv of one rank's worker (the same for every rank; the rank is in its env)."""
    ops.op_spec(op)
    if not sizes:
        raise InputError("sizes", "need at least one size")
    return [python, "-m", WORKER_MODULE, "--op", op, "--sizes", ",".join(str(int(s)) for s in sizes),
            "--iters", str(int(iters)), "--warmup", str(int(warmup)),
            "--timeout-s", f"{float(timeout_s):g}"]


def worker_env(rank: int, world_size: int, master_addr: str, master_port: int, ifname: str,
               base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of rank ``rank``'s worker: ``base`` (os.environ) plus the gloo settings."""
    if not 0 <= rank < world_size:
        raise InputError("rank", f"must be in 0..{world_size - 1}, got {rank}")
    if not ifname:
        raise InputError("ifname", "the host has no lab interface for GLOO_SOCKET_IFNAME")
    env = dict(os.environ if base is None else base)
    env.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0",
               MASTER_ADDR=master_addr, MASTER_PORT=str(int(master_port)),
               GLOO_SOCKET_IFNAME=ifname)
    env.setdefault("OMP_NUM_THREADS", "1")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + [p for p in paths if p != PACKAGE_PARENT])
    return env


def default_timeout_s(sizes: Sequence[int], iters: int, warmup: int) -> float:
    """A generous deadline for a whole sweep: 120 s to start, then every call at >= 10 Mbit/s."""
    calls = iters + warmup + 1  # + the untimed first call that picks gloo's function
    return 120.0 + sum(calls * (10.0 + size * 8 / 10e6) for size in sizes)


def _fail(message: str) -> ToolError:
    return ToolError(f"gloo worker output: {message}")


def parse_worker_output(text: str, op: str, sizes: Sequence[int], world_size: int) -> dict:
    """Rank 0's stdout as ``{"torch": version, "records": [one per size]}``; ToolError if off."""
    hello: Optional[dict] = None
    records: List[dict] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(f"line {number} is not JSON: {line[:80]!r}") from exc
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind == "hello":
            hello = doc
        elif kind == "size":
            records.append(doc)
        else:
            raise _fail(f"line {number} has an unknown kind: {line[:80]!r}")
    if hello is None:
        raise _fail("no hello line (the worker did not start)")
    if hello.get("world_size") != world_size:
        raise _fail(f"world size {hello.get('world_size')!r}, expected {world_size}")
    got = [r.get("size_bytes") for r in records]
    if got != list(sizes):
        raise _fail(f"sizes {got}, expected {list(sizes)}")
    for r in records:
        if r.get("count") != ops.count_for_size(op, r["size_bytes"], world_size):
            raise _fail(f"size {r['size_bytes']}: count {r.get('count')!r} is not "
                        f"{ops.count_for_size(op, r['size_bytes'], world_size)}")
        if "unsupported" in r:
            continue
        times = r.get("times_s")
        if (not isinstance(times, list) or not times
                or not all(isinstance(t, (int, float)) and t >= 0 for t in times)):
            raise _fail(f"size {r['size_bytes']}: bad times_s {times!r}")
        if not isinstance(r.get("wrong"), int) or r["wrong"] < 0:
            raise _fail(f"size {r['size_bytes']}: bad wrong {r.get('wrong')!r}")
    return {"torch": hello.get("torch"), "records": records}


def gloo_row(op: str, ranks: int, record: dict, gpus_per_host: int,
             torch_version: Optional[str] = None,
             model_time_us: Optional[float] = None) -> dict:
    """One table row (:func:`row_dict` shape) from a worker's size record."""
    root = 0 if ops.op_spec(op).rooted else None
    unsupported = record.get("unsupported")
    if unsupported is not None:
        row = row_dict(op, ENGINE, ranks, record["count"], None, None, root, None)
        times_us: List[float] = []
    else:
        times_us = [t * 1e6 for t in record["times_s"]]
        row = row_dict(op, ENGINE, ranks, record["count"], statistics.fmean(times_us),
                       record["wrong"], root, model_time_us)
    row.update(times_us=[round(t, 1) for t in times_us], gpus_per_host=gpus_per_host,
               order=None, nsocks=None, buffsize_bytes=None, engine=ENGINE,
               engine_version=torch_version, gloo_call=record.get("call"),
               unsupported=unsupported)
    return row


def free_port(netns: str, address: str) -> int:
    """A TCP port free on ``address`` in namespace ``netns`` (bound, read, released)."""
    sock = ns_socket(netns)
    try:
        sock.bind((address, 0))
        return sock.getsockname()[1]
    except OSError as exc:
        raise RunError(f"no free port on {address} in {netns}: {exc}") from exc
    finally:
        sock.close()


def _allreduce_model_us(lab, op: str, ranks: int, sent_count: int, rank_host: Sequence[str],
                        nodes: Mapping[str, object]) -> Optional[float]:
    """The model of gloo's allreduce (us, real scale); None for other operations.

    What gloo actually runs (``gloo/allreduce.cc``, :mod:`testbed.collectives.protocol`):
    a ring in rank order with each rank's block cut into two segments
    (:func:`~testbed.collectives.protocol.gloo_ring_params`), under the
    rendezvous protocol with two receives posted per peer -- so every ring
    step waits for the receiver's "ready" notification, about a round trip
    where an eager (NCCL-style) ring pays one way. That schedule, built for
    ``sent_count`` elements (what crossed the links on a scaled lab), is timed
    by the simulator with the lab's per-pair local and WAN alpha and beta
    (:func:`testbed.collectives.bench.simulated_model_us`); the eager ring's
    closed form would be about half of it when latency dominates.
    """
    if op != "allreduce" or ranks < 2:
        return 0.0 if op == "allreduce" else None
    groups, local, wan = site_params(lab, nodes, rank_host)
    schedule = apply_protocol(build_schedule(op, "ring", ranks, sent_count, **gloo_ring_params(ranks)),
                              RENDEZVOUS, DEFAULT_WINDOW)
    return simulated_model_us(schedule, groups, local, wan, float(getattr(lab, "scale", 1.0)))


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-STDERR_TAIL_LINES:])


def wait_workers(procs: Sequence[subprocess.Popen], labels: Sequence[str],
                 errs: Sequence[Path], timeout_s: float) -> None:
    """Poll every worker until all exited 0; RunError on the first failure or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        for code, label, err in zip(codes, labels, errs):
            if code not in (None, 0):
                how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
                raise RunError(f"gloo {label} {how}: {_tail(err) or 'no stderr'}")
        if all(c == 0 for c in codes):
            return
        if time.monotonic() > deadline:
            late = [label for code, label in zip(codes, labels) if code is None]
            raise RunError(f"gloo workers did not finish within {timeout_s:g} s: "
                           f"{', '.join(late)} still running")
        time.sleep(POLL_S)


def reap_workers(procs: Sequence[subprocess.Popen]) -> List[int]:
    """Kill (by pid) every worker still running and wait for each; pids that would not die."""
    stuck = []
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        try:
            proc.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stuck.append(proc.pid)
    return stuck


def run_gloo_sweep(lab, op: str, sizes: Sequence[int], gpus_per_host: int = 1, iters: int = 5,
                   warmup: int = 1, hosts: Optional[Sequence[str]] = None,
                   timeout_s: Optional[float] = None,
                   progress: Callable[[str], None] = lambda _m: None) -> List[dict]:
    """Time ``op`` with gloo at every size on ``lab``; rows like :func:`bench.run_sweep`'s."""
    ops.op_spec(op)
    if not sizes:
        raise InputError("sizes", "need at least one size")
    if iters < 1 or warmup < 0:
        raise InputError("iters", f"need iters >= 1 and warmup >= 0, got {iters} and {warmup}")
    require_torch()
    host_names = list(hosts) if hosts else [h.name for h in lab.hosts()]
    nodes = {h: lab.node(h) for h in host_names}
    for name, node in nodes.items():
        if not node.intfs or not node.ip:
            raise InputError("hosts", f"{name} has no lab interface and address for gloo")
    rank_host = place_ranks(host_names, gpus_per_host)
    ranks = len(rank_host)
    master = nodes[rank_host[0]]
    port = free_port(master.netns, master.ip)
    scale = float(getattr(lab, "scale", 1.0))  # rates divided by it: send bytes / scale too
    sent_sizes = [scaled_bytes(size, scale, ops.ITEMSIZE) for size in sizes]
    deadline_s = timeout_s if timeout_s is not None else default_timeout_s(sent_sizes, iters, warmup)
    argv = worker_argv(op, sent_sizes, iters, warmup, timeout_s=deadline_s)
    progress(f"{op} gloo {ranks} ranks, {len(sizes)} sizes")
    procs: List[subprocess.Popen] = []
    labels = [f"rank {r} on {h}" for r, h in enumerate(rank_host)]
    with tempfile.TemporaryDirectory(prefix="testbed-gloo-") as tmp:
        outs = [Path(tmp, f"rank{r}.out") for r in range(ranks)]
        errs = [Path(tmp, f"rank{r}.err") for r in range(ranks)]
        try:
            for rank, host in enumerate(rank_host):
                node = nodes[host]
                env = worker_env(rank, ranks, master.ip, port, node.intfs[0])
                with open(outs[rank], "w") as out, open(errs[rank], "w") as err:
                    procs.append(node.popen(argv, env=env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL))
            wait_workers(procs, labels, errs, deadline_s)
        finally:
            stuck = reap_workers(procs)
        if stuck:
            raise RunError(f"gloo worker pid(s) {stuck} did not exit after SIGKILL")
        parsed = parse_worker_output(outs[0].read_text(), op, sent_sizes, ranks)
    rows = []
    for size, record in zip(sizes, parsed["records"]):
        sent_count = record["count"]
        sent_bytes = ops.size_bytes(op, sent_count, ranks)
        record = dict(record, count=ops.count_for_size(op, size, ranks))  # real scale
        model_us = (None if "unsupported" in record else
                    _allreduce_model_us(lab, op, ranks, sent_count, rank_host, nodes))
        row = gloo_row(op, ranks, record, gpus_per_host, parsed["torch"], model_us)
        row.update(scale=scale, sent_bytes=sent_bytes)
        rows.append(row)
    return rows
