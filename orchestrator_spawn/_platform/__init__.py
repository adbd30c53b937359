"""Per-OS exit notification for child processes, behind one function.

:func:`exit_notifier` returns an :class:`ExitNotifier` for a freshly spawned
child, and :func:`pidfd_at_spawn` tells the spawn whether to ask clone() for
a pidfd: the callers (``spawn.py``, ``child.py``) never see which mechanism
is behind them. It only says *that* the child exited; the ``Child`` handle reaps it
itself (``wait4`` under its lock), so reaping happens exactly once.

- Linux: the child's pidfd, opened with ``pidfd_open`` when a timed wait or
  an event loop first needs it (``clone(CLONE_PIDFD)`` on kernels without
  ``pidfd_open``): blocking waits ``poll`` it, event loops watch it with
  ``loop.add_reader``. A plain blocking wait needs no pidfd at all: it sleeps
  in ``waitid(P_PID, pid, WNOWAIT)`` while the Child keeps other reapers off.
  No threads. Other backends than asyncio (trio) wait for the same fd to
  become readable through anyio (``wait_async``).
- macOS: a kqueue per child with ``EVFILT_PROC``/``NOTE_EXIT``, used the same
  way. No threads.
- Fallback (kernels without pidfd, or the fast path disabled): ONE reaper
  thread for the whole process, woken by a SIGCHLD handler through a pipe,
  checks the registered children with ``waitid(WNOHANG | WNOWAIT)`` and
  notifies their waiters. Never a thread per child. It installs a C-level
  SIGCHLD handler that chains to the previous one; a later
  ``signal.signal(SIGCHLD, ...)`` by the application replaces it and stalls
  the fallback (the pidfd and kqueue paths do not use signals at all).

The fast path can be disabled, for tests or to work around a kernel, with the
environment variable ``ORCHESTRATOR_SPAWN_DISABLE_PIDFD=1`` (read at import)
or :func:`set_pidfd_enabled` (affects children spawned afterwards).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "DISABLE_PIDFD_ENV",
    "ExitNotifier",
    "exit_notifier",
    "pidfd_at_spawn",
    "pidfd_enabled",
    "set_pidfd_enabled",
    "wants_pidfd",
]

DISABLE_PIDFD_ENV = "ORCHESTRATOR_SPAWN_DISABLE_PIDFD"

_pidfd_enabled = os.environ.get(DISABLE_PIDFD_ENV, "") in ("", "0")


def _probe_pidfd_open() -> bool:
    # pidfd_open (Linux 5.3) on ourselves: the one probe, at import.
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


_HAVE_PIDFD_OPEN = _probe_pidfd_open()
# Read by spawn() on every call: children get a lazily opened pidfd.
lazy_pidfd = _HAVE_PIDFD_OPEN and _pidfd_enabled


class ExitNotifier(Protocol):
    """Tells when one child process has exited (it does not reap it)."""

    def wait(self, timeout: float | None) -> bool:
        """Blocks until the child exited (True) or ``timeout`` seconds passed
        (False). Does not spin. ``None`` waits forever."""

    def watch(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Calls ``callback`` in ``loop``'s thread once the child has exited.
        Must be called from ``loop``'s thread; at most one watch per loop."""

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drops the watch of ``loop`` (from ``loop``'s thread). Idempotent."""

    async def wait_async(self) -> None:
        """Sleeps in the running event loop, whatever its backend (anyio:
        asyncio, uvloop, trio), until the child may have exited. One task per
        child and event loop at a time (the Child sees to it); cancellable."""

    def close(self) -> None:
        """Releases the OS resources once no wait or watch uses them any more."""

    # The two below have defaults for the backends that open nothing lazily
    # (kqueue, the SIGCHLD thread subclass this protocol and keep them).

    def prepare(self) -> None:
        """Opens what ``wait``/``watch`` need if it was left for later (the
        Linux pidfd). Called by the Child under its lock while the child is
        unreaped; raises ``OSError`` if that fails. By default: nothing."""
        return

    def can_wait_by_pid(self) -> bool:
        """Whether a blocking wait may sleep in ``waitid(P_PID, pid, WEXITED |
        WNOWAIT)`` instead of ``wait(None)`` (saves opening the pidfd). The
        caller must keep every other reaper off the child meanwhile. By
        default: no."""
        return False


def pidfd_enabled() -> bool:
    """Whether new children get the pidfd (Linux) fast path."""
    return _pidfd_enabled


def set_pidfd_enabled(enabled: bool) -> None:
    """Turns the pidfd fast path on or off for children spawned afterwards."""
    global _pidfd_enabled, lazy_pidfd
    _pidfd_enabled = enabled
    lazy_pidfd = _HAVE_PIDFD_OPEN and enabled


def wants_pidfd() -> bool:
    """Whether the spawn core should ask the kernel for a pidfd at clone time.

    False on kernels with ``pidfd_open``: the notifier opens one when (and
    only if) a wait needs it."""
    return sys.platform.startswith("linux") and _pidfd_enabled and not _HAVE_PIDFD_OPEN


# The C-accelerated, exception-free form of asyncio.get_running_loop().
_get_running_loop = asyncio._get_running_loop


def pidfd_at_spawn(async_streams: bool) -> bool:
    """Whether the spawn should ask the kernel for the child's pidfd at clone
    time (then handed to :func:`exit_notifier`).

    With ``pidfd_open``: only where the child will most likely be awaited,
    which needs a pidfd (inside a running event loop, or for async streams):
    one made by clone() costs less than a ``pidfd_open()`` later (the more so
    once the child is a zombie); elsewhere the notifier opens one if a wait
    ever needs it. Without ``pidfd_open``: always, where the fast path is on
    (:func:`wants_pidfd`)."""
    if lazy_pidfd:
        return async_streams or _get_running_loop() is not None
    return wants_pidfd()


def exit_notifier(pid: int, pidfd: int) -> ExitNotifier:
    """The exit notifier for child ``pid``; takes ownership of ``pidfd`` (-1:
    none, and on Linux one is opened when first needed)."""
    if pidfd >= 0 or lazy_pidfd:
        return PidfdExit(pid, pidfd)
    if sys.platform == "darwin":
        from orchestrator_spawn._platform.kqueue import KqueueExit

        return KqueueExit(pid)
    from orchestrator_spawn._platform.sigchld import SigchldExit

    return SigchldExit(pid)


# Imported last: pidfd.py is plain Python with no platform dependency, and the
# hot path above should not run the import machinery on every spawn.
from orchestrator_spawn._platform.pidfd import PidfdExit  # noqa: E402
