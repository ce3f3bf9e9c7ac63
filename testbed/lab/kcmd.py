"""Kernel configuration commands (sysctl, iptables), optionally inside a namespace.

The one place that runs them: argv lists only, a timeout, and failures
raised as KernelError (or EnvironmentProblem when the tool is missing).
"""

from __future__ import annotations

import subprocess
from typing import List, Optional

from testbed.errors import EnvironmentProblem, KernelError

__all__ = ["kernel_cmd"]

TIMEOUT_S = 15
PACKAGES = {"iptables": "iptables", "sysctl": "procps", "ip": "iproute2"}


def kernel_cmd(argv: List[str], netns: Optional[str] = None, check: bool = True,
               timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    where = f" in {netns}" if netns else ""
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as exc:
        tool = full[0]
        raise EnvironmentProblem(f"{tool} is not installed",
                                 f"apt-get install {PACKAGES.get(tool, tool)}") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelError(f"{' '.join(argv)}{where} timed out after {timeout_s:g} s") from exc
    if check and proc.returncode != 0:
        raise KernelError(f"{' '.join(argv)}{where}: {proc.stderr.strip()}")
    return proc
