"""The capture pump (``csrc/pump*.c``): one reactor thread pumping children's
pipes through redactors into sinks, off the GIL."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from orchestrator_spawn._native import check, enum_names, ffi, lib
from orchestrator_spawn._native.redact import PatternSet

PUMP_SINK_DISCARD: int = lib.OS_PUMP_SINK_DISCARD
PUMP_SINK_MEMORY: int = lib.OS_PUMP_SINK_MEMORY
PUMP_SINK_PATH: int = lib.OS_PUMP_SINK_PATH
PUMP_SOURCE_PIPE: int = lib.OS_PUMP_SOURCE_PIPE
PUMP_MAX_STREAMS: int = lib.OS_PUMP_MAX_STREAMS
# OS_PUMP_STAGE_* / OS_PUMP_PART_* -> their names (named in C, next to them).
PUMP_STAGES: dict[int, str] = enum_names(lib.os_pump_stage_name)


_PUMP_PARTS: dict[int, str] = enum_names(lib.os_pump_part_name)


class PumpRedaction:
    """The C side of one redaction configuration, built once and shared.

    ``pattern_set`` is kept referenced by every capture using it (as
    ``owner``); ``replacement`` becomes a C copy of the replacement bytes (the
    redactors copy it again); ``max_hold`` in bytes.
    """

    __slots__ = ("max_hold", "owner", "patterns", "replacement", "replacement_len")

    def __init__(self, pattern_set: PatternSet, replacement: bytes, max_hold: int) -> None:
        self.owner = pattern_set
        self.patterns = pattern_set.handle
        self.replacement = ffi.new("uint8_t[]", replacement or b"\0")
        self.replacement_len = len(replacement)
        self.max_hold = max_hold


class PumpStreamSpec(NamedTuple):
    """One stream for ``pump_capture_start``.

    ``src_fd`` (unless ``PUMP_SOURCE_PIPE``: the pump makes a new pipe),
    ``sink_fd`` (unless a ``PUMP_SINK_*`` value) and ``tee_fd`` (unless -1)
    are handed over to the pump on success. With ``PUMP_SINK_PATH`` the pump
    opens ``sink_path`` (created or truncated). ``redaction`` None passes
    bytes through unchanged.
    """

    src_fd: int
    sink_fd: int = PUMP_SINK_DISCARD
    tee_fd: int = -1
    redaction: PumpRedaction | None = None
    sink_path: bytes | None = None


class PumpStreamStats(NamedTuple):
    """Counters of one pumped stream (bytes); ``error`` is an errno or 0.

    A named tuple: one is made per stream of every finished capture.
    """

    bytes_read: int
    bytes_written: int
    bytes_teed: int
    error: int
    stage: str


class PumpCapture:
    """The native capture handle; released when this object is collected."""

    __slots__ = ("_keepalive", "_ptr", "id", "n_streams")

    def __init__(self, ptr: Any, capture_id: int, n_streams: int, keepalive: Any) -> None:
        self._ptr = ffi.gc(ptr, lib.os_pump_capture_release)
        self._keepalive = keepalive
        self.id = capture_id
        self.n_streams = n_streams

    def commit(self, pid: int) -> None:
        """Step two of ``pump_capture_start_pair``: the streams are child
        ``pid``'s (0: none), and the reactor pumps them and closes the
        write ends (``os_pump_capture_commit``)."""
        _commit(self._ptr, pid)

    def truncate(self) -> None:
        """The streams will end early (see ``os_pump_capture_truncate``)."""
        lib.os_pump_capture_truncate(self._ptr)

    def watch_child(self, pid: int) -> None:
        """The streams are child ``pid``'s (see ``os_pump_capture_watch_child``)."""
        lib.os_pump_capture_watch_child(self._ptr, pid)

    def child_exit(self, killed: bool) -> None:
        """The watched child was reaped (``os_pump_capture_child_exit``)."""
        lib.os_pump_capture_child_exit(self._ptr, int(killed))

    def abort(self) -> None:
        """Stop waiting for end of file (see ``os_pump_capture_abort``)."""
        rc = lib.os_pump_capture_abort(self._ptr)
        if rc < 0:
            check(rc, "pump: abort")

    def done(self) -> bool:
        return bool(lib.os_pump_capture_done(self._ptr))

    def wait(self, timeout: float | None) -> bool:
        """Block (GIL released) up to ``timeout`` seconds; True once done."""
        timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
        rc = lib.os_pump_capture_wait(self._ptr, timeout_ms)
        if rc == -errno.ETIMEDOUT:
            return False
        if rc == -errno.ECHILD:
            raise RuntimeError(
                "pump: this capture belongs to the parent process; it cannot be "
                "waited for after fork()"
            )
        if rc < 0:
            check(rc, "pump: wait")
        return True

    def pair_counters(self) -> list[int] | None:
        """A done two-stream capture's final counters when neither stream
        failed: bytes read, written and teed of stdout, then of stderr (one
        call, plain ints); None otherwise (``os_pump_capture_pair_counters``)."""
        out = _new("uint64_t[6]")
        if _pair_counters(self._ptr, out) != 1:
            return None
        counters: list[int] = _unpack(out, 6)
        return counters

    def stats_all(self) -> list[PumpStreamStats]:
        """Counters of every stream, in order (one consistent call)."""
        out = ffi.new("os_pump_stream_stats[]", self.n_streams)
        n = lib.os_pump_capture_stats_all(self._ptr, out)
        stats = []
        for i in range(n):
            raw = out[i]
            stage = raw.stage
            stats.append(
                PumpStreamStats(
                    raw.bytes_read,
                    raw.bytes_written,
                    raw.bytes_teed,
                    raw.error,
                    PUMP_STAGES[stage] if stage in PUMP_STAGES else str(stage),
                )
            )
        return stats

    def memory(self, index: int) -> bytes:
        """The bytes kept by a ``PUMP_SINK_MEMORY`` stream (once done)."""
        data = ffi.new("const uint8_t **")
        length = ffi.new("size_t *")
        rc = lib.os_pump_capture_memory(self._ptr, index, data, length)
        if rc < 0:
            check(rc, "pump: reading the in-memory sink")
        if length[0] == 0:
            return b""
        return bytes(ffi.buffer(data[0], length[0]))


