"""The native output pump: children's pipes -> redaction -> files, off the GIL.

One reactor thread per process (started on first use, epoll on Linux, kqueue
on macOS) reads every captured pipe, runs each stream through its own C
redactor and writes the result to the stream's sink. Python sees one event
per finished capture, never one per chunk, so thousands of children can be
captured from one event loop with a constant number of threads.

    capture = start_capture(stdout=r_out, stderr=r_err,
                            stdout_sink="out.log", stderr_sink="err.log",
                            redact=["token=\\\\S+"])
    stats = await capture.wait()      # or capture.wait_blocking(timeout)

``wait()`` returns once both pipes reached end of file and every byte read
was redacted and written; if writing a sink failed (disk full, closed pipe)
it raises ``OSError`` with that errno, after the pipe was still drained to its
end so the child never blocks on it.

Fork: the reactor thread does not survive ``fork()``. A forked child may use
the pump afresh (a new reactor starts there); captures started by the parent
cannot be waited for in the child (``RuntimeError``).
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar, final

import anyio

from orchestrator_spawn._native import pump as _native
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
from orchestrator_spawn.redact import RedactionOptions, check_options, compiled_patterns

if TYPE_CHECKING:
    from orchestrator_spawn.child import Child

__all__ = [
    "BUILTIN",
    "DISCARD",
    "MEMORY",
    "PIPE",
    "Capture",
    "CaptureStats",
    "Redaction",
    "Sink",
    "StreamStats",
    "start_capture",
]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class Sink(enum.Enum):
    """Sinks that are not files: keep the bytes in memory, or drop them."""

    MEMORY = "memory"
    DISCARD = "discard"


MEMORY = Sink.MEMORY
DISCARD = Sink.DISCARD
#: As a source of ``start_capture``: the pump makes the pipe (see ``Capture.writer``).
PIPE = subprocess.PIPE

SourceLike: TypeAlias = "int | _HasFileno"
SinkLike: TypeAlias = (
    "int | _HasFileno | str | bytes | os.PathLike[str] | os.PathLike[bytes] | Sink"
)
RedactionLike: TypeAlias = "Redaction | Sequence[str | bytes]"

_STREAM_NAMES: tuple[str, ...] = ("stdout", "stderr")


@dataclass(frozen=True)
class StreamStats:
    """Counters of one captured stream, in bytes.

    ``bytes_read`` came out of the child's pipe; ``bytes_written`` went into
    the sink after redaction; ``bytes_teed`` went to the live-output pipe.
    """

    bytes_read: int
    bytes_written: int
    bytes_teed: int


@dataclass(frozen=True)
class CaptureStats:
    """Per-stream counters; a stream that was not captured is None."""

    stdout: StreamStats | None
    stderr: StreamStats | None


# ---- finished-capture notification ------------------------------------------


# start_capture forgets finished captures once this many are waiting.
_DRAIN_BATCH = 32


class _Notifier:
    """Routes the reactor's "capture done" events to asyncio waiters.

    Each event loop with a waiter watches the pump's notification fd with
    ``add_reader``; whichever loop (or blocking waiter, or new capture) drains
    the finished ids resolves every waiter, on its own loop.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, _native.PumpCapture] = {}
        self.waiters: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self.loops: dict[asyncio.AbstractEventLoop, int] = {}
        self.fd = -1

    def notify_fd(self) -> int:
        if self.fd < 0:
            self.fd = _native.pump_notify_fd()
        return self.fd

    def drain_if_pending(self) -> None:
        # In batches: a drain costs a read of the notification fd and a lock,
        # and each id waits only to be forgotten (a waiter's loop drains it
        # at once, and a capture's result forgets it).
        if _native.pump_done_pending() >= _DRAIN_BATCH:
            self.drain()

    def drain(self) -> None:
        ids = _native.pump_take_done()
        if not ids:
            return
        with self.lock:
            for capture_id in ids:
                self.running.pop(capture_id, None)
            waiters = [w for capture_id in ids for w in self.waiters.pop(capture_id, [])]
        for loop, future in waiters:
            _resolve_threadsafe(loop, future)

    def add_waiter(self, capture: Capture, future: asyncio.Future[None]) -> None:
        loop = future.get_loop()
        fd = self.notify_fd()
        with self.lock:
            self.waiters.setdefault(capture.id, []).append((loop, future))
            count = self.loops.get(loop, 0)
            if count == 0:
                loop.add_reader(fd, self.drain)
            self.loops[loop] = count + 1

    def remove_waiter(self, capture: Capture, future: asyncio.Future[None]) -> None:
        loop = future.get_loop()
        with self.lock:
            waiters = self.waiters.get(capture.id, [])
            if (loop, future) in waiters:
                waiters.remove((loop, future))
                if not waiters:
                    del self.waiters[capture.id]
            count = self.loops.get(loop, 0) - 1
            if count <= 0:
                self.loops.pop(loop, None)
                if not loop.is_closed():
                    loop.remove_reader(self.fd)
            else:
                self.loops[loop] = count

    def forget(self, capture_id: int) -> None:
        self.running.pop(capture_id, None)  # atomic: no lock needed

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.running = {}
        self.waiters = {}
        self.loops = {}
        self.fd = -1


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_threadsafe(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _set_done(future)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_set_done, future)


