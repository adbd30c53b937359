"""Two names for one sink: one writer, every line kept, in order.

``out.log`` and ``./out.log`` (or a hard link) are one file. Opened twice
with ``O_TRUNC`` and written through two offsets, the streams overwrite each
other's bytes; compared by device and inode after opening, they share one
open file instead, in the capture path (the C pump), the plain runner path
and the CLI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator_spawn import (
    RunnerConfig,
    RunnerPolicy,
    spawn_with_runner,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.pump import start_capture
from orchestrator_spawn.spawn import spawn
from tests.helpers.processes import CLI

# Five lines on each stream, alternating, each written (and flushed) whole.
INTERLEAVED = "for i in 1 2 3 4 5; do echo out$i; sleep 0.01; echo err$i >&2; sleep 0.01; done"
EXPECTED = [f"{s}{i}" for i in range(1, 6) for s in ("out", "err")]


def _check(text: str) -> None:
    lines = text.splitlines()
    assert sorted(lines) == sorted(EXPECTED), text
    assert [x for x in lines if x.startswith("out")] == [f"out{i}" for i in range(1, 6)]
    assert [x for x in lines if x.startswith("err")] == [f"err{i}" for i in range(1, 6)]


def _names(tmp_path: Path, how: str) -> tuple[str, str]:
    if how == "dot":
        return "same.log", "./same.log"
    (tmp_path / "same.log").write_bytes(b"")
    os.link(tmp_path / "same.log", tmp_path / "link.log")
    return "same.log", "link.log"


@pytest.fixture(params=["dot", "hardlink"])
def two_names(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """Two names of one file in the working directory, ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    return _names(tmp_path, request.param)


def test_runner_capture_with_two_names_for_one_file(
    tmp_path: Path, two_names: tuple[str, str]
) -> None:
    stdout, stderr = two_names

    async def main() -> None:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(policy=RunnerPolicy.UNSAFE), INTERLEAVED, tmp_path, stdout, stderr
        )
        await captured.child.wait()
        await captured.output_capture.wait()

    asyncio.run(main())
    _check((tmp_path / "same.log").read_text())


def test_runner_without_capture_with_two_names_for_one_file(
    tmp_path: Path, two_names: tuple[str, str]
) -> None:
    stdout, stderr = two_names
    child = spawn_with_runner(
        RunnerConfig(policy=RunnerPolicy.UNSAFE), INTERLEAVED, tmp_path, stdout, stderr
    )
    assert child.wait_blocking() == 0
    _check((tmp_path / "same.log").read_text())


def test_start_capture_with_two_fds_of_one_file(tmp_path: Path) -> None:
    # Two separately opened fds (two offsets) of one file become one writer.
    log = tmp_path / "same.log"
    with open(log, "wb") as first, open(log, "r+b") as second:
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        capture = start_capture(r_out, r_err, stdout_sink=first, stderr_sink=second)
        try:
            child = spawn(["sh", "-c", INTERLEAVED], stdout=w_out, stderr=w_err)
        finally:
            os.close(w_out)
            os.close(w_err)
        child.wait_blocking()
        capture.wait_blocking(30)
    _check(log.read_text())


def test_cli_with_two_names_for_one_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--stdout",
            "same.log",
            "--stderr",
            "./same.log",
            "--",
            "sh",
            "-c",
            INTERLEAVED,
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    _check((tmp_path / "same.log").read_text())
