"""Accuracy of the userspace delay line: delay, jitter, random and bursty loss.

Each accuracy figure is judged on repeated samples (at least 2 of 3 in
tolerance); a failure prints expected, every measured value and both bounds.
The figures are computed here from raw samples (ping RTTs, per-probe
sequence numbers and one-way delays), not taken from the runners' summaries,
and the statistics come from :mod:`helpers`.

* delay: idle ping RTT mean within 0.3 ms of twice the one-way delay plus the
  machine's measured baseline (``link_baseline``: the unshaped path's RTT,
  pinged at the same time, its mean and minimum, and the spread of such
  means), and upward the delay element's own lateness once per direction:
  how late the machine woke a thread during that very ping run
  (``helpers.WakeupLateness``). Hundredths of a ms on real hardware, where
  the tight bound stands; ms in a VM without KVM;
* jitter: one-way delay standard deviation within 15 % of ``jitter`` (added in
  quadrature to the unshaped path's own stdev, ``link_baseline``, and upward
  to the spread of the wake-up lateness during the run) from probes spaced
  well above it, and no probe reordered (reorder is off);
* loss: lost probes inside the 95 % binomial interval at 1 %;
* Gilbert-Elliott: mean length of runs of consecutive lost sequence numbers
  within 15 % of the model's mean burst ``1/r`` (= ``loss_burst``);
* both loss tests send probes no faster than the unshaped path carried
  without losing one (``link_baseline.probe_interval_ms``), and a run in
  which more probes went missing than the delay element itself dropped (its
  own counters; netem's qdisc drops) is repeated at half the rate: a machine
  that drops probes itself lengthens the model's bursts;
* reorder: the share of probes sent without the delay inside the 95 %
  binomial interval at ``reorder`` (netem's semantics, both backends).

Measuring both directions at once (``run_both``) gives two independent
samples per run: each direction is its own queue with its own random stream.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Tuple

import json

import pytest

import helpers
from testbed.measure import RUNNERS

pytestmark = pytest.mark.integration

DELAY_TOLERANCE_MS = 0.3
JITTER_TOLERANCE = 0.15
BURST_TOLERANCE = 0.15
MAX_PROBE_INTERVAL_MS = 4.0


def _warm_up(lab) -> None:
    """An exchange each way so ARP is resolved before anything is timed. Ten pings, one
    reply needed: on a lossy link (5 % Gilbert-Elliott in bursts of 4) two pings and
    their ARP were all lost once (the stock-kernel lane, 7 December)."""
    h1, h2 = lab.node("h1"), lab.node("h2")
    RUNNERS["ping"].run(h1, h2, count=10, interval_s=0.02, timeout_s=2.0)


def _both_directions(run: Callable[[], dict]) -> Callable[[], Tuple[dict, str]]:
    """A measure() that hands out forward, then reverse, of one ``run_both`` call."""
    pending: List[Tuple[dict, str]] = []

    def next_sample() -> Tuple[dict, str]:
        if not pending:
            result = run()
            pending.extend([(result["forward"], "h1->h2"), (result["reverse"], "h2->h1")])
        return pending.pop(0)
    return next_sample


def _element_drops(lab) -> Dict[str, int]:
    """Packets the link's delay element itself dropped so far, per direction ("forward":
    h1 -> h2): the userspace line's own counters, netem's qdisc drops (``tc -s``) on the
    wire port each direction leaves by."""
    if lab.backend == "userspace":
        out = {"forward": 0, "reverse": 0}
        for doc in lab.delay_line_stats():
            for q in doc["queues"]:
                out[q["direction"]] += q["dropped_loss"] + q.get("dropped_queue", 0)
        return out
    wire = f"tb.{lab.name}._w0"
    out = {}
    for direction, port in (("forward", "port-b"), ("reverse", "port-a")):
        text = helpers.run_cmd(["tc", "-s", "-json", "-n", wire, "qdisc", "show", "dev", port]).stdout
        out[direction] = sum(q.get("drops", 0) for q in json.loads(text or "[]"))
    return out


def _probes_at_a_sustained_rate(lab, count: int, interval_ms: float, port: int):
    """``run_both`` probes; a run in which the machine lost probes itself (more missing in a
    direction than its delay element dropped) is repeated at half the rate, so the losses
    judged are the model's alone. Returns (result, the interval used)."""
    h1, h2 = lab.node("h1"), lab.node("h2")
    while True:
        before = _element_drops(lab)
        result = RUNNERS["owd"].run_both(h1, h2, count=count, interval_ms=interval_ms, port=port)
        after = _element_drops(lab)
        machine = {d: (count - r["received"]) - (after[d] - before[d]) for d, r in result.items()}
        if all(n <= 0 for n in machine.values()) or interval_ms >= MAX_PROBE_INTERVAL_MS:
            return result, interval_ms
        print(f"probes every {interval_ms:g} ms: the machine lost {machine} itself; half the rate")
        interval_ms *= 2


