"""macOS: exit notification through kqueue ``EVFILT_PROC``/``NOTE_EXIT``.

Blocking waits use a short-lived kqueue; each event loop watching the child
gets a kqueue of its own whose fd the loop polls (a kqueue fd is pollable).
"""

from __future__ import annotations

import asyncio
import select
import sys
from collections.abc import Callable

import anyio

from orchestrator_spawn._platform import ExitNotifier

# mypy checks this module only when it checks for macOS.
assert sys.platform == "darwin"

__all__ = ["KqueueExit"]


def _exit_queue(pid: int) -> select.kqueue | None:
    """A kqueue that becomes readable when ``pid`` exits, or None if it already has."""
    queue = select.kqueue()
    event = select.kevent(
        pid,
        filter=select.KQ_FILTER_PROC,
        flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
        fflags=select.KQ_NOTE_EXIT,
    )
    try:
        queue.control([event], 0)
    except ProcessLookupError:
        # Already a zombie: the kernel refuses the registration.
        queue.close()
        return None
    return queue


class KqueueExit(ExitNotifier):
    """Exit notification for one child through kqueue."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._watched: dict[asyncio.AbstractEventLoop, select.kqueue] = {}

    def wait(self, timeout: float | None) -> bool:
        queue = _exit_queue(self._pid)
        if queue is None:
            return True
        try:
            return bool(queue.control(None, 1, timeout))
        finally:
            queue.close()

    def watch(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        queue = _exit_queue(self._pid)
        if queue is None:
            loop.call_soon(callback)
            return
        self._watched[loop] = queue
        loop.add_reader(queue.fileno(), callback)

    async def wait_async(self) -> None:
        queue = _exit_queue(self._pid)
        if queue is None:
            return
        try:
            await anyio.wait_readable(queue.fileno())
        finally:
            queue.close()

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._watched.pop(loop, None)
        if queue is None:
            return
        if not loop.is_closed():
            loop.remove_reader(queue.fileno())
        queue.close()

    def close(self) -> None:
        pass  # each kqueue is closed by its unwatch / wait
