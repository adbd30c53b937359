"""The only module that imports the cffi ``ffi``/``lib`` of the C core.

It checks arguments before each call, and turns the C core's return codes
(0 or -errno, plus a stage) into this package's exceptions in one place.
Sections below belong to the parts of the core: keep each part's wrappers in
its own section.
"""

from __future__ import annotations

try:
    from orchestrator_spawn._core import ffi, lib
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "the C core of orchestrator_spawn (orchestrator_spawn._core) is not built; "
        "install the package with pip, or run `python setup.py build_ext --inplace` "
        "in a source checkout"
    ) from err

__all__ = ["CORE_VERSION", "ffi", "lib"]

# Must equal OS_CORE_VERSION in csrc/core_api.h.
CORE_VERSION = 1

if lib.os_core_version() != CORE_VERSION:  # pragma: no cover - broken install
    raise ImportError(
        f"orchestrator_spawn: C core version {lib.os_core_version()} does not match "
        f"the Python package (expects {CORE_VERSION}); reinstall the package"
    )

# --- spawn --------------------------------------------------------------------


# --- redaction ----------------------------------------------------------------

import errno as _errno  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

REDACT_IGNORE_CASE: int = lib.OS_REDACT_IGNORE_CASE
_REDACT_E_COMPILE: int = lib.OS_REDACT_E_COMPILE
_REDACT_E_EMPTY_MATCH: int = lib.OS_REDACT_E_EMPTY_MATCH


class PatternSet:
    """An immutable compiled pattern set (``os_pattern_set``), shareable by
    redactors of many threads. Freed when the last reference goes away."""

    __slots__ = ("__weakref__", "_ptr", "size")

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
        self._ptr = ffi.gc(out[0], lib.os_pattern_set_free)
        self.size = len(entries)

    def anchor(self, index: int) -> tuple[int, int, int]:
        """(number of anchor literals, min offset, max offset) of entry ``index``;
        0 literals means the entry is searched without a prefilter."""
        dmin = ffi.new("uint32_t *")
        dmax = ffi.new("uint32_t *")
        n = lib.os_pattern_set_anchor(self._ptr, index, dmin, dmax)
        if n < 0:
            raise IndexError(index)
        return int(n), int(dmin[0]), int(dmax[0])


def _raise_pattern_error(
    rc: int, entries: list[bytes], n_patterns: int, index: int, offset: int, msg: bytes
) -> None:
    if rc == -_errno.ENOMEM:
        raise MemoryError("orchestrator_spawn: out of memory compiling redaction patterns")
    kind = "pattern" if index < n_patterns else "literal"
    what = entries[index] if index < len(entries) else b"?"
    text = msg.decode("utf-8", "replace")
    if rc == _REDACT_E_EMPTY_MATCH:
        hint = " (or a look-ahead hides its width)" if "look-ahead" in text else ""
        raise ValueError(f"redaction {kind} {what!r} can match the empty string{hint}")
    if rc == _REDACT_E_COMPILE:
        raise ValueError(f"redaction {kind} {what!r} does not compile: {text} (at offset {offset})")
    raise OSError(-rc, f"os_pattern_set_new failed: {_errno.errorcode.get(-rc, rc)}")


class NativeRedactor:
    """One stream's redactor (``os_redactor``): one thread at a time.

    ``feed``/``finish`` run in C with the GIL released and return the bytes
    decided so far. Raises ``MemoryError`` when the engine runs out of memory
    and ``ValueError`` after ``finish``."""

    __slots__ = ("_lenp", "_ptr", "_set")

    def __init__(self, pattern_set: PatternSet, replacement: bytes, max_hold: int) -> None:
        ptr = lib.os_redactor_new(pattern_set._ptr, replacement, len(replacement), max_hold)
        if ptr == ffi.NULL:
            raise MemoryError("orchestrator_spawn: out of memory creating a redactor")
        self._ptr = ffi.gc(ptr, lib.os_redactor_free)
        self._set = pattern_set  # the set must outlive the redactor
        self._lenp = ffi.new("size_t *")

    def _take(self, rc: int, call: str) -> bytes:
        if rc == -_errno.ENOMEM:
            raise MemoryError(f"orchestrator_spawn: out of memory in {call}")
        if rc == -_errno.EINVAL:
            raise ValueError(f"{call} after finish()")
        if rc != 0:
            raise OSError(-rc, f"{call} failed")
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

    @property
    def held(self) -> int:
        """Bytes fed but not yet decided."""
        return int(lib.os_redactor_held(self._ptr))


# --- pump ---------------------------------------------------------------------


# --- sandbox ------------------------------------------------------------------
