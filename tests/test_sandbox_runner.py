"""Sandbox profiles through the runner layer (spawn_with_runner), with real shells.

The Linux tests name the kernel features they need; the others run wherever
the platform's backend can enforce the profile (sandbox_preflight decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orchestrator_spawn import (
    ExecutionProfile,
    ResolvedExecutionProfile,
    RunnerConfig,
    SandboxBackendError,
    sandbox_preflight,
    spawn_with_runner,
)
from tests.helpers.http_origin import Origin, nothing_accepted, tcp_listener
from tests.helpers.sandbox import CHILD_PYTHON, LINUX_ONLY, needs, profile

RUNNER = RunnerConfig(shell="/bin/sh", shell_arg="-c")
LOGIN_SHELL = RunnerConfig()  # the default: /bin/bash -lc
RUNNERS = pytest.mark.parametrize("runner", [RUNNER, LOGIN_SHELL], ids=["sh-c", "bash-lc"])


F = TypeVar("F", bound=Callable[..., None])


def linux_only(test: F) -> F:
    for mark in LINUX_ONLY:
        test = mark(test)
    return test


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "src.txt").write_text("source\n")
    (tmp_path / "logs").mkdir()
    return ws


@pytest.fixture
def origin() -> Iterator[int]:
    with Origin(b"granted") as server:
        yield server.port


def enforceable(workspace: Path, **fields: object) -> ResolvedExecutionProfile:
    """The profile, or a skip when this machine's backend cannot enforce it."""
    resolved = ExecutionProfile(mode="sandbox", **fields).resolve("sbx", workspace)  # type: ignore[arg-type]
    missing = sandbox_preflight(resolved)
    if missing:
        pytest.skip(f"this machine cannot enforce the profile: {'; '.join(missing)}")
    return resolved


def _run(
    workspace: Path,
    command: str,
    resolved: ResolvedExecutionProfile | None = None,
    runner: RunnerConfig = RUNNER,
    **profile_fields: Any,
) -> tuple[int, str, str]:
    logs = workspace.parent / "logs"
    child = spawn_with_runner(
        runner,
        command,
        workspace,
        logs / "stdout",
        logs / "stderr",
        {"PY": CHILD_PYTHON},
        False,
        resolved if resolved is not None else profile(workspace, **profile_fields),
    )
    code = child.wait_blocking(timeout=60)
    return code, (logs / "stdout").read_text(), (logs / "stderr").read_text()


def test_readonly_workspace_refuses_writes_but_reads(workspace: Path) -> None:
    resolved = enforceable(workspace, fs_mode="workspace_readonly")
    # A login shell may complain on stderr about a read-only $HOME: stdout only.
    code, out, _ = _run(
        workspace, "cat src.txt; touch new.txt && echo WROTE", resolved, LOGIN_SHELL
    )
    assert "source" in out
    assert "WROTE" not in out
    assert code != 0
    assert not (workspace / "new.txt").exists()


def test_rw_scoped_allows_only_the_writable_paths(workspace: Path) -> None:
    resolved = enforceable(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    code, out, _ = _run(
        workspace,
        "echo ok > out/a.txt && echo IN; echo no > b.txt && echo OUT",
        resolved,
        LOGIN_SHELL,
    )
    assert code != 0  # the last command, the refused write, failed
    assert (workspace / "out" / "a.txt").read_text() == "ok\n"
    assert not (workspace / "b.txt").exists()
    assert "IN" in out
    assert "OUT" not in out


def test_sandbox_profile_limits_reach_the_child(workspace: Path) -> None:
    resolved = enforceable(workspace, fs_mode="workspace_readonly", max_open_files=48)
    code, out, _ = _run(workspace, "ulimit -n", resolved, LOGIN_SHELL)
    assert (code, out.strip()) == (0, "48")


def test_host_profile_is_unconfined(workspace: Path) -> None:
    resolved = ResolvedExecutionProfile.host(workspace)
    code, _, _ = _run(workspace, "touch new.txt", resolved, LOGIN_SHELL)
    assert code == 0
    assert (workspace / "new.txt").exists()


@linux_only
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


@RUNNERS
def test_runner_network_deny(workspace: Path, runner: RunnerConfig) -> None:
    resolved = enforceable(workspace, network_mode="deny")
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        code, out, err = _run(
            workspace,
            f'"$PY" -c "import socket; socket.create_connection((\'127.0.0.1\', {port}), 5); '
            "print('CONNECTED')\"",
            resolved,
            runner,
        )
        assert nothing_accepted(listener)
    assert code != 0
    # Line by line: Python 3.13 tracebacks quote the source, which names it.
    assert "CONNECTED" not in out.splitlines()
    assert "PermissionError" in err, err


@RUNNERS
def test_runner_allowlist_goes_through_the_proxy(
    workspace: Path, origin: int, runner: RunnerConfig
) -> None:
    resolved = enforceable(
        workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{origin}"]
    )
    code, out, err = _run(
        workspace,
        '"$PY" -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1:{origin}/', timeout=10).read().decode())\"",
        resolved,
        runner,
    )
    assert (code, out) == (0, "granted\n"), err


@linux_only
def test_runner_refuses_when_a_probe_is_forced_unavailable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator_spawn.sandbox.linux import DISABLE_ENV

    monkeypatch.setenv(DISABLE_ENV, "landlock")
    marker = workspace / "ran"
    with pytest.raises(SandboxBackendError) as info:
        _run(workspace, f'touch "{marker}"', fs_mode="workspace_readonly")
    assert info.value.reason_code == "sandbox_backend_unavailable"
    assert info.value.backend == "linux_native"
    assert not marker.exists()


@linux_only
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


@linux_only
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
