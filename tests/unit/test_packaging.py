"""setup.cfg lists every package, the console script and the shipped data.

setup.cfg names its packages explicitly (``topologies/`` and ``scenarios/``
live at the top level and are installed as ``testbed.topologies`` and
``testbed.scenarios``), so a new subpackage that is not added there would be
missing from an installed testbed. These tests read setup.cfg with
configparser and compare it with the tree.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP_CFG = ROOT / "setup.cfg"


def _cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    read = parser.read(SETUP_CFG)
    assert read, f"cannot read {SETUP_CFG}"
    return parser


def _lines(value: str) -> List[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _package_dirs() -> Dict[str, Path]:
    """Package name -> source directory, honouring [options] package_dir."""
    options = _cfg()["options"]
    mapping = {"": ""}
    for line in _lines(options.get("package_dir", "")):
        name, _, where = line.partition("=")
        mapping[name.strip()] = where.strip()
    out = {}
    for package in _lines(options["packages"]):
        parts = package.split(".")
        for cut in range(len(parts), -1, -1):  # longest mapped prefix wins
            prefix = ".".join(parts[:cut])
            if prefix in mapping:
                base = ROOT / mapping[prefix]
                out[package] = base.joinpath(*parts[cut:])
                break
    return out


def _listed_packages() -> Set[str]:
    return set(_lines(_cfg()["options"]["packages"]))


def _tree_packages() -> Set[str]:
    found = set()
    for init in (ROOT / "testbed").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if "__pycache__" in rel.parts:
            continue
        found.add(".".join(rel.parts))
    return found


def test_every_testbed_package_is_listed():
    missing = _tree_packages() - _listed_packages()
    assert not missing, (
        f"packages under testbed/ missing from setup.cfg [options] packages: {sorted(missing)}"
    )


def test_topologies_and_scenarios_are_listed_and_mapped():
    listed = _listed_packages()
    assert {"testbed.topologies", "testbed.scenarios"} <= listed
    dirs = _package_dirs()
    assert dirs["testbed.topologies"] == ROOT / "topologies"
    assert dirs["testbed.scenarios"] == ROOT / "scenarios"


def test_subpackages_of_mapped_dirs_are_listed():
    listed = _listed_packages()
    for top, pkg in (("topologies", "testbed.topologies"), ("scenarios", "testbed.scenarios")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            if "__pycache__" in rel.parts:
                continue
            name = ".".join((pkg,) + rel.parts)
            assert name in listed, f"{name} ({init.parent}) missing from setup.cfg packages"


def test_every_listed_package_exists():
    for package, where in _package_dirs().items():
        assert (where / "__init__.py").is_file(), f"{package}: no {where}/__init__.py"


def test_console_script():
    scripts = _lines(_cfg()["options.entry_points"]["console_scripts"])
    entries = {}
    for script in scripts:
        name, _, target = script.partition("=")
        entries[name.strip()] = target.strip()
    assert entries.get("testbed") == "testbed.cli:main"
    import testbed.cli

    assert callable(testbed.cli.main)


def _package_data() -> Dict[str, List[str]]:
    section = _cfg()["options.package_data"]
    return {
        key: [p.strip() for p in value.split(",") if p.strip()]
        for key, value in section.items()
    }


def _covered(package_dir: Path, patterns: List[str]) -> Set[Path]:
    covered: Set[Path] = set()
    for pattern in patterns:
        covered.update(p.resolve() for p in package_dir.glob(pattern) if p.is_file())
    return covered


def test_every_scenario_file_is_package_data():
    patterns = _package_data().get("testbed.scenarios", [])
    assert patterns, "no package_data for testbed.scenarios"
    scenarios = ROOT / "scenarios"
    files = {p.resolve() for ext in ("*.yaml", "*.yml") for p in scenarios.rglob(ext)}
    missing = files - _covered(scenarios, patterns)
    assert not missing, f"scenario files not in package_data: {sorted(map(str, missing))}"


def test_a_new_scenario_file_would_be_package_data(tmp_path):
    # holds even while scenarios/ has no file yet
    patterns = _package_data()["testbed.scenarios"]
    (tmp_path / "new-scenario.yaml").write_text("name: x\n")
    assert _covered(tmp_path, patterns) == {(tmp_path / "new-scenario.yaml").resolve()}


def test_testbed_data_files_are_package_data():
    patterns = _package_data().get("testbed", [])
    data = ROOT / "testbed" / "data"
    files = {p.resolve() for p in data.iterdir() if p.is_file() and p.suffix in (".yaml", ".json")}
    assert files, "testbed/data has no data files"
    missing = files - _covered(ROOT / "testbed", patterns)
    assert not missing, f"data files not in package_data: {sorted(map(str, missing))}"


@pytest.mark.parametrize("package", ["testbed.topologies", "testbed.scenarios"])
def test_mapped_packages_import_from_the_top_level_dirs(package):
    import importlib

    module = importlib.import_module(package)
    expected = _package_dirs()[package] / "__init__.py"
    assert Path(module.__file__).resolve() == expected.resolve()
