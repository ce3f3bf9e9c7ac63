"""The delay line's lateness histogram: percentiles err late by at most one bin."""

import random

import pytest

from testbed.delayline.latehist import GROWTH, LatenessHistogram


def test_empty_histogram_has_no_percentiles():
    hist = LatenessHistogram()
    assert hist.percentile_s(0.5) is None
    assert hist.total == 0


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_percentiles_within_one_bin_above_exact(fraction):
    rng = random.Random(7)
    samples = [rng.expovariate(1 / 0.0002) for _ in range(50_000)]
    hist = LatenessHistogram()
    for value in samples:
        hist.add(value)
    exact = sorted(samples)[int(fraction * len(samples)) - 1]
    got = hist.percentile_s(fraction)
    assert exact <= got <= exact * GROWTH * GROWTH, (fraction, exact, got)


def test_max_and_tiny_values():
    hist = LatenessHistogram()
    for value in (0.0, 5e-7, 0.003, 12.5):
        hist.add(value)
    assert hist.max_s == 12.5
    assert hist.percentile_s(1.0) == 12.5
    assert hist.percentile_s(0.25) <= 1e-6
