"""The argv of every storage process the step starts (interpreter, module, options).

Each runs with the interpreter that runs the testbed (``sys.executable``),
inside a lab node through :meth:`testbed.lab.node.Node.popen`/``run``.
Only validated values reach these lists: addresses from the lab's plan,
numbers from :class:`~testbed.storage.options.StorageOptions`, object
names matching :data:`~testbed.storage.objects.OBJECT_NAME_RE`.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

from testbed.storage.options import StorageOptions

__all__ = ["base_url", "origin_argv", "cache_argv", "reader_argv", "admin_argv"]


def base_url(ip: str, port: int) -> str:
    """``http://IP:PORT``."""
    return f"http://{ip}:{port}"


def _module(name: str, python: Optional[str]) -> List[str]:
    return [python or sys.executable, "-m", f"testbed.storage.{name}"]


def origin_argv(ip: str, options: StorageOptions, python: Optional[str] = None) -> List[str]:
    """``python -m testbed.storage.server`` bound to ``ip``."""
    return _module("server", python) + [
        "--bind", ip, "--port", str(options.origin_port), "--seed", str(options.seed),
        "--shards", str(options.shards), "--shard-size-bytes", str(options.shard_size_bytes),
        "--corrupt-pct", repr(float(options.corrupt_pct))]


def cache_argv(ip: str, origin_url: str, options: StorageOptions,
               python: Optional[str] = None) -> List[str]:
    """``python -m testbed.storage.cache`` bound to ``ip``, reading through ``origin_url``."""
    return _module("cache", python) + [
        "--bind", ip, "--port", str(options.cache_port), "--origin", origin_url,
        "--capacity-bytes", str(options.cache_capacity_bytes),
        "--upstream-timeout-s", repr(float(options.request_timeout_s))]


def reader_argv(origin_url: str, cache_url: Optional[str], epoch: int, reader_index: int,
                reader_count: int, label: str, options: StorageOptions,
                python: Optional[str] = None) -> List[str]:
    """``python -m testbed.storage.reader`` for one reader's share of one epoch."""
    argv = _module("reader", python) + [
        "--origin", origin_url, "--epoch", str(epoch), "--seed", str(options.seed),
        "--reader-index", str(reader_index), "--reader-count", str(reader_count),
        "--parallel", str(options.parallel), "--max-retries", str(options.max_retries),
        "--request-timeout-s", repr(float(options.request_timeout_s)), "--label", label]
    return argv + (["--cache", cache_url] if cache_url else [])


def admin_argv(command: str, url: str, names: Sequence[str] = (), timeout_s: float = 10.0,
               python: Optional[str] = None) -> List[str]:
    """``python -m testbed.storage.admin stats|publish --url URL [NAME ...]``."""
    return _module("admin", python) + [command, "--url", url, "--timeout-s",
                                       repr(float(timeout_s)), *names]
