"""The ``storage`` measurement step: central object storage read from other sites.

:func:`run_storage` on a lab that is up:

1. chooses the origin, the readers and (``cache: true``) one cache per
   readers' site (:mod:`testbed.storage.roles`);
2. starts the origin, then the caches, each by pid, and waits until each
   one's own pid listens (``ss``, polled with a deadline);
3. runs ``epochs`` epochs: before every epoch but the first it publishes
   new versions of ``updates_per_epoch`` shards; then all readers read
   their share of the dataset at once (each fetches the index from the
   origin first), and the servers' counters are read before and after;
4. stops every process it started, by pid, in ``finally``;
5. returns a JSON-ready dict: the roles, the dataset, per-epoch figures
   (:func:`testbed.storage.summary.summarize_epoch`), totals and the
   servers' final counters.

Failed reads (retries exhausted) are reported in the figures
(``failed_reads``, ``failures``, ``totals.all_verified``), not raised: a
run that shows how many reads a corrupt path defeats is a valid result.
A server or reader that cannot start, dies or misses its deadline is a
:class:`~testbed.errors.ToolError`.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from typing import Callable, Dict, List, Optional

from testbed.errors import EnvironmentProblem, InputError, ToolError
from testbed.lab.node import Node
from testbed.storage import commands
from testbed.storage.objects import shard_names
from testbed.storage.options import StorageOptions
from testbed.storage.roles import Roles, choose_roles
from testbed.storage.services import Service, run_parallel, run_tool
from testbed.storage.summary import (
    counter_delta,
    reader_latencies_ms,
    summarize_epoch,
    summarize_totals,
)

__all__ = ["run_storage", "check_environment", "updated_names", 
           "result_doc"]



def check_environment() -> None:
    """The step needs ``ss`` (readiness checks) and a runnable interpreter."""
    if shutil.which("ss") is None:
        raise EnvironmentProblem("ss is not installed or not on PATH", "apt-get install iproute2")
    if not sys.executable or not os.access(sys.executable, os.X_OK):
        raise EnvironmentProblem("the running Python interpreter has no usable path (sys.executable)",
                                 "run the testbed from a regular Python installation or virtualenv")


def updated_names(options: StorageOptions, epoch: int) -> List[str]:
    """The shards republished before ``epoch`` (a seeded choice; none before epoch 1)."""
    if epoch <= 1 or options.updates_per_epoch == 0:
        return []
    names = shard_names(options.shards)
    return sorted(random.Random(f"{options.seed}:update:{epoch}").sample(names, options.updates_per_epoch))


def _ip(node: Node) -> str:
    if not node.ip:
        raise InputError("measure.storage", f"host {node.name} has no address")
    return node.ip


class _Run:
    """One execution of the step: the roles, the servers it started, the epochs' figures."""

    def __init__(self, lab, options: StorageOptions, progress: Callable[[str], None]):
        self.options = options
        self.progress = progress
        self.roles: Roles = choose_roles(lab.hosts(), options)
        self.origin_url = commands.base_url(_ip(self.roles.origin), options.origin_port)
        self.cache_urls: Dict[str, str] = {
            site: commands.base_url(_ip(node), options.cache_port)
            for site, node in self.roles.caches.items()}
        for reader in self.roles.readers:
            _ip(reader)
        self.services: List[Service] = []
        self.tool_timeout_s = options.request_timeout_s + 10.0

    # -- servers ------------------------------------------------------------
    def start_servers(self) -> None:
        o, origin = self.options, self.roles.origin
        self.progress(f"storage: origin on {origin.name} ({o.shards} x {o.shard_size_bytes} B"
                      + (f", corrupting {o.corrupt_pct:g}% of answers" if o.corrupt_pct else "") + ")")
        self.services.append(Service(origin, commands.origin_argv(origin.ip, o), o.origin_port,
                                     "storage origin"))
        self.services[-1].start()
        for site, node in sorted(self.roles.caches.items()):
            self.progress(f"storage: cache for site {site} on {node.name} "
                          f"({o.cache_capacity_bytes} B)")
            self.services.append(Service(node, commands.cache_argv(node.ip, self.origin_url, o),
                                         o.cache_port, "storage cache"))
            self.services[-1].start()

    def stop_servers(self) -> None:
        """Stop every server this run started (by pid); raise the first failure after all."""
        errors = []
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others; report the first below
                errors.append(exc)
        self.services = []
        if errors:
            raise errors[0]

    def _stats(self, node: Node, url: str, what: str) -> dict:
        argv = commands.admin_argv("stats", url, timeout_s=self.options.request_timeout_s)
        return run_tool(node, argv, self.tool_timeout_s, what)

    def counters(self) -> tuple:
        """(origin stats, {site: cache stats})."""
        for service in self.services:
            service.check_alive()
        origin = self._stats(self.roles.origin, self.origin_url, "storage origin stats")
        caches = {site: self._stats(node, self.cache_urls[site], "storage cache stats")
                  for site, node in self.roles.caches.items()}
        return origin, caches

    # -- epochs -------------------------------------------------------------
    def publish(self, names: List[str]) -> None:
        argv = commands.admin_argv("publish", self.origin_url, names, self.options.request_timeout_s)
        doc = run_tool(self.roles.origin, argv, self.tool_timeout_s + len(names), "storage publish")
        if len(doc.get("published", [])) != len(names):
            raise ToolError(f"storage publish: asked for {len(names)} new versions, "
                            f"got {len(doc.get('published', []))}")

    def read_epoch(self, epoch: int) -> List[dict]:
        readers = self.roles.readers
        jobs = []
        for index, reader in enumerate(readers):
            cache = self.roles.cache_for(reader)
            cache_url = self.cache_urls[reader.site or ""] if cache is not None else None
            argv = commands.reader_argv(self.origin_url, cache_url, epoch, index, len(readers),
                                        reader.name, self.options)
            jobs.append(("storage reader", reader, argv))
        return run_parallel(jobs, self.options.timeout_s)

    def run(self) -> dict:
        o = self.options
        epochs: List[dict] = []
        latencies_ms: List[float] = []
        self.start_servers()
        origin_before, caches_before = self.counters()
        for epoch in range(1, o.epochs + 1):
            names = updated_names(o, epoch)
            if names:
                self.progress(f"storage: publishing new versions of {len(names)} shards")
                self.publish(names)
            self.progress(f"storage: epoch {epoch}/{o.epochs}, {len(self.roles.readers)} reader(s)"
                          + (" through the cache" if self.roles.caches else " from the origin"))
            docs = self.read_epoch(epoch)
            origin_after, caches_after = self.counters()
            cache_deltas = [counter_delta(caches_before[s], caches_after[s]) for s in caches_after]
            figures = summarize_epoch(epoch, docs, counter_delta(origin_before, origin_after),
                                      cache_deltas, updated_shards=len(names))
            epochs.append(figures)
            latencies_ms += reader_latencies_ms(docs)
            self.progress(f"storage: epoch {epoch}: p50 {_ms(figures['latency_p50_ms'])}, "
                          f"p99 {_ms(figures['latency_p99_ms'])}, "
                          f"{figures['throughput_mbps']} Mbit/s"
                          + (f", hit ratio {figures['hit_ratio']:.2f}"
                             if figures["hit_ratio"] is not None else "")
                          + (f", {figures['corrupt_detected']} corrupt detected"
                             if figures["corrupt_detected"] else ""))
            origin_before, caches_before = origin_after, caches_after
        return result_doc(self.roles, o, epochs, latencies_ms,
                          {"origin": origin_before,
                           "caches": {self.roles.caches[s].name: doc
                                      for s, doc in caches_before.items()}})


def result_doc(roles: Roles, options: StorageOptions, epochs: List[dict],
               latencies_ms: List[float], servers: dict) -> dict:
    """The step's JSON-ready result (keys documented in docs/storage.md)."""
    return {
        **roles.to_dict(),
        "options": options.model_dump(mode="json"),
        "dataset": {"shards": options.shards, "shard_size_bytes": options.shard_size_bytes,
                    "dataset_bytes": options.dataset_bytes, "seed": options.seed},
        "cache_enabled": bool(roles.caches),
        "epochs": epochs,
        "totals": summarize_totals(epochs, latencies_ms),
        "servers": servers,
    }


def _ms(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def run_storage(lab, options: StorageOptions,
                progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Run the storage step on ``lab`` (see the module doc); a JSON-ready dict."""
    check_environment()
    run = _Run(lab, options, progress)
    try:
        result = run.run()
    except BaseException:
        try:
            run.stop_servers()
        except Exception:  # the step's own error is the one to report
            pass
        raise
    run.stop_servers()
    return result
