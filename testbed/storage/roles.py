"""Which lab host plays which part: the origin, the readers, one cache per readers' site.

Pure: it looks only at the hosts' names and sites (``lab.hosts()``), so it
is tested without a lab. Rules, in order:

* origin: ``origin_host``; else the first host (by name) of
  ``origin_site``; else the first host of the lab.
* readers: ``readers``; else every host of ``reader_site`` except the
  origin; else every host of the first site (by name) that is not the
  origin's. A reader is never the origin itself.
* caches (``cache: true``): one per site the readers are in, on
  ``cache_host`` if given (all readers must then share its site); else on
  the first host of that site that is neither the origin nor a reader; else
  on the site's first reader (a cache process beside a data loader). A
  cache is never on the origin's host.

Every problem is an InputError naming the option (``measure.storage.*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from testbed.errors import InputError
from testbed.lab.node import Node
from testbed.storage.options import StorageOptions

__all__ = ["Roles", "choose_roles"]

_FIELD = "measure.storage"


@dataclass(frozen=True)
class Roles:
    origin: Node
    readers: List[Node]
    caches: Dict[str, Node]  # readers' site -> cache host

    def cache_for(self, reader: Node) -> Optional[Node]:
        return self.caches.get(reader.site or "")

    def to_dict(self) -> dict:
        return {"origin": {"host": self.origin.name, "site": self.origin.site},
                "readers": [{"host": r.name, "site": r.site} for r in self.readers],
                "caches": [{"host": c.name, "site": site} for site, c in sorted(self.caches.items())]}


def _by_name(hosts: Sequence[Node], name: str, field: str) -> Node:
    for host in hosts:
        if host.name == name:
            return host
    known = ", ".join(h.name for h in hosts)
    raise InputError(f"{_FIELD}.{field}", f"no host {name!r} in this lab (hosts: {known})")


def _in_site(hosts: Sequence[Node], site: str, field: str) -> List[Node]:
    members = [h for h in hosts if h.site == site]
    if not members:
        known = ", ".join(sorted({h.site or "?" for h in hosts}))
        raise InputError(f"{_FIELD}.{field}", f"no host in site {site!r} (sites with hosts: {known})")
    return members


def _origin(hosts: Sequence[Node], options: StorageOptions) -> Node:
    if options.origin_host is not None:
        return _by_name(hosts, options.origin_host, "origin_host")
    if options.origin_site is not None:
        return _in_site(hosts, options.origin_site, "origin_site")[0]
    return hosts[0]


def _readers(hosts: Sequence[Node], options: StorageOptions, origin: Node) -> List[Node]:
    if options.readers is not None:
        readers = [_by_name(hosts, name, "readers") for name in options.readers]
        if origin in readers:
            raise InputError(f"{_FIELD}.readers", f"{origin.name} is the origin; it cannot be a reader")
        return readers
    if options.reader_site is not None:
        readers = [h for h in _in_site(hosts, options.reader_site, "reader_site") if h != origin]
        if not readers:
            raise InputError(f"{_FIELD}.reader_site",
                             f"site {options.reader_site!r} has no host besides the origin")
        return readers
    others = sorted({h.site for h in hosts if h.site != origin.site and h.site is not None})
    if not others:
        raise InputError(f"{_FIELD}.reader_site",
                         "every host is in the origin's site: name readers or a reader_site")
    return [h for h in hosts if h.site == others[0]]


def _caches(hosts: Sequence[Node], options: StorageOptions, origin: Node,
            readers: List[Node]) -> Dict[str, Node]:
    sites = sorted({r.site or "" for r in readers})
    if options.cache_host is not None:
        host = _by_name(hosts, options.cache_host, "cache_host")
        if host == origin:
            raise InputError(f"{_FIELD}.cache_host", f"{host.name} is the origin")
        if sites != [host.site or ""]:
            raise InputError(f"{_FIELD}.cache_host",
                             f"{host.name} is in site {host.site!r} but the readers are in "
                             f"{', '.join(repr(s) for s in sites)}: a cache serves its own site")
        return {host.site or "": host}
    caches = {}
    for site in sites:
        spare = [h for h in hosts if (h.site or "") == site and h != origin and h not in readers]
        caches[site] = spare[0] if spare else next(r for r in readers if (r.site or "") == site)
    return caches


def choose_roles(hosts: Sequence[Node], options: StorageOptions) -> Roles:
    """The origin, readers and caches for ``options`` among ``hosts`` (sorted by name here)."""
    hosts = sorted(hosts, key=lambda h: h.name)
    if len(hosts) < 2:
        raise InputError(_FIELD, "the storage step needs at least two hosts (an origin and a reader)")
    origin = _origin(hosts, options)
    readers = _readers(hosts, options, origin)
    caches = _caches(hosts, options, origin, readers) if options.cache else {}
    return Roles(origin, readers, caches)
