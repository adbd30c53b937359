"""asyncio streams over the parent's ends of a child's pipes.

``spawn()`` is a plain function, so it cannot ``await loop.connect_read_pipe``;
these classes instead watch the (non-blocking) fd with ``loop.add_reader`` /
``loop.add_writer``, which every loop implements (uvloop included).

- :class:`PipeStreamReader` IS an ``asyncio.StreamReader`` (``read``,
  ``readline``, ``readexactly``, ``readuntil``, ``async for``), fed from the
  pipe with flow control, plus ``close()``.
- :class:`PipeStreamWriter` has the ``asyncio.StreamWriter`` surface (``write``,
  ``writelines``, ``drain``, ``close``, ``is_closing``, ``wait_closed``,
  ``write_eof``, ``can_write_eof``, ``get_extra_info``). Writing after the
  child closed its end raises ``BrokenPipeError`` from ``write`` or ``drain``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["PipeStreamReader", "PipeStreamWriter"]

_READ_SIZE = 256 * 1024
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _ReaderTransport(asyncio.ReadTransport):
    """The two calls ``StreamReader`` makes for flow control."""

    def __init__(self, reader: PipeStreamReader) -> None:
        super().__init__()
        self._reader = reader

    def pause_reading(self) -> None:
        self._reader._pause()

    def resume_reading(self) -> None:
        self._reader._resume()

    def is_reading(self) -> bool:
        return self._reader._reading

    def close(self) -> None:
        self._reader.close()

    def is_closing(self) -> bool:
        return self._reader._pipe_fd < 0


class PipeStreamReader(asyncio.StreamReader):
    """An ``asyncio.StreamReader`` reading the parent's end of a pipe."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._pipe_loop = loop
        self._pipe_fd = fd
        self._reading = False
        os.set_blocking(fd, False)
        self.set_transport(_ReaderTransport(self))
        self._resume()

    def fileno(self) -> int:
        """The parent's end of the pipe (-1 once closed)."""
        return self._pipe_fd

    def _pause(self) -> None:
        if self._reading and self._pipe_fd >= 0:
            self._pipe_loop.remove_reader(self._pipe_fd)
        self._reading = False

    def _resume(self) -> None:
        if not self._reading and self._pipe_fd >= 0 and not self.at_eof():
            self._pipe_loop.add_reader(self._pipe_fd, self._on_readable)
            self._reading = True

    def _on_readable(self) -> None:
        try:
            data = os.read(self._pipe_fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._pause()
            self.set_exception(exc)
            return
        if data:
            self.feed_data(data)
        else:
            self._pause()
            self.feed_eof()

    def close(self) -> None:
        """Stops reading and closes the fd; pending reads see EOF. Idempotent."""
        if self._pipe_fd < 0:
            return
        loop = self._pipe_loop
        if not _in_loop_thread(loop) and loop.is_running():
            loop.call_soon_threadsafe(self.close)
            return
        if not loop.is_closed():
            self._pause()
        os.close(self._pipe_fd)
        self._pipe_fd = -1
        self._reading = False
        if not self.at_eof():
            self.feed_eof()

    def __del__(self) -> None:
        # Only reached once no loop holds our reader callback any more.
        fd = getattr(self, "_pipe_fd", -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class PipeStreamWriter:
    """An ``asyncio.StreamWriter``-compatible writer to the child's stdin pipe."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fd = fd
        self._buffer = bytearray()
        self._writing = False
        self._closing = False
        self._error: OSError | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        """The parent's end of the pipe (-1 once closed)."""
        return self._fd

    def _broken(self) -> OSError:
        assert self._error is not None
        return type(self._error)(self._error.errno, self._error.strerror)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queues ``data``; writes what the pipe takes at once. Raises
        ``BrokenPipeError`` if the child's end is closed, ``RuntimeError``
        after ``close()``."""
        if self._error is not None:
            raise self._broken()
        if self._closing:
            raise RuntimeError("write() after close() of the child's stdin")
        if not data:
            return
        if not self._buffer:
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._fail(exc)
                raise self._broken() from exc
            data = memoryview(data)[written:]
            if not data:
                return
        self._buffer += data
        if not self._writing:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writing = True

    def writelines(self, lines: Iterable[bytes]) -> None:
        """Writes each chunk of ``lines`` in order."""
        for line in lines:
            self.write(line)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._fd, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self._buffer[:written]
        if len(self._buffer) <= _LOW_WATER:
            self._wake_drainers()
        if not self._buffer:
            self._stop_writing()
            if self._closing:
                self._close_fd()

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if self._error is not None:
                    waiter.set_exception(self._broken())
                else:
                    waiter.set_result(None)

    def _fail(self, exc: OSError) -> None:
        self._error = exc
        self._buffer.clear()
        self._stop_writing()
        self._wake_drainers()
        if self._closing:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            self._stop_writing()
            os.close(self._fd)
            self._fd = -1
        if not self._closed.done():
            self._closed.set_result(None)

    async def drain(self) -> None:
        """Waits until the queued bytes fall below the low-water mark. Raises
        ``BrokenPipeError`` if the child's end closed."""
        while self._error is None and len(self._buffer) > _HIGH_WATER:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._error is not None:
            raise self._broken()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Closes the pipe once the queued bytes are written (the child sees EOF)."""
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Closes the pipe after the queued bytes are written. Idempotent."""
        if self._closing:
            return
        loop = self._loop
        if not _in_loop_thread(loop) and loop.is_running():
            loop.call_soon_threadsafe(self.close)
            return
        self._closing = True
        if not self._buffer or loop.is_closed():
            if loop.is_closed():
                self._writing = False
            self._close_fd()

    async def wait_closed(self) -> None:
        """Waits until the fd is closed (queued bytes written or the pipe broke)."""
        await asyncio.shield(self._closed)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "pipe":
            return self._fd
        return default

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
