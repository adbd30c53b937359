"""Property tests: the streaming redactor equals ``re.sub`` over the combined
alternation, for random pattern subsets, corpora and chunkings."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.redact_corpus import LITERALS, PATTERNS, log_lines, reference, secret_samples
from orchestrator_spawn import Redactor, redact
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

SECRETS = secret_samples(7, 120)
LINES = log_lines(8, 300)
NOISE = [b"\xff\xfe", b"\x80abc\xc3", b"\n", b" ", b"=", b": ", b"\t", b"\xc3\xa9"]

# Synthetic patterns over a tiny alphabet, so that matches, overlaps and
# near-misses are frequent; together they exercise every construct the
# anchor extractor understands (and a few it must refuse).
SYNTH_PATTERNS: tuple[bytes, ...] = (
    rb"ab[:_]x{1,3}",
    rb"(?:ab|ba)+:",
    rb"\bx[ab]{2,4}\b",
    rb"(?<=:)ab+",
    rb"a(?=b:)",
    rb"x{2}(?:a|bb)?_",
    rb"[ab]{3}:-",
    rb"(?:a|b)x\w{0,2}-",
    rb"(?:ab){1,2}x",
    rb"a\s*[:=]\s*b+",
    rb":a_",
    rb"^ab",
    rb"ab$",
    rb"(?i:AB)x",
    rb"[^a\n]{2}ab",
    rb"b.{0,3}=x",
    rb"(?:xa|xb|x_)\d",
    rb"_{2,}x?a",
    rb"(?:a|bb|)x:",
    rb"(a)x(?:b|\1)",
    rb"\Bab:",
    rb"(?:ab|cd|ef|gh|ij|kl|mn|op|qr|st|uv|wx|yz|AB|CD|EF|GH)_",
    rb"x[\x41-\x43]b",
    rb"[ab]+x[ab]+",
    # Anchors taken from lookbehinds (the literal precedes the match).
    rb"(?<=ab:)x+",
    rb"(?:(?<=a=)|(?<=b_ ))[ab]{1,3}",
    rb"(?:(?<=ab)|(?<=b:a))[:_]",
    rb"x{1,2}(?<=_x)a",
)
SYNTH_LITERALS: tuple[bytes, ...] = (b"ab:", b"x-x", b"a.b", b"(a)")
SYNTH_ALPHABET = b"ab:_-x= \nAB1.\xff"


# The built-in pack (the runner's, CLI's and pump's default) and pieces that
# assemble its key=value, flag and header forms, cut anywhere: most of its
# patterns are anchored on literals inside lookbehinds, which precede the
# match and may arrive in an earlier chunk than the value.
PACK: tuple[bytes, ...] = tuple(p.encode() for p in DEFAULT_REDACTION_PATTERNS)
PACK_PIECES: tuple[bytes, ...] = (
    b"password",
    b"DB_PASSWORD",
    b"passwd",
    b"passphrase",
    b"secret",
    b"client_secret",
    b"aws_secret_access_key",
    b"private_key",
    b"api_key",
    b"x-api-key",
    b"apikey",
    b"access_key",
    b"token",
    b"GITHUB_TOKEN",
    b"tokens",
    b"=",
    b":",
    b" = ",
    b": ",
    b'":',
    b"'=",
    b"    ",
    b'"',
    b"'",
    b"--password ",
    b"--token ",
    b"--api-key ",
    b"--client-secret ",
    b"-",
    b"Authorization:",
    b" Basic ",
    b"Bearer ",
    b"bearer\t",
    b"https://",
    b"alice:s3cr3t@",
    b"AccountKey=",
    b"SharedAccessKey=",
    b"hunter2",
    b"S3cr3t-Value_42",
    b"abcdefghijklmnop0123456789",
    b"&x=1",
    b"\n",
)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)] if sizes else len(data)
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


def stream(redactor: Redactor, chunks: list[bytes]) -> bytes:
    return b"".join(redactor.feed(c) for c in chunks) + redactor.finish()


@st.composite
def log_corpus(draw: st.DrawFn) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(LINES),
                st.sampled_from(SECRETS),
                st.sampled_from(NOISE),
                # A secret cut short: a near miss that must be held, then released.
                st.sampled_from(SECRETS).flatmap(
                    lambda s: st.integers(1, len(s)).map(lambda n: s[:n])
                ),
                st.binary(max_size=12),
            ),
            max_size=40,
        )
    )
    return b"".join(parts)


chunk_sizes = st.one_of(
    st.just([1]),
    st.lists(st.integers(1, 9), min_size=1, max_size=8),
    st.lists(st.integers(1, 5000), min_size=1, max_size=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(st.sampled_from(PATTERNS), unique=True, min_size=1, max_size=len(PATTERNS)),
    literals=st.lists(st.sampled_from(LITERALS), unique=True, max_size=3),
    data=log_corpus(),
    sizes=chunk_sizes,
)
def test_realistic_pack_matches_reference(
    patterns: list[bytes], literals: list[bytes], data: bytes, sizes: list[int]
) -> None:
    expected = reference(data, patterns, literals)
    assert redact(data, patterns, literals=literals) == expected
    assert stream(Redactor(patterns, literals=literals), chunked(data, sizes)) == expected


@st.composite
def pack_corpus(draw: st.DrawFn) -> bytes:
    piece = st.one_of(
        st.sampled_from(PACK_PIECES),
        st.sampled_from(PACK_PIECES).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
        st.sampled_from(SECRETS),
        st.sampled_from(LINES),
        st.sampled_from(NOISE),
        st.binary(max_size=6),
    )
    return b"".join(draw(st.lists(piece, max_size=40)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.one_of(
        st.just(list(PACK)),
        st.lists(st.sampled_from(PACK), unique=True, min_size=1, max_size=len(PACK)),
    ),
    data=pack_corpus(),
    sizes=chunk_sizes,
)
def test_builtin_pack_matches_reference(
    patterns: list[bytes], data: bytes, sizes: list[int]
) -> None:
    expected = reference(data, patterns)
    assert redact(data, patterns) == expected
    assert stream(Redactor(patterns), chunked(data, sizes)) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(
        st.sampled_from(SYNTH_PATTERNS), unique=True, min_size=1, max_size=len(SYNTH_PATTERNS)
    ),
    literals=st.lists(st.sampled_from(SYNTH_LITERALS), unique=True, max_size=2),
    data=st.lists(st.sampled_from(list(SYNTH_ALPHABET)), max_size=300).map(bytes),
    sizes=chunk_sizes,
    ignore_case=st.booleans(),
)
def test_synthetic_patterns_match_reference(
    patterns: list[bytes],
    literals: list[bytes],
    data: bytes,
    sizes: list[int],
    ignore_case: bool,
) -> None:
    expected = reference(data, patterns, literals, ignore_case=ignore_case)
    redactor = Redactor(patterns, literals=literals, ignore_case=ignore_case)
    assert stream(redactor, chunked(data, sizes)) == expected


@settings(max_examples=60, deadline=None)
@given(secret=st.sampled_from(SECRETS), data=st.data())
def test_secret_split_at_every_point(secret: bytes, data: st.DataObject) -> None:
    prefix = data.draw(st.sampled_from([b"", b"x ", b"user=", b"\xff\xfe "]))
    whole = prefix + secret + b" tail\n"
    expected = reference(whole, PATTERNS, LITERALS)
    assert secret not in expected
    for cut in range(1, len(whole)):
        redactor = Redactor(PATTERNS, literals=LITERALS)
        assert stream(redactor, [whole[:cut], whole[cut:]]) == expected, cut


def test_replacement_is_taken_literally() -> None:
    data = b"key AKIAABCDEFGHIJKLMNOP end"
    rep = b"<\\1 & \\g<0>>"
    out = redact(data, PATTERNS, replacement=rep)
    assert out == b"key " + rep + b" end"
    assert out == reference(data, PATTERNS, replacement=rep)
    assert re.search(rb"AKIA", out) is None
