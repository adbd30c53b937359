"""Async streams over the parent's ends of a child's pipes, for any backend.

``open_process()`` gives these as ``child.stdin``/``stdout``/``stderr``. They
have the methods of asyncio's ``StreamWriter``/``StreamReader`` and work
under asyncio, uvloop and trio alike: the fd is non-blocking, read and
written directly, and a task that must wait sleeps in ``anyio.wait_readable``
/ ``anyio.wait_writable`` (``loop.add_reader`` under asyncio, trio's own
I/O manager under trio). No background task or thread.

- :class:`ChildStreamReader`: ``read``, ``readline``, ``readexactly``,
  ``readuntil``, ``async for line in ...``, ``at_eof``, ``close``. Nothing is
  read before someone asks (as with a blocking pipe), so a child filling a
  pipe nobody reads stops, as under ``subprocess``.
- :class:`ChildStreamWriter`: ``write`` (what the pipe takes at once goes out
  at once, the rest waits for ``drain()``), ``writelines``, ``drain``,
  ``close``, ``is_closing``, ``wait_closed``, ``write_eof``. Writing after the
  child closed its end raises ``BrokenPipeError`` from ``write`` or
  ``drain``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any, final

import anyio

from orchestrator_spawn._aio import asyncio_loop

__all__ = ["ChildStreamReader", "ChildStreamWriter"]

_READ_SIZE = 256 * 1024
_DEFAULT_LIMIT = 2**16
_HIGH_WATER = 64 * 1024


@final
class ChildStreamReader:
    """Reads the parent's end of a child's stdout or stderr pipe.

    The asyncio ``StreamReader`` methods, with the same results and errors
    (``asyncio.IncompleteReadError``, ``asyncio.LimitOverrunError`` for a
    separator not found within ``limit`` bytes). One task reads at a time
    (``RuntimeError`` otherwise, as with asyncio)."""

    __slots__ = ("__weakref__", "_buffer", "_eof", "_fd", "_limit", "_reading")

    def __init__(self, fd: int, limit: int = _DEFAULT_LIMIT) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._buffer = bytearray()
        self._eof = False
        self._limit = limit
        self._reading = False

    def fileno(self) -> int:
        """The parent's end of the pipe (-1 once closed)."""
        return self._fd

    def at_eof(self) -> bool:
        """True once the pipe reached end of file and the buffer is empty."""
        return self._eof and not self._buffer

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd {self._fd}"
        return f"<ChildStreamReader {state}, {len(self._buffer)} bytes buffered>"

    async def _fill(self) -> bool:
        """Reads what the pipe holds into the buffer, waiting for at least one
        byte; False at end of file."""
        if self._eof:
            return False
        if self._reading:
            raise RuntimeError("another task is already reading this stream")
        self._reading = True
        try:
            while True:
                fd = self._fd
                if fd < 0:
                    self._eof = True
                    return False
                try:
                    data = os.read(fd, _READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    await anyio.wait_readable(fd)
                    continue
                if not data:
                    self._eof = True
                    return False
                self._buffer += data
                return True
        finally:
            self._reading = False

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one, unless at end of file: ``b""``);
        ``n < 0`` reads to end of file."""
        if n < 0:
            while await self._fill():
                pass
            return self._take(len(self._buffer))
        if n == 0:
            return b""
        if not self._buffer:
            await self._fill()
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` (with the
        partial bytes) if the pipe ends first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._buffer) < n:
            if not await self._fill():
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, n)
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator``.

        ``asyncio.IncompleteReadError`` if the pipe ends first (the bytes read
        are in its ``.partial``, as with asyncio); ``asyncio.LimitOverrunError``
        if ``limit`` bytes hold no separator (they stay buffered)."""
        if not separator:
            raise ValueError("Separator should be at least one-byte string")
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                end = found + len(separator)
                if found > self._limit:
                    raise asyncio.LimitOverrunError(
                        "Separator is found, but chunk is longer than limit", found
                    )
                return self._take(end)
            if len(self._buffer) > self._limit:
                raise asyncio.LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", len(self._buffer)
                )
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, None)

    async def readline(self) -> bytes:
        """One line, ``b"\\n"`` included; the last one may lack it; ``b""``
        at end of file."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:
            return err.partial
        except asyncio.LimitOverrunError as err:
            if self._buffer.startswith(b"\n", err.consumed):
                del self._buffer[: err.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(err.args[0]) from None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    def close(self) -> None:
        """Closes the fd; later reads see end of file. Idempotent."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self._reading:
            # A task sleeps on this fd: wake it (it then sees end of file).
            with contextlib.suppress(Exception):
                anyio.notify_closing(fd)
        os.close(fd)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


