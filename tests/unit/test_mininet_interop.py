"""Every file in topologies/ works with Mininet's own ``mn --custom FILE --topo NAME``.

tests/unit/test_topologies.py already loads each file the way ``mn`` does
(``exec`` into a fresh dict) and builds it with ``buildTopo`` -- inside this
interpreter, where the testbed is importable. This adds what it cannot see:
the real ``mn`` script's own option parsing and ``--custom`` loading
(``MininetRunner.parseArgs`` with its ``--custom`` callback and ``TOPOS``
registry), run in a fresh, isolated interpreter -- the one named in ``mn``'s
``#!`` line -- in which importing ``testbed`` is blocked, so a topology file
that needed the testbed would fail here as it would for a Mininet user.

Nothing is built in the kernel: the check stops after ``buildTopo``, before
``mn`` would create a network, and never reaches ``mn``'s cleanup. The topology
``mn`` builds is compared with the testbed's own (testbed.topologies).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import testbed.topologies as topologies_pkg
from testbed.topologies import build_topology, topology_params

TOPO_DIR = Path(topologies_pkg.__file__).resolve().parent
TOPO_FILES = sorted(p for p in TOPO_DIR.glob("*.py") if p.name != "__init__.py")
TIMEOUT_S = 60

# What the child runs: load the mn script without running it, parse the
# command line exactly as 'mn' does, build the topology, report it as JSON.
CHILD = r'''
import json, runpy, sys

class BlockTestbed:
    """Make 'import testbed' fail: a Mininet user's interpreter has no testbed."""
    def find_spec(self, name, path=None, target=None):
        if name == "testbed" or name.startswith("testbed."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None

sys.meta_path.insert(0, BlockTestbed())
script, custom, topo_arg = sys.argv[1:4]
if custom == "--probe-block":
    try:
        import testbed  # noqa: F401
    except ImportError as exc:
        print(json.dumps({"blocked": str(exc)}))
    else:
        print(json.dumps({"blocked": None}))
    sys.exit(0)
mn = runpy.run_path(script, run_name="mn_script")  # defines MininetRunner; __main__ block not run
runner_cls = mn["MininetRunner"]
runner = runner_cls.__new__(runner_cls)  # __init__ would also build and run the network
runner.options = runner.args = runner.validate = None
sys.argv = ["mn", "--custom", custom, "--topo", topo_arg]
runner.parseArgs()
topo = mn["buildTopo"](mn["TOPOS"], runner.options.topo)
print(json.dumps({
    "hosts": sorted(topo.hosts()),
    "switches": sorted(topo.switches()),
    "links": sorted([a, b, info.get("link")] for a, b, info in topo.links(sort=True, withInfo=True)),
    "testbed_modules": sorted(m for m in sys.modules if m == "testbed" or m.startswith("testbed.")),
}))
'''


def _mn_scripts() -> List[Path]:
    """The mn scripts here: this environment's (PyPI mininet) and the one on PATH (Debian's)."""
    found: Dict[Path, Path] = {}
    for candidate in (Path(sys.executable).parent / "mn", shutil.which("mn")):
        if candidate and Path(candidate).is_file():
            found.setdefault(Path(candidate).resolve(), Path(candidate))
    return list(found.values())


MN_SCRIPTS = _mn_scripts()


def _interpreter(script: Path) -> List[str]:
    first = script.read_text(errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        pytest.skip(f"{script} has no #! line naming its interpreter")
    return shlex.split(first[2:])


def _run_child(script: Path, custom: str, topo_arg: str) -> dict:
    argv = _interpreter(script) + ["-I", "-c", CHILD, str(script), custom, topo_arg]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError(f"mn --custom {custom} --topo {topo_arg} with {script} exited "
                             f"{proc.returncode}:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _topos_of(path: Path) -> Dict[str, type]:
    customs: Dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), customs, customs)  # noqa: S102 - our own file
    return customs["topos"]


# topology name -> extra 'mn --topo' argument strings with parameters (mn's NAME,key=value form)
WITH_PARAMS = {
    "two-clouds": ["two-clouds,path=transit,transit_hops=2", "two-clouds,hosts_per_site=3",
                   "two-clouds,path=transit,transit_hops=16,hosts_per_site=2"],
    "star": ["star,hosts=1", "star,hosts=8", "star,hosts=256"],
    "multicloud": ["multicloud,hosts_per_site=1", "multicloud,transit_hops=1,gpus=A100"],
}
CASES = [
    (path, arg)
    for path in TOPO_FILES
    for name in sorted(_topos_of(path))
    for arg in [name] + WITH_PARAMS.get(name, [])
]


def _expected(topo_arg: str) -> dict:
    name, *pairs = topo_arg.split(",")
    params = {}
    for pair in pairs:
        key, value = pair.split("=")
        params[key] = int(value) if value.isdigit() else value
    topo = build_topology(name, params)
    return {
        "hosts": sorted(topo.hosts()),
        "switches": sorted(topo.switches()),
        "links": sorted([a, b, info.get("link")] for a, b, info in topo.links(sort=True, withInfo=True)),
    }


def test_every_topology_with_parameters_is_covered():
    names = {arg.split(",")[0] for _path, arg in CASES}
    for name in names:
        if topology_params(name):
            assert name in WITH_PARAMS, f"add 'mn --topo {name},key=value' cases for {name}"


@pytest.mark.skipif(not MN_SCRIPTS, reason="Mininet's mn script is not installed "
                    "(apt-get install mininet, or pip install mininet)")
@pytest.mark.parametrize("script", MN_SCRIPTS, ids=str)
def test_child_cannot_import_the_testbed(script):
    # the check below is only meaningful if the child really cannot see the testbed
    result = _run_child(script, "--probe-block", "-")
    assert result["blocked"] and "testbed" in result["blocked"]


@pytest.mark.skipif(not MN_SCRIPTS, reason="Mininet's mn script is not installed "
                    "(apt-get install mininet, or pip install mininet)")
@pytest.mark.parametrize("script", MN_SCRIPTS, ids=str)
@pytest.mark.parametrize("path,topo_arg", CASES, ids=[f"{p.name}:{a}" for p, a in CASES])
def test_mn_custom_builds_the_same_topology(script, path, topo_arg):
    got = _run_child(script, str(path), topo_arg)
    assert got.pop("testbed_modules") == []
    assert got == _expected(topo_arg)


@pytest.mark.skipif(not MN_SCRIPTS, reason="Mininet's mn script is not installed")
def test_mn_rejects_an_unknown_topology_name():
    # the harness must be able to fail: a name no file defines is an error in mn too
    with pytest.raises(AssertionError, match="Invalid topo name"):
        _run_child(MN_SCRIPTS[0], str(TOPO_FILES[0]), "no-such-topology")
