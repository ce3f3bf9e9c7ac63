"""What the origin and the cache servers share: a quiet HTTP/1.1 server and its main loop.

* :class:`QuietServer` -- ``ThreadingHTTPServer`` with daemon threads that
  counts connection errors (a reader that timed out and hung up) instead
  of printing a traceback to a pipe nobody reads.
* :class:`Handler` -- keep-alive (HTTP/1.1, every answer has a
  ``Content-Length``), no access log, :meth:`Handler.send` for whole bodies.
* :func:`serve` -- bind, print one ``listening HOST PORT`` line, serve until
  SIGTERM or SIGINT, exit 0.
"""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

__all__ = ["QuietServer", "Handler", "serve"]


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that counts, rather than prints, per-connection errors."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.connection_errors = 0
        self._errors_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        with self._errors_lock:
            self.connection_errors += 1


class Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler base without an access log."""

    protocol_version = "HTTP/1.1"
    server_version = "testbed-storage/1"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        """No access log: the servers run for whole experiments."""

    def send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> None:
        """Send a complete answer (status, headers, ``Content-Length``, body)."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_text(self, status: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
        """A short plain-text answer (errors)."""
        self.send(status, (text + "\n").encode(), {"Content-Type": "text/plain", **(headers or {})})


def _stop_on_signal(signum, _frame) -> None:
    raise SystemExit(0)


def serve(server: QuietServer, what: str) -> int:
    """Announce ``listening HOST PORT`` on stdout and serve until SIGTERM/SIGINT."""
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    host, port = server.server_address[:2]
    print(f"listening {host} {port} ({what})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0
