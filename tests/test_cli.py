"""The ``orchestrator-spawn run`` command line, run as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from orchestrator_spawn.cli import main, parse_limit
from tests.helpers.processes import CLI, wait_gone

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*CLI, *args],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        **kwargs,
    )


def test_exit_status_and_output_pass_through() -> None:
    done = cli("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == b"out\n"
    assert done.stderr == b"err\n"


KILL_SELF = "sh -c 'kill -TERM $$'"


def test_signal_death_is_the_same_signal_death() -> None:
    # As the command itself: killed by SIGTERM (a shell shows 128 + 15).
    done = cli("run", "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == -signal.SIGTERM
    in_shell = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m orchestrator_spawn run -- {KILL_SELF}; echo $?"],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert in_shell.stdout == b"143\n"


def test_limits_applied() -> None:
    done = cli(
        "run",
        "--limit",
        "open_files=33",
        "--limit",
        "memory_bytes=2G",
        "--limit",
        "cpu_seconds=50",
        "--",
        "sh",
        "-c",
        "ulimit -n; ulimit -v; ulimit -t",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"33", str(2 * 1024 * 1024).encode(), b"50"]


def test_runs_in_own_process_group() -> None:
    code = (
        "import os; print(os.getpgid(0) == os.getpid(), os.getpgid(0) != os.getpgid(os.getppid()))"
    )
    done = cli("run", "--", sys.executable, "-c", code)
    assert done.stdout == b"True True\n"


def test_not_found_is_127_and_names_program() -> None:
    done = cli("run", "--", "orch-no-such-program-xyz")
    assert done.returncode == 127
    assert b"orch-no-such-program-xyz" in done.stderr


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/bin/sh\n")
    done = cli("run", "--", str(script))
    assert done.returncode == 126


def test_bad_limit_is_usage_error() -> None:
    done = cli("run", "--limit", "bogus=1", "--", "true")
    assert done.returncode == 2
    assert b"memory_bytes" in done.stderr


def test_missing_program_is_usage_error() -> None:
    done = cli("run", "--")
    assert done.returncode == 2


def test_help_lists_run() -> None:
    done = cli("--help")
    assert done.returncode == 0
    assert b"run" in done.stdout


def test_forwards_sigterm_to_group() -> None:
    # The child's background grandchild must die with it: the CLI signals the group.
    script = "sleep 300 & echo $!; echo ready; wait"
    proc = subprocess.Popen(
        [*CLI, "run", "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert wait_gone(grandchild)


def test_parse_limit_suffixes() -> None:
    assert parse_limit("memory_bytes=512M") == ("memory_bytes", 512 << 20)
    assert parse_limit("memory-bytes=1GiB") == ("memory_bytes", 1 << 30)
    assert parse_limit("processes=10") == ("processes", 10)


def test_main_in_process_returns_status() -> None:
    assert main(["run", "--", "sh", "-c", "exit 6"]) == 6
