"""spawn_with_runner end to end, with real shells, files and process groups."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from orchestrator_spawn import (
    Child,
    ChildStreamWriter,
    ExecutionProfile,
    ResolvedExecutionProfile,
    RunnerConfig,
    RunnerPolicy,
    SpawnError,
    spawn_with_runner,
)


def _spawn_is_implemented() -> bool:
    from orchestrator_spawn.spawn import ResourceLimits

    try:
        ResourceLimits()
    except NotImplementedError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _spawn_is_implemented(), reason="spawn() has not landed on this branch yet"
)

PY = sys.executable


def run(
    runner: RunnerConfig, command: str, tmp_path: Path, **kwargs: object
) -> tuple[int, str, str]:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    child = spawn_with_runner(runner, command, tmp_path, out, err, **kwargs)  # type: ignore[arg-type]
    code = child.wait_blocking(timeout=30)
    return code, out.read_text(), err.read_text()


def show_vars(*names: str) -> str:
    """A shell command printing the variables' values joined by "|" ("missing" if unset)."""
    values = " ".join(f'"${{{name}:-missing}}"' for name in names)
    return f"printf '{'|'.join(['%s'] * len(names))}' {values}"


def test_allowlist_filters_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_ALLOWED_TEST", "visible")
    monkeypatch.setenv("RUNNER_BLOCKED_TEST", "hidden")
    monkeypatch.setenv("CLAUDECODE", "nested-session")
    runner = RunnerConfig(env_allowlist=["RUNNER_ALLOWED_TEST"])
    code, out, err = run(
        runner,
        show_vars("RUNNER_ALLOWED_TEST", "RUNNER_BLOCKED_TEST", "CLAUDECODE"),
        tmp_path,
    )
    assert (code, out) == (0, "visible|missing|missing")
    assert "RUNNER_" not in err


def test_unsafe_passes_parent_env_but_not_removed_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_BLOCKED_TEST", "now-visible")
    monkeypatch.setenv("CLAUDECODE", "nested-session")
    code, out, _ = run(
        RunnerConfig(policy=RunnerPolicy.UNSAFE),
        show_vars("RUNNER_BLOCKED_TEST", "CLAUDECODE"),
        tmp_path,
    )
    assert (code, out) == (0, "now-visible|missing")


def test_extra_env_is_injected_and_env_remove_still_wins(tmp_path: Path) -> None:
    code, out, _ = run(
        RunnerConfig(),
        show_vars("EXTRA_TEST_VAR", "CLAUDECODE"),
        tmp_path,
        extra_env={"EXTRA_TEST_VAR": "injected_value", "CLAUDECODE": "x"},
    )
    assert (code, out) == (0, "injected_value|missing")


def test_daemon_pid_guard_lets_harmless_commands_run(tmp_path: Path) -> None:
    code, out, _ = run(
        RunnerConfig(),
        "echo kill the build; printenv ORCHESTRATOR_DAEMON_PID",
        tmp_path,
        extra_env={"ORCHESTRATOR_DAEMON_PID": "4242"},
    )
    assert (code, out) == (0, "kill the build\n4242\n")


def test_runs_in_cwd_in_own_process_group(tmp_path: Path) -> None:
    code, out, _ = run(
        RunnerConfig(),
        f"pwd; exec {PY} -c 'import os; print(os.getpgid(0) == os.getpid())'",
        tmp_path,
    )
    assert code == 0
    assert out.splitlines() == [str(tmp_path.resolve()), "True"]


def test_child_pgid_is_its_pid(tmp_path: Path) -> None:
    child = spawn_with_runner(RunnerConfig(), "exit 3", tmp_path, os.devnull, os.devnull)
    assert child.pgid == child.pid
    assert child.wait_blocking(timeout=30) == 3


def test_output_paths_are_truncated_and_can_be_shared(tmp_path: Path) -> None:
    log = tmp_path / "combined.log"
    log.write_text("stale content that must disappear\n" * 10)
    child = spawn_with_runner(
        RunnerConfig(), "echo out; echo err >&2; echo out2", tmp_path, log, str(log)
    )
    assert child.wait_blocking(timeout=30) == 0
    assert log.read_text() == "out\nerr\nout2\n"


