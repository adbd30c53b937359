"""run(): the per-job shortcuts (a checked pattern list remembered by its
content, the asyncio path without a task group) change no behaviour."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestrator_spawn import run, run_blocking
from tests.helpers.processes import wait_gone
from tests.test_run_api import read_pid


@pytest.mark.anyio
async def test_a_pattern_list_changed_between_runs_is_seen() -> None:
    patterns = ["sekrit"]
    argv = ["sh", "-c", "echo sekrit other"]
    first = await run(argv, redact=patterns)
    assert first.stdout == b"[REDACTED] other\n"
    patterns.append("other")  # the same list object, new content
    second = await run(argv, redact=patterns)
    assert second.stdout == b"[REDACTED] [REDACTED]\n"
    patterns.clear()
    third = run_blocking(argv, redact=patterns)
    assert third.stdout == b"sekrit other\n"


@pytest.mark.anyio
async def test_a_bad_pattern_raises_every_time_before_a_spawn(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = ["sh", "-c", f"touch {marker}"]
    patterns: list[object] = ["ok"]
    assert (await run(argv, redact=patterns)).returncode == 0  # type: ignore[arg-type]
    marker.unlink()
    patterns.append(b"(unclosed")
    for _ in range(2):
        with pytest.raises(ValueError, match="unclosed"):
            await run(argv, redact=patterns)  # type: ignore[arg-type]
    patterns[-1] = 5
    for _ in range(2):
        with pytest.raises(TypeError):
            await run(argv, redact=patterns)  # type: ignore[arg-type]
    assert not marker.exists()
    # Unhashable entries take the long way, with the same result.
    unhashable = await run(["sh", "-c", "echo sekrit"], redact=[bytearray(b"sekrit")])  # type: ignore[list-item]
    assert unhashable.stdout == b"[REDACTED]\n"


@pytest.mark.anyio
async def test_cancelling_a_run_whose_pipes_a_job_member_holds_kills_it(tmp_path: Path) -> None:
    # The child exits at once; a process it left behind in its group keeps
    # the output pipes open, so run() waits in the capture: cancelling it
    # there still kills the whole job.
    pidfile = tmp_path / "pid"
    script = f"sh -c 'echo $$ > {pidfile}; exec sleep 33' & echo up"
    with anyio.move_on_after(1.0) as scope:
        await run(["sh", "-c", script])
    assert scope.cancelled_caught
    assert wait_gone(read_pid(pidfile))


@pytest.mark.anyio
async def test_the_runner_sees_a_changed_pattern_list_and_rejects_a_bad_one(
    tmp_path: Path,
) -> None:
    from orchestrator_spawn import RunnerConfig, spawn_with_runner_and_capture

    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c")
    patterns = ["sekrit"]

    async def job(name: str) -> bytes:
        out = tmp_path / f"{name}.out"
        captured = spawn_with_runner_and_capture(
            runner, "echo sekrit other", tmp_path, out, tmp_path / f"{name}.err", patterns
        )
        assert await captured.child.wait() == 0
        await captured.output_capture.wait()
        return out.read_bytes()

    assert await job("a") == b"[REDACTED] other\n"
    assert await job("b") == b"[REDACTED] other\n"
    patterns.append("other")
    assert await job("c") == b"[REDACTED] [REDACTED]\n"
    patterns.append("(unclosed")
    for name in ("d", "e"):
        with pytest.raises(ValueError, match="unclosed"):
            await job(name)
        assert not (tmp_path / f"{name}.out").exists()  # nothing started
