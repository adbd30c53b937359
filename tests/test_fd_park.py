"""Long-lived fds of the library are parked above the range new fds come from
(csrc/fdpark_api.h), so that spawns stay cheap with thousands of children."""

from __future__ import annotations

import asyncio
import fcntl
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_spawn import DEVNULL, _native, spawn
from orchestrator_spawn.pump import PIPE, start_capture

BASE = _native.lib.OS_FD_PARK_BASE

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds")


@pytest.fixture
def nofile() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_park_moves_a_low_fd_up_and_keeps_the_file(nofile: None, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"parked")
    low = os.open(path, os.O_RDONLY)
    assert low < BASE
    parked = _native.park_fd(low)
    try:
        assert parked >= BASE
        assert os.read(parked, 10) == b"parked"
        assert fcntl.fcntl(parked, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(low)  # the old number is free again
        assert _native.park_fd(parked) == parked  # already parked: unchanged
    finally:
        os.close(parked)


def test_park_is_a_no_op_when_the_limit_leaves_no_room() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (BASE, hard))
        assert _native.park_fd(fd) == fd
        os.fstat(fd)  # still open
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(fd)
    assert _native.park_fd(-1) == -1


@linux_only
def test_running_captured_children_leave_the_low_fds_free(nofile: None, tmp_path: Path) -> None:
    # 150 children running with captured stdout/stderr (into files) and
    # watched from an event loop: their pidfds, pipe read ends and sink
    # files are parked, so a new fd still gets a low number, and a new
    # child's pipe sits low too.
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    lowest_free = w

    async def main() -> None:
        started = []
        try:
            for index in range(150):
                capture = start_capture(
                    PIPE,
                    PIPE,
                    stdout_sink=tmp_path / f"{index}.out",
                    stderr_sink=tmp_path / f"{index}.err",
                )
                try:
                    child = spawn(
                        ["sh", "-c", f"echo {index}; exec sleep 30"],
                        stdin=DEVNULL,
                        stdout=capture.writer("stdout"),
                        stderr=capture.writer("stderr"),
                    )
                finally:
                    capture.close_writers()
                started.append((child, capture))
            r, w = os.pipe()
            os.close(r)
            os.close(w)
            # A few more fds may be in use by now (the event loop's own, a
            # reactor's), not the ~750 the children hold.
            assert w < lowest_free + 16, (lowest_free, w)
        finally:
            for child, _ in started:
                await child.kill()
            for _, capture in started:
                await capture.wait()
        for index in range(150):
            assert (tmp_path / f"{index}.out").read_text() == f"{index}\n"

    asyncio.run(main())