_notifier = _Notifier()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_notifier.reset_after_fork)


@atexit.register
def _stop_at_exit() -> None:
    # The reactor keeps running while the interpreter tears down; let running
    # captures finish (aborted: what their redactors hold fails closed)
    # before their redactors' pattern sets are freed.
    with _notifier.lock:
        running = list(_notifier.running.values())
    deadline = time.monotonic() + 2.0
    for capture in running:
        try:
            capture.abort()
            capture.wait(max(0.0, deadline - time.monotonic()))
        except (OSError, RuntimeError):
            pass


# ---- the capture ------------------------------------------------------------


class _Tee:
    """The read end of a stream's live-output pipe.

    One reader takes it, or a wait drops it; several threads may try at once
    (without the GIL really at once), so taking and closing are atomic: the
    fd is closed exactly once, never a number another thread got meanwhile.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.taken = False
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """Marks it taken; True for the one caller that did."""
        with self._lock:
            if self.taken or self.fd < 0:
                return False
            self.taken = True
            return True

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


@final
class Capture:
    """A running capture of a child's stdout and/or stderr (see ``start_capture``)."""

    # Few attributes and no finalizer object: thousands of captures are
    # started in a loop, and every surviving container costs the cyclic GC.
    __slots__ = (
        "__weakref__",
        "_names",
        "_native",
        "_sinks",
        "_tees",
        "_writers",
        "_writers_open",
    )

    def __init__(
        self,
        native: _native.PumpCapture,
        names: tuple[str, ...],
        sinks: tuple[object, ...],
        tees: dict[str, _Tee] | None,
        writers: dict[str, int] | None,
    ) -> None:
        self._native = native
        self._names = names
        self._sinks = sinks
        self._tees = tees
        self._writers = writers
        # False once close_writers() closed them (the dict keeps its names
        # for writer()'s messages): a wait then has nothing to close.
        self._writers_open = writers is not None

    def __del__(self) -> None:
        # What this object holds open (live pipes, pipe writers) is closed
        # when it is dropped; the capture itself runs on (see _Notifier).
        try:
            if self._tees:
                _close_tees(list(self._tees.values()))
            if self._writers:
                _close_writers(self._writers)
        except (AttributeError, OSError, TypeError):
            pass  # half-built object, or interpreter teardown

    @property
    def id(self) -> int:
        """The pump's id of this capture (unique within the process)."""
        return self._native.id

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the captured streams, e.g. ``("stdout", "stderr")``."""
        return self._names

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<Capture {self.id} of {', '.join(self._names)}: {state}>"

    def done(self) -> bool:
        """True once every stream is finished (errors included)."""
        return self._native.done()

    def stats(self) -> CaptureStats:
        """Current counters (final once ``done()``)."""
        return self._stats(self._native.stats_all())

    def _stats(self, raws: list[_native.PumpStreamStats]) -> CaptureStats:
        if self._names is _STREAM_NAMES:  # both streams, the common case
            out, err = raws
            return CaptureStats(
                StreamStats(out.bytes_read, out.bytes_written, out.bytes_teed),
                StreamStats(err.bytes_read, err.bytes_written, err.bytes_teed),
            )
        found = {
            name: StreamStats(raw.bytes_read, raw.bytes_written, raw.bytes_teed)
            for name, raw in zip(self._names, raws, strict=True)
        }
        return CaptureStats(stdout=found.get("stdout"), stderr=found.get("stderr"))

    def writer(self, stream: str) -> int:
        """The write end of the pipe the pump made for ``stream`` (``PIPE``).

        Give it to the child (``spawn(..., stdout=capture.writer("stdout"))``),
        then call ``close_writers()``: the stream ends once every copy of the
        write end is closed. The fd is close-on-exec and owned by the capture.
        Raises ``ValueError`` if ``stream`` was not captured from ``PIPE``,
        ``RuntimeError`` once the writers were closed.
        """
        self._index(stream)
        if not self._writers or stream not in self._writers:
            raise ValueError(f"{stream} was not captured from PIPE; it has no writer")
        fd = self._writers[stream]
        if fd < 0:
            raise RuntimeError(f"the writer of {stream} was closed already")
        return fd

    def close_writers(self) -> None:
        """Close this process's write ends of the pipes the pump made.

        Call it once the child has its copies (after ``spawn``); ``wait()``
        and ``wait_blocking()`` do it too. Idempotent.
        """
        writers = self._writers
        if writers and self._writers_open:
            _close_writers(writers)
            self._writers_open = False

    def abort(self) -> None:
        """Stop waiting for end of file.

        Each stream takes what its pipe holds right now and then finishes cut
        short (see ``mark_truncated``); live-output iterators end. Use it when
        a process outside your control (a daemonised grandchild) keeps a pipe
        open. Harmless once done.
        """
        self._native.abort()

    def mark_truncated(self) -> None:
        """Say that the streams will end early: call it before killing the
        child (timeout, cancellation, shutdown).

        Reading goes on to end of file, but whenever a stream ends from now
        on, the bytes its redactor still holds because they may be the start
        of a secret become one replacement instead of being decided as at a
        real end of file (where a prefix of a secret that never completed is
        not a match, and would come out in clear). Never blocks; harmless
        once done.
        """
        self._native.truncate()

    def _follow_child(self, child: Child) -> None:
        """Internal: the streams are ``child``'s output. Call it before the
        streams can reach end of file (before closing this process's copies
        of the pipes' write ends).

        Then a stream cut short by the child's death fails closed: a kill or
        stop signal sent through ``child`` marks the capture truncated
        first; a child killed from elsewhere is recognised at end of file
        (``os_pump_capture_watch_child``) or when it is reaped.
        """
        native = self._native
        native.watch_child(child.pid)
        # The child keeps the native handle, which refers to nothing of it
        # (kill on drop still works).
        child._follow_output(native)

    async def wait(self) -> CaptureStats:
        """Wait until every stream reached end of file and was fully written.

        Returns the final counters. Raises ``OSError`` (with the OS errno:
        ``ENOSPC``, ``EPIPE`` -> ``BrokenPipeError``, ...) when a sink could
        not be written; the child's pipe was drained to its end anyway.
        Live-output streams nobody started reading are dropped first (they
        would otherwise stall the child), and this process's pipe writers
        closed (they would keep the streams from end of file). Cancelling the
        wait does not stop the capture.
        """
        if self._tees:
            self._drop_untaken_tees()
        if self._writers_open:
            self.close_writers()
        if not self._native.done():
            if asyncio._get_running_loop() is None:
                await _wait_done_any_loop(self)  # trio (or another anyio backend)
                return self._result()
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            _notifier.add_waiter(self, future)
            try:
                # Done may have happened between the check and the
                # registration, with the notification drained elsewhere.
                if self._native.done():
                    _set_done(future)
                await future
            finally:
                _notifier.remove_waiter(self, future)
        return self._result()

    def wait_blocking(self, timeout: float | None = None) -> CaptureStats:
        """Like ``wait()`` without an event loop; ``timeout`` in seconds.

        Raises ``TimeoutError`` if the capture is still running after
        ``timeout``; the GIL is released while blocked.
        """
        if self._tees:
            self._drop_untaken_tees()
        if self._writers_open:
            self.close_writers()
        if not self._native.wait(timeout):
            raise TimeoutError(f"{self!r} still running after {timeout} s")
        return self._result()

    def output(self, stream: str) -> bytes:
        """The (redacted) bytes of a stream captured with ``MEMORY`` (once done)."""
        index = self._index(stream)
        if not self._native.done():
            raise RuntimeError(f"{self!r}: output() is only available once done")
        return self._native.memory(index)

    async def chunks(self, stream: str) -> AsyncIterator[bytes]:
        """Yield the stream's redacted bytes live, as the sink receives them.

        Needs ``live=`` at ``start_capture``; one reader per stream. Ends when
        the stream is finished. Closes this process's pipe writers first (as
        ``wait()`` does): start it after the child was spawned. For a whole
        child, ``orchestrator_spawn.open_redacted`` does all of this. Stopping
        early (``aclose()``/``break``) just closes the live pipe; the sink
        still receives everything. Backpressure: a live reader that does not
        keep up pauses that stream's pipe.
        """
        tee = self._take_tee(stream)
        # Our copies of the pipe writers would keep the stream from ending:
        # the child has its own by now (a forgotten close_writers() used to
        # make this iterate forever).
        if self._writers_open:
            self.close_writers()
        loop = asyncio._get_running_loop()
        try:
            while True:
                try:
                    data = os.read(tee.fd, 1 << 16)
                except BlockingIOError:
                    if loop is None:
                        await anyio.wait_readable(tee.fd)  # trio
                    else:
                        await _readable(loop, tee.fd)
                    continue
                if not data:
                    return
                yield data
        finally:
            tee.close()

    async def lines(self, stream: str) -> AsyncIterator[bytes]:
        """Like ``chunks()`` but one line at a time, newline included (the last
        line may lack one)."""
        pending = b""
        async for chunk in self.chunks(stream):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
        if pending:
            yield pending

    # -- internals --

    def _index(self, stream: str) -> int:
        try:
            return self._names.index(stream)
        except ValueError:
            raise ValueError(f"{self!r} does not capture {stream!r}") from None

    def _take_tee(self, stream: str) -> _Tee:
        self._index(stream)
        tee = self._tees.get(stream) if self._tees else None
        if tee is None:
            raise ValueError(f"{stream} was not captured with live=; no live output")
        if not tee.claim():
            raise RuntimeError(f"the live output of {stream} is already being read")
        return tee

    def _drop_untaken_tees(self) -> None:
        for tee in (self._tees or {}).values():
            if tee.claim():
                tee.close()

    def _result(self) -> CaptureStats:
        native = self._native
        _notifier.forget(native.id)
        if self._names is _STREAM_NAMES:
            # Both streams (the runner, run, the CLI): the C counters in one
            # call; any error goes the general way below.
            counters = native.pair_counters()
            if counters is not None:
                return _frozen(
                    CaptureStats,
                    stdout=_frozen(
                        StreamStats,
                        bytes_read=counters[0],
                        bytes_written=counters[1],
                        bytes_teed=counters[2],
                    ),
                    stderr=_frozen(
                        StreamStats,
                        bytes_read=counters[3],
                        bytes_written=counters[4],
                        bytes_teed=counters[5],
                    ),
                )
        raws = native.stats_all()
        for name, sink, raw in zip(self._names, self._sinks, raws, strict=True):
            if raw.error:
                raise _stream_error(name, _describe(sink), raw)
        return self._stats(raws)


_T = TypeVar("_T")


def _frozen(cls: type[_T], **fields: object) -> _T:
    """``cls(**fields)`` for a frozen dataclass of ``fields`` (every field,
    no ``__post_init__``), without its ``__init__``, which sets each field
    through ``object.__setattr__``: one is made per stream of every job."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def _describe(sink: object) -> str:
    """How an error message names a sink."""
    if sink is Sink.MEMORY:
        return "memory"
    if sink is Sink.DISCARD:
        return "nowhere"
    if isinstance(sink, int):
        return f"fd {sink}"
    if isinstance(sink, (str, bytes, os.PathLike)):
        return repr(os.fsdecode(sink))
    return repr(sink)


