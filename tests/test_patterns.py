"""The built-in secret pattern pack, checked with Python's ``re`` (the reference).

Secrets are assembled at run time from pieces so that no credential-shaped
literal sits in the repository (secret scanners would rightly complain).
Every pattern is applied the way the Redactor applies it: case-insensitively,
on bytes.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from orchestrator_spawn.patterns import (
    BUILTIN_PATTERNS,
    DEFAULT_REDACTION_PATTERNS,
    MAX_LOOKBEHIND,
    pattern_by_name,
)

if sys.version_info >= (3, 11):
    import re._parser as sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_parse


def alnum(n: int, seed: str = "aB3xY7kQ9m") -> str:
    """n characters from [A-Za-z0-9], deterministic."""
    return (seed * (n // len(seed) + 1))[:n]


def hexs(n: int) -> str:
    return ("0f3a9c7e21b5d84" * (n // 15 + 1))[:n]


B64 = "MIIEowIBAAKCAQEAx9Zr1+Kf/3bT"
GH = "gh" + "p_"
AGE_KEY = "AGE-SECRET-KEY-1" + ("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L" * 2)[:58]
PEM_BODY = "\n".join([B64 * 2, B64 * 2, B64[:20] + "=="])


def pem(kind: str, end: bool = True, body: str = PEM_BODY) -> str:
    text = f"-----BEGIN {kind}-----\n{body}\n"
    return text + (f"-----END {kind}-----" if end else "")


# A 20 KiB body: longer than any fixed bound a pattern could have had.
LONG_PEM_BODY = "\n".join([(B64 * 3)[:64]] * 320)
LONG_PASSWORD = ("Zq9-" * 150)[:600]


# name -> (positives as (text, exact secret that must be matched), negatives)
CASES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "private_key_block": (
        [
            (pem("RSA PRIVATE KEY"), pem("RSA PRIVATE KEY")),
            (pem("OPENSSH PRIVATE KEY"), pem("OPENSSH PRIVATE KEY")),
            (pem("PRIVATE KEY"), pem("PRIVATE KEY")),
            (pem("ENCRYPTED PRIVATE KEY"), pem("ENCRYPTED PRIVATE KEY")),
            (pem("PGP PRIVATE KEY BLOCK"), pem("PGP PRIVATE KEY BLOCK")),
            # A truncated block is hidden up to the end of its base64 body.
            ("log: " + pem("EC PRIVATE KEY", end=False) + "!", pem("EC PRIVATE KEY", end=False)),
            # However long the body (the redactor holds up to max_hold).
            (
                pem("RSA PRIVATE KEY", body=LONG_PEM_BODY),
                pem("RSA PRIVATE KEY", body=LONG_PEM_BODY),
            ),
            (
                pem("PRIVATE KEY", end=False, body=LONG_PEM_BODY) + "!",
                pem("PRIVATE KEY", end=False, body=LONG_PEM_BODY),
            ),
        ],
        [pem("PUBLIC KEY"), pem("CERTIFICATE"), "BEGIN RSA PRIVATE KEY without armour"],
    ),
    "url_credentials": (
        [
            ("clone https://alice:s3cr3t@example.com/x.git", "alice:s3cr3t"),
            ("DATABASE_URL=postgres://app:pa55w0rd@db:5432/app", "app:pa55w0rd"),
        ],
        [
            "git@github.com:org/repo.git",
            "https://alice@example.com/",
            "http://localhost:8080/path@x",
            "ssh://git@host:22/x",
        ],
    ),
    "aws_access_key_id": (
        [("key AKIA" + "IOSFODNN7EXAMPLE end", "AKIA" + "IOSFODNN7EXAMPLE")],
        ["AKIA" + "IOSFODNN7EXAMPL", "XAKIA" + "IOSFODNN7EXAMPLE", "AKIA" + "IOSFODNN7EXAMPLE1"],
    ),
    "github_token": (
        [
            (f"token {GH}{alnum(36)} ok", GH + alnum(36)),
            (f"gh{'s'}_{alnum(36)}", f"ghs_{alnum(36)}"),
            # An identifier character after the token does not hide it.
            (f"x={GH}{alnum(36)}_suffix", GH + alnum(36)),
            (f"{GH}{alnum(36)}-v2", GH + alnum(36)),
            # Longer than any fixed bound: the whole of it.
            (f"{GH}{alnum(300)} end", GH + alnum(300)),
        ],
        [GH + alnum(35), "ghx_" + alnum(36), "ghp-" + alnum(36)],
    ),
    "github_fine_grained_pat": (
        [("github_" + f"pat_{alnum(22)}_{alnum(59)}", "github_" + f"pat_{alnum(22)}_{alnum(59)}")],
        ["github_" + f"pat_{alnum(22)}_{alnum(58)}", "github_" + f"pat_{alnum(21)}_{alnum(59)}"],
    ),
    "gitlab_token": (
        [("glpat" + "-" + alnum(20), "glpat-" + alnum(20))],
        ["glpat" + "-" + alnum(19), "gltok" + "-" + alnum(20)],
    ),
    "slack_token": (
        [
            (
                "xoxb" + "-1234567890-1234567890123-" + alnum(24),
                "xoxb-1234567890-1234567890123-" + alnum(24),
            )
        ],
        ["xoxb" + "-123", "xoxz" + "-1234567890-1234567890123"],
    ),
    "slack_webhook": (
        [
            (
                "url=https://hooks.slack.com/services/T0000" + "0000/B00000000/" + alnum(24),
                "https://hooks.slack.com/services/T00000000/B00000000/" + alnum(24),
            )
        ],
        ["https://hooks.slack.com/services/", "https://api.slack.com/services/T00000000/B0000/xx"],
    ),
    "discord_webhook": (
        [
            (
                "https://discord.com/api/webhooks/123456789012345678/" + alnum(68),
                "https://discord.com/api/webhooks/123456789012345678/" + alnum(68),
            )
        ],
        ["https://discord.com/api/webhooks/1234/" + alnum(68)],
    ),
    "stripe_secret_key": (
        [
            ("sk_" + "live_" + alnum(24), "sk_live_" + alnum(24)),
            ("rk_" + "test_" + alnum(30), "rk_test_" + alnum(30)),
        ],
        ["pk_" + "live_" + alnum(24), "sk_" + "live_short"],
    ),
    "stripe_webhook_secret": (
        [("whsec" + "_" + alnum(32), "whsec_" + alnum(32))],
        ["whsec" + "_" + alnum(31)],
    ),
    "google_api_key": (
        [("key=AIza" + alnum(35) + "&q=1", "AIza" + alnum(35))],
        ["AIza" + alnum(34), "AIza" + alnum(36)],
    ),
    "google_oauth_client_secret": (
        [("GOCSPX" + "-" + alnum(28), "GOCSPX-" + alnum(28))],
        ["GOCSPX" + "-" + alnum(27)],
    ),
    "google_oauth_access_token": (
        [("ya29" + ".a0AfH6SMB" + alnum(40), "ya29.a0AfH6SMB" + alnum(40))],
        ["ya29" + ".short", "version ya29 is out"],
    ),
    "openai_api_key": (
        [
            ("sk-" + "proj-" + alnum(64), "sk-proj-" + alnum(64)),
            (
                "sk-" + alnum(20) + "T3BlbkFJ" + alnum(20),
                "sk-" + alnum(20) + "T3BlbkFJ" + alnum(20),
            ),
        ],
        ["sk-" + "proj-short", "sk-" + alnum(48)],
    ),
    "anthropic_api_key": (
        [("sk-" + "ant-api03-" + alnum(95), "sk-ant-api03-" + alnum(95))],
        ["sk-" + "ant-api03-short"],
    ),
    "huggingface_token": (
        [("hf" + "_" + alnum(34), "hf_" + alnum(34))],
        ["hf" + "_" + alnum(33), "hf" + "_" + alnum(35)],
    ),
    "npm_token": (
        [("//registry.npmjs.org/:_authToken=npm" + "_" + alnum(36), "npm_" + alnum(36))],
        ["npm" + "_" + alnum(35)],
    ),
    "pypi_token": (
        [("pypi" + "-AgEIcHlwaS5vcmc" + alnum(70), "pypi-AgEIcHlwaS5vcmc" + alnum(70))],
        ["pypi" + "-AgEshort", "pypi" + "-Abc" + alnum(70)],
    ),
    "dockerhub_pat": (
        [("dckr" + "_pat_" + alnum(27), "dckr_pat_" + alnum(27))],
        ["dckr" + "_pat_" + alnum(26)],
    ),
    "digitalocean_token": (
        [("dop" + "_v1_" + hexs(64), "dop_v1_" + hexs(64))],
        ["dop" + "_v1_" + hexs(63), "dox" + "_v1_" + hexs(64)],
    ),
    "hashicorp_vault_token": (
        [("VAULT_TOKEN hvs" + "." + alnum(90), "hvs." + alnum(90))],
        ["hvs" + ".short", "hvx" + "." + alnum(30)],
    ),
    "terraform_cloud_token": (
        [(alnum(14) + ".atlasv1." + alnum(67), alnum(14) + ".atlasv1." + alnum(67))],
        ["abc" + ".atlasv1." + alnum(67), alnum(14) + ".atlasv1.short"],
    ),
    "sendgrid_api_key": (
        [("SG" + "." + alnum(22) + "." + alnum(43), "SG." + alnum(22) + "." + alnum(43))],
        ["SG" + "." + alnum(22) + "." + alnum(42)],
    ),
    "twilio_api_key": (
        [("SK" + hexs(32), "SK" + hexs(32))],
        ["SK" + hexs(31), "SK" + "g" * 32],
    ),
    "shopify_token": (
        [("shpat" + "_" + hexs(32), "shpat_" + hexs(32))],
        ["shpat" + "_" + hexs(31)],
    ),
    "telegram_bot_token": (
        [("bot123456789:AA" + alnum(33) + "/getMe", "123456789:AA" + alnum(33))],
        ["123456789:AB" + alnum(33), "12:AA" + alnum(33)],
    ),
    "age_secret_key": (
        [(AGE_KEY, AGE_KEY)],
        ["AGE-SECRET-KEY-1" + "B" * 58, "AGE-SECRET-KEY-1" + "Q" * 57],
    ),
    "azure_storage_account_key": (
        [
            (
                "DefaultEndpointsProtocol=https;AccountName=x;AccountKey="
                + alnum(86)
                + "==;EndpointSuffix=core.windows.net",
                alnum(86) + "==",
            )
        ],
        ["AccountKey=short==", "AccountName=" + alnum(86) + "=="],
    ),
    "azure_shared_access_key": (
        [
            (
                "Endpoint=sb://x/;SharedAccessKeyName=R;SharedAccessKey=" + alnum(43) + "=",
                alnum(43) + "=",
            )
        ],
        ["SharedAccessKey=short="],
    ),
    "jwt": (
        [
            (
                "id_token=eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0In0.Sfl" + alnum(40) + " x",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.Sfl" + alnum(40),
            )
        ],
        ["eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.x"],
    ),
    "authorization_header": (
        [
            ("-H 'Authorization: Bearer abc.def-123456'", " Bearer abc.def-123456"),
            ("authorization: Basic dXNlcjpwYXNzd29yZA==", " Basic dXNlcjpwYXNzd29yZA=="),
        ],
        ["Authorization failed for user", "Authorization: none", "Authorization: Bearer\n"],
    ),
    "bearer_token": (
        [("curl -H Bearer abcdef0123456789xyz", "abcdef0123456789xyz")],
        ["the bearer of bad news", "bearer authentication-mechanisms"],
    ),
    "password_assignment": (
        [
            ("password=hunter2", "hunter2"),
            ("export DB_PASSWORD=s3cr3t!", "s3cr3t!"),
            ('{"password": "p@ss w0rd"}', '"p@ss w0rd"'),
            ("password: hunter2", "hunter2"),
            ("passwd = 'abc'", "'abc'"),
            ("Passphrase:   spaced", "   spaced"),
            ("GET /login?user=bob&password=xyz&x=1", "xyz"),
            # However long the value.
            (f"password={LONG_PASSWORD} next", LONG_PASSWORD),
            (f'"password": "{LONG_PASSWORD}"', f'"{LONG_PASSWORD}"'),
        ],
        [
            "password is required",
            "passwords: 3",
            "password=",
            "password:\nnext",
            'password=""',
            "password_hint=x",
        ],
    ),
    "secret_assignment": (
        [
            ("client_secret=abc123", "abc123"),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("secret_key: xyz", "xyz"),
        ],
        ["secrets: 3", "secretary=bob", "no secret here"],
    ),
    "api_key_assignment": (
        [
            ("api_key=abcd1234", "abcd1234"),
            ("x-api-key: abcdef", "abcdef"),
            ('{"apiKey":"12345"}', '"12345"'),
        ],
        ["api_keys=[]", "api-key-header: x", "the api key is rotated"],
    ),
    "token_assignment": (
        [
            ("GITHUB_TOKEN=abc123", "abc123"),
            ("access_token: xyz", "xyz"),
            ("?token=abc&x=1", "abc"),
        ],
        ["tokens: 5", "token_type=bearer", "max_tokens=100", "tokenizer: bert"],
    ),
    "secret_cli_flag": (
        [("mysql --password hunter2 db", "hunter2"), ("gh auth --token abc123", "abc123")],
        ["--password-file /x", "cmd --token", "cmd --password --verbose"],
    ),
}


def _compile(regex: str) -> re.Pattern[bytes]:
    return re.compile(regex.encode(), re.IGNORECASE)


def test_pack_has_at_least_25_distinct_named_patterns() -> None:
    names = [p.name for p in BUILTIN_PATTERNS]
    assert len(names) >= 25
    assert len(set(names)) == len(names)
    assert tuple(p.regex for p in BUILTIN_PATTERNS) == DEFAULT_REDACTION_PATTERNS


def test_every_pattern_has_cases() -> None:
    assert set(CASES) == {p.name for p in BUILTIN_PATTERNS}
    for name, (positives, negatives) in CASES.items():
        assert positives, name
        assert negatives, name


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=lambda p: p.name)
def test_pattern_is_ascii_and_never_matches_empty(pattern: Any) -> None:
    assert pattern.regex.isascii()
    compiled = _compile(pattern.regex)
    re.compile(pattern.regex, re.IGNORECASE)  # the str form compiles as well
    assert compiled.search(b"") is None
    for sample in (b" ", b"=", b": ", b"\n", b"x" * 50):
        match = compiled.search(sample)
        assert match is None or match.end() > match.start()


@pytest.mark.parametrize("name", sorted(CASES))
def test_positives_match_exactly_the_secret(name: str) -> None:
    compiled = _compile(pattern_by_name(name).regex)
    for text, secret in CASES[name][0]:
        match = compiled.search(text.encode())
        assert match is not None, (name, text)
        assert match.group().decode() == secret, (name, text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_near_misses_do_not_match(name: str) -> None:
    compiled = _compile(pattern_by_name(name).regex)
    for text in CASES[name][1]:
        assert compiled.search(text.encode()) is None, (name, text)


def _reference_redact(data: bytes) -> bytes:
    """The Redactor's reference semantics over the whole default pack."""
    joined = b"|".join(b"(?:" + p.encode() + b")" for p in DEFAULT_REDACTION_PATTERNS)
    return re.sub(b"(?i)" + joined, b"[REDACTED]", data)


