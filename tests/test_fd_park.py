"""Long-lived fds of the library are parked above the range new fds come from
(csrc/fdpark_api.h), so that spawns stay cheap with thousands of children."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from orchestrator_spawn import DEVNULL, spawn
from orchestrator_spawn._native.spawn import FD_PARK_BASE
from orchestrator_spawn.pump import PIPE, start_capture

BASE = FD_PARK_BASE

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds")


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
