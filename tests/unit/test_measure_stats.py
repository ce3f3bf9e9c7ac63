"""summarize() and rfc3550_jitter() on hand-worked numbers."""

import math

import pytest

from testbed.measure.stats import SUMMARY_KEYS, rfc3550_jitter, summarize


def test_summary_of_four_samples_matches_hand_computation():
    result = summarize([4.0, 1.0, 3.0, 2.0])
    assert result["count"] == 4
    assert result["min"] == 1.0
    assert result["max"] == 4.0
    assert result["mean"] == pytest.approx(2.5)
    assert result["p50"] == pytest.approx(2.5)
    # linear interpolation: rank 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
    assert result["p90"] == pytest.approx(3.7)
    assert result["p99"] == pytest.approx(3.97)
    # population stdev: sqrt(((1.5^2 + 0.5^2) * 2) / 4) = sqrt(1.25)
    assert result["stdev"] == pytest.approx(math.sqrt(1.25))


def test_summary_has_exactly_the_documented_keys_and_plain_types():
    result = summarize([0.5, 0.25])
    assert tuple(result) == SUMMARY_KEYS
    assert type(result["count"]) is int
    assert all(type(result[key]) is float for key in SUMMARY_KEYS[1:])


def test_single_sample_has_zero_stdev():
    result = summarize([7.25])
    assert result["count"] == 1
    assert result["min"] == result["p99"] == result["max"] == 7.25
    assert result["stdev"] == 0.0


def test_empty_series_gives_count_zero_and_none():
    result = summarize([])
    assert result["count"] == 0
    assert all(result[key] is None for key in SUMMARY_KEYS[1:])


def test_generator_input_is_accepted():
    assert summarize(x / 2 for x in range(5))["max"] == 2.0


def test_non_finite_samples_are_rejected():
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_rfc3550_jitter_hand_worked():
    # D = 2, 1, 4; J = 2/16 = 0.125; J += (1 - 0.125)/16 -> 0.1796875;
    # J += (4 - 0.1796875)/16 -> 0.41845703125
    assert rfc3550_jitter([10.0, 12.0, 11.0, 15.0]) == pytest.approx(0.41845703125)


def test_rfc3550_jitter_uses_absolute_difference():
    assert rfc3550_jitter([5.0, 3.0]) == pytest.approx(2.0 / 16)
    assert rfc3550_jitter([3.0, 5.0]) == pytest.approx(2.0 / 16)


def test_rfc3550_jitter_constant_transit_is_zero_whatever_the_offset():
    assert rfc3550_jitter([80.0] * 50) == 0.0


def test_rfc3550_jitter_converges_to_constant_step():
    # alternating +-1 ms: |D| is always 1, J tends to 1 from below
    series = [0.0, 1.0] * 200
    assert 0.99 < rfc3550_jitter(series) <= 1.0


def test_rfc3550_jitter_short_series():
    assert rfc3550_jitter([]) == 0.0
    assert rfc3550_jitter([12.5]) == 0.0
