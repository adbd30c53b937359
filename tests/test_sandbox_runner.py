"""Sandbox profiles through the runner layer (spawn_with_runner), with real shells."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import CHILD_PYTHON, profile

from orchestrator_spawn import RunnerConfig, SandboxBackendError, spawn_with_runner
from orchestrator_spawn.sandbox.linux import DISABLE_ENV, probe_capabilities

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox backend"),
]

RUNNER = RunnerConfig(shell="/bin/sh", shell_arg="-c")


def needs(*features: str) -> None:
    caps = probe_capabilities()
    for feature in features:
        if caps.unavailable(feature) is not None:
            pytest.skip(f"this kernel cannot: {caps.unavailable(feature)}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    return ws


def _run(workspace: Path, command: str, **profile_fields: object) -> tuple[int, str, str]:
    logs = workspace.parent / "logs"
    child = spawn_with_runner(
        RUNNER,
        command,
        workspace,
        logs / "stdout",
        logs / "stderr",
        {"PY": CHILD_PYTHON},
        False,
        profile(workspace, **profile_fields),
    )
    code = child.wait_blocking(timeout=60)
    return code, (logs / "stdout").read_text(), (logs / "stderr").read_text()


def test_runner_confines_writes_and_still_writes_its_logs(workspace: Path) -> None:
    needs("landlock", "seccomp")
    outside = workspace.parent / "escaped"
    code, out, err = _run(
        workspace,
        f'echo inside > out/a && echo logged && echo outside > "{outside}"',
        fs_mode="workspace_rw_scoped",
        writable_paths=["out"],
    )
    assert code != 0
    assert (workspace / "out" / "a").read_text() == "inside\n"
    assert out == "logged\n"  # the log files were opened by the parent
    assert "ermission denied" in err or "ead-only file system" in err
    assert not outside.exists()


def test_runner_network_deny(workspace: Path) -> None:
    needs("seccomp")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code, _, err = _run(
        workspace,
        f'"$PY" -c "import socket; socket.create_connection((\'127.0.0.1\', {port}))"',
        network_mode="deny",
    )
    assert code != 0
    assert "PermissionError" in err
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


@pytest.fixture
def origin() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"granted")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_runner_allowlist_goes_through_the_proxy(workspace: Path, origin: int) -> None:
    needs("userns", "seccomp")
    code, out, err = _run(
        workspace,
        '"$PY" -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1:{origin}/').read().decode())\"",
        network_mode="allowlist",
        network_allowlist=[f"127.0.0.1:{origin}"],
    )
    assert (code, out) == (0, "granted\n"), err


def test_runner_refuses_when_a_probe_is_forced_unavailable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_ENV, "landlock")
    marker = workspace / "ran"
    with pytest.raises(SandboxBackendError) as info:
        _run(workspace, f'touch "{marker}"', fs_mode="workspace_readonly")
    assert info.value.reason_code == "sandbox_backend_unavailable"
    assert info.value.backend == "linux_native"
    assert not marker.exists()


def test_runner_allowlist_proxy_serves_while_the_callers_loop_is_blocked(
    workspace: Path, origin: int
) -> None:
    # The proxy has its own thread: a caller blocking its event loop in
    # wait_blocking() must not starve its own child's requests.
    needs("userns", "seccomp")

    async def main() -> tuple[int, str, str]:
        return _run(
            workspace,
            '"$PY" -c "import urllib.request as u; '
            f"print(u.urlopen('http://127.0.0.1:{origin}/', timeout=20).read().decode())\"",
            network_mode="allowlist",
            network_allowlist=[f"127.0.0.1:{origin}"],
        )

    code, out, err = asyncio.run(main())
    assert (code, out) == (0, "granted\n"), err


def _socket_fds() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.add(int(name))
    return found


def test_allowlist_proxy_is_released_when_the_child_is_reaped(workspace: Path, origin: int) -> None:
    # The handle stays referenced: the proxy's sockets (the listener handed
    # over by the child, its connections) close once the child is reaped, not
    # when the handle is collected.
    needs("userns", "seccomp")
    before = _socket_fds()
    logs = workspace.parent / "logs"
    child = spawn_with_runner(
        RUNNER,
        '"$PY" -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1:{origin}/').read().decode())\"",
        workspace,
        logs / "stdout",
        logs / "stderr",
        {"PY": CHILD_PYTHON},
        False,
        profile(workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{origin}"]),
    )
    assert _socket_fds() - before, "the proxy holds no socket while the child runs"
    assert child.wait_blocking(timeout=60) == 0
    assert (logs / "stdout").read_text() == "granted\n"
    deadline = time.monotonic() + 10
    while _socket_fds() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _socket_fds() - before == set()
    assert child.returncode == 0  # the handle is still alive
