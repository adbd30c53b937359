"""Real child processes writing into pipes, for the pump tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest


def piped(argv: Sequence[str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start argv in its own session with stdout/stderr on fresh pipes.

    Returns the process and the read ends (for the pump to take over).
    """
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=w_out,
            stderr=w_err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(w_out)
        os.close(w_err)
    return proc, r_out, r_err


def python_writer(code: str) -> list[str]:
    """argv running a Python snippet with `out`/`err` binary streams bound."""
    prelude = "import sys, os, time\nout = sys.stdout.buffer\nerr = sys.stderr.buffer\n"
    return [sys.executable, "-c", prelude + code]


def thread_count() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1


def pump_threads() -> int:
    """Number of threads named os-pump in this process (Linux only)."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "os-pump":
                count += 1
        except OSError:
            continue
    return count


def arun(coro: Coroutine[Any, Any, Any], *, use_uvloop: bool = False) -> Any:
    """Runs ``coro`` on a fresh asyncio loop, or uvloop's (skips without uvloop)."""
    if use_uvloop:
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(coro)
    return asyncio.run(coro)
