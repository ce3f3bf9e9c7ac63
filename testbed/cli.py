"""The ``testbed`` command line.

Exit codes (PRODUCT.md): 0 success; 1 a run or a fidelity verdict failed;
2 bad input, with one line naming the field; 3 the environment cannot run it,
with a fix hint. Bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

from testbed import __version__, cli_live
from testbed.errors import InputError, TestbedError
from testbed.fields import check_sysctls
from testbed.scale import check_scale

__all__ = ["main", "build_parser"]

LAB_SETTINGS = ("block", "backend", "seed", "scale", "machines", "placement")
#: --set keys for the hosts' sysctls (as a scenario's host_sysctls): host.net.ipv4.tcp_rmem=...
HOST_SETTINGS = ("host", "host_sysctls")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # pragma: no cover - exercised via main
        raise InputError("usage", message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="testbed", description="Emulated clouds joined by direct interconnects "
                "or internet transit, measured for real.")
    p.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser("doctor", help="what this machine can do, and which delay backend runs")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--bench", action="store_true",
                   help="measure the delay lines' capacity (under a minute here) and cache it")

    r = sub.add_parser("run", help="run a scenario (default: the flagship direct-vs-transit)")
    r.add_argument("scenario", nargs="?", help="scenario file or shipped scenario name")
    r.add_argument("--out", help="output directory (default: results/<scenario>-<time>)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any scenario field, e.g. links.direct.delay=2ms")
    r.add_argument("--quick", action="store_true", help="shorter measurements (the scenario's quick: block)")
    r.add_argument("--force", action="store_true",
                   help="write into a non-empty --out folder, replacing an earlier run's results, report and plots")

    u = sub.add_parser("up", help="bring a lab up and leave it running")
    u.add_argument("topology", help="topology name (see 'testbed list')")
    u.add_argument("--name", default="lab1", help="lab name (default lab1)")
    u.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="LINK.FIELD=VALUE (link profile), PARAM=VALUE (topology parameter), "
                        "block=CIDR, backend=auto|netem|userspace, seed=N (the delay lines' random seed), "
                        "scale=K (rates / K, see docs/collectives.md), host.SYSCTL=VALUE (every host, "
                        "as a scenario's host_sysctls, e.g. host.net.ipv4.tcp_rmem='4096 131072 16777216'), "
                        "machines.NAME=user@host and placement.SITE=NAME (a lab across machines; "
                        "placement alone: one-box stand-ins, see docs/scale-out.md)")
    u.add_argument("--cli", action="store_true", help="open Mininet's CLI on the lab once it is up")

    e = sub.add_parser("exec", help="run a command on a lab host: testbed exec LAB HOST -- CMD ...")
    e.add_argument("lab")
    e.add_argument("host")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (after --)")

    s = sub.add_parser("status", help="labs that are up, their health and guard counters")
    s.add_argument("lab", nargs="?")
    s.add_argument("--json", action="store_true")

    dn = sub.add_parser("down", help="take a lab down, removing everything it made")
    dn.add_argument("lab")

    c = sub.add_parser("clean", help="remove labs left by killed runs (or one lab, or --all)")
    c.add_argument("lab", nargs="?")
    c.add_argument("--all", action="store_true", help="also remove persistent labs from 'up'")

    col = sub.add_parser("collective", help="time a collective (allreduce...) between emulated GPU hosts, like nccl-tests")
    where = col.add_mutually_exclusive_group(required=True)
    where.add_argument("--lab", help="a running lab (testbed up)")
    where.add_argument("--topology", help="bring this topology up for the run, then down")
    col.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="with --topology: as for 'testbed up'")
    col.add_argument("--op", default="allreduce", help="allreduce, reduce_scatter, allgather, broadcast, reduce, alltoall, sendrecv")
    col.add_argument("--algo", default="ring", help="ring, tree, rabenseifner, hierarchical")
    col.add_argument("-b", "--minbytes", default="32K", help="smallest size (K/M/G = 1024 powers)")
    col.add_argument("-e", "--maxbytes", default="4M", help="largest size")
    col.add_argument("-f", "--stepfactor", type=int, default=2, help="multiply the size by this")
    col.add_argument("-i", "--stepbytes", default=None, help="add this instead of multiplying")
    col.add_argument("-n", "--iters", type=int, default=5, help="timed iterations per size")
    col.add_argument("-w", "--warmup_iters", type=int, default=1, help="untimed iterations first")
    col.add_argument("--gpus-per-host", type=int, default=1, help="ranks on each host")
    col.add_argument("--nsocks", type=int, default=1, help="TCP connections per host pair (NCCL_NSOCKS_PERTHREAD x threads)")
    col.add_argument("--buffsize", default="4M", help="in-flight buffer per connection (NCCL_BUFFSIZE)")
    col.add_argument("--order", default="topology", help="ring order: topology (sites contiguous) or naive")
    col.add_argument("--chunk", default=None, help="pipeline chunk size for ring/tree/hierarchical")
    col.add_argument("--nchunks", type=int, default=None,
                     help="cut the buffer into N pipelined chunks instead of --chunk messages "
                          "(ring/tree/hierarchical; gloo's ring: 2)")
    col.add_argument("--protocol", default="eager",
                     help="eager (NCCL-style: send as soon as the data is ready) or rendezvous "
                          "(gloo/MPI: send only into a buffer the receiver announced)")
    col.add_argument("--window", type=int, default=2,
                     help="rendezvous: buffers a receiver announces ahead per peer (gloo: 2)")
    col.add_argument("--cc", default=None,
                     help="congestion control of the engine's connections (e.g. cubic, bbr; "
                          "default: the hosts'); the model's loss bound applies to loss-based ones")
    col.add_argument("--json", action="store_true", help="one JSON row per size")
    col.add_argument("--backend", default="testbed", choices=("testbed", "gloo", "both"),
                     help="our engine, torch.distributed gloo (needs the gloo extra), or both side by side")

    sub.add_parser("list", help="topologies, link presets and scenarios available")
    cli_live.add_commands(sub)  # set, show, capture, graph (testbed/cli_live.py)
    return p


# -- commands ---------------------------------------------------------------

def _cmd_doctor(args) -> int:
    from testbed import doctor

    report = doctor.probe()
    if args.bench:
        from testbed import capacity
        from testbed.lab.lab import require_root

        require_root()
        report["capacity"] = capacity.get_capacity(refresh=True)
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        print(doctor.render(report))
        if args.bench:
            print(capacity.render(report["capacity"]))
    problems = doctor.problems(report)
    return problems[0].exit_code if problems else 0


def _split_up_overrides(topology: str, overrides: List[str]):
    from testbed.overrides import apply_overrides
    from testbed.topologies import topology_params

    data = apply_overrides({}, overrides, source="--set")
    params_allowed = topology_params(topology)
    settings, params, links = {}, {}, {}
    for key, value in data.items():
        if key in LAB_SETTINGS:
            settings[key] = value
        elif key in HOST_SETTINGS:
            settings.setdefault("host_sysctls", {}).update(check_sysctls(value, key, source="--set"))
        elif key in params_allowed:
            params[key] = value
        elif isinstance(value, dict):
            links[key] = value
        else:
            raise InputError(
                key, f"not a lab setting ({', '.join(LAB_SETTINGS)}), host.SYSCTL, a parameter of "
                f"{topology!r} ({', '.join(params_allowed) or 'none'}) or LINK.FIELD",
                source="--set")
    return settings, params, links


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError("seed", f"must be a non-negative integer, not {value!r}", source="--set")
    return value


def _cmd_up(args) -> int:
    from testbed.lab.lab import Lab

    settings, params, links = _split_up_overrides(args.topology, args.overrides)
    common = dict(params=params, links=links, block=settings.get("block"),
                  backend=str(settings.get("backend", "auto")), seed=_seed(settings.get("seed", 0)),
                  host_sysctls=settings.get("host_sysctls"),
                  scale=check_scale(settings.get("scale", 1), "scale", source="--set"))
    if settings.get("machines") or settings.get("placement"):  # across machines (docs/scale-out.md)
        from testbed.cluster.create import create_cluster_lab

        machines, placement = _cluster_settings(settings)
        lab = create_cluster_lab(args.topology, args.name, machines=machines, placement=placement, **common)
    else:
        lab = Lab.create(args.topology, args.name, **common)
    print(f"lab {lab.name} up: {len(lab.node_names())} nodes, block {lab.block}, "
          f"delay backend {lab.backend}" + (f", rates scaled 1/{lab.scale:g}" if lab.scale != 1 else ""))
    for host in lab.hosts():
        print(f"  {host.name:<10} {host.ip}")
    print(f"try: testbed exec {lab.name} {lab.hosts()[0].name} -- ping -c 3 {lab.hosts()[-1].name}")
    _print_window_advisories(lab)
    if args.cli:
        from testbed.lab.minicli import run_cli

        print("Mininet CLI on the lab; 'exit' leaves it, the lab stays up until 'testbed down'")
        run_cli(lab)
    return 0


def _cluster_settings(settings: dict):
    """``machines`` and ``placement`` from ``--set`` (validated, errors naming the field)."""
    from testbed.cluster.machines import check_machine_name, parse_machines

    try:
        machines = parse_machines(settings.get("machines") or {})
        placement = settings.get("placement") or {}
        if not isinstance(placement, dict):
            raise InputError("placement", "must map sites to machines: --set placement.SITE=MACHINE")
        names = [m.name for m in machines]
        for site, machine in placement.items():
            check_machine_name(machine, f"placement.{site}")
            if names and machine not in names:
                raise InputError(f"placement.{site}", f"no machine {machine!r} (machines: {', '.join(names)})")
    except InputError as exc:
        raise InputError(exc.field, exc.message, source="--set") from exc
    return machines, placement


def _print_window_advisories(lab) -> None:
    """Where the hosts' socket buffers cannot fill a path between sites, say so (testbed/window_advisory.py)."""
    from testbed.collectives.tcpedges import read_node_sysctls, read_sysctls
    from testbed.window_advisory import advisories

    def sysctls(host):
        node = lab.node(host)
        return read_node_sysctls(node) if node.remote else read_sysctls(node.netns)

    for line in advisories(lab.plan, sysctls):
        print(f"advisory: {line}")


