"""testbed.yamltext: hostile YAML is an InputError (exit 2), never a traceback or a hang."""

import time

import pytest

from testbed.errors import InputError
from testbed.yamltext import MAX_DEPTH, MAX_VALUES, load_yaml


def test_plain_documents_load_unchanged():
    assert load_yaml("a: 1\nb: [x, 2ms, 0.1%]\nc: {d: null}\n") == {"a": 1, "b": ["x", "2ms", "0.1%"], "c": {"d": None}}


def test_shared_aliases_that_are_not_cycles_are_fine():
    doc = load_yaml("base: &b {rate: 1Gbit}\nlinks: {a: *b, c: *b}\n")
    assert doc["links"]["a"] == doc["links"]["c"] == {"rate": "1Gbit"}


def test_nesting_at_the_limit_loads_and_one_deeper_is_refused():
    # MAX_DEPTH counts nodes: the innermost scalar is one level too
    ok = "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)
    load_yaml(ok)
    with pytest.raises(InputError) as info:
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert "nested deeper" in info.value.message and info.value.field.startswith("line 1 column")


def test_very_deep_nesting_is_refused_not_a_recursion_error():
    with pytest.raises(InputError):
        load_yaml("[" * 5000 + "]" * 5000, field="params.x", source="--set")


@pytest.mark.parametrize("text", ["&a [*a]", "x: &a [1, [2, *a]]"])
def test_cycles_are_refused_naming_where(text):
    with pytest.raises(InputError) as info:
        load_yaml(text, field="params.x")
    assert info.value.field == "params.x" and "refers to itself" in info.value.message


def test_a_mapping_that_contains_itself_is_refused_by_the_constructor():
    with pytest.raises(InputError) as info:
        load_yaml("&a {k: *a}", field="params.x")
    assert info.value.field == "params.x" and "recursive" in info.value.message


def test_billion_laughs_is_refused_quickly():
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        load_yaml(text)
    assert str(MAX_VALUES) in info.value.message
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("text", ["!!int zz", "!!float zz", "!!timestamp 2001-13-45", "!!bool maybe"])
def test_explicit_tags_with_bad_values_are_input_errors(text):
    with pytest.raises(InputError) as info:
        load_yaml(text, field="seed", source="--set")
    assert info.value.field == "seed" and "invalid YAML value" in info.value.message


def test_unsafe_tags_are_refused():
    with pytest.raises(InputError):
        load_yaml("!!python/object/apply:os.system ['true']")


def test_duplicate_keys_are_refused_with_their_line():
    with pytest.raises(InputError) as info:
        load_yaml("a: 1\na: 2\n", source="s.yaml")
    assert info.value.field == "line 2 column 1" and "duplicate key 'a'" in info.value.message
