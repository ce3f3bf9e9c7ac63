"""One rank of a gloo (``torch.distributed``) collective sweep.

Started by :func:`testbed.collectives.gloo.run_gloo_sweep`, one process per
rank, inside the rank's host namespace::

    RANK=0 WORLD_SIZE=4 MASTER_ADDR=10.0.0.2 MASTER_PORT=29500 GLOO_SOCKET_IFNAME=cw-h1-eth0 \\
        python -m testbed.collectives.gloo_worker --op allreduce --sizes 4194304,16777216 \\
        --iters 5 --warmup 1 --timeout-s 300

For each size it builds the same inputs as the testbed engine
(:func:`testbed.collectives.ops.make_inputs`, seed 0), runs ``warmup`` untimed
and ``iters`` timed calls (each one: ``barrier``, ``perf_counter``, the call,
``perf_counter``), checks the last output against
:func:`testbed.collectives.ops.expected` with
:func:`~testbed.collectives.ops.count_wrong`, and combines the ranks' results
with gloo itself: per iteration the **slowest** rank's time (the collective is
done when the last rank is done, as the testbed engine measures it) and the sum
of every rank's ``#wrong``. Rank 0 prints JSON lines on stdout::

    {"kind": "hello", "torch": "2.13.0+cpu", "world_size": 4}
    {"kind": "size", "size_bytes": 4194304, "count": 1048576, "call": "all_reduce",
     "times_s": [...], "wrong": 0}
    {"kind": "size", "size_bytes": ..., "count": ..., "unsupported": "reason"}

An operation gloo does not implement (each candidate call raised "not
supported") gives an ``unsupported`` record instead of a failure. Any other
error goes to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from testbed.collectives import ops

__all__ = ["CALLS", "ROOT", "main", "parse_args", "is_unsupported"]

ROOT = 0  # broadcast and reduce root, as in testbed.collectives.bench
UNSUPPORTED_MARKS = ("not supported", "does not support", "unsupported", "not implemented")


def is_unsupported(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend lacks the call (rather than that it failed)."""
    if isinstance(exc, NotImplementedError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, ValueError)) and any(m in text for m in UNSUPPORTED_MARKS)


# ------------------------------------------------------------------ the calls
# Each call: (dist, rank, ranks, count, input tensor) -> (run, output)
# where run() performs the collective once (outputs rewritten, inputs intact)
# and output() returns this rank's result as numpy (None where it has none).

def _allreduce(dist, torch, rank, n, c, inp):
    buf = inp.clone()

    def run():
        buf.copy_(inp)  # in place: start from the input every time
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return run, lambda: buf.numpy()


def _reduce_scatter_tensor(dist, torch, rank, n, c, inp):
    out = torch.full((c,), float("nan"), dtype=torch.float32)
    return (lambda: dist.reduce_scatter_tensor(out, inp, op=dist.ReduceOp.SUM)), out.numpy


def _reduce_scatter_list(dist, torch, rank, n, c, inp):
    out = torch.full((c,), float("nan"), dtype=torch.float32)
    chunks = list(inp.split(c)) if c else [inp[:0] for _ in range(n)]
    return (lambda: dist.reduce_scatter(out, chunks, op=dist.ReduceOp.SUM)), out.numpy


def _all_gather_into_tensor(dist, torch, rank, n, c, inp):
    out = torch.full((n * c,), float("nan"), dtype=torch.float32)
    return (lambda: dist.all_gather_into_tensor(out, inp)), out.numpy


def _all_gather_list(dist, torch, rank, n, c, inp):
    out = torch.full((n * c,), float("nan"), dtype=torch.float32)
    views = list(out.split(c)) if c else [out[:0] for _ in range(n)]
    return (lambda: dist.all_gather(views, inp)), out.numpy


def _broadcast(dist, torch, rank, n, c, inp):
    buf = inp.clone() if rank == ROOT else torch.full((c,), float("nan"), dtype=torch.float32)
    return (lambda: dist.broadcast(buf, src=ROOT)), buf.numpy


def _reduce(dist, torch, rank, n, c, inp):
    buf = inp.clone()

    def run():
        buf.copy_(inp)
        dist.reduce(buf, dst=ROOT, op=dist.ReduceOp.SUM)
    return run, lambda: buf.numpy() if rank == ROOT else None


def _all_to_all_single(dist, torch, rank, n, c, inp):
    out = torch.full((n * c,), float("nan"), dtype=torch.float32)
    return (lambda: dist.all_to_all_single(out, inp)), out.numpy


