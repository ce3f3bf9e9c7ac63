"""Fetch over HTTP/1.1 with one kept-alive connection per thread.

:class:`HttpFetcher` is the real implementation of the fetcher seam
(``fetch(path) -> Response``, :class:`~testbed.storage.protocol.FetchError`
on no answer); tests use an in-memory fake with the same shape. A failed
request closes its thread's connection so the next one starts clean.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Optional
from urllib.parse import urlsplit

from testbed.storage.protocol import FetchError, Response

__all__ = ["HttpFetcher", "split_base_url"]


def split_base_url(url: str) -> tuple:
    """``("10.0.0.1", 8470)`` of ``http://10.0.0.1:8470``; ValueError if not that shape."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected http://HOST:PORT, got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"expected no path or query in {url!r}")
    return parts.hostname, parts.port


class HttpFetcher:
    """``fetch(path, method="GET")`` against one server; safe to share between threads."""

    def __init__(self, base_url: str, timeout_s: float):
        self.host, self.port = split_base_url(base_url)
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _reset(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def fetch(self, path: str, method: str = "GET") -> Response:
        """The whole answer to ``method path``; FetchError if there is none."""
        conn = self._connection()
        try:
            conn.request(method, path, headers={"Connection": "keep-alive"})
            resp = conn.getresponse()
            body = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self._reset()
            return Response(resp.status, headers, body)
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            self._reset()
            raise FetchError(f"{method} http://{self.host}:{self.port}{path}: "
                             f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close this thread's connection."""
        self._reset()
