"""Collective timing against the model on bandwidth-scaled labs (issue 4, section 6).

8 ranks at 10 Gbit/s move more bytes per second than one Python engine and a
userspace delay line carry on 2 cores, so these labs use ``scale``
(testbed/scale.py): link rates and the bytes sent are both divided by SCALE,
latencies are not, and times are compared at real scale with the alpha-beta
model of the configured links (edge by edge, testbed/collectives/model.py).

Timings are noisy here, so each check takes ROUNDS samples and needs NEED of
them honest -- inside its band, or outside it with the row's own verdict
(testbed/collectives/verdict.py) saying the machine distorted it (a late
line, a saturated CPU): what the product promises is never a silently wrong
figure -- and at least one inside the band; a failure prints expected,
measured, verdicts and bounds for every sample. A size whose samples were
all flagged and none in band cannot test the model: the test then skips,
saying so (the suite's summary lists it). A sample is the median of ITERS_BY_SIZE iterations, about 0.3 s
of collectives at every size: at 4 MiB (7 ms a call) the median of 5 calls
spanned 40 ms, short enough for one burst of other work on these 2 cores to
move a whole sample (measured/model 0.93-1.44 at scale 200 with a VM running
beside it; with 40 calls 0.96-1.17).

The issue asks for 8 ranks over the direct profile within [0.9, 1.3] of the
model from 4 MiB up. Two layouts of 8 ranks:

* 2 GPU hosts of 4 ranks, one per site (the ring NCCL builds across two GPU
  servers: NVLink-like local path inside a host, 2 ring edges over the
  interconnect). Asserted at 4, 16 and 64 MiB: measured/model 1.01-1.05.
* 8 hosts of 1 rank. Asserted at 4, 16 and 64 MiB too. Every ring step
  here crosses 8 network messages, so per-packet costs (the engine's and the
  delay lines') weigh more than with 2 hosts, and at 4 MiB (7 ms a call)
  a sample of 5 calls was at the band's edge or out (1.24-1.28 with other
  work on the machine; 1.4-1.95 with an earlier, slower engine, which the
  test then excused while the product called itself CPU-bound). With 40
  calls a sample, measured here at rest: 1.02-1.04 (engine CPU share
  0.78-0.82). A higher scale is not the cure: at 100-200 the 4 MiB case
  fell below the band (0.85-0.89), its messages of a few KB passing within
  the shaper's burst, faster than rate / scale (testbed/scale.py: what is
  counted in packets is not preserved).
"""

from __future__ import annotations

import os
import statistics

import pytest

from testbed.collectives.bench import run_sweep
from testbed.collectives.table import format_table
from testbed.lab import state, teardown
from testbed.lab.lab import Lab

import helpers  # tests/helpers.py, on the path via conftest.py

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

MIB = 1024 * 1024
SCALE = 50  # direct-interconnect 10 Gbit/s -> 200 Mbit/s on the wire
SIZES = [4 * MIB, 16 * MIB, 64 * MIB]
BAND = (0.9, 1.3)  # measured / model, issue 4 acceptance
ROUNDS, NEED, ITERS = 3, 2, 5
ITERS_BY_SIZE = {4 * MIB: 40, 16 * MIB: 12, 64 * MIB: 5}  # ~0.3 s of calls per sample (docstring)


def _lab(name: str, path: str, hosts_per_site: int = 4) -> Lab:
    if state.read_state(name) or helpers.lab_netns_names(name):
        teardown.teardown(name)  # left by an interrupted earlier run: ours by name
    return Lab.create("two-clouds", name=name, params={"hosts_per_site": hosts_per_site, "path": path},
                      scale=SCALE)


@pytest.fixture(scope="module")
def direct():
    lab = _lab("it-scd", "direct")
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture(scope="module")
def direct_gpu_hosts():
    lab = _lab("it-scg", "direct", hosts_per_site=1)
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture(scope="module")
def transit():
    lab = _lab("it-sct", "transit")
    try:
        yield lab
    finally:
        lab.destroy()


def _median_us(row: dict) -> float:
    return statistics.median(row["times_us"])