def _received_seqs(result: dict) -> List[int]:
    return [p["seq"] for p in result["packets"]]


def _reordered(result: dict) -> int:
    """First arrivals whose sequence number is below one already seen."""
    seen, highest, count = set(), -1, 0
    for seq in _received_seqs(result):
        if seq in seen:
            continue
        seen.add(seq)
        if seq < highest:
            count += 1
        highest = max(highest, seq)
    return count


# -- delay ---------------------------------------------------------------------

@pytest.mark.parametrize("delay_ms", [5, 40])
def test_ping_rtt_matches_configured_delay(lab_factory, link_baseline, delay_ms):
    lab = lab_factory.create("pair", name=f"it-delay-{delay_ms}",
                             links={"link": {"delay": f"{delay_ms}ms"}})
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")

    def measure():
        # the unshaped path pinged at the same time: the same load on the machine
        with ThreadPoolExecutor(1) as pool, helpers.WakeupLateness() as late:
            unshaped = pool.submit(link_baseline.unshaped_rtt_ms, 50, 0.05)
            result = RUNNERS["ping"].run(h1, h2, count=50, interval_s=0.05, timeout_s=2.0)
            unshaped = unshaped.result()
        samples = result["samples_ms"]
        if len(samples) < 45:
            raise AssertionError(f"only {len(samples)} of 50 pings answered on a lossless link")
        return helpers.mean(samples), (
            f"(min {min(samples):.2f}, max {max(samples):.2f} ms, n={len(samples)}; unshaped "
            f"meanwhile: mean {helpers.mean(unshaped):.3f}, min {min(unshaped):.3f} ms; {late})"), \
            link_baseline.rtt_bounds(2.0 * delay_ms, DELAY_TOLERANCE_MS, late, unshaped,
                                   samples=len(samples))

    helpers.judge_repeated(f"ping RTT over a {delay_ms} ms one-way link ({link_baseline})",
                           measure, unit=" ms")


# -- jitter --------------------------------------------------------------------

@pytest.mark.parametrize("jitter_ms", [2, 5])
def test_owd_stdev_matches_configured_jitter(lab_factory, link_baseline, jitter_ms):
    lab = lab_factory.create("pair", name=f"it-jitter-{jitter_ms}",
                             links={"link": {"delay": "20ms", "jitter": f"{jitter_ms}ms"}})
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")
    count = 250

    def both():
        with helpers.WakeupLateness() as late:
            result = RUNNERS["owd"].run_both(h1, h2, count=count, interval_ms=20.0, port=5311)
        return {d: (r, late) for d, r in result.items()}
    next_sample = _both_directions(both)
    reorders = []

    def measure():
        (result, late), direction = next_sample()
        samples = result["samples_ms"]
        if len(samples) < count * 0.98:
            raise AssertionError(f"{direction}: {len(samples)} of {count} probes arrived")
        reorders.append((direction, _reordered(result)))
        return helpers.stdev(samples), (
            f"{direction} (mean {helpers.mean(samples):.2f} ms, n={len(samples)}; {late})"), \
            link_baseline.jitter_bounds(jitter_ms, JITTER_TOLERANCE, late)

    helpers.judge_repeated(f"one-way delay stdev with jitter {jitter_ms} ms ({link_baseline})",
                           measure, unit=" ms")
    assert all(n == 0 for _d, n in reorders), f"reordered probes with reorder off: {reorders}"


