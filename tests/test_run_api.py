"""run / run_blocking / open_redacted (CONTRACT §2a, issue 14 items 4, 6, 7):
real processes, on asyncio, uvloop and trio."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from orchestrator_spawn import (
    DEVNULL,
    PIPE,
    STDOUT,
    OrchestratorSpawnError,
    RedactedLine,
    RunTimeoutError,
    open_redacted,
    run,
    run_blocking,
    spawn,
)
from tests.helpers.processes import wait_gone

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"  # the built-in pack knows it
SCRIPT = f"echo 'token {GITHUB_TOKEN}'; echo err >&2; exit 3"


def read_pid(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text.split()[0])
        time.sleep(0.01)
    raise AssertionError(f"{path} never got a pid")


@pytest.mark.anyio
async def test_run_redacts_with_the_builtin_pack_by_default() -> None:
    result = await run(["sh", "-c", SCRIPT])
    assert (result.returncode, result.stdout, result.stderr) == (
        3,
        b"token [REDACTED]\n",
        b"err\n",
    )
    clear = await run(["sh", "-c", SCRIPT], redact=None)
    assert clear.stdout == f"token {GITHUB_TOKEN}\n".encode()


def test_run_blocking_is_the_same() -> None:
    result = run_blocking(["sh", "-c", SCRIPT])
    assert (result.returncode, result.stdout, result.stderr) == (
        3,
        b"token [REDACTED]\n",
        b"err\n",
    )


@pytest.mark.anyio
async def test_text_encoding_and_input() -> None:
    result = await run(["tr", "a-z", "A-Z"], input="héllo\r\nx", text=True)
    assert result.stdout == "HéLLO\nX"
    assert result.stderr == ""
    latin = await run(["cat"], input="é", encoding="latin-1")
    assert latin.stdout == "é"
    blocking = run_blocking(["cat"], input=b"\xff\xfe raw", redact=None)
    assert blocking.stdout == b"\xff\xfe raw"
    with pytest.raises(TypeError, match="input must be str"):
        await run(["cat"], input=b"x", text=True)


@pytest.mark.anyio
async def test_check_raises_with_redacted_output() -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        await run(["sh", "-c", SCRIPT], check=True)
    assert info.value.returncode == 3
    assert info.value.output == b"token [REDACTED]\n"
    assert info.value.stderr == b"err\n"
    with pytest.raises(subprocess.CalledProcessError):
        run_blocking(["false"], check=True)


@pytest.mark.anyio
async def test_timeout_kills_the_job_and_is_a_timeout_expired(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo 'partial {GITHUB_TOKEN}'; wait"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        await run(["sh", "-c", script], timeout=0.5)
    assert isinstance(info.value, RunTimeoutError)
    assert isinstance(info.value, OrchestratorSpawnError)
    assert info.value.timeout == 0.5
    assert info.value.output == b"partial [REDACTED]\n"
    assert info.value.stdout == info.value.output
    assert wait_gone(read_pid(pidfile))


def test_run_blocking_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(RunTimeoutError) as info:
        run_blocking(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo hi; wait"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert info.value.output == b"hi\n"
    assert wait_gone(read_pid(pidfile))
    # A child that never reads its stdin cannot stall the input past the timeout.
    with pytest.raises(RunTimeoutError):
        run_blocking(["sleep", "60"], input=b"x" * (4 * 1024 * 1024), timeout=0.5)


@pytest.mark.anyio
async def test_cancelling_run_kills_the_job(tmp_path: Path) -> None:
    # Issue 14: under trio this raised "unrecognized yield message" and left
    # the sleep running.
    pidfile = tmp_path / "pid"
    with anyio.move_on_after(0.5) as scope:
        await run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 33"])
    assert scope.cancelled_caught
    assert wait_gone(read_pid(pidfile))


@pytest.mark.anyio
async def test_stdio_when_not_capturing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with out.open("wb") as sink:
        result = await run(
            ["sh", "-c", "echo to-file; echo also >&2"],
            capture_output=False,
            stdout=sink,
            stderr=STDOUT,
        )
    assert (result.stdout, result.stderr) == (None, None)
    assert out.read_bytes() == b"to-file\nalso\n"
    merged = await run(
        ["sh", "-c", "echo a; echo b >&2"], capture_output=False, stdout=PIPE, stderr=STDOUT
    )
    assert merged.stdout == b"a\nb\n"
    assert merged.stderr is None
    assert (await run(["cat"], stdin=DEVNULL)).stdout == b""
    with pytest.raises(ValueError, match="capture_output"):
        await run(["true"], stdout=PIPE)
    with pytest.raises(ValueError, match="input"):
        await run(["true"], input=b"x", stdin=DEVNULL)
    with pytest.raises(TypeError, match="input="):
        await run(["true"], stdin=b"x")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_open_redacted_lines_end_with_the_output() -> None:
    script = f"echo one; echo 'secret {GITHUB_TOKEN}' >&2; echo three; printf tail"
    async with open_redacted(["sh", "-c", script]) as proc:
        lines = [line async for line in proc.redacted_lines()]
        assert await proc.wait() == 0
    assert sorted(lines) == sorted(
        [
            RedactedLine("stdout", b"one\n"),
            RedactedLine("stderr", b"secret [REDACTED]\n"),
            RedactedLine("stdout", b"three\n"),
            RedactedLine("stdout", b"tail"),
        ]
    )
    stdout_lines = [line.line for line in lines if line.stream == "stdout"]
    assert stdout_lines == [b"one\n", b"three\n", b"tail"]


@pytest.mark.anyio
async def test_open_redacted_exit_kills_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    async with open_redacted(
        ["sh", "-c", f"echo $$ > {pidfile}; echo up; exec sleep 60"], merge_stderr=True
    ) as proc:
        async for line in proc.redacted_lines():
            assert line == RedactedLine("stdout", b"up\n")
            break
    assert proc.returncode == -9
    assert wait_gone(read_pid(pidfile))


def test_no_log_at_info_in_normal_runs_and_a_warning_when_output_is_cut(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.DEBUG, logger="orchestrator_spawn"):
        run_blocking(["sh", "-c", "echo hi"])
    assert caplog.records
    assert all(r.levelno < logging.INFO for r in caplog.records)
    caplog.clear()
    if not os.path.exists("/usr/bin/setsid"):
        return
    # A process outside the job keeps the pipes open past the kill: the
    # capture is cut short, and that is said at WARNING. With a cgroup per
    # job nothing escapes the kill, so this needs a job that is only a
    # process group.
    from orchestrator_spawn._platform import cgroup

    pidfile = tmp_path / "escaped"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo hi; sleep 60"
    saved = cgroup.enabled()
    cgroup.set_enabled(False)
    try:
        with pytest.raises(RunTimeoutError):
            run_blocking(["sh", "-c", script], timeout=0.5)
    finally:
        cgroup.set_enabled(saved)
        with contextlib.suppress(ProcessLookupError):
            os.kill(read_pid(pidfile), 9)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert "cut short" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_runner_capture_and_pump_live_lines_on_every_backend(tmp_path: Path) -> None:
    # The runner's output_capture.wait() and Capture.lines() are coroutines
    # of the library too (CONTRACT §2: asyncio, uvloop and trio).
    from orchestrator_spawn import RunnerConfig, spawn_with_runner_and_capture
    from orchestrator_spawn.pump import MEMORY, start_capture

    captured = spawn_with_runner_and_capture(
        RunnerConfig(shell="/bin/sh", shell_arg="-c"),
        f"echo 'x {GITHUB_TOKEN}'; echo e >&2",
        tmp_path,
        tmp_path / "out",
        tmp_path / "err",
    )
    assert await captured.child.wait() == 0
    await captured.output_capture.wait()
    assert (tmp_path / "out").read_bytes() == b"x [REDACTED]\n"
    capture = start_capture(PIPE, stdout_sink=MEMORY, redact=[r"tok=\S+"], live=["stdout"])
    child = spawn(["sh", "-c", "echo a tok=1; echo b"], stdout=capture.writer("stdout"))
    capture.close_writers()
    assert [line async for line in capture.lines("stdout")] == [b"a [REDACTED]\n", b"b\n"]
    await capture.wait()
    assert await child.wait() == 0


@pytest.mark.anyio
async def test_pump_lines_end_even_without_close_writers() -> None:
    # Issue 14 item 7: lines() hung forever when close_writers() was forgotten.
    from orchestrator_spawn.pump import DISCARD, start_capture

    capture = start_capture(PIPE, stdout_sink=DISCARD, live=["stdout"])
    child = spawn(["sh", "-c", "echo one; echo two"], stdout=capture.writer("stdout"))
    with anyio.fail_after(20):
        assert [line async for line in capture.lines("stdout")] == [b"one\n", b"two\n"]
    assert await child.wait() == 0


def test_run_blocking_takes_every_keyword_of_run() -> None:
    # CONTRACT §2a: run_blocking(argv, **same). A keyword added to one twin
    # only (whole_job once was) fails here.
    ours = inspect.signature(run).parameters
    twin = inspect.signature(run_blocking).parameters
    assert list(twin) == list(ours)
    for name, parameter in ours.items():
        assert twin[name].default == parameter.default, name
        assert twin[name].kind == parameter.kind, name
