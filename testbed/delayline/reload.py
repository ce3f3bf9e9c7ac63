"""A running delay line's profile change: what a reloaded config changes.

The controller (:func:`testbed.shaping.userspace.reconfigure`) rewrites the
line's JSON config with new ``profile`` documents and a higher
``generation``, then sends the line SIGHUP. Both engines re-read the file
and hand it to :func:`changed_queues`, which says which queues get new
models. Rules (the same for both engines):

* the queues are the ones the line was started with (matched by
  ``queue_num``); none can be added or removed at runtime;
* ``duplicate_pct`` and ``corrupt_pct`` cannot change: they decide how much
  of each packet the kernel copies to the line, fixed when a queue is bound;
* a changed queue's models are rebuilt from its new profile with the seed
  :func:`reload_seed` derives from the queue's seed and the generation, so a
  rerun of the same timeline draws the same packet fates.

Packets already held keep the release time they were given: a lower delay
takes effect behind them (the FIFO never lets a packet overtake), a higher
one for the packets that arrive after the change.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

__all__ = ["FIXED_AT_BIND", "read_config", "reload_seed", "changed_queues", "Reloadable", "drain"]

#: Profile fields a bound queue cannot change (they set the copy mode).
FIXED_AT_BIND = ("duplicate_pct", "corrupt_pct")


def read_config(path: str) -> dict:
    """The line's config document; ValueError when it is not a JSON object with queues."""
    with open(path) as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("queues"), list):
        raise ValueError(f"{path}: not a delay-line config (no 'queues' list)")
    return doc


def reload_seed(seed: Optional[int], generation: int) -> Optional[int]:
    """The seed of a queue's models after reload ``generation`` (None stays None)."""
    if seed is None or generation == 0:
        return seed
    return int(seed) * 1_000_003 + int(generation) * 7_919


def changed_queues(current: List[dict], new: dict) -> Tuple[Dict[int, dict], List[str]]:
    """Queues whose profile ``new`` changes: {index in ``current``: new queue config}.

    Returns also the refusals (one message each); a refused queue keeps its
    old profile. The new configs carry the reload seed.
    """
    generation = int(new.get("generation", 0))
    by_num = {}
    for q in new["queues"]:
        by_num[int(q["queue_num"])] = q
    errors: List[str] = []
    changed: Dict[int, dict] = {}
    nums = {int(q["queue_num"]) for q in current}
    if set(by_num) != nums:
        errors.append(f"reload: queues {sorted(by_num)} differ from the running {sorted(nums)}")
    for index, old in enumerate(current):
        fresh = by_num.get(int(old["queue_num"]))
        if fresh is None or fresh.get("profile") == old.get("profile"):
            continue
        old_prof, new_prof = old.get("profile", {}), fresh.get("profile", {})
        fixed = [k for k in FIXED_AT_BIND if float(old_prof.get(k, 0) or 0) != float(new_prof.get(k, 0) or 0)]
        if fixed:
            errors.append(f"reload: queue {old['queue_num']}: {', '.join(fixed)} cannot change "
                          "while the line runs")
            continue
        cfg = dict(old)
        cfg["profile"] = new_prof
        cfg["seed"] = reload_seed(fresh.get("seed", old.get("seed")), generation)
        changed[index] = cfg
    return changed, errors


class Reloadable:
    """SIGHUP reload, the same for both engines.

    The engine sets ``config_path``, ``errors``, ``generation``, ``reloads``
    and ``reload_requested`` and gives :meth:`_queue_configs`,
    :meth:`_apply_changes` (inside the error handling: a bad file or profile
    becomes a ``reload: ...`` error in the stats, which
    :func:`testbed.shaping.userspace.reconfigure` looks for) and
    :meth:`_after_changes`; it calls :meth:`reload` from its loop once
    :meth:`request_reload` (the SIGHUP handler) has set the flag.
    """

    def request_reload(self, *_args) -> None:
        self.reload_requested = True

    # SIGUSR1: "write your stats now". The periodic stats file lags the counters by
    # up to STATS_PERIOD_S; a reader that must see every packet counted so far
    # (testbed.shaping.userspace.read_stats(fresh=True)) asks for a write and waits
    # for ``flushes`` to grow.
    flush_requested = False
    flushes = 0

    def request_flush(self, *_args) -> None:
        self.flush_requested = True

    def flush_if_requested(self) -> None:
        """Called from the engine's loop: write the stats if a reader asked for them."""
        if self.flush_requested:
            self.flush_requested = False
            self.flushes += 1
            self.write_stats()

    def reload(self) -> None:
        """Re-read the config file and reconfigure the queues whose profile changed."""
        self.reload_requested = False
        if not self.config_path:
            self.errors.append("reload: the line has no config file to re-read")
            return
        try:
            new = read_config(self.config_path)
            changed, errors = changed_queues(self._queue_configs(), new)
            self._apply_changes(changed)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"reload: {exc}")
            return
        self.errors.extend(errors)
        self._after_changes(changed)
        self.generation = int(new.get("generation", self.generation))
        self.reloads += 1
        self.write_stats()

    def _queue_configs(self) -> List[dict]:
        raise NotImplementedError

    def _apply_changes(self, changed: Dict[int, dict]) -> None:
        raise NotImplementedError

    def _after_changes(self, changed: Dict[int, dict]) -> None:
        """After a successful reload, before the stats are written (nothing by default)."""


def drain(fd: int) -> None:
    """Read a non-blocking wake-up pipe (the signal wake fd) empty."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
