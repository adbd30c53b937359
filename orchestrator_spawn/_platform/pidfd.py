"""Linux: exit notification through the child's pidfd (readable once it exits)."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import threading
from collections.abc import Callable

__all__ = ["PidfdExit"]

_HAVE_WAITID_PIDFD = hasattr(os, "P_PIDFD")


class PidfdExit:
    """Owns one pidfd. The fd is closed only when no ``wait``/``watch`` uses it,
    so a concurrent ``close`` can never make a waiter poll a reused fd number."""

    def __init__(self, pidfd: int) -> None:
        self._fd = pidfd
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._watched: set[asyncio.AbstractEventLoop] = set()

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
        fd = self._acquire()
        if fd < 0:
            return True  # closed only after the child was reaped
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
        fd = self._acquire()
        if fd < 0:
            loop.call_soon(callback)
            return
        self._watched.add(loop)
        loop.add_reader(fd, callback)

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop not in self._watched:
            return
        self._watched.discard(loop)
        if not loop.is_closed():
            loop.remove_reader(self._fd)
        self._release()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._close_if_unused()