def _cmd_exec(args) -> int:
    from testbed.lab.lab import Lab, require_root

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InputError("cmd", "give a command after --, e.g. testbed exec lab1 h1 -- ping -c 3 h2")
    require_root()
    node = Lab.attach(args.lab).node(args.host)
    sys.stdout.flush()
    argv = node.argv(cmd)  # across machines: ssh to the node's machine first
    os.execvp(argv[0], argv)
    return 0  # not reached


def _cmd_status(args) -> int:
    from testbed.lab import state, teardown
    from testbed.lab.lab import Lab, require_root

    require_root()
    names = [args.lab] if args.lab else list(state.lab_names())
    docs = {n: state.read_state(n) for n in names}
    rows = [Lab(n, doc).status() for n, doc in docs.items() if doc]
    orphans = teardown.orphan_labs()
    if args.lab and not rows and args.lab not in orphans:
        raise InputError("lab", _no_such_lab(args.lab, state.lab_names()))
    if args.lab:
        orphans = [o for o in orphans if o == args.lab]
    if args.json:
        print(json.dumps({"labs": rows, "orphans": orphans}, indent=1))
        return 0
    if not rows:
        print("no labs are up")
    for row in rows:
        owner = "persistent" if not row["owner"] else (
            f"run pid {row['owner']['pid']}" + ("" if row["owner_alive"] else " (gone: stale)"))
        health = "healthy" if row["healthy"] else (
            "still being created" if row["status"] == "creating" and row["owner_alive"]
            else "INCOMPLETE (its creation was cut short: 'testbed clean')" if row["status"] == "creating"
            else "BROKEN")
        lines = ", ".join(f"{d['netns'].rsplit('.', 1)[-1]}{'' if d['alive'] else ' DEAD'}"
                          for d in row["delay_lines"]) or "none"
        print(f"{row['lab']}: {row['topology']}, {row['nodes']} nodes, {row['block']}, "
              f"{row['backend']} backend, {health}, {owner}")
        print(f"  delay lines: {lines}; guard dropped {row['guard_dropped_packets']} packets")
    if orphans:
        print(f"leftovers without state: {', '.join(orphans)} (remove with 'testbed clean')")
    return 0


