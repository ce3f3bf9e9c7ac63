"""Fires timed actions on a monotonic clock in a thread, recording when each really fired."""

from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional, Sequence

from testbed.errors import RunError
from testbed.events.model import Action

__all__ = ["Scheduler"]

class Scheduler:
    """Fires actions at ``t0 + at_s`` on a monotonic clock and records when they fired.

    ``clock`` and ``wait`` are injectable (a fake clock in tests); ``wait``
    sleeps up to its argument and returns True when asked to stop.
    """

    MAX_WAIT_S = 0.05

    def __init__(self, actions: Sequence[Action], apply: Callable[[Action], dict],
                 clock: Callable[[], float] = time.monotonic,
                 wait: Optional[Callable[[float], bool]] = None):
        self.actions = list(actions)
        self.apply = apply
        self.clock = clock
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self.records: List[dict] = []
        self.error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    def run(self, t0: float) -> None:
        """Fire every action in order; returns after the last or when stopped or one failed."""
        for action in self.actions:
            due = t0 + action.at_s
            while True:
                remaining = due - self.clock()
                if remaining <= 0:
                    break
                if self.wait(min(remaining, self.MAX_WAIT_S)) or self._stop.is_set():
                    return
            fired = self.clock()
            record = {**action.to_dict(), "planned_s": action.at_s, "actual_s": round(fired - t0, 4)}
            record.pop("at_s")
            try:
                detail = self.apply(action) or {}
            except BaseException as exc:  # handed to the measurement, which raises it
                record["error"] = str(exc)
                self.records.append(record)
                self.error = exc
                return
            record["applied_s"] = round(self.clock() - fired, 4)
            record.update({k: v for k, v in detail.items() if k not in record})
            self.records.append(record)

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self.run, args=(t0,), name="testbed-events",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fire nothing more; wait for an action being applied to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RunError(f"an event did not finish applying within {timeout_s:g} s")

    @property
    def done(self) -> bool:
        return len(self.records) == len(self.actions) or self.error is not None
