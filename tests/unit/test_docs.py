"""The docs and the code cannot drift apart.

Read from the code, checked against docs/*.md:

* every ``testbed`` command and each of its options and arguments
  (``testbed.cli.build_parser()``) is documented in its section of
  docs/cli.md, and the sections document nothing the parser lacks;
* every scenario field (the pydantic models of ``testbed.scenario``, walked
  recursively) has a row in docs/scenarios.md with its default, and every row
  is a real field;
* every link profile field (``testbed.profile.USER_FIELDS``) has a row in
  docs/profiles.md whose default really is the default, and every preset of
  ``testbed/data/presets.yaml`` its values and its sources;
* every key results.schema.json defines is named in docs/results.md;
* every topology and parameter is in docs/topologies.md, the plugin's API and
  markers in docs/pytest-plugin.md;
* every relative link (and #anchor) in README.md and docs/*.md resolves.
"""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import yaml
from pydantic import BaseModel

import helpers  # tests/helpers.py, on the path through tests/conftest.py
from testbed import pytest_plugin
from testbed.cli import build_parser
from testbed.lab.plan import DEFAULT_MTU
from testbed.presets import load_presets
from testbed.profile import DEFAULT_LOSS_BURST_PKTS, LinkProfile, USER_FIELDS
from testbed.results import load_schema
from testbed.scenario import Scenario
from testbed.topologies import TOPOLOGIES, topology_params

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = [README] + sorted(DOCS.glob("*.md"))


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def _code(cell: str) -> str:
    """The text inside the first `backticks` of a cell."""
    match = re.match(r"`([^`]*)`", cell)
    assert match, f"expected a `code` cell, got {cell!r}"
    return match.group(1)


# ----------------------------------------------------------------------- CLI


def _subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no subcommands")


def _cli_sections() -> Dict[str, str]:
    text = _doc("cli.md")
    parts = re.split(r"^## `testbed (\w+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _documented_options(section: str) -> List[str]:
    """Option strings named in the first column of a section's tables."""
    found = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            found += re.findall(r"(?<![\w-])(--?[a-z][a-z_-]*)", first)
    return found


def test_cli_every_command_has_a_section():
    commands = set(_subparsers(build_parser()))
    assert commands, "no commands?"
    assert set(_cli_sections()) == commands


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_cli_every_option_and_argument_is_documented(command):
    sub = _subparsers(build_parser())[command]
    section = _cli_sections()[command]
    usage = section.split("```")[1] if "```" in section else ""
    assert f"testbed {command}" in usage, f"cli.md: no usage line for {command}"
    real_options = set()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            for option in action.option_strings:
                real_options.add(option)
                assert f"`{option}" in section, f"cli.md: {command} does not document {option}"
                assert option in usage, f"cli.md: {command}'s usage line lacks {option}"
        else:
            name = (action.metavar or action.dest).upper()
            assert name in usage, f"cli.md: {command}'s usage line lacks {name}"
            assert f"`{name}`" in section, f"cli.md: {command} does not describe {name}"
    for option in _documented_options(section):
        assert option in real_options, f"cli.md documents {option} for {command}; it has no such option"


def test_cli_top_level_options():
    text = _doc("cli.md")
    parser = build_parser()
    for action in parser._actions:
        for option in action.option_strings:
            assert f"`{option}`" in text, f"cli.md does not document testbed {option}"


# ------------------------------------------- cli.md examples of set, show, capture, graph

_LIVE_COMMANDS = ("up", "set", "show", "capture", "graph")


def _cli_examples() -> List[List[str]]:
    """Every ``$ [sudo] testbed up|set|show|capture|graph ...`` line of cli.md, as argv (pipes cut)."""
    import shlex

    out = []
    for line in _doc("cli.md").splitlines():
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:].split(" | ")[0])
        if argv[:1] == ["sudo"]:
            argv = argv[1:]
        if argv[:1] == ["testbed"] and argv[1] in _LIVE_COMMANDS:
            out.append(argv[1:])
    return out


