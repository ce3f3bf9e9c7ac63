"""Per-packet random draws of the userspace delay line: delay and loss models.

Pure Python (``random.Random``, seeded), cheap per call, no kernel: the delay
line calls one ``sample`` per packet, so these are unit-tested on their own.

Delay: ``delay_ms + jitter``, where the jitter has standard deviation
``jitter_ms`` and one of four shapes. Correlation ``rho`` (``correlation_pct``
/ 100) is a true AR(1) process on an underlying standard normal
``z_n = rho z_{n-1} + sqrt(1 - rho^2) e_n``, so the marginal distribution and
its standard deviation stay what was configured (netem's own correlation
shrinks the variance; ours does not). The normal draw is mapped to the
chosen shape through its CDF:

* ``normal``: ``jitter_ms * z``;
* ``uniform``: uniform on ``[-sqrt(3) s, +sqrt(3) s]``;
* ``pareto``: Pareto with shape 3 (finite variance), shifted to mean 0 and
  scaled to standard deviation ``s`` -- a long tail of late packets;
* ``paretonormal``: ``sqrt(1/4)`` normal plus ``sqrt(3/4)`` pareto parts
  (independent), the blend netem's paretonormal table stands for, scaled to
  standard deviation ``s``.

A packet's delay is never negative (clamped at 0).

Loss: ``random`` (independent, probability ``loss_pct``/100) or
``gilbert-elliott`` (two-state Markov chain with netem's p, r, 1-h, 1-k).
"""

from __future__ import annotations

import math
import random
from typing import Optional

__all__ = ["PacketModels", "DelaySampler", "RandomLoss", "GilbertElliottLoss", "make_loss", "Bernoulli"]

PARETO_SHAPE = 3.0
_PARETO_MEAN = PARETO_SHAPE / (PARETO_SHAPE - 1)  # x_m = 1
_PARETO_SD = math.sqrt(PARETO_SHAPE / ((PARETO_SHAPE - 1) ** 2 * (PARETO_SHAPE - 2)))
_SQRT3 = math.sqrt(3.0)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _std_pareto(u: float) -> float:
    """Standardised (mean 0, sd 1) Pareto quantile at u in (0, 1)."""
    u = min(max(u, 1e-12), 1 - 1e-12)
    x = (1.0 - u) ** (-1.0 / PARETO_SHAPE)
    return (x - _PARETO_MEAN) / _PARETO_SD


class DelaySampler:
    """Draws per-packet delays in milliseconds."""

    DISTRIBUTIONS = ("normal", "uniform", "pareto", "paretonormal")

    def __init__(
        self,
        delay_ms: float,
        jitter_ms: float = 0.0,
        distribution: str = "normal",
        correlation_pct: float = 0.0,
        rng: Optional[random.Random] = None,
    ):
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"unknown jitter distribution {distribution!r}")
        self.delay_ms = float(delay_ms)
        self.jitter_ms = float(jitter_ms)
        self.distribution = distribution
        self.rho = float(correlation_pct) / 100.0
        self._innov = math.sqrt(max(0.0, 1.0 - self.rho * self.rho))
        self.rng = rng or random.Random()
        self._z = self.rng.gauss(0.0, 1.0)

    def _next_z(self) -> float:
        self._z = self.rho * self._z + self._innov * self.rng.gauss(0.0, 1.0)
        return self._z

    def sample(self) -> float:
        if self.jitter_ms <= 0.0:
            return self.delay_ms
        z = self._next_z()
        dist = self.distribution
        if dist == "normal":
            j = z
        elif dist == "uniform":
            j = _SQRT3 * (2.0 * _phi(z) - 1.0)
        elif dist == "pareto":
            j = _std_pareto(_phi(z))
        else:  # paretonormal
            j = 0.5 * z + math.sqrt(0.75) * _std_pareto(self.rng.random())
        return max(0.0, self.delay_ms + self.jitter_ms * j)


class Bernoulli:
    """True with probability ``pct``/100."""

    def __init__(self, pct: float, rng: random.Random):
        self.p = float(pct) / 100.0
        self.rng = rng

    def __call__(self) -> bool:
        return self.p > 0.0 and self.rng.random() < self.p


class RandomLoss(Bernoulli):
    """Independent loss with probability ``loss_pct``/100."""


class GilbertElliottLoss:
    """Gilbert-Elliott loss: good/bad states, netem's (p, r, h, k) in 0..1.

    p: P(good -> bad); r: P(bad -> good); 1-h: loss probability in bad;
    1-k: loss probability in good. Stationary loss rate:
    ``(r (1-k) + p (1-h)) / (p + r)``.
    """

    def __init__(self, p: float, r: float, h: float, k: float, rng: random.Random):
        self.p, self.r, self.h, self.k = p, r, h, k
        self.rng = rng
        self.bad = False

    def __call__(self) -> bool:
        rng = self.rng
        if self.bad:
            if rng.random() < self.r:
                self.bad = False
        elif rng.random() < self.p:
            self.bad = True
        keep = self.h if self.bad else self.k
        return rng.random() >= keep

    @property
    def mean_loss(self) -> float:
        return (self.r * (1 - self.k) + self.p * (1 - self.h)) / (self.p + self.r)


def make_loss(model: str, loss_pct: float, ge_params: Optional[dict], rng: random.Random):
    """The loss decider for a profile: callable returning True to drop."""
    if model == "gilbert-elliott" and loss_pct > 0:
        return GilbertElliottLoss(rng=rng, **ge_params)
    return RandomLoss(loss_pct, rng)


class PacketModels:
    """Every per-packet draw of one queue, from its profile document and seed.

    Both delay-line engines build their models here, in one order from one
    generator, so the same seed gives the same packet fates in either engine.
    """

    def __init__(self, prof: dict, seed: Optional[int]):
        rng = random.Random(seed)
        self.delay = DelaySampler(
            prof.get("delay_ms", 0.0), prof.get("jitter_ms", 0.0),
            prof.get("jitter_distribution", "normal"), prof.get("correlation_pct", 0.0), rng,
        )
        self.lose = make_loss(prof.get("loss_model", "random"), prof.get("loss_pct", 0.0),
                              prof.get("ge"), rng)
        self.duplicate = Bernoulli(prof.get("duplicate_pct", 0.0), rng)
        self.corrupt = Bernoulli(prof.get("corrupt_pct", 0.0), rng)
        self.reorder = Bernoulli(prof.get("reorder_pct", 0.0), rng)
        self.rng = rng
