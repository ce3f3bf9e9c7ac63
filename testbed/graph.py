"""A lab drawn: nodes by role and site, links labelled with rate, delay and loss.

One description of what to draw (:func:`graph_doc`: nodes with role and site,
links with ends, name and profile -- JSON, so a run keeps it in results.json's
variant ``lab.graph``), rendered three ways, none needing graphviz:

* :func:`to_dot` -- Graphviz text, one ``cluster_<site>`` subgraph per site;
* :func:`to_mermaid` -- a Mermaid ``flowchart``, one ``subgraph`` per site;
* :func:`figure` -- a matplotlib figure (the PNG of ``testbed graph --format
  png`` and of report.md): sites side by side as shaded boxes, nodes layered by
  role (routers, then switches, then hosts); sites without hosts (transit) and
  nodes without a site in the middle.

Shapes by role: host a box, router a circle, switch a hexagon.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from testbed.lab.plan import LabPlan
from testbed.profile import LinkSpec, resolve_link

__all__ = ["graph_doc", "link_label", "to_dot", "to_mermaid", "figure", "FORMATS"]

FORMATS = ("dot", "mermaid", "png")
_ROLE_ORDER = {"router": 0, "switch": 1, "host": 2}
_ROLE_COLOR = {"host": "#dbe9f6", "router": "#fde2c4", "switch": "#e3f1dc"}
_DOT_SHAPE = {"host": "box", "router": "circle", "switch": "hexagon"}
_HOSTS_PER_ROW = 16
_DPI = 110  # as the report's plots
_LABEL_ALL_UP_TO = 40  # more links than this: label one link per (name, label)


def graph_doc(plan: LabPlan, in_force: Optional[Mapping[int, LinkSpec]] = None) -> dict:
    """What a drawing needs from a plan (and the profiles in force, if changed live)."""
    in_force = in_force or {}
    return {
        "nodes": [{"name": n.name, "role": n.role, "site": n.site}
                  for n in sorted(plan.nodes.values(), key=lambda n: n.name)],
        "links": [{"a": l.a, "b": l.b, "name": l.name,
                   "profile": in_force.get(l.id, l.spec).to_user()} for l in plan.links],
    }


def _direction_text(profile) -> str:
    parts = []
    user = profile.to_user()
    if user.get("rate"):
        parts.append(str(user["rate"]))
    if profile.delay_ms:
        parts.append(str(user["delay"]))
    if profile.loss_pct:
        parts.append(f"loss {user['loss']}")
    return " ".join(parts)


def link_label(link: Mapping[str, Any]) -> str:
    """``1Gbit 20ms loss 0.1%`` (both ways), ``fwd ... / rev ...`` when they differ, or ``unshaped``."""
    spec = resolve_link(link["profile"], f"links.{link['name']}")
    forward, reverse = _direction_text(spec.forward), _direction_text(spec.reverse)
    if forward == reverse:
        return forward or "unshaped"
    return f"fwd {forward or 'unshaped'} / rev {reverse or 'unshaped'}"


def _sites(doc: Mapping) -> List[Optional[str]]:
    """Site order: sites with hosts sorted, those without (transit) and nodes without a site in the middle."""
    named = sorted({n["site"] for n in doc["nodes"] if n.get("site")})
    with_hosts = [s for s in named if any(n.get("site") == s and n["role"] == "host" for n in doc["nodes"])]
    middle = [s for s in named if s not in with_hosts]
    if any(not n.get("site") for n in doc["nodes"]):
        middle.append(None)
    half = (len(with_hosts) + 1) // 2
    return [*with_hosts[:half], *middle, *with_hosts[half:]]


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(doc: Mapping, title: str = "lab") -> str:
    """Graphviz text (``dot -Tsvg``), one cluster per site."""
    lines = [f"graph {_quote(title)} {{", "  rankdir=LR;",
             '  node [fontname="Helvetica", style=filled];', '  edge [fontname="Helvetica", fontsize=10];']
    for site in _sites(doc):
        members = [n for n in doc["nodes"] if n.get("site") == site]
        indent = "    " if site else "  "
        if site:
            lines += [f"  subgraph {_quote('cluster_' + site)} {{", f"    label={_quote(site)};",
                      '    style=filled; color="#f2f2f2";']
        for n in members:
            lines.append(f"{indent}{_quote(n['name'])} [shape={_DOT_SHAPE.get(n['role'], 'box')}, "
                         f"fillcolor={_quote(_ROLE_COLOR.get(n['role'], '#ffffff'))}, "
                         f"tooltip={_quote(n['role'])}];")
        if site:
            lines.append("  }")
    for link in doc["links"]:
        label = f"{link['name']}: {link_label(link)}"
        lines.append(f"  {_quote(link['a'])} -- {_quote(link['b'])} [label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_ids(names: Sequence[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name in names:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        ident, k = base, 1
        while ident in out.values():
            k += 1
            ident = f"{base}_{k}"
        out[name] = ident
    return out


def _mermaid_text(text: str) -> str:
    return str(text).replace('"', "#quot;")


def to_mermaid(doc: Mapping) -> str:
    """A Mermaid flowchart (GitHub renders it in markdown), one subgraph per site."""
    ids = _mermaid_ids([n["name"] for n in doc["nodes"]])
    shape = {"host": ('["', '"]'), "router": ('(("', '"))'), "switch": ('{{"', '"}}')}
    lines = ["flowchart LR"]
    for index, site in enumerate(_sites(doc)):
        members = [n for n in doc["nodes"] if n.get("site") == site]
        indent = "    " if site else "  "
        if site:
            lines.append(f'  subgraph site_{index}["{_mermaid_text(site)}"]')
        for n in members:
            left, right = shape.get(n["role"], shape["host"])
            lines.append(f"{indent}{ids[n['name']]}{left}{_mermaid_text(n['name'])}{right}")
        if site:
            lines.append("  end")
    for link in doc["links"]:
        label = _mermaid_text(f"{link['name']}: {link_label(link)}")
        lines.append(f'  {ids[link["a"]]} ---|"{label}"| {ids[link["b"]]}')
    for role, color in _ROLE_COLOR.items():
        members = [ids[n["name"]] for n in doc["nodes"] if n["role"] == role]
        if members:
            lines.append(f"  classDef {role} fill:{color}")
            lines.append(f"  class {','.join(members)} {role}")
    return "\n".join(lines) + "\n"


def _layout(doc: Mapping) -> Tuple[Dict[str, Tuple[float, float]], List[Tuple[Optional[str], float, float, float, float]]]:
    """Node positions, and each site's box (site, x0, y0, x1, y1)."""
    pos: Dict[str, Tuple[float, float]] = {}
    boxes = []
    x0 = 0.0
    for site in _sites(doc):
        members = sorted((n for n in doc["nodes"] if n.get("site") == site),
                         key=lambda n: (_ROLE_ORDER.get(n["role"], 3), _natural(n["name"])))
        rows: List[List[str]] = []
        for role in ("router", "switch", "host", None):
            names = [n["name"] for n in members if (n["role"] if n["role"] in _ROLE_ORDER else None) == role]
            for start in range(0, len(names), _HOSTS_PER_ROW):
                rows.append(names[start:start + _HOSTS_PER_ROW])
        width = max((len(r) for r in rows), default=1)
        for depth, row in enumerate(rows):
            offset = (width - len(row)) / 2.0
            for i, name in enumerate(row):
                pos[name] = (x0 + offset + i, -float(depth))
        boxes.append((site, x0 - 0.5, -len(rows) + 0.5, x0 + width - 0.5, 0.5))
        x0 += width + 1.0
    return pos, boxes


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def figure(doc: Mapping, title: str = ""):
    """A matplotlib figure of the lab (Agg canvas, no pyplot); ``fig.savefig(path)`` writes it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos, boxes = _layout(doc)
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    many = len(pos) > 60
    width_in = min(24.0, max(6.0, 0.9 * (max(xs) - min(xs) + 2)))
    height_in = min(16.0, max(3.0, 1.3 * (max(ys) - min(ys) + 2)))
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for site, bx0, by0, bx1, by1 in boxes:
        if site is None:
            continue
        ax.add_patch(FancyBboxPatch((bx0, by0), bx1 - bx0, by1 - by0, boxstyle="round,pad=0.2",
                                    facecolor="#f2f2f2", edgecolor="#bbbbbb", zorder=0))
        ax.text((bx0 + bx1) / 2, by1 + 0.35, site, ha="center", va="bottom", fontsize=11,
                fontweight="bold")
    seen = set()
    label_all = len(doc["links"]) <= _LABEL_ALL_UP_TO
    extent_y = list(ys)
    arcs = 0
    besides = 0
    for link in doc["links"]:
        (x1, y1), (x2, y2) = pos[link["a"]], pos[link["b"]]
        label = link_label(link)
        shaped = label != "unshaped"
        rad = 0.0
        if y1 == y2 and abs(x2 - x1) > 1.01:  # along a row over other nodes: bend it
            arcs += 1
            rad = (0.12 + 0.04 * (arcs % 3)) * (1 if arcs % 2 else -1)
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), arrowstyle="-",
                                     connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0,
                                     color="#444444" if shaped else "#aaaaaa",
                                     linewidth=1.6 if shaped else 0.8, zorder=1))
        # the middle of the quadratic curve arc3 draws
        mx, my = (x1 + x2) / 2 + 0.5 * rad * (y2 - y1), (y1 + y2) / 2 - 0.5 * rad * (x2 - x1)
        extent_y.append(my)
        key = (link["name"], label)
        if shaped and (label_all or key not in seen):
            seen.add(key)
            beside = y1 == y2 and abs(x2 - x1) <= 1.01  # between neighbours: off the nodes,
            if beside:                                   # above and below in turn
                besides += 1
            up = besides % 2 == 1
            ax.text(mx, my + ((0.22 if up else -0.22) if beside else 0.0), f"{link['name']}\n{label}",
                    fontsize=7, ha="center", va=("bottom" if up else "top") if beside else "center",
                    zorder=3, bbox=dict(boxstyle="round,pad=0.15", facecolor="white",
                                        edgecolor="none", alpha=0.85))
    markers = {"host": "s", "router": "o", "switch": "h"}
    for n in doc["nodes"]:
        x, y = pos[n["name"]]
        ax.scatter([x], [y], s=160 if many else 700, marker=markers.get(n["role"], "s"),
                   color=_ROLE_COLOR.get(n["role"], "#ffffff"), edgecolors="#333333", zorder=2)
        if not many or n["role"] != "host":
            ax.text(x, y, n["name"], ha="center", va="center", fontsize=6 if many else 8, zorder=4)
    for role, marker in markers.items():
        ax.scatter([], [], marker=marker, color=_ROLE_COLOR[role], edgecolors="#333333", label=role)
    ax.plot([], [], color="#aaaaaa", linewidth=0.8, label="unshaped link")
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    ax.set_ylim(min(extent_y) - 1.0, max(extent_y) + 1.2)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig
