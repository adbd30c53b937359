"""Runner configuration models: placeholder until the runner layer lands."""

from __future__ import annotations

from orchestrator_spawn._unimplemented import Unimplemented


class RunnerPolicy(Unimplemented):
    _feature = "RunnerPolicy"


class RunnerConfig(Unimplemented):
    _feature = "RunnerConfig"


class ExecutionProfile(Unimplemented):
    _feature = "ExecutionProfile"


class ResolvedExecutionProfile(Unimplemented):
    _feature = "ResolvedExecutionProfile"
