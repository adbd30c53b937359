"""The redaction engine (``csrc/redact*.c``): compiled pattern sets and
streaming redactors (the one cache of compiled sets is ``redact.compiled_patterns``)."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator_spawn._native import check, ffi, lib

REDACT_IGNORE_CASE: int = lib.OS_REDACT_IGNORE_CASE
_REDACT_E_COMPILE: int = lib.OS_REDACT_E_COMPILE
_REDACT_E_EMPTY_MATCH: int = lib.OS_REDACT_E_EMPTY_MATCH


class PatternSet:
    """An immutable compiled pattern set (``os_pattern_set``), shareable by
    redactors of many threads. Freed when the last reference goes away."""

    __slots__ = ("__weakref__", "handle", "size")

    def __init__(self, patterns: Sequence[bytes], literals: Sequence[bytes], flags: int) -> None:
        """Compile; raises ``ValueError`` naming the entry that does not compile
        (with the offset of the error) or that can match the empty string."""
        entries = [*patterns, *literals]
        keep = [ffi.new("char[]", e) for e in entries]
        pats = ffi.new("const char *[]", keep[: len(patterns)] or [ffi.NULL])
        plens = ffi.new("size_t[]", [len(p) for p in patterns] or [0])
        lits = ffi.new("const char *[]", keep[len(patterns) :] or [ffi.NULL])
        llens = ffi.new("size_t[]", [len(x) for x in literals] or [0])
        out = ffi.new("os_pattern_set **")
        idx = ffi.new("size_t *")
        off = ffi.new("size_t *")
        msg = ffi.new("char[256]")
        rc = lib.os_pattern_set_new(
            pats, plens, len(patterns), lits, llens, len(literals), flags, out, idx, off, msg, 256
        )
        if rc != 0:
            _raise_pattern_error(rc, entries, len(patterns), idx[0], off[0], ffi.string(msg))
        # The cffi pointer, for the other modules of _native only (the pump).
        self.handle: Any = ffi.gc(out[0], lib.os_pattern_set_free)
        self.size = len(entries)

    @property
    def scanner(self) -> str:
        """The literal scan loop in use: ``scalar``, ``ssse3``, ``avx2`` or ``neon``
        (chosen from the CPU; ``OS_REDACT_SCAN=<name>`` forces a supported one)."""
        return str(ffi.string(lib.os_pattern_set_scanner(self.handle)).decode())

    def anchor(self, index: int) -> tuple[int, int, int]:
        """(number of anchor literals, min offset, max offset) of entry ``index``;
        0 literals means the entry is searched without a prefilter. The
        offsets (bytes from the match start) are those of the literal's start,
        or of its end for a literal taken from a lookbehind (then usually
        <= 0): see :meth:`anchor_at_end`. ``IndexError`` for a bad index."""
        return self._anchor(index)[:3]

    def anchor_at_end(self, index: int) -> bool:
        """Whether the offsets of :meth:`anchor` locate the end of the literal
        (a lookbehind's literal, which precedes the match) rather than its start."""
        return self._anchor(index)[3]

    def _anchor(self, index: int) -> tuple[int, int, int, bool]:
        dmin = ffi.new("int32_t *")
        dmax = ffi.new("int32_t *")
        rel_end = ffi.new("int *")
        n = lib.os_pattern_set_anchor_ex(self.handle, index, dmin, dmax, rel_end)
        if n < 0:
            raise IndexError(index)
        return int(n), int(dmin[0]), int(dmax[0]), bool(rel_end[0])


def _raise_pattern_error(
    rc: int, entries: list[bytes], n_patterns: int, index: int, offset: int, msg: bytes
) -> None:
    if rc == -errno.ENOMEM:
        raise MemoryError("orchestrator_spawn: out of memory compiling redaction patterns")
    kind = "pattern" if index < n_patterns else "literal"
    what = entries[index] if index < len(entries) else b"?"
    text = msg.decode("utf-8", "replace")
    if rc == _REDACT_E_EMPTY_MATCH:
        hint = " (or a look-ahead hides its width)" if "look-ahead" in text else ""
        raise ValueError(f"redaction {kind} {what!r} can match the empty string{hint}")
    if rc == _REDACT_E_COMPILE:
        raise ValueError(f"redaction {kind} {what!r} does not compile: {text} (at offset {offset})")
    check(rc, "os_pattern_set_new")


# CPython's bytes keep their data inline and fixed, so C may fill a fresh one
# through ffi.from_buffer; elsewhere the result goes through a cffi buffer.
_FILL_BYTES = sys.implementation.name == "cpython"


class NativeRedactor:
    """One stream's redactor (``os_redactor``): one thread at a time.

    ``feed``/``finish`` run in C with the GIL released and return the bytes
    decided so far. Raises ``MemoryError`` when the engine runs out of memory
    and ``ValueError`` after ``finish``."""

    __slots__ = ("_lenp", "_ptr", "_set")

    def __init__(self, pattern_set: PatternSet, replacement: bytes, max_hold: int) -> None:
        ptr = lib.os_redactor_new(pattern_set.handle, replacement, len(replacement), max_hold)
        if ptr == ffi.NULL:
            raise MemoryError("orchestrator_spawn: out of memory creating a redactor")
        self._ptr = ffi.gc(ptr, lib.os_redactor_free)
        self._set = pattern_set  # the set must outlive the redactor
        self._lenp = ffi.new("size_t *")

    @staticmethod
    def _check(rc: int, call: str) -> None:
        if rc == -errno.ENOMEM:
            raise MemoryError(f"orchestrator_spawn: out of memory in {call}")
        if rc == -errno.EINVAL:
            raise ValueError(f"{call} after finish()")
        check(rc, call)

    def _take(self, rc: int, call: str) -> bytes:
        self._check(rc, call)
        ptr = lib.os_redactor_output(self._ptr, self._lenp)
        n = self._lenp[0]
        if n == 0:
            return b""
        data: bytes = ffi.buffer(ptr, n)[:]
        lib.os_redactor_consume(self._ptr, n)
        return data

    def feed(self, chunk: Any) -> bytes:
        """Feed a bytes-like chunk; returns the output decided so far."""
        with ffi.from_buffer(chunk) as buf:
            rc = lib.os_redactor_feed(self._ptr, buf, len(buf))
        return self._take(rc, "os_redactor_feed")

    def finish(self) -> bytes:
        """End of stream; returns the rest of the output."""
        return self._take(lib.os_redactor_finish(self._ptr), "os_redactor_finish")

    def abort(self) -> bytes:
        """The stream was cut short; returns the rest of the output, what is
        still held becoming one replacement (``os_redactor_abort``)."""
        return self._take(lib.os_redactor_abort(self._ptr), "os_redactor_abort")

    def redact_whole(self, data: Any) -> bytes:
        """Redact all of ``data`` and end the stream, on a fresh redactor.

        The engine first matches the whole buffer (in cache-sized pieces, in
        place) and records what the output is made of; the result is then
        allocated once at its final size and written once, instead of going
        through the engine's buffer, a copy and a concatenation.

        Both steps read ``data``: a writable buffer is copied first, so that
        a change to it in between cannot put unmatched bytes in the output."""
        if not isinstance(data, bytes):
            with memoryview(data) as view:
                if not view.readonly:
                    data = view.tobytes()
        with ffi.from_buffer(data) as buf:
            rc = lib.os_redactor_plan(self._ptr, buf, len(buf), self._lenp)
            self._check(rc, "os_redactor_plan")
            n = self._lenp[0]
            if n < 2 or not _FILL_BYTES:
                out = ffi.new("uint8_t[]", max(n, 1))
                lib.os_redactor_write_plan(self._ptr, buf, out)
                small: bytes = ffi.buffer(out, n)[:]
                return small
            # A fresh bytes object of n >= 2 bytes (never a shared singleton),
            # filled before anything else can see it: the one copy.
            result = bytes(n)
            with ffi.from_buffer(result) as dst:
                lib.os_redactor_write_plan(self._ptr, buf, dst)
            return result

    @property
    def held(self) -> int:
        """Bytes fed but not yet decided."""
        return int(lib.os_redactor_held(self._ptr))
