"""Redaction fails closed wherever a stream ends early, with real processes.

A stream that ends for any reason other than its real end of file (abort,
timeout, a kill, a forwarded signal, interpreter exit) may end in the middle
of a secret: the bytes the redactor still holds because they may be the start
of a match must come out as one replacement, never in clear. Secrets are
assembled at run time so that no credential-shaped literal sits in the
repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator_spawn import (
    Redactor,
    RunnerConfig,
    RunnerPolicy,
    run,
    spawn,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
from orchestrator_spawn.pump import MEMORY, PIPE, Capture, Redaction, start_capture
from orchestrator_spawn.run import RunTimeoutError
from tests.helpers.processes import CLI

SECRET = "correct-horse-" + "battery-staple"
PREFIX = SECRET[:20]  # "correct-horse-batter": not a match at end of file
TOKEN = "gh" + "p_" + ("aB3xY7kQ9m" * 4)[:36]
TOKEN_PREFIX = TOKEN[:30]  # 26 of the 36 characters after the prefix
REPLACEMENT = b"[REDACTED]"


def _prints_then_sleeps(text: str) -> list[str]:
    """argv of a child that prints ``text`` (no newline) and then waits."""
    return ["sh", "-c", f"printf '%s' '{text}'; exec sleep 60"]


def _wait_for_read(capture: Capture, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = capture.stats().stdout
        if stats is not None and stats.bytes_read >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"the child did not print {n} bytes in {timeout} s")


# ---- the engine ---------------------------------------------------------------


def test_redactor_abort_replaces_what_it_holds_and_finish_decides_it() -> None:
    # At the real end of the stream the prefix is not a match (re.sub
    # semantics); cut short, it may be the start of the secret.
    at_eof = Redactor(literals=[SECRET])
    assert at_eof.feed(f"pw {PREFIX}".encode()) + at_eof.finish() == f"pw {PREFIX}".encode()
    cut = Redactor(literals=[SECRET])
    out = cut.feed(f"pw {PREFIX}".encode())
    assert cut.held == len(PREFIX)
    assert out + cut.abort() == b"pw " + REPLACEMENT
    assert cut.finish() == b""
    assert cut.abort() == b""
    # Nothing held: nothing replaced.
    clean = Redactor(literals=[SECRET])
    assert clean.feed(b"all clear\n") + clean.abort() == b"all clear\n"


def test_redactor_dropped_without_finish_never_emits_what_it_holds() -> None:
    redactor = Redactor(DEFAULT_REDACTION_PATTERNS)
    assert redactor.feed(f"token {TOKEN_PREFIX}".encode()) == b"token "
    del redactor  # the held prefix is freed, never written anywhere


@pytest.mark.parametrize("chunk", [1 << 20, 65536, 4096, 100])
def test_a_secret_longer_than_max_hold_fails_closed_to_its_end(chunk: int) -> None:
    # Past max_hold the engine cannot decide the match: it writes one
    # replacement and suppresses the rest of that match as it arrives
    # (before: matching started afresh and the tail came out in clear).
    line = ("MIIEowIBAAKCAQEAx9Zr1+Kf/3bT" * 3)[:64]
    body = "\n".join([line] * 1700)  # about 110 KiB, beyond the default 64 KiB
    key = "-----BEGIN RSA " + f"PRIVATE KEY-----\n{body}\n-----END RSA " + "PRIVATE KEY-----"
    long_value = "Zq9-" * 5000
    data = f"before\n{key}\n!after password={long_value} next token=abc\n".encode()
    for max_hold in (65536, 1024):
        redactor = Redactor(DEFAULT_REDACTION_PATTERNS, max_hold=max_hold)
        out = b"".join(redactor.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
        out += redactor.finish()
        assert out == b"before\n[REDACTED]\n!after password=[REDACTED] next token=[REDACTED]\n"


# ---- the pump -----------------------------------------------------------------


def test_capture_abort_writes_held_bytes_as_one_replacement() -> None:
    capture = start_capture(PIPE, stdout_sink=MEMORY, redact=Redaction(literals=[SECRET]))
    try:
        child = spawn(_prints_then_sleeps(f"pw {PREFIX}"), stdout=capture.writer("stdout"))
    finally:
        capture.close_writers()
    with child:
        _wait_for_read(capture, len(f"pw {PREFIX}"))
        capture.abort()  # the child still holds the pipe open
        capture.wait_blocking(30)
    assert capture.output("stdout") == b"pw " + REPLACEMENT


def test_capture_marked_truncated_before_a_kill_fails_closed() -> None:
    # The kill gives the pump a real end of file; marked first, it is cut short.
    capture = start_capture(PIPE, stdout_sink=MEMORY)  # the built-in pack
    try:
        child = spawn(_prints_then_sleeps(f"token {TOKEN_PREFIX}"), stdout=capture.writer("stdout"))
    finally:
        capture.close_writers()
    _wait_for_read(capture, len(f"token {TOKEN_PREFIX}"))
    capture.mark_truncated()
    child.start_kill()
    child.wait_blocking()
    capture.wait_blocking(30)
    assert capture.output("stdout") == b"token " + REPLACEMENT


def test_sink_write_error_leaks_nothing_to_the_live_view() -> None:
    # /dev/full: every write of the sink fails with ENOSPC; the stream is
    # drained to its end and the live view still gets only redacted bytes.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this platform")

    async def main() -> tuple[bytes, OSError]:
        capture = start_capture(
            PIPE, stdout_sink="/dev/full", redact=Redaction(literals=[SECRET]), live=["stdout"]
        )
        try:
            child = spawn(_prints_then_sleeps(f"pw {PREFIX}"), stdout=capture.writer("stdout"))
        finally:
            capture.close_writers()
        seen = b""
        async for chunk in capture.chunks("stdout"):
            seen += chunk
            if seen == b"pw ":
                capture.mark_truncated()
                child.start_kill()
        with pytest.raises(OSError, match="No space left") as caught:
            await capture.wait()
        await child.wait()
        return seen, caught.value

    seen, err = asyncio.run(main())
    assert err.errno == errno.ENOSPC
    assert seen == b"pw " + REPLACEMENT


def test_pump_stop_at_interpreter_exit_fails_closed(tmp_path: Path) -> None:
    # The interpreter exits while a child still prints: the pump's exit hook
    # aborts the capture, and what its redactor holds must not reach the file.
    log = tmp_path / "out.log"
    script = textwrap.dedent(
        f"""
        import sys, time
        from orchestrator_spawn import DEVNULL, spawn
        from orchestrator_spawn.pump import PIPE, Redaction, start_capture
        capture = start_capture(PIPE, stdout_sink={str(log)!r},
                                redact=Redaction(literals=[{SECRET!r}]))
        child = spawn({_prints_then_sleeps(f"pw {PREFIX}")!r},
                      stdout=capture.writer("stdout"), stderr=DEVNULL)
        capture.close_writers()
        deadline = time.monotonic() + 20
        while capture.stats().stdout.bytes_read < {len(f"pw {PREFIX}")}:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        print(child.pid, flush=True)
        # Exit now: the pump's exit hook runs while the child still prints.
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    try:
        assert done.returncode == 0, done.stderr.decode()
    finally:
        pid = int(done.stdout.split()[0]) if done.stdout.split() else 0
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert log.read_bytes() == b"pw " + REPLACEMENT