def test_whole_pack_hides_every_secret_and_keeps_the_key_words() -> None:
    lines = [text for positives, _ in CASES.values() for text, _ in positives]
    out = _reference_redact("\n".join(lines).encode())
    for positives, _ in CASES.values():
        for _, secret in positives:
            # Quoted values and swallowed blanks are trimmed for the check.
            core = secret.strip().strip("'\"").encode()
            assert core not in out, secret
    for key in (b"password=", b"DB_PASSWORD=", b"client_secret=", b"api_key=", b"GITHUB_TOKEN="):
        assert key in out
    assert b"Authorization:[REDACTED]" in out


def test_whole_pack_leaves_ordinary_output_alone() -> None:
    ordinary = (
        b"Compiling orchestrator v0.1.0\n"
        b"commit 3f2a9c7e21b5d84f0a1b2c3d4e5f60718293a4b5\n"
        b"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
        b"uuid 123e4567-e89b-12d3-a456-426614174000, port 127.0.0.1:8080\n"
        b"tokens: 512, max_tokens=4096; password is required; see https://example.com/a@b\n"
        b"ERROR: Authorization failed\n"
    )
    assert _reference_redact(ordinary) == ordinary


def _lookbehind_widths(tree: Any) -> list[int]:
    widths: list[int] = []
    items = tree.data if isinstance(tree, sre_parse.SubPattern) else tree
    for item in items:
        if isinstance(item, sre_parse.SubPattern):
            widths += _lookbehind_widths(item)
            continue
        if not isinstance(item, tuple):
            continue
        op, av = item[0], item[1] if len(item) > 1 else None
        if op is sre_parse.ASSERT or op is sre_parse.ASSERT_NOT:
            assert av is not None
            direction, sub = av
            if direction < 0:
                widths.append(sub.getwidth()[1])
            widths += _lookbehind_widths(sub)
            continue
        stack = [av]
        while stack:
            value = stack.pop()
            if isinstance(value, sre_parse.SubPattern):
                widths += _lookbehind_widths(value)
            elif isinstance(value, (tuple, list)):
                stack.extend(value)
    return widths


