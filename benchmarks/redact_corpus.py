"""Pattern sets and the reference semantics for the redaction benchmarks and tests.

``PATTERNS`` is a realistic secret-scanner pack (real token formats, some
without a literal prefix) and ``LITERALS`` three exact secret values; both
stay inside the regex subset that PCRE2 and Python ``re`` share.
``reference`` is the semantics the engine must reproduce. The seeded corpora
(``log_corpus``, ``adversarial_corpus``, ``secret_samples``, ``log_lines``)
come from ``orchestrator_spawn._corpus``, the one generator that
``orchestrator-spawn bench`` uses too; they are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator_spawn._corpus import (
    LITERALS,
    adversarial_corpus,
    log_corpus,
    log_lines,
    secret_samples,
)

__all__ = [
    "LITERALS",
    "PATTERNS",
    "UNANCHORED",
    "adversarial_corpus",
    "combined",
    "log_corpus",
    "log_lines",
    "reference",
    "secret_samples",
]

PATTERNS: tuple[bytes, ...] = (
    # Cloud keys
    rb"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    rb"aws_secret_access_key\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}",
    rb"AIza[0-9A-Za-z_-]{35}",
    rb"GOCSPX-[A-Za-z0-9_-]{28}",
    rb"AccountKey=[A-Za-z0-9+/=]{86,88}",
    # VCS and package registries
    rb"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",
    rb"github_pat_[A-Za-z0-9_]{82}",
    rb"glpat-[A-Za-z0-9_-]{20}",
    rb"npm_[A-Za-z0-9]{36}",
    rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    rb"dckr_pat_[A-Za-z0-9_-]{27}",
    # Chat tokens and webhooks
    rb"xox[baprs]-[0-9A-Za-z-]{10,72}",
    rb"https://hooks\.slack\.com/services/T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/[A-Za-z0-9]{24}",
    rb"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}",
    # Payment and SaaS
    rb"\b(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{24,99}\b",
    rb"\bSK[0-9a-fA-F]{32}\b",
    rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    rb"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    rb"sq0csp-[0-9A-Za-z_-]{43}",
    rb"\bhvs\.[A-Za-z0-9_-]{24,}",
    # JWTs, auth headers
    rb"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    rb"Authorization:\s*Basic\s+[A-Za-z0-9+/=]{8,}",
    rb"\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*",
    # Private key blocks (multi-line)
    rb"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----[\s\S]{16,8192}?"
    rb"-----END[A-Z ]{0,20} PRIVATE KEY-----",
    # No literal prefix: the anchor is an inner factor
    rb"\b[0-9]{8,10}:AA[0-9A-Za-z_-]{33}\b",
    rb"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
    rb"\b[a-z][a-z0-9+.-]{1,15}://[^/\s:@]{1,64}:[^/\s:@]{1,64}@",
    # password=-style assignments
    rb"\b(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token)\s*[:=]\s*[\"']?[^\s\"',;]{4,}",
)

# A pattern with no usable literal at all: the engine searches it alone.
UNANCHORED = rb"\b[A-Za-z0-9+/]{40}\b"


def combined(
    patterns: Sequence[bytes], literals: Sequence[bytes] = (), ignore_case: bool = True
) -> re.Pattern[bytes]:
    """The reference regex: (?i)(?:p1)|...|(?:re.escape(lit1))|..."""
    parts = [b"(?:" + p + b")" for p in patterns] + [b"(?:" + re.escape(x) + b")" for x in literals]
    return re.compile((b"(?i)" if ignore_case else b"") + b"|".join(parts))


def reference(
    data: bytes,
    patterns: Sequence[bytes],
    literals: Sequence[bytes] = (),
    replacement: bytes = b"[REDACTED]",
    ignore_case: bool = True,
) -> bytes:
    """``re.sub`` over the combined alternation: the binding semantics."""
    if not patterns and not literals:
        return data
    return combined(patterns, literals, ignore_case).sub(replacement.replace(b"\\", b"\\\\"), data)
