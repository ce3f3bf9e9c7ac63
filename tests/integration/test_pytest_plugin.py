"""The pytest plugin (testbed.pytest_plugin), run the way users run it.

Example test files are run through a separate pytest process (pytester's
``runpytest_subprocess``) with plugin autoloading off and the plugin loaded by
``-p testbed.pytest_plugin``, so the runs do not depend on what else is
installed. Oracles: the outcome counts and ``-rs`` skip lines pytest prints,
``ip netns list`` (no ``tb.pt-`` namespace may be left), the lab state
directory and the root namespace's iptables chains, and the results schema
for the helpers' data.

* the documented example (docs/pytest-plugin.md) passes as written;
* a failing test still has its lab torn down;
* without root (``os.geteuid`` patched inside the example) ``requires_root``,
  ``requires_netem`` and the ``lab`` fixture skip with their reasons;
* ``requires_netem`` skips exactly when the netem backend is unavailable;
* the helpers' data validates against results.schema.json like the steps';
* the plugin's setup.cfg entry point, and autoloading when it is installed.
"""

from __future__ import annotations

import configparser
import json
import re
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

import helpers
from testbed import pytest_plugin
from testbed.errors import InputError
from testbed.pytest_plugin import (lab_collective, lab_owd, lab_path, lab_ping, lab_tcp, lab_udp,
                                   measure_step)
from testbed.results import load_schema
from testbed.shaping.netem import NetemBackend

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "pytest-plugin.md"
RUN_TIMEOUT_S = 300
PLUGIN_ARGS = ("-p", "testbed.pytest_plugin", "-p", "no:cacheprovider", "-rs", "--strict-markers")

# Loaded by the example runs: records the name of every lab Lab.create made.
RECORDING_CONFTEST = '''
from pathlib import Path
from testbed.lab import lab as lab_module

_create = lab_module.Lab.create.__func__

def _recording_create(cls, topology, name, *args, **kwargs):
    made = _create(cls, topology, name, *args, **kwargs)
    with open(Path(__file__).parent / "labs-made.txt", "a") as fh:
        fh.write(name + "\\n")
    return made

lab_module.Lab.create = classmethod(_recording_create)
'''


def _documented_example() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: (\S+) -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"{DOC} has no '<!-- example: FILE -->' python block"
    return match.group(2)


def _pt_namespaces():
    return [n for n in helpers.netns_names() if n.startswith("tb.pt-")]


def _left_of(names):
    """Pieces of the labs ``names`` still on the machine (namespaces, state, guard chain)."""
    rules = helpers.iptables_rules()
    left = []
    for name in names:
        left += helpers.lab_netns_names(name)
        if (helpers.STATE_DIR / name).exists():
            left.append(f"state {name}")
        left += [r for r in rules if f"TB-{name}" in r.split()]
    return left


