"""The package imports, its C core matches, and the public names exist."""

from __future__ import annotations

import orchestrator_spawn


def test_public_names_importable() -> None:
    for name in orchestrator_spawn.__all__:
        assert hasattr(orchestrator_spawn, name), name


def test_error_tree() -> None:
    from orchestrator_spawn import (
        DaemonPidGuardBlocked,
        OrchestratorSpawnError,
        PolicyError,
        SandboxBackendError,
        SpawnError,
    )

    for cls in (SpawnError, PolicyError, DaemonPidGuardBlocked, SandboxBackendError):
        assert issubclass(cls, OrchestratorSpawnError)
    assert issubclass(SpawnError, OSError)
    err = SpawnError(2, "exec of 'nope' failed", stage="exec", program="nope")
    assert (err.errno, err.stage, err.program) == (2, "exec", "nope")