def _stream_error(name: str, sink: str, raw: _native.PumpStreamStats) -> OSError:
    what = {
        "read": f"reading the child's {name} pipe",
        "redact": f"redacting {name} (its remaining output was withheld)",
        "write": f"writing captured {name} to {sink}",
        "close": f"closing the {name} sink {sink}",
    }.get(raw.stage, f"capturing {name}")
    # OSError(errno, ...) picks the matching subclass (BrokenPipeError, ...).
    return OSError(raw.error, f"{what} failed: {os.strerror(raw.error)}")


def _close_tees(tees: list[_Tee]) -> None:
    for tee in tees:
        tee.close()


def _close_writers(writers: dict[str, int]) -> None:
    for name in list(writers):
        # pop() is atomic: of two threads closing at once, one gets the fd.
        fd = writers.pop(name, -1)
        writers[name] = -1
        if fd >= 0:
            os.close(fd)


# Under a non-asyncio loop (trio), how long a task sleeps on the notification
# fd before it checks its capture again (a loop in another thread may have
# taken the notification), in seconds.
_NOTIFY_RECHECK = 0.1
# Thread id -> the event that the one task sleeping on the notification fd
# sets when it wakes (trio lets one task wait on an fd at a time).
_notify_sleepers: dict[int, anyio.Event] = {}


async def _wait_done_any_loop(capture: Capture) -> None:
    """Waits for ``capture`` under any anyio backend: one task per thread
    sleeps on the pump's notification fd, the others on its event."""
    key = threading.get_ident()
    while not capture.done():
        event = _notify_sleepers.get(key)
        if event is not None:
            await event.wait()
            continue
        event = _notify_sleepers[key] = anyio.Event()
        try:
            with anyio.move_on_after(_NOTIFY_RECHECK):
                await anyio.wait_readable(_notifier.notify_fd())
            _notifier.drain_if_pending()
        finally:
            del _notify_sleepers[key]
            event.set()


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    future: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _set_done, future)
    try:
        await future
    finally:
        loop.remove_reader(fd)


# ---- starting a capture -------------------------------------------------------


def _source_fd(source: SourceLike, opened: list[int]) -> int:
    """An fd the pump may own: ints are taken over, objects are dup()ed,
    ``PIPE`` asks the pump for a new pipe."""
    if isinstance(source, int):
        return _native.PUMP_SOURCE_PIPE if source == PIPE else source
    fd = os.dup(source.fileno())
    opened.append(fd)
    return fd


def _sink_spec(sink: SinkLike, opened: list[int]) -> tuple[int, bytes | None]:
    """An fd for the pump to own, a PUMP_SINK_* value, or a path for it to open."""
    # The sinks that are no file first: os.PathLike is an ABC, and an
    # isinstance() miss against it runs Python code.
    if sink is Sink.MEMORY:
        return _native.PUMP_SINK_MEMORY, None
    if sink is Sink.DISCARD:
        return _native.PUMP_SINK_DISCARD, None
    if isinstance(sink, (str, bytes, os.PathLike)):
        path = os.fsencode(sink)
        if b"\0" in path:
            raise ValueError(f"sink path {os.fsdecode(path)!r} contains a NUL byte")
        # Opened (created or truncated) by the pump in C, in this thread.
        return _native.PUMP_SINK_PATH, path
    if isinstance(sink, int):
        fd = os.dup(sink)
    else:
        flush = getattr(sink, "flush", None)
        if callable(flush):
            flush()  # bytes buffered in Python go first
        fd = os.dup(sink.fileno())
    opened.append(fd)
    return fd, None


@dataclass(frozen=True)
class Redaction:
    """How the pump redacts every captured stream.

    The arguments mean what they mean for ``orchestrator_spawn.Redactor``
    (patterns, literals, replacement, ignore_case, max_hold in bytes) and are
    checked the same way when the object is made (``TypeError`` for one
    ``str``/``bytes`` where a sequence belongs, ``max_hold=1.5``...; the
    patterns compile when a capture starts). ``patterns`` and ``literals``
    are kept as tuples. Each stream gets its own streaming redactor over one
    shared compiled pattern set. ``Redaction(patterns=DEFAULT_REDACTION_PATTERNS,
    literals=[...])`` adds secrets to the built-in pack.
    """

    patterns: Sequence[str | bytes] = ()
    literals: Sequence[str | bytes] = ()
    replacement: bytes = b"[REDACTED]"
    ignore_case: bool = True
    max_hold: int = 65536

    def __post_init__(self) -> None:
        self._options()  # raises for bad values now, not at the first capture
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "literals", tuple(self.literals))

    def _options(self) -> RedactionOptions:
        return check_options(
            self.patterns, self.literals, self.replacement, self.ignore_case, self.max_hold
        )


class _BuiltinPack(enum.Enum):
    """The type of ``BUILTIN``: the default ``redact=`` of ``start_capture``."""

    BUILTIN = "builtin"


#: ``start_capture(redact=BUILTIN)`` (the default): the built-in pattern pack.
BUILTIN = _BuiltinPack.BUILTIN


def _build_redaction(options: RedactionOptions) -> _native.PumpRedaction | None:
    if not options.patterns and not options.literals:
        return None
    # The one cache of compiled sets: a set the runner checked (through a
    # Redactor) or a Redactor uses is not compiled again here.
    pattern_set = compiled_patterns(options.patterns, options.literals, options.flags)
    return _native.PumpRedaction(pattern_set, options.replacement, options.max_hold)


# Captures with the same configuration share one C-side setup; each capture
# keeps its pattern set alive, so eviction is harmless.
_cached_redaction = lru_cache(maxsize=64)(_build_redaction)
_DEFAULT_REDACTION = Redaction()


def _redaction(redact: RedactionLike | _BuiltinPack) -> _native.PumpRedaction | None:
    """The shared C-side setup of ``redact`` (None: nothing to redact).

    Raises ``TypeError`` for something that is not a configuration (one
    ``str``/``bytes``, a ``Redactor``), ``ValueError`` for a bad pattern
    (named) or a negative ``max_hold``: the checks of ``Redactor``.
    """
    given: object = redact
    if given is BUILTIN:
        redact = Redaction(patterns=DEFAULT_REDACTION_PATTERNS)
    elif isinstance(given, (str, bytes, bytearray, memoryview)) or not isinstance(
        given, (Redaction, Sequence)
    ):
        # A Redactor is one stream's state, not a configuration to copy.
        raise TypeError(
            "redact= must be a Redaction(...) or a sequence of patterns, not "
            f"{type(given).__name__}"
        )
    if isinstance(redact, Redaction):
        # Read as they are now (a list inside may have changed since).
        options = redact._options()
        return _cached_redaction(options)
    # A sequence of patterns (``run``'s ``redact=[...]``, per job): checked
    # once per distinct content, looked up by a snapshot of its entries. Only
    # configurations that passed the checks are remembered, so a bad one
    # raises every time.
    try:
        key: tuple[object, ...] | None = tuple(redact)  # type: ignore[arg-type]
        known = _sequence_redactions.get(key)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # unhashable (bytearray, writable memoryview)
        key = known = None
    if known is not None:
        return known
    default = _DEFAULT_REDACTION
    options = check_options(
        redact if key is None else key,
        (),
        default.replacement,
        default.ignore_case,
        default.max_hold,
    )
    built = _cached_redaction(options)
    if key is not None and built is not None:
        if len(_sequence_redactions) >= 64:
            _sequence_redactions.clear()
        _sequence_redactions[key] = built
    return built


# Sequences of patterns already checked -> their C-side setup (see _redaction).
_sequence_redactions: dict[tuple[object, ...], _native.PumpRedaction] = {}


@final
class ResolvedRedaction:
    """Internal: a ``redact=`` already turned into its C-side setup by
    ``_redaction`` (``run`` checks it before spawning and hands it on, so
    it is not checked twice per job)."""

    __slots__ = ("native",)

    def __init__(self, native: _native.PumpRedaction | None) -> None:
        self.native = native


def resolve_redaction(redact: RedactionLike | _BuiltinPack) -> ResolvedRedaction:
    """``redact`` checked and turned into its C-side setup, once: what ``run``
    and the runner hand to ``start_capture(redact=...)`` for every job (a bad
    pattern raises here, before anything runs; see ``_redaction``)."""
    return ResolvedRedaction(_redaction(redact))


