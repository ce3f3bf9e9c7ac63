"""The pytest helpers word their errors as the CLI does (issue 17, 8j): same field, same message.

Oracle: the error ``parse_scenario`` gives for the same option in a scenario.
"""

from __future__ import annotations

import pytest

from testbed.errors import InputError
from testbed.pytest_plugin import measure_step
from testbed.scenario import parse_scenario


def _scenario_error(kind: str, options: dict) -> InputError:
    doc = {"name": "x", "topology": "pair", "variants": [{"name": "a"}], "measure": {kind: options}}
    with pytest.raises(InputError) as info:
        parse_scenario(doc)
    return info.value


@pytest.mark.parametrize("kind,options", [
    ("ping", {"cuont": 3}),
    ("ping", {"count": 0}),
    ("tcp", {"duration_s": "long"}),
    ("owd", {"interval": 5}),
])
def test_helper_errors_match_the_scenario_loader(kind, options):
    with pytest.raises(InputError) as info:
        measure_step(object(), kind, "h1", "h2", **options)  # fails before any lab is used
    expected = _scenario_error(kind, options)
    assert (info.value.field, info.value.message) == (expected.field, expected.message)


def test_a_misspelt_option_gets_a_did_you_mean():
    with pytest.raises(InputError) as info:
        measure_step(object(), "ping", "h1", "h2", cuont=3)
    assert "did you mean 'count'?" in info.value.message


def test_a_misspelt_step_gets_a_did_you_mean():
    with pytest.raises(InputError) as info:
        measure_step(object(), "pnig", "h1", "h2")
    assert info.value.field == "measure" and "did you mean 'ping'?" in info.value.message
