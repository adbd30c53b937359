"""``orchestrator-spawn run`` behaves like the command run from a shell, in
pipelines and under signals (no terminal here: see test_cli_terminal.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
import pytest

from tests.helpers.processes import CLI, wait_gone

ROOT = Path(__file__).resolve().parent.parent
GITHUB_TOKEN = "gh" + "p_" + "Z9y8X7w6V5" * 3 + "u4T3s2"  # ghp_ + 36 alnum, assembled
REDACTION = pytest.mark.parametrize("redaction", [[], ["--no-redact"]], ids=["redact", "no-redact"])

# Reports each signal it gets (by name) on stdout; "ready" once all are set.
SIGNAL_REPORTER = """
import signal, sys, time
names = sys.argv[1:]
def report(number, frame):
    print('got', signal.Signals(number).name, flush=True)
for name in names:
    signal.signal(getattr(signal, name), report)
print('ready', flush=True)
while True:
    time.sleep(1)
"""


def popen(*args: str, **kwargs: object) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """The CLI with these arguments, started; and its stdout pipe."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, **kwargs
    )
    assert proc.stdout is not None
    return proc, proc.stdout


# Popen keywords: a new process group in this session (process_group= is 3.11+).
_OWN_GROUP: dict[str, object] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
)


def in_shell(script: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CLI": " ".join(CLI)}
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=timeout
    )


@REDACTION
def test_downstream_close_stops_the_job_with_sigpipe(redaction: list[str]) -> None:
    started = time.monotonic()
    done = in_shell(f"$CLI run {' '.join(redaction)} -- yes | head -2; echo ${{PIPESTATUS[0]}}")
    assert done.stdout == b"y\ny\n141\n", done.stderr
    assert b"Broken pipe" not in done.stderr
    assert time.monotonic() - started < 20


@REDACTION
def test_downstream_close_is_the_childs_own_sigpipe_death(redaction: list[str]) -> None:
    proc, out = popen("run", *redaction, "--", "yes")
    assert out.read(4) == b"y\ny\n"
    out.close()
    assert proc.wait(timeout=20) == -signal.SIGPIPE


def test_downstream_close_reaches_a_child_that_ignores_sigpipe() -> None:
    # Python ignores SIGPIPE: it must see EPIPE on its own write, as without
    # the wrapper, and exit by itself.
    code = (
        "import sys\ntry:\n    while True: print('x' * 100, flush=True)\n"
        "except BrokenPipeError:\n    sys.exit(7)"
    )
    proc, out = popen("run", "--", sys.executable, "-c", code)
    out.read(10)
    out.close()
    assert proc.wait(timeout=20) == 7


@pytest.mark.parametrize(
    "name",
    ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGWINCH"],
)
def test_every_shell_signal_reaches_the_job(name: str) -> None:
    proc, out = popen("run", "--", sys.executable, "-c", SIGNAL_REPORTER, name)
    try:
        assert out.readline() == b"ready\n"
        proc.send_signal(getattr(signal, name))
        assert out.readline() == f"got {name}\n".encode()
        assert proc.poll() is None  # the CLI survived it too
    finally:
        proc.kill()
        proc.wait()


def test_sighup_ends_the_job_and_its_group() -> None:
    proc, out = popen("run", "--", "sh", "-c", "sleep 43 & echo $!; wait")
    grandchild = int(out.readline())
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=20) == -signal.SIGHUP
    assert wait_gone(grandchild)


def test_second_interrupt_kills_a_job_that_ignores_it() -> None:
    proc, out = popen("run", "--", "sh", "-c", "trap '' INT; echo ready; sleep 60 & wait")
    assert out.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # the first one is only forwarded
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == -signal.SIGKILL


def test_sigtstp_stops_job_and_cli_sigcont_resumes_both() -> None:
    code = (
        "import os, time\nprint(os.getpid(), flush=True)\n"
        "for i in range(1000):\n    print(i, flush=True)\n    time.sleep(0.05)"
    )
    # The CLI in a process group of its own within this session: that group
    # is never orphaned, whatever started pytest. In an orphaned group (as
    # under "nohup ... &" once the launching shell is gone) the kernel
    # discards SIGTSTP with the default action, so the CLI could not stop
    # itself, as no command run from there could.
    proc, out = popen("run", "--", sys.executable, "-c", code, **_OWN_GROUP)
    try:
        job = psutil.Process(int(out.readline()))
        out.readline()
        proc.send_signal(signal.SIGTSTP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        assert os.WSTOPSIG(status) == signal.SIGTSTP
        assert job.status() == psutil.STATUS_STOPPED  # the job first, then the CLI
        proc.send_signal(signal.SIGCONT)
        before = int(out.readline())
        assert int(out.readline()) == before + 1
        assert job.status() != psutil.STATUS_STOPPED
    finally:
        proc.kill()
        proc.wait()


@REDACTION
def test_returns_when_the_command_exits_leaving_background_work(redaction: list[str]) -> None:
    # As in the shell: the background job keeps running, the CLI does not
    # wait for it, and its later output never shows (let alone unredacted).
    late = f"sleep 8; echo late {GITHUB_TOKEN}"
    started = time.monotonic()
    proc, _ = popen(
        "run",
        *redaction,
        "--",
        "sh",
        "-c",
        f"({late}) & echo $!; echo leader-exits",
        stderr=subprocess.DEVNULL,
    )
    out, _ = proc.communicate(timeout=30)
    took = time.monotonic() - started
    background, line = out.splitlines()[:2]
    assert line == b"leader-exits"
    assert proc.returncode == 0
    if redaction:
        # Without redaction the background job holds the caller's own pipe,
        # exactly as in the shell: only the return is immediate.
        assert took < 20
        return
    assert took < 6, took  # not the 8 s of the background job (generous: a loaded CI)
    assert wait_gone(int(background), timeout=15)
    assert GITHUB_TOKEN.encode() not in out


def test_leader_output_just_before_exit_is_kept() -> None:
    done = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", f"sleep 5 & seq 1 20000; echo {GITHUB_TOKEN}"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    lines = done.stdout.splitlines()
    assert lines[:-1] == [str(i).encode() for i in range(1, 20001)]
    assert lines[-1] == b"[REDACTED]"


def test_version() -> None:
    from orchestrator_spawn import __version__

    done = subprocess.run([*CLI, "--version"], cwd=ROOT, capture_output=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, f"orchestrator-spawn {__version__}\n".encode())


@REDACTION
def test_output_file_that_cannot_be_opened_is_one_line_and_nothing_runs(
    tmp_path: Path, redaction: list[str]
) -> None:
    marker = tmp_path / "ran"
    for option in ("--stdout", "--stderr"):
        done = subprocess.run(
            [*CLI, "run", *redaction, option, "/nonexistent/o.log", "--", "touch", str(marker)],
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 2
        error = f"cannot open {option} /nonexistent/o.log: No such file or directory"
        assert done.stderr.decode().splitlines() == [f"orchestrator-spawn: {error}"]
        assert not marker.exists()


def test_held_bytes_of_a_leftover_are_not_shown_in_clear_when_cut_off() -> None:
    # A background process has printed the start of a token when the command
    # exits: the CLI cuts it off, and what the redactor held must not appear.
    partial = GITHUB_TOKEN[:26]
    done = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", f"(printf 'x {partial}'; sleep 5) & sleep 0.3"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert partial[4:].encode() not in done.stdout, done.stdout