def start_capture(
    stdout: SourceLike | None = None,
    stderr: SourceLike | None = None,
    *,
    stdout_sink: SinkLike = DISCARD,
    stderr_sink: SinkLike = DISCARD,
    redact: RedactionLike | _BuiltinPack | ResolvedRedaction | None = BUILTIN,
    live: Iterable[str] = (),
) -> Capture:
    """Pump a child's stdout and/or stderr pipes into sinks.

    ``stdout``/``stderr`` are the read ends of the child's pipes: an int fd is
    taken over (the pump closes it at end of file); an object with
    ``fileno()`` is duplicated (close yours; do not read from it meanwhile);
    ``PIPE`` makes the pump create the pipe (close-on-exec): pass
    ``capture.writer(name)`` to the child, then ``capture.close_writers()``.
    That is the cheapest way (no pipe reopened, no fd duplicated):

        capture = start_capture(PIPE, PIPE, stdout_sink="out.log", ...)
        try:
            child = spawn(argv, stdout=capture.writer("stdout"),
                          stderr=capture.writer("stderr"))
        finally:
            capture.close_writers()

    Each sink is a path (created or truncated by the pump in C, in this
    thread; the same path for both streams shares one file), an int fd or an
    object with ``fileno()`` (duplicated;
    pipes and sockets are written without blocking the reactor), ``MEMORY``
    (see ``Capture.output``) or ``DISCARD``.

    ``redact``: ``BUILTIN`` (the default: the built-in secret pattern pack,
    the default of the CLI, the runner and ``run``), a ``Redaction`` or a
    sequence of patterns (the ``Redactor`` defaults then apply); each stream
    gets its own streaming redactor, fed in C without the GIL. ``None``
    switches redaction off: bytes pass through unchanged. ``live``: stream names to
    also copy to a pipe read by ``Capture.chunks``/``Capture.lines``.

    Raises ``ValueError`` for no stream, an unknown live name or a pattern
    that does not compile (named) or a sink path with a NUL byte, ``OSError``
    if a sink cannot be opened (with its ``filename``) or the reactor cannot
    start. On failure the given fds are left open and still the caller's, and
    nothing the pump made (pipes, files' fds) is left open.
    """
    if (
        not live
        and type(stdout) is int
        and type(stderr) is int
        and stdout == PIPE
        and stderr == PIPE
        and (redact is None or type(redact) is ResolvedRedaction)
    ):
        fast = _start_pipes(stdout_sink, stderr_sink, redact)
        if fast is not None:
            return fast
    sources = {"stdout": stdout, "stderr": stderr}
    if stdout is not None and stderr is not None:
        names = _STREAM_NAMES  # shared: no new tuple per capture
    else:
        names = tuple(name for name in _STREAM_NAMES if sources[name] is not None)
    if not names:
        raise ValueError("start_capture: give at least one of stdout=, stderr=")
    live_names = set(live) if live else ()
    if live_names and not live_names <= set(names):
        raise ValueError(
            f"start_capture: live= names {sorted(live_names - set(names))} are not captured streams"
        )
    if redact is None:
        redaction = None
    elif type(redact) is ResolvedRedaction:
        redaction = redact.native
    else:
        redaction = _redaction(redact)

    _notifier.drain_if_pending()  # forget finished captures, keep the done queue short
    sinks = {"stdout": stdout_sink, "stderr": stderr_sink}
    opened: list[int] = []
    tees: dict[str, _Tee] = {}
    specs: list[_native.PumpStreamSpec] = []
    kept: list[object] = []  # what error messages name: paths as bytes, not Path objects
    try:
        for name in names:
            source = sources[name]
            assert source is not None
            src_fd = _source_fd(source, opened)
            sink_fd, sink_path = _sink_spec(sinks[name], opened)
            tee_fd = -1
            if name in live_names:
                read_end, tee_fd = os.pipe()
                opened.append(tee_fd)
                os.set_blocking(read_end, False)
                tees[name] = _Tee(read_end)
            specs.append(_native.PumpStreamSpec(src_fd, sink_fd, tee_fd, redaction, sink_path))
            kept.append(sinks[name] if sink_path is None else sink_path)
        native, write_ends = _native.pump_capture_start(specs)
    except BaseException:
        for fd in opened:
            os.close(fd)
        _close_tees(list(tees.values()))
        raise
    # The pump owns every fd in the specs now; we own the new pipes' writers.
    writers = {name: fd for name, fd in zip(names, write_ends, strict=True) if fd >= 0}
    with _notifier.lock:
        # The native handle (owning the redactors' pattern set) stays
        # referenced until done even if the Capture is dropped: the reactor
        # still uses it. If it finished already, its id may have been drained.
        _notifier.running[native.id] = native
    if native.done():
        _notifier.forget(native.id)
    return Capture(native, names, tuple(kept), tees or None, writers or None)


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _pipe_sink(sink: SinkLike) -> tuple[int, bytes | None] | None:
    """``_sink_spec`` for what needs no fd of ours (None otherwise)."""
    if sink is Sink.DISCARD:
        return _native.PUMP_SINK_DISCARD, None
    if sink is Sink.MEMORY:
        return _native.PUMP_SINK_MEMORY, None
    kind = type(sink)
    if kind is str:
        path = sink.encode(_FS_ENCODING, _FS_ERRORS)  # type: ignore[union-attr]
    elif kind is bytes or (kind is not int and isinstance(sink, os.PathLike)):
        path = os.fsencode(sink)  # type: ignore[arg-type]
    else:
        return None
    if b"\0" in path:
        raise ValueError(f"sink path {os.fsdecode(path)!r} contains a NUL byte")
    return _native.PUMP_SINK_PATH, path


