"""Helpers for tests that watch processes which are not our children."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

import orchestrator_spawn


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` (not our child) is dead: gone, or a zombie its new
    parent has not reaped yet. Polls: there is no event for a non-child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.005)
    return False


def count_pidfds() -> int:
    """How many pidfds this process holds (Linux: read from /proc/self/fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listdir's own fd
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
    return count


def reaped(pid: int) -> bool:
    """True once ``pid`` is no longer an unreaped child of ours. (It reaps a
    zombie it finds, which only happens when the answer is False anyway.)"""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


# argv prefix that runs the command-line interface of the package under test.
CLI = [sys.executable, "-m", "orchestrator_spawn"]
# The directory holding the package under test (the source tree or site-packages).
PACKAGE_PARENT = Path(orchestrator_spawn.__file__).resolve().parent.parent


def run_cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs ``orchestrator-spawn ARGS`` (the package under test) to its end,
    text output captured. ``env`` updates this process's environment (None
    removes a name); the package's parent directory is put on PYTHONPATH and
    is the default working directory."""
    child_env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    for name, value in (env or {}).items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd or PACKAGE_PARENT,
        env=child_env,
        timeout=timeout,
        check=False,
    )
