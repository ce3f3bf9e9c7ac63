"""The ``testbed`` commands for a running lab's links and pictures: set, show, capture, graph.

Kept beside :mod:`testbed.cli` (which adds them to its parser with
:func:`add_commands` and dispatches through :data:`COMMANDS`); the work is in
:mod:`testbed.lab.live`, :mod:`testbed.capture` and :mod:`testbed.graph`.
Errors are the usual ones: exit 2 naming the field, 3 for the machine, 1 for
a failed run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from testbed.errors import InputError

__all__ = ["add_commands", "COMMANDS"]


def add_commands(sub) -> None:
    """Add set, show, capture and graph to ``testbed``'s subparsers."""
    st = sub.add_parser("set", help="change a running lab's link profiles live: LINK.FIELD=VALUE ...")
    st.add_argument("lab")
    st.add_argument("items", nargs="*", metavar="LINK.FIELD=VALUE",
                    help="e.g. direct.delay=30ms, direct.forward.loss=1%%, direct.rate=500Mbit, "
                         "direct=configured (back to the built profile)")

    sh = sub.add_parser("show", help="a running lab's nodes, interfaces and link profiles in force")
    sh.add_argument("lab")
    sh.add_argument("--json", action="store_true", help="machine-readable output")

    cp = sub.add_parser("capture", help="write a pcap of what a link or a node's interface carries")
    cp.add_argument("lab")
    cp.add_argument("target", metavar="LINK|NODE:IFACE")
    cp.add_argument("-c", dest="count", type=int, default=None, metavar="N",
                    help="stop after N packets (default: until Ctrl-C)")
    cp.add_argument("-w", dest="write", default=None, metavar="FILE",
                    help="pcap file, '-' for stdout (| wireshark -k -i -); default LAB-TARGET.pcap")
    cp.add_argument("--filter", default=None, metavar="BPF", help="tcpdump filter, e.g. 'tcp port 5201'")

    gr = sub.add_parser("graph", help="draw a topology or a running lab (dot, mermaid or png)")
    gr.add_argument("source", metavar="TOPOLOGY|LAB")
    gr.add_argument("--format", default=None, help="dot, mermaid or png (default: from -o's suffix, else dot)")
    gr.add_argument("-o", dest="output", default=None, metavar="FILE", help="write here (default: stdout; png needs -o)")


def _cmd_set(args) -> int:
    from testbed.lab.lab import require_root
    from testbed.lab.live import apply_set, profile_text
    from testbed.lab.naming import check_lab_name

    check_lab_name(args.lab, "lab")
    if not args.items:
        raise InputError("items", "give at least one LINK.FIELD=VALUE, e.g. testbed set "
                         f"{args.lab} link.delay=30ms")
    require_root()
    changes = apply_set(args.lab, args.items)
    if not changes:
        print(f"lab {args.lab}: nothing to change (the links already carry that)")
    for change in changes:
        for direction in ("forward", "reverse"):
            was = getattr(change.before, direction).to_user()
            now = getattr(change.after, direction).to_user()
            if was != now:
                print(f"{args.lab}: {change.link.name} (link {change.link.id}) {direction}: "
                      f"{profile_text(was)} -> {profile_text(now)}")
    return 0


def _cmd_show(args) -> int:
    from testbed.lab.lab import Lab, require_root
    from testbed.lab.live import line_mismatches, render_show, show_doc

    require_root()
    lab = Lab.attach(args.lab)
    view = show_doc(lab.doc, lab.plan)
    view["mismatches"] = line_mismatches(lab, lab.plan)
    print(json.dumps(view, indent=1) if args.json else render_show(view))
    for problem in view["mismatches"]:
        print(f"testbed: warning: {problem}", file=sys.stderr)
    return 1 if view["mismatches"] else 0


