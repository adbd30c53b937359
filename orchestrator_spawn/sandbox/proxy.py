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
on ``127.0.0.1:3128`` in its namespace and sends that listening socket over a
filesystem unix socket (``handoff_path``, in a private 0700 directory; those
cross network namespaces) to the parent, which then accepts and serves the
connections made inside the namespace. On macOS the proxy simply listens on
``127.0.0.1`` on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AllowlistProxy", "parse_allowlist"]

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


class AllowlistProxy:
    """One proxy serving one sandbox's allowlist; ``close()`` stops it (idempotent).

    ``listen_tcp()`` (macOS) or ``listen_handoff()`` (Linux) start it. Raises
    ValueError for a malformed allowlist.
    """

    def __init__(self, allowlist: Iterable[str]) -> None:
        self.allowed = parse_allowlist(allowlist)
        self._loop = _LoopThread.loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tmpdir: str | None = None
        self._closed = False
        self.handoff_path: str | None = None
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

    def listen_handoff(self) -> str:
        """Create the unix socket children hand their listeners to; returns its path.

        The socket listens before this returns, so a child forked afterwards can
        connect at once even before the proxy thread gets to it.
        """
        self._tmpdir = tempfile.mkdtemp(prefix="osp-proxy-")  # mode 0700
        path = os.path.join(self._tmpdir, "handoff")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(16)
        sock.setblocking(False)
        self._sockets.append(sock)
        self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), self._accept, sock)
        self.handoff_path = path
        return path

    def close(self, *, wait: bool = True) -> None:
        """Stop serving, close every socket, remove the handoff directory.

        ``wait=False`` only asks the proxy thread to do it and returns at once
        (for callers that must not block, such as the thread reaping the
        sandboxed child)."""
        if self._closed:
            return
        self._closed = True
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
        for sock in self._sockets:
            sock.close()
        self._remove_handoff_path()

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=30)

    # -- the proxy loop ------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        # One sandbox, one child: the first connection is the child's, made
        # before its exec. Take no other, and remove the path, so the program
        # it runs cannot reach the parent through this socket later.
        self._loop.remove_reader(listener.fileno())
        self._sockets.remove(listener)
        listener.close()
        self._remove_handoff_path()
        conn.setblocking(False)
        self._sockets.append(conn)
        self._loop.add_reader(conn.fileno(), self._receive_listener, conn)

    def _remove_handoff_path(self) -> None:
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._tmpdir, "handoff"))
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)

    def _receive_listener(self, conn: socket.socket) -> None:
        try:
            _, fds, _, _ = socket.recv_fds(conn, 1, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        self._loop.remove_reader(conn.fileno())
        self._sockets.remove(conn)
        conn.close()
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
        server = await asyncio.start_server(self._handle, sock=sock, limit=_MAX_HEAD)
        self._servers.append(server)

    async def _shutdown(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _allows(self, host: str, port: int) -> bool:
        return (_normal_host(host), port) in self.allowed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
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
