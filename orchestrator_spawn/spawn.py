"""spawn(): start a child process through the native spawn core.

Everything the child needs is prepared here (bytes argv/envp, the PATH to
search, the fd plan, the rlimits); the fork, the child's setup and the exec
happen in C (csrc/spawn*.c) with the GIL released, and no Python code runs in
the child.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeAlias

from orchestrator_spawn import _native, _platform
from orchestrator_spawn._pipe_streams import PipeStreamReader, PipeStreamWriter
from orchestrator_spawn.child import Child

__all__ = ["DEVNULL", "PIPE", "STDOUT", "ResourceLimits", "spawn"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


StdioSpec: TypeAlias = "int | _HasFileno | None"
StrOrBytesPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"


@dataclass(frozen=True)
class ResourceLimits:
    """Resource limits applied with ``setrlimit`` (soft = hard) in the child.

    ``memory_bytes`` -> RLIMIT_AS (bytes of address space), ``cpu_seconds`` ->
    RLIMIT_CPU (CPU seconds), ``processes`` -> RLIMIT_NPROC (processes of the
    user; root is exempt), ``open_files`` -> RLIMIT_NOFILE (fds). ``None``
    leaves a limit as inherited. Values must be non-negative ints, else
    ``TypeError``/``ValueError``.
    """

    memory_bytes: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    open_files: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "processes", "open_files"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ResourceLimits.{name} must be an int or None, got {value!r}")
            if not 0 <= value < 2**63:
                raise ValueError(f"ResourceLimits.{name} must be >= 0, got {value}")

    def as_rlimits(self) -> tuple[int, int, int, int]:
        """(AS, CPU, NPROC, NOFILE) for the C core; -1 means unchanged."""

        def value(v: int | None) -> int:
            return -1 if v is None else v

        return (
            value(self.memory_bytes),
            value(self.cpu_seconds),
            value(self.processes),
            value(self.open_files),
        )


_NO_LIMITS = (-1, -1, -1, -1)


def _pack(items: Sequence[bytes]) -> bytes:
    """NUL-terminated strings back to back, the form the C core splits."""
    return b"\0".join(items) + b"\0" if items else b""


def _encode_argv(argv: Sequence[StrOrBytesPath]) -> list[bytes]:
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a sequence of arguments, not a single string")
    args = [os.fsencode(arg) for arg in argv]
    if not args:
        raise ValueError("argv must not be empty")
    for arg in args:
        if b"\0" in arg:
            raise ValueError(f"argument {os.fsdecode(arg)!r} contains a NUL byte")
    return args


def _encode_env(env: Mapping[Any, Any] | None) -> tuple[bytes | None, int, bytes | None]:
    """The child's environment packed for the C core (None: inherit the
    process's environment as is), its entry count, and the PATH it holds."""
    if env is None:
        return None, 0, _inherited_path()
    envp = []
    path = None
    for raw_key, raw_value in env.items():
        key, value = os.fsencode(raw_key), os.fsencode(raw_value)
        if b"=" in key or b"\0" in key:
            raise ValueError(f"illegal environment variable name {os.fsdecode(key)!r}")
        if b"\0" in value:
            raise ValueError(f"environment variable {os.fsdecode(key)!r} contains a NUL byte")
        if key == b"PATH":
            path = value
        envp.append(key + b"=" + value)
    return _pack(envp), len(envp), path


def _inherited_path() -> bytes | None:
    # os.environ keeps its data encoded in ``_data`` (bytes on POSIX); one
    # dict lookup instead of encoding through os.environb.
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        path = data.get(b"PATH")
        return path if isinstance(path, bytes) else None
    return os.environb.get(b"PATH")  # pragma: no cover - another Python


def _fd_of(spec: Any, name: str) -> int:
    if isinstance(spec, bool):
        raise TypeError(f"{name} must be None, PIPE, DEVNULL, an fd or a file object")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"{name}: invalid file descriptor {spec}")
        return spec
    fileno = getattr(spec, "fileno", None)
    if fileno is None:
        raise TypeError(f"{name} must be None, PIPE, DEVNULL, an fd or a file object")
    fd = fileno()
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"{name}: fileno() returned {fd!r}")
    return fd


class _StdioPlan:
    """The child's fds 0-2 and the parent's pipe ends; closes them on failure."""

    def __init__(self) -> None:
        self.child_fds = [_native.FD_INHERIT] * 3
        self.parent_fds: list[int | None] = [None, None, None]
        self._child_pipe_ends: list[int] = []

    def add(self, index: int, spec: Any, name: str) -> None:
        if spec is None:
            return
        if spec is PIPE or (isinstance(spec, int) and spec == PIPE):
            read_end, write_end = os.pipe()  # close-on-exec on both ends
            if index == 0:
                self.child_fds[0], self.parent_fds[0] = read_end, write_end
                self._child_pipe_ends.append(read_end)
            else:
                self.child_fds[index], self.parent_fds[index] = write_end, read_end
                self._child_pipe_ends.append(write_end)
        elif isinstance(spec, int) and spec == DEVNULL:
            self.child_fds[index] = _native.FD_DEVNULL
        elif isinstance(spec, int) and spec == STDOUT:
            if index != 2:
                raise ValueError("STDOUT is only valid for stderr")
            out = self.child_fds[1]
            self.child_fds[2] = 1 if out == _native.FD_INHERIT else out
        else:
            self.child_fds[index] = _fd_of(spec, name)

    def close_child_ends(self) -> None:
        for fd in self._child_pipe_ends:
            os.close(fd)
        self._child_pipe_ends = []

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in self.parent_fds:
            if fd is not None:
                os.close(fd)
        self.parent_fds = [None, None, None]


