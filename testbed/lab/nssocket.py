"""Sockets born inside a lab namespace, held by one process.

``setns(2)`` moves only the calling thread; a socket keeps the namespace it
was created in for its whole life. So one engine process can hold sockets in
hundreds of host namespaces: switch in, create, switch back. No helper
process per namespace, no interpreter per rank.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

from testbed.errors import KernelError

__all__ = ["in_netns", "ns_socket"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"setns failed: {os.strerror(err)}", err)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread inside namespace ``name``; always switch back."""
    with _lock:
        home = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            try:
                target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
            except OSError as exc:
                raise KernelError(f"namespace {name} not found: {exc}", exc.errno) from exc
            try:
                _setns(target)
                try:
                    yield
                finally:
                    _setns(home)
            finally:
                os.close(target)
        finally:
            os.close(home)


def ns_socket(name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace ``name``."""
    with in_netns(name):
        return socket.socket(family, kind)
