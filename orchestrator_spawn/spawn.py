"""spawn(): start a child process through the native spawn core.

Everything the child needs is prepared here (bytes argv/envp, the PATH to
search, the fd plan, the rlimits); the fork, the child's setup and the exec
happen in C (csrc/spawn*.c) with the GIL released, and no Python code runs in
the child.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Protocol, TypeAlias, final

from orchestrator_spawn import _platform
from orchestrator_spawn._native import spawn as _native
from orchestrator_spawn._native.sandbox import SandboxPlan
from orchestrator_spawn._pipe_streams import ChildStreamReader, ChildStreamWriter
from orchestrator_spawn._platform import cgroup as _cgroup
from orchestrator_spawn.child import Child, log

__all__ = ["DEVNULL", "PIPE", "STDOUT", "ProcessOpener", "ResourceLimits", "open_process", "spawn"]

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
    leaves a limit as inherited. Values must be ints in 0 .. 2**63 - 1
    (``TypeError`` for another type, ``ValueError`` naming the field for a
    negative or too large value).
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
            if value < 0:
                raise ValueError(f"ResourceLimits.{name} must be >= 0, got {value}")
            if value >= 2**63:
                raise ValueError(
                    f"ResourceLimits.{name} is too large: {value} (the largest is 2**63 - 1)"
                )

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


_NO_REDIRECTS = (_native.FD_INHERIT,) * 3
_DEFPATH = os.fsencode(os.defpath)
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _pack(items: Sequence[bytes]) -> bytes:
    """NUL-terminated strings back to back, the form the C core splits."""
    return b"\0".join(items) + b"\0" if items else b""


def _fsencode(arg: Any) -> bytes:
    # os.fsencode, minus a Python-level call for the common exact types.
    kind = type(arg)
    if kind is bytes:
        return arg  # type: ignore[no-any-return]
    if kind is str:
        return arg.encode(_FS_ENCODING, _FS_ERRORS)  # type: ignore[no-any-return]
    return os.fsencode(arg)


def _encode_argv(argv: Sequence[StrOrBytesPath]) -> tuple[list[bytes], bytes]:
    """The encoded arguments and their packed block for the C core."""
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a sequence of arguments, not a single string")
    # The exact str and bytes types inline, no Python call per argument.
    args = [
        arg
        if type(arg) is bytes
        else arg.encode(_FS_ENCODING, _FS_ERRORS)
        if type(arg) is str
        else _fsencode(arg)
        for arg in argv
    ]
    if not args:
        raise ValueError("argv must not be empty")
    block = b"\0".join(args) + b"\0"
    # One C-speed count instead of a membership test per argument.
    if block.count(0) != len(args):
        for arg in args:
            if b"\0" in arg:
                raise ValueError(f"argument {os.fsdecode(arg)!r} contains a NUL byte")
    return args, block


def env_entry(raw_key: Any, raw_value: Any) -> tuple[bytes, bytes]:
    """One variable as (its encoded name, ``b"name=value"``), checked as the
    C core needs it; ``ValueError`` names a variable it would refuse."""
    key, value = _fsencode(raw_key), _fsencode(raw_value)
    if b"=" in key or b"\0" in key:
        raise ValueError(f"illegal environment variable name {os.fsdecode(key)!r}")
    if b"\0" in value:
        raise ValueError(f"environment variable {os.fsdecode(key)!r} contains a NUL byte")
    return key, key + b"=" + value


def _encode_env(env: Mapping[Any, Any] | None) -> tuple[bytes | None, int, bytes | None]:
    """The child's environment packed for the C core (None: inherit the
    process's environment as is), its entry count, and the PATH it holds."""
    if env is None:
        return None, 0, _inherited_path()
    if type(env) is PackedEnv:
        return env.block, env.count, env.path
    envp = []
    path = None
    for raw_key, raw_value in env.items():
        key, entry = env_entry(raw_key, raw_value)
        if key == b"PATH":
            path = entry[5:]
        envp.append(entry)
    return _pack(envp), len(envp), path


