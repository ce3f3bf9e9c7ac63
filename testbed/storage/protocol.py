"""The HTTP protocol the origin, the cache and the readers speak.

Requests (all answers carry ``Content-Length``; connections are kept alive):

* ``GET /index`` (origin only) -- JSON ``{"objects": [{name, version,
  size_bytes, sha256}, ...]}``, the latest version of every object. Readers
  fetch it once per epoch straight from the origin; the cache never holds it.
* ``GET /objects/NAME?version=V[&sha256=HEX]`` -- the bytes of version ``V``;
  the version is required (a cache is keyed by version, so it never has to
  ask the origin whether its copy is current). ``sha256`` is the digest the
  reader expects (from the index); the cache checks the origin's bytes
  against it.
* ``POST /objects/NAME`` (origin only) -- publish the next version; JSON of it.
* ``GET /stats`` -- JSON counters of the server.

Response headers: ``X-Object-Version`` and ``X-Object-Sha256`` (the version
served and its true digest), ``X-Content-Sha256`` on JSON bodies (so a
reader can check the index itself), ``X-Cache: hit|miss`` from a cache, and
``X-Storage-Error`` on a 502 from a cache (``digest-mismatch`` when the
origin's bytes failed verification, ``upstream-error`` when the origin could
not be reached, ``version-mismatch`` when it answered with another version).

:class:`Response` and :class:`FetchError` are what every fetcher (HTTP or a
test's fake) returns and raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from testbed.storage.objects import OBJECT_NAME_RE, ObjectVersion, sha256_hex

__all__ = [
    "H_VERSION",
    "H_SHA256",
    "H_CONTENT_SHA256",
    "H_CACHE",
    "H_ERROR",
    "ERR_DIGEST",
    "ERR_UPSTREAM",
    "ERR_VERSION",
    "Response",
    "FetchError",
    "ProtocolError",
    "object_path",
    "parse_object_path",
    "encode_json",
    "parse_index",
]

H_VERSION = "x-object-version"
H_SHA256 = "x-object-sha256"
H_CONTENT_SHA256 = "x-content-sha256"
H_CACHE = "x-cache"
H_ERROR = "x-storage-error"

ERR_DIGEST = "digest-mismatch"
ERR_UPSTREAM = "upstream-error"
ERR_VERSION = "version-mismatch"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, headers (lower-case names) and the whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


class FetchError(Exception):
    """The request got no answer: connection refused or reset, timeout, bad HTTP."""


class ProtocolError(ValueError):
    """A request or a document does not follow this protocol."""


def object_path(name: str, version: int, sha256: Optional[str] = None) -> str:
    """``/objects/NAME?version=V[&sha256=HEX]``."""
    path = f"/objects/{name}?version={version}"
    return path + (f"&sha256={sha256}" if sha256 else "")


def parse_object_path(target: str) -> Tuple[str, int, Optional[str]]:
    """``(name, version, sha256 or None)`` of a ``GET /objects/...`` target; ProtocolError if bad."""
    parts = urlsplit(target)
    if not parts.path.startswith("/objects/"):
        raise ProtocolError(f"not an object path: {parts.path!r}")
    name = parts.path[len("/objects/"):]
    if not OBJECT_NAME_RE.match(name):
        raise ProtocolError(f"invalid object name {name!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    versions = query.get("version", [])
    if len(versions) != 1 or not versions[0].isdigit() or int(versions[0]) < 1:
        raise ProtocolError("one version=N (N >= 1) is required")
    sums = query.get("sha256", [])
    if len(sums) > 1 or (sums and not _SHA256_RE.match(sums[0])):
        raise ProtocolError("sha256 must be one lower-case hex sha256 digest")
    return name, int(versions[0]), (sums[0] if sums else None)


def encode_json(doc: object) -> Tuple[bytes, Dict[str, str]]:
    """A JSON body and its headers (content type and ``X-Content-Sha256``)."""
    body = json.dumps(doc, sort_keys=True).encode()
    return body, {"Content-Type": "application/json", "X-Content-Sha256": sha256_hex(body)}


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def parse_index(response: Response) -> List[ObjectVersion]:
    """The objects of a ``GET /index`` answer, checked end to end; ProtocolError if not intact.

    The body must match its ``X-Content-Sha256`` header and every entry must
    be well formed: a corrupted index is refused, never used.
    """
    if response.status != 200:
        raise ProtocolError(f"index request answered HTTP {response.status}")
    claimed = response.header(H_CONTENT_SHA256)
    if claimed is None or sha256_hex(response.body) != claimed:
        raise ProtocolError("index body does not match its X-Content-Sha256 header")
    try:
        doc = json.loads(response.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"index is not JSON: {exc}") from exc
    entries = doc.get("objects") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ProtocolError("index has no objects list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtocolError("index entry is not an object")
        name, version = entry.get("name"), entry.get("version")
        size, digest = entry.get("size_bytes"), entry.get("sha256")
        if not (isinstance(name, str) and OBJECT_NAME_RE.match(name) and _positive_int(version)
                and _positive_int(size) and isinstance(digest, str) and _SHA256_RE.match(digest)):
            raise ProtocolError(f"malformed index entry {entry!r}")
        out.append(ObjectVersion(name, version, size, digest))
    return out
