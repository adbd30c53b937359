"""``await run(...)``: spawn + pump + redaction + timeout, with real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import orchestrator_spawn
from orchestrator_spawn import RunResult, RunTimeoutError, SpawnError, run
from orchestrator_spawn.pump import Redaction
from tests.helpers.pump import arun

TOKEN = r"token=[A-Za-z0-9]+"


def gone(pid: int, within: float = 10.0) -> bool:
    """True once pid no longer exists (killed and reaped by its parent/init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie still answers kill(0): look at its state where we can.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def read_pids(path: Path, count: int, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            pids = path.read_text().split()
            if len(pids) >= count:
                return [int(p) for p in pids]
        time.sleep(0.01)
    raise AssertionError(f"{path} never listed {count} pids")


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_status_and_output(use_uvloop: bool) -> None:
    result = arun(run(["sh", "-c", "echo out; echo err >&2; exit 3"]), use_uvloop=use_uvloop)
    assert result == RunResult(
        ("sh", "-c", "echo out; echo err >&2; exit 3"), 3, b"out\n", b"err\n"
    )


def test_output_is_redacted_in_both_streams() -> None:
    script = "echo 'a token=abc123 b'; echo 'TOKEN=Zz9 on stderr' >&2"
    result = arun(run(["sh", "-c", script], redact=[TOKEN]))
    assert result.stdout == b"a [REDACTED] b\n"
    assert result.stderr == b"[REDACTED] on stderr\n"
    config = Redaction(literals=["abc123"], replacement=b"***")
    assert arun(run(["sh", "-c", script], redact=config)).stdout == b"a token=*** b\n"


def test_stdin_round_trip_of_megabytes() -> None:
    data = os.urandom(3 * 1024 * 1024)
    result = arun(run(["cat"], input=data, redact=None))
    assert result.returncode == 0
    assert result.stdout == data


def test_stdin_not_read_is_fine() -> None:
    result = arun(run(["true"], input=b"x" * (4 * 1024 * 1024)))
    assert result.returncode == 0


def test_no_stdin_means_devnull() -> None:
    result = arun(run(["sh", "-c", "cat; echo done"]))
    assert result.stdout == b"done\n"


def test_timeout_kills_the_group_and_keeps_partial_output(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"echo $$ > {pids}; sleep 60 & echo $! >> {pids}; echo partial; echo oops >&2; wait"
    started = time.monotonic()
    with pytest.raises(RunTimeoutError) as info:
        arun(run(["sh", "-c", script], timeout=0.5))
    assert time.monotonic() - started < 10
    assert isinstance(info.value, TimeoutError)
    assert (info.value.stdout, info.value.stderr) == (b"partial\n", b"oops\n")
    assert info.value.timeout == 0.5
    for pid in read_pids(pids, 2):
        assert gone(pid), f"pid {pid} survived the timeout"


def test_grandchild_holding_pipes_is_killed_on_timeout(tmp_path: Path) -> None:
    # The child exits at once; a grandchild in its group keeps stdout open.
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(RunTimeoutError) as info:
        arun(run(["sh", "-c", f"sleep 60 & echo $! > {pids}; echo hi"], timeout=0.5))
    assert time.monotonic() - started < 10
    assert info.value.stdout == b"hi\n"
    (pid,) = read_pids(pids, 1)
    assert gone(pid)


@pytest.mark.skipif(not os.path.exists("/usr/bin/setsid"), reason="needs setsid(1)")
def test_escaped_grandchild_does_not_hang_after_timeout(tmp_path: Path) -> None:
    # setsid puts the grandchild outside the group: killing the group cannot
    # close its copy of the pipes, so the capture must stop waiting by itself.
    pids = tmp_path / "pids"
    script = f"setsid sh -c 'echo $$ > {pids}; exec sleep 60' & echo hi"
    started = time.monotonic()
    try:
        with pytest.raises(RunTimeoutError) as info:
            arun(run(["sh", "-c", script], timeout=0.5))
        assert time.monotonic() - started < 10
        assert info.value.stdout == b"hi\n"
    finally:
        for pid in read_pids(pids, 1):
            os.kill(pid, 9)


def test_cancelling_run_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    async def main() -> None:
        task = asyncio.ensure_future(run(["sh", "-c", f"echo $$ > {pids}; exec sleep 60"]))
        await asyncio.get_running_loop().run_in_executor(None, read_pids, pids, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    (pid,) = read_pids(pids, 1)
    assert gone(pid)


def test_child_closing_its_output_early_is_still_awaited() -> None:
    started = time.monotonic()
    result = arun(run(["sh", "-c", "echo early; exec >&- 2>&-; sleep 0.3; exit 5"]))
    assert result.returncode == 5
    assert result.stdout == b"early\n"
    assert time.monotonic() - started >= 0.3


def test_check_raises_called_process_error() -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        arun(run(["sh", "-c", "echo bad >&2; exit 2"], check=True))
    assert info.value.returncode == 2
    assert info.value.stderr == b"bad\n"


def test_killed_by_signal_is_negative() -> None:
    assert arun(run(["sh", "-c", "kill -9 $$"])).returncode == -9


def test_spawn_failure_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as info:
        arun(run([str(tmp_path / "does-not-exist")]))
    assert info.value.stage == "exec"
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="empty string"):
        arun(run(["sh", "-c", f"touch {marker}"], redact=["x*"]))
    assert not marker.exists()
    with pytest.raises(TypeError, match="stdin"):
        arun(run(["true"], stdin="text"))  # type: ignore[arg-type]


def test_cwd_env_and_limits(tmp_path: Path) -> None:
    result = arun(
        run(
            ["sh", "-c", "pwd; echo $ONLY; ulimit -n"],
            cwd=tmp_path,
            env={"ONLY": "me", "PATH": os.environ["PATH"]},
            limits=orchestrator_spawn.ResourceLimits(open_files=64),
        )
    )
    assert result.stdout.split() == [os.fsencode(tmp_path.resolve()), b"me", b"64"]


def test_many_runs_at_once() -> None:
    async def main() -> list[RunResult]:
        return await asyncio.gather(
            *(
                run([sys.executable, "-c", f"print('n{i} token=s{i}')"], redact=[TOKEN])
                for i in range(40)
            )
        )

    results = arun(main())
    assert [r.stdout for r in results] == [f"n{i} [REDACTED]\n".encode() for i in range(40)]
