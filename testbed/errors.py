"""One exception tree for the whole testbed.

Every error a user can meet derives from :class:`TestbedError` and carries the
exit code the CLI returns for it (see PRODUCT.md):

* 1 -- :class:`RunError` and its children: a run, a measurement or a fidelity
  verdict failed, or the kernel refused a request (:class:`KernelError`).
* 2 -- :class:`InputError`: bad user input; the message names the field.
* 3 -- :class:`EnvironmentProblem`: the machine cannot do it (not root, a tool
  or a kernel feature missing); carries a fix hint.

Lower-level exceptions (``NetlinkError``, ``CalledProcessError``,
``TimeoutExpired``, ``JSONDecodeError``) are translated at the boundary with
``raise ... from exc`` so the cause (and errno) stays attached.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "TestbedError",
    "InputError",
    "EnvironmentProblem",
    "RunError",
    "KernelError",
    "ToolError",
    "DelayLineDied",
    "MachineError",
]


class TestbedError(Exception):
    """Base class of every error the testbed raises on purpose."""

    __test__ = False  # not a pytest test class, despite the name
    exit_code = 1


class InputError(TestbedError):
    """Invalid user input: scenario, topology, profile, CLI argument.

    ``field`` is a dotted path such as ``links.wan.delay``; ``source`` the file
    or option it came from.
    """

    exit_code = 2

    def __init__(self, field: str, message: str, source: Optional[str] = None):
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        # one line, always: a field or value may carry a newline from user input
        text = f"{where}{field}: {message}"
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


class EnvironmentProblem(TestbedError):
    """The machine cannot run this; ``hint`` says how to fix it."""

    exit_code = 3

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}" + (f" (fix: {hint})" if hint else ""))


class RunError(TestbedError):
    """A run, a step or a fidelity verdict failed."""

    exit_code = 1


class KernelError(RunError):
    """The kernel refused a request (netlink, tc, iptables)."""

    def __init__(self, message: str, errno: Optional[int] = None):
        self.errno = errno
        super().__init__(message + (f" [errno {errno}]" if errno else ""))


class ToolError(RunError):
    """A measurement tool failed, timed out or printed something unparsable."""


class DelayLineDied(RunError):
    """A userspace delay line process is gone: the link it served is broken."""


class MachineError(RunError):
    """A machine of a lab across machines is unreachable, died, or refused its slice."""

    def __init__(self, machine: str, message: str):
        self.machine = machine
        super().__init__(f"machine {machine}: {message}")