def _send_recv(dist, torch, rank, n, c, inp):
    """nccl-tests' sendrecv: rank r sends to r+1 and receives from r-1."""
    out = torch.full((c,), float("nan"), dtype=torch.float32)

    def run():
        if n == 1:
            out.copy_(inp)
            return
        reqs = [dist.isend(inp, (rank + 1) % n), dist.irecv(out, (rank - 1) % n)]
        for req in reqs:
            req.wait()
    return run, out.numpy


#: op -> candidate calls, tried in order; the first gloo supports is used.
CALLS: Dict[str, Tuple[Tuple[str, Callable], ...]] = {
    "allreduce": (("all_reduce", _allreduce),),
    "reduce_scatter": (("reduce_scatter_tensor", _reduce_scatter_tensor),
                       ("reduce_scatter", _reduce_scatter_list)),
    "allgather": (("all_gather_into_tensor", _all_gather_into_tensor),
                  ("all_gather", _all_gather_list)),
    "broadcast": (("broadcast", _broadcast),),
    "reduce": (("reduce", _reduce),),
    "alltoall": (("all_to_all_single", _all_to_all_single),),
    "sendrecv": (("isend/irecv", _send_recv),),
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.collectives.gloo_worker",
                                description="one rank of a gloo collective sweep")
    p.add_argument("--op", required=True, choices=sorted(CALLS))
    p.add_argument("--sizes", required=True,
                   help="comma-separated requested sizes in bytes (nccl-tests' -b/-e sizes)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=300.0,
                   help="gloo's own timeout for init and every collective")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        p.error(f"--sizes must be integers separated by commas, got {args.sizes!r}")
    if not args.sizes or any(s < 0 for s in args.sizes):
        p.error("--sizes needs at least one size >= 0")
    if args.iters < 1 or args.warmup < 0 or args.timeout_s <= 0:
        p.error("--iters must be >= 1, --warmup >= 0 and --timeout-s > 0")
    return args


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        raise SystemExit(f"gloo_worker: environment variable {name} must be an integer") from None


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _resolve(dist, torch, op, rank, n, c, inp) -> Tuple[Optional[str], object, object, str]:
    """The first call gloo supports, already run once (untimed): (name, run, output, why)."""
    reasons: List[str] = []
    for name, make in CALLS[op]:
        run, output = make(dist, torch, rank, n, c, inp)
        try:
            run()
        except Exception as exc:  # noqa: BLE001 -- sorted below: unsupported or fatal
            if not is_unsupported(exc):
                raise
            reasons.append(f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
            continue
        return name, run, output, ""
    return None, None, None, "; ".join(reasons)


def _one_size(dist, torch, args, rank: int, n: int, size: int, chosen: Dict[str, str]) -> dict:
    op = args.op
    count = ops.count_for_size(op, size, n)
    inputs = ops.make_inputs(op, n, count, seed=args.seed)
    want = ops.expected(op, inputs, ROOT)
    inp = torch.from_numpy(inputs[rank])
    del inputs
    record = {"kind": "size", "size_bytes": size, "count": count}
    if "unsupported" in chosen:
        return {**record, "unsupported": chosen["unsupported"]}
    if "call" in chosen:
        name = chosen["call"]
        run, output = dict(CALLS[op])[name](dist, torch, rank, n, count, inp)
    else:
        name, run, output, why = _resolve(dist, torch, op, rank, n, count, inp)
        if name is None:
            chosen["unsupported"] = why
            return {**record, "unsupported": why}
        chosen["call"] = name
    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.iters):
        dist.barrier()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    outs: List[Optional[np.ndarray]] = [None] * n
    exps: List[Optional[np.ndarray]] = [None] * n
    outs[rank], exps[rank] = output(), want[rank]
    wrong = ops.count_wrong(op, outs, exps)
    slowest = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    total_wrong = torch.tensor([wrong], dtype=torch.int64)
    dist.all_reduce(total_wrong, op=dist.ReduceOp.SUM)
    return {**record, "call": name, "times_s": [float(t) for t in slowest.tolist()],
            "wrong": int(total_wrong.item())}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rank, n = _env_int("RANK"), _env_int("WORLD_SIZE")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise SystemExit(f"gloo_worker: environment variable {name} is not set")
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=n,
                            timeout=datetime.timedelta(seconds=args.timeout_s))
    try:
        if rank == 0:
            _emit({"kind": "hello", "torch": torch.__version__, "world_size": n})
        chosen: Dict[str, str] = {}
        for size in args.sizes:
            record = _one_size(dist, torch, args, rank, n, size, chosen)
            if rank == 0:
                _emit(record)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
