"""The spawn slice, ``orchestrator_spawn._native.spawn`` (``csrc/spawn*.c``,
``csrc/fdpark.c``), called directly.

Most of it is the real-fork path of the spawn core (a sandbox plan's
fallback on Linux), driven through the ``FORCE_FORK`` flag: the failure
report crosses a close-on-exec pipe instead of shared memory."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator_spawn import SpawnError
from orchestrator_spawn._native import spawn as _native

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the vfork/fork split is Linux only"
)


def pack(items: list[bytes]) -> tuple[bytes, int]:
    return b"\0".join(items) + b"\0", len(items)


def fork_spawn(
    argv: list[bytes],
    *,
    cwd: bytes | None = None,
    stdio: tuple[int, int, int] = (-1, -1, -1),
    rlimits: tuple[int, int, int, int] = (-1, -1, -1, -1),
    force_fork: bool = True,
    argv_block: bytes | None = None,
) -> int:
    """One os_spawn_packed() call of argv in a new process group (by default
    through the real fork); ``argv_block`` replaces the packed argv as given."""
    packed, argc = pack(argv)
    env_block, envc = pack([b"PATH=/usr/bin:/bin"])
    flags = _native.NEW_PROCESS_GROUP | (_native.FORCE_FORK if force_fork else 0)
    pid, pidfd, _contained = _native.spawn_packed(
        argv[0],
        None if b"/" in argv[0] else b"/usr/bin:/bin",
        packed if argv_block is None else argv_block,
        argc,
        env_block,
        envc,
        cwd,
        *stdio,
        (),
        flags,
        rlimits,
        -1,
        None,
    )
    assert pidfd == -1
    return pid


def wait_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def assert_reaped_everything() -> None:
    zombies = [
        child.pid for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE
    ]
    assert zombies == []


@linux_only
def test_success_and_status() -> None:
    pid = fork_spawn([b"sh", b"-c", b"exit 6"])
    assert wait_status(pid) == 6


@linux_only
def test_only_stdio_open_no_report_pipe_leak(tmp_path: Path) -> None:
    out = tmp_path / "fds"
    with out.open("wb") as sink:
        pid = fork_spawn([b"sh", b"-c", b"ls /proc/$$/fd"], stdio=(-1, sink.fileno(), -1))
        assert wait_status(pid) == 0
    assert sorted(int(x) for x in out.read_bytes().split()) == [0, 1, 2]


@linux_only
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


@linux_only
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


def test_a_block_with_an_embedded_nul_is_refused_before_any_fork() -> None:
    # The packed blocks are checked in C too (a caller other than spawn()).
    with pytest.raises(ValueError, match="embedded null byte"):
        fork_spawn([b"/bin/true"], argv_block=b"/bin/true\0x\0", force_fork=False)
    assert_reaped_everything()


def test_stage_names_come_from_the_core() -> None:
    # os_spawn_stage_name() in spawn.c, next to the OS_STAGE_* values: the
    # words SpawnError.stage carries; an unknown stage reads as "exec".
    names = [_native.stage_name(stage) for stage in range(1, 9)]
    assert names == [
        "chdir",
        "setpgid",
        "setrlimit",
        "dup2",
        "sandbox",
        "exec",
        "fork",
        "cgroup",
    ]
    assert _native.stage_name(0) == "exec"
    assert _native.stage_name(99) == "exec"


def test_a_failed_exec_names_its_stage_from_the_core() -> None:
    with pytest.raises(SpawnError) as info:
        fork_spawn([b"/nonexistent/orchestrator-spawn-16a"], force_fork=False)
    assert info.value.stage == "exec"
    assert info.value.errno == errno.ENOENT
    assert_reaped_everything()


# -- fd parking (csrc/fdpark.c) ---------------------------------------------------


BASE = _native.FD_PARK_BASE


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
