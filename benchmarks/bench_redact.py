"""Redaction throughput: the C engine against Python ``re`` in the same run.

Corpus: ``redact_corpus.log_corpus`` (seeded mixed log text, a planted secret
per ~10 KiB, multi-line private keys) redacted with the 28-pattern pack plus
3 literals; and an adversarial corpus with a decoy anchor every ~10 bytes.
The same corpora are also redacted with the built-in pack
(``orchestrator_spawn.patterns``, the default of the runner, CLI and pump),
whose key=value, flag and header patterns are anchored on literals inside
lookbehinds: its own group, "pack ...". A second workload written
independently of both (``redact_corpus_web``: web and config logs, public
token formats with short anchors such as ``sk``, ``eyJ`` and ``://``,
URL credentials and query-string secrets, key=value lines) is the group
"web ...", with and without one unanchored pattern.

Real numbers (64 MiB corpus, Python ``re`` on an 8 MiB slice because it runs
at a few MB/s)::

    python -m pytest benchmarks/bench_redact.py --benchmark-enable -s

Sizes: ``REDACT_BENCH_MB`` (engine corpus), ``REDACT_BENCH_RE_MB`` (Python
``re`` slice), ``REDACT_BENCH_PACK_RE_MB`` (Python ``re`` slice for the
built-in pack, 2 MiB: it runs at ~2 MB/s), ``REDACT_BENCH_ADV_MB``
(adversarial), ``REDACT_BENCH_WEB_MB`` / ``REDACT_BENCH_WEB_RE_MB`` (the web
workload, 64 MiB / 4 MiB). ``OS_REDACT_SCAN=scalar|ssse3|avx2|neon`` forces
the engine's literal scan loop (the scalar one is what CPUs without the SIMD
loops get). The built-in pack's output is checked against ``re.sub`` on
the WHOLE corpus (about half a minute of Python ``re`` for 64 MiB, once per
run). In the CI smoke mode
(``--benchmark-disable``, the default) everything is 1 MiB or less. Every
engine result is checked byte for byte against ``re.sub`` on the same data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.redact_corpus import (
    LITERALS,
    PATTERNS,
    UNANCHORED,
    adversarial_corpus,
    combined,
    log_corpus,
    reference,
)
from benchmarks.redact_corpus_web import PATTERNS as WEB_PATTERNS
from benchmarks.redact_corpus_web import UNANCHORED as WEB_UNANCHORED
from benchmarks.redact_corpus_web import reference as web_reference
from benchmarks.redact_corpus_web import web_corpus
from orchestrator_spawn import Redactor, redact
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

PACK: tuple[bytes, ...] = tuple(p.encode() for p in DEFAULT_REDACTION_PATTERNS)
MIB = 1 << 20
CHUNK = 64 * 1024
REP = b"[REDACTED]"
_results: dict[str, tuple[float, int]] = {}  # name -> (median seconds, bytes)


def _size(request: pytest.FixtureRequest, env: str, enabled_mib: float, smoke_bytes: int) -> int:
    if env in os.environ:
        return int(float(os.environ[env]) * MIB)
    return int(enabled_mib * MIB) if _enabled(request) else smoke_bytes


def _enabled(request: pytest.FixtureRequest) -> bool:
    # --benchmark-disable is in the default addopts; --benchmark-enable wins.
    return bool(request.config.getoption("benchmark_enable", False))


@pytest.fixture(scope="module")
def corpus(request: pytest.FixtureRequest) -> bytes:
    return log_corpus(_size(request, "REDACT_BENCH_MB", 64, MIB))


@pytest.fixture(scope="module")
def corpus_expected(corpus: bytes) -> bytes:
    return reference(corpus, PATTERNS, LITERALS)


@pytest.fixture(scope="module")
def re_slice(request: pytest.FixtureRequest, corpus: bytes) -> bytes:
    return corpus[: _size(request, "REDACT_BENCH_RE_MB", 8, MIB)]


@pytest.fixture(scope="module")
def pack_expected(corpus: bytes) -> bytes:
    return reference(corpus, PACK)


@pytest.fixture(scope="module")
def pack_re_slice(request: pytest.FixtureRequest, corpus: bytes) -> bytes:
    return corpus[: _size(request, "REDACT_BENCH_PACK_RE_MB", 2, 256 * 1024)]


@pytest.fixture(scope="module")
def adversarial(request: pytest.FixtureRequest) -> bytes:
    return adversarial_corpus(_size(request, "REDACT_BENCH_ADV_MB", 4, 256 * 1024))


def _run(benchmark: Any, name: str, fn: Callable[[], bytes], size: int, rounds: int) -> bytes:
    result: bytes = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        _results[name] = (benchmark.stats.stats.median, size)
    return result


def _stream(
    data: bytes, patterns: tuple[bytes, ...] = PATTERNS, literals: tuple[bytes, ...] = LITERALS
) -> bytes:
    """Feed 64 KiB chunks and keep the output (for the identity check)."""
    redactor = Redactor(patterns, literals=literals)
    view = memoryview(data)
    out = [redactor.feed(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    out.append(redactor.finish())
    return b"".join(out)


def _stream_to_sink(
    data: bytes, patterns: tuple[bytes, ...] = PATTERNS, literals: tuple[bytes, ...] = LITERALS
) -> int:
    """Feed 64 KiB chunks the way a pipe pump does: each output chunk is
    written out and dropped (here: counted), never accumulated."""
    redactor = Redactor(patterns, literals=literals)
    view = memoryview(data)
    written = 0
    for i in range(0, len(data), CHUNK):
        written += len(redactor.feed(view[i : i + CHUNK]))
    return written + len(redactor.finish())


def test_engine_whole_buffer(benchmark: Any, corpus: bytes, corpus_expected: bytes) -> None:
    out = _run(
        benchmark,
        "engine whole",
        lambda: redact(corpus, PATTERNS, literals=LITERALS),
        len(corpus),
        9,
    )
    assert out == corpus_expected
    assert out.count(REP) >= len(corpus) // 20_000


def _bench_streamed(
    benchmark: Any,
    label: str,
    data: bytes,
    expected: bytes,
    patterns: tuple[bytes, ...] = PATTERNS,
    literals: tuple[bytes, ...] = LITERALS,
) -> None:
    """Times ``_stream_to_sink`` (9 rounds) and checks the streamed output."""
    written = benchmark.pedantic(
        lambda: _stream_to_sink(data, patterns, literals), rounds=9, iterations=1, warmup_rounds=1
    )
    if benchmark.stats is not None:
        _results[label] = (benchmark.stats.stats.median, len(data))
    assert written == len(expected)
    assert _stream(data, patterns, literals) == expected


def test_engine_streamed_64k(benchmark: Any, corpus: bytes, corpus_expected: bytes) -> None:
    _bench_streamed(benchmark, "engine streamed 64 KiB", corpus, corpus_expected)


def _bench_engine(
    benchmark: Any, label: str, data: bytes, patterns: tuple[bytes, ...], rounds: int
) -> None:
    """Times the whole-buffer engine with ``LITERALS`` and checks it against ``reference``."""
    out = _run(
        benchmark, label, lambda: redact(data, patterns, literals=LITERALS), len(data), rounds
    )
    assert out == reference(data, patterns, LITERALS)


def test_engine_with_unanchored_pattern(benchmark: Any, corpus: bytes) -> None:
    # One pattern with no literal at all: the engine searches it alone, around
    # the runs of 40 class bytes its matches need.
    _bench_engine(benchmark, "engine whole + 1 unanchored", corpus, (*PATTERNS, UNANCHORED), 5)


def test_python_re_whole_buffer(benchmark: Any, re_slice: bytes) -> None:
    regex = combined(PATTERNS, LITERALS)
    out = _run(benchmark, "python re whole", lambda: regex.sub(REP, re_slice), len(re_slice), 3)
    assert out == redact(re_slice, PATTERNS, literals=LITERALS)


def test_engine_adversarial(benchmark: Any, adversarial: bytes) -> None:
    _bench_engine(benchmark, "engine adversarial", adversarial, PATTERNS, 5)


def test_python_re_adversarial(benchmark: Any, adversarial: bytes) -> None:
    regex = combined(PATTERNS, LITERALS)
    data = adversarial[: MIB // 2]
    out = _run(benchmark, "python re adversarial", lambda: regex.sub(REP, data), len(data), 3)
    assert out == redact(data, PATTERNS, literals=LITERALS)


# --- the built-in pack --------------------------------------------------------


def _bench_whole(
    benchmark: Any, label: str, data: bytes, patterns: tuple[bytes, ...], expected: bytes
) -> bytes:
    """Times whole-buffer ``redact`` without literals (9 rounds) and checks it."""
    out = _run(benchmark, label, lambda: redact(data, patterns), len(data), 9)
    assert out == expected
    return out


def test_pack_whole_buffer(benchmark: Any, corpus: bytes, pack_expected: bytes) -> None:
    out = _bench_whole(benchmark, "pack whole", corpus, PACK, pack_expected)
    # The pack covers a good part of the planted formats (and password= lines).
    assert out.count(REP) >= len(corpus) // 40_000


def test_pack_streamed_64k(benchmark: Any, corpus: bytes, pack_expected: bytes) -> None:
    _bench_streamed(benchmark, "pack streamed 64 KiB", corpus, pack_expected, PACK, ())


def test_pack_python_re_whole_buffer(benchmark: Any, pack_re_slice: bytes) -> None:
    regex = combined(PACK)
    data = pack_re_slice
    out = _run(benchmark, "pack python re whole", lambda: regex.sub(REP, data), len(data), 3)
    assert out == redact(data, PACK)


def test_pack_adversarial(benchmark: Any, adversarial: bytes) -> None:
    out = _run(
        benchmark, "pack adversarial", lambda: redact(adversarial, PACK), len(adversarial), 5
    )
    assert out == reference(adversarial, PACK)


def test_pack_python_re_adversarial(benchmark: Any, adversarial: bytes) -> None:
    regex = combined(PACK)
    data = adversarial[: MIB // 4]
    out = _run(benchmark, "pack python re adversarial", lambda: regex.sub(REP, data), len(data), 3)
    assert out == redact(data, PACK)


# --- the independent web/config workload ---------------------------------------


@pytest.fixture(scope="module")
def web(request: pytest.FixtureRequest) -> bytes:
    return web_corpus(_size(request, "REDACT_BENCH_WEB_MB", 64, MIB))


@pytest.fixture(scope="module")
def web_expected(web: bytes) -> bytes:
    return web_reference(web)


def test_web_whole_buffer(benchmark: Any, web: bytes, web_expected: bytes) -> None:
    out = _bench_whole(benchmark, "web whole", web, WEB_PATTERNS, web_expected)
    assert out.count(REP) >= len(web) // 10_000


def test_web_streamed_64k(benchmark: Any, web: bytes, web_expected: bytes) -> None:
    _bench_streamed(benchmark, "web streamed 64 KiB", web, web_expected, WEB_PATTERNS, ())


def test_web_with_unanchored_pattern(benchmark: Any, web: bytes) -> None:
    patterns = (*WEB_PATTERNS, WEB_UNANCHORED)
    out = _run(benchmark, "web whole + 1 unanchored", lambda: redact(web, patterns), len(web), 5)
    assert out == web_reference(web, patterns)


def test_web_python_re_whole_buffer(
    benchmark: Any, request: pytest.FixtureRequest, web: bytes
) -> None:
    regex = re.compile(b"(?i)" + b"|".join(b"(?:" + p + b")" for p in WEB_PATTERNS))
    data = web[: _size(request, "REDACT_BENCH_WEB_RE_MB", 4, 256 * 1024)]
    out = _run(benchmark, "web python re whole", lambda: regex.sub(REP, data), len(data), 3)
    assert out == redact(data, WEB_PATTERNS)


def test_zz_report(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    """Print MB/s (medians) and the ratios against Python ``re``."""
    with capsys.disabled():
        if not _results:
            print("\nredaction benchmark: smoke mode (no timings); use --benchmark-enable")
            return
        rate = {k: size / med / 1e6 for k, (med, size) in _results.items()}
        print("\nredaction throughput (median, MB/s; 1 MB = 10^6 bytes)")
        for name, mbs in rate.items():
            print(f"  {name:32s} {mbs:10.1f}  ({_results[name][1] / MIB:.1f} MiB)")
        base, adv = rate.get("python re whole"), rate.get("python re adversarial")
        for name in ("engine whole", "engine streamed 64 KiB", "engine whole + 1 unanchored"):
            if base and name in rate:
                print(f"  {name} / python re: {rate[name] / base:8.1f}x")
        if adv and "engine adversarial" in rate:
            print(f"  engine adversarial / python re: {rate['engine adversarial'] / adv:8.1f}x")
        base, adv = rate.get("pack python re whole"), rate.get("pack python re adversarial")
        for name in ("pack whole", "pack streamed 64 KiB"):
            if base and name in rate:
                print(f"  {name} / pack python re: {rate[name] / base:8.1f}x")
        if adv and "pack adversarial" in rate:
            print(f"  pack adversarial / pack python re: {rate['pack adversarial'] / adv:8.1f}x")
        base = rate.get("web python re whole")
        for name in ("web whole", "web streamed 64 KiB", "web whole + 1 unanchored"):
            if base and name in rate:
                print(f"  {name} / web python re: {rate[name] / base:8.1f}x")
        whole, streamed = rate.get("web whole"), rate.get("web streamed 64 KiB")
        if whole and streamed:
            print(f"  web whole / web streamed: {whole / streamed:8.2f}")
