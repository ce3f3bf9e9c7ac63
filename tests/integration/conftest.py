"""Fixtures for the lab integration tests (root, real namespaces).

* Every test in this folder is skipped, with the reason shown, when not root.
* ``lab_factory`` creates labs through the library
  (``Lab.create``) and always destroy them in teardown, even when the test
  failed. Lab names must start with ``it-`` (namespaces ``tb.it-...``), so a
  leftover is recognisably ours and never another user's lab.
* A session check at the end: no ``tb.it-`` namespace, no ``/run/testbed/it-``
  state and no ``TB-it-`` guard chain may be left (oracle: ``ip netns list``,
  the state directory, ``iptables -S``). Leftovers are removed and reported
  as an error.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

import helpers  # noqa: E402

IS_ROOT = os.geteuid() == 0
ROOT_REASON = "integration tests need root to create network namespaces (run with sudo)"
LAB_NAME_RE = re.compile(r"^it-[a-z0-9-]{1,13}$")  # 16 characters at most
STATE_DIR = helpers.STATE_DIR


@pytest.fixture(autouse=True)
def _require_root():
    if not IS_ROOT:
        pytest.skip(ROOT_REASON)


# Labs this session's factories created: the only ones the session check may
# judge or remove (another session's it- lab on the same machine is not ours).
CREATED: set = set()


def _leftovers() -> List[str]:
    found = [f"namespace {n}" for n in helpers.netns_names()
             if n.split(".")[1:2] and n.split(".")[1] in CREATED and n.startswith("tb.")]
    found += [f"state dir {STATE_DIR / n}" for n in CREATED if (STATE_DIR / n).exists()]
    found += [f"guard chain {r.split()[1]}" for r in helpers.iptables_rules()
              if r.startswith("-N TB-") and r.split()[1][len("TB-"):] in CREATED]
    return found


def _lab_names_left() -> List[str]:
    return sorted(n for n in CREATED if helpers.lab_netns_names(n) or (STATE_DIR / n).exists()
                  or any(r == f"-N TB-{n}" for r in helpers.iptables_rules()))


def _remove_lab(name: str) -> None:
    from testbed.lab import teardown

    teardown.teardown(name)


@pytest.fixture(scope="session", autouse=True)
def no_it_lab_left_behind():
    """After the whole session no ``it-`` lab may remain (checked with ip/iptables)."""
    yield
    if not IS_ROOT:
        return
    left = _leftovers()
    if left:
        for name in _lab_names_left():
            _remove_lab(name)
        pytest.fail("integration tests left lab pieces behind (now removed): "
                    + ", ".join(left), pytrace=False)


class LabFactory:
    """Creates labs with ``Lab.create`` and destroys every one of them in ``close``."""

    def __init__(self):
        self.labs = []

    def create(self, topology: str, name: str, ready: bool = True, **kwargs):
        """``Lab.create(topology, name=name, **kwargs)``, destroyed at teardown.

        The delay backend is pytest's ``--backend`` unless ``backend`` is given.
        With ``ready`` it waits (polling ``ip``/``bridge`` with a deadline)
        until every interface is up and every bridge port forwards.
        """
        from testbed.lab.lab import Lab

        if not LAB_NAME_RE.match(name):
            raise ValueError(f"test lab names must match {LAB_NAME_RE.pattern}: {name!r}")
        if helpers.lab_netns_names(name) or (STATE_DIR / name).exists():
            _remove_lab(name)  # a leftover of an interrupted earlier run: ours by name
        CREATED.add(name)
        kwargs.setdefault("backend", helpers.TEST_BACKEND)  # pytest --backend
        lab = Lab.create(topology, name=name, **kwargs)
        self.labs.append(lab)
        if ready:
            helpers.wait_namespaces_ready(name)
        return lab

    def forget(self, lab) -> None:
        """The test destroyed ``lab`` itself: teardown leaves it alone."""
        self.labs = [l for l in self.labs if l is not lab]

    def close(self) -> None:
        errors = []
        for lab in reversed(self.labs):
            try:
                lab.destroy()
            except Exception as exc:  # keep destroying the others
                errors.append(f"{lab.name}: {exc!r}")
        self.labs = []
        if errors:
            raise AssertionError("destroying test labs failed: " + "; ".join(errors))


#: probe intervals tried for the loss tests, fastest first; each for PROBE_TRIAL_S
PROBE_INTERVALS_MS = (0.25, 0.5, 1.0, 2.0, 4.0)
PROBE_TRIAL_S = 2.0


def _sustained_probe_interval_ms(h1, h2) -> float:
    """The shortest of PROBE_INTERVALS_MS at which the unshaped path loses no probe with
    both directions sending at once, as the loss tests do (a machine too slow for a rate
    drops probes itself and lengthens the model's bursts); the longest if none."""
    from testbed.measure import RUNNERS

    for interval_ms in PROBE_INTERVALS_MS:
        count = int(PROBE_TRIAL_S * 1000.0 / interval_ms)
        result = RUNNERS["owd"].run_both(h1, h2, count=count, interval_ms=interval_ms, port=5302)
        lost = {d: count - r["received"] for d, r in result.items()}
        print(f"\nunshaped path, {count} probes every {interval_ms:g} ms each way: lost {lost}")
        if not any(lost.values()):
            return interval_ms
    return PROBE_INTERVALS_MS[-1]


@pytest.fixture(scope="module")
def link_baseline():
    """The machine's own share of an RTT (helpers.Baseline), measured on a pair lab whose
    link has the path of a shaped one (wire namespace, htb) but no delay. The lab stays up
    for the module: ``baseline.unshaped_rtt_ms(count, interval_s)`` pings over it again,
    so a test can measure the unshaped path at the same time as a shaped one."""
    if not IS_ROOT:
        pytest.skip(ROOT_REASON)
    from testbed.measure import RUNNERS

    factory = LabFactory()
    try:
        lab = factory.create("pair", name="it-baseline", links={"link": {"rate": "10Gbit"}})
        h1, h2 = lab.node("h1"), lab.node("h2")
        RUNNERS["ping"].run(h1, h2, count=2, interval_s=0.05, timeout_s=2.0)  # ARP

        def unshaped_rtt_ms(count: int = 50, interval_s: float = 0.05) -> list:
            return RUNNERS["ping"].run(h1, h2, count=count, interval_s=interval_s,
                                       timeout_s=2.0)["samples_ms"]

        baseline = helpers.measure_baseline(unshaped_rtt_ms)
        # the same probes the jitter tests send, without jitter: the machine's own spread
        owd = RUNNERS["owd"].run(h1, h2, count=250, interval_ms=20.0, port=5301)
        baseline.owd_stdev_ms = helpers.stdev(owd["samples_ms"])
        baseline.probe_interval_ms = _sustained_probe_interval_ms(h1, h2)
        baseline.unshaped_rtt_ms = unshaped_rtt_ms
        print(f"\n{baseline}")
        yield baseline
    finally:
        factory.close()


@pytest.fixture
def lab_factory():
    if not IS_ROOT:
        pytest.skip(ROOT_REASON)
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.close()