class PackedEnv(Mapping[str, str]):
    """A child environment already encoded for the C core.

    Built by :func:`pack_entries` from checked ``b"name=value"`` entries
    (the runner builds these from the cached encoding of ``os.environ``);
    ``spawn`` hands its block to the C core as is. As a mapping it reads
    like the dict it was made from (decoded on first use).
    """

    __slots__ = ("_decoded", "block", "count", "path")

    def __init__(self, block: bytes, count: int, path: bytes | None) -> None:
        self.block = block
        self.count = count
        self.path = path
        self._decoded: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._decoded is None:
            entries = self.block.split(b"\0")[:-1]
            pairs = (entry.partition(b"=") for entry in entries)
            self._decoded = {os.fsdecode(key): os.fsdecode(value) for key, _, value in pairs}
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return self.count


def pack_entries(entries: Mapping[bytes, bytes]) -> PackedEnv:
    """name -> ``b"name=value"`` entries (checked by :func:`env_entry`) as
    an environment ``spawn`` passes to the C core without encoding it again."""
    path_entry = entries.get(b"PATH")
    return PackedEnv(
        _pack(list(entries.values())),
        len(entries),
        None if path_entry is None else path_entry[5:],
    )


# os.environ keeps its data encoded in ``_data`` (bytes on POSIX): one dict
# lookup per spawn instead of encoding through os.environb.
_ENVIRON_DATA = getattr(os.environ, "_data", None)


def _inherited_path() -> bytes | None:
    data = _ENVIRON_DATA
    if type(data) is dict:
        path = data.get(b"PATH")
        return path if type(path) is bytes else None
    return os.environb.get(b"PATH")  # pragma: no cover - another Python


# (os.environ's data dict, a copy of it, its key order, the entries): the
# last encoding of os.environ, replaced as a whole (threads see either).
_environ_encoded: tuple[dict[Any, Any], dict[Any, Any], list[Any], dict[bytes, bytes]] | None = None


def environ_entries() -> dict[bytes, bytes] | None:
    """``os.environ`` encoded for the C core: name -> ``b"name=value"``, in
    ``os.environ``'s order. The caller must not modify the dict.

    Encoded once and reused for as long as ``os.environ`` holds the same
    variables with the same values in the same order: every change made
    through ``os.environ`` (``[]=``, ``del``, ``update``, ``pop``, ``clear``,
    ``setdefault``) shows in its data dict, which is compared with a copy
    (C-speed, about a microsecond for a few dozen variables). ``os.putenv``
    and C code calling ``setenv`` change the C environment only, which
    ``os.environ`` (and so the runner's environment) never saw before either.

    None when ``os.environ`` is not the process's own mapping (a test may
    replace it) or holds a variable the C core would refuse: the caller then
    takes the general path, which reads it as before and names the culprit.
    """
    global _environ_encoded
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict:
        return None
    cached = _environ_encoded
    if cached is not None and cached[0] is data and data == cached[1] and list(data) == cached[2]:
        return cached[3]
    snapshot = dict(data)
    entries: dict[bytes, bytes] = {}
    for key, value in snapshot.items():
        if (
            type(key) is not bytes
            or type(value) is not bytes
            or b"=" in key
            or b"\0" in key
            or b"\0" in value
        ):
            return None
        entries[key] = key + b"=" + value
    _environ_encoded = (data, snapshot, list(snapshot), entries)
    return entries


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


