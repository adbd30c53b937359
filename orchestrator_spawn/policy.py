"""Runner policy checks: placeholder until the runner layer lands."""

from __future__ import annotations

from typing import Any

from orchestrator_spawn._unimplemented import missing


def enforce_runner_policy(runner: Any, command: str) -> None:
    missing("enforce_runner_policy()")


def guard_daemon_pid_kill(command: str, daemon_pid: int) -> None:
    missing("guard_daemon_pid_kill()")