@pytest.fixture
def run_examples(pytester, monkeypatch):
    """Run pytest on the files given, in a fresh process with only our plugin loaded."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)

    def run(files, *args):
        pytester.makeconftest(RECORDING_CONFTEST)
        pytester.makepyfile(**files)
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, *args, timeout=RUN_TIMEOUT_S)
        made_file = pytester.path / "labs-made.txt"
        made = made_file.read_text().split() if made_file.exists() else []
        return result, made

    return run


# ------------------------------------------------------------ lab lifecycle


def test_documented_example_passes_and_leaves_nothing(run_examples):
    assert not _pt_namespaces(), "a pt- lab was already up before the run"
    result, made = run_examples({"test_my_service": _documented_example()})
    result.assert_outcomes(passed=4)
    assert len(made) == 5 and all(n.startswith("pt-") for n in made), made
    assert not _left_of(made), _left_of(made)
    assert not _pt_namespaces(), _pt_namespaces()


FAILING = '''
import subprocess

from testbed.pytest_plugin import lab_ping


def test_passes(lab):
    pair = lab("pair", link={"delay": "5ms"})
    assert lab_ping(pair, count=3, interval_s=0.05)["rtt_ms"]["count"] == 3


def test_fails_with_two_labs_up(lab):
    pair = lab("pair", link={"delay": "5ms"})
    clouds = lab("two-clouds", path="transit", transit_hops=1)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           timeout=10, check=True).stdout
    assert f"tb.{pair.name}.h1" in names and f"tb.{clouds.name}.tr1" in names
    assert False, "fails on purpose"


def test_raises_with_a_lab_up(lab):
    lab("pair")
    raise RuntimeError("raised on purpose")
'''


def test_failing_tests_still_tear_their_labs_down(run_examples):
    result, made = run_examples({"test_failing": FAILING})
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*fails on purpose*", "*raised on purpose*"])
    assert len(made) == 4, made
    assert not _left_of(made), _left_of(made)
    assert not _pt_namespaces(), _pt_namespaces()


BAD_INPUT = '''
import pytest
from testbed.errors import InputError


def test_misspelt_parameter(lab):
    with pytest.raises(InputError) as info:
        lab("two-clouds", paht="transit")
    assert info.value.field == "paht"
    assert "path" in info.value.message and "transit-hop" not in info.value.message


def test_link_of_another_path(lab):
    with pytest.raises(InputError) as info:
        lab("two-clouds", path="transit", direct={"delay": "2ms"})
    assert "transit-hop" in info.value.message


def test_bad_profile_field(lab):
    with pytest.raises(InputError) as info:
        lab("pair", link={"delay": "soon"})
    assert info.value.field == "links.link.delay"
'''


def test_bad_input_raises_before_any_lab_is_made(run_examples):
    result, made = run_examples({"test_bad_input": BAD_INPUT})
    result.assert_outcomes(passed=3)
    assert made == [], made


# ------------------------------------------------------------------ skipping


NOT_ROOT = '''
import os

import pytest

os.geteuid = lambda: 1000  # this process now looks unprivileged


@pytest.mark.requires_root
def test_needs_root():
    pass


@pytest.mark.requires_netem
def test_needs_netem():
    pass


def test_uses_a_lab(lab):
    lab("pair")


def test_plain():
    pass
'''


def test_skip_reasons_when_not_root(run_examples):
    result, made = run_examples({"test_not_root": NOT_ROOT})
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines_random([
        "SKIPPED*requires_root: needs root to create network namespaces (run pytest with sudo)*",
        "SKIPPED*requires_netem: netem cannot be tested: needs root*",
        "SKIPPED*lab: needs root to create network namespaces*",
    ])
    assert made == []


NETEM = '''
import pytest


@pytest.mark.requires_netem
def test_needs_netem():
    pass
'''


def test_requires_netem_follows_the_kernel(run_examples):
    ok, why = NetemBackend().available()
    result, _made = run_examples({"test_netem": NETEM})
    if ok:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines([f"SKIPPED*requires_netem: netem backend unavailable: {why[:40]}*"])


def test_markers_are_registered(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-p", "testbed.pytest_plugin", "--markers")
    result.stdout.fnmatch_lines_random(["@pytest.mark.requires_root:*", "@pytest.mark.requires_netem:*"])


# ------------------------------------------------- helpers = scenario steps


@pytest.fixture
def lab():
    """The plugin's factory, as its ``lab`` fixture gives it (this process does not load the plugin)."""
    factory = pytest_plugin.LabFactory()
    try:
        yield factory
    finally:
        factory.close()