def test_scaled_lab_shapes_at_rate_over_scale_and_reports_real_sizes(direct):
    rows = run_sweep(direct, "allreduce", "ring", [4 * MIB], iters=1, warmup=0)
    (row,) = rows
    assert row["bytes"] == 4 * MIB and row["scale"] == SCALE
    assert row["sent_bytes"] == pytest.approx(4 * MIB / SCALE, rel=0.01)
    assert row["correct"], row
    direct_link = next(l for l in direct.links() if l["name"] == "direct")
    assert direct_link["profile"]["rate"] == "10Gbit"  # the plan keeps the configured rate
    assert direct.scale == SCALE
    for port in ("port-a", "port-b"):  # the kernel gets rate / SCALE (oracle: tc class show)
        rates = [c["rate_bps"] for c in helpers.tc_classes(direct_link["wire"], port) if c["kind"] == "htb"]
        assert rates == [10_000_000_000 // SCALE], (port, rates)


def _bands(lab, gpus_per_host: int, title: str) -> None:
    """ROUNDS sweeps; every size in BAND in NEED of ROUNDS rounds."""
    samples = {size: [] for size in SIZES}
    for round_ in range(ROUNDS):
        rows = [run_sweep(lab, "allreduce", "ring", [size], iters=ITERS_BY_SIZE[size], warmup=1,
                          gpus_per_host=gpus_per_host)[0] for size in SIZES]
        print(format_table(rows, title=f"{title}, round {round_ + 1}"))
        for row in rows:
            assert row["ranks"] == 8 and row["correct"] and row["scale"] == lab.scale, row
            samples[row["bytes"]].append((_median_us(row), row["model_time_us"], row["engine_cpu_share"],
                                          row["verdict"]))
    failures, unjudged = [], []
    for size, samples_ in samples.items():
        ratios = [m / model for m, model, _, _ in samples_]
        verdicts = [v for _, _, _, v in samples_]
        # out of band is honest only when the row's own verdict said the machine distorted it
        inside, honest = helpers.in_band_or_flagged(ratios, verdicts, *BAND)
        print(f"{title}, {size // MIB} MiB: expected (model) {samples_[0][1]:.0f} us, measured "
              + ", ".join(f"{m:.0f}" for m, _, _, _ in samples_) + " us, ratios "
              + ", ".join(f"{r:.2f}" for r in ratios) + " (engine CPU share "
              + ", ".join(f"{c:.2f}" for _, _, c, _ in samples_) + f"), verdicts {verdicts}, "
              f"bounds {BAND}, need {NEED} of {ROUNDS} in band or flagged")
        if honest >= NEED and inside == 0:
            unjudged.append(f"{size // MIB} MiB (ratios {[round(r, 2) for r in ratios]}, verdicts {verdicts})")
        if honest < NEED:
            failures.append(f"{size // MIB} MiB: model {samples_[0][1]:.0f} us, measured "
                            f"{[round(m) for m, _, _, _ in samples_]} us, ratios {[round(r, 2) for r in ratios]}, "
                            f"verdicts {verdicts}, engine CPU {[c for _, _, c, _ in samples_]}, bounds {BAND}")
    assert not failures, "; ".join(failures)
    if unjudged:  # honest, but the machine was too busy to test the model at these sizes
        pytest.skip("every sample flagged by its own verdict, none in band: " + "; ".join(unjudged))


def test_ring_allreduce_8_ranks_on_2_gpu_hosts_over_direct_matches_the_model(direct_gpu_hosts):
    _bands(direct_gpu_hosts, 4, f"ring allreduce, 8 ranks on 2 hosts x 4, direct, scale {SCALE}")


def test_ring_allreduce_8_single_gpu_hosts_over_direct_matches_the_model(direct):
    _bands(direct, 1, f"ring allreduce, 8 hosts x 1, direct, scale {SCALE}")


def test_transit_over_direct_time_ratio_is_reported(direct, transit):
    size = 4 * MIB
    d = run_sweep(direct, "allreduce", "ring", [size], iters=3, warmup=1)[0]
    t = run_sweep(transit, "allreduce", "ring", [size], iters=3, warmup=1)[0]
    ratio = _median_us(t) / _median_us(d)
    model_ratio = t["model_time_us"] / d["model_time_us"]
    print(f"ring allreduce 4 MiB, 8 ranks: transit {_median_us(t):.0f} us / direct {_median_us(d):.0f} us "
          f"= {ratio:.1f} (model {model_ratio:.1f})")
    assert d["correct"] and t["correct"]
    assert ratio > 2, "transit (5 hops of internet delay) must be far slower than the 1 ms interconnect"


def test_hierarchical_beats_flat_ring_across_two_sites_over_transit(transit):
    """Flat ring: 14 steps each waiting on the WAN; hierarchical: 2 WAN steps."""
    size = 16 * MIB
    wins = []
    for _ in range(ROUNDS):
        ring = run_sweep(transit, "allreduce", "ring", [size], iters=3, warmup=1)[0]
        hier = run_sweep(transit, "allreduce", "hierarchical", [size], iters=3, warmup=1)[0]
        assert ring["correct"] and hier["correct"]
        print(format_table([ring, hier], title="allreduce 16 MiB over transit, 8 ranks in 2 sites"))
        wins.append(_median_us(hier) < _median_us(ring))
    assert sum(wins) >= NEED, f"hierarchical faster in only {sum(wins)} of {ROUNDS} rounds"
