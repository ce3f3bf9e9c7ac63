"""The suite's own yardsticks (tests/helpers.py): the baseline bounds and how they judge.

The accuracy tests judge "configured plus what this machine adds, measured in
the same run"; these check that arithmetic by hand, so a slow machine's
allowance can only come from what was measured.
"""

from __future__ import annotations

import math

import pytest

import helpers


def _late(samples_ms, period_s=0.002):
    late = helpers.WakeupLateness(period_s)
    late.samples_ms = list(samples_ms)
    return late


def test_lateness_at_a_random_time_weights_stalls_by_their_length():
    # nine ordinary wake-ups 0.1 ms late and one 10 ms stall, 2 ms sleeps
    late = _late([0.1] * 9 + [10.0])
    span = 10 * 2.0 + 9 * 0.1 + 10.0
    m1 = (10 * 2.0 * 0.1 + 9 * 0.1 ** 2 / 2 + 10.0 ** 2 / 2) / span
    m2 = (10 * 2.0 * 0.1 ** 2 + 9 * 0.1 ** 3 / 3 + 10.0 ** 3 / 3) / span
    mean, sd = late.at_random_time_ms()
    assert mean == pytest.approx(m1) and sd == pytest.approx(math.sqrt(m2 - m1 * m1))
    # a packet due at a random moment is far more likely to sit out the stall
    # than one sample in ten suggests
    assert mean > 1.5


def test_no_lateness_adds_nothing():
    late = _late([0.0] * 100)
    assert late.at_random_time_ms() == (0.0, 0.0)
    base = helpers.Baseline(rtt_ms=0.05, spread_ms=0.01, slack_ms=0.5, owd_stdev_ms=0.0,
                            rtt_min_ms=0.04)
    assert base.rtt_bounds(80.0, 0.3, late) == pytest.approx((80.05, 79.74, 80.36))
    assert base.jitter_bounds(2.0, 0.15, late) == pytest.approx((2.0, 1.7, 2.3))


def test_rtt_bound_rises_by_the_measured_lateness_per_direction_only_upward():
    late = _late([0.5] * 100)  # steady: every wake-up 0.5 ms late
    mean, _sd = late.at_random_time_ms()
    base = helpers.Baseline(rtt_ms=0.4, spread_ms=0.1, slack_ms=0.2, rtt_min_ms=0.35)
    expected, low, high = base.rtt_bounds(80.0, 0.3, late)
    # low: the configured RTT plus the path's own floor, less the tolerance
    assert (expected, low) == pytest.approx((80.4, 80.05))
    assert high == pytest.approx(80.4 + 0.4 + 2 * mean)
    # without a measurement during the run: the timer slack measured at rest
    assert base.rtt_bounds(80.0, 0.3)[2] == pytest.approx(80.4 + 0.4 + 0.4)


def test_jitter_bound_adds_the_lateness_spread_in_quadrature_upward():
    late = _late([0.1] * 90 + [6.0] * 10)
    _mean, sd = late.at_random_time_ms()
    base = helpers.Baseline(rtt_ms=0.4, spread_ms=0.1, slack_ms=0.2, owd_stdev_ms=0.6)
    expected, low, high = base.jitter_bounds(5.0, 0.15, late)
    assert expected == pytest.approx(math.hypot(5.0, 0.6))
    assert low == pytest.approx(5.0 * 0.85)  # the machine's spread only adds
    assert high == pytest.approx(math.hypot(expected, sd) * 1.15)


def test_baseline_keeps_the_lowest_rtt_of_its_runs():
    runs = iter([[0.5, 0.4, 0.6], [0.9, 0.35, 1.3], [0.45, 0.5, 0.55]])
    base = helpers.measure_baseline(lambda: next(runs))
    assert base.rtt_ms == pytest.approx(0.5) and base.spread_ms == pytest.approx(0.35)
    assert base.rtt_min_ms == pytest.approx(0.35)
    means = iter([0.5, 0.6, 0.4])
    assert helpers.measure_baseline(lambda: next(means)).rtt_min_ms is None


def test_judge_repeated_with_bounds_measured_per_sample():
    values = iter([(10.0, "a", (9.0, 8.0, 10.5)), (12.0, "b", (9.0, 8.0, 11.0)),
                   (10.9, "c", (10.0, 9.5, 11.0))])
    samples = helpers.judge_repeated("x", lambda: next(values), unit=" ms")
    assert [s.ok for s in samples] == [True, False, True]
    failing = iter([(12.0, "a", (9.0, 8.0, 10.5)), (13.0, "b", (9.0, 8.0, 11.0))])
    with pytest.raises(AssertionError, match=r"measured 13 ms \(expected 9 in \[8, 11\] ms\) OUT OF"):
        helpers.judge_repeated("x", lambda: next(failing), unit=" ms")


def test_lateness_sampler_measures_while_running():
    import time

    with helpers.WakeupLateness(0.001) as late:
        time.sleep(0.05)
    assert len(late.samples_ms) >= 5
    assert all(s > -0.5 for s in late.samples_ms)  # a sleep never ends early


def test_rtt_bounds_from_the_unshaped_path_pinged_meanwhile():
    base = helpers.Baseline(rtt_ms=0.4, spread_ms=0.1, slack_ms=0.2, rtt_min_ms=0.35)
    late = _late([0.0] * 10)
    expected, low, high = base.rtt_bounds(80.0, 0.3, late, unshaped=[1.0, 2.0, 3.0])
    assert (expected, low, high) == pytest.approx((82.0, 80.7, 82.4))


def test_rtt_bound_allows_three_standard_errors_of_the_mean_from_the_lateness_spread():
    # one 10 ms stall among ordinary wake-ups: a mean of few RTTs may catch it by chance
    late = _late([0.3] * 99 + [10.0])
    _mean, sd = late.at_random_time_ms()
    base = helpers.Baseline(rtt_ms=0.4, spread_ms=0.0, slack_ms=0.2, rtt_min_ms=0.35)
    without = base.rtt_bounds(10.0, 0.3, late)[2]
    with_20 = base.rtt_bounds(10.0, 0.3, late, samples=20)[2]
    with_80 = base.rtt_bounds(10.0, 0.3, late, samples=80)[2]
    assert with_20 - without == pytest.approx(3 * math.sqrt(2) * sd / math.sqrt(20))
    assert with_80 - without == pytest.approx((with_20 - without) / 2)  # 1/sqrt(n)
    # a machine that wakes on time (no spread) gains nothing from it
    steady = _late([0.0] * 100)
    assert base.rtt_bounds(10.0, 0.3, steady, samples=20) == base.rtt_bounds(10.0, 0.3, steady)
