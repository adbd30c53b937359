"""Linux: exit notification through the child's pidfd (readable once it exits)."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import threading
from collections.abc import Callable

import anyio

from orchestrator_spawn._native.spawn import park_fd

__all__ = ["PidfdExit"]

_HAVE_WAITID_PIDFD = hasattr(os, "P_PIDFD")


class PidfdExit:
    """Owns one pidfd, opened lazily. The fd is closed only when no
    ``wait``/``watch`` uses it, so a concurrent ``close`` can never make a
    waiter poll a reused fd number.

    The pidfd is not made at spawn time: opening and closing one costs a few
    microseconds per child, and a plain ``wait_blocking()`` does not need it
    (see :meth:`can_wait_by_pid`). :meth:`prepare` opens it; the ``Child``
    calls it under its lock while the process is still unreaped, so the pid
    cannot have been recycled and the pidfd names our child."""

    def __init__(self, pid: int, pidfd: int = -1) -> None:
        self._pid = pid
        self._fd = pidfd
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._watched: set[asyncio.AbstractEventLoop] | None = None

    def prepare(self) -> None:
        """Opens the pidfd if it is not open yet. Call only while the child is
        unreaped (the Child does, under its lock). Raises ``OSError`` if
        ``pidfd_open`` fails (out of fds, say)."""
        with self._lock:
            if self._fd < 0 and not self._closing:
                self._fd = park_fd(os.pidfd_open(self._pid))

    def can_wait_by_pid(self) -> bool:
        """True while no pidfd was opened: a blocking wait may then sleep in
        ``waitid(P_PID, pid, WNOWAIT)`` instead (the Child makes sure nobody
        reaps meanwhile, so the pid cannot be recycled under it)."""
        return self._fd < 0 and not self._closing

    def _acquire(self) -> int:
        with self._lock:
            if self._fd < 0:
                return -1
            self._users += 1
            return self._fd

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self._closing and self._users == 0 and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def wait(self, timeout: float | None) -> bool:
        # _acquire inlined: this runs once per blocking wait.
        with self._lock:
            fd = self._fd
            if fd < 0:
                return True  # closed only after the child was reaped
            self._users += 1
        try:
            if timeout is None and _HAVE_WAITID_PIDFD:
                # One blocking call, no poll object; WNOWAIT leaves the
                # reaping to the Child, and a pidfd cannot name a recycled pid.
                try:
                    os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOWAIT)
                    return True
                except OSError as err:
                    if err.errno != errno.EINVAL:  # EINVAL: kernel < 5.4
                        raise
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            # poll() takes milliseconds; round up so we never return early.
            millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
            return bool(poller.poll(millis))
        except ChildProcessError:
            return True  # already reaped by another thread
        finally:
            self._release()

    def watch(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        # Loops in different threads may watch at once: the set of watching
        # loops is created and changed under the lock (a watch lost to a
        # racing creation would never be released, keeping the pidfd open).
        with self._lock:
            fd = self._fd
            if fd >= 0:
                self._users += 1
                if self._watched is None:
                    self._watched = set()
                self._watched.add(loop)
        if fd < 0:
            loop.call_soon(callback)
            return
        loop.add_reader(fd, callback)

    async def wait_async(self) -> None:
        fd = self._acquire()
        if fd < 0:
            return  # closed only after the child was reaped
        try:
            await anyio.wait_readable(fd)
        finally:
            self._release()

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._watched is None or loop not in self._watched:
                return
            self._watched.discard(loop)
            fd = self._fd  # still open: this watch holds a use of it
        if not loop.is_closed():
            loop.remove_reader(fd)
        self._release()

    def close(self) -> None:
        if self._fd < 0:
            # Never opened (the common blocking case): nothing to release, and
            # no prepare() can race, it runs only before the Child reaped.
            self._closing = True
            return
        with self._lock:
            self._closing = True
            self._close_if_unused()
