"""pytest plugin: emulated links as fixtures, for testing your own systems.

Registered as a pytest plugin by the ``pytest11`` entry point in setup.cfg, so
installing the testbed is enough; without the entry point, load it with
``pytest -p testbed.pytest_plugin``. See docs/pytest-plugin.md.

* ``lab`` -- a fixture FACTORY. ``lab("pair", link={"delay": "20ms"})`` or
  ``lab("two-clouds", path="transit")`` brings a lab up (``Lab.create``) under a
  unique name ``pt-<pid>-<n>`` and returns the :class:`~testbed.lab.lab.Lab`.
  Keyword arguments that are parameters of the topology go to the topology;
  the others name its links and take a link profile (a preset name or a
  mapping of profile fields), as ``links:`` in a scenario. ``links={...}``
  passes links whose names are not Python identifiers (``transit-hop``).
  Every lab the factory made is destroyed when the test ends, passed or
  failed; labs still up at the end of the session (an interrupted test) are
  destroyed then. Each lab records this process as its owner, so after a
  ``kill -9`` of pytest, ``testbed clean`` removes it. Not root: the test is
  skipped, with the reason.
* markers ``requires_root`` and ``requires_netem`` skip a test, with the
  reason, when it does not run as root or the kernel has no netem qdisc.
* measurement helpers :func:`lab_ping`, :func:`lab_owd`, :func:`lab_tcp`,
  :func:`lab_udp`, :func:`lab_path` and :func:`lab_collective` take a
  scenario step's options (``lab_ping(lab, "h1", "h2", count=10)``), with the
  step's defaults, and return exactly what that step records in results.json
  -- they run the runner's own step code (on :data:`testbed.measure.RUNNERS`
  and the collectives engine).

Importing this module is cheap: nothing heavy (pyroute2, pydantic, the lab)
is imported until a test uses the fixture, a marker or a helper.
"""

from __future__ import annotations

import difflib
import itertools
import os
from typing import Any, Dict, List, Mapping, Optional, Union

import pytest

__all__ = [
    "LabFactory",
    "lab",
    "lab_ping",
    "lab_owd",
    "lab_tcp",
    "lab_udp",
    "lab_path",
    "lab_collective",
    "measure_step",
    "root_skip_reason",
    "netem_skip_reason",
    "LAB_PREFIX",
    "MARKERS",
]

#: Every lab the plugin makes is named ``pt-<pid>-<n>`` (at most 16 characters).
LAB_PREFIX = "pt-"
MARKERS = {
    "requires_root": "requires_root: skip (with the reason) unless the test runs as root",
    "requires_netem": "requires_netem: skip (with the reason) unless the kernel accepts a "
                      "netem qdisc (testbed doctor says why not)",
}
ROOT_REASON = "needs root to create network namespaces (run pytest with sudo)"

_names = itertools.count(1)
#: Labs made by factories of this process and not yet destroyed (name -> Lab).
_LIVE: Dict[str, Any] = {}


# -------------------------------------------------------------- skip reasons


def root_skip_reason() -> Optional[str]:
    """Why a lab cannot be made here for lack of root, or None when root."""
    return None if os.geteuid() == 0 else ROOT_REASON


def netem_skip_reason() -> Optional[str]:
    """Why the netem backend cannot run here, or None when it can (tested once per process)."""
    reason = root_skip_reason()
    if reason is not None:
        return f"netem cannot be tested: {reason}"
    from testbed.shaping.netem import NetemBackend

    ok, why = NetemBackend().available()
    return None if ok else f"netem backend unavailable: {why}"


def pytest_configure(config) -> None:
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)


def pytest_runtest_setup(item) -> None:
    checks = (("requires_root", root_skip_reason), ("requires_netem", netem_skip_reason))
    for marker, reason_of in checks:
        if item.get_closest_marker(marker) is not None:
            reason = reason_of()
            if reason is not None:
                pytest.skip(f"{marker}: {reason}")


