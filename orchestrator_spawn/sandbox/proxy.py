"""The allowlist proxy: a small HTTP proxy the parent runs for sandboxed children.

It understands absolute-form requests (``GET http://host:port/path HTTP/1.1``)
and ``CONNECT host:port`` tunnels, allows exactly the profile's ``host[:port]``
entries, and answers everything else with ``403 Forbidden``. It resolves
names itself (the child has no DNS), matching the name the child asked for,
never the address it resolves to. An entry without a port allows ports 80 and
443. Wildcards are not supported.

Where it runs: every proxy lives on one shared event loop in a dedicated
daemon thread (``orchestrator-spawn-proxy``), started on first use. Not on the
caller's loop, because a caller that blocks its loop (``wait_blocking``, a
synchronous ``spawn_with_runner`` caller with no loop at all) would otherwise
stall its own child's network traffic; one shared thread keeps the cost flat
however many sandboxes run.

How the child reaches it on Linux: the child's network namespace is empty,
so the parent cannot listen inside it. Instead the child, before exec, listens
on ``127.0.0.1:3128`` in its namespace and sends that listening socket over
its end of a socketpair it inherited (``listen_handoff``; fds cross network
namespaces, and no other process can reach an unnamed socketpair) to the
parent, which then accepts and serves the connections made inside the
namespace. On macOS the proxy simply listens on ``127.0.0.1`` on an ephemeral
port.

Resources: one proxy serves at most ``max_connections`` client connections
at once (default ``DEFAULT_MAX_CONNECTIONS``, or the environment variable
``ORCHESTRATOR_SPAWN_PROXY_MAX_CONNECTIONS``); each holds at most two fds of
the orchestrator (client and upstream). A connection beyond the cap is
accepted, answered ``503 Service Unavailable`` and closed at once, and the
first refusal is logged once per proxy. When accepting itself fails (the
orchestrator is out of fds), the proxy stops accepting for a moment instead of
spinning, and says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_MAX_CONNECTIONS", "MAX_CONNECTIONS_ENV", "AllowlistProxy", "parse_allowlist"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
MAX_CONNECTIONS_ENV = "ORCHESTRATOR_SPAWN_PROXY_MAX_CONNECTIONS"
_ACCEPT_PAUSE = 0.5  # seconds without accepting after accept() itself failed
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)

_MAX_HEAD = 64 * 1024
_HEAD_TIMEOUT = 30.0  # seconds for a client to send its request head
_CONNECT_TIMEOUT = 30.0  # seconds to reach the upstream server
_HOP_BY_HOP = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}
_DEFAULT_PORTS = (80, 443)


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))  # one spelling per address
    return host


def _split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad host {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host {text!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""  # a bare IPv6 address or a name
    if not host:
        raise ValueError(f"empty host in {text!r}")
    if port_text == "":
        return _normal_host(host), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return _normal_host(host), int(port_text)


def parse_allowlist(entries: Iterable[str]) -> frozenset[tuple[str, int]]:
    """The allowed ``(host, port)`` pairs; raises ValueError for a malformed entry."""
    allowed: set[tuple[str, int]] = set()
    for entry in entries:
        if any(c in entry for c in "*/ \t?#@") or "://" in entry:
            raise ValueError(f"network_allowlist entry {entry!r} is not host[:port]")
        host, port = _split_host_port(entry)
        for p in (port,) if port is not None else _DEFAULT_PORTS:
            allowed.add((host, p))
    return frozenset(allowed)


class _LoopThread:
    """The shared daemon thread running the proxies' event loop."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def forget_after_fork(cls) -> None:
        # A forked child has the loop object but not the thread running it:
        # start afresh there instead of queueing work nobody runs.
        cls._lock = threading.Lock()
        cls._loop = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="orchestrator-spawn-proxy", daemon=True).start()
                ready.wait()
                cls._loop = loop
            return cls._loop


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LoopThread.forget_after_fork)