# The pattern sets a capture without redaction keeps alive: none.
_NO_OWNER: list[Any] = []


def _raise_start_error(rc: int, c_specs: Any, specs: Sequence[PumpStreamSpec]) -> None:
    """The error of a failed ``os_pump_capture_start``, naming what failed."""
    for c_spec, spec in zip(c_specs, specs, strict=True):
        part = c_spec.failed_part
        if part == lib.OS_PUMP_PART_SINK and spec.sink_path is not None:
            # As os.open would say it: errno, message and the path.
            raise OSError(-rc, os.strerror(-rc), os.fsdecode(spec.sink_path))
        if part != lib.OS_PUMP_PART_NONE:
            what = _PUMP_PARTS.get(part, "a stream")
            check(rc, f"pump: starting a capture ({what} of stream {spec.src_fd})")
    check(rc, "pump: starting a capture")


def pump_capture_start(specs: Sequence[PumpStreamSpec]) -> tuple[PumpCapture, list[int]]:
    """Start pumping ``specs``; returns the handle and, per spec, the write
    end of the pipe the pump made (``PUMP_SOURCE_PIPE``; the caller owns it)
    or -1. Raises ``OSError`` (the given fds stay the caller's, nothing the
    pump made is left open).
    """
    n = len(specs)
    if not 1 <= n <= PUMP_MAX_STREAMS:
        raise ValueError(f"pump: 1 to {PUMP_MAX_STREAMS} streams per capture, got {n}")
    c_specs = ffi.new("os_pump_stream_spec[]", n)
    keepalive: list[Any] = []  # the paths' C strings, only for the call
    # The pattern sets must outlive the capture (the redactors use them):
    # the one they all share, or the list of them.
    owner: Any = None
    for c_spec, (src_fd, sink_fd, tee_fd, redaction, sink_path) in zip(c_specs, specs, strict=True):
        c_spec.src_fd = src_fd
        c_spec.sink_fd = sink_fd
        c_spec.tee_fd = tee_fd
        if sink_path is not None:
            path = ffi.new("char[]", sink_path)
            keepalive.append(path)
            c_spec.sink_path = path
        if redaction is not None:
            c_spec.patterns = redaction.patterns
            c_spec.replacement = redaction.replacement
            c_spec.replacement_len = redaction.replacement_len
            c_spec.max_hold = redaction.max_hold
            if owner is None:
                owner = redaction.owner
            elif owner is not redaction.owner:
                owner = [spec.redaction.owner for spec in specs if spec.redaction is not None]
    capture_id = ffi.new("uint64_t *")
    out = ffi.new("os_pump_capture **")
    rc = lib.os_pump_capture_start(c_specs, n, capture_id, out)
    if rc < 0:
        _raise_start_error(rc, c_specs, specs)
    capture = PumpCapture(out[0], capture_id[0], n, owner if owner is not None else _NO_OWNER)
    return capture, [
        c_spec.pipe_w if spec.src_fd == PUMP_SOURCE_PIPE else -1
        for c_spec, spec in zip(c_specs, specs, strict=True)
    ]


