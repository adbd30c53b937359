"""The few event-loop facts the async API needs, for every backend.

asyncio (uvloop included) is detected with ``asyncio._get_running_loop()``,
a C call: the hot paths (``await child.wait()``) keep a plain asyncio future
there. Anything else, trio first of all, goes through anyio, which is also
used for what must behave the same everywhere: shielding the clean-up that
follows a cancellation.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import anyio

__all__ = [
    "asyncio_loop",
    "finish_shielded",
    "in_event_loop",
    "is_cancellation",
]

#: The running asyncio loop of this thread, or None (C speed, no exception).
asyncio_loop = asyncio._get_running_loop


def in_event_loop() -> bool:
    """Whether this thread runs an asyncio loop or a trio run right now."""
    if asyncio_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        return bool(trio.lowlevel.in_trio_run())
    except AttributeError:  # pragma: no cover - trio < 0.22
        return False


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the running backend's cancellation (asyncio's
    ``CancelledError``, trio's ``Cancelled``)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    try:
        return isinstance(exc, anyio.get_cancelled_exc_class())
    except Exception:  # no async backend running
        return False


async def finish_shielded(cleanup: Callable[[], Awaitable[object]]) -> None:
    """Runs ``await cleanup()`` to its end even if the caller is cancelled
    again meanwhile (a kill's reap after a cancellation, say).

    Under asyncio it runs in a task of its own that further ``cancel()``
    calls do not reach (``asyncio.shield``, retried); elsewhere in a
    shielded anyio cancel scope."""
    if asyncio_loop() is None:
        with anyio.CancelScope(shield=True):
            await cleanup()
        return

    async def run() -> None:
        await cleanup()

    task = asyncio.ensure_future(run())
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
    task.result()
