"""Shared state under many threads: what the GIL used to protect implicitly.

On a free-threaded interpreter (3.14t, 3.15t; CI runs this with
``PYTHON_GIL=0``) threads really run at once. On a GIL build the ``contended``
fixture makes the interpreter switch threads every microsecond, so a
check-then-act that is not atomic is interrupted in the middle often enough to
show here too. Each test starts its threads together at a barrier, hits one
shared structure from 16 of them and checks the outcome, not just "no crash".
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from orchestrator_spawn import PIPE, Child, Redactor, redact, spawn
from orchestrator_spawn import pump as pump_module
from orchestrator_spawn.pump import MEMORY, Redaction, start_capture
from orchestrator_spawn.redact import compiled_patterns

THREADS = 16
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

T = TypeVar("T")


@pytest.fixture
def contended() -> Iterator[None]:
    """Switch threads as often as the interpreter allows (GIL builds)."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def all_at_once(work: Callable[[int], T], threads: int = THREADS) -> list[T]:
    """Runs ``work(i)`` in ``threads`` threads released together; returns the
    results in order, re-raising the first exception any thread raised."""
    barrier = threading.Barrier(threads)

    def start(i: int) -> T:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(start, range(threads)))


# ---- the interpreter ---------------------------------------------------------


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded interpreter")
def test_importing_the_package_leaves_the_gil_off() -> None:
    # Without PYTHON_GIL in the environment a free-threaded interpreter turns
    # the GIL back on when it imports an extension that does not declare
    # free-threading support (ours, cffi's backend, pydantic-core, psutil,
    # PyYAML), with a RuntimeWarning. Run in a child so the suite's own
    # PYTHON_GIL=0 cannot hide it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = (
        "import warnings, sys\n"
        "warnings.simplefilter('error', RuntimeWarning)\n"
        "import orchestrator_spawn, orchestrator_spawn.cli, orchestrator_spawn.runner\n"
        "import orchestrator_spawn.sandbox, orchestrator_spawn.pump, psutil, yaml\n"
        "from orchestrator_spawn import _native\n"
        "assert not sys._is_gil_enabled(), 'an import enabled the GIL'\n"
        "print('gil off')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gil off"


# ---- the pattern cache (redact.py), the pump setups ----------------


def test_pattern_caches_compiled_from_many_threads(contended: None) -> None:
    # functools.lru_cache is thread-safe (also without the GIL): concurrent
    # misses may compile a set twice, and each copy is complete and shared
    # read-only. 16 threads compile the same sets and 70 different ones (more
    # than the caches' 64 entries, so entries are evicted while in use), and
    # every redaction must still be right.
    compiled_patterns.cache_clear()
    pump_module._cached_redaction.cache_clear()
    secret = b"hunter2"

    def work(i: int) -> int:
        checked = 0
        for round_ in range(70):
            own = f"own{i}x{round_}".encode()
            patterns = [r"token=\S+", own.decode()]
            data = b"a token=abc b " + own + b" c " + secret
            out = redact(data, patterns, literals=[secret])
            assert out == b"a [REDACTED] b [REDACTED] c [REDACTED]", out
            streaming = Redactor([r"token=\S+"], literals=[secret])
            assert streaming.feed(b"token=x " + secret) + streaming.finish() == (
                b"[REDACTED] [REDACTED]"
            )
            # The pump's shared C-side setup, by list and by Redaction.
            assert pump_module._redaction([r"token=\S+"]) is not None
            assert pump_module._redaction(Redaction(patterns=[own], literals=[secret]))
            checked += 1
        return checked

    assert all_at_once(work) == [70] * THREADS


def test_pump_captures_redacted_from_many_threads(contended: None) -> None:
    # Many threads start captures with the same redaction at once and wait
    # for them, blocking and on event loops of their own (the notifier's
    # registries of running captures, waiters and loops).
    def work(i: int) -> bytes:
        capture = start_capture(PIPE, stdout_sink=MEMORY, redact=[r"secret-\d+"])
        child = spawn(["sh", "-c", f"echo out {i} secret-{i}"], stdout=capture.writer("stdout"))
        capture.close_writers()
        if i % 2:
            asyncio.run(capture.wait())
        else:
            capture.wait_blocking(30)
        assert child.wait_blocking(30) == 0
        return capture.output("stdout")

    assert all_at_once(work) == [f"out {i} [REDACTED]\n".encode() for i in range(THREADS)]


def test_live_output_dropped_by_many_waiters_at_once(contended: None) -> None:
    # Every wait drops the live-output pipes nobody reads. Dropping must be
    # claimed atomically: two threads that both saw "not taken" closed the
    # same fd twice (EBADF, or worse, another thread's fd that got the number
    # in between).
    for _ in range(20):
        capture = start_capture(PIPE, stdout_sink=MEMORY, live=["stdout"])
        child = spawn(["echo", "live"], stdout=capture.writer("stdout"))
        capture.close_writers()
        stats = all_at_once(lambda _i: capture.wait_blocking(30), threads=8)  # noqa: B023
        assert {s.stdout.bytes_read if s.stdout else -1 for s in stats} == {5}
        assert capture.output("stdout") == b"live\n"
        assert child.wait_blocking(30) == 0


