"""Per-OS exit notification for child processes, behind one function.

:func:`exit_notifier` returns an :class:`ExitNotifier` for a freshly spawned
child. It only says *that* the child exited; the ``Child`` handle reaps it
itself (``wait4`` under its lock), so reaping happens exactly once.

- Linux: the child's pidfd (from ``clone(CLONE_PIDFD)``): blocking waits
  ``poll`` it, event loops watch it with ``loop.add_reader``. No threads.
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
    "pidfd_enabled",
    "set_pidfd_enabled",
    "wants_pidfd",
]

DISABLE_PIDFD_ENV = "ORCHESTRATOR_SPAWN_DISABLE_PIDFD"

_pidfd_enabled = os.environ.get(DISABLE_PIDFD_ENV, "") in ("", "0")


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

    def close(self) -> None:
        """Releases the OS resources once no wait or watch uses them any more."""


def pidfd_enabled() -> bool:
    """Whether new children get the pidfd (Linux) fast path."""
    return _pidfd_enabled


def set_pidfd_enabled(enabled: bool) -> None:
    """Turns the pidfd fast path on or off for children spawned afterwards."""
    global _pidfd_enabled
    _pidfd_enabled = enabled


def wants_pidfd() -> bool:
    """Whether the spawn core should ask the kernel for a pidfd."""
    return sys.platform.startswith("linux") and _pidfd_enabled


def exit_notifier(pid: int, pidfd: int) -> ExitNotifier:
    """The exit notifier for child ``pid``; takes ownership of ``pidfd`` (-1: none)."""
    if pidfd >= 0:
        return PidfdExit(pidfd)
    if sys.platform == "darwin":
        from orchestrator_spawn._platform.kqueue import KqueueExit

        return KqueueExit(pid)
    from orchestrator_spawn._platform.sigchld import SigchldExit

    return SigchldExit(pid)


# Imported last: pidfd.py is plain Python with no platform dependency, and the
# hot path above should not run the import machinery on every spawn.
from orchestrator_spawn._platform.pidfd import PidfdExit  # noqa: E402
