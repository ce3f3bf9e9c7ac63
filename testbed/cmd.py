"""Short commands (version queries, probes): argv list, timeout, (ok, output) -- never raises."""

from __future__ import annotations

import subprocess
from typing import List, Sequence, Tuple

__all__ = ["run_short"]


def run_short(argv: Sequence[str], timeout_s: float) -> Tuple[bool, str]:
    """Run ``argv``; (exit code 0, its stdout) or (False, the last line of stderr or why it did not run)."""
    argv: List[str] = list(argv)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return False, f"{argv[0]} is not installed"
    except OSError as exc:
        return False, f"{argv[0]} does not run: {exc}"
    except subprocess.TimeoutExpired:
        return False, f"{' '.join(argv[:4])} did not finish within {timeout_s:g} s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit code {proc.returncode}"
    return True, proc.stdout
