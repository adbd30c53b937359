"""A second, independently written redaction workload: web and config logs.

Written without reference to the built-in pattern pack or to
``redact_corpus.py``, so that the engine is measured on work it was not
tuned for. ``PATTERNS`` are public token formats whose literal parts are
short and frequent in logs (``sk``, ``eyJ``, ``://``, ``key-``, ``sig=``,
``SG.``), URL credentials and query-string secrets, and key=value
assignments. ``web_corpus`` builds access-log lines with long URLs and query
strings, key=value configuration dumps, JSON request logs and stack traces;
secrets are planted every few KiB and decoys (the short literals without a
secret after them) are everywhere. ``UNANCHORED`` is a pattern without any
literal. ``reference`` is what the engine must reproduce (``re.sub`` over the
case-insensitive alternation).

Everything stays inside the regex subset that PCRE2 and Python ``re`` share.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence

PATTERNS: tuple[bytes, ...] = (
    # Source hosting and package registries.
    rb"gh[pousr]_[A-Za-z0-9]{36}",
    rb"github_pat_[A-Za-z0-9_]{82}",
    rb"glpat-[A-Za-z0-9_-]{20}",
    rb"npm_[A-Za-z0-9]{36}",
    rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    # Chat and mail.
    rb"xox[abposr]-[A-Za-z0-9-]{10,72}",
    rb"https://hooks\.slack\.com/services/T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/[A-Za-z0-9]{24}",
    rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    rb"key-[0-9a-z]{32}",
    # Payments and commerce.
    rb"[rs]k_(?:live|test)_[A-Za-z0-9]{24,99}",
    rb"SK[0-9a-f]{32}",
    rb"shp(?:at|ca|pa|ss)_[a-f0-9]{32}",
    # Cloud.
    rb"(?:AKIA|ASIA)[A-Z0-9]{16}",
    rb"AIza[0-9A-Za-z_-]{35}",
    rb"AccountKey=[A-Za-z0-9+/]{86}==",
    # Generic carriers: JWTs, bearer headers, URL user:password, query strings.
    rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
    rb"bearer [A-Za-z0-9._~+/-]{20,}=*",
    rb"://[A-Za-z0-9._%-]{1,64}:[^\s/@:]{3,128}@",
    rb"[?&](?:access_token|token|sig|signature|api_key|client_secret)=[^&\s\"'#]{8,}",
    # key=value configuration lines.
    rb"(?:password|passwd|secret|api_key|private_key)[ \t]*[=:][ \t]*[^\s,;]{6,}",
    rb"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----",
)

# No literal a scanner could look for: a standalone 40-character base64 run.
UNANCHORED: bytes = rb"\b[A-Za-z0-9+/]{40}\b"

REPLACEMENT = b"[REDACTED]"

_ALNUM = string.ascii_letters + string.digits
_LOWER_HEX = "0123456789abcdef"
_B64 = _ALNUM + "+/"
_URL = _ALNUM + "-_"


def reference(data: bytes, patterns: Sequence[bytes] = PATTERNS) -> bytes:
    """The specified result: ``re.sub`` over the alternation, ignoring case."""
    regex = re.compile(b"(?i)" + b"|".join(b"(?:" + p + b")" for p in patterns))
    return regex.sub(REPLACEMENT, data)


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _secret(rng: random.Random) -> str:
    kind = rng.randrange(20)
    if kind == 0:
        return "gh" + rng.choice("pousr") + "_" + _s(rng, _ALNUM, 36)
    if kind == 1:
        return "github_pat_" + _s(rng, _ALNUM + "_", 82)
    if kind == 2:
        return "glpat-" + _s(rng, _URL, 20)
    if kind == 3:
        return "npm_" + _s(rng, _ALNUM, 36)
    if kind == 4:
        return "pypi-AgEIcHlwaS5vcmc" + _s(rng, _URL, rng.randrange(50, 90))
    if kind == 5:
        return "xox" + rng.choice("abpors") + "-" + _s(rng, _ALNUM + "-", rng.randrange(20, 60))
    if kind == 6:
        return (
            "https://hooks.slack.com/services/T"
            + _s(rng, string.ascii_uppercase + string.digits, 9)
            + "/B"
            + _s(rng, string.ascii_uppercase + string.digits, 9)
            + "/"
            + _s(rng, _ALNUM, 24)
        )
    if kind == 7:
        return "SG." + _s(rng, _URL, 22) + "." + _s(rng, _URL, 43)
    if kind == 8:
        return "key-" + _s(rng, string.digits + string.ascii_lowercase, 32)
    if kind == 9:
        return rng.choice("rs") + "k_" + rng.choice(("live", "test")) + "_" + _s(rng, _ALNUM, 32)
    if kind == 10:
        return "SK" + _s(rng, _LOWER_HEX, 32)
    if kind == 11:
        return "shp" + rng.choice(("at", "ca", "pa", "ss")) + "_" + _s(rng, _LOWER_HEX, 32)
    if kind == 12:
        return rng.choice(("AKIA", "ASIA")) + _s(rng, string.ascii_uppercase + string.digits, 16)
    if kind == 13:
        return "AIza" + _s(rng, _URL, 35)
    if kind == 14:
        return "AccountKey=" + _s(rng, _B64, 86) + "=="
    if kind == 15:
        return "eyJ" + _s(rng, _URL, 20) + ".eyJ" + _s(rng, _URL, 40) + "." + _s(rng, _URL, 43)
    if kind == 16:
        return "Authorization: Bearer " + _s(rng, _ALNUM + "._-", 40)
    if kind == 17:
        return "postgres://svc_" + _s(rng, _ALNUM, 6) + ":" + _s(rng, _ALNUM, 16) + "@db.internal"
    if kind == 18:
        return "/v1/items?access_token=" + _s(rng, _ALNUM, 32) + "&page=2"
    return "password = " + _s(rng, _ALNUM + "!#%", 14)


_HOSTS = ("api.example.com", "cdn.example.net", "auth.example.org", "static.example.io")
_WORDS = (
    "skip",
    "task",
    "desk",
    "risk",
    "ask",
    "keyboard",
    "key-value",
    "monkey",
    "signal",
    "design",
    "assign",
    "sign",
    "token",
    "tokens",
    "eyJ",
    "sgx",
    "SGD",
    "akin",
    "asian",
    "shipping",
    "shop",
    "npm",
    "ghost",
    "xoxo",
    "bearer",
    "bear",
    "secretary",
    "passwords",
)


def _word(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_WORDS)
    return _s(rng, string.ascii_lowercase, rng.randrange(2, 10))


def _url(rng: random.Random) -> str:
    path = "/".join(_word(rng) for _ in range(rng.randrange(1, 6)))
    query = "&".join(
        f"{_word(rng)}={_s(rng, _ALNUM, rng.randrange(1, 12))}" for _ in range(rng.randrange(0, 5))
    )
    # Decoy query keys: the literal without a long enough value.
    if rng.random() < 0.3:
        query += ("&" if query else "") + rng.choice(("sig", "token", "api_key")) + "=" + "x" * 4
    return f"https://{rng.choice(_HOSTS)}/{path}" + (f"?{query}" if query else "")


def _line(rng: random.Random, ts: int) -> str:
    kind = rng.randrange(6)
    stamp = f"2024-05-{1 + ts % 28:02d}T{ts % 24:02d}:{ts % 60:02d}:{(ts * 7) % 60:02d}Z"
    if kind == 0:
        ip = ".".join(str(rng.randrange(256)) for _ in range(4))
        return (
            f'{ip} - - [{stamp}] "GET {_url(rng)} HTTP/1.1" {rng.choice((200, 301, 404, 500))} '
            f'{rng.randrange(100, 90000)} "{_url(rng)}" "Mozilla/5.0 (X11; Linux x86_64)"'
        )
    if kind == 1:
        pairs = " ".join(f"{_word(rng)}={_s(rng, _ALNUM, rng.randrange(1, 10))}" for _ in range(5))
        return f"{stamp} level=info svc={_word(rng)} {pairs} upstream={_url(rng)}"
    if kind == 2:
        return (
            f'{{"ts":"{stamp}","level":"debug","msg":"{_word(rng)} {_word(rng)} {_word(rng)}",'
            f'"url":"{_url(rng)}","ms":{rng.randrange(1, 999)},"id":"{_s(rng, _LOWER_HEX, 16)}"}}'
        )
    if kind == 3:
        key = _word(rng).upper()
        return f"{key}_{_word(rng).upper()}={_s(rng, _ALNUM, rng.randrange(1, 30))}"
    if kind == 4:
        where = f"/srv/app/{_word(rng)}/{_word(rng)}.py"
        return f'  File "{where}", line {rng.randrange(1, 900)}, in {_word(rng)}'
    return (
        f"{stamp} WARN {_word(rng)}: retrying {_url(rng)} ({rng.randrange(1, 5)}/5) sk={_word(rng)}"
    )


def web_corpus(size: int, seed: int = 17) -> bytes:
    """About ``size`` bytes of web/config log text with a planted secret
    every ~4 KiB, built from a pool of generated lines (fast for 64 MiB)."""
    rng = random.Random(seed)
    pool = [(_line(rng, i) + "\n").encode() for i in range(6000)]
    parts: list[bytes] = []
    total = 0
    while total < size:
        block = rng.choices(pool, k=40)
        line = bytearray(rng.choice(pool))
        at = rng.randrange(len(line))
        line[at:at] = (" " + _secret(rng) + " ").encode()
        block[rng.randrange(len(block))] = bytes(line)
        chunk = b"".join(block)
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:size]
