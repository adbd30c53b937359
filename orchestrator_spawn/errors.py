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
    ``program`` and ``filename`` name the program.

    Like ``OSError(errno, ...)``, constructing one gives the subclass that is
    also the builtin of that errno: a ``SpawnError`` for ``ENOENT`` is a
    ``FileNotFoundError``, for ``EACCES`` a ``PermissionError``, and so on, so
    ``except FileNotFoundError`` works as with ``subprocess``.
    """

    def __new__(
        cls,
        errno: int,
        message: str,
        *,
        stage: str,
        program: str | None = None,
    ) -> SpawnError:
        if cls is SpawnError:
            cls = _spawn_error_class(errno)
        # OSError.__new__ sets errno, strerror and filename (our own __new__
        # means its __init__ does nothing).
        if program is None:
            return super().__new__(cls, errno, message)
        return super().__new__(cls, errno, message, program)

    def __init__(
        self,
        errno: int,
        message: str,
        *,
        stage: str,
        program: str | None = None,
    ) -> None:
        self.stage = stage
        self.program = program

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_spawn_error, (self.errno, self.strerror, self.stage, self.program))


# errno -> the SpawnError subclass that is also OSError's builtin for it.
_SPAWN_ERROR_CLASSES: dict[int, type[SpawnError]] = {}


def _spawn_error_class(errno: int) -> type[SpawnError]:
    found = _SPAWN_ERROR_CLASSES.get(errno)
    if found is not None:
        return found
    # OSError(errno, ...) picks the builtin subclass (FileNotFoundError, ...).
    builtin = type(OSError(errno, ""))
    if builtin is OSError:
        found = SpawnError
    else:
        found = type(
            "SpawnError",
            (SpawnError, builtin),
            {"__module__": __name__, "__qualname__": "SpawnError", "__doc__": SpawnError.__doc__},
        )
    _SPAWN_ERROR_CLASSES[errno] = found
    return found


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