# -- loss ------------------------------------------------------------------------

def test_random_loss_within_binomial_interval(lab_factory, link_baseline):
    lab = lab_factory.create("pair", name="it-loss", links={"link": {"loss": "1%"}})
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")
    count = 5000
    low, high = helpers.binomial_interval(count, 0.01, 0.95)
    rate = {"interval_ms": max(0.5, link_baseline.probe_interval_ms)}

    def both():
        result, rate["interval_ms"] = _probes_at_a_sustained_rate(lab, count, rate["interval_ms"], 5321)
        return result
    next_sample = _both_directions(both)

    def measure():
        result, direction = next_sample()
        lost = count - len(set(_received_seqs(result)))
        return float(lost), f"{direction} (of {count} probes, one every {rate['interval_ms']:g} ms)"

    helpers.judge_repeated("probes lost at 1 % random loss", measure, count * 0.01,
                           low, high, unit=" lost")


def test_gilbert_elliott_mean_burst_length(lab_factory, link_baseline):
    burst_pkts = 4
    lab = lab_factory.create("pair", name="it-ge", links={"link": {
        "loss": "5%", "loss_model": "gilbert-elliott", "loss_burst": str(burst_pkts)}})
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")
    count = 16000  # ~ count * 5 % / 4 = 200 bursts per sample
    rate = {"interval_ms": max(0.25, link_baseline.probe_interval_ms)}

    def both():
        result, rate["interval_ms"] = _probes_at_a_sustained_rate(lab, count, rate["interval_ms"], 5331)
        return result
    next_sample = _both_directions(both)

    def measure():
        result, direction = next_sample()
        bursts = helpers.loss_bursts(_received_seqs(result), count)
        if len(bursts) < 120:
            raise AssertionError(f"{direction}: only {len(bursts)} loss bursts in {count} probes")
        lost = sum(bursts)
        return helpers.mean(bursts), (
            f"{direction} ({len(bursts)} bursts, {100.0 * lost / count:.2f} % lost, "
            f"a probe every {rate['interval_ms']:g} ms)")

    helpers.judge_repeated("Gilbert-Elliott mean loss burst", measure, float(burst_pkts),
                           burst_pkts * (1 - BURST_TOLERANCE), burst_pkts * (1 + BURST_TOLERANCE),
                           unit=" packets")
    stats = lab.delay_line_stats()
    kernel_drops = sum(q.get("dropped_queue", 0) for d in stats for q in d.get("queues", []))
    assert kernel_drops == 0, f"NFQUEUE overflowed ({kernel_drops} drops): bursts not the model's"


# -- reorder -----------------------------------------------------------------------