def pytest_sessionfinish(session, exitstatus) -> None:
    """Labs an interrupted test left up are removed before pytest exits."""
    _destroy_all(list(_LIVE.values()))


# ------------------------------------------------------------------ the lab


def _destroy_all(labs: List[Any]) -> List[str]:
    """Destroy every lab (the last made first); return the errors, never stop early."""
    errors = []
    for made in reversed(labs):
        try:
            made.destroy()
        except Exception as exc:  # keep destroying the others
            errors.append(f"{made.name}: {exc}")
        finally:
            _LIVE.pop(made.name, None)
    return errors


def _free_name() -> str:
    from testbed.lab import state
    from testbed.lab.teardown import lab_namespaces

    while True:
        name = f"{LAB_PREFIX}{os.getpid()}-{next(_names)}"
        if state.read_state(name) is None and not lab_namespaces(name):
            return name


def _link_names(topology: str, params: Mapping[str, Any]) -> List[str]:
    from testbed.topologies import build_topology

    topo = build_topology(topology, params)
    return sorted({info.get("link", f"{a}-{b}") for a, b, info in topo.links(withInfo=True)})


class LabFactory:
    """``factory(topology, **kwargs)`` brings a lab up; :meth:`close` takes them all down."""

    def __init__(self) -> None:
        self.labs: List[Any] = []

    def __call__(
        self,
        topology: str,
        *,
        links: Optional[Mapping[str, Any]] = None,
        backend: str = "auto",
        block: Optional[str] = None,
        host_sysctls: Optional[Mapping[str, Any]] = None,
        seed: int = 0,
        **kwargs: Any,
    ):
        """Bring ``topology`` up; ``kwargs`` are its parameters and its links' profiles.

        Input errors (an unknown parameter, link or profile field) raise
        :class:`~testbed.errors.InputError` naming the field; a machine that
        cannot run the lab raises :class:`~testbed.errors.EnvironmentProblem`.
        """
        from testbed.errors import InputError
        from testbed.lab.lab import Lab
        from testbed.topologies import topology_params

        allowed = topology_params(topology)
        params = {k: v for k, v in kwargs.items() if k in allowed}
        link_kwargs = {k: v for k, v in kwargs.items() if k not in allowed}
        known_links = _link_names(topology, params)
        for key in sorted(link_kwargs):
            if key not in known_links:
                raise InputError(
                    key, f"neither a parameter of {topology!r} "
                    f"({', '.join(allowed) or 'none'}) nor one of its links "
                    f"({', '.join(known_links)})", source="lab()")
        all_links = {**dict(links or {}), **link_kwargs}
        reason = root_skip_reason()
        if reason is not None:
            pytest.skip(f"lab: {reason}")
        made = Lab.create(topology, _free_name(), params=params, links=all_links,
                          block=block, backend=backend, host_sysctls=host_sysctls,
                          owner_pid=os.getpid(), strict_links=True, seed=seed)
        self.labs.append(made)
        _LIVE[made.name] = made
        return made

    def close(self) -> None:
        """Destroy every lab made (idempotent); raise once all are gone if any failed."""
        labs, self.labs = self.labs, []
        errors = _destroy_all(labs)
        if errors:
            raise RuntimeError("destroying labs failed: " + "; ".join(errors))


@pytest.fixture
def lab():
    """A factory: ``lab("pair", link={"delay": "20ms"})`` -> a running Lab, destroyed after the test."""
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.close()


# ------------------------------------------------------- measurement helpers


def _node(made, which: Union[str, Any, None], default_index: int):
    if which is None:
        return made.hosts()[default_index]
    if isinstance(which, str):
        return made.node(which)
    return which


