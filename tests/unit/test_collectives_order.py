"""Ring orders over sites and how many ring edges cross sites."""

from __future__ import annotations

import pytest

from testbed.collectives.order import (
    crossings_by_direction,
    groups_from_labels,
    interleaved_order,
    naive_order,
    ring_crossings,
    topology_aware_order,
)
from testbed.errors import InputError


def _sites(s, a):
    return [list(range(i * a, (i + 1) * a)) for i in range(s)]


@pytest.mark.parametrize("s,a", [(2, 4), (3, 4), (4, 2), (5, 3)])
def test_cycle_crosses_once_per_site(s, a):
    groups = _sites(s, a)
    order = topology_aware_order(groups)
    assert sorted(order) == list(range(s * a))
    assert ring_crossings(order, groups) == s


@pytest.mark.parametrize("s,a", [(2, 4), (3, 4), (4, 2), (5, 3)])
def test_line_crosses_like_nccl(s, a):
    groups = _sites(s, a)
    order = topology_aware_order(groups, style="line")
    assert sorted(order) == list(range(s * a))
    assert ring_crossings(order, groups) == 2 * (s - 1)
    # only neighbouring sites are joined
    assert all(abs(x - y) == 1 for x, y in crossings_by_direction(order, groups))


def test_two_sites_cross_twice_one_each_way():
    groups = _sites(2, 4)
    for style in ("cycle", "line"):
        order = topology_aware_order(groups, style=style)
        assert crossings_by_direction(order, groups) == {(0, 1): 1, (1, 0): 1}


def test_interleaved_crosses_on_every_edge():
    groups = _sites(2, 4)
    order = interleaved_order(groups)
    assert order == [0, 4, 1, 5, 2, 6, 3, 7]
    assert ring_crossings(order, groups) == 8
    assert crossings_by_direction(order, groups) == {(0, 1): 4, (1, 0): 4}


def test_naive_order_depends_on_placement():
    contiguous = _sites(2, 4)
    round_robin = [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert ring_crossings(naive_order(8), contiguous) == 2
    assert ring_crossings(naive_order(8), round_robin) == 8


def test_one_site_and_one_rank():
    assert ring_crossings(topology_aware_order([[0, 1, 2]]), [[0, 1, 2]]) == 0
    assert ring_crossings([0], [[0]]) == 0


def test_groups_from_labels():
    assert groups_from_labels(["aws", "aws", "gcp", "aws", "gcp"]) == [[0, 1, 3], [2, 4]]


def test_bad_groups_and_style():
    with pytest.raises(InputError):
        topology_aware_order([[0, 1], [1, 2]])
    with pytest.raises(InputError):
        topology_aware_order([[0], []])
    with pytest.raises(InputError):
        topology_aware_order([[0, 1]], style="spiral")
