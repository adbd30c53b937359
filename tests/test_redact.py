"""The redaction engine: semantics, streaming, failure modes and resources."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.redact_corpus import (
    LITERALS,
    PATTERNS,
    adversarial_corpus,
    log_corpus,
    reference,
    secret_samples,
)
from orchestrator_spawn import Redactor, redact
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

PACK = tuple(p.encode() for p in DEFAULT_REDACTION_PATTERNS)
ROOT = Path(__file__).resolve().parent.parent
REP = b"[REDACTED]"


def stream(redactor: Redactor, data: bytes, size: int) -> bytes:
    out = [redactor.feed(data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + redactor.finish()


# --- semantics -------------------------------------------------------------


@pytest.mark.parametrize("secret", secret_samples(3, 60))
def test_every_secret_format_is_redacted(secret: bytes) -> None:
    line = b"2026-11-28 INFO loaded " + secret + b" ok\n"
    out = redact(line, PATTERNS, literals=LITERALS)
    assert out == reference(line, PATTERNS, LITERALS)
    assert REP in out
    assert secret not in out


def test_log_corpus_identical_to_re_sub_whole_and_streamed() -> None:
    data = log_corpus(1 << 20, seed=5)
    expected = reference(data, PATTERNS, LITERALS)
    assert expected.count(REP) > 50
    assert redact(data, PATTERNS, literals=LITERALS) == expected
    for size in (1 << 16, 4093, 100_000, 1 << 20):
        assert stream(Redactor(PATTERNS, literals=LITERALS), data, size) == expected


def test_adversarial_corpus_identical_to_re_sub() -> None:
    data = adversarial_corpus(1 << 18)
    assert redact(data, PATTERNS, literals=LITERALS) == reference(data, PATTERNS, LITERALS)


def test_leftmost_first_in_pattern_order() -> None:
    # Both patterns match at the same start: the first one given wins.
    data = b"xx abcdef yy"
    assert redact(data, [rb"abc", rb"abcdef"], replacement=b"#") == b"xx #def yy"
    assert redact(data, [rb"abcdef", rb"abc"], replacement=b"#") == b"xx # yy"
    # An earlier start beats pattern order.
    assert redact(data, [rb"cdef", rb"bc"], replacement=b"#") == b"xx a#def yy"


def test_literals_are_escaped_and_come_after_patterns() -> None:
    data = b"a.b+c a-b+c (x)"
    assert redact(data, literals=[b"a.b+c", b"(x)"], replacement=b"#") == b"# a-b+c #"
    assert redact(data, [rb"a\.b"], literals=[b"a.b+c"], replacement=b"#") == b"#+c a-b+c (x)"


def test_ignore_case_is_ascii_only() -> None:
    data = b"TOKEN=ghp_" + b"A" * 36 + b" \xc3\x89t\xc3\xa9 \xe9"
    out = redact(data, [rb"ghp_[a-z]{36}", rb"\xe9"], replacement=b"#")
    assert out == reference(data, [rb"ghp_[a-z]{36}", rb"\xe9"], replacement=b"#")
    assert out == b"TOKEN=# \xc3\x89t\xc3\xa9 #"
    # \xc9 is not the upper case of \xe9 for bytes.
    assert redact(b"\xc9", [rb"\xe9"]) == b"\xc9"
    assert (
        redact(b"GHP_" + b"a" * 36, [rb"ghp_[a-z]{36}"], ignore_case=False) == b"GHP_" + b"a" * 36
    )


def test_non_utf8_bytes_pass_through() -> None:
    data = bytes(range(256)) * 4 + b" AKIAABCDEFGHIJKLMNOP " + bytes(range(255, -1, -1))
    out = redact(data, PATTERNS, literals=LITERALS)
    assert out == reference(data, PATTERNS, LITERALS)
    assert out.startswith(bytes(range(256)) * 4)
    assert b"AKIA" not in out


def test_lookbehind_and_word_boundary_across_chunks() -> None:
    pats = [rb"(?<=key=)[a-z]{4}", rb"\bAKIA[0-9A-Z]{16}\b"]
    data = b"key=abcd xAKIAABCDEFGHIJKLMNOP AKIAABCDEFGHIJKLMNOP key=wxyz"
    expected = reference(data, pats)
    assert expected == b"key=[REDACTED] xAKIAABCDEFGHIJKLMNOP [REDACTED] key=[REDACTED]"
    for size in range(1, 12):
        assert stream(Redactor(pats), data, size) == expected


def test_start_anchor_only_at_stream_start() -> None:
    pats = [rb"^secret", rb"\Asecret"]
    data = b"secret and secret"
    for size in (1, 3, 100):
        assert stream(Redactor(pats), data, size) == b"[REDACTED] and secret"


def test_end_anchor_only_at_stream_end() -> None:
    pats = [rb"tail$"]
    for size in (1, 2, 100):
        assert stream(Redactor(pats), b"tail tail", size) == b"tail [REDACTED]"
        # $ also matches before a final newline, as in Python re.
        assert stream(Redactor(pats), b"tail\n", size) == b"[REDACTED]\n"


def test_lookbehind_anchor_is_found_before_the_decision_point() -> None:
    # The key arrives (and is emitted) in one chunk, its value in a later one:
    # the anchor literal lies before everything still held.
    pats = [rb"(?<=password=)\w+", rb"(?<=token: )\w+"]
    for data, key in ((b"xx password=hunter2 yy", b"password="), (b"a token: abc;", b"token: ")):
        expected = reference(data, pats)
        assert expected != data
        for size in range(1, len(data)):
            assert stream(Redactor(pats), data, size) == expected, size
        for cut in (data.index(key) + 3, data.index(key) + len(key)):
            redactor = Redactor(pats)
            first = redactor.feed(data[:cut])
            assert first == data[:cut]  # no match can start before the cut: nothing held
            assert first + redactor.feed(data[cut:]) + redactor.finish() == expected


def test_builtin_pack_on_the_log_corpus_whole_and_streamed() -> None:
    data = log_corpus(1 << 20, seed=9)
    expected = reference(data, PACK)
    assert expected.count(REP) > 30
    assert redact(data, PACK) == expected
    for size in (1 << 16, 4093, 333):
        assert stream(Redactor(PACK), data, size) == expected


def test_builtin_pack_on_the_adversarial_corpus() -> None:
    data = adversarial_corpus(1 << 17)
    assert redact(data, PACK) == reference(data, PACK)


# --- streaming ---------------------------------------------------------------


def test_clean_line_is_emitted_at_once() -> None:
    redactor = Redactor(PATTERNS, literals=LITERALS)
    line = b"2026-11-28T10:00:00Z INFO [api] request completed status=200\n"
    assert redactor.feed(line) == line
    assert redactor.held == 0


def test_only_a_possible_match_is_held() -> None:
    redactor = Redactor(PATTERNS, literals=LITERALS)
    assert redactor.feed(b"deploying with key AKIAABCD") == b"deploying with key "
    assert redactor.held == len(b"AKIAABCD")
    assert redactor.feed(b"EFGHIJKLMNOP done\n") == REP + b" done\n"
    assert redactor.finish() == b""


def test_near_miss_is_released_when_decided() -> None:
    redactor = Redactor(PATTERNS)
    assert redactor.feed(b"see ghp_abc") == b"see "
    assert redactor.feed(b" nothing\n") == b"ghp_abc nothing\n"


def test_finish_decides_everything() -> None:
    redactor = Redactor([rb"ab+"])
    assert redactor.feed(b"xxabbb") == b"xx"
    assert redactor.finish() == REP
    assert redactor.finish() == b""
    with pytest.raises(ValueError, match="after finish"):
        redactor.feed(b"more")


# --- failing closed ----------------------------------------------------------


def test_too_long_undecided_match_fails_closed() -> None:
    pats = [rb"BEGIN[\s\S]*?END"]
    redactor = Redactor(pats, max_hold=100)
    out = redactor.feed(b"ok BEGIN" + b"x" * 200)
    assert out == b"ok " + REP
    assert redactor.held == 0
    # Within max_hold the same pattern is exact.
    data = b"ok BEGIN" + b"x" * 50 + b"END!"
    assert stream(Redactor(pats, max_hold=100), data, 7) == b"ok " + REP + b"!"


def test_held_bytes_never_exceed_max_hold_plus_chunk() -> None:
    redactor = Redactor([rb"BEGIN[\s\S]*?END"], max_hold=1000)
    out = [redactor.feed(b"BEGIN")]
    for _ in range(100):
        out.append(redactor.feed(b"y" * 97))
        assert redactor.held <= 1000 + 97
    out.append(redactor.finish())
    assert b"yyy" not in out[0] + out[1] + out[2]
    assert REP in b"".join(out)


def test_catastrophic_pattern_is_bounded_and_fails_closed() -> None:
    data = b"start " + b"a" * 5000 + b"b"
    started = time.monotonic()
    out = redact(data, [rb"(a+)+$", rb"(?:a|a)*b(?:x|x)*y"])
    elapsed = time.monotonic() - started
    # Python re would run for ages; the match limit stops PCRE2 early.
    assert elapsed < 5.0, elapsed
    assert b"a" * 100 not in out
    assert REP in out


# --- bad input -----------------------------------------------------------------


def test_pattern_that_does_not_compile_is_named_with_offset() -> None:
    with pytest.raises(ValueError, match=r"pattern b'ab\(c' does not compile: .*at offset 4"):
        Redactor([rb"ok", rb"ab(c"])
    with pytest.raises(ValueError, match=r"pattern b'x\{2,1\}'"):
        redact(b"", [rb"x{2,1}"])


@pytest.mark.parametrize("pattern", [rb"a*", rb"(?:x|)", rb"\b", rb"(?=a)", rb"a?b?"])
def test_pattern_matching_empty_string_is_refused(pattern: bytes) -> None:
    with pytest.raises(ValueError, match="can match the empty string") as info:
        Redactor([rb"fine", pattern])
    assert repr(pattern) in str(info.value)


def test_empty_literal_is_refused() -> None:
    with pytest.raises(ValueError, match="literal b'' can match the empty string"):
        Redactor(literals=[b"x", b""])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_hold"):
        Redactor([rb"x"], max_hold=-1)
    with pytest.raises(TypeError):
        Redactor([rb"x"], replacement="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Redactor([3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sequences"):
        Redactor(rb"AKIA[0-9A-Z]{16}")  # type: ignore[arg-type]  # bytes, not a sequence


def test_str_patterns_and_no_patterns() -> None:
    assert redact(b"my hunter2", ["hunter\\d"], literals=["my"]) == REP + b" " + REP
    assert redact(b"nothing to do\xff") == b"nothing to do\xff"


# --- resources and threads ---------------------------------------------------


def test_memory_bounded_feeding_one_gib_without_newline() -> None:
    chunk = log_corpus(1 << 20, seed=11).replace(b"\n", b" ")
    redactor = Redactor(PATTERNS, literals=LITERALS)
    redactor.feed(chunk)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak_held = 0
    for _ in range(1023):
        out = redactor.feed(chunk)
        assert len(out) > len(chunk) // 2
        peak_held = max(peak_held, redactor.held)
    redactor.finish()
    growth = proc.memory_info().rss - before
    assert peak_held <= 65536
    assert growth < 32 << 20, growth


def test_redactors_in_parallel_threads() -> None:
    data = [log_corpus(1 << 20, seed=s) for s in (21, 22, 23, 24)]
    expected = [reference(d, PATTERNS, LITERALS) for d in data]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        results[i] = stream(Redactor(PATTERNS, literals=LITERALS), data[i], 8192)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(4)] == expected


_CHILD_CHECK = """
import sys
sys.path.insert(0, {root!r})
from benchmarks.redact_corpus import LITERALS, PATTERNS, log_corpus, adversarial_corpus, reference
from orchestrator_spawn import Redactor, redact
from tests.test_redact_props import SYNTH_PATTERNS, SYNTH_LITERALS
import random
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
PACK = [p.encode() for p in DEFAULT_REDACTION_PATTERNS]
for data in (log_corpus(1 << 19, seed=3), adversarial_corpus(1 << 16)):
    assert redact(data, PATTERNS, literals=LITERALS) == reference(data, PATTERNS, LITERALS)
    expected = reference(data, PACK)
    assert redact(data, PACK) == expected
    r = Redactor(PACK)
    out = b"".join(r.feed(data[i:i + 777]) for i in range(0, len(data), 777)) + r.finish()
    assert out == expected
