"""The real-fork path of the spawn core (a sandbox plan's fallback on Linux),
driven through the private ``force_fork`` switch of the native wrapper: the
failure report crosses a close-on-exec pipe instead of shared memory."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator_spawn import SpawnError, _native

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the vfork/fork split is Linux only"
)


def pack(items: list[bytes]) -> tuple[bytes, int]:
    return b"\0".join(items) + b"\0", len(items)


def fork_spawn(argv: list[bytes], **overrides: Any) -> int:
    argv_block, argc = pack(argv)
    env_block, envc = pack([b"PATH=/usr/bin:/bin"])
    kwargs: dict[str, Any] = {
        "program": argv[0],
        "search_path": None if b"/" in argv[0] else b"/usr/bin:/bin",
        "argv_block": argv_block,
        "argc": argc,
        "env_block": env_block,
        "envc": envc,
        "cwd": None,
        "stdio": (-1, -1, -1),
        "pass_fds": (),
        "new_process_group": True,
        "rlimits": (-1, -1, -1, -1),
        "sandbox_plan": None,
        "want_pidfd": False,
        "force_fork": True,
    }
    kwargs.update(overrides)
    pid, pidfd = _native.native_spawn(**kwargs)
    assert pidfd == -1
    return pid


def wait_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def assert_reaped_everything() -> None:
    zombies = [
        child.pid for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE
    ]
    assert zombies == []


def test_success_and_status() -> None:
    pid = fork_spawn([b"sh", b"-c", b"exit 6"])
    assert wait_status(pid) == 6


def test_only_stdio_open_no_report_pipe_leak(tmp_path: Path) -> None:
    out = tmp_path / "fds"
    with out.open("wb") as sink:
        pid = fork_spawn([b"sh", b"-c", b"ls /proc/$$/fd"], stdio=(-1, sink.fileno(), -1))
        assert wait_status(pid) == 0
    assert sorted(int(x) for x in out.read_bytes().split()) == [0, 1, 2]


def test_rlimits_and_pgid(tmp_path: Path) -> None:
    out = tmp_path / "limits"
    with out.open("wb") as sink:
        pid = fork_spawn(
            [b"sh", b"-c", b"ulimit -n; ps -o pgid= -p $$"],
            stdio=(-1, sink.fileno(), -1),
            rlimits=(-1, -1, -1, 77),
        )
        assert wait_status(pid) == 0
    assert out.read_bytes().split() == [b"77", str(pid).encode()]


@pytest.mark.parametrize(
    ("argv", "overrides", "stage", "code"),
    [
        ([b"/nonexistent/prog"], {}, "exec", errno.ENOENT),
        ([b"true"], {"cwd": b"/nonexistent/dir"}, "chdir", errno.ENOENT),
        ([b"true"], {"rlimits": (-1, -1, -1, (1 << 40))}, "setrlimit", errno.EPERM),
        ([b"true"], {"stdio": (-1, 1_000_000, -1)}, "dup2", errno.EBADF),
    ],
)
def test_failures_reported_through_the_pipe(
    argv: list[bytes], overrides: dict[str, Any], stage: str, code: int
) -> None:
    with pytest.raises(SpawnError) as info:
        fork_spawn(argv, **overrides)
    assert (info.value.stage, info.value.errno) == (stage, code)
    assert_reaped_everything()
