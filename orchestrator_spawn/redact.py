"""Redactor: placeholder until the C redaction engine lands."""

from __future__ import annotations

from typing import Any

from orchestrator_spawn._unimplemented import Unimplemented, missing


class Redactor(Unimplemented):
    _feature = "Redactor"


def redact(data: bytes, patterns: Any = (), **options: Any) -> bytes:
    missing("redact()")
