"""The redaction slice, ``orchestrator_spawn._native.redact`` (``csrc/redact*.c``):
compiled pattern sets (their anchors and scan loops, the one cache of them)
and the whole-buffer path of the engine.

Every scan loop the CPU has (forced through ``OS_REDACT_SCAN``) must give
the ``re.sub`` result; the C-level differential test (``tests/native``, also
run for aarch64 under qemu by ``scripts/test-aarch64``) runs natively here;
``redact()`` (which writes its result once, into the final ``bytes``) gives
the same bytes as streaming and ``re.sub``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.redact_corpus import LITERALS
from benchmarks.redact_corpus import PATTERNS as LOG_PATTERNS
from benchmarks.redact_corpus_web import PATTERNS, UNANCHORED, reference, web_corpus
from orchestrator_spawn import Redactor, redact
from orchestrator_spawn._native.redact import REDACT_IGNORE_CASE, PatternSet
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

ROOT = Path(__file__).resolve().parent.parent.parent
REP = b"[REDACTED]"
PACK = tuple(p.encode() for p in DEFAULT_REDACTION_PATTERNS)


def _available_scanners() -> list[str]:
    found: list[str] = []
    for name in ("scalar", "ssse3", "avx2", "neon"):
        code = (
            "from orchestrator_spawn._native.redact import PatternSet;"
            "print(PatternSet((b'abc',), (), 1).scanner)"
        )
        env = {**os.environ, "OS_REDACT_SCAN": name}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        if out.stdout.strip() == name:
            found.append(name)
    return found


SCANNERS = _available_scanners()


# Prepended to the scripts below: feeds ``data`` in chunks of each size.
_STREAMED_LIKE_RE = """
from orchestrator_spawn import Redactor
def streamed_like_re(data, pats, expected, sizes):
    for size in sizes:
        r = Redactor(pats)
        out = b"".join(r.feed(data[i : i + size]) for i in range(0, len(data), size))
        assert out + r.finish() == expected, size
"""


def run_under_scanner(scanner: str, code: str) -> None:
    """Runs ``code`` in a new interpreter with the scan loop forced (the loop
    is chosen when a set is compiled, and a process caches compiled sets);
    it must print ``ok``."""
    env = {**os.environ, "OS_REDACT_SCAN": scanner}
    proc = subprocess.run(
        [sys.executable, "-c", _STREAMED_LIKE_RE + code],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_default_scanner_is_the_fastest_the_cpu_has() -> None:
    scanner = PatternSet((b"abc",), (), 1).scanner
    assert scanner in SCANNERS
    assert "scalar" in SCANNERS
    if "avx2" in SCANNERS:
        assert scanner == "avx2" or "OS_REDACT_SCAN" in os.environ
    if "neon" in SCANNERS:
        assert scanner == "neon" or "OS_REDACT_SCAN" in os.environ


@pytest.mark.parametrize("scanner", SCANNERS)
def test_every_scanner_gives_the_re_sub_result(scanner: str) -> None:
    code = f"""
import sys
from benchmarks.redact_corpus_web import PATTERNS, UNANCHORED, reference, web_corpus
from orchestrator_spawn import redact
from orchestrator_spawn._native.redact import PatternSet
assert PatternSet(PATTERNS, (), 1).scanner == {scanner!r}
data = web_corpus(300_000, seed=5)
for patterns in (PATTERNS, (*PATTERNS, UNANCHORED)):
    expected = reference(data, patterns)
    assert redact(data, patterns) == expected
    streamed_like_re(data, patterns, expected, (1000, 4096 + 3, 65536))
