"""A data loader for one epoch: ``python -m testbed.storage.reader`` prints one JSON document.

    python -m testbed.storage.reader --origin http://10.0.0.1:8470 \\
        [--cache http://10.0.1.2:8471] --epoch 1 --seed 0 \\
        --reader-index 0 --reader-count 2 --parallel 4 --max-retries 3 \\
        --request-timeout-s 10 [--label gcp-h2]

1. Fetch the index from the origin (never from the cache), checked against
   its ``X-Content-Sha256`` and retried like any read.
2. Take this reader's part of the epoch: the index's names shuffled with
   ``(seed, epoch)``, every ``reader-count``-th one starting at
   ``reader-index`` (as a distributed sampler splits a dataset), so all
   readers together read every shard once per epoch, in a different order
   each epoch.
3. Read them ``--parallel`` at a time, each through
   :func:`testbed.storage.reading.read_verified` (from the cache if given,
   else the origin), asking for the version and digest the index named.

Output keys: ``reader, epoch, index_ms, elapsed_s, objects`` and the
counters of :class:`testbed.storage.reading.ReadStats` (``reads,
failed_reads, attempts, retries, bytes_fetched, bytes_verified,
cache_hits, cache_misses, corrupt_detected, corrupt_rejected_upstream,
stale_detected, errors, latencies_ms, failures``). Exit status 0 when the
document was printed (failed reads are in it), 1 when the index could not
be read, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence

from testbed.storage.httpfetch import HttpFetcher, split_base_url
from testbed.storage.objects import ObjectVersion
from testbed.storage.protocol import FetchError, ProtocolError, parse_index
from testbed.storage.reading import ReadStats, read_verified

__all__ = ["partition", "fetch_index", "read_epoch", "build_parser", "main"]


def partition(objects: Sequence[ObjectVersion], seed: int, epoch: int, reader_index: int,
              reader_count: int) -> List[ObjectVersion]:
    """This reader's share of an epoch: a seeded shuffle, every ``reader_count``-th entry."""
    if not 0 <= reader_index < reader_count:
        raise ValueError(f"reader_index must be within 0..{reader_count - 1}, got {reader_index}")
    order = sorted(objects, key=lambda o: o.name)
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return order[reader_index::reader_count]


def fetch_index(fetcher, max_retries: int) -> tuple:
    """``(objects, attempts, elapsed_ms)`` of the origin's index; ProtocolError after the retries."""
    start = time.monotonic()
    problem = "no attempt"
    for attempt in range(1, max_retries + 2):
        try:
            objects = parse_index(fetcher.fetch("/index"))
            return objects, attempt, (time.monotonic() - start) * 1000.0
        except (FetchError, ProtocolError) as exc:
            problem = str(exc)
    raise ProtocolError(f"index not read intact in {max_retries + 1} attempt(s): {problem}")


def read_epoch(fetch, objects: Sequence[ObjectVersion], parallel: int, max_retries: int) -> tuple:
    """Read every object of ``objects`` ``parallel`` at a time; ``(ReadStats, elapsed_s)``."""
    stats = ReadStats()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="reader") as pool:
        for outcome in pool.map(lambda o: read_verified(fetch, o, max_retries), objects):
            stats.add(outcome)
    return stats, time.monotonic() - start


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.storage.reader",
                                     description="Read one epoch of a dataset, verifying every byte.")
    parser.add_argument("--origin", required=True, help="origin base URL, http://HOST:PORT")
    parser.add_argument("--cache", help="regional cache base URL; objects are read through it")
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader-index", type=int, default=0)
    parser.add_argument("--reader-count", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--request-timeout-s", type=float, default=10.0)
    parser.add_argument("--label", default="", help="name of this reader in the output")
    return parser


def _check(args) -> Optional[str]:
    try:
        split_base_url(args.origin)
        if args.cache:
            split_base_url(args.cache)
    except ValueError as exc:
        return str(exc)
    if args.parallel < 1 or args.max_retries < 0 or args.request_timeout_s <= 0:
        return "--parallel must be >= 1, --max-retries >= 0, --request-timeout-s > 0"
    if args.reader_count < 1 or not 0 <= args.reader_index < args.reader_count:
        return "--reader-index must be within 0..reader-count-1"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    origin = HttpFetcher(args.origin, args.request_timeout_s)
    try:
        objects, index_attempts, index_ms = fetch_index(origin, args.max_retries)
    except ProtocolError as exc:
        print(f"reader {args.label}: {exc}", file=sys.stderr)
        return 1
    mine = partition(objects, args.seed, args.epoch, args.reader_index, args.reader_count)
    source = HttpFetcher(args.cache, args.request_timeout_s) if args.cache else origin
    stats, elapsed_s = read_epoch(source.fetch, mine, args.parallel, args.max_retries)
    doc = {"reader": args.label, "epoch": args.epoch, "via_cache": bool(args.cache),
           "index_ms": round(index_ms, 3), "index_attempts": index_attempts,
           "elapsed_s": round(elapsed_s, 6), "objects": len(mine), **stats.to_dict()}
    print(json.dumps(doc, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