def measure_step(made, kind: str, src=None, dst=None, **options: Any):
    """Run scenario step ``kind`` (ping, owd, tcp, udp, path, collective) on lab ``made``.

    ``src``/``dst`` are node names or :class:`~testbed.lab.node.Node` objects;
    by default the first and the last host, as a scenario without
    ``endpoints`` (``collective`` runs between all hosts and takes neither).
    ``options`` are the step's scenario options (``measure.<kind>`` in
    docs/scenarios.md), validated the same way, with the same defaults; a bad
    one raises InputError naming ``measure.<kind>.<option>``. Returns the
    step's section of a results.json variant (for ``collective``, the list of
    rows of ``collectives``).
    """
    from pydantic import ValidationError

    from testbed import runner
    from testbed.errors import InputError
    from testbed.scenario import validation_error
    from testbed.steps.registry import STEPS

    measuring = [k for k, step in STEPS.items() if step.measures]
    if kind not in measuring:
        close = difflib.get_close_matches(str(kind), measuring, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError("measure", f"unknown measurement step {kind!r} (known: {', '.join(measuring)}){hint}")
    try:
        opts = STEPS[kind].options.model_validate(options)
    except ValidationError as exc:
        # worded as 'testbed run' words the same field of a scenario
        raise validation_error(exc, None, ("measure", kind)) from exc
    if STEPS[kind].whole_lab:
        if src is not None or dst is not None:
            raise InputError(f"measure.{kind}", f"a {kind} step runs between all the lab's "
                             "hosts: give no src or dst")
        return runner.run_step(made, kind, opts, None, None)
    src_node, dst_node = _node(made, src, 0), _node(made, dst, -1)
    # The runner's own step code, so the data is what results.json records.
    return runner.run_step(made, kind, opts, src_node, dst_node)


def lab_ping(made, src=None, dst=None, **options: Any) -> dict:
    """``measure.ping`` (count, interval_s, size_bytes): ``rtt_ms`` stats, ``loss_pct``, ``samples_ms`` ..."""
    return measure_step(made, "ping", src, dst, **options)


def lab_owd(made, src=None, dst=None, **options: Any) -> dict:
    """``measure.owd`` (count, interval_ms, size_bytes): ``forward``/``reverse`` one-way delay, jitter, loss."""
    return measure_step(made, "owd", src, dst, **options)


def lab_tcp(made, src=None, dst=None, steady_tolerance_pct: Optional[float] = None,
            **options: Any) -> dict:
    """``measure.tcp`` (duration_s, streams, cc, window): ``throughput_mbps``, ``retransmits``, ``intervals``.

    With ``steady_tolerance_pct`` it also adds ``time_to_steady_s``, as a
    scenario's ``steady`` step after ``tcp`` does.
    """
    data = measure_step(made, "tcp", src, dst, **options)
    if steady_tolerance_pct is not None:
        from testbed.measure import time_to_steady_s
        from testbed.steps.endpoint_options import SteadyOptions

        tolerance = SteadyOptions(tolerance_pct=steady_tolerance_pct).tolerance_pct
        data["time_to_steady_s"] = time_to_steady_s(data.get("intervals", []), tolerance / 100.0)
    return data


def lab_udp(made, src=None, dst=None, **options: Any) -> dict:
    """``measure.udp`` (duration_s, bitrate, size_bytes): ``throughput_mbps``, ``jitter_ms``, ``loss_pct``."""
    return measure_step(made, "udp", src, dst, **options)


def lab_collective(made, **options: Any) -> List[dict]:
    """``measure.collective`` (op, algorithm, sizes, iters, warmup, gpus_per_host, nsocks, buffsize, order).

    Times the collective between all of the lab's hosts; returns one row per
    size (``op``, ``bytes``, ``time_us``, ``busbw_gbps``, ``model_time_us``,
    ``correct`` ...), as the variant's ``collectives`` in results.json.
    """
    return measure_step(made, "collective", **options)


def lab_path(made, src=None, dst=None, **options: Any) -> dict:
    """``measure.path`` (max_hops): ``hops``, ``ttl_hops``, ``routers``, ``router_names``, ``path_mtu``."""
    return measure_step(made, "path", src, dst, **options)