# ---- run() -------------------------------------------------------------------


def test_run_timeout_output_has_no_clear_prefix() -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys, time\n"
        f"sys.stdout.write('pw {PREFIX}'); sys.stdout.flush()\n"
        f"sys.stderr.write('token {TOKEN_PREFIX}'); sys.stderr.flush()\n"
        "time.sleep(60)\n",
    ]
    redaction = Redaction(patterns=DEFAULT_REDACTION_PATTERNS, literals=[SECRET])
    with pytest.raises(RunTimeoutError) as caught:
        asyncio.run(run(argv, timeout=1.0, redact=redaction))
    assert caught.value.stdout == b"pw " + REPLACEMENT
    assert caught.value.stderr == b"token " + REPLACEMENT


# ---- the runner and the CLI ----------------------------------------------------


def test_runner_child_killed_through_its_handle_after_a_cancelled_wait(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE)

    async def main() -> None:
        captured = spawn_with_runner_and_capture(
            runner,
            f"printf '%s' 'pw {PREFIX}'; exec sleep 60",
            tmp_path,
            log,
            tmp_path / "err.log",
            Redaction(patterns=DEFAULT_REDACTION_PATTERNS, literals=[SECRET]),
        )
        capture = captured.output_capture
        _wait_for_read(capture, len(f"pw {PREFIX}"))
        waiting = asyncio.ensure_future(capture.wait())
        await asyncio.sleep(0.05)
        waiting.cancel()  # cancelling a wait does not end the stream
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not capture.done()
        await captured.child.kill()
        await capture.wait()

    asyncio.run(main())
    assert log.read_bytes() == b"pw " + REPLACEMENT