def test_output_file_objects_and_fds(tmp_path: Path) -> None:
    with open(tmp_path / "o", "wb") as out_file:
        fd = os.open(tmp_path / "e", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            child = spawn_with_runner(
                RunnerConfig(), "echo to-out; echo to-err >&2", tmp_path, out_file, fd
            )
            assert child.wait_blocking(timeout=30) == 0
            os.write(fd, b"caller still owns the fd\n")
        finally:
            os.close(fd)
        out_file.write(b"caller still owns the file\n")
    assert (tmp_path / "o").read_text() == "to-out\ncaller still owns the file\n"
    assert (tmp_path / "e").read_text() == "to-err\ncaller still owns the fd\n"


@pytest.mark.parametrize(
    ("limits", "probe", "expected"),
    [
        ({"max_open_files": 64}, "ulimit -n", "64"),
        ({"max_cpu_seconds": 7}, "ulimit -t", "7"),
        ({"max_processes": 4000}, "ulimit -u", "4000"),
        ({"max_memory_mb": 2048}, "ulimit -v", str(2048 * 1024)),
    ],
)
def test_profile_limits_reach_the_child(
    tmp_path: Path, limits: dict[str, int], probe: str, expected: str
) -> None:
    profile = ExecutionProfile(**limits).resolve("limited", tmp_path)  # type: ignore[arg-type]
    code, out, err = run(RunnerConfig(), probe, tmp_path, execution_profile=profile)
    assert (code, out.strip(), err) == (0, expected, "")


def test_cpu_limit_stops_a_busy_loop(tmp_path: Path) -> None:
    profile = ExecutionProfile(max_cpu_seconds=1).resolve("cpu", tmp_path)
    child = spawn_with_runner(
        RunnerConfig(),
        "while :; do :; done",
        tmp_path,
        os.devnull,
        os.devnull,
        execution_profile=profile,
    )
    code = child.wait_blocking(timeout=60)
    assert code in (-24, -9)  # SIGXCPU at the soft limit (soft == hard, so maybe SIGKILL)


def test_missing_shell_is_a_spawn_error_naming_shell(tmp_path: Path) -> None:
    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE, shell="/definitely/missing-shell")
    with pytest.raises(SpawnError) as info:
        spawn_with_runner(runner, "echo hello", tmp_path, tmp_path / "o", tmp_path / "e")
    assert "failed to spawn runner shell=/definitely/missing-shell shell_arg=-lc" in str(info.value)
    assert info.value.errno == 2
    assert info.value.stage == "exec"


def test_missing_cwd_is_a_spawn_error(tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as info:
        spawn_with_runner(RunnerConfig(), "true", tmp_path / "nope", os.devnull, os.devnull)
    assert info.value.stage == "chdir"
    assert "shell=/bin/bash" in str(info.value)


def _start_with_piped_stdin(tmp_path: Path, command: str) -> Child:
    """The runner with ``pipe_stdin``: stdout to ``tmp_path/o``."""
    return spawn_with_runner(
        RunnerConfig(),
        command,
        tmp_path,
        tmp_path / "o",
        os.devnull,
        None,
        True,
        ResolvedExecutionProfile.host(tmp_path),
    )


async def _upper(child: Child, data: bytes) -> int:
    """Feeds ``data`` to the child (``tr a-z A-Z``) and waits for it."""
    assert isinstance(child.stdin, ChildStreamWriter)
    child.stdin.write(data)
    await child.stdin.drain()
    child.stdin.close()
    return await child.wait()


def test_pipe_stdin(tmp_path: Path) -> None:
    async def main() -> int:
        return await _upper(_start_with_piped_stdin(tmp_path, "tr a-z A-Z"), b"hello stdin\n")

    assert asyncio.run(main()) == 0
    assert (tmp_path / "o").read_text() == "HELLO STDIN\n"


def test_pipe_stdin_under_trio_and_refused_without_a_loop(tmp_path: Path) -> None:
    # CONTRACT §4: child.stdin is open_process's async writer whoever calls;
    # without a running event loop, a clear RuntimeError before any spawn.
    trio = pytest.importorskip("trio")
    marker = tmp_path / "ran"

    with pytest.raises(RuntimeError, match="event loop"):
        _start_with_piped_stdin(tmp_path, f"touch {marker}")
    assert not marker.exists()

    async def main() -> int:
        return await _upper(_start_with_piped_stdin(tmp_path, "tr a-z A-Z"), b"under trio\n")

    assert trio.run(main) == 0
    assert (tmp_path / "o").read_text() == "UNDER TRIO\n"
