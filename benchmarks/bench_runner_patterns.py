"""Throughput of the built-in secret pattern pack: native Redactor vs Python ``re``.

Run for numbers:
    python -m pytest benchmarks/bench_runner_patterns.py --benchmark-enable
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator_spawn import Redactor
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

LINE = (
    b"2026-11-28T04:22:01Z INFO worker=3 processed item id=123e4567-e89b-12d3 "
    b"status: ok, took 12ms; user: bob path=/var/lib/x\n"
)
DATA = LINE * 8000  # about 1 MB of ordinary log output, nothing to redact
CHUNK = 65536


def _native() -> bytes:
    redactor = Redactor(list(DEFAULT_REDACTION_PATTERNS))
    out = [redactor.feed(DATA[i : i + CHUNK]) for i in range(0, len(DATA), CHUNK)]
    out.append(redactor.finish())
    return b"".join(out)


_JOINED = re.compile(
    b"(?i)" + b"|".join(b"(?:" + p.encode() + b")" for p in DEFAULT_REDACTION_PATTERNS)
)


def _python_re() -> bytes:
    return _JOINED.sub(b"[REDACTED]", DATA)


@pytest.mark.parametrize("impl", [_native, _python_re], ids=["native", "python_re"])
def test_pack_throughput(benchmark: Any, impl: Any) -> None:
    result = benchmark(impl)
    assert result == DATA