def test_reorder_sends_the_configured_share_at_once(lab_factory):
    """netem's ``reorder``: that share of packets is sent without the delay, overtaking
    the ones held before it; the rest keep the delay. A probe that arrived in less than
    half the delay was sent at once (a held one never arrives before the delay; a
    machine whose own one-way delay reaches half of it -- 20 ms -- would misread a
    few sent at once as held); their number among the first ``judged`` probes
    received (by sequence number) lies in the 95 % binomial interval at the configured
    share (both backends; docs/parity.md)."""
    delay_ms, reorder_pct, count, judged = 40.0, 10.0, 2000, 1900
    lab = lab_factory.create("pair", name="it-reorder", links={"link": {
        "delay": f"{delay_ms:g}ms", "reorder": f"{reorder_pct:g}%"}})
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")
    next_sample = _both_directions(
        lambda: RUNNERS["owd"].run_both(h1, h2, count=count, interval_ms=4.0, port=5351))
    low, high = helpers.binomial_interval(judged, reorder_pct / 100.0, 0.95)

    def measure():
        result, direction = next_sample()
        first = {}
        for p in result["packets"]:
            first.setdefault(p["seq"], p["owd_ms"])
        if len(first) < judged:
            raise AssertionError(f"{direction}: {len(first)} of {count} probes arrived")
        owds = [first[seq] for seq in sorted(first)[:judged]]
        at_once = sum(1 for owd in owds if owd < delay_ms / 2)
        return float(at_once), (
            f"{direction}: {100.0 * at_once / judged:.2f} % sent at once; "
            f"{result['reordered']} of {len(first)} probes overtaken")

    helpers.judge_repeated(f"probes of {judged} sent at once with reorder {reorder_pct:g} %",
                           measure, judged * reorder_pct / 100.0, low, high, unit=" probes")


@pytest.mark.userspace
def test_releases_are_not_held_by_stats(lab_factory):
    """With a busy queue, releases stay on time once the line's statistics are full:
    no worse than the same line before they filled, and at rest at most 0.5 % of
    probes over 3 ms late and none over 10 ms.

    2000 probes 1 ms apart are timed on the fresh line (the baseline: this
    machine's own lateness at this moment), then 20000 probes each way fill the
    line's lateness statistics (what made its periodic statistics write slow),
    then 2000 probes 1 ms apart again: the queue is never empty, so every pause
    of the release loop delays probes. Measured here with the stats-write stall:
    up to 11 ms late, 3 % of probes over 3 ms; with the periodic write
    disabled: at most 4.1 ms, 0-0.3 % over 3 ms. A loaded machine is late
    without any stall (CI: 2 % over 3 ms, worst 9.3 ms), so the limits grow
    with the baseline measured in the same run: the share over 3 ms may be
    twice the baseline's plus 0.5 %, the worst 1.5 times the baseline's (at
    least 10 ms). Receive times are the kernel's, so the receiving process's
    own wake-up is not in the figures.
    """
    delay_ms, late_ms, share_limit = 40.0, 3.0, 0.005
    lab = lab_factory.create("pair", name="it-stats", links={"link": {"delay": f"{delay_ms:g}ms"}},
                             backend="userspace")
    _warm_up(lab)
    h1, h2 = lab.node("h1"), lab.node("h2")
    count = 2000

    def lateness(port: int) -> Tuple[Dict[str, float], Dict[str, int]]:
        result = RUNNERS["owd"].run_both(h1, h2, count=count, interval_ms=1.0, port=port)
        worst = {d: round(max(r["samples_ms"]) - delay_ms, 3) for d, r in result.items()}
        over = {d: sum(1 for x in r["samples_ms"] if x > delay_ms + late_ms) for d, r in result.items()}
        return worst, over

    base_worst, base_over = lateness(5340)
    RUNNERS["owd"].run_both(h1, h2, count=20000, interval_ms=0.1, port=5341)
    worst, over = lateness(5342)
    worst_limit_ms = max(10.0, 1.5 * max(base_worst.values()))
    over_limit = share_limit * count + 2 * max(base_over.values())
    report = (f"late releases with full statistics: worst {worst} ms (limit {worst_limit_ms:g} ms); "
              f"probes over {late_ms} ms late {over} of {count} each (limit {over_limit:g}); "
              f"on the fresh line: worst {base_worst} ms, over {late_ms} ms {base_over}")
    print(report)
    assert all(w <= worst_limit_ms for w in worst.values()) and all(
        n <= over_limit for n in over.values()), report
