"""spawn_with_runner_and_capture end to end: real children, pipes, the pump, files."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import sys
from pathlib import Path

import pytest

from orchestrator_spawn import (
    CapturedChild,
    ChildStreamWriter,
    RunnerConfig,
    RunnerPolicy,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS


def _missing_plumbing() -> str | None:
    from orchestrator_spawn.spawn import ResourceLimits

    try:
        ResourceLimits()
    except NotImplementedError:
        return "spawn() has not landed on this branch yet"
    try:
        import orchestrator_spawn.pump  # noqa: F401
    except ImportError:
        return "the output pump has not landed on this branch yet"
    return None


def _missing() -> str | None:
    missing = _missing_plumbing()
    if missing is not None:
        return missing
    from orchestrator_spawn.pump import start_capture

    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        start_capture(stdout=read_end, redact=[r"x+"]).wait_blocking(timeout=10)
    except NotImplementedError as err:
        os.close(read_end)
        return f"the pump cannot redact on this branch yet ({err})"
    return None


pytestmark = pytest.mark.skipif(_missing_plumbing() is not None, reason=str(_missing_plumbing()))
needs_redaction = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

PY = sys.executable
GITHUB_TOKEN = "gh" + "p_" + "A1b2C3d4E5" * 3 + "F6g7H8"  # ghp_ + 36 alnum, assembled


def capture(command: str, tmp_path: Path, **kwargs: object) -> tuple[int, bytes, bytes]:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"

    async def main() -> int:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(),
            command,
            tmp_path,
            out,
            err,
            **kwargs,  # type: ignore[arg-type]
        )
        code = await captured.child.wait()
        await captured.output_capture.wait()
        return code

    code = asyncio.run(main())
    return code, out.read_bytes(), err.read_bytes()


@needs_redaction
def test_default_pack_redacts_both_streams(tmp_path: Path) -> None:
    code, out, err = capture(
        f"echo token is {GITHUB_TOKEN}; echo password=hunter2 >&2; echo plain line", tmp_path
    )
    assert code == 0
    assert out == b"token is [REDACTED]\nplain line\n"
    assert err == b"password=[REDACTED]\n"


@needs_redaction
def test_explicit_patterns_replace_the_runner_patterns(tmp_path: Path) -> None:
    code, out, _ = capture(
        f"echo {GITHUB_TOKEN} ticket-1234", tmp_path, redaction_patterns=[r"ticket-[0-9]+"]
    )
    assert (code, out) == (0, f"{GITHUB_TOKEN} [REDACTED]\n".encode())


def test_empty_pattern_list_disables_redaction(tmp_path: Path) -> None:
    code, out, _ = capture(f"echo {GITHUB_TOKEN}", tmp_path, redaction_patterns=[])
    assert (code, out) == (0, f"{GITHUB_TOKEN}\n".encode())


@needs_redaction
def test_a_redaction_with_literals_is_accepted(tmp_path: Path) -> None:
    from orchestrator_spawn.pump import Redaction

    redactor = Redaction(literals=["s3cr3t.value(1)"])
    code, out, _ = capture("echo 'a s3cr3t.value(1) b'", tmp_path, redaction_patterns=redactor)
    assert (code, out) == (0, b"a [REDACTED] b\n")


def test_bad_pattern_fails_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="unclosed"):
        spawn_with_runner_and_capture(
            RunnerConfig(), f"touch {marker}", tmp_path, os.devnull, os.devnull, ["(unclosed"]
        )
    assert not marker.exists()


async def _feed_and_finish(captured: CapturedChild, data: bytes) -> int:
    """Writes ``data`` to the child's piped stdin, closes it, and waits for the
    child and its output capture: the child's exit code."""
    stdin = captured.child.stdin
    assert isinstance(stdin, ChildStreamWriter)
    stdin.write(data)
    await stdin.drain()
    stdin.close()
    code = await captured.child.wait()
    await captured.output_capture.wait()
    return code


@needs_redaction
def test_stdin_is_piped_and_echoed_output_redacted(tmp_path: Path) -> None:
    out = tmp_path / "o"

    async def main() -> int:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(), "cat", tmp_path, out, os.devnull, None, None, True
        )
        return await _feed_and_finish(captured, f"leak {GITHUB_TOKEN} here\n".encode())

    assert asyncio.run(main()) == 0
    assert out.read_bytes() == b"leak [REDACTED] here\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_failure_surfaces_and_child_is_not_blocked(tmp_path: Path) -> None:
    async def main() -> tuple[int, BaseException | None]:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(),
            f"{PY} -c \"print('x' * 1000000)\"",
            tmp_path,
            "/dev/full",
            os.devnull,
            [],
        )
        code = await captured.child.wait()
        try:
            await captured.output_capture.wait()
        except OSError as err:
            return code, err
        return code, None

    code, error = asyncio.run(main())
    assert code == 0  # the pump kept draining, so the child finished normally
    assert isinstance(error, OSError)
    assert error.errno == errno.ENOSPC


@needs_redaction
def test_large_output_matches_reference_redaction(tmp_path: Path) -> None:
    lines = [
        f"line {i} password={i:x}{'z' * (i % 7)} {GITHUB_TOKEN if i % 5 == 0 else ''}"
        for i in range(20000)
    ]
    source = tmp_path / "input.txt"
    source.write_text("\n".join(lines) + "\n")
    code, out, _ = capture(f"cat {source}", tmp_path)
    joined = b"|".join(b"(?:" + p.encode() + b")" for p in DEFAULT_REDACTION_PATTERNS)
    expected = re.sub(b"(?i)" + joined, b"[REDACTED]", source.read_bytes())
    assert code == 0
    assert out == expected
    assert GITHUB_TOKEN.encode() not in out


def test_passthrough_capture_with_stdin_and_shared_file(tmp_path: Path) -> None:
    log = tmp_path / "both.log"
    log.write_text("stale\n" * 100)

    async def main() -> int:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(), "cat; echo done >&2", tmp_path, log, log, [], None, True
        )
        assert captured.child.pgid == captured.child.pid
        return await _feed_and_finish(captured, b"from stdin\n")

    assert asyncio.run(main()) == 0
    assert log.read_bytes() == b"from stdin\ndone\n"


def test_unopenable_sink_fails_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(FileNotFoundError):
        spawn_with_runner_and_capture(
            RunnerConfig(), f"touch {marker}", tmp_path, tmp_path / "no" / "out", os.devnull
        )
    assert not marker.exists()


def test_failed_spawn_leaves_no_running_capture_behind(tmp_path: Path) -> None:
    from orchestrator_spawn import SpawnError

    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE, shell="/definitely/missing-shell")
    with pytest.raises(SpawnError, match="shell=/definitely/missing-shell"):
        spawn_with_runner_and_capture(runner, "true", tmp_path, tmp_path / "o", tmp_path / "e")
    assert (tmp_path / "o").read_bytes() == b""
