"""Scenario options of the steps measured between two endpoints: ping, owd, tcp, udp, path, steady.

One model per step kind, validated strictly (unknown keys refused); names
carry their unit. The step registry (:mod:`testbed.steps.registry`) pairs each
with its runner.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from testbed.fields import CCName, RateText, SizeText, StrictModel
from testbed.units import parse_rate_bps, parse_size_bytes

__all__ = ["PingOptions", "OwdOptions", "TcpOptions", "UdpOptions", "PathOptions", "SteadyOptions"]


class PingOptions(StrictModel):
    """ICMP echo RTT and loss (iputils ping)."""

    count: int = Field(100, ge=1, le=100_000)
    interval_s: float = Field(0.2, ge=0.002, le=60.0)
    size_bytes: int = Field(56, ge=0, le=65_507)


class OwdOptions(StrictModel):
    """Timestamped UDP probes: one-way delay per direction, RFC 3550 jitter."""

    count: int = Field(500, ge=1, le=1_000_000)
    interval_ms: float = Field(10.0, ge=0.1, le=60_000.0)
    size_bytes: int = Field(64, ge=32, le=65_507)


class TcpOptions(StrictModel):
    """iperf3 TCP throughput, retransmits and per-interval rate."""

    duration_s: float = Field(10.0, gt=0, le=3600.0)
    streams: int = Field(1, ge=1, le=128)
    cc: Optional[CCName] = None  # congestion control (e.g. cubic, bbr); host default if None
    window: Optional[SizeText] = None  # socket buffer, e.g. "4MiB"; host default if None

    @property
    def window_bytes(self) -> Optional[int]:
        return None if self.window is None else parse_size_bytes(self.window, "measure.tcp.window")


class UdpOptions(StrictModel):
    """iperf3 UDP at a fixed offered rate: throughput, jitter, loss."""

    duration_s: float = Field(5.0, gt=0, le=3600.0)
    bitrate: RateText = "100Mbit"
    size_bytes: Optional[int] = Field(None, ge=16, le=65_507)  # datagram payload; iperf3 default if None

    @property
    def bitrate_bps(self) -> int:
        return parse_rate_bps(self.bitrate, "measure.udp.bitrate")


class PathOptions(StrictModel):
    """Hop count (TTL-limited probes) and path MTU."""

    max_hops: int = Field(30, ge=1, le=64)


class SteadyOptions(StrictModel):
    """Time to steady throughput: first interval after which the rate stays within tolerance."""

    tolerance_pct: float = Field(10.0, gt=0, le=100.0)
