"""The spawn core (``csrc/spawn*.c``, ``csrc/fdpark.c``): one foreign call per spawn."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orchestrator_spawn._native import check, ffi, lib
from orchestrator_spawn.errors import SpawnError

if TYPE_CHECKING:
    from orchestrator_spawn._native.sandbox import SandboxPlan

FD_INHERIT: int = lib.OS_SPAWN_FD_INHERIT
FD_DEVNULL: int = lib.OS_SPAWN_FD_DEVNULL

NEW_PROCESS_GROUP: int = lib.OS_SPAWN_NEW_PROCESS_GROUP
WANT_PIDFD: int = lib.OS_SPAWN_WANT_PIDFD
FORCE_FORK: int = lib.OS_SPAWN_FORCE_FORK
DIE_WITH_PARENT: int = lib.OS_SPAWN_DIE_WITH_PARENT
NEW_PID_NS: int = lib.OS_SPAWN_NEW_PID_NS
CONTAINED_CGROUP: int = lib.OS_CONTAINED_CGROUP
CONTAINED_PID_NS: int = lib.OS_CONTAINED_PID_NS
NO_LIMITS = (-1, -1, -1, -1)

_BAD_STRINGS: int = lib.OS_SPAWN_BAD_STRINGS
_os_spawn_packed = lib.os_spawn_packed
_new = ffi.new
_NULL = ffi.NULL


def stage_name(stage: int) -> str:
    """The name of a spawn stage (``OS_STAGE_*``), from C (``os_spawn_stage_name``)."""
    return str(ffi.string(lib.os_spawn_stage_name(stage)).decode())


def spawn_packed(
    program: bytes,
    search_path: bytes | None,
    argv_block: bytes,
    argc: int,
    env_block: bytes | None,
    envc: int,
    cwd: bytes | None,
    stdin_fd: int,
    stdout_fd: int,
    stderr_fd: int,
    pass_fds: tuple[int, ...],
    flags: int,
    rlimits: tuple[int, int, int, int],
    cgroup_fd: int,
    sandbox_plan: SandboxPlan | None,
) -> tuple[int, int, int]:
    """Forks and execs: positional arguments, one foreign call
    (``os_spawn_packed``, GIL released), the bytes passed without copies.

    ``argv_block``/``env_block`` hold ``argc``/``envc`` NUL-terminated strings
    back to back (``b"a\\0b\\0"``); ``env_block=None`` passes the process's
    own C ``environ`` (what ``os.environ`` writes through to), like subprocess.
    ``flags`` ORs ``NEW_PROCESS_GROUP``, ``WANT_PIDFD``, ``FORCE_FORK`` (tests:
    the real-fork path a sandbox plan falls back to), ``DIE_WITH_PARENT``,
    ``NEW_PID_NS``; ``cgroup_fd`` is a directory fd of the job's (empty)
    cgroup v2, or -1. Returns ``(pid, pidfd, contained)``: ``pidfd`` is -1
    when not asked for or not supported by the kernel, ``contained`` has the
    ``CONTAINED_*`` bits of what holds the job.

    Raises ``ValueError`` if a block holds another number of strings (an
    embedded NUL byte), ``SpawnError`` (with ``.stage``, ``.errno``,
    ``.program``) when the child failed before exec or the fork itself
    failed; no child is left behind then.
    """
    out = _new("int[5]")
    rc = _os_spawn_packed(
        program,
        _NULL if search_path is None else search_path,
        argv_block,
        len(argv_block),
        argc,
        _NULL if env_block is None else env_block,
        0 if env_block is None else len(env_block),
        envc,
        _NULL if cwd is None else cwd,
        stdin_fd,
        stdout_fd,
        stderr_fd,
        list(pass_fds) if pass_fds else _NULL,
        len(pass_fds),
        flags,
        _NULL if rlimits is NO_LIMITS else list(rlimits),
        cgroup_fd,
        _NULL if sandbox_plan is None else sandbox_plan.handle(),
        out,
    )
    if rc == 0:
        return out[0], out[1], out[4]
    if rc == _BAD_STRINGS:
        raise ValueError("embedded null byte")
    stage = stage_name(out[2])
    name = os.fsdecode(program)
    err = out[3]
    raise SpawnError(
        err,
        f"cannot spawn {name!r}: {stage} failed: {os.strerror(err)} (errno {err})",
        stage=stage,
        program=name,
    )


# Moves an fd the library keeps for a child's lifetime above the range new fds
# come from, so spawns stay cheap with thousands open (csrc/fdpark_api.h).
park_fd: Any = lib.os_fd_park
FD_PARK_BASE: int = lib.OS_FD_PARK_BASE

# Sleeps until the child exited, without reaping it: 0 or -errno (see spawn_api.h).
wait_exit_nowait: Any = lib.os_wait_exit_nowait
_os_reap = lib.os_reap


def reap(pid: int) -> tuple[int, int, int, int] | None:
    """``wait4(pid, WNOHANG)``: None while the child runs, else its exit code
    (negative signal number), user and system CPU in microseconds and
    ``ru_maxrss``. Raises ``OSError`` (``ChildProcessError`` if it was reaped
    elsewhere)."""
    out = _new("long long[4]")
    rc = _os_reap(pid, out)
    if rc == 1:
        return out[0], out[1], out[2], out[3]
    if rc == 0:
        return None
    check(rc, f"wait4({pid})")
    return None  # pragma: no cover - check raised


def install_sigchld_wakeup(fd: int) -> None:
    """Makes SIGCHLD write one byte to ``fd`` (non-blocking), chaining to the
    previous handler. Raises ``OSError`` if ``sigaction`` fails."""
    check(lib.os_sigchld_install(fd), "installing the SIGCHLD handler")