def _start_pipes(
    stdout_sink: SinkLike, stderr_sink: SinkLike, redact: ResolvedRedaction | None
) -> Capture | None:
    """``start_capture(PIPE, PIPE, ...)`` of the runner, ``run`` and the CLI:
    both pipes made by the pump, sinks that are paths (or ``DISCARD``,
    ``MEMORY``), a resolved redaction, no live copy. The same capture as the
    general path, with less work per job; None when the sinks need it."""
    out = _pipe_sink(stdout_sink)
    err = _pipe_sink(stderr_sink)
    if out is None or err is None:
        return None
    _notifier.drain_if_pending()  # forget finished captures, keep the done queue short
    native, out_w, err_w = _native.pump_capture_start_pipes(
        (out[0], err[0]), (out[1], err[1]), None if redact is None else redact.native
    )
    with _notifier.lock:
        # As in start_capture: referenced until done.
        _notifier.running[native.id] = native
    if native.done():
        _notifier.forget(native.id)
    kept = (
        stdout_sink if out[1] is None else out[1],
        stderr_sink if err[1] is None else err[1],
    )
    return Capture(native, _STREAM_NAMES, kept, None, {"stdout": out_w, "stderr": err_w})


def spawn_captured(
    stdout_sink: SinkLike,
    stderr_sink: SinkLike,
    redact: ResolvedRedaction | None,
    launch: Callable[[int, int, _native.PumpCapture | None], Child],
) -> tuple[Child, Capture]:
    """Start a child with its stdout and stderr captured into the sinks:
    the runner's and ``run``'s capture. ``launch(stdout_fd, stderr_fd,
    follower)`` spawns the child onto the pipes' write ends, passing
    ``follower`` (when not None) as ``spawn(..., _output_follower=...)``.
    The capture follows the child as with ``spawn_into``: a kill or stop
    through it, or its death, cuts the streams short and what the redactors
    hold fails closed. Raises what ``start_capture`` and ``launch`` raise; a
    sink that cannot be opened fails before ``launch`` runs. If ``launch``
    fails, the capture ends at once (nothing writes into it) and is
    dropped.

    Sinks that are paths, ``DISCARD`` or ``MEMORY`` take the two-step
    start (``pump_capture_start_pair``, then ``commit``): the pipes are
    mostly ones the reactor made ahead, so the thread spawning the children
    makes none, and the commit hands the read ends to the reactor without
    waking it. Other sinks go through ``start_capture`` and ``spawn_into``.
    """
    out = _pipe_sink(stdout_sink)
    err = _pipe_sink(stderr_sink)
    if out is None or err is None:
        capture = start_capture(
            PIPE, PIPE, stdout_sink=stdout_sink, stderr_sink=stderr_sink, redact=redact
        )
        return spawn_into(
            [capture], lambda: launch(capture.writer("stdout"), capture.writer("stderr"), None)
        ), capture
    _notifier.drain_if_pending()  # forget finished captures, keep the done queue short
    native, out_w, err_w = _native.pump_capture_start_pair(
        out[0], out[1], err[0], err[1], None if redact is None else redact.native
    )
    # As in start_capture: referenced until done. It cannot be done before
    # the commit below, so its id cannot have been drained (no lock needed).
    _notifier.running[native.id] = native
    try:
        child = launch(out_w, err_w, native)
        # Followed before end of file can come (the pump's writers are open
        # until the commit): from birth, or now.
        followers = child._output_followers
        if followers is None or native not in followers:
            child._follow_output(native)
    except BaseException:
        native.commit(0)
        raise
    native.commit(child.pid)
    kept = (
        stdout_sink if out[1] is None else out[1],
        stderr_sink if err[1] is None else err[1],
    )
    return child, Capture(native, _STREAM_NAMES, kept, None, None)


def spawn_into(
    captures: Sequence[Capture],
    launch: Callable[[], Child],
    *,
    follow: bool = True,
    abort_on_failure: bool = False,
) -> Child:
    """The one way to start a child whose output pipes the pump made (the
    runner, ``run``, ``open_redacted`` and the CLI): ``launch()`` spawns it
    onto the captures' writers; then each capture follows the child (with
    ``follow``: a kill or stop through it, or its death, cuts the streams
    short and what the redactors hold fails closed); then this process's
    copies of the writers are closed, whatever happened, since they would
    keep the pipes from end of file (and if the spawn failed, end of file is
    what lets the capture finish). With ``abort_on_failure`` a failed launch
    also aborts the captures. Raises what ``launch`` raises.
    """
    try:
        child = launch()
        if follow:
            # Before end of file can come (the writers are still open here).
            for capture in captures:
                capture._follow_child(child)
    except BaseException:
        for capture in captures:
            capture.close_writers()
        if abort_on_failure:
            for capture in captures:
                capture.abort()
        raise
    for capture in captures:
        capture.close_writers()
    return child
