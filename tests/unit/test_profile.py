"""Unit tests for testbed.profile: queues, link profiles, link specs, resolve_link."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from testbed import profile as profile_module
from testbed.errors import InputError
from testbed.presets import load_presets
from testbed.profile import (
    BDP_FLOOR_PACKETS,
    DEFAULT_QUEUE,
    USER_FIELDS,
    LinkProfile,
    LinkSpec,
    QueueSpec,
    resolve_link,
)


def test_all_names_exist():
    for name in profile_module.__all__:
        assert hasattr(profile_module, name), name


def _input_error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    assert info.value.exit_code == 2
    return info.value


# ---------------------------------------------------------------- QueueSpec


@pytest.mark.parametrize(
    "value, kind, number",
    [
        (100, "packets", 100),
        (100.0, "packets", 100),
        ("100", "packets", 100),
        ("100p", "packets", 100),
        ("100pkt", "packets", 100),
        ("100 packets", "packets", 100),
        ("256KiB", "bytes", 262144),
        ("1MB", "bytes", 1_000_000),
        ("1500B", "bytes", 1500),
        ("4M", "bytes", 4 * 2**20),
        ("2bdp", "bdp", 2.0),
        ("1.5xBDP", "bdp", 1.5),
        ("1.5 x bdp", "bdp", 1.5),
        ("0.5BDP", "bdp", 0.5),
    ],
)
def test_queue_from_user(value, kind, number):
    spec = QueueSpec.from_user(value, "links.wan.queue")
    assert (spec.kind, spec.value) == (kind, number)
    assert QueueSpec.from_user(spec.to_user(), "q") == spec


@pytest.mark.parametrize(
    "value", [0, -5, 1.5, "1.5pkt", "0bdp", "-1bdp", "lots", "", True, None, [100], "1.5B",
              "0B", 2**32]
)
def test_queue_from_user_bad(value):
    err = _input_error(QueueSpec.from_user, value, "links.wan.queue")
    assert err.field == "links.wan.queue"
    assert repr(value) in err.message


def test_queue_to_user_forms():
    assert QueueSpec(kind="packets", value=100).to_user() == "100pkt"
    assert QueueSpec(kind="bytes", value=65536).to_user() == "64KiB"
    assert QueueSpec(kind="bdp", value=1.5).to_user() == "1.5bdp"


def test_queue_model_rejects_fractional_packets():
    with pytest.raises(ValidationError):
        QueueSpec(kind="packets", value=1.5)
    with pytest.raises(ValidationError):
        QueueSpec(kind="bdp", value=0)


# Hand-worked BDP cases: BDP bytes = rate_bps / 8 * rtt_ms / 1000.
@pytest.mark.parametrize(
    "multiple, rate_bps, rtt_ms, mtu, expected",
    [
        # 1 Gbit/s = 125,000,000 B/s; x 0.020 s = 2,500,000 B; x 1.5 = 3,750,000 B
        (1.5, 1_000_000_000, 20.0, 1500, ("bytes", 3_750_000)),
        # 100 Mbit/s = 12,500,000 B/s; x 0.010 s = 125,000 B > floor 96,000 B
        (1.0, 100_000_000, 10.0, 1500, ("bytes", 125_000)),
        # 10 Mbit/s x 2 ms (the minimum RTT) = 2,500 B < floor 64 x 1500 = 96,000 B
        (1.0, 10_000_000, 1.0, None, ("bytes", 96_000)),
        # zero delay: 10 Gbit/s x 2 ms (minimum RTT) = 2,500,000 B; x 2 = 5,000,000 B
        (2.0, 10_000_000_000, 0.0, 9000, ("bytes", 5_000_000)),
        # zero delay, slow link: 100 Mbit/s x 2 ms = 25,000 B < floor 64 x 9000 = 576,000 B
        (2.0, 100_000_000, 0.0, 9000, ("bytes", 576_000)),
        # 8,000,001 bit/s x 1 s = 1,000,000.125 B -> rounded up to 1,000,001
        (1.0, 8_000_001, 1000.0, 1500, ("bytes", 1_000_001)),
        # us-east <-> us-west: 1 Gbit/s x 87 ms = 10,875,000 B; x 2 = 21,750,000
        (2.0, 1_000_000_000, 87.0, 1500, ("bytes", 21_750_000)),
        # no rate: a BDP queue falls back to 1000 packets
        (1.5, None, 20.0, 1500, ("packets", 1000)),
    ],
)
def test_queue_limit_bdp(multiple, rate_bps, rtt_ms, mtu, expected):
    assert QueueSpec(kind="bdp", value=multiple).limit(rate_bps, rtt_ms, mtu) == expected


def test_queue_limit_fixed_kinds_ignore_rate():
    assert QueueSpec(kind="packets", value=100).limit(10**9, 50.0, 1500) == ("packets", 100)
    assert QueueSpec(kind="packets", value=100).limit(None, 0.0, None) == ("packets", 100)
    assert QueueSpec(kind="bytes", value=65536).limit(10**9, 50.0, 9000) == ("bytes", 65536)


def test_queue_limit_floor_is_64_packets():
    kind, limit_bytes = QueueSpec(kind="bdp", value=1).limit(1000, 1.0, 1500)
    assert (kind, limit_bytes) == ("bytes", BDP_FLOOR_PACKETS * 1500)


def test_queue_limit_rejects_negative_rtt():
    with pytest.raises(ValueError):
        QueueSpec(kind="bdp", value=1).limit(10**9, -1.0, 1500)


def test_profile_queue_limit_defaults_to_twice_the_delay():
    link = LinkProfile(rate_bps=1_000_000_000, delay_ms=10.0)
    assert link.queue == DEFAULT_QUEUE
    assert link.queue_limit() == ("bytes", 3_750_000)  # 1.5 x 125e6 B/s x 0.020 s
    assert link.queue_limit(rtt_ms=40.0) == ("bytes", 7_500_000)


def test_link_spec_queue_limits_use_the_link_rtt():
    spec = LinkSpec(
        forward=LinkProfile(rate_bps=1_000_000_000, delay_ms=5.0),
        reverse=LinkProfile(rate_bps=100_000_000, delay_ms=15.0),
    )
    assert spec.rtt_ms == 20.0
    # forward: 1.5 x 125e6 x 0.02 = 3,750,000; reverse: 1.5 x 12.5e6 x 0.02 = 375,000
    assert spec.queue_limits() == (("bytes", 3_750_000), ("bytes", 375_000))


# ---------------------------------------------------------------- LinkProfile basics


def test_defaults():
    link = LinkProfile()
    assert link.rate_bps is None
    assert not link.is_shaped
    assert not link.has_impairment
    assert link.reorder_pct == 0.0  # reorder is off unless asked
    assert link.jitter_distribution == "normal"
    assert link.loss_model == "random"
    assert link.queue == QueueSpec(kind="bdp", value=1.5)


@pytest.mark.parametrize(
    "kwargs",
    [{"delay_ms": 1.0}, {"jitter_ms": 0.1}, {"loss_pct": 0.01}, {"duplicate_pct": 1.0},
     {"corrupt_pct": 0.1}, {"delay_ms": 1.0, "reorder_pct": 5.0}],
)
def test_has_impairment(kwargs):
    assert LinkProfile(**kwargs).has_impairment


def test_rate_alone_is_shaped_not_impaired():
    link = LinkProfile(rate_bps=10**9, mtu=9000)
    assert link.is_shaped
    assert not link.has_impairment


def test_model_is_frozen_and_strict():
    link = LinkProfile()
    with pytest.raises(ValidationError):
        link.delay_ms = 5.0
    with pytest.raises(ValidationError):
        LinkProfile(bandwidth=5)
    with pytest.raises(ValidationError):
        LinkProfile(delay_ms=-1)
    with pytest.raises(ValidationError):
        LinkProfile(loss_pct=150)
    with pytest.raises(ValidationError):
        LinkProfile(mtu=67)
    with pytest.raises(ValidationError):
        LinkProfile(reorder_pct=5)  # needs delay
    with pytest.raises(ValidationError):
        LinkProfile(loss_burst_pkts=8)  # only with gilbert-elliott


# ---------------------------------------------------------------- from_user


def test_from_user_all_fields():
    link = LinkProfile.from_user(
        {
            "rate": "250Mbit",
            "delay": "15ms",
            "jitter": "250us",
            "jitter_distribution": "Pareto_Normal",
            "correlation": "25%",
            "loss": "0.5%",
            "loss_model": "gilbert-elliott",
            "loss_burst": "5pkt",
            "duplicate": 0.1,
            "corrupt": "0.01%",
            "reorder": "1%",
            "queue": "2bdp",
            "mtu": "9000",
        },
        field="links.wan",
    )
    assert link == LinkProfile(
        rate_bps=250_000_000,
        delay_ms=15.0,
        jitter_ms=0.25,
        jitter_distribution="paretonormal",
        correlation_pct=25.0,
        loss_pct=0.5,
        loss_model="gilbert-elliott",
        loss_burst_pkts=5.0,
        duplicate_pct=0.1,
        corrupt_pct=0.01,
        reorder_pct=1.0,
        queue=QueueSpec(kind="bdp", value=2.0),
        mtu=9000,
    )


def test_from_user_empty_and_none_mean_defaults():
    assert LinkProfile.from_user({}) == LinkProfile()
    assert LinkProfile.from_user({"rate": None, "delay": None}) == LinkProfile()


# The bad-input examples, each naming the full dotted field.
def test_bad_negative_delay():
    err = _input_error(LinkProfile.from_user, {"delay": "-5ms"}, field="links.wan")
    assert err.field == "links.wan.delay"
    assert "must not be negative" in err.message and "'-5ms'" in err.message


def test_bad_unknown_field_lists_allowed():
    err = _input_error(LinkProfile.from_user, {"latency": "5ms"}, field="links.wan")
    assert err.field == "links.wan.latency"
    assert "unknown field" in err.message
    for name in USER_FIELDS:
        assert name in err.message


def test_bad_rate_fast():
    err = _input_error(LinkProfile.from_user, {"rate": "fast"}, field="links.wan")
    assert err.field == "links.wan.rate"
    assert "'fast'" in err.message


def test_bad_loss_150():
    err = _input_error(LinkProfile.from_user, {"loss": "150%"}, field="links.wan")
    assert err.field == "links.wan.loss"
    assert "'150%'" in err.message


def test_source_is_carried():
    err = _input_error(
        LinkProfile.from_user, {"loss": "150%"}, field="links.wan", source="scen.yaml"
    )
    assert err.source == "scen.yaml"
    assert str(err).startswith("scen.yaml: links.wan.loss: ")


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"loss_model": "bursty"}, "loss_model", "random, gilbert-elliott"),
        ({"jitter_distribution": "gaussian"}, "jitter_distribution", "paretonormal"),
        ({"mtu": 67}, "mtu", "68 and 65535"),
        ({"mtu": "9000B"}, "mtu", "whole number"),
        ({"mtu": True}, "mtu", "whole number"),
        ({"queue": "lots"}, "queue", "bdp"),
        ({"loss_burst": 0.5, "loss": "1%", "loss_model": "ge"}, "loss_burst", "at least 1"),
        ({"loss_burst": "many", "loss": "1%", "loss_model": "ge"}, "loss_burst", "packets"),
        ({"correlation": "101%"}, "correlation", "100%"),
        ({"duplicate": -1}, "duplicate", "100%"),
        ({"corrupt": "x"}, "corrupt", "'x'"),
        ({"jitter": "1min"}, "jitter", "unknown unit"),
    ],
)
def test_from_user_bad_values(data, field, words):
    err = _input_error(LinkProfile.from_user, data, field="links.lan")
    assert err.field == f"links.lan.{field}"
    assert words in err.message


def test_from_user_needs_a_mapping():
    err = _input_error(LinkProfile.from_user, "10Gbit", field="links.wan")
    assert err.field == "links.wan"
    assert "mapping" in err.message


# ---------------------------------------------------------------- cross-field checks


def test_reorder_needs_delay():
    err = _input_error(LinkProfile.from_user, {"reorder": "5%"}, field="links.wan")
    assert err.field == "links.wan.reorder"
    assert "delay" in err.message
    ok = LinkProfile.from_user({"reorder": "5%", "delay": "10ms"})
    assert ok.reorder_pct == 5.0


def test_gilbert_elliott_needs_loss():
    err = _input_error(LinkProfile.from_user, {"loss_model": "gilbert-elliott"}, field="l")
    assert err.field == "l.loss_model"  # loss was not given, so the model is named
    err = _input_error(
        LinkProfile.from_user, {"loss_model": "gilbert-elliott", "loss": "0%"}, field="l"
    )
    assert err.field == "l.loss"
    err = _input_error(
        LinkProfile.from_user, {"loss_model": "gilbert-elliott", "loss": "100%"}, field="l"
    )
    assert err.field == "l.loss"


def test_gilbert_elliott_burst_too_short_for_loss():
    # loss 60 %, burst 1: p = 0.6 x 1 / 0.4 = 1.5 > 1
    err = _input_error(
        LinkProfile.from_user,
        {"loss_model": "gilbert-elliott", "loss": "60%", "loss_burst": 1},
        field="l",
    )
    assert err.field == "l.loss_burst"
    assert "1.5" in err.message
    # burst 1.5: p = 0.6 / 1.5 / 0.4 = 1.0, the limit, accepted
    LinkProfile.from_user({"loss_model": "gilbert-elliott", "loss": "60%", "loss_burst": 1.5})


def test_loss_burst_with_random_is_an_error():
    err = _input_error(LinkProfile.from_user, {"loss": "1%", "loss_burst": 4}, field="l")
    assert err.field == "l.loss_burst"
    assert "gilbert-elliott" in err.message


def test_jitter_distribution_without_jitter_is_allowed():
    link = LinkProfile.from_user({"jitter_distribution": "pareto"})
    assert link.jitter_distribution == "pareto"
    assert not link.has_impairment


# ---------------------------------------------------------------- Gilbert-Elliott


def test_gilbert_elliott_params_math():
    link = LinkProfile.from_user({"loss": "1%", "loss_model": "gilbert-elliott"})
    params = link.gilbert_elliott_params()
    # r = 1/4 = 0.25; p = 0.01 x 0.25 / 0.99 = 0.002525...
    assert params["r"] == pytest.approx(0.25)
    assert params["p"] == pytest.approx(0.0025 / 0.99)
    assert params["h"] == 0.0  # bad state: nothing gets through
    assert params["k"] == 1.0  # good state: everything gets through
    # stationary loss = p / (p + r)
    assert params["p"] / (params["p"] + params["r"]) == pytest.approx(0.01)


def test_gilbert_elliott_params_half_loss_single_packet_bursts():
    link = LinkProfile(loss_pct=50.0, loss_model="gilbert-elliott", loss_burst_pkts=1.0)
    assert link.gilbert_elliott_params() == {"p": 1.0, "r": 1.0, "h": 0.0, "k": 1.0}


def test_gilbert_elliott_params_need_the_model():
    with pytest.raises(ValueError):
        LinkProfile(loss_pct=1.0).gilbert_elliott_params()


def test_gilbert_elliott_simulation_matches_loss_and_burst():
    """Run the netem algorithm (transition, then drop in the bad state) on the params."""
    link = LinkProfile.from_user({"loss": "2%", "loss_model": "ge", "loss_burst": 3})
    params = link.gilbert_elliott_params()
    rng = random.Random(1234)
    bad = False
    lost = 0
    bursts = []
    run = 0
    packets = 300_000
    for _ in range(packets):
        if bad:
            bad = not (rng.random() < params["r"])
        else:
            bad = rng.random() < params["p"]
        drop = rng.random() >= (params["h"] if bad else params["k"])
        if drop:
            lost += 1
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    loss_pct = 100 * lost / packets
    mean_burst = sum(bursts) / len(bursts)
    assert loss_pct == pytest.approx(2.0, rel=0.1), loss_pct
    assert mean_burst == pytest.approx(3.0, rel=0.1), mean_burst


# ---------------------------------------------------------------- to_user / round trips


def test_to_user_only_non_default_fields_plus_rate():
    assert LinkProfile().to_user() == {"rate": None}
    link = LinkProfile.from_user({"rate": "10Gbit", "delay": "1ms", "loss": "0%", "mtu": 9000})
    assert link.to_user() == {"rate": "10Gbit", "delay": "1ms", "mtu": 9000}


def test_to_user_tc_like_strings():
    link = LinkProfile(
        rate_bps=1_500_000_000,
        delay_ms=0.25,
        jitter_ms=1500.0,
        loss_pct=0.1,
        loss_model="gilbert-elliott",
        loss_burst_pkts=2.0,
        queue=QueueSpec(kind="bytes", value=65536),
    )
    assert link.to_user() == {
        "rate": "1.5Gbit",
        "delay": "250us",
        "jitter": "1.5s",
        "loss": "0.1%",
        "loss_model": "gilbert-elliott",
        "loss_burst": 2.0,
        "queue": "64KiB",
    }


@st.composite
def profiles(draw):
    pct = st.floats(min_value=0, max_value=100, allow_nan=False)
    delay_ms = draw(st.floats(min_value=0, max_value=10_000, allow_nan=False))
    kwargs = {
        "rate_bps": draw(st.none() | st.integers(min_value=1, max_value=10**13)),
        "delay_ms": delay_ms,
        "jitter_ms": draw(st.floats(min_value=0, max_value=1000, allow_nan=False)),
        "jitter_distribution": draw(
            st.sampled_from(["normal", "pareto", "paretonormal", "uniform"])
        ),
        "correlation_pct": draw(pct),
        "duplicate_pct": draw(pct),
        "corrupt_pct": draw(pct),
        "reorder_pct": draw(pct) if delay_ms > 0 else 0.0,
        "queue": draw(
            st.builds(QueueSpec, kind=st.just("packets"), value=st.integers(1, 100_000))
            | st.builds(QueueSpec, kind=st.just("bytes"), value=st.integers(1, 2**30))
            | st.builds(
                QueueSpec,
                kind=st.just("bdp"),
                value=st.floats(min_value=0.01, max_value=100, allow_nan=False),
            )
        ),
        "mtu": draw(st.none() | st.integers(68, 65535)),
    }
    if draw(st.booleans()):
        burst = draw(st.floats(min_value=1, max_value=50, allow_nan=False))
        max_loss = 0.999 * 100 * burst / (1 + burst)  # keeps p <= 1
        loss = draw(st.floats(min_value=0.001, max_value=min(max_loss, 99.999)))
        kwargs.update(loss_model="gilbert-elliott", loss_burst_pkts=burst, loss_pct=loss)
    else:
        kwargs["loss_pct"] = draw(pct)
    return LinkProfile(**kwargs)


@settings(max_examples=300)
@given(profiles())
def test_profile_round_trip(link):
    assert LinkProfile.from_user(link.to_user()) == link


# ---------------------------------------------------------------- resolve_link

PRESETS = {
    "wan": {"rate": "1Gbit", "delay": "5ms", "jitter": "1ms", "loss": "0.05%", "mtu": 1500},
    "ge": {"rate": "1Gbit", "delay": "5ms", "loss": "1%", "loss_model": "gilbert-elliott",
           "loss_burst": 3},
    "broken": {"rate": "1Gbit", "delay": "soon"},
}


def test_resolve_preset_name():
    spec = resolve_link("wan", "links.a", presets=PRESETS)
    expected = LinkProfile.from_user(PRESETS["wan"])
    assert spec == LinkSpec(forward=expected, reverse=expected)
    assert spec.is_symmetric
    assert spec.rtt_ms == 10.0


def test_resolve_shipped_preset_by_default():
    spec = resolve_link("internet-transit", "links.a")
    assert spec.forward == LinkProfile.from_user(load_presets()["internet-transit"])


def test_resolve_plain_fields():
    spec = resolve_link({"rate": "100Mbit", "delay": "2ms"}, "links.a", presets=PRESETS)
    assert spec.forward == spec.reverse == LinkProfile(rate_bps=100_000_000, delay_ms=2.0)


def test_resolve_preset_with_overrides():
    spec = resolve_link({"preset": "wan", "loss": "1%", "delay": "7ms"}, "l", presets=PRESETS)
    assert spec.forward.loss_pct == 1.0
    assert spec.forward.delay_ms == 7.0
    assert spec.forward.rate_bps == 10**9  # kept from the preset
    assert spec.forward.mtu == 1500
    assert spec.is_symmetric


def test_resolve_forward_reverse_overrides():
    spec = resolve_link(
        {"preset": "wan", "delay": "10ms", "forward": {"rate": "100Mbit"},
         "reverse": {"delay": "20ms", "loss": "0%"}},
        "links.a",
        presets=PRESETS,
    )
    assert spec.forward.rate_bps == 100_000_000
    assert spec.forward.delay_ms == 10.0
    assert spec.forward.loss_pct == 0.05
    assert spec.reverse.rate_bps == 1_000_000_000
    assert spec.reverse.delay_ms == 20.0
    assert spec.reverse.loss_pct == 0.0
    assert spec.rtt_ms == 30.0
    assert not spec.is_symmetric


def test_resolve_null_removes_a_preset_value():
    spec = resolve_link({"preset": "wan", "jitter": None, "mtu": None}, "l", presets=PRESETS)
    assert spec.forward.jitter_ms == 0.0
    assert spec.forward.mtu is None


def test_resolve_unknown_preset_lists_presets():
    err = _input_error(resolve_link, "nope", "links.a", presets=PRESETS)
    assert err.field == "links.a"
    assert "'nope'" in err.message
    assert "broken, ge, wan" in err.message
    err = _input_error(resolve_link, {"preset": "nope"}, "links.a", presets=PRESETS)
    assert err.field == "links.a.preset"


def test_resolve_unknown_field_at_each_level():
    err = _input_error(resolve_link, {"latency": 1}, "links.a", presets=PRESETS)
    assert err.field == "links.a.latency"
    assert "preset, forward, reverse" in err.message
    err = _input_error(resolve_link, {"forward": {"preset": "wan"}}, "links.a", presets=PRESETS)
    assert err.field == "links.a.forward.preset"


def test_resolve_errors_name_the_level():
    err = _input_error(
        resolve_link, {"preset": "wan", "reverse": {"delay": "-1ms"}}, "links.a", presets=PRESETS
    )
    assert err.field == "links.a.reverse.delay"
    err = _input_error(resolve_link, {"delay": "-1ms"}, "links.a", presets=PRESETS)
    assert err.field == "links.a.delay"
    err = _input_error(resolve_link, "broken", "links.a", presets=PRESETS)
    assert err.field == "presets.broken.delay"
    err = _input_error(resolve_link, {"forward": "fast"}, "links.a", presets=PRESETS)
    assert err.field == "links.a.forward"
    err = _input_error(resolve_link, 42, "links.a", presets=PRESETS, source="s.yaml")
    assert err.field == "links.a" and err.source == "s.yaml"


def test_resolve_cross_field_error_names_the_direction():
    err = _input_error(
        resolve_link, {"forward": {"reorder": "5%"}}, "links.a", presets=PRESETS
    )
    assert err.field == "links.a.forward.reorder"
    # delay in the shared part satisfies a per-direction reorder
    spec = resolve_link(
        {"delay": "5ms", "forward": {"reorder": "5%"}}, "links.a", presets=PRESETS
    )
    assert spec.forward.reorder_pct == 5.0 and spec.reverse.reorder_pct == 0.0


def test_resolve_loss_burst_inherited_then_model_overridden():
    # the preset's loss_burst is dropped when a more specific level picks random
    spec = resolve_link({"preset": "ge", "loss_model": "random"}, "l", presets=PRESETS)
    assert spec.forward.loss_model == "random"
    assert spec.forward.loss_burst_pkts == 4.0
    # ... but a loss_burst given at the same level as random is an error
    err = _input_error(
        resolve_link, {"preset": "ge", "loss_model": "random", "loss_burst": 2}, "l",
        presets=PRESETS,
    )
    assert err.field == "l.loss_burst"


def test_resolve_passes_models_through():
    link = LinkProfile(rate_bps=10**9)
    assert resolve_link(link, "l") == LinkSpec(forward=link, reverse=link)
    spec = LinkSpec(forward=link, reverse=LinkProfile())
    assert resolve_link(spec, "l") is spec


def test_link_spec_to_user_round_trip():
    symmetric = resolve_link({"preset": "wan"}, "l", presets=PRESETS)
    assert symmetric.to_user() == {
        "rate": "1Gbit", "delay": "5ms", "jitter": "1ms", "loss": "0.05%", "mtu": 1500
    }
    assert resolve_link(symmetric.to_user(), "l", presets=PRESETS) == symmetric
    asymmetric = resolve_link(
        {"preset": "ge", "forward": {"rate": "10Mbit"}}, "l", presets=PRESETS
    )
    user = asymmetric.to_user()
    assert set(user) == {"forward", "reverse"}
    assert user["forward"]["rate"] == "10Mbit"
    assert resolve_link(user, "l", presets=PRESETS) == asymmetric


def test_link_spec_defaults_and_frozen():
    spec = LinkSpec()
    assert spec.forward == spec.reverse == LinkProfile()
    with pytest.raises(ValidationError):
        spec.forward = LinkProfile(delay_ms=1.0)
    with pytest.raises(ValidationError):
        LinkSpec(sideways=LinkProfile())
