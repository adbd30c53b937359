"""The allowlist proxy on its own: parsing, and real requests over 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from orchestrator_spawn.sandbox.proxy import AllowlistProxy, parse_allowlist
from tests.helpers.http_origin import Origin


def test_parse_allowlist_entries() -> None:
    assert parse_allowlist(["Example.ORG."]) == {("example.org", 80), ("example.org", 443)}
    assert parse_allowlist(["127.0.0.1:8080"]) == {("127.0.0.1", 8080)}
    assert parse_allowlist(["[::1]:8443", "[0:0::1]"]) == {
        ("::1", 8443),
        ("::1", 80),
        ("::1", 443),
    }


@pytest.mark.parametrize(
    "entry", ["*.example.org", "http://example.org", "example.org/x", "h:0", "h:99999", "h:x", ""]
)
def test_parse_allowlist_rejects_malformed_entries(entry: str) -> None:
    with pytest.raises(ValueError, match=r"entry|port|host"):
        parse_allowlist([entry])


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_absolute_form_request_to_allowed_origin(origin: Origin) -> None:
    proxy = AllowlistProxy([f"127.0.0.1:{origin.port}"])
    try:
        port = proxy.listen_tcp()
        reply = _exchange(
            port,
            f"GET http://127.0.0.1:{origin.port}/p?q=1 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{origin.port}\r\nProxy-Connection: keep-alive\r\n\r\n".encode(),
        )
    finally:
        proxy.close()
    assert reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    assert reply.endswith(b"origin says hi")
    assert origin.paths == ["/p?q=1"]
    assert "Proxy-Connection" not in origin.headers[0]


def test_not_listed_origin_gets_403_and_is_never_contacted(origin: Origin) -> None:
    proxy = AllowlistProxy([f"127.0.0.1:{origin.port + 1 if origin.port < 65535 else 1}"])
    try:
        port = proxy.listen_tcp()
        reply = _exchange(
            port, f"GET http://127.0.0.1:{origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        tunnel = _exchange(port, f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\n".encode())
        bad = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        proxy.close()
    assert reply.startswith(b"HTTP/1.1 403")
    assert tunnel.startswith(b"HTTP/1.1 403")
    assert bad.startswith(b"HTTP/1.1 400")
    assert origin.paths == []


def test_connect_tunnel_to_allowed_port(origin: Origin) -> None:
    proxy = AllowlistProxy([f"localhost:{origin.port}"])
    try:
        port = proxy.listen_tcp()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"CONNECT localhost:{origin.port} HTTP/1.1\r\n\r\n".encode())
            head = sock.recv(100)
            assert head == b"HTTP/1.1 200 Connection established\r\n\r\n"
            sock.sendall(b"GET /tunnelled HTTP/1.0\r\n\r\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    finally:
        proxy.close()
    assert b"".join(chunks).endswith(b"origin says hi")
    assert origin.paths == ["/tunnelled"]


def test_close_is_idempotent_and_stops_serving() -> None:
    proxy = AllowlistProxy(["127.0.0.1:9"])
    port = proxy.listen_tcp()
    proxy.close()
    proxy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