def _wrap_streams(plan: _StdioPlan, async_streams: bool) -> tuple[Any, Any, Any]:
    stdin_fd, stdout_fd, stderr_fd = plan.parent_fds
    if async_streams:
        return (
            ChildStreamWriter(stdin_fd) if stdin_fd is not None else None,
            ChildStreamReader(stdout_fd) if stdout_fd is not None else None,
            ChildStreamReader(stderr_fd) if stderr_fd is not None else None,
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
    die_with_parent: bool = True,
    _sandbox_plan: SandboxPlan | None = None,
    _async_streams: bool = False,
    _output_follower: Any = None,
) -> Child[IO[bytes], IO[bytes]]:
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
      ``PIPE``, the handle's attribute is a blocking binary file object,
      whoever calls (``open_process()`` gives async streams).
    - ``process_group=True`` puts the child in a new process group
      (``child.pgid == child.pid``).
    - ``limits`` are applied with ``setrlimit`` (soft = hard) before exec.
    - Only fds 0-2 and ``pass_fds`` are open in the new program; every signal
      disposition is default and the signal mask is empty there.
    - Containment (``child.containment``): on Linux with a writable cgroup v2
      directory the job gets a cgroup of its own, entered before exec, so
      that killing it reaches everything it started (``"cgroup"``); a
      sandboxed job also gets a pid namespace (``"pid_namespace"`` where
      there is no cgroup); elsewhere it is its process group
      (``"process_group"``). See ``orchestrator_spawn._platform.cgroup``.
    - ``die_with_parent=True``: when this process dies, SIGKILL included,
      the job dies too: the keeper (one small process per orchestrator, see
      ``_platform/cgroup.py``) kills the job's cgroup, or without one its
      process group; ``PR_SET_PDEATHSIG`` is added for spawns from the main
      thread. A job spawned from a thread that later exits is not affected.
    - ``_sandbox_plan`` is PRIVATE: an opaque ``SandboxPlan`` built by the
      sandbox layer (the runner passes it). With a plan, clone() makes its
      namespaces and the child runs the sandbox hooks (a real fork that
      unshares them where clone() may not); a failing hook is stage
      "sandbox". ``_async_streams`` is PRIVATE too: ``open_process()`` and
      the runner's ``pipe_stdin`` ask for async streams with it; so is
      ``_output_follower``: the pump's handle of the capture the child
      writes into, which the handle follows from birth (see
      ``Child._follow_output``).

    Raises ``ValueError`` (before any fork) for an empty argv, NUL bytes in
    argv/env/cwd, ``=`` in an env name; ``SpawnError`` (an ``OSError`` with
    ``.errno``, ``.stage``, ``.program``, ``.filename``; also the errno's
    builtin: ``FileNotFoundError``, ``PermissionError``, ...) if the child
    failed before exec, in which case it was already reaped; ``TypeError``
    for ``limits`` that are not a ``ResourceLimits``.
    """
    args, argv_block = _encode_argv(argv)
    if env is None:
        env_block, env_count, env_path = None, 0, None
    else:
        env_block, env_count, env_path = _encode_env(env)
    cwd_bytes = None
    if cwd is not None:
        cwd_bytes = _fsencode(cwd)
        if b"\0" in cwd_bytes:
            raise ValueError(f"cwd {os.fsdecode(cwd_bytes)!r} contains a NUL byte")
    program = args[0]
    search_path = None
    if b"/" not in program:
        if env is None:
            env_path = _inherited_path()
        search_path = env_path if env_path is not None else _DEFPATH
    if limits is None:
        rlimits = _native.NO_LIMITS
    elif isinstance(limits, ResourceLimits):
        rlimits = limits.as_rlimits()
    else:
        raise TypeError(f"limits must be a ResourceLimits or None, not {type(limits).__name__}")
    kept_fds = _pass_fds(pass_fds) if pass_fds else ()
    if _sandbox_plan is not None:
        # The plan's own fd (the allowlist proxy's handoff socketpair end):
        # the child's sandbox step sends on it and closes it before exec.
        sandbox_fd = _sandbox_plan.inherited_fd()
        if sandbox_fd > 2:
            kept_fds = tuple(sorted({*kept_fds, sandbox_fd}))
    flags = _native.NEW_PROCESS_GROUP if process_group else 0
    if die_with_parent:
        flags |= _native.DIE_WITH_PARENT
    if _sandbox_plan is not None:
        flags |= _native.NEW_PID_NS
    job = _cgroup.new_job(bool(die_with_parent)) if _cgroup._enabled else None
    if _platform.pidfd_at_spawn(_async_streams):
        flags |= _native.WANT_PIDFD

    # With nothing redirected (the common case) there is no plan to build or
    # to clean up on failure.
    plan = None
    child_fds: Sequence[int] = _NO_REDIRECTS
    try:
        if stdin is not None or stdout is not None or stderr is not None:
            plan = _StdioPlan()
            plan.add(0, stdin, "stdin")
            plan.add(1, stdout, "stdout")
            plan.add(2, stderr, "stderr")
            child_fds = plan.child_fds
        pid, pidfd, contained = _native.spawn_packed(
            program,
            search_path,
            argv_block,
            len(args),
            env_block,
            env_count,
            cwd_bytes,
            child_fds[0],
            child_fds[1],
            child_fds[2],
            kept_fds,
            flags,
            rlimits,
            -1 if job is None else job[1],
            _sandbox_plan,
        )
    except BaseException:
        if plan is not None:
            plan.close_all()
        if job is not None:
            _cgroup.spawned(job)
            _cgroup.release_job(job[0])  # no process ever entered it
        raise
    cgroup_path = None
    if job is not None:
        _cgroup.spawned(job)
        cgroup_path = job[0]
    if cgroup_path is not None and not contained & _native.CONTAINED_CGROUP:
        _cgroup.release_job(cgroup_path)  # cannot happen: the child joins or fails
        cgroup_path = None
    if contained & _native.CONTAINED_CGROUP:
        containment = "cgroup"
    elif contained & _native.CONTAINED_PID_NS:
        containment = "pid_namespace"
    else:
        containment = "process_group"
    keeper_group = None
    if cgroup_path is None and die_with_parent and process_group and _cgroup.register_group(pid):
        # No cgroup: the keeper SIGKILLs the job's process group if this
        # process dies first (PR_SET_PDEATHSIG covers the main thread's
        # spawns only, and the child itself only).
        keeper_group = pid
    child_stdin = child_stdout = child_stderr = None
    if plan is not None:
        plan.close_child_ends()
        if plan.parent_fds != [None, None, None]:
            child_stdin, child_stdout, child_stderr = _wrap_streams(plan, _async_streams)
    notifier = _platform.exit_notifier(pid, pidfd)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "spawn pid=%d argv0=%r sandbox=%s containment=%s",
            pid,
            os.fsdecode(program),
            "host" if _sandbox_plan is None else "sandbox",
            "process_group" if process_group else "none",
        )
    return Child._create(
        pid,
        pid if process_group else None,
        notifier,
        args,
        child_stdin,
        child_stdout,
        child_stderr,
        containment,
        cgroup_path,
        keeper_group,
        _output_follower,
    )


AsyncChild: TypeAlias = "Child[ChildStreamWriter, ChildStreamReader]"


@final
class ProcessOpener:
    """What ``open_process()`` returns: ``await`` it for the :class:`Child`,
    or use it as ``async with open_process(...) as child:`` (leaving the
    block kills the job if it still runs, reaps it and closes the pipes)."""

    __slots__ = ("_argv", "_child", "_options")

    def __init__(self, argv: Sequence[StrOrBytesPath], options: dict[str, Any]) -> None:
        self._argv = argv
        self._options = options
        self._child: AsyncChild | None = None

    def _open(self) -> AsyncChild:
        child: AsyncChild = spawn(  # type: ignore[assignment]
            self._argv, _async_streams=True, **self._options
        )
        return child

    def __await__(self) -> Generator[Any, None, AsyncChild]:
        # The spawn itself does not wait for anything: no suspension point.
        yield from ()  # a generator, so that ``await`` accepts it
        return self._open()

    async def __aenter__(self) -> AsyncChild:
        self._child = self._open()
        return self._child

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        child, self._child = self._child, None
        if child is not None:
            await child.__aexit__(exc_type, exc, tb)


def open_process(
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
    die_with_parent: bool = True,
) -> ProcessOpener:
    """The async twin of :func:`spawn`, with the same arguments:
    ``child = await open_process(...)`` or ``async with open_process(...) as
    child:``.

    With ``PIPE``, ``child.stdin`` is a :class:`ChildStreamWriter` and
    ``child.stdout``/``child.stderr`` are :class:`ChildStreamReader`
    objects (the asyncio stream methods), usable under asyncio, uvloop and
    trio. Raises what ``spawn()`` raises, when awaited."""
    return ProcessOpener(
        argv,
        {
            "cwd": cwd,
            "env": env,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "process_group": process_group,
            "limits": limits,
            "pass_fds": pass_fds,
            "die_with_parent": die_with_parent,
        },
    )