def test_cli_examples_of_set_show_capture_graph_run(tmp_path, monkeypatch):
    """Each example is parsed by the real parser; without root, each one is run as far as it can:

    ``up`` examples are planned (the lab they name, no kernel), ``set`` items
    are checked and applied in order on that plan (as ``testbed set`` does
    before it changes anything), ``capture`` targets resolved in it, and
    ``graph`` of a topology runs for real (its files written in a scratch
    directory).
    """
    from testbed.capture import resolve_target
    from testbed.cli import _split_up_overrides, main
    from testbed.graph import graph_doc, to_dot
    from testbed.lab.live import parse_set_items
    from testbed.lab.plan import make_plan
    from testbed.topologies import build_topology

    examples = _cli_examples()
    assert {argv[0] for argv in examples} == set(_LIVE_COMMANDS), examples
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    labs: Dict[str, tuple] = {}  # lab name -> (plan, specs in force)
    for argv in examples:
        args = parser.parse_args(argv)
        if args.command == "up":
            _settings, params, links = _split_up_overrides(args.topology, args.overrides)
            plan = make_plan(build_topology(args.topology, params), args.name, "10.0.0.0/8", links)
            labs[args.name] = (plan, {})
        elif args.command == "set":
            plan, now = labs[args.lab]
            for change in parse_set_items(args.items, plan, now, "userspace"):
                now[change.link.id] = change.after
            assert args.items
        elif args.command == "show":
            assert args.lab in labs
        elif args.command == "capture":
            resolve_target(labs[args.lab][0], args.target)
        elif args.source in labs:  # graph of a lab from an example above
            assert "--" in to_dot(graph_doc(labs[args.source][0], labs[args.source][1]))
        else:
            assert main(argv) == 0, argv
            if args.output:
                assert (tmp_path / args.output).stat().st_size > 0


# ------------------------------------------------------------------ scenarios