g = random.Random(4)
for _ in range(300):
    pats = g.sample(SYNTH_PATTERNS, g.randrange(1, len(SYNTH_PATTERNS)))
    data = bytes(g.choice(b"ab:_-x= \\nAB1.") for _ in range(g.randrange(300)))
    r = Redactor(pats, literals=SYNTH_LITERALS)
    size = g.randrange(1, 20)
    out = b"".join(r.feed(data[i:i + size]) for i in range(0, len(data), size)) + r.finish()
    assert out == reference(data, pats, SYNTH_LITERALS), (pats, data)
print("checked")
"""


@pytest.mark.parametrize(
    "env",
    [{"OS_REDACT_DEBUG_ANCHORS": "1"}, {"OS_REDACT_SCALAR_SCAN": "1"}],
    ids=["debug-anchors", "scalar-scan"],
)
def test_engine_modes_in_a_child(env: dict[str, str]) -> None:
    # The debug mode aborts the process if any match lacks its anchor at the
    # claimed offset; the scalar mode checks the non-SIMD scanner.
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_CHECK.format(root=str(ROOT))],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.strip() == b"checked"


_SUBSET_TEXT = (
    b"id=42 user_name: Alice\tpass=S3cr3t!\nurl http://bob:pw@example.org/x \xff\xfe\n"
    b"Key = 'abc' key2=\"q w\" tail$ end.\nlast line\n"
)


@pytest.mark.parametrize(
    "pattern",
    [
        rb"\d+",
        rb"\w+=\S+",
        rb"\s+\w",
        rb"\bkey\d?\b",
        rb"[^\s=]+=",
        rb"p[a-z]{2}s?=",
        rb"(?P<k>[a-z]+)=(?P<v>\w+)",
        rb"(?<=user_)\w+",
        rb"(?<!\w)line",
        rb"\w+(?=:)",
        rb"\w+(?!\w|=)",
        rb"(?i:KEY)2",
        rb"(?-i:Key) =",
        rb"a.*?e",
        rb"\w{2,3}?",
        rb"line$",
        rb"\.\n",
        rb"[\x80-\xff]+",
        rb"http://[^:/]+:[^@]+@",
        rb"'[^']*'|\"[^\"]*\"",
    ],
)
def test_common_subset_behaves_like_python_re(pattern: bytes) -> None:
    for ignore_case in (True, False):
        expected = reference(_SUBSET_TEXT, [pattern], ignore_case=ignore_case)
        assert expected != _SUBSET_TEXT
        for size in (1, 5, 1000):
            redactor = Redactor([pattern], ignore_case=ignore_case)
            assert stream(redactor, _SUBSET_TEXT, size) == expected, (ignore_case, size)