@final
class ChildStreamWriter:
    """Writes to the parent's end of a child's stdin pipe (the asyncio
    ``StreamWriter`` methods).

    ``write()`` never blocks: what the pipe does not take at once is kept and
    written by ``drain()`` or ``wait_closed()`` (under asyncio, a ``close()``
    with bytes pending also finishes them in the background)."""

    __slots__ = ("__weakref__", "_buffer", "_closer", "_closing", "_error", "_fd", "_flushing")

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._buffer = bytearray()
        self._closing = False
        self._error: OSError | None = None
        self._flushing = False
        self._closer: asyncio.Task[None] | None = None

    def fileno(self) -> int:
        """The parent's end of the pipe (-1 once closed)."""
        return self._fd

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else "closing" if self._closing else f"fd {self._fd}"
        return f"<ChildStreamWriter {state}, {len(self._buffer)} bytes pending>"

    def _broken(self) -> OSError:
        assert self._error is not None
        return type(self._error)(self._error.errno, self._error.strerror)

    def _write_some(self, once: bool = False) -> None:
        """Writes what the pipe takes now (one ``write`` with ``once``);
        records a broken pipe."""
        while self._buffer and self._fd >= 0:
            try:
                written = os.write(self._fd, self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._error = exc
                self._buffer.clear()
                return
            del self._buffer[:written]
            if once:
                return

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queues ``data`` and writes what the pipe takes at once. Raises
        ``BrokenPipeError`` if the child's end is closed, ``RuntimeError``
        after ``close()``."""
        if self._error is not None:
            raise self._broken()
        if self._closing:
            raise RuntimeError("write() after close() of the child's stdin")
        if not data:
            return
        self._buffer += data
        # One write, as an asyncio transport does: the rest waits for drain().
        self._write_some(once=True)
        if self._error is not None:
            raise self._broken()

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """Writes each chunk of ``lines`` in order."""
        for line in lines:
            self.write(line)

    async def _flush(self, low_water: int) -> None:
        while len(self._buffer) > low_water and self._error is None and self._fd >= 0:
            self._write_some()
            if len(self._buffer) > low_water and self._error is None and self._fd >= 0:
                self._flushing = True
                try:
                    await anyio.wait_writable(self._fd)
                finally:
                    self._flushing = False

    async def drain(self) -> None:
        """Waits until the pending bytes are written (down to 64 KiB, as
        asyncio's high-water mark). Raises ``BrokenPipeError`` if the child's
        end closed."""
        await self._flush(_HIGH_WATER if self._closing else 0)
        if self._error is not None:
            raise self._broken()
        # A checkpoint even when nothing had to wait, as asyncio's drain().
        await anyio.sleep(0)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Closes the pipe once the pending bytes are written (the child
        sees end of file)."""
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Closes the pipe after the pending bytes are written. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._write_some()
        if not self._buffer or self._error is not None:
            self._close_fd()
            return
        loop = asyncio_loop()
        if loop is not None:
            # As an asyncio transport does: finish writing in the background.
            self._closer = loop.create_task(self._finish())

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self._flushing:
            with contextlib.suppress(Exception):
                anyio.notify_closing(fd)
        os.close(fd)

    async def _finish(self) -> None:
        await self._flush(0)
        if self._closing:
            self._close_fd()

    async def wait_closed(self) -> None:
        """Writes the pending bytes, then closes the fd (after ``close()``).
        A child that closed its end meanwhile is not an error here."""
        closer = self._closer
        if closer is not None and asyncio_loop() is closer.get_loop():
            await asyncio.shield(closer)
        else:
            await self._finish()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "pipe":
            return self._fd
        return default

    def _abandon(self) -> None:
        """Drops pending bytes and closes the fd (the child is gone)."""
        self._closing = True
        self._buffer.clear()
        self._close_fd()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
