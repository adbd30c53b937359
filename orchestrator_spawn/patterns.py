"""The built-in secret pattern pack.

Each :class:`SecretPattern` names one well-known credential format. The
regexes stay inside the subset on which PCRE2 and Python's :mod:`re` agree
(ASCII classes, fixed-width lookbehind, bounded repeats), so that the
reference semantics of :class:`orchestrator_spawn.Redactor` (``re.sub`` over
the alternation of the patterns, case-insensitive by default) hold for them.
They are written to be correct when applied case-insensitively.

Design rules:

* No pattern can match the empty string. A secret's body is an unbounded
  repeat, so that a match covers the whole secret however long it is (a
  20 KiB private key, a 600-byte password): the redactor holds it up to its
  ``max_hold`` (64 KiB by default) and fails closed beyond. A token followed
  by an identifier character (``ghp_...`` then ``_suffix``) is still a
  token: fixed-length formats end with ``(?![A-Za-z0-9])``, not ``\\b``. Every
  repeat is over a character class that the text after it cannot continue,
  so nothing backtracks badly.
* Assignments (``password=...``, ``"api_key": "..."``, ``token: ...``)
  redact the *value*, never the key word: the key and separator sit in
  fixed-width lookbehinds (one per spelling and key length), behind a
  one- or two-character guard lookbehind so that the alternatives are only
  tried right after a ``=`` or ``:`` (and a blank). Python's ``re`` needs
  fixed-width lookbehind and has no ``\\K``, hence the enumeration. The longest lookbehind is
  :data:`MAX_LOOKBEHIND` bytes: a streaming matcher must keep at least that
  much already-emitted context to decide a match at a chunk boundary.
* Formats with a distinctive prefix (``ghp_``, ``AKIA``, ``xoxb-``...) are
  matched on their own, wherever they appear.
* Speed: the redaction engine runs each pattern only around occurrences of a
  literal that every match contains, a prefix such as ``ghp_`` or a literal
  inside a lookbehind such as the key word of an assignment (found by its end,
  which precedes the match). Every pattern here has one; a new pattern needs
  one too, or it costs a full scan of the stream
  (``tests/test_redact.py::test_anchors_found_for_the_builtin_pack``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "BUILTIN_PATTERNS",
    "DEFAULT_REDACTION_PATTERNS",
    "MAX_LOOKBEHIND",
    "SecretPattern",
    "pattern_by_name",
]


class SecretPattern(NamedTuple):
    """One named credential format: ``regex`` matches exactly what to hide."""

    name: str
    regex: str
    description: str


# The value after ``key=`` / ``key: ``: a quoted string (quotes included), or
# an unquoted run up to whitespace, a quote or a URL/list separator. Two or
# more blanks between separator and value are swallowed with the value; a
# single blank is kept (it is covered by the "key: " lookbehinds below).
_VALUE = (
    r"""(?:[ \t]{2,32}(?=\S))?"""
    r"""(?:"[^"\r\n]+"|'[^'\r\n]+'|["']?[^\s"'&,;]+)"""
)

# Spellings of the separator between a key and its value, each of fixed
# width: tight ("key=", "key\":", "key =") and with one blank after it.
_SEPARATORS = (r"[=:]", r"[\"'][=:]", r" [=:]")


def _assignment(keys: tuple[str, ...]) -> str:
    # Keys of equal length share one lookbehind (fixed width either way).
    by_length: dict[int, list[str]] = {}
    for key in keys:
        by_length.setdefault(len(key), []).append(re.escape(key))
    groups = [f"(?:{'|'.join(g)})" if len(g) > 1 else g[0] for g in by_length.values()]
    tight = "|".join(f"(?<={g}{sep})" for g in groups for sep in _SEPARATORS)
    spaced = "|".join(f"(?<={g}{sep} )" for g in groups for sep in _SEPARATORS)
    # The cheap guards come first: most positions fail on one or two bytes.
    return rf"(?:(?<=[=:])(?:{tight})|(?<=[=:] )(?:{spaced})){_VALUE}"


def _flag(flags: tuple[str, ...]) -> str:
    behinds = "|".join(f"(?<={re.escape(flag)} )" for flag in flags)
    return rf"(?<= )(?:{behinds})[^\s\"'-][^\s\"']*"


BUILTIN_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "private_key_block",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[A-Za-z0-9+/=\s:,.\-]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|[A-Za-z0-9+/=\s:,.\-]*)",
        "PEM/OpenSSH/PGP private key blocks (an unterminated block is hidden to its end)",
    ),
    SecretPattern(
        "url_credentials",
        r"(?<=://)[^\s/:@]+:[^\s/@]+(?=@)",
        "user:password in a URL (scheme and host are kept)",
    ),
    SecretPattern(
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])",
        "AWS access key id",
    ),
    SecretPattern(
        "github_token",
        r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,}",
        "GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens",
    ),
    SecretPattern(
        "github_fine_grained_pat",
        r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?![A-Za-z0-9])",
        "GitHub fine-grained personal access token",
    ),
    SecretPattern(
        "gitlab_token",
        r"\bgl(?:pat|dt|rt|ptt|ft|cbt|oas|imt|soat|ffct|agent)-[A-Za-z0-9_.\-]{20,}",
        "GitLab personal, deploy, runner, trigger, feed and agent tokens",
    ),
    SecretPattern(
        "slack_token",
        r"\bxox[abposre]-[A-Za-z0-9\-]{10,}",
        "Slack bot, user, app and refresh tokens",
    ),
    SecretPattern(
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+\-]{20,}",
        "Slack incoming webhook URL",
    ),
    SecretPattern(
        "discord_webhook",
        r"https://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api/webhooks/"
        r"[0-9]{17,20}/[A-Za-z0-9_\-]{60,68}",
        "Discord webhook URL",
    ),
    SecretPattern(
        "stripe_secret_key",
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}",
        "Stripe secret and restricted keys",
    ),
    SecretPattern(
        "stripe_webhook_secret",
        r"\bwhsec_[A-Za-z0-9]{32,}",
        "Stripe webhook signing secret",
    ),
    SecretPattern(
        "google_api_key",
        r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])",
        "Google API key",
    ),
    SecretPattern(
        "google_oauth_client_secret",
        r"\bGOCSPX-[A-Za-z0-9_\-]{28}(?![A-Za-z0-9_\-])",
        "Google OAuth client secret",
    ),
    SecretPattern(
        "google_oauth_access_token",
        r"\bya29\.[0-9A-Za-z_\-]{20,}",
        "Google OAuth access token",
    ),
    SecretPattern(
        "openai_api_key",
        r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}"
        r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})(?![A-Za-z0-9_\-])",
        "OpenAI project, service-account, admin and legacy API keys",
    ),
    SecretPattern(
        "anthropic_api_key",
        r"\bsk-ant-[a-z]{3,8}[0-9]{2}-[A-Za-z0-9_\-]{80,}",
        "Anthropic API and admin keys",
    ),
    SecretPattern(
        "huggingface_token",
        r"\bhf_[A-Za-z0-9]{34}(?![A-Za-z0-9])",
        "Hugging Face access token",
    ),
    SecretPattern(
        "npm_token",
        r"\bnpm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
        "npm access token",
    ),
    SecretPattern(
        "pypi_token",
        r"\bpypi-AgE[A-Za-z0-9_\-]{50,}",
        "PyPI / TestPyPI API token (macaroon)",
    ),
    SecretPattern(
        "dockerhub_pat",
        r"\bdckr_pat_[A-Za-z0-9_\-]{27}(?![A-Za-z0-9_\-])",
        "Docker Hub personal access token",
    ),
    SecretPattern(
        "digitalocean_token",
        r"\bdo[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9])",
        "DigitalOcean personal, OAuth and refresh tokens",
    ),
    SecretPattern(
        "hashicorp_vault_token",
        r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,}",
        "HashiCorp Vault service, batch and recovery tokens",
    ),
    SecretPattern(
        "terraform_cloud_token",
        r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,}",
        "Terraform Cloud / Enterprise API token",
    ),
    SecretPattern(
        "sendgrid_api_key",
        r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",
        "SendGrid API key",
    ),
    SecretPattern(
        "twilio_api_key",
        r"\bSK[0-9a-f]{32}(?![A-Za-z0-9])",
        "Twilio API key SID",
    ),
    SecretPattern(
        "shopify_token",
        r"\bshp(?:at|ca|pa|ss)_[a-f0-9]{32}(?![A-Za-z0-9])",
        "Shopify access, custom-app, private-app and shared-secret tokens",
    ),
    SecretPattern(
        "telegram_bot_token",
        r"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}(?![A-Za-z0-9_\-])",
        "Telegram bot token",
    ),
    SecretPattern(
        "age_secret_key",
        r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}(?![A-Za-z0-9])",
        "age encryption secret key",
    ),
    SecretPattern(
        "azure_storage_account_key",
        r"(?<=AccountKey=)[A-Za-z0-9+/]{86}==",
        "Azure storage account key in a connection string",
    ),
    SecretPattern(
        "azure_shared_access_key",
        r"(?<=SharedAccessKey=)[A-Za-z0-9+/]{43}=",
        "Azure Service Bus / Event Hubs shared access key in a connection string",
    ),
    SecretPattern(
        "jwt",
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
        "JSON Web Token (header.payload.signature)",
    ),
    SecretPattern(
        "authorization_header",
        r"(?<=authorization:)[ \t]{0,8}(?:(?:bearer|basic|token|digest)[ \t]{1,8})?"
        r"[^\s\"']{8,}",
        "the credentials of an HTTP Authorization header (the header name is kept)",
    ),
    SecretPattern(
        "bearer_token",
        r"(?<=bearer[ \t])(?=[A-Za-z._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}={0,2}",
        "a bearer token outside an Authorization header (must contain a digit)",
    ),
    SecretPattern(
        "password_assignment",
        _assignment(("password", "passwd", "passphrase")),
        "the value of password=, passwd:, passphrase = ... (also JSON/YAML/env forms)",
    ),
    SecretPattern(
        "secret_assignment",
        _assignment(("secret", "secret_key", "secretkey", "secret_access_key", "private_key")),
        "the value of secret=, client_secret:, aws_secret_access_key = ... ",
    ),
    SecretPattern(
        "api_key_assignment",
        _assignment(("api_key", "apikey", "api-key", "access_key")),
        "the value of api_key=, apikey:, x-api-key: ...",
    ),
    SecretPattern(
        "token_assignment",
        _assignment(("token",)),
        "the value of token=, access_token:, GITHUB_TOKEN= ...",
    ),
    SecretPattern(
        "secret_cli_flag",
        _flag(("--password", "--passwd", "--token", "--api-key", "--secret", "--client-secret")),
        "the value after --password, --token, --api-key ... given as a separate argument",
    ),
)

DEFAULT_REDACTION_PATTERNS: tuple[str, ...] = tuple(p.regex for p in BUILTIN_PATTERNS)
"""The regexes of :data:`BUILTIN_PATTERNS`, in order: the default of
``RunnerConfig.redaction_patterns`` and of the CLI."""

MAX_LOOKBEHIND: int = 20
"""The widest lookbehind in :data:`BUILTIN_PATTERNS`, in bytes
(``secret_access_key" :`` plus a blank); the tests check it."""


def pattern_by_name(name: str) -> SecretPattern:
    """Return the built-in pattern called ``name``; ``KeyError`` names unknown ones."""
    for pattern in BUILTIN_PATTERNS:
        if pattern.name == name:
            return pattern
    raise KeyError(f"no built-in secret pattern named {name!r}")