def max_connections_setting() -> int:
    """The cap from ``ORCHESTRATOR_SPAWN_PROXY_MAX_CONNECTIONS`` (default
    ``DEFAULT_MAX_CONNECTIONS``); raises ValueError naming the variable when
    it is not a positive integer."""
    text = os.environ.get(MAX_CONNECTIONS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_CONNECTIONS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_CONNECTIONS_ENV}={text!r} is not a positive integer")
    return int(text)


class AllowlistProxy:
    """One proxy serving one sandbox's allowlist; ``close()`` stops it (idempotent).

    ``listen_tcp()`` (macOS) or ``listen_handoff()`` (Linux) start it.
    ``max_connections``: client connections served at once (None: the
    environment's setting, see :func:`max_connections_setting`). Raises
    ValueError for a malformed allowlist or cap.
    """

    def __init__(self, allowlist: Iterable[str], *, max_connections: int | None = None) -> None:
        self.allowed = parse_allowlist(allowlist)
        if max_connections is None:
            max_connections = max_connections_setting()
        if isinstance(max_connections, bool) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer, not {max_connections!r}")
        self.max_connections = max_connections
        self.active = 0  # client connections being served
        self.refused = 0  # client connections refused over the cap
        self._loop = _LoopThread.loop()
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._said_refused = False
        self._said_accept_failed = False
        self._child_end: socket.socket | None = None
        self.port: int | None = None

    # -- setup (caller's thread) ------------------------------------------------

    def listen_tcp(self) -> int:
        """Listen on 127.0.0.1 on an ephemeral port; returns the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        self._call(self._serve_listener(sock))
        return self.port

    def listen_handoff(self) -> int:
        """Make the socketpair the child hands its listener over; returns the
        child's end (an fd > 2, close-on-exec in this process), which the
        spawn must keep open in the child. The proxy closes it once the
        listener arrived, or at ``close()``."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if child_end.fileno() <= 2:  # the child's stdio would be dup2'ed over it
            moved = fcntl.fcntl(child_end.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
            child_end.close()
            child_end = socket.socket(fileno=moved)
        parent_end.setblocking(False)
        self._sockets += [parent_end, child_end]
        self._child_end = child_end
        self._loop.call_soon_threadsafe(
            self._loop.add_reader, parent_end.fileno(), self._receive_listener, parent_end
        )
        return child_end.fileno()

    def close(self, *, wait: bool = True) -> None:
        """Stop serving, close every socket, remove the handoff directory.

        ``wait=False`` only asks the proxy thread to do it and returns at once
        (for callers that must not block, such as the thread reaping the
        sandboxed child)."""
        if self._closed:
            return
        self._closed = True
        if self.refused:
            logger.info(
                "allowlist proxy: refused %d connection(s) over the cap of %d",
                self.refused,
                self.max_connections,
            )
        if not self._loop.is_closed():
            if not wait:
                shutdown = self._shutdown_and_close()
                try:
                    asyncio.run_coroutine_threadsafe(shutdown, self._loop)
                    return
                except RuntimeError:  # the loop closed meanwhile
                    shutdown.close()
            else:
                with contextlib.suppress(Exception):
                    self._call(self._shutdown())
        self._close_sockets()

    async def _shutdown_and_close(self) -> None:
        try:
            await self._shutdown()
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in list(self._sockets):
            sock.close()

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=30)

    # -- the proxy loop ------------------------------------------------------------

    def _receive_listener(self, conn: socket.socket) -> None:
        try:
            _, fds, _, _ = socket.recv_fds(conn, 1, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        # One sandbox, one child: the first message is the child's, sent
        # before its exec; take no other (the channel closes here).
        self._loop.remove_reader(conn.fileno())
        for end in (conn, self._child_end):
            if end is not None and end in self._sockets:
                self._sockets.remove(end)
                end.close()
        self._child_end = None
        for fd in fds:
            sock = socket.socket(fileno=fd)
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            if sock.type != socket.SOCK_STREAM or sock.family != socket.AF_INET or not listening:
                sock.close()  # not what a sandboxed child sends: ignore it
                continue
            self._spawn_task(self._serve_listener(sock))

    def _spawn_task(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_listener(self, sock: socket.socket) -> None:
        if self._closed:
            sock.close()
            return
        sock.setblocking(False)
        self._sockets.append(sock)
        self._loop.add_reader(sock.fileno(), self._accept_clients, sock)

    def _accept_clients(self, listener: socket.socket) -> None:
        for _ in range(64):  # then let the other proxies' work run
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE, ENFILE, ENOBUFS: no resources now
                self._pause_accepting(listener, err)
                return
            if self._closed:
                conn.close()
                return
            if self.active >= self.max_connections:
                self._refuse(conn)
                continue
            self.active += 1
            self._spawn_task(self._serve_client(conn))

    def _refuse(self, conn: socket.socket) -> None:
        self.refused += 1
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(_REFUSAL)
        conn.close()
        if not self._said_refused:
            self._said_refused = True
            logger.warning(
                "allowlist proxy: a sandboxed child holds %d connections (the cap); "
                "refusing more (%s)",
                self.max_connections,
                MAX_CONNECTIONS_ENV,
            )

    def _pause_accepting(self, listener: socket.socket, err: OSError) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(listener.fileno())
        if not self._said_accept_failed:
            self._said_accept_failed = True
            logger.warning("allowlist proxy: accept() failed (%s); pausing", err)

        def resume() -> None:
            if not self._closed and listener in self._sockets:
                self._loop.add_reader(listener.fileno(), self._accept_clients, listener)

        self._loop.call_later(_ACCEPT_PAUSE, resume)

    async def _serve_client(self, conn: socket.socket) -> None:
        try:
            try:
                reader, writer = await asyncio.open_connection(sock=conn, limit=_MAX_HEAD)
            except OSError:
                conn.close()
                return
            await self._handle(reader, writer)
        finally:
            self.active -= 1

    async def _shutdown(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def _allows(self, host: str, port: int) -> bool:
        return (_normal_host(host), port) in self.allowed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle_request(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.TimeoutError:
            pass
        finally:
            writer.close()

    async def _handle_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            await _respond(writer, 400, "Bad Request")
            return
        method, target, version = parts
        try:
            if method == b"CONNECT":
                host, port = _split_host_port(target.decode("ascii"))
                if port is None:
                    raise ValueError("CONNECT needs host:port")
                path = b""
            else:
                url = urlsplit(target.decode("ascii"))
                if url.scheme != "http" or not url.hostname:
                    await _respond(writer, 400, "Bad Request (absolute http:// URL expected)")
                    return
                host, port = _normal_host(url.hostname), url.port or 80
                path = (url.path or "/").encode() + (
                    b"?" + url.query.encode() if url.query else b""
                )
        except ValueError:
            await _respond(writer, 400, "Bad Request")
            return
        if not self._allows(host, port):
            await _respond(writer, 403, f"Forbidden: {host}:{port} is not in the allowlist")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), _CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            await _respond(writer, 502, f"Bad Gateway: cannot reach {host}:{port}")
            return
        try:
            if method == b"CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(_origin_form_head(method, path, version, header_block))
                await up_writer.drain()
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()


def _origin_form_head(method: bytes, path: bytes, version: bytes, header_block: bytes) -> bytes:
    lines = [method + b" " + path + b" " + version]
    for line in header_block.split(b"\r\n"):
        if not line:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        if name not in _HOP_BY_HOP:
            lines.append(line)
    # One request per upstream connection: a second request on a kept-alive
    # connection must not reach this upstream without its own check.
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _respond(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (reason + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason.split(':')[0]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        with contextlib.suppress(OSError):
            dst.write_eof()


async def _relay(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
) -> None:
    """Copy both ways; done when the upstream has finished sending."""
    to_up = asyncio.ensure_future(_pipe(client_r, up_w))
    try:
        await _pipe(up_r, client_w)
    finally:
        to_up.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await to_up
