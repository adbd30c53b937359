"""Streaming secret redaction over byte streams (the C engine in ``csrc/redact*.c``).

The output of a :class:`Redactor` equals::

    re.sub(b"(?i)(?:p1)|(?:p2)|...|(?:re.escape(lit1))|...", replacement, whole_stream)

for every way the stream is cut into chunks (leftmost-first, non-overlapping,
patterns in the order given, literals after the patterns), as long as no
single match is longer than ``max_hold`` bytes. Patterns use PCRE2 syntax
over bytes (no UTF-8 decoding, ASCII case folding); the subset shared with
Python ``re`` behaves identically. Not in that subset: numbered
back-references (the combined reference regex renumbers groups), ``\\Z``
(PCRE2: before a final newline too), ``{,n}`` (PCRE2 10.42: literal text),
``\\v``/``\\h``/``\\K``/``\\Q..\\E``/verbs (PCRE2 only), inline global flags
not at the start (rejected by Python 3.11+), and repeated groups whose body
can match the empty string (``(\\b|a){1,3}``: the two engines backtrack
differently). A pattern whose backtracking exceeds PCRE2's match limit fails
closed instead of matching like ``re`` (see :class:`Redactor`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import final

from orchestrator_spawn._native import REDACT_IGNORE_CASE, NativeRedactor, PatternSet

__all__ = ["Redactor", "redact"]

_DEFAULT_REPLACEMENT = b"[REDACTED]"
_DEFAULT_MAX_HOLD = 65536


def _as_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"redaction {what} must be str or bytes, not {type(value).__name__}")


@lru_cache(maxsize=64)
def _pattern_set(
    patterns: tuple[bytes, ...], literals: tuple[bytes, ...], flags: int
) -> PatternSet:
    # Compiled sets are immutable and thread-safe: streams with the same
    # patterns share one (and its JIT code).
    return PatternSet(patterns, literals, flags)


@final
class Redactor:
    """Redacts one byte stream; feed it chunks in order.

    ``patterns``: regexes (``str`` is UTF-8 encoded); ``literals``: exact
    secret values, escaped by the engine; ``replacement``: the bytes written
    for each match; ``ignore_case``: ASCII case-insensitive matching;
    ``max_hold``: the most bytes held back while a match may still be growing
    (bytes). More undecided bytes than that, or a regex hitting its match
    limit, fail closed: those bytes become one ``replacement``, and matching
    starts afresh after them.

    Raises ``ValueError`` naming a pattern that does not compile (with the
    error offset) or that can match the empty string, or a negative
    ``max_hold``. A redactor serves one stream; different redactors may be
    used from different threads at once (the engine runs without the GIL).
    """

    __slots__ = ("_finished", "_lock", "_native")

    def __init__(
        self,
        patterns: Iterable[str | bytes] = (),
        *,
        literals: Iterable[str | bytes] = (),
        replacement: bytes = _DEFAULT_REPLACEMENT,
        ignore_case: bool = True,
        max_hold: int = _DEFAULT_MAX_HOLD,
    ) -> None:
        if isinstance(patterns, (str, bytes)) or isinstance(literals, (str, bytes)):
            raise TypeError("patterns and literals must be sequences of str or bytes, not one")
        pats = tuple(_as_bytes(p, "pattern") for p in patterns)
        lits = tuple(_as_bytes(x, "literal") for x in literals)
        if not isinstance(replacement, bytes):
            raise TypeError("replacement must be bytes")
        if max_hold < 0:
            raise ValueError(f"max_hold must be >= 0 bytes, got {max_hold}")
        flags = REDACT_IGNORE_CASE if ignore_case else 0
        self._native = NativeRedactor(_pattern_set(pats, lits, flags), replacement, max_hold)
        self._lock = threading.Lock()
        self._finished = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Add the next chunk; returns every output byte that is decided now
        (bytes that cannot be part of a match come out at once)."""
        with self._lock:
            if self._finished:
                raise ValueError("Redactor.feed() after finish()")
            return self._native.feed(chunk)

    def finish(self) -> bytes:
        """End of stream: returns the rest of the output. Idempotent."""
        with self._lock:
            if self._finished:
                return b""
            self._finished = True
            return self._native.finish()

    def _redact_whole(self, data: bytes | bytearray | memoryview) -> bytes:
        # redact(): all of data on this fresh redactor, then finished.
        with self._lock:
            if self._finished:
                raise ValueError("Redactor.feed() after finish()")
            self._finished = True
            return self._native.redact_whole(data)

    @property
    def held(self) -> int:
        """Bytes fed but not yet emitted, because a match may still cover them."""
        return self._native.held

    def __repr__(self) -> str:
        state = "finished" if self._finished else f"holding {self.held} bytes"
        return f"<Redactor {state}>"


def redact(
    data: bytes | bytearray | memoryview,
    patterns: Iterable[str | bytes] = (),
    *,
    literals: Iterable[str | bytes] = (),
    replacement: bytes = _DEFAULT_REPLACEMENT,
    ignore_case: bool = True,
    max_hold: int = _DEFAULT_MAX_HOLD,
) -> bytes:
    """Redact a whole buffer; same semantics and errors as :class:`Redactor`."""
    redactor = Redactor(
        patterns,
        literals=literals,
        replacement=replacement,
        ignore_case=ignore_case,
        max_hold=max_hold,
    )
    return redactor._redact_whole(data)