def _step_schema(name: str) -> dict:
    schema = load_schema()
    return {"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]}


def test_helpers_return_what_the_scenario_steps_record(lab):
    clouds = lab("two-clouds", path="transit", transit_hops=2)
    checks = [
        ("ping", lab_ping(clouds, "cw-h1", "gcp-h1", count=5, interval_s=0.05)),
        ("owd", lab_owd(clouds, "cw-h1", "gcp-h1", count=20, interval_ms=5)),
        ("tcp", lab_tcp(clouds, "cw-h1", "gcp-h1", duration_s=1, steady_tolerance_pct=20)),
        ("udp", lab_udp(clouds, "cw-h1", "gcp-h1", duration_s=1, bitrate="10Mbit")),
        ("path", lab_path(clouds, "cw-h1", "gcp-h1", max_hops=8)),
    ]
    for name, data in checks:
        errors = sorted(jsonschema.Draft202012Validator(_step_schema(name)).iter_errors(data),
                        key=str)
        assert not errors, f"{name}: {errors[0].message} in {json.dumps(data)[:500]}"
    data = dict(checks)
    assert data["ping"]["rtt_ms"]["count"] == 5
    assert set(data["owd"]) >= {"forward", "reverse", "one_way_delay_ms"}
    assert "packets" not in data["owd"]["forward"]  # trimmed, as results.json keeps it
    assert "time_to_steady_s" in data["tcp"]
    # two transit routers: three hops between the sites, as the scenario's path step says
    assert data["path"]["hops"] == 3 and data["path"]["router_names"][1:3] == ["tr1", "tr2"]
    # 3 transit links of 5 ms each way plus the 1500 MTU the transit preset sets
    assert data["path"]["path_mtu"] == 1500
    assert 28 <= data["ping"]["rtt_ms"]["mean"] <= 40


def test_collective_helper_returns_the_collectives_rows(lab):
    clouds = lab("two-clouds", path="direct")
    rows = lab_collective(clouds, op="allreduce", sizes=["64KiB", "256KiB"], iters=1)
    assert [r["bytes"] for r in rows] == [64 * 1024, 256 * 1024]
    validator = jsonschema.Draft202012Validator(_step_schema("collective"))
    for row in rows:
        errors = list(validator.iter_errors(row))
        assert not errors, f"collective row: {errors[0].message}"
        assert row["ranks"] == 2 and row["correct"] is True and row["time_us"] > 0
        # 1 ms each way between the sites: an allreduce of 2 ranks takes two one-way trips
        assert row["model_time_us"] >= 2000


def test_helpers_default_to_first_and_last_host(lab):
    pair = lab("pair", link={"delay": "2ms"})
    ping = lab_ping(pair, count=2, interval_s=0.05)
    assert ping["rtt_ms"]["count"] == 2 and ping["rtt_ms"]["min"] >= 4


@pytest.mark.parametrize("kind,options,field", [
    ("ping", {"cnt": 3}, "measure.ping.cnt"),
    ("ping", {"count": 0}, "measure.ping.count"),
    ("tcp", {"duration_s": "long"}, "measure.tcp.duration_s"),
    ("steady", {}, "measure"),
    ("collective", {"op": "allsum"}, "measure.collective.op"),
    ("nosuch", {}, "measure"),
])
def test_helper_options_are_checked_before_any_traffic(kind, options, field):
    with pytest.raises(InputError) as info:
        measure_step(object(), kind, "h1", "h2", **options)  # no lab needed: fails first
    assert info.value.field == field


def test_collective_takes_no_endpoints():
    with pytest.raises(InputError) as info:
        measure_step(object(), "collective", "h1", "h2")
    assert info.value.field == "measure.collective" and "all" in info.value.message


# ------------------------------------------------------------- entry point


def test_setup_cfg_registers_the_plugin():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg")
    entry = parser.get("options.entry_points", "pytest11", fallback="")
    lines = [line.replace(" ", "") for line in entry.splitlines() if line.strip()]
    assert "testbed.pytest_plugin=testbed.pytest_plugin" in lines, (
        "setup.cfg [options.entry_points] needs: pytest11 = testbed.pytest_plugin = "
        f"testbed.pytest_plugin (found {lines})")


def _installed_entry_point():
    for ep in metadata.entry_points(group="pytest11"):
        if ep.value == "testbed.pytest_plugin":
            return ep
    return None


def test_installed_plugin_loads_without_p(pytester, monkeypatch):
    ep = _installed_entry_point()
    if ep is None:
        pytest.skip("the pytest11 entry point is not installed here (pip install . after "
                    "setup.cfg declares it)")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(test_fixture=textwrap.dedent('''
        import pytest

        @pytest.mark.requires_root
        def test_lab_fixture_exists(lab):
            assert callable(lab)
    '''))
    # -p with the module name must not clash with the autoloaded entry point
    for args in ((), ("-p", "testbed.pytest_plugin")):
        result = pytester.runpytest_subprocess("--strict-markers", *args)
        result.assert_outcomes(passed=1)


def test_plugin_import_is_light():
    code = ("import sys; import testbed.pytest_plugin; "
            "print(' '.join(m for m in ('pyroute2', 'pydantic', 'testbed.lab.lab', 'numpy') "
            "if m in sys.modules))")
    out = helpers.run_cmd([sys.executable, "-c", code], timeout_s=60).stdout.strip()
    assert out == "", f"importing the plugin pulled in: {out}"
    assert pytest_plugin.LAB_PREFIX == "pt-"