def _no_such_lab(name: str, known) -> str:
    known = sorted(known)
    return f"no lab named {name!r}" + (f" (labs: {', '.join(known)})" if known else " (no labs are up)")


def _cmd_down(args) -> int:
    from testbed.lab.lab import Lab, require_root

    require_root()
    done = Lab.attach(args.lab).destroy()
    print(f"lab {args.lab} down: removed {done['namespaces']} namespaces, "
          f"{done['processes']} processes" + _machines_reached(done))
    return 0


def _machines_reached(done: dict) -> str:
    """Across machines: which machines removed their slice, and which could not be reached."""
    machines = done.get("machines")
    if not machines:
        return ""
    ok = [m["machine"] for m in machines if m.get("removed")]
    bad = [f"{m['machine']} ({m.get('error')})" for m in machines if not m.get("removed")]
    return (f"; slices removed on {', '.join(ok) or 'no machine'}"
            + (f"; NOT reached: {'; '.join(bad)}" if bad else ""))


def _cmd_clean(args) -> int:
    from testbed.lab import state, teardown
    from testbed.lab.lab import require_root
    from testbed.lab.naming import check_lab_name

    require_root()
    if args.lab:
        targets = [check_lab_name(args.lab, "lab")]
        if state.read_state(args.lab) is None and args.lab not in teardown.orphan_labs():
            raise InputError("lab", _no_such_lab(args.lab, state.lab_names()))
    else:
        docs = {n: state.read_state(n) for n in state.lab_names()}
        targets = [n for n, doc in docs.items()
                   if args.all or doc is None or not teardown.owner_alive(doc)]
        targets += teardown.orphan_labs()
    for lab in targets:
        done = teardown.teardown(lab)
        print(f"removed lab {lab}: {done['namespaces']} namespaces, {done['processes']} processes"
              + _machines_reached(done))
    if not targets:
        print("nothing to clean")
    return 0


