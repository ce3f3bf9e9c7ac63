"""Where labs are remembered: one directory per lab under the state directory.

``<state_dir>/<lab>/lab.json`` is written before anything is created (it
records intent: name, owner, address block), updated as the lab comes up, and
removed last on teardown. The state directory defaults to ``/run/testbed``
(a tmpfs: it vanishes at reboot together with the namespaces) and can be moved
with ``TESTBED_STATE_DIR``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from testbed.errors import InputError, RunError
from testbed.lab.naming import check_lab_name

__all__ = ["state_dir", "lab_dir", "create_lab_dir", "read_state", "write_state",
           "remove_lab_dir", "lab_names"]

STATE_FILE = "lab.json"


def state_dir() -> Path:
    return Path(os.environ.get("TESTBED_STATE_DIR", "/run/testbed"))


def lab_dir(lab: str) -> Path:
    return state_dir() / check_lab_name(lab)


def create_lab_dir(lab: str, doc: dict) -> Path:
    """Claim the lab name atomically, with its state already inside.

    The directory is filled under a temporary name and renamed into place, so
    no one (``testbed clean`` in another shell) ever sees a lab directory
    without its state file. An existing lab of that name is an error.
    """
    path = lab_dir(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{lab}.", dir=path.parent))
    try:
        with open(tmp / STATE_FILE, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or path.exists():
            raise InputError("name", f"a lab named {lab!r} is already up "
                             "(pick another --name, or 'testbed down' it)") from None
        raise
    return path


def write_state(lab: str, doc: dict) -> None:
    path = lab_dir(lab) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_state(lab: str) -> Optional[dict]:
    path = lab_dir(lab) / STATE_FILE
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise RunError(f"state file {path} is corrupt: {exc}") from exc


def remove_lab_dir(lab: str) -> None:
    shutil.rmtree(lab_dir(lab), ignore_errors=True)


def lab_names() -> Iterator[str]:
    root = state_dir()
    if not root.is_dir():
        return iter(())
    return iter(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
