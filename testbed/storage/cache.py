"""The regional read-through cache: ``python -m testbed.storage.cache``.

    python -m testbed.storage.cache --bind 10.0.1.2 --port 8471 \\
        --origin http://10.0.0.1:8470 --capacity-bytes 67108864

Answers ``GET /objects/NAME?version=V[&sha256=HEX]`` from memory when it
holds that version (``X-Cache: hit``), else from the origin (``X-Cache:
miss``) after checking the origin's bytes against the digest (see
:mod:`testbed.storage.readthrough`); a failed check is a 502 with
``X-Storage-Error: digest-mismatch``. ``GET /stats`` gives its counters.
It never serves the index: readers take that from the origin.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from testbed.storage.httpbase import Handler, QuietServer, serve
from testbed.storage.httpfetch import HttpFetcher, split_base_url
from testbed.storage.lru import LruStore
from testbed.storage.protocol import (
    H_CACHE,
    H_ERROR,
    H_SHA256,
    H_VERSION,
    ProtocolError,
    encode_json,
    parse_object_path,
)
from testbed.storage.readthrough import ReadThrough

__all__ = ["CacheHandler", "build_parser", "main"]


class CacheHandler(Handler):
    """HTTP front of a :class:`ReadThrough` (``self.server.cache``)."""

    @property
    def cache(self) -> ReadThrough:
        return self.server.cache  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/stats":
            doc = self.cache.stats()
            doc.update(role="cache", connection_errors=self.server.connection_errors)
            body, headers = encode_json(doc)
            self.send(200, body, headers)
            return
        if not self.path.startswith("/objects/"):
            self.send_text(404, "no such path (the index is served by the origin)")
            return
        try:
            name, version, expected = parse_object_path(self.path)
        except ProtocolError as exc:
            self.send_text(400, str(exc))
            return
        answer = self.cache.get(name, version, expected)
        if answer.status != 200 or answer.entry is None:
            headers = {H_CACHE: "miss", **({H_ERROR: answer.error} if answer.error else {})}
            self.send_text(answer.status, f"{name} v{version}: {answer.error or 'not available'}",
                           headers)
            return
        entry = answer.entry
        self.send(200, entry.body, {"Content-Type": "application/octet-stream",
                                    H_VERSION: str(entry.version), H_SHA256: entry.sha256,
                                    H_CACHE: "hit" if answer.hit else "miss"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.storage.cache",
                                     description="Read-through, size-bounded LRU cache of object versions.")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin", required=True, help="origin base URL, http://HOST:PORT")
    parser.add_argument("--capacity-bytes", type=int, required=True)
    parser.add_argument("--upstream-timeout-s", type=float, default=10.0)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        split_base_url(args.origin)
    except ValueError as exc:
        print(f"--origin: {exc}", file=sys.stderr)
        return 2
    if args.capacity_bytes < 0 or args.upstream_timeout_s <= 0:
        print("--capacity-bytes must be >= 0 and --upstream-timeout-s > 0", file=sys.stderr)
        return 2
    upstream = HttpFetcher(args.origin, args.upstream_timeout_s)
    try:
        server = QuietServer((args.bind, args.port), CacheHandler)
    except OSError as exc:
        print(f"cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server.cache = ReadThrough(LruStore(args.capacity_bytes), upstream.fetch)  # type: ignore[attr-defined]
    return serve(server, "cache")


if __name__ == "__main__":
    sys.exit(main())
