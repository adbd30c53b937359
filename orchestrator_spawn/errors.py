"""The exception tree: one root, subclasses mixing in the matching builtins."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DaemonPidGuardBlocked",
    "OrchestratorSpawnError",
    "PolicyError",
    "SandboxBackendError",
    "SpawnError",
]


class OrchestratorSpawnError(Exception):
    """Base of every error this package raises on purpose."""


class SpawnError(OrchestratorSpawnError, OSError):
    """The child failed before ``exec`` (or the spawn could not start at all).

    ``errno`` is the failing call's errno; ``stage`` names the step in the child
    that failed: ``"chdir"``, ``"setpgid"``, ``"setrlimit"``, ``"dup2"``,
    ``"sandbox"`` or ``"exec"`` (``"fork"`` when the fork itself failed).
    """

    def __init__(
        self,
        errno: int,
        message: str,
        *,
        stage: str,
        program: str | None = None,
    ) -> None:
        super().__init__(errno, message)
        self.stage = stage
        self.program = program

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_spawn_error, (self.errno, self.strerror, self.stage, self.program))


def _rebuild_spawn_error(errno: int, message: str, stage: str, program: str | None) -> SpawnError:
    return SpawnError(errno, message, stage=stage, program=program)


class PolicyError(OrchestratorSpawnError, ValueError):
    """A command or runner configuration is refused by the runner policy."""


class DaemonPidGuardBlocked(OrchestratorSpawnError, PermissionError):
    """A command would signal the orchestrator daemon's own PID.

    ``reason`` says why in words; ``matched_pattern`` is the guard pattern that
    matched the command.
    """

    def __init__(self, reason: str, matched_pattern: str) -> None:
        super().__init__(f"{reason} (matched pattern: {matched_pattern})")
        self.reason = reason
        self.matched_pattern = matched_pattern

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.matched_pattern))


class SandboxBackendError(OrchestratorSpawnError, RuntimeError):
    """A sandboxed spawn failed, classified the way the Rust runner did.

    ``reason_code`` is one of ``memory_limit_exceeded``, ``cpu_limit_exceeded``,
    ``processes_limit_exceeded``, ``open_files_limit_exceeded``,
    ``sandbox_backend_unavailable``, ``unsupported_backend_feature``.
    """

    def __init__(
        self,
        execution_profile: str,
        backend: str,
        event_type: str,
        reason_code: str,
        resource_kind: str | None = None,
        detail: str | None = None,
    ) -> None:
        message = (
            f"sandbox backend {backend!r} failed for execution profile "
            f"{execution_profile!r}: {event_type} ({reason_code}"
            + (f", resource={resource_kind}" if resource_kind else "")
            + ")"
            + (f": {detail}" if detail else "")
        )
        super().__init__(message)
        self.execution_profile = execution_profile
        self.backend = backend
        self.event_type = event_type
        self.reason_code = reason_code
        self.resource_kind = resource_kind
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.execution_profile,
                self.backend,
                self.event_type,
                self.reason_code,
                self.resource_kind,
                self.detail,
            ),
        )
