"""orchestrator_spawn: native process spawning, streaming secret redaction and
rootless sandboxing for programs that launch a great many child processes.

The public API is listed in ``__all__``; see README.md for a tour.
"""

from __future__ import annotations

from orchestrator_spawn._pipe_streams import ChildStreamReader, ChildStreamWriter
from orchestrator_spawn.child import Child, JobUsage, ResourceUsage, kill_child_process_group
from orchestrator_spawn.config import (
    ExecutionProfile,
    ResolvedExecutionProfile,
    RunnerConfig,
    RunnerPolicy,
)
from orchestrator_spawn.errors import (
    DaemonPidGuardBlocked,
    OrchestratorSpawnError,
    PolicyError,
    SandboxBackendError,
    SpawnError,
)
from orchestrator_spawn.policy import enforce_runner_policy, guard_daemon_pid_kill
from orchestrator_spawn.redact import Redactor, redact
from orchestrator_spawn.run import (
    RedactedLine,
    RedactedProcess,
    RunResult,
    RunTimeoutError,
    open_redacted,
    run,
    run_blocking,
)
from orchestrator_spawn.runner import (
    CapturedChild,
    spawn_with_runner,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.sandbox import sandbox_preflight
from orchestrator_spawn.spawn import (
    DEVNULL,
    PIPE,
    STDOUT,
    ProcessOpener,
    ResourceLimits,
    open_process,
    spawn,
)

__version__ = "0.1.0"

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CapturedChild",
    "Child",
    "ChildStreamReader",
    "ChildStreamWriter",
    "DaemonPidGuardBlocked",
    "ExecutionProfile",
    "JobUsage",
    "OrchestratorSpawnError",
    "PolicyError",
    "ProcessOpener",
    "RedactedLine",
    "RedactedProcess",
    "Redactor",
    "ResolvedExecutionProfile",
    "ResourceLimits",
    "ResourceUsage",
    "RunResult",
    "RunTimeoutError",
    "RunnerConfig",
    "RunnerPolicy",
    "SandboxBackendError",
    "SpawnError",
    "__version__",
    "enforce_runner_policy",
    "guard_daemon_pid_kill",
    "kill_child_process_group",
    "open_process",
    "open_redacted",
    "redact",
    "run",
    "run_blocking",
    "sandbox_preflight",
    "spawn",
    "spawn_with_runner",
    "spawn_with_runner_and_capture",
]
