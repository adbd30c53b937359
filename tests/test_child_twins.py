"""The sync/async twins, communicate, cancellation and errors of issue 14,
every coroutine run on asyncio, uvloop and trio (CONTRACT §1, §2)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import stat
import sys
import time
from pathlib import Path

import anyio
import pytest

from orchestrator_spawn import (
    PIPE,
    ChildStreamReader,
    ChildStreamWriter,
    ResourceLimits,
    SpawnError,
    open_process,
    spawn,
)
from tests.helpers.processes import wait_gone

pytestmark = pytest.mark.anyio


def read_pid(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never got a pid")


# -- waiting and killing ---------------------------------------------------------


async def test_wait_kill_terminate_on_every_backend(exit_path: str) -> None:
    child = spawn(["sh", "-c", "exit 7"])
    assert await child.wait() == 7
    sleeper = await open_process(["sleep", "30"])
    with pytest.raises(TimeoutError):
        await sleeper.wait(timeout=0.05)
    assert sleeper.returncode is None
    assert await sleeper.kill() == -signal.SIGKILL
    termed = await open_process(["sleep", "30"])
    assert await termed.terminate(grace=5) == -signal.SIGTERM


async def test_many_waiters_under_one_loop(exit_path: str) -> None:
    child = await open_process(["sh", "-c", "read x; exit 3"], stdin=PIPE)
    results: list[int] = []

    async def waiter() -> None:
        results.append(await child.wait())

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(waiter)
        await anyio.sleep(0.05)
        assert not results
        assert child.stdin is not None
        child.stdin.write(b"go\n")
    assert results == [3] * 10


@pytest.mark.parametrize("what", ["wait", "communicate", "terminate"])
async def test_cancelling_a_coroutine_kills_and_reaps_the_job(
    what: str, tmp_path: Path, exit_path: str
) -> None:
    pidfile = tmp_path / "grandchild"
    child = await open_process(
        ["sh", "-c", f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait"],
        stdout=PIPE,
    )
    grandchild = read_pid(pidfile)
    with anyio.move_on_after(0.2) as scope:
        if what == "wait":
            await child.wait()
        elif what == "communicate":
            await child.communicate()
        else:
            await child.terminate(grace=30)
    assert scope.cancelled_caught
    assert child.returncode == -signal.SIGKILL  # reaped, not only signalled
    assert wait_gone(grandchild)


def test_blocking_twins(exit_path: str) -> None:
    child = spawn(["sleep", "30"])
    assert child.kill_blocking() == -signal.SIGKILL
    child = spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(15, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    assert child.terminate_blocking(grace=0.2) == -signal.SIGKILL
    assert time.monotonic() - started < 10
    child = spawn(["sleep", "30"])
    assert child.terminate_blocking() == -signal.SIGTERM
    child.start_kill()  # after the exit: a no-op, never blocks


# -- communicate -------------------------------------------------------------------


async def test_communicate_async() -> None:
    child = await open_process(
        ["sh", "-c", "cat; echo err >&2; exit 4"], stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    payload = os.urandom(2 * 1024 * 1024)
    assert await child.communicate(payload) == (payload, b"err\n")
    assert child.returncode == 4


def test_communicate_blocking_with_spawn_and_open_process_streams() -> None:
    payload = os.urandom(2 * 1024 * 1024)
    child = spawn(["sh", "-c", "cat; echo err >&2"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
    assert child.communicate_blocking(payload) == (payload, b"err\n")
    assert child.returncode == 0

    async def opened() -> tuple[bytes | None, bytes | None]:
        proc = await open_process(["cat"], stdin=PIPE, stdout=PIPE)
        return proc.communicate_blocking(b"hi")

    assert asyncio.run(opened()) == (b"hi", None)


async def test_communicate_async_on_a_spawn_child() -> None:
    child = spawn(["tr", "a-z", "A-Z"], stdin=PIPE, stdout=PIPE)
    assert await child.communicate(b"abc") == (b"ABC", None)


async def test_communicate_swallows_broken_pipe() -> None:
    child = await open_process(["sh", "-c", "echo done"], stdin=PIPE, stdout=PIPE)
    assert await child.communicate(b"x" * (4 * 1024 * 1024)) == (b"done\n", None)
    blocking = spawn(["sh", "-c", "echo done"], stdin=PIPE, stdout=PIPE)
    assert blocking.communicate_blocking(b"x" * (4 * 1024 * 1024)) == (b"done\n", None)


async def test_communicate_timeout_keeps_the_child_and_goes_on() -> None:
    child = await open_process(
        ["sh", "-c", "echo first; sleep 0.6; echo second"], stdin=PIPE, stdout=PIPE
    )
    with pytest.raises(TimeoutError):
        await child.communicate(timeout=0.3)
    assert child.returncode is None
    os.kill(child.pid, 0)  # still running
    out, err = await child.communicate(timeout=10)
    assert out == b"first\nsecond\n"
    assert err is None


def test_communicate_blocking_timeout_keeps_the_child() -> None:
    child = spawn(["sh", "-c", "echo first; sleep 0.5; echo second"], stdout=PIPE)
    with pytest.raises(TimeoutError):
        child.communicate_blocking(timeout=0.1)
    assert child.returncode is None
    assert child.communicate_blocking(timeout=10) == (b"first\nsecond\n", None)


# -- open_process streams ------------------------------------------------------------


async def test_stream_methods_on_every_backend() -> None:
    async with open_process(["sh", "-c", "cat; printf 'tail'"], stdin=PIPE, stdout=PIPE) as child:
        assert isinstance(child.stdin, ChildStreamWriter)
        assert isinstance(child.stdout, ChildStreamReader)
        child.stdin.writelines([b"one\n", b"two|three", b"\nfour\n"])
        await child.stdin.drain()
        child.stdin.close()
        await child.stdin.wait_closed()
        assert await child.stdout.readline() == b"one\n"
        assert await child.stdout.readuntil(b"|") == b"two|"
        assert await child.stdout.readexactly(6) == b"three\n"
        assert [line async for line in child.stdout] == [b"four\n", b"tail"]
        assert child.stdout.at_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await child.stdout.readexactly(1)
        assert await child.wait() == 0


async def test_leaving_open_process_kills_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    async with open_process(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"]) as child:
        grandchild = read_pid(pidfile)
    assert child.returncode == -signal.SIGKILL
    assert wait_gone(grandchild)


# -- errors a user already catches --------------------------------------------------------


def test_spawn_error_is_the_errnos_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        spawn(["no-such-program-issue14"])
    assert isinstance(info.value, SpawnError)
    assert info.value.filename == "no-such-program-issue14"
    assert (info.value.stage, info.value.errno) == ("exec", errno.ENOENT)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(stat.S_IRUSR)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError) as denied:
            spawn([str(script)])
        assert isinstance(denied.value, SpawnError)
        assert denied.value.filename == str(script)
    with pytest.raises(NotADirectoryError):
        spawn(["true"], cwd=str(script))


def test_limits_type_and_too_large_values() -> None:
    with pytest.raises(TypeError, match="limits must be a ResourceLimits"):
        spawn(["true"], limits=(1, 2, 3, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="open_files is too large"):
        ResourceLimits(open_files=2**64)
    with pytest.raises(ValueError, match="must be >= 0"):
        ResourceLimits(open_files=-1)


# -- logging -------------------------------------------------------------------------------


def test_debug_log_of_spawn_exit_and_kill(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="orchestrator_spawn"):
        child = spawn(["sleep", "30"])
        child.kill_blocking()
    messages = [r.getMessage() for r in caplog.records if r.name == "orchestrator_spawn"]
    assert any(m.startswith(f"spawn pid={child.pid} argv0='sleep'") for m in messages)
    assert any(m.startswith(f"kill pid={child.pid}") for m in messages)
    assert any(m.startswith(f"exit pid={child.pid} status=-9") for m in messages)
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
