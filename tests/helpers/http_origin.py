"""Local network endpoints for the sandbox and proxy tests, loopback only.

``Origin`` is the one HTTP origin server of the suite: a threaded
``http.server`` on 127.0.0.1 or ::1 answering every GET with a fixed body and
recording each request's path and headers. ``tcp_listener`` is a listening
socket that accepts nothing on its own, so a test can prove that no
connection arrived (``nothing_accepted``).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from email.message import Message

LOOPBACK = ("127.0.0.1", "::1")


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK:
        raise ValueError(f"test servers listen on loopback only ({LOOPBACK}), not {host!r}")


class _DualStackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _V6Server(_DualStackServer):
    address_family = socket.AF_INET6


class Origin:
    """An HTTP server on ``host`` (loopback) answering each GET with ``body``.

    ``paths`` lists the request targets in arrival order, ``headers`` their
    headers. Use as a context manager or call ``close()``.
    """

    def __init__(self, body: bytes = b"origin says hi", host: str = "127.0.0.1") -> None:
        _check_loopback(host)
        self.body = body
        self.host = host
        self.paths: list[str] = []
        self.headers: list[Message] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                outer.headers.append(self.headers)
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        server_class = _V6Server if ":" in host else _DualStackServer
        self.httpd = server_class((host, 0), Handler)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def hostport(self) -> str:
        """``host:port`` as an allowlist entry or a CONNECT target spells it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.hostport}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> Origin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def _bound(host: str, kind: socket.SocketKind, blocking: bool) -> Iterator[socket.socket]:
    _check_loopback(host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    try:
        sock.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        sock.setblocking(blocking)
        yield sock
    finally:
        sock.close()


def tcp_listener(
    host: str = "127.0.0.1", *, blocking: bool = False
) -> AbstractContextManager[socket.socket]:
    """A TCP socket listening on ``host`` (loopback), port chosen by the
    kernel; non-blocking unless asked (a serving thread's accept() blocks).
    Raises OSError where the address family is missing."""
    return _bound(host, socket.SOCK_STREAM, blocking)


def nothing_accepted(listener: socket.socket) -> bool:
    """True when no connection is waiting on the non-blocking ``listener``."""
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def udp_receiver(host: str = "127.0.0.1") -> AbstractContextManager[socket.socket]:
    """A non-blocking UDP socket bound on ``host`` (loopback), port chosen by
    the kernel: where a confined child's datagram must never arrive."""
    return _bound(host, socket.SOCK_DGRAM, False)


def nothing_received(receiver: socket.socket) -> bool:
    """True when no datagram is queued on the non-blocking ``receiver``."""
    try:
        receiver.recv(16)
    except BlockingIOError:
        return True
    return False
