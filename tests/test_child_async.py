"""The asyncio half of the Child handle (CONTRACT §2, issue 3).

Every test runs on the default asyncio loop and on uvloop, each with the
pidfd/kqueue fast path and with the SIGCHLD-reaper fallback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from orchestrator_spawn import (
    PIPE,
    Child,
    ChildStreamReader,
    ChildStreamWriter,
    kill_child_process_group,
    open_process,
    spawn,
)
from tests.helpers.processes import count_pidfds, reaped, wait_gone

T = TypeVar("T")
Runner = Callable[[Callable[[], Awaitable[T]]], T]


def _uvloop_factory() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest, exit_path: str) -> Runner[Any]:
    """Runs a coroutine function to completion on a fresh loop of that kind."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else _uvloop_factory

    def runner(main: Callable[[], Awaitable[T]]) -> T:
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(main(), 120))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return runner


def reader(stream: object) -> ChildStreamReader:
    assert isinstance(stream, ChildStreamReader)
    return stream


def writer(stream: object) -> ChildStreamWriter:
    assert isinstance(stream, ChildStreamWriter)
    return stream


# -- waiting -------------------------------------------------------------------


def test_await_wait_status(run: Runner[Any]) -> None:
    async def main() -> tuple[int, int | None]:
        child = spawn(["sh", "-c", "exit 7"])
        return await child.wait(), child.returncode

    assert run(main) == (7, 7)


def test_await_wait_signal(run: Runner[Any]) -> None:
    async def main() -> int:
        return await spawn(["sh", "-c", "kill -USR1 $$"]).wait()

    assert run(main) == -signal.SIGUSR1


