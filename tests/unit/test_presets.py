"""Unit tests for testbed.presets and the shipped testbed/data/presets.yaml."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from testbed import presets as presets_module
from testbed.presets import PRESETS_RESOURCE, load_presets, preset_descriptions, preset_names
from testbed.profile import LinkProfile, resolve_link

REQUIRED_PRESETS = ("direct-interconnect", "internet-transit", "metro", "site-fabric")
REQUIRED_FIELDS = ("rate", "delay", "mtu")
SOURCE_MARKERS = ("FACTS", "PRODUCT", "[assumption]")


def _preset_text() -> str:
    folder, name = PRESETS_RESOURCE.split("/")
    return resources.files("testbed").joinpath(folder).joinpath(name).read_text("utf-8")


def test_all_names_exist():
    for name in presets_module.__all__:
        assert hasattr(presets_module, name), name


def test_required_presets_present():
    names = preset_names()
    for name in REQUIRED_PRESETS:
        assert name in names
    assert names == list(load_presets())
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", preset_names())
def test_preset_is_a_valid_profile(name):
    link = LinkProfile.from_user(load_presets()[name], field=f"presets.{name}")
    spec = resolve_link(name, f"links.{name}")
    assert spec.forward == spec.reverse == link
    # round trip through the user form, as results record it
    assert LinkProfile.from_user(link.to_user()) == link


@pytest.mark.parametrize("name", preset_names())
def test_preset_has_required_fields_and_description(name):
    body = load_presets()[name]
    required = ("mtu",) if name == "site-fabric" else REQUIRED_FIELDS
    for field in required:
        assert field in body, f"{name} lacks {field}"
    assert "description" not in body  # stripped by load_presets
    assert len(preset_descriptions()[name]) > 20


@pytest.mark.parametrize("name", preset_names())
def test_preset_values_are_tc_like_strings(name):
    body = load_presets()[name]
    for field in ("rate", "delay", "jitter", "loss"):
        if field in body:
            assert isinstance(body[field], str), f"{name}.{field} should be tc-like text"


def _preset(name: str) -> LinkProfile:
    return LinkProfile.from_user(load_presets()[name], field=f"presets.{name}")


def test_direct_interconnect_shape():
    link = _preset("direct-interconnect")
    assert link.rate_bps >= 10_000_000_000
    assert link.mtu == 9000
    assert link.loss_pct == 0.0
    assert 0 < link.delay_ms <= 2.0
    assert link.jitter_ms < 0.1


def test_internet_transit_shape_per_hop():
    link = _preset("internet-transit")
    assert link.mtu == 1500
    assert 0 < link.loss_pct <= 0.3  # below the NTT SLA in FACTS
    assert link.jitter_ms >= 1.0
    assert 1.0 <= link.delay_ms <= 10.0  # a few ms: one hop of a longer path


def test_site_fabric_shape():
    # unshaped on purpose: faster than the emulator, delay below its resolution
    link = _preset("site-fabric")
    assert link.mtu == 9000
    assert link.rate_bps is None and not link.has_impairment


def test_cross_region_us_is_87ms_rtt():
    spec = resolve_link("cross-region-us", "links.x")
    assert spec.rtt_ms == pytest.approx(87.0)


def test_direct_beats_transit_on_every_axis():
    direct, transit = _preset("direct-interconnect"), _preset("internet-transit")
    assert direct.rate_bps > transit.rate_bps
    assert direct.jitter_ms < transit.jitter_ms
    assert direct.loss_pct < transit.loss_pct
    assert direct.mtu > transit.mtu


def test_every_number_cites_a_source():
    """Each field line is preceded by (or carries) a comment citing FACTS/PRODUCT/[assumption]."""
    comments: list = []
    checked = 0
    for number, line in enumerate(_preset_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        field = re.match(r"^  ([a-z_]+):\s*(.*)$", line)
        if field and field.group(1) != "description":
            cited = comments + ([line.split("#", 1)[1]] if "#" in line else [])
            text = " ".join(cited)
            assert any(m in text for m in SOURCE_MARKERS), (
                f"presets.yaml line {number} ({stripped!r}) has no source comment"
            )
            checked += 1
        comments = []
    assert checked >= 4 * len(REQUIRED_FIELDS)


def test_load_presets_returns_a_copy():
    first = load_presets()
    first["internet-transit"]["delay"] = "999ms"
    del first["metro"]
    again = load_presets()
    assert again["internet-transit"]["delay"] != "999ms"
    assert "metro" in again
