"""docs/storage.md and the code cannot drift apart: every option and every output key has a row."""

import json
import re
from pathlib import Path

import jsonschema
import pytest

import helpers  # tests/helpers.py, on the path through tests/conftest.py
from testbed.lab.node import Node
from testbed.results import load_schema
from testbed.storage.options import StorageOptions, load_options
from testbed.storage.roles import choose_roles
from testbed.storage.step import result_doc
from testbed.storage.summary import summarize_epoch

DOC = (Path(__file__).resolve().parents[2] / "docs" / "storage.md").read_text()


def _first_cells(header: str):
    """The first cell (backticks stripped, split on ', ') of every row of tables with ``header``."""
    return {part.strip("` ") for row in helpers.table_rows(DOC, header) for part in row[0].split(",")}


READER = {"reader": "h2", "epoch": 1, "via_cache": True, "elapsed_s": 0.5, "reads": 2,
          "failed_reads": 1, "attempts": 5, "retries": 2, "bytes_fetched": 3000,
          "bytes_verified": 2000, "cache_hits": 1, "cache_misses": 1, "corrupt_detected": 1,
          "corrupt_rejected_upstream": 1, "stale_detected": 0, "errors": 0,
          "latencies_ms": [1.5, 40.0],
          "failures": [{"name": "shard-00001", "version": 1, "attempts": 2, "error": "HTTP 200"}]}


def _example_result(readers=(READER,), cache=True):
    hosts = [Node(name="h1", netns="tb.x.h1", ip="10.0.0.1", site="a"),
             Node(name="h2", netns="tb.x.h2", ip="10.0.0.2", site="b")]
    options = load_options({"cache": cache})
    epochs = [summarize_epoch(1, list(readers), {"corrupted_responses": 1, "bytes_sent": 4000},
                              [{"digest_mismatch": 0, "evictions": 0}])]
    latencies = [x for r in readers for x in r["latencies_ms"]]
    return result_doc(choose_roles(hosts, options), options, epochs, latencies,
                      {"origin": {"role": "origin"}, "caches": {"h2": {"role": "cache"}}})


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


STORAGE = load_schema()["$defs"]["storage"]  # the shipped results schema's definition
EPOCH_FIELDS = STORAGE["properties"]["epochs"]["items"]["required"]
TOTAL_FIELDS = STORAGE["properties"]["totals"]["required"]


def _validator():
    """The storage definition inside the real results schema's definitions."""
    return jsonschema.Draft202012Validator({"$defs": load_schema()["$defs"], "$ref": "#/$defs/storage"})


@pytest.mark.parametrize("readers, cache", [((READER,), True), ((), False)])
def test_results_match_the_schema(readers, cache):
    doc = json.loads(json.dumps(_example_result(readers, cache)))  # what results.json holds
    errors = list(_validator().iter_errors(doc))
    assert not errors, [e.message for e in errors]
    assert set(doc["epochs"][0]) == set(EPOCH_FIELDS)
    assert set(doc["totals"]) == set(TOTAL_FIELDS)


def test_the_schema_refuses_an_unknown_figure():
    doc = json.loads(json.dumps(_example_result()))
    doc["epochs"][0]["surprise"] = 1
    assert list(_validator().iter_errors(doc))