print("ok")
"""
    run_under_scanner(scanner, code)


def _pcre2_flags() -> tuple[list[str], list[str]]:
    for cfg, libs in (
        (["pcre2-config", "--cflags"], ["pcre2-config", "--libs8"]),
        (["pkg-config", "--cflags", "libpcre2-8"], ["pkg-config", "--libs", "libpcre2-8"]),
    ):
        try:
            return (
                subprocess.check_output(cfg, text=True).split(),
                subprocess.check_output(libs, text=True).split(),
            )
        except (OSError, subprocess.CalledProcessError):
            continue
    return [], ["-lpcre2-8"]


def test_native_differential_all_scanners_and_chunkings(tmp_path: Path) -> None:
    """tests/native/redact_diff.c: every scan loop of this CPU, the whole-buffer
    path and 8 chunkings give byte-identical outputs (the same program runs
    for aarch64 under qemu in scripts/test-aarch64)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    if not (ROOT / "csrc").is_dir():
        pytest.skip("needs the source tree's csrc/ (absent where an installed wheel is tested)")
    cflags, libs = _pcre2_flags()
    exe = tmp_path / "redact_diff"
    sources = ["tests/native/redact_diff.c"] + [
        f"csrc/{name}.c" for name in ("redact", "redact_anchor", "redact_scan")
    ]
    subprocess.run(
        [
            cc,
            "-O2",
            "-std=gnu11",
            "-D_GNU_SOURCE",
            "-Icsrc",
            *cflags,
            "-o",
            str(exe),
            *sources,
            *libs,
        ],
        cwd=ROOT,
        check=True,
    )
    proc = subprocess.run(
        [str(exe), "tests/native/redact_diff_patterns.txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    used = proc.stderr.split("scanners:")[1].split("\n")[0].split()
    assert used == SCANNERS
    lines = proc.stdout.splitlines()
    # 5 sets x 6 inputs x 8 chunkings, less byte-at-a-time feeds of the
    # largest input
    assert len(lines) == 5 * 6 * 8 - 5
    assert all(line.startswith("set ") and " fnv " in line for line in lines)


# --- the whole-buffer path ------------------------------------------------------


@pytest.mark.parametrize("replacement", [b"", b"#", REP, b"<" * 300])
def test_whole_buffer_equals_re_sub_and_streaming(replacement: bytes) -> None:
    import re

    data = web_corpus(200_000, seed=9)
    regex = re.compile(b"(?i)" + b"|".join(b"(?:" + p + b")" for p in PATTERNS))
    expected = regex.sub(replacement, data)
    assert redact(data, PATTERNS, replacement=replacement) == expected
    assert redact(bytearray(data), PATTERNS, replacement=replacement) == expected
    assert redact(memoryview(data)[1000:], PATTERNS, replacement=replacement) == regex.sub(
        replacement, data[1000:]
    )
    r = Redactor(PATTERNS, replacement=replacement)
    assert r.feed(data) + r.finish() == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", b""), (b"x", b"x"), (b"ghp_" + b"a" * 36, b"R"), (b"ab", b"ab")],
)
def test_whole_buffer_tiny_outputs(data: bytes, expected: bytes) -> None:
    # Outputs of 0 and 1 bytes do not go through a fresh bytes object
    # (CPython shares those).
    out = redact(data, PATTERNS, replacement=b"R")
    assert out == expected
    assert type(out) is bytes


def test_whole_buffer_fails_closed_like_one_feed() -> None:
    # A match growing past max_hold: the whole-buffer path fails closed the
    # way one feed of the same buffer does.
    data = b"start password=" + b"x" * 5000 + b" end\n" + b"eyJ" + b"a" * 40 + b".eyJ" + b"b" * 9000
    for hold in (0, 16, 1000):
        r = Redactor([rb"password=\S+", rb"eyJ[a-z]{8,}\.eyJ[a-z]*"], max_hold=hold)
        expected = r.feed(data) + r.finish()
        assert redact(data, [rb"password=\S+", rb"eyJ[a-z]{8,}\.eyJ[a-z]*"], max_hold=hold) == (
            expected
        )
        assert b"x" * 20 not in expected


def test_whole_buffer_unanchored() -> None:
    data = web_corpus(150_000, seed=3)
    patterns = (*PATTERNS, UNANCHORED)
    assert redact(data, patterns) == reference(data, patterns)


_FOLLOW_RUN_CODE = """
import re
from orchestrator_spawn import redact
# Follow checks after the anchor literal: a run of need bytes of a given
# length ("key-" then 32 of [0-9a-z]; "&token=" then 8 or more of a negated
# class that holds the bytes >= 0x80), a skip run then a need byte ("://"
# host ":"), a skip run then a need run ("x:y" then [a-z%]{0,70}[0-9]{5}).
# Runs of every length around the 16-byte steps and the caps, ended by a
# byte of the next class, a byte outside both (also >= 0x80) or the data.
pats = (
    rb"key-[0-9a-z]{32}",
    rb"&token=[^&\\s]{8,}",
    rb"zq[^\\s]{40}",
    rb"://[A-Za-z0-9._%-]{1,64}:[^\\s/@:]{3,128}@",
    rb"x:y[a-z%]{0,70}[0-9]{5}",
)
regex = re.compile(b"(?i)" + b"|".join(b"(?:" + p + b")" for p in pats))
run = bytes(b for p in zip(range(0x21, 0x7F), range(0x80, 0x100)) for b in p).replace(b"&", b"")
alnum = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
host = b"aZ9._%-" * 20
cases = []
for n in (0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 41, 47, 48, 63, 64, 65, 66, 80):
    for end in (b":pw1234@", b"/:pw1234@", b"\\x80:pw@x", b"\\xff", b" ", b"&", b"12345", b""):
        cases.append(b"key-" + (alnum * 3)[:n] + end)
        cases.append(b"a&token=" + (run * 2)[7 * n % 50 : 7 * n % 50 + n] + end)
        cases.append(b"zq" + (run * 2)[3 * n % 70 : 3 * n % 70 + n] + end)
        cases.append(b"://" + host[:n] + end)
        cases.append(b"x:y" + b"q%" * (n // 2) + b"1234"[: n % 5] + end)
data = b" ".join(cases) + b"key-" + alnum[:20]
for piece in cases + [data]:
    assert redact(piece, pats) == regex.sub(b"[REDACTED]", piece), piece
streamed_like_re(data, pats, regex.sub(b"[REDACTED]", data), (1, 7, 16, 61, 4096))
print("ok")
"""


@pytest.mark.parametrize("scanner", SCANNERS)
def test_follow_check_runs_match_re_sub(scanner: str) -> None:
    # The run measures of the follow check after an anchor (16 bytes at a
    # time with the SIMD scan loops, byte by byte with the scalar one)
    # against re.sub at every run-length boundary, whole and streamed.
    run_under_scanner(scanner, _FOLLOW_RUN_CODE)


_RUN_CODE = """
import random
import re
from orchestrator_spawn import redact
# Patterns without a literal whose matches hold a long class run: they are
# searched only where such a run is (at offset 0, 1-3 or 4-5 from the match
# start). Runs of every length around the minimum, next to bytes that end
# them (also >= 0x80), cut by the chunk boundaries and the end of the data.
pats = (
    rb"\\b[A-Za-z0-9+/]{40}\\b",
    rb"[xy]{1,3}[0-9]{16}[a-z]?",
    rb"\\d{4}-?\\d{16}",
    rb"[^\\s]{20,}#",
)
regex = re.compile(b"(?i)" + b"|".join(b"(?:" + p + b")" for p in pats))
rng = random.Random(7)
b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
parts = []
for n in (1, 15, 16, 17, 19, 20, 21, 39, 40, 41, 42, 63, 64, 65, 80):
    for lead in (b"", b"x", b"yy", b"xyx", b"1234", b"1234-", b"_", b"\\x80"):
        for end in (b" ", b"#", b"-", b"_", b"\\xff", b"\\n", b"a", b"5"):
            parts.append(lead + bytes(rng.choice(b64) for _ in range(n)) + end)
            parts.append(lead + b"".join(rng.choice((b"1", b"7", b"0")) for _ in range(n)) + end)
data = b"".join(parts) + bytes(rng.choice(b64) for _ in range(45))
for piece in parts[:400] + [data]:
    assert redact(piece, pats) == regex.sub(b"[REDACTED]", piece), piece
streamed_like_re(data, pats, regex.sub(b"[REDACTED]", data), (1, 7, 16, 61, 4096, 65536))
print("ok")
"""


@pytest.mark.parametrize("scanner", SCANNERS)
def test_unanchored_run_windows_match_re_sub(scanner: str) -> None:
    # Patterns without a literal anchor but with a long class repeat are
    # searched only around runs of that class (find_run / run_event).
    run_under_scanner(scanner, _RUN_CODE)


# --- anchors of a compiled set ----------------------------------------------


def test_anchors_found_for_the_pattern_pack() -> None:
    pset = PatternSet(LOG_PATTERNS, LITERALS, REDACT_IGNORE_CASE)
    anchors = [pset.anchor(i) for i in range(pset.size)]
    assert all(n > 0 for n, _, _ in anchors), anchors
    # Inner factors of patterns without a literal prefix, with their offsets.
    assert anchors[LOG_PATTERNS.index(rb"\b[0-9]{8,10}:AA[0-9A-Za-z_-]{33}\b")] == (1, 8, 10)
    assert anchors[LOG_PATTERNS.index(rb"\b[0-9a-f]{32}-us[0-9]{1,2}\b")] == (1, 32, 32)
    # A construct the extractor does not understand leaves the pattern unanchored.
    unanchored = PatternSet([rb"(?x) a b c", rb"\Qabc\E", rb"a|b(?#c)"], [], 0)
    assert [unanchored.anchor(i)[0] for i in range(3)] == [0, 0, 0]


def test_anchors_found_for_the_builtin_pack() -> None:
    # Every built-in pattern runs behind the literal prefilter; the
    # assignments, flags and headers through their lookbehinds' literals.
    pset = PatternSet(PACK, [], REDACT_IGNORE_CASE)
    anchors = {i: pset.anchor(i) for i in range(pset.size)}
    assert all(n > 0 for n, _, _ in anchors.values()), anchors
    by_end = [DEFAULT_REDACTION_PATTERNS[i] for i in anchors if pset.anchor_at_end(i)]
    assert len(by_end) >= 9, by_end
    for i in anchors:
        _, dmin, dmax = anchors[i]
        if pset.anchor_at_end(i):
            # A lookbehind's literal ends at or before the match start.
            assert dmin <= dmax <= 0, (DEFAULT_REDACTION_PATTERNS[i], anchors[i])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (rb"(?<=key=)\w+", (1, 0, 0)),
        (rb"(?<=ab|cde)x", (2, -1, 0)),  # "ab", and "cd" ending 1 byte before
        (rb"(?<=api_key[=:] )v", (2, 0, 0)),  # "api_key= ", "api_key: "
        # "token=" and "token:" (cut from "token: ", so ending 1 byte before)
        (rb"(?:(?<=token=)|(?<=token: ))v", (2, -1, 0)),
        (rb"x{1,3}(?<=xyz)v", (1, 1, 3)),
    ],
)
def test_lookbehind_anchor_offsets(pattern: bytes, expected: tuple[int, int, int]) -> None:
    pset = PatternSet([pattern], [], REDACT_IGNORE_CASE)
    assert pset.anchor(0) == expected
    assert pset.anchor_at_end(0)


