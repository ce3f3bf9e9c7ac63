"""Binary and double binary trees (NCCL's tree algorithm), pipelined in chunks.

Tree shape (:func:`binary_tree`): the in-order binary tree over positions
``1..m`` (1-based) -- the root of a range is the number in it with the most
trailing zero bits, its halves are the subtrees. Odd numbers (0-based even
positions) are always leaves; depth is ``floor(log2 m)``.

Double binary tree (``kind="double"``, the default, as NCCL): a second tree
is the first one mirrored (``i -> m-1-i``, ``m`` even) or shifted by one
(``i -> i+1``, ``m`` odd). The first tree's interior positions are odd and
the second's are even, so **every rank is interior in at most one tree**
(:func:`double_binary_tree`, checked in the tests). Each tree carries half
the data.

* allreduce: per chunk, a reduce up the tree (a node sends its chunk up once
  every child's chunk was added into it) then a broadcast down (the root
  starts once all its children's chunks arrived; a node forwards what it
  received). Chunks are independent, so they pipeline.
* broadcast / reduce: the tree is rotated so its root is the operation's
  root. With two trees, the second tree's root gets its half from the root
  first (broadcast), or hands the reduced half to the root last (reduce).

Chunking: ``nchunks`` per tree, or enough that one message is at most
``chunk_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from testbed.collectives.algorithms._common import check_order, chunk_count, chunks, rotate_to
from testbed.collectives.schedule import (
    COPY,
    REDUCE,
    Region,
    Schedule,
    ScheduleBuilder,
    split_range,
)
from testbed.errors import InputError

__all__ = ["OPS", "KINDS", "Tree", "binary_tree", "double_binary_tree", "build"]

OPS = ("allreduce", "broadcast", "reduce")
KINDS = ("double", "binary")


@dataclass(frozen=True)
class Tree:
    """A rooted tree over ranks: ``parent[r]`` (None at the root), ``children[r]``."""

    root: int
    parent: Dict[int, Optional[int]]
    children: Dict[int, List[int]]

    def preorder(self) -> List[int]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(self.children[node]))
        return out

    def interior(self) -> List[int]:
        return [r for r, kids in self.children.items() if kids]

    def depth(self) -> int:
        level = {self.root: 0}
        for node in self.preorder():
            for kid in self.children[node]:
                level[kid] = level[node] + 1
        return max(level.values())


def _range_root(lo: int, hi: int) -> int:
    """The number in [lo, hi] (1-based, lo <= hi) with the most trailing zeros."""
    bit = 1 << hi.bit_length()
    while bit:
        candidate = -(-lo // bit) * bit
        if candidate <= hi:
            return candidate
        bit >>= 1
    return lo  # unreachable: bit 1 always finds lo


def binary_tree(m: int) -> Tree:
    """The in-order binary tree over positions 0..m-1 (see the module docstring)."""
    parent: Dict[int, Optional[int]] = {}
    children: Dict[int, List[int]] = {i: [] for i in range(m)}
    root = _range_root(1, m) - 1
    parent[root] = None
    stack = [(1, m, None)]
    while stack:
        lo, hi, up = stack.pop()
        if lo > hi:
            continue
        node = _range_root(lo, hi)
        pos = node - 1
        parent[pos] = up
        if up is not None:
            children[up].append(pos)
        stack.append((node + 1, hi, pos))
        stack.append((lo, node - 1, pos))
    for kids in children.values():
        kids.sort()
    return Tree(root, parent, children)


def _relabel(tree: Tree, label: Sequence[int]) -> Tree:
    parent = {label[p]: (None if q is None else label[q]) for p, q in tree.parent.items()}
    children = {label[p]: [label[c] for c in kids] for p, kids in tree.children.items()}
    return Tree(label[tree.root], parent, children)


def double_binary_tree(m: int) -> List[Tree]:
    """NCCL's two trees over positions 0..m-1: the tree, and its mirror or shift."""
    first = binary_tree(m)
    if m % 2 == 0:
        moved = [m - 1 - i for i in range(m)]
    else:
        moved = [(i + 1) % m for i in range(m)]
    return [first, _relabel(first, moved)]


def _allreduce(b: ScheduleBuilder, tree: Tree, region: Region) -> None:
    up: Dict[int, Optional[int]] = {}
    for node in reversed(tree.preorder()):  # children before parents
        if tree.parent[node] is not None:
            deps = [up[c] for c in tree.children[node]]
            up[node] = b.add(node, tree.parent[node], region, REDUCE, deps)
    _broadcast(b, tree, region, root_deps=[up[c] for c in tree.children[tree.root]])


def _broadcast(b: ScheduleBuilder, tree: Tree, region: Region, root_deps=(),
               skip: Optional[int] = None) -> None:
    """Copy ``region`` down the tree; edges into ``skip`` (already has it) are left out."""
    down: Dict[int, Optional[int]] = {}
    for node in tree.preorder():
        if node == tree.root:
            deps = list(root_deps)
        elif node == skip:
            deps = []
        else:
            deps = [down.get(node)]
        for kid in tree.children[node]:
            if kid != skip:
                down[kid] = b.add(node, kid, region, COPY, deps)


def _reduce(b: ScheduleBuilder, tree: Tree, region: Region) -> List[Optional[int]]:
    """Add ``region`` up the tree; returns the root's receipts."""
    up: Dict[int, Optional[int]] = {}
    for node in reversed(tree.preorder()):
        if tree.parent[node] is not None:
            up[node] = b.add(node, tree.parent[node], region, REDUCE,
                             [up[c] for c in tree.children[node]])
    return [up[c] for c in tree.children[tree.root]]


def build(op: str, ranks: int, count: int, root: int = 0, order: Optional[Sequence[int]] = None,
          kind: str = "double", chunk_bytes: Optional[int] = None,
          nchunks: Optional[int] = None) -> Schedule:
    """The tree schedule of ``op`` (``kind`` "double" or "binary")."""
    if kind not in KINDS:
        raise InputError("kind", f"tree kind must be one of {', '.join(KINDS)}, got {kind!r}")
    positions = check_order(order, ranks)
    shapes = double_binary_tree(ranks) if kind == "double" else [binary_tree(ranks)]
    if op != "allreduce":  # the first tree's root must be the operation's root
        positions = rotate_to(positions, root, shapes[0].root)
    trees = [_relabel(shape, positions) for shape in shapes]
    halves = split_range(0, count, len(trees))
    b = ScheduleBuilder()
    for tree, half in zip(trees, halves):
        k = chunk_count(half[1] - half[0], 1, chunk_bytes, nchunks)
        for region in chunks(half, k):
            if op == "allreduce":
                _allreduce(b, tree, region)
            elif op == "broadcast":
                if tree.root == root:
                    _broadcast(b, tree, region)
                else:
                    first = b.add(root, tree.root, region, COPY)
                    _broadcast(b, tree, region, root_deps=[first], skip=root)
            else:  # reduce
                receipts = _reduce(b, tree, region)
                if tree.root != root:
                    b.add(tree.root, root, region, COPY, receipts)
    params = {"order": positions, "kind": kind, "chunk_bytes": chunk_bytes, "nchunks": nchunks}
    return b.build(op, "tree", ranks, count, root, params)
