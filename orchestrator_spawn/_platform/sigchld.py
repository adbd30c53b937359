"""Fallback exit notification: ONE SIGCHLD-driven reaper thread per process.

A C-level SIGCHLD handler writes a byte to a pipe; the reaper thread sleeps in
``poll`` on it, and on each wake-up checks every registered child with
``waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`` (which does not reap),
then notifies that child's blocking waiters (a ``threading.Event``) and event
loops (``call_soon_threadsafe``). The ``Child`` reaps. One thread in total, no
matter how many children; it is started on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
from collections.abc import Callable

import anyio

from orchestrator_spawn._native.spawn import install_sigchld_wakeup
from orchestrator_spawn._platform import ExitNotifier

__all__ = ["SigchldExit"]


class _Reaper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, SigchldExit] = {}
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        install_sigchld_wakeup(self._write_fd)
        self._thread = threading.Thread(
            target=self._run, name="orchestrator-spawn-sigchld-reaper", daemon=True
        )
        self._thread.start()

    def register(self, notifier: SigchldExit) -> None:
        with self._lock:
            self._children[notifier.pid] = notifier
        # The child may have exited before it was registered: check now.
        self.poke()

    def unregister(self, notifier: SigchldExit) -> None:
        with self._lock:
            if self._children.get(notifier.pid) is notifier:
                del self._children[notifier.pid]

    def poke(self) -> None:
        # BlockingIOError: a wake-up is already pending.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"p")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        while True:
            poller.poll()
            try:
                while os.read(self._read_fd, 4096):
                    pass
            except BlockingIOError:
                pass
            with self._lock:
                children = list(self._children.values())
            for notifier in children:
                if notifier.check_exited():
                    self.unregister(notifier)


_reaper: _Reaper | None = None
_reaper_lock = threading.Lock()


def _forget_reaper_after_fork() -> None:
    # The reaper thread does not survive os.fork(); the next use in the child
    # starts a new one. The old pipe stays open: the C handler may still write
    # to it until the new reaper re-points it, and a closed (then reused) fd
    # number must never receive those bytes.
    global _reaper, _reaper_lock
    _reaper = None
    _reaper_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_reaper_after_fork)


def _get_reaper() -> _Reaper:
    global _reaper
    with _reaper_lock:
        if _reaper is None:
            _reaper = _Reaper()
        return _reaper


class SigchldExit(ExitNotifier):
    """Exit notification for one child through the shared SIGCHLD reaper."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exited = threading.Event()
        self._lock = threading.Lock()
        self._watchers: dict[asyncio.AbstractEventLoop, Callable[[], None]] = {}
        # Write ends of the pipes that wait_async sleeps on (other backends).
        self._wake_fds: list[int] = []
        _get_reaper().register(self)

    def check_exited(self) -> bool:
        """Called by the reaper thread: has the child exited (or been reaped)?"""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None  # already reaped (by our Child): it has exited
        else:
            if info is None:
                return False
        self._fire()
        return True

    def _fire(self) -> None:
        self._exited.set()
        with self._lock:
            watchers = list(self._watchers.items())
            for fd in self._wake_fds:
                with contextlib.suppress(OSError):
                    os.write(fd, b"x")
        for loop, callback in watchers:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(callback)

    def wait(self, timeout: float | None) -> bool:
        return self._exited.wait(timeout)

    def watch(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        with self._lock:
            self._watchers[loop] = callback
        if self._exited.is_set():
            loop.call_soon(callback)

    async def wait_async(self) -> None:
        # A pipe of its own that the reaper thread writes to: any backend
        # can sleep on an fd.
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        try:
            with self._lock:
                self._wake_fds.append(write_end)
            if not self._exited.is_set():
                await anyio.wait_readable(read_end)
        finally:
            with self._lock:
                self._wake_fds.remove(write_end)
            os.close(read_end)
            os.close(write_end)

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._watchers.pop(loop, None)

    def close(self) -> None:
        # Make sure the reaper forgets us even if the child never exited
        # (cannot happen: Child.close reaps first) or was reaped elsewhere.
        _get_reaper().unregister(self)
        self._fire()
