"""Statistical unit tests for testbed.delayline.sampling (seeded, no kernel).

Every test draws a large seeded sample and compares it with the configured
value within a tolerance of several standard errors (worked out in each test),
so a correct sampler passes for any seed while a wrong scale, shape, offset or
correlation fails. Failures print expected, measured and both bounds.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import List, Sequence

import pytest

from testbed.delayline import sampling
from testbed.delayline.sampling import (
    PARETO_SHAPE,
    DelaySampler,
    GilbertElliottLoss,
    RandomLoss,
    make_loss,
)
from testbed.profile import LinkProfile

N_SAMPLES = 200_000
N_LOSS_SAMPLES = 1_000_000
DELAY_MS = 100.0  # delay >> jitter: the clamp at 0 never acts (20 sigma)
JITTER_MS = 5.0


# ----------------------------------------------------------------- helpers


def _within(name: str, measured: float, expected: float, tolerance: float) -> None:
    low, high = expected - tolerance, expected + tolerance
    assert low <= measured <= high, (
        f"{name}: expected {expected:.6g}, measured {measured:.6g}, "
        f"bounds [{low:.6g}, {high:.6g}]"
    )


def _draw(sampler: DelaySampler, n: int = N_SAMPLES) -> List[float]:
    return [sampler.sample() for _ in range(n)]


def _lag1_autocorrelation(xs: Sequence[float]) -> float:
    mean = statistics.fmean(xs)
    dev = [x - mean for x in xs]
    num = sum(a * b for a, b in zip(dev, dev[1:]))
    den = sum(d * d for d in dev)
    return num / den


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))]


def _std_pareto_quantile(q: float) -> float:
    """Quantile of Pareto(shape 3, x_m 1) standardised to mean 0, sd 1."""
    mean = PARETO_SHAPE / (PARETO_SHAPE - 1)
    sd = math.sqrt(PARETO_SHAPE / ((PARETO_SHAPE - 1) ** 2 * (PARETO_SHAPE - 2)))
    return ((1 - q) ** (-1 / PARETO_SHAPE) - mean) / sd


def _runs(flags: Sequence[bool]) -> List[int]:
    """Lengths of the runs of consecutive True values."""
    runs, current = [], 0
    for flag in flags:
        if flag:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def test_all_names_exist():
    for name in sampling.__all__:
        assert hasattr(sampling, name), name


# ------------------------------------------------------------ delay: shapes

# Standard errors at n = 200k, jitter 5 ms: mean 5/sqrt(n) = 0.011 ms; sd of a
# normal or uniform sample about 5/sqrt(2n) = 0.008 ms. Tolerances below are
# 5+ standard errors. Pareto with shape 3 has an infinite fourth moment, so
# its sample sd converges slowly (measured spread over 20 seeds: 4.69..5.32
# ms at n = 200k): its sd gets a 12 % band, and its shape is pinned by
# quantiles instead, which converge fast.
MEAN_TOL_MS = 0.06
SD_TOL_MS = 0.05
HEAVY_TAIL_SD_TOL_MS = 0.12 * JITTER_MS


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_light_tailed_mean_and_stdev(distribution):
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, distribution, 0.0, random.Random(11)))
    _within(f"{distribution} mean", statistics.fmean(xs), DELAY_MS, MEAN_TOL_MS)
    _within(f"{distribution} stdev", statistics.pstdev(xs), JITTER_MS, SD_TOL_MS)


@pytest.mark.parametrize("distribution", ["pareto", "paretonormal"])
def test_heavy_tailed_mean_and_stdev(distribution):
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, distribution, 0.0, random.Random(12)))
    _within(f"{distribution} mean", statistics.fmean(xs), DELAY_MS, MEAN_TOL_MS)
    _within(f"{distribution} stdev", statistics.pstdev(xs), JITTER_MS, HEAVY_TAIL_SD_TOL_MS)


def test_normal_shape_one_sigma_fraction():
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, "normal", 0.0, random.Random(13)))
    inside = sum(1 for x in xs if abs(x - DELAY_MS) <= JITTER_MS) / len(xs)
    # P(|Z| <= 1) = 0.6827; binomial se = sqrt(.68 * .32 / 200k) = 0.001
    _within("fraction within 1 sigma", inside, math.erf(1 / math.sqrt(2)), 0.005)


def test_uniform_shape_is_bounded_and_flat():
    xs = sorted(_draw(DelaySampler(DELAY_MS, JITTER_MS, "uniform", 0.0, random.Random(14))))
    half_width = math.sqrt(3) * JITTER_MS  # sd of U(-w, w) is w / sqrt(3)
    assert DELAY_MS - half_width - 1e-9 <= xs[0] and xs[-1] <= DELAY_MS + half_width + 1e-9, (
        f"uniform samples {xs[0]:.4f}..{xs[-1]:.4f} outside "
        f"[{DELAY_MS - half_width:.4f}, {DELAY_MS + half_width:.4f}]"
    )
    # flat: the q-quantile sits at delay - w + 2 w q (quantile se about 0.02 ms)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        expected = DELAY_MS - half_width + 2 * half_width * q
        _within(f"uniform quantile {q}", _quantile(xs, q), expected, 0.1)


def test_pareto_shape_quantiles_and_long_late_tail():
    xs = sorted(_draw(DelaySampler(DELAY_MS, JITTER_MS, "pareto", 0.0, random.Random(15))))
    for q in (0.1, 0.5, 0.9, 0.99):
        expected = DELAY_MS + JITTER_MS * _std_pareto_quantile(q)
        # quantile se at n = 200k: 0.005 ms at q = 0.5, 0.2 ms at q = 0.99
        tolerance = 0.01 * JITTER_MS + 0.05 * abs(expected - DELAY_MS)
        _within(f"pareto quantile {q}", _quantile(xs, q), expected, tolerance)
    # a long tail of LATE packets: nothing arrives earlier than the Pareto
    # minimum (x_m = 1, i.e. mean - 0.577 sd), many arrive far later
    earliest = DELAY_MS + JITTER_MS * _std_pareto_quantile(0.0)
    assert xs[0] >= earliest - 1e-9, f"earliest {xs[0]:.4f} below Pareto minimum {earliest:.4f}"
    assert xs[-1] - DELAY_MS > 10 * JITTER_MS, f"no long tail: max {xs[-1]:.3f} ms"


def test_paretonormal_is_skewed_late():
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, "paretonormal", 0.0, random.Random(16)))
    mean, median = statistics.fmean(xs), statistics.median(xs)
    # Normal part 0.5 z, Pareto part sqrt(.75) p: median below the mean (right
    # skew) but less so than pure Pareto (median - mean = -0.28 sd there).
    assert median < mean - 0.05 * JITTER_MS, f"median {median:.4f} not below mean {mean:.4f}"
    assert median > mean - 0.25 * JITTER_MS, f"median {median:.4f} too far below mean {mean:.4f}"
    # it has normal-shaped early samples: some earlier than the pure Pareto minimum
    pareto_floor = DELAY_MS + JITTER_MS * _std_pareto_quantile(0.0)
    assert min(xs) < pareto_floor, "paretonormal has no normal part below the Pareto floor"


@pytest.mark.parametrize("distribution", DelaySampler.DISTRIBUTIONS)
def test_zero_jitter_gives_the_delay_exactly(distribution):
    sampler = DelaySampler(7.5, 0.0, distribution, 50.0, random.Random(1))
    assert {sampler.sample() for _ in range(1000)} == {7.5}


def test_delay_is_clamped_at_zero():
    xs = _draw(DelaySampler(1.0, 5.0, "normal", 0.0, random.Random(2)), 50_000)
    assert min(xs) == 0.0
    # P(1 + 5 z < 0) = P(z < -0.2) = 0.4207 of the samples are clamped
    _within("clamped fraction", sum(1 for x in xs if x == 0.0) / len(xs), 0.4207, 0.01)


def test_unknown_distribution_rejected():
    with pytest.raises(ValueError, match="bogus"):
        DelaySampler(10.0, 1.0, "bogus")


def test_same_seed_same_sequence_other_seed_different():
    def seq(seed: int) -> List[float]:
        return _draw(DelaySampler(DELAY_MS, JITTER_MS, "pareto", 25.0, random.Random(seed)), 100)

    assert seq(5) == seq(5)
    assert seq(5) != seq(6)


# -------------------------------------------------------- delay: correlation


@pytest.mark.parametrize("correlation_pct", [0.0, 25.0, 50.0, 90.0])
def test_normal_lag1_autocorrelation_equals_correlation(correlation_pct):
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, "normal", correlation_pct, random.Random(21)))
    rho = correlation_pct / 100
    # se of the lag-1 autocorrelation of an AR(1) is about sqrt((1 - rho^2) / n) <= 0.0023
    _within("lag-1 autocorrelation", _lag1_autocorrelation(xs), rho, 0.012)


def test_correlation_keeps_the_configured_stdev():
    # netem's correlation shrinks the variance; ours is a true AR(1) and must not.
    # rho 0.75: effective n = n (1 - rho)/(1 + rho) = 28.6k, se(mean) 0.03 ms,
    # se(sd) about 0.03 ms.
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, "normal", 75.0, random.Random(22)))
    _within("correlated mean", statistics.fmean(xs), DELAY_MS, 0.15)
    _within("correlated stdev", statistics.pstdev(xs), JITTER_MS, 0.15)


def test_uniform_correlation_follows_the_gaussian_copula():
    # U = Phi(Z) with corr(Z_n, Z_n+1) = rho has Pearson correlation
    # (6 / pi) asin(rho / 2) (Spearman's rho of the Gaussian copula).
    xs = _draw(DelaySampler(DELAY_MS, JITTER_MS, "uniform", 50.0, random.Random(23)))
    expected = 6 / math.pi * math.asin(0.25)
    _within("uniform lag-1 autocorrelation", _lag1_autocorrelation(xs), expected, 0.012)
    _within("uniform stdev with correlation", statistics.pstdev(xs), JITTER_MS, 0.08)


# --------------------------------------------------------------------- loss


@pytest.mark.parametrize("loss_pct", [0.1, 1.0, 10.0])
def test_random_loss_rate(loss_pct):
    drop = RandomLoss(loss_pct, random.Random(31))
    rate = sum(1 for _ in range(N_SAMPLES) if drop()) / N_SAMPLES
    p = loss_pct / 100
    se = math.sqrt(p * (1 - p) / N_SAMPLES)
    _within(f"random loss rate at {loss_pct}%", rate, p, 5 * se)


def test_random_loss_is_independent():
    drop = RandomLoss(10.0, random.Random(32))
    flags = [drop() for _ in range(N_SAMPLES)]
    # mean run length of a Bernoulli(p) loss process is 1 / (1 - p)
    runs = _runs(flags)
    _within("random loss mean run", statistics.fmean(runs), 1 / 0.9, 0.02)


def test_zero_loss_never_drops():
    drop = RandomLoss(0.0, random.Random(33))
    assert not any(drop() for _ in range(10_000))


def _ge_from_profile(loss_pct: float, burst_pkts: float, seed: int) -> GilbertElliottLoss:
    profile = LinkProfile(
        loss_pct=loss_pct, loss_model="gilbert-elliott", loss_burst_pkts=burst_pkts
    )
    return GilbertElliottLoss(rng=random.Random(seed), **profile.gilbert_elliott_params())


@pytest.mark.parametrize("loss_pct,burst_pkts", [(1.0, 4.0), (5.0, 2.0)])
def test_gilbert_elliott_stationary_rate_and_mean_burst(loss_pct, burst_pkts):
    drop = _ge_from_profile(loss_pct, burst_pkts, seed=41)
    flags = [drop() for _ in range(N_LOSS_SAMPLES)]
    rate = sum(flags) / len(flags)
    runs = _runs(flags)
    # Losses come in bursts, so the rate's se is set by the number of bursts
    # (1% / 4 pkts: 2500 bursts, sd of total lost about 265 of 10000 = 2.6%).
    _within("GE loss rate", rate, loss_pct / 100, 0.1 * loss_pct / 100)
    # The bad state loses every packet: runs of losses are the bad-state
    # sojourns, geometric with mean 1 / r = burst (se about 0.07 pkt at 2500 runs).
    _within("GE mean burst length", statistics.fmean(runs), burst_pkts, 0.08 * burst_pkts)
    assert drop.mean_loss == pytest.approx(loss_pct / 100)


def test_gilbert_elliott_general_parameters_match_mean_loss():
    # partial loss in both states: (r (1-k) + p (1-h)) / (p + r)
    drop = GilbertElliottLoss(p=0.02, r=0.2, h=0.3, k=0.99, rng=random.Random(42))
    expected = (0.2 * 0.01 + 0.02 * 0.7) / 0.22
    assert drop.mean_loss == pytest.approx(expected)
    rate = sum(1 for _ in range(N_SAMPLES) if drop()) / N_SAMPLES
    _within("GE general loss rate", rate, expected, 0.06 * expected)


def test_gilbert_elliott_is_bursty_unlike_random_loss():
    drop = _ge_from_profile(2.0, 8.0, seed=43)
    flags = [drop() for _ in range(N_SAMPLES)]
    # a random loss of 2% would have mean runs of 1 / 0.98 = 1.02 packets
    _within("GE mean burst at 8 pkts", statistics.fmean(_runs(flags)), 8.0, 1.0)


@pytest.mark.parametrize(
    "model,loss_pct,expected_type",
    [
        ("random", 1.0, RandomLoss),
        ("gilbert-elliott", 1.0, GilbertElliottLoss),
        ("gilbert-elliott", 0.0, RandomLoss),
    ],
)
def test_make_loss_picks_the_model(model, loss_pct, expected_type):
    ge = {"p": 0.01, "r": 0.25, "h": 0.0, "k": 1.0}
    drop = make_loss(model, loss_pct, ge, random.Random(0))
    assert type(drop) is expected_type
