"""docs/storage.md and the code cannot drift apart: every option and every output key has a row."""

import re
from pathlib import Path

from testbed.lab.node import Node
from testbed.storage.options import StorageOptions, load_options
from testbed.storage.roles import choose_roles
from testbed.storage.step import result_doc
from testbed.storage.summary import summarize_epoch

DOC = (Path(__file__).resolve().parents[2] / "docs" / "storage.md").read_text()


def _first_cells(header: str):
    """The first cell (backticks stripped, split on ', ') of every row of tables with ``header``."""
    cells = set()
    lines = DOC.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != header:
            continue
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            first = row.split("|")[1].strip()
            cells.update(part.strip("` ") for part in first.split(","))
    return cells


def _example_result():
    hosts = [Node(name="h1", netns="tb.x.h1", ip="10.0.0.1", site="a"),
             Node(name="h2", netns="tb.x.h2", ip="10.0.0.2", site="b")]
    options = load_options({})
    epoch = summarize_epoch(1, [], {}, [])
    return result_doc(choose_roles(hosts, options), options, [epoch], [], {"origin": {}, "caches": {}})


def test_every_option_has_a_row_with_its_default():
    rows = {}
    for line in DOC.splitlines():
        match = re.match(r"^\| `measure\.storage\.([a-z_]+)` \| [^|]+ \| `([^`]*)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    assert set(rows) == set(StorageOptions.model_fields)
    defaults = StorageOptions()
    for name, text in rows.items():
        expected = getattr(defaults, name)
        if text == "null":
            assert expected is None, name
        elif text in ("true", "false"):
            assert expected is (text == "true"), name
        else:
            assert load_options({name: text if not text.isdigit() else int(text)}) == defaults, name


def test_every_output_key_has_a_row():
    doc = _example_result()
    top = _first_cells("| key | meaning |")
    assert set(doc) <= top, set(doc) - top
    assert set(doc["epochs"][0]) <= top, set(doc["epochs"][0]) - top
    documented_totals = set(doc["epochs"][0]) | {"epochs", "all_verified"}
    assert set(doc["totals"]) <= documented_totals, set(doc["totals"]) - documented_totals