# ---- spawning, waiting, the reaper and the pidfds ---------------------------


def test_spawn_and_wait_from_many_threads(exit_path: str, contended: None) -> None:
    # With exit_path == "sigchld" every child goes through the one reaper
    # thread's registry; with "fast" each has a lazily opened pidfd. Blocking
    # waits by pid, timed waits (pidfd/reaper) and polling all at once.
    def work(i: int) -> list[int]:
        codes = []
        for n in range(8):
            child = spawn(["sh", "-c", f"exit {(i + n) % 7}"])
            if n % 3 == 0:
                codes.append(child.wait_blocking())
            elif n % 3 == 1:
                codes.append(child.wait_blocking(timeout=30))
            else:
                while child.try_wait() is None:
                    time.sleep(0.001)
                codes.append(child.wait_blocking())
        return codes

    results = all_at_once(work)
    assert results == [[(i + n) % 7 for n in range(8)] for i in range(THREADS)]


class _YieldingLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``is_closed()`` lets other threads run first, as
    they would at any moment without the GIL: code iterating over loops it
    shares with other threads is interrupted at each step."""

    def is_closed(self) -> bool:
        time.sleep(0)
        return super().is_closed()


def test_one_child_awaited_from_many_event_loops(exit_path: str, contended: None) -> None:
    # 16 threads, each with its own event loop, await the same child: the
    # Child keeps one entry per loop, the notifier one watch per loop (the
    # pidfd's set of watching loops, the reaper's watchers). The thread that
    # reaps looks through every loop's entry while the other loops' threads
    # remove theirs; a watch lost to a race would keep the pidfd open for
    # good, and an exception there would leave waiters waiting forever.
    for _ in range(5):
        child = spawn(["sh", "-c", "cat >/dev/null"], stdin=PIPE)
        go = threading.Barrier(THREADS)
        started = threading.Barrier(THREADS + 1)

        def work(
            _i: int,
            child: Child = child,
            go: threading.Barrier = go,
            started: threading.Barrier = started,
        ) -> int:
            async def wait() -> int:
                go.wait(timeout=30)  # the first watches race each other
                waiting = asyncio.ensure_future(child.wait())
                await asyncio.sleep(0)  # the watch is registered now
                started.wait(timeout=30)
                return await asyncio.wait_for(waiting, 30)

            loop = _YieldingLoop()
            try:
                return loop.run_until_complete(wait())
            finally:
                loop.close()

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            futures = [pool.submit(work, i) for i in range(THREADS)]
            started.wait(timeout=30)
            assert child.stdin is not None
            child.stdin.close()  # EOF: the child exits
            assert [f.result(timeout=60) for f in futures] == [0] * THREADS
        fd = getattr(child._notifier, "_fd", -1)
        assert fd == -1, f"the pidfd {fd} stayed open after every waiter finished"


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
def test_pidfd_watched_from_many_loops_at_once(contended: None) -> None:
    # The pidfd notifier counts its users and closes the fd when the last one
    # is gone. 16 loops (one per thread) start watching a fresh notifier at
    # once, then unwatch, 200 times: every watch must be released by its
    # unwatch, or the fd leaks. (The set of watching loops used to be created
    # unlocked by the first watch: two first watches lost one of them.)
    from orchestrator_spawn._platform.pidfd import PidfdExit

    child = spawn(["sleep", "30"])
    current: list[PidfdExit] = []
    leaked: list[int] = []

    def next_notifier() -> None:  # run by one thread while the others wait
        if current:
            old = current.pop()
            if old._users:
                leaked.append(old._users)
            old.close()
        fresh = PidfdExit(child.pid)
        fresh.prepare()
        current.append(fresh)

    try:
        renew = threading.Barrier(THREADS, action=next_notifier)
        watched = threading.Barrier(THREADS)

        def work(_i: int) -> int:
            loop = asyncio.new_event_loop()
            try:
                for _ in range(200):
                    renew.wait(timeout=30)
                    notifier = current[0]
                    notifier.watch(loop, lambda: None)
                    watched.wait(timeout=30)
                    notifier.unwatch(loop)
            finally:
                loop.close()
            return 0

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            assert list(pool.map(work, range(THREADS))) == [0] * THREADS
        next_notifier()
        assert not leaked, f"watches never released, per round: {leaked}"
    finally:
        for notifier in current:
            notifier.close()
        child.close()


# ---- the sandbox's kernel probe cache ---------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox probe")
def test_kernel_probe_runs_once_for_many_threads(
    contended: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator_spawn.sandbox import linux

    real_probe = linux._probe_all_definite
    runs: list[int] = []

    def counted() -> tuple[linux.LinuxCapabilities, bool]:
        runs.append(threading.get_ident())
        return real_probe()

    monkeypatch.setattr(linux, "_probe_all_definite", counted)
    monkeypatch.setattr(linux, "_probed", None)
    monkeypatch.delenv(linux.DISABLE_ENV, raising=False)
    results = all_at_once(lambda _i: linux.probe_capabilities())
    assert len(runs) == 1, f"the kernel was probed {len(runs)} times"
    assert all(r == results[0] for r in results)
    assert results[0] == linux.probe_capabilities()