def _pass_fds(pass_fds: Iterable[int]) -> tuple[int, ...]:
    fds = set()
    for fd in pass_fds:
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise ValueError(f"pass_fds: invalid file descriptor {fd!r}")
        if fd > 2:
            fds.add(fd)
    return tuple(sorted(fds))


def _wrap_streams(
    plan: _StdioPlan,
) -> tuple[
    PipeStreamWriter | IO[bytes] | None,
    PipeStreamReader | IO[bytes] | None,
    PipeStreamReader | IO[bytes] | None,
]:
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    stdin_fd, stdout_fd, stderr_fd = plan.parent_fds
    if loop is not None:
        return (
            PipeStreamWriter(stdin_fd, loop) if stdin_fd is not None else None,
            PipeStreamReader(stdout_fd, loop) if stdout_fd is not None else None,
            PipeStreamReader(stderr_fd, loop) if stderr_fd is not None else None,
        )
    return (
        open(stdin_fd, "wb") if stdin_fd is not None else None,
        open(stdout_fd, "rb") if stdout_fd is not None else None,
        open(stderr_fd, "rb") if stderr_fd is not None else None,
    )


def spawn(
    argv: Sequence[StrOrBytesPath],
    *,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    process_group: bool = True,
    limits: ResourceLimits | None = None,
    pass_fds: Iterable[int] = (),
    _sandbox_plan: Any = None,
) -> Child:
    """Starts ``argv`` as a child process and returns its :class:`Child` handle.

    - ``argv[0]`` without a slash is searched on the ``PATH`` of the child's
      environment (``os.defpath`` if it has none), in the parent, like
      ``execvpe``: the first executable regular file wins; if none, ``EACCES``
      when a candidate was not executable, else ``ENOENT``.
    - ``env=None`` passes this process's environment (``os.environ``, which
      writes through to the C ``environ`` the child gets, as with
      subprocess); a mapping is exactly the child's env.
    - ``stdin``/``stdout``/``stderr``: None (inherit), ``PIPE``, ``DEVNULL``,
      an fd or an object with ``fileno()``; ``stderr`` may be ``STDOUT``. With
      ``PIPE``, the handle's attribute is an asyncio stream when ``spawn`` is
      called inside a running event loop, else a blocking binary file object.
    - ``process_group=True`` puts the child in a new process group
      (``child.pgid == child.pid``).
    - ``limits`` are applied with ``setrlimit`` (soft = hard) before exec.
    - Only fds 0-2 and ``pass_fds`` are open in the new program; every signal
      disposition is default and the signal mask is empty there.
    - ``_sandbox_plan`` is PRIVATE: a cffi ``os_sandbox_plan *`` built by the
      sandbox layer (the runner passes it). With a plan the child is a real
      fork and runs the sandbox hooks; a failing hook is stage "sandbox".

    Raises ``ValueError`` (before any fork) for an empty argv, NUL bytes in
    argv/env/cwd, ``=`` in an env name; ``SpawnError`` (an ``OSError`` with
    ``.errno``, ``.stage``, ``.program``) if the child failed before exec, in
    which case it was already reaped.
    """
    args = _encode_argv(argv)
    env_block, env_count, env_path = _encode_env(env)
    cwd_bytes = None
    if cwd is not None:
        cwd_bytes = os.fsencode(cwd)
        if b"\0" in cwd_bytes:
            raise ValueError(f"cwd {os.fsdecode(cwd_bytes)!r} contains a NUL byte")
    program = args[0]
    search_path = None
    if b"/" not in program:
        search_path = env_path if env_path is not None else os.fsencode(os.defpath)
    rlimits = limits.as_rlimits() if limits is not None else _NO_LIMITS
    kept_fds = _pass_fds(pass_fds) if pass_fds else ()

    plan = _StdioPlan()
    try:
        if stdin is not None:
            plan.add(0, stdin, "stdin")
        if stdout is not None:
            plan.add(1, stdout, "stdout")
        if stderr is not None:
            plan.add(2, stderr, "stderr")
        pid, pidfd = _native.native_spawn(
            program=program,
            search_path=search_path,
            argv_block=_pack(args),
            argc=len(args),
            env_block=env_block,
            envc=env_count,
            cwd=cwd_bytes,
            stdio=(plan.child_fds[0], plan.child_fds[1], plan.child_fds[2]),
            pass_fds=kept_fds,
            new_process_group=process_group,
            rlimits=rlimits,
            sandbox_plan=_sandbox_plan,
            want_pidfd=_platform.wants_pidfd(),
        )
    except BaseException:
        plan.close_all()
        raise
    plan.close_child_ends()
    notifier = _platform.exit_notifier(pid, pidfd)
    if plan.parent_fds == [None, None, None]:
        child_stdin = child_stdout = child_stderr = None
    else:
        child_stdin, child_stdout, child_stderr = _wrap_streams(plan)
    return Child._create(
        pid=pid,
        pgid=pid if process_group else None,
        notifier=notifier,
        args=args,
        stdin=child_stdin,
        stdout=child_stdout,
        stderr=child_stderr,
    )