def _cmd_list(args) -> int:
    from testbed.presets import load_presets
    from testbed.scenario import list_scenarios
    from testbed.topologies import TOPOLOGIES, describe, topology_params
    from testbed.runner import scenarios_dir

    print("topologies:")
    for name in sorted(TOPOLOGIES):
        params = ", ".join(f"{k}={v!r}" for k, v in topology_params(name).items())
        print(f"  {name:<14} {describe(name)}" + (f"\n  {'':<14} params: {params}" if params else ""))
    print("link presets:")
    for name, preset in sorted(load_presets().items()):
        fields = ", ".join(f"{k}={v}" for k, v in preset.items() if k != "description")
        print(f"  {name:<20} {fields}")
    print("scenarios:")
    for name, path, description in list_scenarios(scenarios_dir()):
        print(f"  {name:<20} {description}")
    return 0


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise InputError(name, f"must be at least 1, not {value}")
    return value


def _cmd_collective(args) -> int:
    from testbed.collectives.bench import check_options, run_sweep
    from testbed.collectives.table import format_table, parse_size, size_sweep
    from testbed.lab.lab import Lab, require_root

    from testbed.collectives import ops
    from testbed.collectives.algorithms import ALGORITHMS, algorithms_for

    if args.op not in ops.OPS:
        raise InputError("op", f"unknown operation {args.op!r} (known: {', '.join(ops.OPS)})")
    if args.algo not in ALGORITHMS:
        raise InputError("algo", f"unknown algorithm {args.algo!r} (known: {', '.join(ALGORITHMS)})")
    if args.algo not in algorithms_for(args.op):  # before a lab is made
        raise InputError("algo", f"{args.algo} does not implement {args.op} "
                         f"(algorithms for {args.op}: {', '.join(algorithms_for(args.op))})")
    if args.lab and args.overrides:
        raise InputError("set", "--set configures the lab 'testbed collective' makes; with --lab "
                         f"{args.lab} runs on that lab as it is (change it with 'testbed up')")
    sizes = size_sweep(parse_size(args.minbytes, "minbytes"), parse_size(args.maxbytes, "maxbytes"),
                       factor=None if args.stepbytes else _positive("stepfactor", args.stepfactor),
                       step_bytes=parse_size(args.stepbytes, "stepbytes") if args.stepbytes else None)
    options = dict(gpus_per_host=_positive("gpus-per-host", args.gpus_per_host),
                   iters=_positive("iters", args.iters), warmup=max(0, args.warmup_iters),
                   nsocks=_positive("nsocks", args.nsocks),
                   buffsize_bytes=parse_size(args.buffsize, "buffsize"), order=args.order,
                   chunk_bytes=parse_size(args.chunk, "chunk") if args.chunk else None,
                   nchunks=None if args.nchunks is None else _positive("nchunks", args.nchunks),
                   protocol=args.protocol, window=_positive("window", args.window), cc=args.cc)
    check_options(options["order"], options["chunk_bytes"], options["nchunks"], options["protocol"],
                  options["window"])  # before a lab is made
    if args.cc is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,15}", args.cc):
        raise InputError("cc", f"not a congestion control name: {args.cc!r}")
    from testbed import autoscale

    say = lambda m: print(f"# {m}", file=sys.stderr, flush=True)  # noqa: E731
    load_options = dict(op=args.op, nsocks=options["nsocks"], buffsize_bytes=options["buffsize_bytes"],
                        cc=args.cc)
    if args.lab:
        require_root()
        lab, owned = Lab.attach(args.lab), False
        decision = autoscale.decide(float(lab.scale), lab.plan, ("collective",), **load_options)
    else:
        settings, params, links = _split_up_overrides(args.topology, args.overrides)
        setting = settings.get("scale", autoscale.AUTO)
        if setting != autoscale.AUTO:
            setting = check_scale(setting, "scale", source="--set")
        plan = autoscale.plan_for(args.topology, params, links)
        require_root()
        decision = autoscale.decide(setting, plan, ("collective",), progress=say, **load_options)
        lab = Lab.create(args.topology, f"col{os.getpid()}", params=params, links=links,
                         block=settings.get("block"), backend=str(settings.get("backend", "auto")),
                         owner_pid=os.getpid(), scale=decision.scale)
        owned = True
    say(f"scale {decision.scale:g} ({decision.mode}): {decision.reason}")
    progress = ((lambda m: None) if args.json else
                (lambda m: print(f"# running {m}", file=sys.stderr, flush=True)))
    try:
        ours, theirs = [], []
        if args.backend in ("testbed", "both"):
            ours = run_sweep(lab, args.op, args.algo, sizes, **options, progress=progress,
                             scale_enough=decision.enough)
        if args.backend in ("gloo", "both"):
            from testbed.collectives.gloo import run_gloo_sweep

            theirs = run_gloo_sweep(lab, args.op, sizes, gpus_per_host=options["gpus_per_host"],
                                    iters=options["iters"], warmup=options["warmup"],
                                    progress=progress)
    finally:
        if owned:
            lab.destroy()
    rows = ours + theirs
    for row in rows:
        row["scale_decision"] = decision.to_dict()
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        how = f", {args.protocol} window {args.window}" if args.protocol != "eager" else ""
        tables = [f"# scale {decision.scale:g} ({decision.mode}): {decision.reason}"]
        if ours:
            tables.append(format_table(ours, title=f"{args.op} {args.algo}{how} on {lab.name}"))
        if theirs:  # a table of its own: the row layout does not name the engine
            tables.append(format_table(theirs, title=f"{args.op} by torch.distributed gloo on {lab.name}"))
        print("\n\n".join(tables))
    return 1 if any(r.get("wrong") for r in rows) else 0


