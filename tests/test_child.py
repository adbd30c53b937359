"""The blocking half of the Child handle (CONTRACT §2), each test run twice:
once on the pidfd/kqueue fast path and once through the SIGCHLD reaper."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time

import pytest

from orchestrator_spawn import PIPE, Child, spawn
from tests.helpers.processes import count_pidfds, reaped, wait_gone

# The grandchild prints its pid and sleeps; the child waits for it.
WITH_GRANDCHILD = "sleep 300 & echo $!; wait"


# Every test runs with the pidfd fast path on and off (conftest.exit_path).
pytestmark = pytest.mark.usefixtures("exit_path")


def _start_and_join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def spawn_with_grandchild() -> tuple[Child, int]:
    child = spawn(["sh", "-c", WITH_GRANDCHILD], stdout=PIPE)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    return child, grandchild


def test_wait_blocking_returns_status() -> None:
    child = spawn(["sh", "-c", "exit 3"])
    assert child.wait_blocking() == 3
    assert child.wait_blocking() == 3  # idempotent
    assert reaped(child.pid)


def test_wait_blocking_timeout() -> None:
    with spawn(["sleep", "30"]) as child:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            child.wait_blocking(timeout=0.2)
        assert time.monotonic() - started >= 0.2
        assert child.returncode is None
    assert child.returncode == -signal.SIGKILL


def test_wait_blocking_does_not_spin() -> None:
    with spawn(["sleep", "30"]) as child:
        before = time.process_time()
        with pytest.raises(TimeoutError):
            child.wait_blocking(timeout=0.5)
        # A spinning wait would burn about 0.5 s of CPU.
        assert time.process_time() - before < 0.1


def test_try_wait_never_blocks() -> None:
    child = spawn(["sleep", "30"])
    try:
        assert child.try_wait() is None
        assert child.returncode is None
    finally:
        child.start_kill()
    assert child.wait_blocking(timeout=10) == -signal.SIGKILL
    assert child.try_wait() == -signal.SIGKILL


def test_racing_waiters_reap_once() -> None:
    for _ in range(5):
        child = spawn(["sh", "-c", "sleep 0.05; exit 9"])
        results: list[int | None] = []

        def waiter(c: Child = child, out: list[int | None] = results) -> None:
            out.append(c.wait_blocking(timeout=30))  # list.append is atomic

        def poller(c: Child = child, out: list[int | None] = results) -> None:
            while c.try_wait() is None:
                time.sleep(0.001)
            out.append(c.try_wait())

        threads = [threading.Thread(target=waiter) for _ in range(4)]
        threads += [threading.Thread(target=poller) for _ in range(4)]
        _start_and_join(threads)
        assert results == [9] * 8
        assert reaped(child.pid)


def test_send_signal_reaches_group() -> None:
    child, grandchild = spawn_with_grandchild()
    with child:
        child.send_signal(signal.SIGTERM)
        assert child.wait_blocking(timeout=10) == -signal.SIGTERM
    assert wait_gone(grandchild)


def test_send_signal_to_leader_only() -> None:
    child, grandchild = spawn_with_grandchild()
    try:
        child.send_signal(signal.SIGKILL, group=False)
        assert child.wait_blocking(timeout=10) == -signal.SIGKILL
        assert not wait_gone(grandchild, timeout=0.2)
    finally:
        os.kill(grandchild, signal.SIGKILL)
        assert wait_gone(grandchild)
        child.close()


def test_start_kill_kills_group() -> None:
    child, grandchild = spawn_with_grandchild()
    child.start_kill()
    assert child.wait_blocking(timeout=10) == -signal.SIGKILL
    assert wait_gone(grandchild)
    child.close()


def test_signal_after_reap_is_a_no_op() -> None:
    child = spawn(["true"])
    assert child.wait_blocking(timeout=10) == 0
    child.send_signal(signal.SIGKILL)  # must not signal a recycled pid
    child.start_kill()
    assert child.returncode == 0


def test_with_block_kills_group_and_reaps() -> None:
    child, grandchild = spawn_with_grandchild()
    with child:
        assert child.returncode is None
    assert child.returncode == -signal.SIGKILL
    assert reaped(child.pid)
    assert wait_gone(grandchild)


def test_close_is_idempotent_and_keeps_status() -> None:
    child = spawn(["sh", "-c", "exit 5"])
    child.wait_blocking(timeout=10)
    child.close()
    child.close()
    assert child.returncode == 5


def test_close_does_not_kill_group_of_exited_child() -> None:
    # The leader exits on its own; its background grandchild must survive close().
    child = spawn(["sh", "-c", "sleep 300 & echo $!"], stdout=PIPE)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        assert child.wait_blocking(timeout=10) == 0
        child.close()
        assert not wait_gone(grandchild, timeout=0.2)
    finally:
        os.kill(grandchild, signal.SIGKILL)
        wait_gone(grandchild)


def test_garbage_collection_kills_and_reaps() -> None:
    child, grandchild = spawn_with_grandchild()
    pid = child.pid
    assert child.stdout is not None
    child.stdout.close()
    del child
    gc.collect()
    assert reaped(pid)
    assert wait_gone(grandchild)


def test_repr_states() -> None:
    child = spawn(["sleep", "30"])
    assert repr(child) == f"<Child 'sleep': running with PID {child.pid}>"
    child.start_kill()
    child.wait_blocking(timeout=10)
    assert repr(child) == "<Child 'sleep': exited with signal 9>"
    ok = spawn(["sh", "-c", "exit 4"])
    ok.wait_blocking(timeout=10)
    assert repr(ok) == "<Child 'sh': exited with status 4>"


def test_rusage_after_exit() -> None:
    busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"
    child = spawn(["sh", "-c", busy])
    assert child.rusage is None
    assert child.wait_blocking(timeout=60) == 0
    usage = child.rusage
    assert usage is not None
    assert usage.user_seconds + usage.system_seconds > 0.01
    assert usage.max_rss_bytes > 100 * 1024


def test_many_children_waited_from_one_thread(exit_path: str) -> None:
    threads_before = threading.active_count()
    children = [spawn(["sh", "-c", f"exit {i % 5}"]) for i in range(100)]
    assert [c.wait_blocking(timeout=60) for c in children] == [i % 5 for i in range(100)]
    # The fast path needs no thread; the fallback one reaper for the process.
    assert threading.active_count() - threads_before <= (0 if exit_path == "fast" else 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd is Linux only")
def test_fast_path_uses_pidfd(exit_path: str) -> None:
    before = count_pidfds()
    with spawn(["sleep", "30"]) as child:
        # Opened on first need (a timed wait here), not at spawn time.
        assert count_pidfds() == before
        with pytest.raises(TimeoutError):
            child.wait_blocking(timeout=0.01)
        assert count_pidfds() - before == (1 if exit_path == "fast" else 0)
    assert count_pidfds() == before


def test_blocking_waiters_pollers_and_a_timed_waiter_race() -> None:
    # Untimed waiters sleep by pid (no pidfd) on the fast path; pollers and
    # the timed waiter must not reap under them, and must still see the status.
    for _ in range(5):
        child = spawn(["sh", "-c", "sleep 0.05; exit 7"])
        results: list[int | None] = []

        def waiter(c: Child = child, out: list[int | None] = results) -> None:
            out.append(c.wait_blocking())

        def timed(c: Child = child, out: list[int | None] = results) -> None:
            out.append(c.wait_blocking(timeout=30))

        def poller(c: Child = child, out: list[int | None] = results) -> None:
            while c.try_wait() is None:
                time.sleep(0.001)
            out.append(c.returncode)

        threads = [threading.Thread(target=waiter) for _ in range(3)]
        threads += [threading.Thread(target=timed), threading.Thread(target=poller)]
        _start_and_join(threads)
        assert results == [7] * 5
        assert reaped(child.pid)
        assert child.rusage is not None


def test_untimed_wait_does_not_spin_and_kill_from_another_thread() -> None:
    with spawn(["sleep", "30"]) as child:
        result: list[int] = []
        waiter = threading.Thread(target=lambda: result.append(child.wait_blocking()))
        before = time.process_time()
        waiter.start()
        time.sleep(0.3)
        assert child.try_wait() is None
        # Signalling is safe while the other thread sleeps: nobody reaped yet.
        child.start_kill()
        waiter.join(timeout=30)
        assert time.process_time() - before < 0.15
        assert result == [-signal.SIGKILL]
        assert child.returncode == -signal.SIGKILL


def test_async_waiter_while_a_thread_waits_by_pid() -> None:
    import asyncio

    child = spawn(["sh", "-c", "sleep 0.2; exit 5"])
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(child.wait_blocking()))
    waiter.start()
    time.sleep(0.05)  # let the thread sleep in waitid first

    async def main() -> tuple[int, float]:
        before = time.process_time()
        status = await asyncio.wait_for(child.wait(), 30)
        return status, time.process_time() - before

    status, cpu = asyncio.run(main())
    waiter.join(timeout=30)
    assert status == 5
    assert result == [5]
    assert cpu < 0.15  # the readable pidfd did not make the loop spin
    assert reaped(child.pid)


def test_usable_in_a_forked_child(exit_path: str) -> None:
    # Warm up the notifier machinery (starts the reaper in fallback mode) ...
    spawn(["true"]).wait_blocking(timeout=10)
    pid = os.fork()
    if pid == 0:  # ... then spawn and wait from a forked copy of this process.
        try:
            status = spawn(["sh", "-c", "exit 3"]).wait_blocking(timeout=20)
            os._exit(0 if status == 3 else 1)
        except BaseException:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_threads_waiting_many_children(exit_path: str) -> None:
    # Several threads spawn and wait at once, on either exit path.
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(25):
                child = spawn(["sh", "-c", f"exit {(seed + i) % 11}"])
                if i % 2:
                    assert child.wait_blocking(timeout=60) == (seed + i) % 11
                else:
                    while child.try_wait() is None:
                        time.sleep(0.001)
                    assert child.returncode == (seed + i) % 11
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


def test_signal_handler_runs_and_may_raise_during_wait_blocking() -> None:
    # A signal interrupting the sleep runs the Python handler; if it raises,
    # the exception leaves wait_blocking and the child can still be waited.
    calls: list[int] = []

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)
        if len(calls) == 2:
            signal.setitimer(signal.ITIMER_REAL, 0)  # no third call
            raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    child = spawn(["sleep", "0.6"])
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
        with pytest.raises(Interrupted):
            child.wait_blocking()
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert calls == [signal.SIGALRM, signal.SIGALRM]
        assert child.returncode is None  # not reaped, still ours
        assert child.wait_blocking(timeout=30) == 0
        usage = child.rusage
        assert usage is not None
        assert usage.max_rss_bytes > 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        child.close()


def test_reaped_callbacks_run_once_whoever_reaps() -> None:
    # The internal hook the runner releases a sandbox with: run by the thread
    # that reaps (blocking wait, try_wait or an event loop), exactly once, at
    # once when already reaped; a failing callback does not stop the others.
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("ignored")

    blocking = spawn(["true"])
    blocking._call_when_reaped(failing)
    blocking._call_when_reaped(lambda: calls.append("blocking"))
    assert blocking.wait_blocking(timeout=30) == 0
    assert calls == ["failing", "blocking"]
    blocking._call_when_reaped(lambda: calls.append("late"))
    assert calls == ["failing", "blocking", "late"]
    blocking.wait_blocking()
    assert calls == ["failing", "blocking", "late"]

    async def awaited() -> int:
        child = spawn(["true"])
        child._call_when_reaped(lambda: calls.append("async"))
        return await child.wait()

    assert asyncio.run(awaited()) == 0
    assert calls[-1] == "async"

    polled = spawn(["true"])
    polled._call_when_reaped(lambda: calls.append("polled"))
    while polled.try_wait() is None:
        time.sleep(0.01)
    assert calls.count("polled") == 1