def _nested_models(annotation) -> Iterator[Tuple[type, str]]:
    """(model, path suffix) for every pydantic model inside a field's annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ""
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, suffix in _nested_models(arg):
            yield model, ("[]" if origin in (list, List) else "") + suffix


def _scenario_fields(model=Scenario, prefix: str = "") -> Dict[str, object]:
    """Dotted path -> default ("required" for required fields) of every scenario field."""
    out: Dict[str, object] = {}
    for name, field in model.model_fields.items():
        path = prefix + name
        if field.is_required():
            out[path] = "required"
        elif field.default_factory is not None:
            out[path] = field.default_factory()
        else:
            out[path] = field.default
        for nested, suffix in _nested_models(field.annotation):
            out.update(_scenario_fields(nested, path + suffix + "."))
    return out


SCENARIO_HEADER = "| field | type | default | meaning |"


def _scenario_rows() -> Dict[str, str]:
    rows = {}
    for cells in helpers.table_rows(_doc("scenarios.md"), SCENARIO_HEADER):
        path = _code(cells[0])
        assert path not in rows, f"scenarios.md documents {path} twice"
        rows[path] = cells[2]
    return rows


def test_scenario_walk_finds_the_nested_fields():
    fields = _scenario_fields()
    # the walk must reach every level, or the test below would check little
    for path in ("variants[].links", "measure.tcp.window", "measure.steady.tolerance_pct",
                 "fidelity.jitter_tolerance_pct", "endpoints.src"):
        assert path in fields, path


def test_every_scenario_field_is_documented_and_nothing_else():
    fields, rows = _scenario_fields(), _scenario_rows()
    missing = sorted(set(fields) - set(rows))
    unknown = sorted(set(rows) - set(fields))
    assert not missing, f"scenarios.md lacks rows for: {missing}"
    assert not unknown, f"scenarios.md documents fields the code does not have: {unknown}"


@pytest.mark.parametrize("path", sorted(_scenario_fields()))
def test_scenario_default_is_documented(path):
    default = _scenario_fields()[path]
    cell = _scenario_rows().get(path)
    if cell is None:
        pytest.fail(f"scenarios.md has no row for {path}")
    if default == "required":
        assert cell == "required", f"{path} is required; scenarios.md says {cell!r}"
        return
    assert cell != "required", f"{path} has a default; scenarios.md says required"
    if isinstance(default, BaseModel):
        return  # a nested section: its own rows carry the defaults
    documented = yaml.safe_load(cell.strip("`"))
    assert documented == default, f"{path}: default is {default!r}, scenarios.md says {cell!r}"


# ------------------------------------------------------------------- profiles


PROFILE_HEADER = "| field | meaning | default |"


def _profile_rows() -> Dict[str, str]:
    return {_code(cells[0]): cells[2] for cells in helpers.table_rows(_doc("profiles.md"), PROFILE_HEADER)}


def test_every_profile_field_is_documented_and_nothing_else():
    assert sorted(_profile_rows()) == sorted(USER_FIELDS)


@pytest.mark.parametrize("field", USER_FIELDS)
def test_profile_default_is_documented(field):
    cell = _profile_rows()[field].strip("`")
    default = LinkProfile()
    if field == "rate":
        assert cell == "unshaped" and default.rate_bps is None
    elif field == "mtu":
        assert default.mtu is None and cell == str(DEFAULT_MTU)  # a link without one gets this
    elif field == "loss_burst":
        ge = LinkProfile.from_user({"loss": "1%", "loss_model": "gilbert-elliott", "loss_burst": cell})
        assert ge.loss_burst_pkts == DEFAULT_LOSS_BURST_PKTS
    else:
        assert LinkProfile.from_user({field: cell}) == default, f"{field}: default is not {cell!r}"


PRESET_HEADER = "| preset | rate | delay | jitter | loss | mtu | also |"
PRESET_COLUMNS = ("rate", "delay", "jitter", "loss", "mtu")
ABSENT = {"rate": "unshaped", "delay": "0", "jitter": "0", "loss": "0"}


def test_every_preset_is_in_the_table_with_its_values():
    presets = load_presets()
    rows = {_code(cells[0]): cells[1:] for cells in helpers.table_rows(_doc("profiles.md"), PRESET_HEADER)}
    assert sorted(rows) == sorted(presets)
    for name, preset in presets.items():
        cells = dict(zip(PRESET_COLUMNS + ("also",), rows[name]))
        for column in PRESET_COLUMNS:
            expected = str(preset[column]) if column in preset else ABSENT[column]
            assert cells[column] == expected, f"{name}.{column}: {preset.get(column)!r} vs {cells[column]!r}"
        for key, value in preset.items():
            if key not in PRESET_COLUMNS and key != "description":
                assert f"{key} {value}" in cells["also"], f"{name}: {key} {value} not in 'also'"


@pytest.mark.parametrize("name", sorted(load_presets()))
def test_every_preset_cites_its_sources(name):
    text = _doc("profiles.md")
    match = re.search(rf"^#### `{re.escape(name)}`\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert match, f"profiles.md has no '#### `{name}`' sources section"
    section = match.group(1)
    for key, value in load_presets()[name].items():
        if key != "description":
            assert f"{key} {value}" in section, f"{name}: sources do not mention {key} {value}"
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert bullets, f"{name}: no source bullets"
    for line in bullets:
        assert re.search(r"FACTS|PRODUCT|\[assumption", line), f"{name}: no source in {line!r}"


# -------------------------------------------------------------------- results


def _schema_keys() -> Dict[str, List[str]]:
    schema = load_schema()
    keys = {"<top>": list(schema["properties"])}
    for name, definition in schema["$defs"].items():
        if definition.get("properties"):
            keys[name] = list(definition["properties"])
    return keys


def test_every_results_key_is_documented():
    text = _doc("results.md")
    keys = _schema_keys()
    assert {"<top>", "variant", "ping", "owd_direction", "tcp", "fidelity_check"} <= set(keys)
    missing = [f"{where}.{key}" for where, names in keys.items() for key in names
               if f"`{key}`" not in text]
    assert not missing, f"results.md does not name: {missing}"
    assert "testbed.results/1" in text and "testbed/data/results.schema.json" in text


# --------------------------------------------------------- topologies, plugin


def test_every_topology_and_parameter_is_documented():
    text = _doc("topologies.md")
    for name in TOPOLOGIES:
        assert f"### `{name}`" in text, f"topologies.md has no section for {name}"
        for param in topology_params(name):
            assert f"`{param}`" in text, f"topologies.md does not document {name}'s {param}"


def test_pytest_plugin_api_is_documented():
    text = _doc("pytest-plugin.md")
    for name in ("lab", "lab_ping", "lab_owd", "lab_tcp", "lab_udp", "lab_path", "lab_collective",
                 "measure_step"):
        assert name in pytest_plugin.__all__
        assert f"`{name}" in text, f"pytest-plugin.md does not document {name}"
    for marker in pytest_plugin.MARKERS:
        assert f"@pytest.mark.{marker}" in text


# ---------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    found = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(_slug(line.lstrip("#")))
    return found


def _links(path: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not inside code blocks
    text = re.sub(r"`[^`\n]*`", "", text)
    yield from re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


def _relative_links() -> List[Tuple[Path, str]]:
    return [(path, target) for path in MARKDOWN for target in _links(path)
            if not re.match(r"[a-z]+:", target)]


def test_there_are_links_to_check():
    assert len(_relative_links()) > 20


@pytest.mark.parametrize("path,target", _relative_links(),
                         ids=[f"{p.name}->{t}" for p, t in _relative_links()])
def test_relative_link_resolves(path, target):
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    assert resolved.exists(), f"{path.name}: link to {target} -- no such file"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{path.name}: no heading for #{anchor} in {resolved.name}"


def test_every_docs_page_is_linked_from_the_index():
    index = _doc("index.md")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
    assert "](docs/index.md)" in README.read_text() or all(
        f"](docs/{p.name})" in README.read_text() for p in DOCS.glob("*.md") if p.name != "index.md")


def test_every_shipped_scenario_is_in_the_scenarios_table():
    """docs/scenarios.md's shipped-scenarios table lists every file in scenarios/ (issue 17, 8k)."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "scenarios.md").read_text()
    table = text[text.index("## Shipped scenarios"):]
    listed = {line.split("|")[1].strip().strip("`") for line in table.splitlines()
              if line.startswith("| `")}
    shipped = {p.stem for p in (root / "scenarios").glob("*.yaml")}
    assert listed == shipped
