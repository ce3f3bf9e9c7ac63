"""The runner registry, the public surface and option validation."""

import importlib

import pytest

import testbed.measure as measure
from testbed.errors import InputError

MODULES = ["testbed.measure", "testbed.measure.stats", "testbed.measure.ping",
           "testbed.measure.owd", "testbed.measure.owd_probe", "testbed.measure.iperf",
           "testbed.measure.path", "testbed.measure.steady", "testbed.measure._common"]


def test_registry_names():
    assert set(measure.RUNNERS) == {"ping", "owd", "tcp", "udp", "path"}


@pytest.mark.parametrize("name", ["ping", "owd", "tcp", "udp", "path"])
def test_every_runner_has_the_lifecycle(name):
    runner = measure.RUNNERS[name]
    assert runner.name == name
    for method in ("check", "argv", "parse", "run"):
        assert callable(getattr(runner, method)), f"{name}.{method}"


@pytest.mark.parametrize("module_name", MODULES)
def test_dunder_all_is_exact(module_name):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"
    assert len(set(module.__all__)) == len(module.__all__)


def test_option_names_carry_units():
    unitless = {"count", "streams", "port", "congestion", "attempts", "max_hops"}
    suffixes = ("_s", "_ms", "_bytes", "_bps")
    for name in measure.RUNNERS:
        for option in measure.option_names(name):
            assert option in unitless or option.endswith(suffixes), f"{name}.{option}"


def test_validate_options_accepts_known_and_rejects_unknown():
    assert measure.validate_options("tcp", {"duration_s": 2, "streams": 4}) == {
        "duration_s": 2, "streams": 4}
    with pytest.raises(InputError) as info:
        measure.validate_options("tcp", {"duration": 2}, source="scenarios/x.yaml")
    assert info.value.field == "tcp.duration"
    assert info.value.source == "scenarios/x.yaml"
    assert "duration_s" in info.value.message


def test_unknown_measurement_name():
    with pytest.raises(InputError, match="choose from owd, path, ping, tcp, udp"):
        measure.option_names("netperf")


def test_runners_reject_unknown_keyword_options():
    with pytest.raises(TypeError):
        measure.RUNNERS["ping"].run(None, None, use_htb=True)
