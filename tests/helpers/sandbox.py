"""Helpers shared by the sandbox tests: profiles and running real children.

Children run Python snippets that report the outcome through their exit
status: 0 for success, the errno of an OSError otherwise (see PRELUDE).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import Child, ResourceLimits, spawn
from orchestrator_spawn.config import ExecutionProfile, ResolvedExecutionProfile
from orchestrator_spawn.sandbox import PreparedSandbox, prepare_sandbox

# What a refused file or socket operation fails with under the sandbox.
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}

# pytestmark of the tests that need the Linux backend.
LINUX_ONLY = [
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox backend"),
]


def needs(*features: str) -> None:
    """Skip the calling test unless this kernel offers every Linux sandbox feature."""
    from orchestrator_spawn.sandbox.linux import probe_capabilities

    caps = probe_capabilities()
    for feature in features:
        reason = caps.unavailable(feature)
        if reason is not None:
            pytest.skip(f"this kernel cannot: {reason}")


PRELUDE = """
import ctypes, errno, os, socket, sys
def attempt(fn):
    try:
        fn()
    except OSError as e:
        sys.exit(e.errno or 250)
    sys.exit(0)
"""


def _child_python() -> str:
    # The children only need the standard library. Under the unprivileged run
    # this interpreter may sit in a directory the test user cannot search
    # (e.g. /root/.pyenv); take a system python3 then.
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


CHILD_PYTHON = _child_python()


def profile(workspace: Path, *, name: str = "test", **fields: Any) -> ResolvedExecutionProfile:
    """A resolved sandbox profile (fields as in ExecutionProfile) for ``workspace``."""
    fields.setdefault("mode", "sandbox")
    return ExecutionProfile(**fields).resolve(name, workspace)


def py(code: str) -> list[str]:
    """argv running ``code`` (after PRELUDE) in this interpreter."""
    return [CHILD_PYTHON, "-c", PRELUDE + code]


def run(
    resolved: ResolvedExecutionProfile,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    limits: ResourceLimits | None = None,
) -> int:
    """Run ``argv`` under ``resolved`` through ``spawn`` and return its exit code.

    The exit code is negative (minus the signal number) when it was killed.
    """
    with (
        prepare_sandbox(resolved, argv) as prepared,
        spawn_prepared(prepared, env=env, limits=limits) as child,
    ):
        return child.wait_blocking(timeout=120)


def spawn_prepared(
    prepared: PreparedSandbox, *, env: Mapping[str, str] | None = None, **spawn_args: Any
) -> Child:
    """``spawn`` of a prepared sandbox's argv under its plan.

    The child's environment is this process's, updated with ``env`` and then
    with the sandbox's own variables (the proxy's address, say).
    """
    child_env = {**os.environ, **(env or {}), **prepared.env_overrides}
    return spawn(prepared.argv, env=child_env, _sandbox_plan=prepared.native_plan, **spawn_args)


def run_captured(
    resolved: ResolvedExecutionProfile, argv: Sequence[str], **spawn_args: Any
) -> tuple[int, str]:
    """Run ``argv`` under ``resolved``: its exit code and its stdout."""
    with (
        prepare_sandbox(resolved, argv) as prepared,
        spawn_prepared(prepared, stdout=subprocess.PIPE, **spawn_args) as child,
    ):
        assert child.stdout is not None
        out = child.stdout.read().decode()
        return child.wait_blocking(timeout=60), out