def test_many_concurrent_awaiters(run: Runner[Any]) -> None:
    async def main() -> list[int]:
        child = await open_process(["sh", "-c", "read x; exit 3"], stdin=PIPE)
        waiters = [asyncio.ensure_future(child.wait()) for _ in range(20)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        writer(child.stdin).write(b"go\n")
        return list(await asyncio.gather(*waiters))

    assert run(main) == [3] * 20


def test_cancelling_a_waiter_kills_the_job_and_wakes_the_others(run: Runner[Any]) -> None:
    # CONTRACT §2: cancelling a coroutine of the library kills and reaps the
    # job; the other waiters see the SIGKILL status.
    async def main() -> tuple[int | None, int]:
        child = await open_process(["sh", "-c", "read x; exit 5"], stdin=PIPE)
        doomed = asyncio.ensure_future(child.wait())
        survivor = asyncio.ensure_future(child.wait())
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return child.returncode, await survivor

    assert run(main) == (-signal.SIGKILL, -signal.SIGKILL)


def test_wait_timeout_leaves_the_child_running(run: Runner[Any]) -> None:
    async def main() -> tuple[int | None, int]:
        child = await open_process(["sh", "-c", "read x; exit 5"], stdin=PIPE)
        with pytest.raises(TimeoutError):
            await child.wait(timeout=0.05)
        running = child.returncode
        writer(child.stdin).write(b"go\n")
        return running, await child.wait(timeout=10)

    assert run(main) == (None, 5)


def test_wait_after_blocking_reap(run: Runner[Any]) -> None:
    async def main() -> int:
        child = spawn(["true"])
        child.wait_blocking(timeout=10)
        return await child.wait()

    assert run(main) == 0


def test_rusage_after_await(run: Runner[Any]) -> None:
    async def main() -> Any:
        child = spawn(["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
        await child.wait()
        return child.rusage

    usage = run(main)
    assert usage is not None
    assert usage.user_seconds + usage.system_seconds > 0.01
    assert usage.max_rss_bytes > 0


@pytest.mark.slow
def test_300_sleeping_children_few_threads(run: Runner[Any]) -> None:
    async def main() -> tuple[list[int], int]:
        baseline = threading.active_count()
        children = [spawn(["sleep", "2"]) for _ in range(300)]
        waits = asyncio.gather(*(c.wait() for c in children))
        await asyncio.sleep(0.1)
        assert all(c.returncode is None for c in children[-50:])
        extra = threading.active_count() - baseline
        return list(await waits), extra

    statuses, extra_threads = run(main)
    assert statuses == [0] * 300
    assert extra_threads <= 4


# -- killing -------------------------------------------------------------------

WITH_GRANDCHILD = "sleep 300 & echo $!; wait"


async def spawn_with_grandchild() -> tuple[Child[ChildStreamWriter, ChildStreamReader], int]:
    child = await open_process(["sh", "-c", WITH_GRANDCHILD], stdout=PIPE)
    line = await reader(child.stdout).readline()
    return child, int(line)


def test_kill_reaches_grandchildren(run: Runner[Any]) -> None:
    async def main() -> tuple[int, int, int]:
        child, grandchild = await spawn_with_grandchild()
        return await child.kill(), grandchild, child.pid

    status, grandchild, pid = run(main)
    assert status == -signal.SIGKILL
    assert reaped(pid)
    assert wait_gone(grandchild)


def test_kill_child_process_group(run: Runner[Any]) -> None:
    async def main() -> tuple[int | None, int]:
        child, grandchild = await spawn_with_grandchild()
        await kill_child_process_group(child)
        return child.returncode, grandchild

    status, grandchild = run(main)
    assert status == -signal.SIGKILL
    assert wait_gone(grandchild)


IGNORE_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


def test_terminate_escalates_to_sigkill(run: Runner[Any]) -> None:
    async def main() -> tuple[int, float]:
        child = await open_process([sys.executable, "-c", IGNORE_TERM], stdout=PIPE)
        assert await reader(child.stdout).readline() == b"ready\n"
        started = time.monotonic()
        status = await child.terminate(grace=0.5)
        return status, time.monotonic() - started

    status, elapsed = run(main)
    assert status == -signal.SIGKILL
    assert elapsed >= 0.5


def test_terminate_cooperative_child(run: Runner[Any]) -> None:
    async def main() -> tuple[int, float]:
        child = spawn(["sleep", "300"])
        started = time.monotonic()
        status = await child.terminate(grace=30)
        return status, time.monotonic() - started

    status, elapsed = run(main)
    assert status == -signal.SIGTERM
    assert elapsed < 10


def test_async_with_kills_on_exit(run: Runner[Any]) -> None:
    async def main() -> tuple[Child[ChildStreamWriter, ChildStreamReader], int]:
        child, grandchild = await spawn_with_grandchild()
        async with child:
            assert child.returncode is None
        return child, grandchild

    child, grandchild = run(main)
    assert child.returncode == -signal.SIGKILL
    assert wait_gone(grandchild)


# -- pipes ---------------------------------------------------------------------


def test_open_process_gives_async_streams(run: Runner[Any]) -> None:
    async def main() -> list[bytes]:
        child = await open_process(
            ["sh", "-c", "cat; echo err >&2"], stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        assert isinstance(child.stdout, ChildStreamReader)
        assert isinstance(child.stderr, ChildStreamReader)
        stdin = writer(child.stdin)
        stdin.writelines([b"line one\n", b"line two\n"])
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
        lines = [line async for line in reader(child.stdout)]
        lines.append(await reader(child.stderr).read())
        assert await child.wait() == 0
        return lines

    assert run(main) == [b"line one\n", b"line two\n", b"err\n"]


def test_round_trip_several_megabytes(run: Runner[Any]) -> None:
    payload = os.urandom(8 * 1024 * 1024)

    async def main() -> bytes:
        child = await open_process(["cat"], stdin=PIPE, stdout=PIPE)
        stdin = writer(child.stdin)

        async def feed() -> None:
            for start in range(0, len(payload), 1 << 20):
                stdin.write(payload[start : start + (1 << 20)])
                await stdin.drain()
            stdin.write_eof()

        feeding = asyncio.ensure_future(feed())
        echoed = await reader(child.stdout).read()
        await feeding
        assert await child.wait() == 0
        return echoed

    assert run(main) == payload


def test_write_to_closed_stdin_raises_broken_pipe(run: Runner[Any]) -> None:
    async def main() -> None:
        child = await open_process(["true"], stdin=PIPE)
        await child.wait()
        stdin = writer(child.stdin)
        with pytest.raises(BrokenPipeError):
            stdin.write(b"x" * 100_000)  # the first write already sees EPIPE
        with pytest.raises(BrokenPipeError):
            stdin.write(b"again")
        with pytest.raises(BrokenPipeError):
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()

    run(main)


def test_broken_pipe_while_draining(run: Runner[Any]) -> None:
    async def main() -> None:
        # The child reads one line, then exits while we still have MBs queued.
        child = await open_process(["sh", "-c", "read x"], stdin=PIPE)
        stdin = writer(child.stdin)
        stdin.write(b"first\n" + b"y" * (4 * 1024 * 1024))
        with pytest.raises(BrokenPipeError):
            await stdin.drain()
        assert await child.wait() == 0

    run(main)


def test_child_closes_stdout_early_but_keeps_running(run: Runner[Any]) -> None:
    async def main() -> tuple[bytes, int | None, int]:
        child = await open_process(
            ["sh", "-c", "echo bye; exec >&-; read x; exit 4"], stdin=PIPE, stdout=PIPE
        )
        out = await reader(child.stdout).read()  # EOF while the child runs on
        running = child.returncode
        writer(child.stdin).write(b"go\n")
        return out, running, await child.wait()

    assert run(main) == (b"bye\n", None, 4)


def test_grandchild_holding_pipe_after_exit_and_group_kill(run: Runner[Any]) -> None:
    async def main() -> tuple[int, bool, bytes]:
        # The child exits at once; its grandchild keeps stdout open.
        child = await open_process(["sh", "-c", "sleep 300 & echo started"], stdout=PIPE)
        stdout = reader(child.stdout)
        assert await stdout.readline() == b"started\n"
        status = await child.wait()  # does not depend on the pipe
        read_rest = asyncio.ensure_future(stdout.read())
        await asyncio.sleep(0.05)
        pending = not read_rest.done()
        await kill_child_process_group(child)  # the leftover group
        rest = await asyncio.wait_for(read_rest, 10)
        return status, pending, rest

    assert run(main) == (0, True, b"")


def test_grandchild_holding_pipe_while_child_killed(run: Runner[Any]) -> None:
    async def main() -> tuple[int, bytes]:
        child, _ = await spawn_with_grandchild()
        status = await child.kill()
        rest = await asyncio.wait_for(reader(child.stdout).read(), 10)
        return status, rest

    assert run(main) == (-signal.SIGKILL, b"")


def test_blocking_files_outside_a_loop() -> None:
    child = spawn(["sh", "-c", "read x; echo got-$x"], stdin=PIPE, stdout=PIPE)
    with child:
        assert child.stdin is not None
        assert child.stdout is not None
        assert not isinstance(child.stdout, ChildStreamReader)
        child.stdin.write(b"it\n")
        child.stdin.close()
        assert child.stdout.read() == b"got-it\n"
        assert child.wait_blocking(timeout=10) == 0


def test_spawn_gives_blocking_files_inside_a_loop_too(run: Runner[Any]) -> None:
    # Issue 14 item 1: no type that depends on whether a loop is running.
    async def main() -> bytes:
        with spawn(["sh", "-c", "read x; echo got-$x"], stdin=PIPE, stdout=PIPE) as child:
            assert child.stdin is not None
            assert child.stdout is not None
            assert not isinstance(child.stdout, ChildStreamReader)
            child.stdin.write(b"it\n")
            child.stdin.close()
            out = child.stdout.read()
            assert child.wait_blocking(timeout=10) == 0
            return out

    assert run(main) == b"got-it\n"


def test_no_fd_leak_across_many_piped_children(run: Runner[Any]) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd" if sys.platform.startswith("linux") else "/dev/fd"))

    async def main() -> None:
        for _ in range(30):
            child = await open_process(["echo", "x"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
            assert await reader(child.stdout).read() == b"x\n"
            await child.wait()
            child.close()

    before = open_fds()
    run(main)
    assert open_fds() <= before + 2  # the loop's own fds are closed by then too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts pidfds in /proc")
def test_wait_cancelled_by_closed_loop_does_not_leak_pidfd(exit_path: str) -> None:
    before = count_pidfds()
    child = spawn(["sh", "-c", "read x"], stdin=PIPE)

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await child.wait(timeout=0.05)

    asyncio.run(give_up())  # closes its loop with our watch still registered
    assert child.returncode is None
    child.close()
    assert child.returncode == -signal.SIGKILL
    assert count_pidfds() == before