def _cmd_capture(args) -> int:
    from testbed.capture import resolve_target, run_capture
    from testbed.lab.lab import Lab, require_root
    from testbed.lab.naming import check_lab_name

    check_lab_name(args.lab, "lab")
    if args.count is not None and args.count < 1:
        raise InputError("count", f"-c must be at least 1, not {args.count}")
    stream = args.write == "-"
    if stream and sys.stdout.isatty():
        raise InputError("w", "-w - writes a binary pcap to stdout, which is a terminal: pipe it "
                         "(| wireshark -k -i -) or give -w FILE")
    require_root()
    lab = Lab.attach(args.lab)
    target = resolve_target(lab.plan, args.target)
    path = None if stream else Path(args.write or f"{args.lab}-{args.target.replace(':', '-')}.pcap")
    if path is not None:
        if path.is_dir():
            raise InputError("w", f"{path} is a directory; give a file name")
        try:
            out = open(path, "wb")
        except OSError as exc:
            raise InputError("w", f"cannot write {path}: {exc.strerror}") from None
        out_fd = out.fileno()
    else:
        sys.stdout.flush()
        out, out_fd = None, sys.stdout.fileno()
    print(f"capturing on {target.what} in {target.netns} ({target.ifname})"
          + (f" into {path}" if path else " to stdout") + ("; Ctrl-C stops" if args.count is None else ""),
          file=sys.stderr, flush=True)
    try:
        result = run_capture(lab.plan, target, out_fd, args.count, args.filter)
    except BaseException:
        if out is not None:
            out.close()
            if path.stat().st_size == 0:  # tcpdump refused (a bad filter): leave no empty file
                path.unlink()
        raise
    if out is not None:
        out.close()
    dropped = f", {result.dropped} dropped by the kernel" if result.dropped else ""
    print(f"captured {result.captured if result.captured is not None else '?'} packets"
          + (f" into {path}" if path else "") + dropped, file=sys.stderr)
    return 130 if result.interrupted and args.count is not None else 0


def _cmd_graph(args) -> int:
    from testbed.graph import FORMATS, figure, graph_doc, to_dot, to_mermaid
    from testbed.lab import state
    from testbed.lab.live import in_force
    from testbed.lab.plan import LabPlan, make_plan
    from testbed.topologies import TOPOLOGIES, build_topology

    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lower().lstrip(".") if args.output else ""
        fmt = {"png": "png", "mmd": "mermaid", "mermaid": "mermaid"}.get(suffix, "dot")
    if fmt not in FORMATS:
        raise InputError("format", f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    if fmt == "png" and not args.output:
        raise InputError("o", "png needs a file: -o FILE.png")
    doc = _lab_state(state, args.source)
    if doc is not None:
        plan = LabPlan.from_dict(doc["plan"])
        drawing, title = graph_doc(plan, in_force(doc, plan)), f"lab {args.source} ({doc.get('topology')})"
    elif args.source in TOPOLOGIES:
        plan = make_plan(build_topology(args.source, {}), "graph", "10.0.0.0/8", {}, strict_links=False)
        drawing, title = graph_doc(plan), args.source
    else:
        raise InputError("source", f"{args.source!r} is neither a topology ({', '.join(sorted(TOPOLOGIES))}) "
                         "nor a lab that is up (see 'testbed status')")
    if not args.output:
        sys.stdout.write(to_dot(drawing, title) if fmt == "dot" else to_mermaid(drawing))
        return 0
    try:
        if fmt == "png":
            figure(drawing, title).savefig(args.output, format="png")
        else:
            Path(args.output).write_text(to_dot(drawing, title) if fmt == "dot" else to_mermaid(drawing))
    except OSError as exc:
        raise InputError("o", f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _lab_state(state, name: str):
    """The state of lab ``name`` if one is up and readable (None otherwise)."""
    try:
        return state.read_state(name) if _lab_name_ok(name) else None
    except OSError:
        return None


def _lab_name_ok(name: str) -> bool:
    from testbed.lab.naming import check_lab_name

    try:
        check_lab_name(name)
        return True
    except InputError:
        return False


COMMANDS = {"set": _cmd_set, "show": _cmd_show, "capture": _cmd_capture, "graph": _cmd_graph}
