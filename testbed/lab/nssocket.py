"""Namespaces without subprocesses: sockets and sysctls inside a lab namespace.

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

__all__ = ["in_netns", "ns_socket", "create_netns", "write_sysctls", "ifindex"]

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
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
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
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


def _mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(source.encode(), target.encode(), b"none", flags, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"mount {source} on {target}: {os.strerror(err)}", err)


def _ensure_netns_dir() -> None:
    """/run/netns as a shared mount point, as ``ip netns add`` prepares it."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    with open("/proc/self/mountinfo") as fh:
        if any(line.split()[4] == NETNS_DIR for line in fh):
            return
    _mount(NETNS_DIR, NETNS_DIR, MS_BIND | MS_REC)
    _mount("none", NETNS_DIR, MS_SHARED | MS_REC)


def create_netns(name: str) -> None:
    """Create named namespace ``name`` like ``ip netns add``, without a subprocess.

    This thread unshares a fresh network namespace, bind-mounts it on
    /run/netns/<name> (which keeps it alive) and returns to its own.
    """
    path = os.path.join(NETNS_DIR, name)
    with _lock:
        _ensure_netns_dir()
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.close(fd)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        mounted = False
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise KernelError(f"unshare(CLONE_NEWNET): {os.strerror(err)}", err)
            try:
                _mount("/proc/thread-self/ns/net", path, MS_BIND)
                mounted = True
            finally:
                _setns(home)
        except BaseException:
            # also on Ctrl-C: a mount point without its mount is debris that
            # 'ip netns' lists; teardown removes a mounted one by name
            if not mounted:
                try:
                    os.unlink(path)
                except OSError:  # EBUSY: mounted after all; teardown removes it by name
                    pass
            raise
        finally:
            os.close(home)


def write_sysctls(name: str, values) -> None:
    """Write per-namespace sysctls of ``name`` through /proc/sys (no subprocess)."""
    with in_netns(name):
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(path, "w") as fh:
                    fh.write(str(value))
            except OSError as exc:
                raise KernelError(f"sysctl {key}={value} in {name}: {exc.strerror}", exc.errno) from exc


def ifindex(ns, ifname: str, where: str = "") -> int:
    """The ifindex of ``ifname`` on netlink socket ``ns``: one RTM_GETLINK for that name, not a dump.

    (``link_lookup(ifname=...)`` dumps and decodes every link per call: on a
    switch with hundreds of ports that was quadratic, and most of a big lab's
    bring-up time.) KernelError naming the interface (and ``where``) if it is not there.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ns.link("get", ifname=ifname)[0]["index"]
    except (NetlinkError, IndexError, KeyError) as exc:
        place = f" in {where}" if where else ""
        raise KernelError(f"interface {ifname} not found{place}",
                          getattr(exc, "code", None)) from exc