# --- the one cache of compiled sets -------------------------------------------


def test_a_runners_patterns_compile_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner checks its patterns (a Redactor, before anything runs) and
    # the pump redacts with them: one compile (and JIT) of the set for both,
    # and for a Redactor or redact() with the same patterns afterwards.
    import asyncio

    from orchestrator_spawn import RunnerConfig, spawn_with_runner_and_capture

    compiled: list[tuple[bytes, ...]] = []
    real_init = PatternSet.__init__

    def counting_init(self: PatternSet, patterns: Any, literals: Any, flags: int) -> None:
        compiled.append(tuple(patterns))
        real_init(self, patterns, literals, flags)

    monkeypatch.setattr(PatternSet, "__init__", counting_init)
    # Patterns no other test uses, so that nothing is cached yet.
    own = rf"once-{os.getpid()}-{id(compiled)}=\w+"
    out, err = tmp_path / "out.log", tmp_path / "err.log"

    async def main() -> None:
        for _ in range(3):
            captured = spawn_with_runner_and_capture(
                RunnerConfig(),
                f"echo {own[:-3]}hunter2",
                tmp_path,
                out,
                err,
                redaction_patterns=[own],
            )
            assert await captured.child.wait() == 0
            await captured.output_capture.wait()

    asyncio.run(main())
    assert out.read_bytes() == b"[REDACTED]\n"
    assert redact(f"x {own[:-3]}abc".encode(), [own]) == b"x [REDACTED]"
    assert Redactor([own]).feed(b"") == b""
    assert compiled == [(own.encode(),)]
