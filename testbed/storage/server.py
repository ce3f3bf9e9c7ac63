"""The origin object store: ``python -m testbed.storage.server``.

Serves a versioned, seeded dataset (see :mod:`testbed.storage.objects`)
over the protocol in :mod:`testbed.storage.protocol`::

    python -m testbed.storage.server --bind 10.0.0.1 --port 8470 \\
        --seed 0 --shards 32 --shard-size-bytes 262144 [--corrupt-pct 0]

Emulated silent corruption: with ``--corrupt-pct P`` each object answer
has probability P % of carrying one byte flipped, while its headers still
claim the true digest -- what a bad disk, a buggy proxy or a middlebox
that rewrites payloads would deliver. TCP's checksum cannot catch it (the
bytes are already wrong when they enter the socket); only an end-to-end
digest check can. The index and the stats are never corrupted this way.
``/stats`` counts the answers corrupted (``corrupted_responses``).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
from typing import List, Optional

from testbed.storage.httpbase import Handler, QuietServer, serve
from testbed.storage.objects import Catalog, corrupt_copy
from testbed.storage.protocol import (
    H_SHA256,
    H_VERSION,
    ProtocolError,
    encode_json,
    parse_object_path,
)

__all__ = ["Origin", "OriginHandler", "build_parser", "main"]


class Origin:
    """The origin's state: the catalog, the corruption emulation and counters."""

    def __init__(self, catalog: Catalog, corrupt_pct: float = 0.0, seed: int = 0):
        if not 0.0 <= corrupt_pct <= 100.0:
            raise ValueError(f"corrupt_pct must be within 0..100, got {corrupt_pct}")
        self.catalog = catalog
        self.corrupt_pct = corrupt_pct
        self._rng = random.Random(f"{seed}:corrupt")
        self._lock = threading.Lock()
        self.counters = {"index_requests": 0, "object_requests": 0, "objects_served": 0,
                         "bytes_sent": 0, "corrupted_responses": 0, "published": 0,
                         "not_found": 0, "bad_requests": 0}

    def count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[key] += amount

    def body_to_send(self, body: bytes) -> bytes:
        """``body``, or a corrupted copy with probability ``corrupt_pct`` %."""
        with self._lock:
            if self.corrupt_pct <= 0 or self._rng.random() * 100.0 >= self.corrupt_pct:
                return body
            self.counters["corrupted_responses"] += 1
            return corrupt_copy(body, self._rng)

    def stats(self) -> dict:
        with self._lock:
            doc = dict(self.counters)
        doc.update(role="origin", objects=len(self.catalog.names()),
                   corrupt_pct=self.corrupt_pct)
        return doc


class OriginHandler(Handler):
    """HTTP front of :class:`Origin` (``self.server.origin``)."""

    @property
    def origin(self) -> Origin:
        return self.server.origin  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/index":
            self.origin.count("index_requests")
            body, headers = encode_json({"objects": [o.to_dict() for o in self.origin.catalog.index()]})
            self.send(200, body, headers)
        elif self.path == "/stats":
            body, headers = encode_json(self.origin.stats())
            self.send(200, body, headers)
        elif self.path.startswith("/objects/"):
            self._get_object()
        else:
            self.send_text(404, "no such path")

    def _get_object(self) -> None:
        self.origin.count("object_requests")
        try:
            name, version, _expected = parse_object_path(self.path)
        except ProtocolError as exc:
            self.origin.count("bad_requests")
            self.send_text(400, str(exc))
            return
        found = self.origin.catalog.get(name, version)
        if found is None:
            self.origin.count("not_found")
            self.send_text(404, f"no version {version} of {name}")
            return
        meta, body = found
        sent = self.origin.body_to_send(body)
        self.origin.count("objects_served")
        self.origin.count("bytes_sent", len(sent))
        self.send(200, sent, {"Content-Type": "application/octet-stream",
                              H_VERSION: str(meta.version), H_SHA256: meta.sha256})

    def do_POST(self) -> None:  # noqa: N802
        name = self.path[len("/objects/"):] if self.path.startswith("/objects/") else None
        if self.headers.get("Content-Length", "0") not in ("", "0"):
            self.send_text(400, "publish takes no body")  # the origin makes the bytes itself
            self.close_connection = True
            return
        if name is None or name not in self.origin.catalog.names():
            self.origin.count("not_found")
            self.send_text(404, "no such object")
            return
        meta = self.origin.catalog.publish(name)
        self.origin.count("published")
        body, headers = encode_json(meta.to_dict())
        self.send(200, body, headers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.storage.server",
                                     description="Origin object store with a seeded, versioned dataset.")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--shard-size-bytes", type=int, required=True)
    parser.add_argument("--corrupt-pct", type=float, default=0.0,
                        help="emulated silent corruption: share of object answers with a byte flipped")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shards < 1 or args.shard_size_bytes < 1 or not 0 <= args.corrupt_pct <= 100:
        print("shards and shard size must be >= 1, corrupt-pct within 0..100", file=sys.stderr)
        return 2
    origin = Origin(Catalog(args.seed, args.shards, args.shard_size_bytes),
                    corrupt_pct=args.corrupt_pct, seed=args.seed)
    try:
        server = QuietServer((args.bind, args.port), OriginHandler)
    except OSError as exc:
        print(f"cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server.origin = origin  # type: ignore[attr-defined]
    return serve(server, "origin")


if __name__ == "__main__":
    sys.exit(main())
