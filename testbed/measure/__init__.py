"""Measurement runners, one module per tool, looked up by name in :data:`RUNNERS`.

Every runner follows Flent's lifecycle:

* ``check(node)`` finds the tool and raises
  :class:`~testbed.errors.EnvironmentProblem` (with a fix hint) before any
  traffic is sent;
* ``argv(...)`` builds the command line;
* ``parse(text)`` turns the tool's real output into data (tested on captured
  output in tests/unit/fixtures/measure/);
* ``run(src, dst, **options)`` measures from ``src`` towards ``dst.ip`` and
  returns a dict; failures raise :class:`~testbed.errors.ToolError` naming the
  tool, the nodes and what went wrong.

Option names carry their unit (``interval_s``, ``duration_s``, ``size_bytes``,
``bitrate_bps``). :func:`validate_options` checks a scenario's option mapping
against a runner's ``run`` signature and rejects unknown names with an
:class:`~testbed.errors.InputError`.

Registered runners and their result keys:

* ``ping`` (:class:`PingRunner`): rtt_ms {count, min, mean, p50, p90, p99, max,
  stdev}, loss_pct, samples_ms, sent, received.
* ``owd`` (:class:`OwdRunner`, also ``run_both``): one_way_delay_ms {...},
  jitter_ms (RFC 3550), stdev_ms, loss_pct, reordered, duplicates, samples_ms.
* ``tcp`` (:class:`IperfTcpRunner`): throughput_mbps, sender_mbps, retransmits,
  streams, intervals [{start_s, end_s, mbps}].
* ``udp`` (:class:`IperfUdpRunner`): throughput_mbps, jitter_ms, loss_pct,
  out_of_order, packets.
* ``path`` (:class:`PathRunner`): ttl_hops, routers, path_mtu.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional

from testbed.errors import InputError
from testbed.measure.iperf import IperfTcpRunner, IperfUdpRunner
from testbed.measure.owd import OwdRunner
from testbed.measure.path import PathRunner
from testbed.measure.ping import PingRunner
from testbed.measure.stats import rfc3550_jitter, summarize
from testbed.measure.steady import time_to_steady_s

__all__ = [
    "RUNNERS",
    "PingRunner",
    "OwdRunner",
    "IperfTcpRunner",
    "IperfUdpRunner",
    "PathRunner",
    "option_names",
    "validate_options",
    "summarize",
    "rfc3550_jitter",
    "time_to_steady_s",
]

RUNNERS: Dict[str, Any] = {
    "ping": PingRunner(),
    "owd": OwdRunner(),
    "tcp": IperfTcpRunner(),
    "udp": IperfUdpRunner(),
    "path": PathRunner(),
}


def option_names(name: str) -> Dict[str, Any]:
    """The keyword options of ``RUNNERS[name].run`` and their defaults."""
    if name not in RUNNERS:
        raise InputError("measure", f"unknown measurement {name!r}; "
                         f"choose from {', '.join(sorted(RUNNERS))}")
    params = inspect.signature(RUNNERS[name].run).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def validate_options(
    name: str, options: Mapping[str, Any], source: Optional[str] = None
) -> dict:
    """Reject option names ``RUNNERS[name].run`` does not take; return a copy.

    The error names the field as ``<name>.<option>``. Values are checked by the
    runner itself when it runs.
    """
    known = option_names(name)
    for key in options:
        if key not in known:
            raise InputError(f"{name}.{key}", f"unknown option; {name} takes "
                             f"{', '.join(sorted(known))}", source)
    return dict(options)
