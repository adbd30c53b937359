"""Captures whose pipes the pump makes (``PIPE``) and whose sink paths it opens."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import re
import sys
import time
from pathlib import Path

import pytest

from orchestrator_spawn import DEVNULL, Child, SpawnError, spawn
from orchestrator_spawn.pump import MEMORY, PIPE, Capture, Redaction, start_capture
from tests.helpers.pump import python_writer

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc fds")

SECRET_RE = rb"token=\w+"


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def spawn_into(argv: list[str], capture: Capture) -> Child:
    try:
        return spawn(
            argv,
            stdin=DEVNULL,
            stdout=capture.writer("stdout"),
            stderr=capture.writer("stderr"),
        )
    finally:
        capture.close_writers()


def test_pipes_made_by_the_pump_carry_redacted_output_into_files(tmp_path: Path) -> None:
    code = (
        "for i in range(2000):\n"
        "    out.write(b'line %d token=abc%d\\n' % (i, i))\n"
        "err.write(b'err token=zz\\n')\n"
    )
    capture = start_capture(
        PIPE,
        PIPE,
        stdout_sink=tmp_path / "out",
        stderr_sink=tmp_path / "err",
        redact=Redaction(patterns=[SECRET_RE]),
    )
    child = spawn_into(python_writer(code), capture)

    async def main() -> int:
        stats = await capture.wait()
        assert stats.stdout is not None
        assert stats.stderr is not None
        assert stats.stdout.bytes_read == sum(
            len(b"line %d token=abc%d\n" % (i, i)) for i in range(2000)
        )
        return await child.wait()

    assert asyncio.run(main()) == 0
    expected = b"".join(b"line %d [REDACTED]\n" % i for i in range(2000))
    assert (tmp_path / "out").read_bytes() == expected
    assert (tmp_path / "err").read_bytes() == b"err [REDACTED]\n"


def test_one_path_for_both_streams_is_one_shared_file(tmp_path: Path) -> None:
    log = tmp_path / "both.log"
    log.write_bytes(b"old content that must be truncated away\n" * 10)
    code = "out.write(b'A\\n'); out.flush(); err.write(b'B\\n'); err.flush(); out.write(b'C\\n')"
    capture = start_capture(PIPE, PIPE, stdout_sink=log, stderr_sink=str(log))
    child = spawn_into(python_writer(code), capture)  # kept: dropping it kills the child
    capture.wait_blocking(timeout=30)
    assert child.wait_blocking(timeout=30) == 0
    data = log.read_bytes()
    # Shared offset: nothing overwritten, nothing of the old content left.
    assert sorted(data.splitlines()) == [b"A", b"B", b"C"]


def test_writer_fds_are_blocking_close_on_exec_and_owned_by_the_capture() -> None:
    capture = start_capture(PIPE, stderr=None, stdout_sink=MEMORY)
    fd = capture.writer("stdout")
    assert os.get_blocking(fd)
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    with pytest.raises(ValueError, match="not capture"):
        capture.writer("stderr")
    os.write(fd, b"hello")
    capture.close_writers()
    capture.close_writers()  # idempotent
    with pytest.raises(RuntimeError, match="closed already"):
        capture.writer("stdout")
    capture.wait_blocking(timeout=10)
    assert capture.output("stdout") == b"hello"


def test_a_given_fd_has_no_writer() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    capture = start_capture(read_end, PIPE)
    with pytest.raises(ValueError, match="not captured from PIPE"):
        capture.writer("stdout")
    capture.wait_blocking(timeout=10)


def test_wait_closes_the_writers_so_it_cannot_hang() -> None:
    capture = start_capture(PIPE, PIPE, stdout_sink=MEMORY, stderr_sink=MEMORY)
    os.write(capture.writer("stderr"), b"written by the parent\n")

    async def main() -> None:
        await asyncio.wait_for(capture.wait(), 10)

    asyncio.run(main())
    assert capture.output("stdout") == b""
    assert capture.output("stderr") == b"written by the parent\n"


def test_a_failed_spawn_ends_the_capture_empty(tmp_path: Path) -> None:
    capture = start_capture(PIPE, PIPE, stdout_sink=tmp_path / "o", stderr_sink=tmp_path / "e")
    with pytest.raises(SpawnError):
        spawn_into([str(tmp_path / "no-such-program")], capture)
    stats = capture.wait_blocking(timeout=10)
    assert stats.stdout is not None
    assert stats.stdout.bytes_read == 0
    assert (tmp_path / "o").read_bytes() == b""


@linux_only
def test_unopenable_sink_path_raises_with_the_path_and_leaks_nothing(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    before = open_fds()
    missing = tmp_path / "no" / "such" / "dir" / "out"
    with pytest.raises(FileNotFoundError) as info:
        start_capture(PIPE, read_end, stdout_sink=tmp_path / "fine", stderr_sink=missing)
    assert info.value.filename == str(missing)
    assert open_fds() == before  # the new pipe, the opened file: all closed again
    # The given fd is still the caller's, unchanged (blocking).
    assert os.get_blocking(read_end)
    os.write(write_end, b"x")
    assert os.read(read_end, 1) == b"x"
    os.close(read_end)
    os.close(write_end)


def test_sink_path_with_nul_byte_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NUL"):
        start_capture(PIPE, stdout_sink=str(tmp_path / "a\0b"))


@linux_only
def test_dropping_a_capture_closes_its_writers() -> None:
    from orchestrator_spawn import pump

    pump._notifier.notify_fd()  # the reactor runs (its own fds are not counted)
    before = open_fds()
    capture = start_capture(PIPE, PIPE)
    # Two read ends (the pump's), two writers (ours); the reactor moves the
    # read ends up (fd parking) meanwhile, a dup and a close each.
    deadline = time.monotonic() + 5
    while len(open_fds() - before) != 4 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(open_fds() - before) == 4
    native = capture._native
    del capture
    gc.collect()
    assert native.wait(10)  # end of file reached: every writer was closed
    assert open_fds() == before


def test_many_captures_share_one_compiled_redaction(tmp_path: Path) -> None:
    from orchestrator_spawn import pump

    redaction = Redaction(patterns=[SECRET_RE], literals=["hunter2"])
    first = pump._redaction(redaction)
    assert pump._redaction(Redaction(patterns=[SECRET_RE], literals=["hunter2"])) is first
    assert pump._redaction([SECRET_RE]) is pump._redaction((SECRET_RE,))
    captures = []
    for index in range(20):
        capture = start_capture(PIPE, stdout_sink=tmp_path / f"{index}", redact=redaction)
        os.write(capture.writer("stdout"), b"a token=%d hunter2 b\n" % index)
        captures.append(capture)
    for index, capture in enumerate(captures):
        capture.wait_blocking(timeout=10)
        assert (tmp_path / f"{index}").read_bytes() == re.sub(
            rb"(?i)token=\w+|hunter2", b"[REDACTED]", b"a token=%d hunter2 b\n" % index
        )