def test_cli_stream_cut_short_by_a_forwarded_signal_fails_closed(tmp_path: Path) -> None:
    cli = subprocess.Popen(
        [
            *CLI,
            "run",
            "--secret",
            SECRET,
            "--",
            *_prints_then_sleeps(f"pw {PREFIX}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert cli.stdout is not None
        # "pw " cannot be part of a match: it shows up at once, after which
        # the prefix sits in the redactor.
        assert os.read(cli.stdout.fileno(), 3) == b"pw "
        cli.send_signal(signal.SIGTERM)  # forwarded to the program's group
        rest, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert rest == REPLACEMENT
    # The CLI ends by the signal that ended the command (a shell shows 143).
    assert cli.returncode == -signal.SIGTERM


# ---- a child killed from outside the library ------------------------------------

# The child prints the start of a secret, then a signal from elsewhere (here:
# itself) kills it. Its end of file looks like any other; the pump learns from
# the child's exit status that the stream was cut short.
SELF_KILLED = f"printf '%s' 'pw {PREFIX}'; kill -9 $$"
# The same start of a secret at a real end: re.sub semantics, no match.
EXITS = f"printf '%s' 'pw {PREFIX}'; exit 3"


@pytest.mark.parametrize(
    ("command", "expected"), [(SELF_KILLED, b"pw " + REPLACEMENT), (EXITS, f"pw {PREFIX}".encode())]
)
def test_runner_child_killed_from_elsewhere(tmp_path: Path, command: str, expected: bytes) -> None:
    log = tmp_path / "out.log"

    async def main() -> int:
        captured = spawn_with_runner_and_capture(
            RunnerConfig(policy=RunnerPolicy.UNSAFE),
            command,
            tmp_path,
            log,
            tmp_path / "err.log",
            Redaction(literals=[SECRET]),
        )
        # The capture first: the verdict must not depend on who waits first.
        await captured.output_capture.wait()
        return await captured.child.wait()

    returncode = asyncio.run(main())
    assert returncode == (-signal.SIGKILL if command == SELF_KILLED else 3)
    assert log.read_bytes() == expected


@pytest.mark.parametrize(
    ("command", "expected"), [(SELF_KILLED, b"pw " + REPLACEMENT), (EXITS, f"pw {PREFIX}".encode())]
)
def test_run_child_killed_from_elsewhere(command: str, expected: bytes) -> None:
    result = asyncio.run(run(["sh", "-c", command], redact=Redaction(literals=[SECRET])))
    assert result.returncode == (-signal.SIGKILL if command == SELF_KILLED else 3)
    assert result.stdout == expected


@pytest.mark.parametrize(
    ("command", "expected"), [(SELF_KILLED, b"pw " + REPLACEMENT), (EXITS, f"pw {PREFIX}".encode())]
)
def test_cli_child_killed_from_elsewhere(command: str, expected: bytes) -> None:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--secret",
            SECRET,
            "--",
            "sh",
            "-c",
            command,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == expected
    assert done.returncode == (-signal.SIGKILL if command == SELF_KILLED else 3)