def test_max_lookbehind_is_accurate() -> None:
    widths = [w for p in BUILTIN_PATTERNS for w in _lookbehind_widths(sre_parse.parse(p.regex))]
    assert max(widths) == MAX_LOOKBEHIND


def test_pattern_by_name_unknown() -> None:
    with pytest.raises(KeyError, match="no_such"):
        pattern_by_name("no_such")


def test_native_redactor_agrees_with_reference_in_any_chunking() -> None:
    import random

    from orchestrator_spawn import Redactor

    lines = [
        text
        for positives, negatives in CASES.values()
        for text in [t for t, _ in positives] + negatives
    ]
    data = ("\n".join(lines) + "\n").encode()
    expected = _reference_redact(data)
    whole = Redactor(list(DEFAULT_REDACTION_PATTERNS))
    assert whole.feed(data) + whole.finish() == expected
    rng = random.Random(20261128)
    for _ in range(50):
        redactor = Redactor(list(DEFAULT_REDACTION_PATTERNS))
        pieces, at = [], 0
        while at < len(data):
            size = rng.randint(1, 48)
            pieces.append(redactor.feed(data[at : at + size]))
            at += size
        pieces.append(redactor.finish())
        assert b"".join(pieces) == expected


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(pem("RSA PRIVATE KEY", body=LONG_PEM_BODY), id="pem-20KiB"),
        pytest.param(
            pem("PRIVATE KEY", end=False, body=LONG_PEM_BODY), id="pem-20KiB-unterminated"
        ),
        pytest.param("password=" + LONG_PASSWORD, id="password-600"),
        pytest.param(GH + alnum(36) + "_suffix", id="ghp-then-identifier"),
        pytest.param("AKIA" + "IOSFODNN7EXAMPLE_x", id="aws-then-identifier"),
        pytest.param("hf" + "_" + alnum(34) + "_x", id="hf-then-identifier"),
    ],
)
def test_streamed_pack_leaves_no_tail_of_a_long_secret(secret: str) -> None:
    from orchestrator_spawn import Redactor

    # "!" ends even an unterminated key block (its body swallows text).
    data = f"before\n{secret}\n!after\n".encode()
    for chunk in (1 << 20, 4096, 7):
        redactor = Redactor(list(DEFAULT_REDACTION_PATTERNS))
        out = b"".join(redactor.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
        out += redactor.finish()
        assert out == _reference_redact(data)
        assert out.startswith(b"before\n")
        assert out.endswith(b"!after\n")
        # No 12-byte run of the secret's material survives.
        body = secret.split("=", 1)[-1].replace("\n", "")
        for at in range(0, len(body) - 12, 97):
            piece = body[at : at + 12]
            if re.fullmatch(r"[A-Za-z0-9_+/\-]{12}", piece) and "suffix" not in piece:
                assert piece.encode() not in out.replace(b"\n", b""), piece
