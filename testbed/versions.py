"""Tool versions, read in one place: ``testbed doctor``, results' environment, tool checks.

Each tool is asked with its own version flag (argv list, timeout); its answer
is parsed with the tool's pattern (group 1 is the version).
"""

from __future__ import annotations

import re
import subprocess
from typing import Dict, Optional, Tuple

from testbed.cmd import run_short
from testbed.errors import ToolError

__all__ = ["TOOLS", "VERSION_TIMEOUT_S", "ask_version", "parse_version", "tool_version",
           "version_line", "version_tuple"]

VERSION_TIMEOUT_S = 5.0

#: tool name -> (version argv, regex whose group 1 is the version)
TOOLS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "iperf3": (("iperf3", "--version"), r"iperf (\d\S*)"),
    "ping": (("ping", "-V"), r"iputils[- ]?(\S+)"),
    "ip": (("ip", "-V"), r"iproute2-([\w.]+)"),
    "tc": (("tc", "-V"), r"iproute2-([\w.]+)"),
    "iptables": (("iptables", "--version"), r"v(\d[\w.]*(?: \([^)]*\))?)"),
    "mnexec": (("mnexec", "-v"), r"(\S+)"),
    "irtt": (("irtt", "version"), r"irtt version: (\S+)"),
    "tcpdump": (("tcpdump", "--version"), r"tcpdump version (\S+)"),
}


def ask_version(name: str, timeout_s: float = VERSION_TIMEOUT_S) -> Tuple[bool, str]:
    """Run tool ``name``'s version argv: (exit code 0, stdout if ok else the last line of stderr)."""
    return run_short(TOOLS[name][0], timeout_s)


def parse_version(pattern: str, text: str) -> str:
    """Group 1 of ``pattern`` in ``text``, else its first non-empty line, else ""."""
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def tool_version(name: str, text: str) -> str:
    """The version in tool ``name``'s own version output ``text``."""
    pattern = TOOLS[name][1] if name in TOOLS else r"(\S+)"
    return parse_version(pattern, text)


def version_line(name: str) -> Optional[str]:
    """The first line of the tool's version answer (None if it does not answer), for results."""
    argv = list(TOOLS[name][0])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else None


def version_tuple(name: str) -> Tuple[int, ...]:
    """The tool's numeric version, e.g. (3, 12); ToolError if it cannot be read."""
    ok, text = ask_version(name)
    numeric = re.search(r"(\d+(?:\.\d+)+)", tool_version(name, text)) if ok else None
    if numeric is None:
        raise ToolError(f"{name}: cannot read its version ({text.strip()[:80] or 'no output'})")
    return tuple(int(part) for part in numeric.group(1).split("."))
