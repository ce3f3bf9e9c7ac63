"""Operator commands against a running origin or cache; each prints one JSON document.

    python -m testbed.storage.admin stats --url http://10.0.0.1:8470
    python -m testbed.storage.admin publish --url http://10.0.0.1:8470 shard-00003 shard-00011

``stats`` prints the server's ``/stats`` counters; ``publish`` asks the
origin for the next version of each named object and prints
``{"published": [{name, version, size_bytes, sha256}, ...]}``. The step runs
them inside the server's own namespace. Exit status 1 when the server did
not answer as expected, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from testbed.storage.httpfetch import HttpFetcher, split_base_url
from testbed.storage.objects import OBJECT_NAME_RE, sha256_hex
from testbed.storage.protocol import H_CONTENT_SHA256, FetchError, Response

__all__ = ["json_answer", "build_parser", "main"]


def json_answer(resp: Response, what: str) -> dict:
    """The JSON object of a 200 answer that matches its ``X-Content-Sha256``; ValueError if not."""
    if resp.status != 200:
        text = resp.body[:200].decode(errors="replace").strip()
        raise ValueError(f"{what}: HTTP {resp.status}: {text}")
    if resp.header(H_CONTENT_SHA256) != sha256_hex(resp.body):
        raise ValueError(f"{what}: body does not match its X-Content-Sha256")
    doc = json.loads(resp.body)
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: not a JSON object")
    return doc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.storage.admin",
                                     description="Read counters of, or publish versions on, a storage server.")
    parser.add_argument("command", choices=("stats", "publish"))
    parser.add_argument("--url", required=True, help="server base URL, http://HOST:PORT")
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("names", nargs="*", help="objects to publish a new version of")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    try:
        split_base_url(args.url)
    except ValueError as exc:
        print(f"--url: {exc}", file=sys.stderr)
        return 2
    bad = [n for n in args.names if not OBJECT_NAME_RE.match(n)]
    if bad or (args.command == "publish") != bool(args.names) or args.timeout_s <= 0:
        print("publish takes valid object names, stats takes none; --timeout-s > 0", file=sys.stderr)
        return 2
    fetcher = HttpFetcher(args.url, args.timeout_s)
    try:
        if args.command == "stats":
            doc = json_answer(fetcher.fetch("/stats"), "stats")
        else:
            doc = {"published": [json_answer(fetcher.fetch(f"/objects/{n}", method="POST"), n)
                                 for n in args.names]}
    except (FetchError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(doc, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
