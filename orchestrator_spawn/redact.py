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

import operator
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple, final

from orchestrator_spawn._native.redact import REDACT_IGNORE_CASE, NativeRedactor, PatternSet

__all__ = ["Redactor", "redact"]

_DEFAULT_REPLACEMENT = b"[REDACTED]"
_DEFAULT_MAX_HOLD = 65536
_BYTES_LIKE = (bytes, bytearray, memoryview)


class RedactionOptions(NamedTuple):
    """Checked redaction settings, as the engine takes them (internal)."""

    patterns: tuple[bytes, ...]
    literals: tuple[bytes, ...]
    replacement: bytes
    flags: int
    max_hold: int


def _entries(values: object, what: str) -> tuple[bytes, ...]:
    # A single str/bytes is iterable too (per character, or as ints): the
    # classic type confusion that would silently redact nothing useful.
    if isinstance(values, (str, *_BYTES_LIKE)):
        raise TypeError(
            f"redaction {what}s must be sequences of str or bytes, not one "
            f"{type(values).__name__} (write [{what}] for a single one)"
        )
    if not isinstance(values, Iterable):
        raise TypeError(
            f"redaction {what}s must be a sequence of str or bytes, not {type(values).__name__}"
        )
    entries = []
    for value in values:
        if isinstance(value, str):
            entries.append(value.encode("utf-8"))
        elif isinstance(value, _BYTES_LIKE):
            entries.append(bytes(value))
        else:
            raise TypeError(
                f"each redaction {what} must be str or bytes, not {type(value).__name__}"
            )
    return tuple(entries)


def check_options(
    patterns: object,
    literals: object,
    replacement: object,
    ignore_case: object,
    max_hold: object,
) -> RedactionOptions:
    """The one validation of redaction settings, for every entry point
    (``Redactor``, ``redact``, ``pump.Redaction``, ``start_capture``, the
    runner and ``run``).

    Raises ``TypeError`` for a single ``str``/``bytes`` where a sequence
    belongs, an entry that is neither, a ``replacement`` that is not bytes,
    an ``ignore_case`` that is not a bool or a ``max_hold`` that is not an
    int (``1.5``, ``True``); ``ValueError`` for a negative ``max_hold``.
    Patterns are not compiled here.
    """
    pats = _entries(patterns, "pattern")
    lits = _entries(literals, "literal")
    if not isinstance(replacement, _BYTES_LIKE):
        raise TypeError(f"replacement must be bytes, not {type(replacement).__name__}")
    if not isinstance(ignore_case, bool):
        raise TypeError(f"ignore_case must be a bool, not {type(ignore_case).__name__}")
    if isinstance(max_hold, bool):
        raise TypeError("max_hold must be an int (bytes), not bool")
    try:
        hold = operator.index(max_hold)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"max_hold must be an int (bytes), not {type(max_hold).__name__}") from None
    if hold < 0:
        raise ValueError(f"max_hold must be >= 0 bytes, got {hold}")
    flags = REDACT_IGNORE_CASE if ignore_case else 0
    return RedactionOptions(pats, lits, bytes(replacement), flags, hold)


@lru_cache(maxsize=64)
def compiled_patterns(
    patterns: tuple[bytes, ...], literals: tuple[bytes, ...], flags: int
) -> PatternSet:
    """The one cache of compiled pattern sets, for every user (``Redactor``,
    ``redact``, the pump, the runner): a set is compiled (and JIT-compiled)
    once. Sets are immutable and thread-safe: streams with the same patterns
    share one; each user keeps its set alive, so eviction is harmless."""
    return PatternSet(patterns, literals, flags)


@final
class Redactor:
    """Redacts one byte stream; feed it chunks in order.

    ``patterns``: regexes (``str`` is UTF-8 encoded); ``literals``: exact
    secret values, escaped by the engine; ``replacement``: the bytes written
    for each match; ``ignore_case``: ASCII case-insensitive matching;
    ``max_hold``: the most bytes held back while a match may still be growing
    (bytes). More undecided bytes than that, or a regex hitting its match
    limit, fail closed: those bytes become one ``replacement``, and the rest
    of a match that outgrew ``max_hold`` is suppressed as it arrives (matched
    over its first KiB and the last bytes suppressed: exact for a character
    class run up to a terminator, the shape of a secret).

    Raises ``ValueError`` naming a pattern that does not compile (with the
    error offset) or that can match the empty string, or a negative
    ``max_hold``; ``TypeError`` for one ``str``/``bytes`` given where a
    sequence belongs, or a setting of the wrong type (``max_hold=1.5``).
    A redactor serves one stream; different redactors may be used from
    different threads at once (the engine runs without the GIL).
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
        options = check_options(patterns, literals, replacement, ignore_case, max_hold)
        pattern_set = compiled_patterns(options.patterns, options.literals, options.flags)
        self._native = NativeRedactor(pattern_set, options.replacement, options.max_hold)
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
        """End of stream: returns the rest of the output, held bytes decided
        as ``re.sub`` would at the real end. Idempotent. A stream that was
        cut short must end with ``abort()`` instead."""
        with self._lock:
            if self._finished:
                return b""
            self._finished = True
            return self._native.finish()

    def abort(self) -> bytes:
        """The stream was cut short (its writer was killed, timed out,
        cancelled): returns the rest of the output, where the bytes still
        held because they may be the start of a secret become one
        ``replacement``, never clear text. Use it instead of ``finish()``
        whenever the stream did not reach its real end. Idempotent, and
        ``finish()`` after it returns nothing.

        A redactor dropped without ``finish()``/``abort()`` never emits what
        it holds.
        """
        with self._lock:
            if self._finished:
                return b""
            self._finished = True
            return self._native.abort()

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