_MAIN_PID = os.getpid()  # the process 'testbed run' runs in (see _sigterm)


def _sigterm(signo, _frame):
    """SIGTERM ends a run like Ctrl-C -- in the main process only.

    Forked helpers (pyroute2 runs one per namespace it talks to) inherit this
    handler; they must die as they would by default, not unwind our run.
    """
    if os.getpid() != _MAIN_PID:
        signal.signal(signo, signal.SIG_DFL)
        os.kill(os.getpid(), signo)
        return
    raise KeyboardInterrupt


#: what a run writes into its folder (what --force may remove of an earlier run)
RUN_OUTPUTS = ("results.json", "report.md", "*.png")


def _check_out_dir(out_dir: Path, force: bool) -> None:
    """--out must be a folder we can write, and not hold an earlier run (unless --force)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("out", f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError("out", f"{out_dir} is not empty (an earlier run's files would mix with this "
                         "one's): give a new folder, or --force to replace the earlier run's results")
    ancestor = out_dir if out_dir.exists() else next(
        (p for p in out_dir.absolute().parents if p.exists()), Path("/"))
    if not ancestor.is_dir():
        raise InputError("out", f"{ancestor} is a file: {out_dir} cannot be made under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError("out", f"cannot write in {ancestor}")


def _remove_previous_run(out_dir: Path) -> None:
    if not out_dir.is_dir():
        return
    for pattern in RUN_OUTPUTS:
        for old in out_dir.glob(pattern):
            if old.is_file():
                old.unlink()


def _cmd_run(args) -> int:
    """``testbed run``: the scenario (default: the flagship), its summary, exit 1 on a failed verdict."""
    from testbed.preflight import preflight
    from testbed.report.summary import print_summary
    from testbed.runner import resolve_scenario, run_scenario
    from testbed.scenario import load_scenario
    from testbed.topologies import TOPOLOGIES
    from testbed.lab.lab import require_root

    arg, out, overrides, quick = args.scenario, args.out, args.overrides, args.quick
    path = resolve_scenario(arg)
    scenario = load_scenario(path, overrides=overrides, quick=quick, topologies=set(TOPOLOGIES))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("results") / f"{scenario.name}-{stamp}"
    _check_out_dir(out_dir, args.force)
    preflight(scenario)  # exit 2 / exit 3 before anything is changed
    require_root()
    if args.force:
        _remove_previous_run(out_dir)
    global _MAIN_PID
    _MAIN_PID = os.getpid()  # the process 'testbed run' runs in (see _sigterm)
    signal.signal(signal.SIGTERM, _sigterm)
    print(f"testbed run {scenario.name}: {len(scenario.variants)} variants -> {out_dir}/", flush=True)
    try:
        doc = run_scenario(scenario, out_dir, overrides, quick,
                           progress=lambda m: print(f"  {m}", flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: partial results in {out_dir}/results.json (complete: false)")
        return 130
    print_summary(doc)
    print(f"wrote {out_dir}/results.json, {out_dir}/report.md and plots")
    failed = [c for v in doc["variants"] for c in (v.get("fidelity") or {}).get("checks", [])
              if c["verdict"] == "fail"]
    if doc["errors"] or not doc["complete"]:
        sys.stderr.write("testbed: error: run failed: " + "; ".join(doc["errors"] or ["incomplete"]) + "\n")
        return 1
    if failed:
        sys.stderr.write("testbed: fidelity failed: " + ", ".join(
            f"{c['metric']} configured {c['configured']} measured {c['measured']}" for c in failed) + "\n")
        return 1
    return 0


COMMANDS = {
    "doctor": _cmd_doctor, "run": _cmd_run, "up": _cmd_up, "exec": _cmd_exec,
    "status": _cmd_status, "down": _cmd_down, "clean": _cmd_clean, "list": _cmd_list,
    "collective": _cmd_collective,
    **cli_live.COMMANDS,
}


def _run_command(args) -> int:
    """The command; for those that build labs, SIGTERM tears a half-built lab down as Ctrl-C does."""
    global _MAIN_PID
    if args.command not in ("up", "collective") or threading.current_thread() is not threading.main_thread():
        return COMMANDS[args.command](args)
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return COMMANDS[args.command](args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _run_command(args)
    except TestbedError as exc:
        sys.stderr.write(f"testbed: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("testbed: interrupted\n")
        return 130
    except BrokenPipeError:
        # the reader went away (``testbed up ... | head -2``): no traceback, and no
        # second error when Python flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a command killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