def pump_capture_start_pipes(
    sinks: tuple[int, int],
    paths: tuple[bytes | None, bytes | None],
    redaction: PumpRedaction | None,
) -> tuple[PumpCapture, int, int]:
    """``pump_capture_start`` for the common case, without the per-stream
    spec objects: two new pipes (stdout, stderr), sinks ``PUMP_SINK_*`` values
    or ``PUMP_SINK_PATH`` with a path, one ``redaction`` for both, no live
    copy. Returns the handle and the two pipes' write ends (the caller owns
    them). Raises as ``pump_capture_start`` does.
    """
    c_specs = ffi.new("os_pump_stream_spec[2]")
    out_spec, err_spec = c_specs[0], c_specs[1]
    out_spec.src_fd = err_spec.src_fd = PUMP_SOURCE_PIPE
    out_spec.tee_fd = err_spec.tee_fd = -1
    out_spec.sink_fd, err_spec.sink_fd = sinks
    out_path, err_path = paths
    keep_out = keep_err = None  # the paths' C strings, only for the call
    if out_path is not None:
        keep_out = out_spec.sink_path = ffi.new("char[]", out_path)
    if err_path is not None:
        keep_err = err_spec.sink_path = ffi.new("char[]", err_path)
    owner: Any = _NO_OWNER
    if redaction is not None:
        patterns = redaction.patterns
        replacement = redaction.replacement
        length = redaction.replacement_len
        max_hold = redaction.max_hold
        out_spec.patterns = err_spec.patterns = patterns
        out_spec.replacement = err_spec.replacement = replacement
        out_spec.replacement_len = err_spec.replacement_len = length
        out_spec.max_hold = err_spec.max_hold = max_hold
        owner = redaction.owner
    capture_id = ffi.new("uint64_t *")
    out = ffi.new("os_pump_capture **")
    rc = lib.os_pump_capture_start(c_specs, 2, capture_id, out)
    del keep_out, keep_err
    if rc < 0:
        _raise_start_error(
            rc,
            c_specs,
            [
                PumpStreamSpec(PUMP_SOURCE_PIPE, sinks[0], -1, redaction, out_path),
                PumpStreamSpec(PUMP_SOURCE_PIPE, sinks[1], -1, redaction, err_path),
            ],
        )
    return PumpCapture(out[0], capture_id[0], 2, owner), out_spec.pipe_w, err_spec.pipe_w


_pair_counters = lib.os_pump_capture_pair_counters
_unpack = ffi.unpack
_start_pair = lib.os_pump_capture_start_pair
_commit = lib.os_pump_capture_commit
_new = ffi.new
_NULL = ffi.NULL


def pump_capture_start_pair(
    sink_out: int,
    path_out: bytes | None,
    sink_err: int,
    path_err: bytes | None,
    redaction: PumpRedaction | None,
) -> tuple[PumpCapture, int, int]:
    """Step one of the two-step capture of a child's stdout and stderr
    (``os_pump_capture_start_pair``): two new pipes into the sinks
    (``PUMP_SINK_*`` values; ``PUMP_SINK_PATH`` with a path), one
    ``redaction`` for both. Returns the handle and the pipes' write ends for
    the child, which stay the pump's: spawn the child onto them, then call
    ``commit`` whatever happened. Raises ``OSError`` (a sink that cannot be
    opened with its path), leaving nothing open.
    """
    out = _new("int64_t[5]")
    owner: Any
    if redaction is None:
        patterns, replacement, length, max_hold, owner = _NULL, _NULL, 0, 0, _NO_OWNER
    else:
        patterns, replacement = redaction.patterns, redaction.replacement
        length, max_hold, owner = redaction.replacement_len, redaction.max_hold, redaction.owner
    ptr = _start_pair(
        sink_out,
        _NULL if path_out is None else path_out,
        sink_err,
        _NULL if path_err is None else path_err,
        patterns,
        replacement,
        length,
        max_hold,
        out,
    )
    if ptr == _NULL:
        rc, index, part = out[0], out[3], out[4]
        path = path_out if index == 0 else path_err
        if part == lib.OS_PUMP_PART_SINK and path is not None:
            # As os.open would say it: errno, message and the path.
            raise OSError(-rc, os.strerror(-rc), os.fsdecode(path))
        what = _PUMP_PARTS.get(part, "a stream")
        stream = "stdout" if index == 0 else "stderr"
        check(rc, f"pump: starting a capture ({what} of {stream})")
    return PumpCapture(ptr, out[0], 2, owner), out[1], out[2]


def pump_notify_fd() -> int:
    """The fd that is readable while finished capture ids wait (starts the pump)."""
    fd = int(lib.os_pump_notify_fd())
    return check(fd, "pump: starting the reactor")


_DONE_BATCH = 256


def pump_done_pending() -> int:
    """How many finished capture ids ``pump_take_done`` would return (cheap)."""
    return int(lib.os_pump_done_pending())


def pump_take_done() -> list[int]:
    """Ids of the captures finished since the last call (resets the notify fd)."""
    ids: list[int] = []
    buf = ffi.new("uint64_t[]", _DONE_BATCH)
    while True:
        n = int(lib.os_pump_take_done(buf, _DONE_BATCH))
        ids.extend(int(buf[i]) for i in range(n))
        if n < _DONE_BATCH:
            return ids


def pump_active_captures() -> int:
    """How many captures the reactor is pumping right now."""
    return int(lib.os_pump_active_captures())
