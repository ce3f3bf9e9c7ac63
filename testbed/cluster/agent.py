"""The agent each machine of a lab across machines runs: ``python -m testbed.cluster.agent``.

    build --lab LAB --machine M   read {"slice", "backend", "host_sysctls", "scale", "seed"}
                                  on stdin, build the slice, answer its readiness
    down  --lab LAB --machine M   remove the slice (only its own namespaces)

The state directory comes from ``TESTBED_STATE_DIR`` (the coordinator gives
each machine its own). Every answer is one JSON line on stdout; a failure is
``{"error": ..., "exit_code": N}`` and exit status 1 (ssh keeps 255 for
"unreachable").
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from testbed.errors import InputError, TestbedError

__all__ = ["main"]


def _build(args) -> dict:
    from testbed.lab.lab import Lab

    try:
        payload = json.loads(sys.stdin.read())
        slice_doc = payload["slice"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError("slice", f"the coordinator's slice is not readable: {exc}") from exc
    lab = Lab.create_slice(slice_doc, args.machine, backend=payload.get("backend", "auto"),
                           host_sysctls=payload.get("host_sysctls"), scale=payload.get("scale", 1.0),
                           seed=payload.get("seed", 0), guard_allow=payload.get("guard_allow"))
    return {"machine": args.machine, "lab": lab.name, "status": lab.doc["status"],
            "backend": lab.backend, "ready_after_s": lab.doc.get("ready_after_s"),
            "namespaces": lab.doc["slice"]["namespaces"], "procs": lab.doc["procs"]}


def _down(args) -> dict:
    from testbed.lab import state
    from testbed.lab.teardown import teardown

    doc = state.read_state(args.lab)
    if not doc or not doc.get("slice"):
        # nothing of ours here: never remove by name alone (stand-ins share /run/netns)
        return {"machine": args.machine, "lab": args.lab, "namespaces": 0, "processes": 0}
    return {"machine": args.machine, **teardown(args.lab)}


VERBS = {"build": _build, "down": _down}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.cluster.agent")
    parser.add_argument("verb", choices=sorted(VERBS))
    parser.add_argument("--lab", required=True)
    parser.add_argument("--machine", required=True)
    args = parser.parse_args(argv)
    try:
        from testbed.lab.naming import check_lab_name

        check_lab_name(args.lab, "lab")
        answer = VERBS[args.verb](args)
    except TestbedError as exc:
        print(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
