"""Seeded log-corpus generator shared by ``orchestrator-spawn bench`` and the
redaction benchmarks and tests (``benchmarks/redact_corpus.py`` re-exports it).

``log_corpus`` builds mixed log text with a planted secret every ~10 KiB and
a multi-line private-key block every ~1 MiB; ``adversarial_corpus`` puts a
decoy anchor (a literal that starts a pattern but never completes it) every
few bytes; ``secret_samples`` and ``log_lines`` hand out the pieces. The
secrets are real token formats (those of ``benchmarks/redact_corpus.PATTERNS``
and of the built-in pack) plus the three exact values in ``LITERALS``.

Same seed, same bytes: keep the output stable, benchmark numbers are compared
across versions on it.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

__all__ = ["LITERALS", "adversarial_corpus", "log_corpus", "log_lines", "secret_samples"]

LITERALS: tuple[bytes, ...] = (
    b"hunter2-prod-db-password",
    b"s3cr3t-deploy-key-0xDEADBEEF",
    b"corp+vpn.shared(secret)",
)


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


_ALNUM = string.ascii_letters + string.digits
_UPNUM = string.ascii_uppercase + string.digits
_URLSAFE = _ALNUM + "_-"
_HEX = "0123456789abcdef"


def _secret_makers() -> list[Callable[[random.Random], str]]:
    r = _rand
    return [
        lambda g: "AKIA" + r(g, _UPNUM, 16),
        lambda g: "aws_secret_access_key = " + r(g, _ALNUM + "/+", 40),
        lambda g: "AIza" + r(g, _URLSAFE, 35),
        lambda g: "GOCSPX-" + r(g, _URLSAFE, 28),
        lambda g: "DefaultEndpointsProtocol=https;AccountKey=" + r(g, _ALNUM + "+/", 86) + "==",
        lambda g: "ghp_" + r(g, _ALNUM, 36),
        lambda g: "github_pat_" + r(g, _ALNUM + "_", 82),
        lambda g: "glpat-" + r(g, _URLSAFE, 20),
        lambda g: "npm_" + r(g, _ALNUM, 36),
        lambda g: "pypi-AgEIcHlwaS5vcmc" + r(g, _URLSAFE, 60),
        lambda g: "dckr_pat_" + r(g, _URLSAFE, 27),
        lambda g: "xoxb-" + r(g, string.digits, 12) + "-" + r(g, _ALNUM, 24),
        lambda g: (
            "https://hooks.slack.com/services/T"
            + r(g, _UPNUM, 9)
            + "/B"
            + r(g, _UPNUM, 9)
            + "/"
            + r(g, _ALNUM, 24)
        ),
        lambda g: (
            "https://discord.com/api/webhooks/" + r(g, string.digits, 18) + "/" + r(g, _URLSAFE, 68)
        ),
        lambda g: "sk_live_" + r(g, _ALNUM, 32),
        lambda g: "SK" + r(g, _HEX, 32),
        lambda g: "SG." + r(g, _URLSAFE, 22) + "." + r(g, _URLSAFE, 43),
        lambda g: "shpat_" + r(g, _HEX, 32),
        lambda g: "sq0csp-" + r(g, _URLSAFE, 43),
        lambda g: "hvs." + r(g, _URLSAFE, 30),
        lambda g: (
            "eyJ" + r(g, _URLSAFE, 30) + ".eyJ" + r(g, _URLSAFE, 60) + "." + r(g, _URLSAFE, 43)
        ),
        lambda g: "Authorization: Basic " + r(g, _ALNUM + "+/", 24) + "==",
        lambda g: "Authorization: Bearer " + r(g, _ALNUM + "._-", 40),
        lambda g: str(g.randrange(10**8, 10**10)) + ":AA" + r(g, _URLSAFE, 33),
        lambda g: r(g, _HEX, 32) + "-us" + str(g.randrange(1, 30)),
        lambda g: "postgres://app_user:" + r(g, _ALNUM, 16) + "@db.internal:5432/app",
        lambda g: (
            g.choice(["password", "api_key", "secret", "auth_token"])
            + "="
            + r(g, _ALNUM + "!#%", 14)
        ),
        lambda g: g.choice(LITERALS).decode(),
    ]


def secret_samples(seed: int, n: int) -> list[bytes]:
    """``n`` secrets of the formats ``PATTERNS``/``LITERALS`` cover."""
    g = random.Random(seed)
    makers = _secret_makers()
    out = [g.choice(makers)(g).encode() for _ in range(n)]
    return [*out, _private_key(g).encode()]


def log_lines(seed: int, n: int) -> list[bytes]:
    """``n`` generated log lines (with some non-ASCII UTF-8)."""
    g = random.Random(seed)
    return [_log_line(g).encode() for _ in range(n)]


def _private_key(g: random.Random) -> str:
    body = "\n".join(_rand(g, _ALNUM + "+/", 64) for _ in range(g.randrange(8, 26)))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


_SERVICES = ["api", "worker", "scheduler", "auth", "billing", "gateway", "indexer", "mailer"]
_WORDS = [
    "request",
    "completed",
    "user",
    "session",
    "cache",
    "miss",
    "retry",
    "upstream",
    "timeout",
    "connection",
    "pool",
    "queue",
    "job",
    "started",
    "finished",
    "failed",
    "token",
    "refreshed",
    "password",
    "reset",
    "email",
    "sent",
    "secret",
    "rotation",
    "scheduled",
    "key",
    "loaded",
    "config",
    "reloaded",
    "shard",
    "replica",
    "leader",
    "elected",
    "disk",
    "usage",
    "memory",
    "pressure",
    "gc",
    "pause",
    "ms",
    "bytes",
    "records",
    "batch",
    "commit",
    "offset",
    "partition",
    "consumer",
    "lag",
]


def _log_line(g: random.Random) -> str:
    hms = f"{g.randrange(24):02d}:{g.randrange(60):02d}:{g.randrange(60):02d}"
    ts = f"2026-11-28T{hms}.{g.randrange(1000):03d}Z"
    level = g.choice(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
    svc = g.choice(_SERVICES)
    kind = g.randrange(7)
    if kind == 0:
        path = "/".join(
            g.choice(["v1", "users", "orders", "items", str(g.randrange(10**6))]) for _ in range(3)
        )
        msg = (
            f"{g.choice(['GET', 'POST', 'PUT'])} https://api.example.com/{path} "
            f"status={g.choice([200, 200, 201, 404, 500])} dur_ms={g.randrange(2000)} "
            f"ip=10.{g.randrange(256)}.{g.randrange(256)}.{g.randrange(256)}"
        )
    elif kind == 1:
        msg = " ".join(g.choice(_WORDS) for _ in range(g.randrange(5, 16)))
    elif kind == 2:
        msg = (
            f'{{"event":"{g.choice(_WORDS)}","user_id":{g.randrange(10**6)},'
            f'"trace":"{_rand(g, _HEX, 32)}","ok":{g.choice(["true", "false"])}}}'
        )
    elif kind == 3:
        msg = f"commit {_rand(g, _HEX, 40)} deployed to {g.choice(['prod', 'staging'])} by ci"
    elif kind == 4:
        msg = f"  at com.example.{g.choice(_SERVICES)}.Handler.run(Handler.java:{g.randrange(900)})"
    elif kind == 5:
        uuid = "-".join(_rand(g, _HEX, n) for n in (8, 4, 4, 4, 12))
        msg = f"request_id={uuid} key=user:{g.randrange(10**5)} token_ttl={g.randrange(3600)}s"
    else:
        msg = f"Übertragung fehlgeschlagen: {g.choice(_WORDS)} — réessayer \xa0({g.randrange(99)})"
    return f"{ts} {level} [{svc}] {msg}\n"


def log_corpus(size: int, seed: int = 1234) -> bytes:
    """About ``size`` bytes of log text (UTF-8 and a few raw non-UTF-8 bytes),
    with a planted secret every ~10 KiB and a private-key block every ~1 MiB."""
    g = random.Random(seed)
    pool = [_log_line(g).encode() for _ in range(4000)]
    pool.append(b"binary blob \xff\xfe\x80 not utf-8\n")
    makers = _secret_makers()
    out: list[bytes] = []
    total = 0
    next_secret = g.randrange(5000, 15000)
    next_key = g.randrange(500_000, 1_500_000)
    while total < size:
        lines = g.choices(pool, k=64)
        out.extend(lines)
        total += sum(map(len, lines))
        if total >= next_secret:
            secret = g.choice(makers)(g)
            line = f"{g.choice(_SERVICES)}: loaded credential {secret} from env\n".encode()
            out.append(line)
            total += len(line)
            next_secret = total + g.randrange(5000, 15000)
        if total >= next_key:
            block = (_private_key(g) + "\n").encode()
            out.append(block)
            total += len(block)
            next_key = total + g.randrange(500_000, 1_500_000)
    return b"".join(out)[:size]


_DECOYS = [
    b"AKIA",
    b"ghp_",
    b"eyJ",
    b"xoxb-",
    b"sk_live_",
    b":AA",
    b"-us",
    b"://",
    b"password",
    b"secret",
    b"Bearer ",
    b"npm_",
    b"-----BEGIN",
    b"hvs.",
    b"SG.",
]


def adversarial_corpus(size: int, seed: int = 99) -> bytes:
    """A decoy anchor every ~10 bytes: each starts a pattern's literal but the
    bytes after it never complete a match."""
    g = random.Random(seed)
    pieces = []
    for _ in range(2000):
        pieces.append(g.choice(_DECOYS) + b" " + _rand(g, "abc xyz", g.randrange(2, 9)).encode())
    unit = b"".join(pieces)
    return (unit * (size // len(unit) + 1))[:size]
