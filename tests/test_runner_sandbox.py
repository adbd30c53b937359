"""spawn_with_runner under sandbox profiles: the profile reaches the child."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from orchestrator_spawn import (
    ExecutionProfile,
    ResolvedExecutionProfile,
    RunnerConfig,
    sandbox_preflight,
    spawn_with_runner,
)

PY = sys.executable


def _profile(workspace: Path, **fields: object) -> ResolvedExecutionProfile:
    profile = ExecutionProfile(mode="sandbox", **fields).resolve("sbx", workspace)  # type: ignore[arg-type]
    missing = sandbox_preflight(profile)
    if missing:
        pytest.skip(f"this machine cannot enforce the profile: {'; '.join(missing)}")
    return profile


def run(command: str, workspace: Path, profile: ResolvedExecutionProfile) -> tuple[int, str]:
    logs = workspace.parent / f"{workspace.name}-logs"
    logs.mkdir(exist_ok=True)
    # stdout alone: a login shell may complain on stderr about a read-only $HOME.
    out = logs / "out.log"
    child = spawn_with_runner(
        RunnerConfig(), command, workspace, out, logs / "err.log", None, False, profile
    )
    code = child.wait_blocking(timeout=60)
    return code, out.read_text()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "src.txt").write_text("source\n")
    return ws


def test_readonly_workspace_refuses_writes_but_reads(workspace: Path) -> None:
    profile = _profile(workspace, fs_mode="workspace_readonly")
    code, out = run("cat src.txt; touch new.txt && echo WROTE", workspace, profile)
    assert "source" in out
    assert "WROTE" not in out
    assert code != 0
    assert not (workspace / "new.txt").exists()


def test_rw_scoped_allows_only_the_writable_paths(workspace: Path) -> None:
    profile = _profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    code, out = run(
        "echo ok > out/a.txt && echo IN; echo no > b.txt && echo OUT", workspace, profile
    )
    assert code != 0  # the last command, the refused write, failed
    assert (workspace / "out" / "a.txt").read_text() == "ok\n"
    assert not (workspace / "b.txt").exists()
    assert "IN" in out
    assert "OUT" not in out


def test_network_deny_blocks_loopback(workspace: Path) -> None:
    profile = _profile(workspace, network_mode="deny")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            f"{PY} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 5); "
            "print('CONNECTED')\" 2>&1"
        )
        code, out = run(probe, workspace, profile)
    assert code != 0
    # Line by line: Python 3.13 tracebacks quote the source, which names it.
    assert "CONNECTED" not in out.splitlines()
    assert "PermissionError" in out or "Errno" in out


def test_sandbox_profile_limits_reach_the_child(workspace: Path) -> None:
    profile = _profile(workspace, fs_mode="workspace_readonly", max_open_files=48)
    code, out = run("ulimit -n", workspace, profile)
    assert (code, out.strip()) == (0, "48")


def test_host_profile_is_unconfined(workspace: Path) -> None:
    code, _ = run("touch new.txt", workspace, ResolvedExecutionProfile.host(workspace))
    assert code == 0
    assert (workspace / "new.txt").exists()


def test_network_allowlist_reaches_listed_host_through_the_proxy(workspace: Path) -> None:
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello through the proxy"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello) as server:
        port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            profile = _profile(
                workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{port}"]
            )
            fetch = (
                f'{PY} -c "import urllib.request as u; '
                f"print(u.urlopen('http://127.0.0.1:{port}/', timeout=10).read().decode())\" 2>&1"
            )
            code, out = run(fetch, workspace, profile)
        finally:
            server.shutdown()
            thread.join()
    assert (code, out.strip()) == (0, "hello through the proxy")
