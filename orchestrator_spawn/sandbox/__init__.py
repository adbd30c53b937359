"""Sandbox backends: placeholder until the sandbox lands."""

from __future__ import annotations

from typing import Any

from orchestrator_spawn._unimplemented import missing


def sandbox_preflight(resolved_profile: Any) -> list[str]:
    missing("sandbox_preflight()")
