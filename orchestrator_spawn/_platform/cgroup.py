"""cgroup v2 job containment (Linux): one cgroup per job, and the keeper.

Where this process's own cgroup v2 directory is writable (root, or a
delegated subtree such as ``systemd-run --user --scope -p Delegate=yes``),
every job gets a cgroup of its own, entered at spawn (``clone3`` with
``CLONE_INTO_CGROUP``, or the child writes itself into ``cgroup.procs``
before exec). Killing a job is then one write to its ``cgroup.kill``, which
reaches every process it started, ``setsid``'d and double-forked ones
included; waiting for a job to be empty watches its ``cgroup.events``.

Layout, below the orchestrator's own cgroup (found through
``/proc/self/cgroup`` and the cgroup2 mount in ``/proc/self/mountinfo``,
wherever it is mounted: ``/sys/fs/cgroup`` or beside v1 controllers at
``/sys/fs/cgroup/unified``)::

    <own cgroup>/orchestrator-spawn.<pid>.<token>/
        jobs/<n>        jobs that die with the orchestrator (the default)
        detached/<n>    jobs spawned with die_with_parent=False

No process lives in the three upper directories, so the cgroup v2 "no
internal processes" rule never applies; none of the files used here needs a
controller. The per-orchestrator directory is made on the first spawn,
together with the keeper (``csrc/cgroup.c``): a small process that kills
``jobs/`` once this process died, SIGKILL included, and removes the
directories.

Reuse. Making and removing a cgroup (mkdir, rmdir, opening its files) costs
the orchestrator's thread more than the rest of a spawn, so a job's cgroup,
once the job is reaped and the cgroup is empty, goes to a small pool of idle
cgroups (at most ``_POOL_IDLE_MAX`` per kind; beyond that, and at exit, they
are removed) and the next job of the same kind gets it. Each pooled cgroup
keeps its directory, ``cpu.stat`` and ``cgroup.events`` open (re-read with
``pread``), parked above the low fds; at most ``_POOL_LIVE_MAX`` running
jobs hold such cgroups at once (more run in cgroups of their own, as
before). Nothing is set in a job's cgroup per job (no controller is
enabled below ``jobs/``, no limit file written), so nothing needs resetting;
what could carry over is checked when a cgroup is handed back: it goes to
the pool only when ``cgroup.events`` says ``populated 0`` and ``frozen 0``
(empty, and thawed), it has no cgroup below it, no controller is enabled for
it (the ``cgroup.subtree_control`` of ``jobs/`` is empty, as we leave it:
a job could otherwise have set limits in its own cgroup) and it was never
killed through ``cgroup.kill`` (a kernel may SIGKILL every later child
cloned into such a cgroup: 6.18 does); otherwise it is removed as before
(or, while processes remain, swept later). CPU usage is cumulative in
``cpu.stat``: it is read when a pooled cgroup is handed out
and ``job_cpu_seconds`` reports the difference, so a job never sees its
predecessors' CPU. Not reset: interface files a job may write into its own
cgroup on purpose (``cgroup.max.descendants``, ``cgroup.max.depth``,
``cgroup.type``), and a ``cgroup.kill`` a job writes into its own cgroup
(our kills are known); ``ORCHESTRATOR_SPAWN_CGROUP_POOL=0`` switches reuse off
(every job then gets a new cgroup, removed when it is done). The keeper
removes pooled cgroups with the rest after a crash.

Without a writable cgroup, jobs are process groups, and a keeper started
on the first such spawn kills the groups registered with it (a bitmap in
memory shared with it: one atomic write per spawn and per reap) when this
process dies.

Off switch: ``ORCHESTRATOR_SPAWN_DISABLE_CGROUP=1`` in the environment (read
at import) or :func:`set_enabled`; jobs are then process groups, as on macOS.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator_spawn._native import cgroup as _native
from orchestrator_spawn._native.spawn import park_fd

__all__ = [
    "DISABLE_CGROUP_ENV",
    "POOL_ENV",
    "Status",
    "enabled",
    "forget_group",
    "job_cpu_seconds",
    "job_process_count",
    "kill_job",
    "new_job",
    "register_group",
    "release_job",
    "remove_job",
    "remove_later",
    "set_enabled",
    "signal_job",
    "status",
]

DISABLE_CGROUP_ENV = "ORCHESTRATOR_SPAWN_DISABLE_CGROUP"
POOL_ENV = "ORCHESTRATOR_SPAWN_CGROUP_POOL"
_PREFIX = "orchestrator-spawn."

_enabled = sys.platform.startswith("linux") and os.environ.get(DISABLE_CGROUP_ENV, "") in ("", "0")
_pool_enabled = os.environ.get(POOL_ENV, "") in ("", "1")


@dataclass(frozen=True)
class Status:
    """What cgroup containment can do here: ``available``; ``own_cgroup``, the
    directory of this process's cgroup v2 (None if not found); ``reason``,
    why containment is off (empty when available)."""

    available: bool
    own_cgroup: str | None
    reason: str


@dataclass
class _Base:
    pid: int  # the process that made it (a forked child makes its own)
    path: str  # <own cgroup>/orchestrator-spawn.<pid>.<token>
    keeper_pid: int
    # The pipe's write end when the keeper watches a pipe (no pidfd_open).
    keeper_pipe: int


@dataclass
class _GroupKeeper:
    """The keeper of the jobs that have no cgroup: it SIGKILLs the process
    groups registered in the table it shares with us (csrc/cgroup.c) once
    this process died."""

    pid: int  # the process that started it
    keeper_pid: int
    keeper_pipe: int


_lock = threading.Lock()
_base: _Base | None = None
_status: Status | None = None
_job_numbers = itertools.count(1)
_spawn_count = itertools.count(1)  # jobs asked for: the lingering sweep's clock
# Job cgroups whose handle is done but which still hold processes the job
# left behind: retried every _SWEEP_EVERY jobs (the keeper removes the rest).
_lingering: set[str] = set()
_SWEEP_EVERY = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC


class _Cached:
    """A job cgroup that can be reused, with its files kept open."""

    __slots__ = (
        "base_usec",
        "cpu_fd",
        "dir_fd",
        "events_fd",
        "killed",
        "kind",
        "path",
    )

    def __init__(self, path: str, kind: bool) -> None:
        self.path = path
        self.kind = kind  # die_with_parent: jobs/ (True) or detached/
        self.base_usec = 0  # cpu.stat usage_usec when the current job started
        # Killed through cgroup.kill: never reused (see kill_job).
        self.killed = False
        fds: list[int] = []
        try:
            fds.append(os.open(path, _DIR_FLAGS))
            for name in ("cpu.stat", "cgroup.events"):
                fds.append(os.open(name, _FILE_FLAGS, dir_fd=fds[0]))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        # Out of the low range the children's pipes are taken from.
        self.dir_fd, self.cpu_fd, self.events_fd = (park_fd(fd) for fd in fds)

    def close(self) -> None:
        for fd in (self.dir_fd, self.cpu_fd, self.events_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def reusable(self) -> bool:
        """Empty, not frozen, no cgroup below it, never killed through
        cgroup.kill, and no controller it could have enabled for its
        children (none is enabled for it: its parent's subtree_control is
        empty, so its own can hold nothing)."""
        if self.killed:
            return False
        try:
            events = os.pread(self.events_fd, 256, 0)
            return (
                events.startswith(b"populated 0\n")
                and b"frozen 1" not in events
                and os.fstat(self.dir_fd).st_nlink == 2  # 2 + its child cgroups
                and not _controllers_enabled(self.path)
            )
        except OSError:
            return False


def _controllers_enabled(path: str) -> bool:
    """Whether the parent of job cgroup ``path`` (``jobs/`` or ``detached/``,
    whose ``cgroup.subtree_control`` is kept open) enables any controller
    for its children: we never do; then a job could have set limits in its
    own cgroup, which would outlive it."""
    parent = path.rpartition("/")[0]
    fd = _parent_fds.get(parent)
    if fd is None:
        fd = park_fd(os.open(parent + "/cgroup.subtree_control", _FILE_FLAGS))
        _parent_fds[parent] = fd
    return os.pread(fd, 256, 0).strip() != b""


# Idle cgroups by kind, and the pooled cgroups jobs use now (by path): three
# fds each (directory, cpu.stat, cgroup.events), so both are bounded.
_POOL_IDLE_MAX = 8
_POOL_LIVE_MAX = 32  # beyond that, jobs get cgroups that keep no fd open
_parent_fds: dict[str, int] = {}  # jobs/ and detached/ -> their subtree_control
_pool_lock = threading.Lock()
_idle: dict[bool, list[_Cached]] = {True: [], False: []}
_live: dict[str, _Cached] = {}


def enabled() -> bool:
    """Whether new jobs may get a cgroup (the off switch is not set)."""
    return _enabled


def set_enabled(value: bool) -> None:
    """Turns cgroup containment on or off for jobs spawned afterwards."""
    global _enabled
    _enabled = value and sys.platform.startswith("linux")


def _unescape_mount_path(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo.
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def own_cgroup_dir() -> tuple[str | None, str]:
    """This process's cgroup v2 directory, or None and the reason."""
    if not sys.platform.startswith("linux"):
        return None, "cgroups exist only on Linux"
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        return None, f"cannot read /proc/self/cgroup: {err.strerror}"
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None, "no cgroup v2 hierarchy (only cgroup v1 controllers are mounted)"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = f.read().splitlines()
    except OSError as err:
        return None, f"cannot read /proc/self/mountinfo: {err.strerror}"
    for line in mounts:
        left, _, right = line.partition(" - ")
        if not right.startswith("cgroup2 "):
            continue
        fields = left.split()
        root, mount_point = _unescape_mount_path(fields[3]), _unescape_mount_path(fields[4])
        if root == "/":
            return os.path.normpath(mount_point + relative), ""
        if relative == root or relative.startswith(root.rstrip("/") + "/"):
            return os.path.normpath(mount_point + relative[len(root.rstrip("/")) :]), ""
    return None, "cgroup v2 is not mounted (no cgroup2 line in /proc/self/mountinfo)"


def _remove_tree(path: str) -> None:
    """Removes an unpopulated cgroup and the cgroups below it."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _sweep_stale(own: str) -> None:
    """Removes what orchestrators that died without their keeper (it was
    killed too) left in our cgroup, once empty."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(own):
            if not entry.name.startswith(_PREFIX):
                continue
            pid_text = entry.name[len(_PREFIX) :].split(".", 1)[0]
            if not pid_text.isdigit():
                continue
            try:
                os.kill(int(pid_text), 0)
                continue  # its orchestrator (or a recycled pid) lives
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                fd = os.open(entry.path, _DIR_FLAGS)
            except OSError:
                continue
            try:
                if _native.cgroup_populated(fd):
                    continue
            except OSError:
                continue
            finally:
                os.close(fd)
            _remove_tree(entry.path)


def _start_keeper(own: str | None, name: str | None, kill_groups: bool = False) -> tuple[int, int]:
    """Forks the keeper; returns (its pid, the pipe write end we keep or -1)."""
    pipe_write = -1
    try:
        watch = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        # No pidfd_open (Linux < 5.3): the keeper waits for EOF on a pipe
        # whose write end only this process holds (close-on-exec).
        watch, pipe_write = os.pipe()
    own_fd = os.open(own, _DIR_FLAGS) if own is not None else -1
    try:
        encoded = os.fsencode(name) if name is not None else None
        keeper = _native.keeper_start(watch, kill_groups, own_fd, encoded)
    except OSError:
        if pipe_write >= 0:
            os.close(pipe_write)
        raise
    finally:
        if own_fd >= 0:
            os.close(own_fd)
        os.close(watch)
    if pipe_write >= 0:
        pipe_write = park_fd(pipe_write)
    return keeper, pipe_write


def _make_base() -> _Base | None:
    """Makes this process's cgroup directory and its keeper (None, with the
    reason in the status, when there is no writable cgroup v2)."""
    global _status
    own, reason = own_cgroup_dir()
    if own is None:
        _status = Status(False, None, reason)
        return None
    name = f"{_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
    path = os.path.join(own, name)
    try:
        os.mkdir(path)
    except OSError as err:
        why = "not writable" if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "error"
        _status = Status(False, own, f"cannot create a cgroup in {own} ({why}: {err.strerror})")
        return None
    try:
        os.mkdir(os.path.join(path, "jobs"))
        os.mkdir(os.path.join(path, "detached"))
        keeper_pid, keeper_pipe = _start_keeper(own, name)
    except OSError as err:
        _remove_tree(path)
        _status = Status(False, own, f"cannot set up job cgroups in {own}: {err}")
        return None
    _sweep_stale(own)
    _status = Status(True, own, "")
    return _Base(os.getpid(), path, keeper_pid, keeper_pipe)


def _current_base() -> _Base | None:
    global _base
    base = _base
    if base is not None and base.pid == os.getpid():
        return base
    with _lock:
        if _base is None or _base.pid != os.getpid():
            if _status is not None and not _status.available and _base is None:
                return None  # tried once, unavailable: do not try per spawn
            _base = _make_base()
        return _base


_group_keeper: _GroupKeeper | None = None


def _current_group_keeper() -> _GroupKeeper | None:
    global _group_keeper
    keeper = _group_keeper
    if keeper is not None and keeper.pid == os.getpid():
        return keeper
    with _lock:
        if _group_keeper is None or _group_keeper.pid != os.getpid():
            try:
                _native.keeper_groups_new()
                keeper_pid, keeper_pipe = _start_keeper(None, None, kill_groups=True)
            except OSError:
                return None
            _group_keeper = _GroupKeeper(os.getpid(), keeper_pid, keeper_pipe)
        return _group_keeper


def register_group(pgid: int) -> bool:
    """Has the keeper SIGKILL process group ``pgid`` if this process dies
    first (a job without a cgroup, spawned with die_with_parent). False when
    no keeper could be started (then only PR_SET_PDEATHSIG applies)."""
    if not sys.platform.startswith("linux"):
        return False
    if _current_group_keeper() is None:
        return False
    _native.keeper_group_set(pgid, 1)
    return True


def forget_group(pgid: int) -> None:
    """The job of process group ``pgid`` was reaped: the keeper forgets it
    (its number may be reused)."""
    keeper = _group_keeper
    if keeper is not None and keeper.pid == os.getpid():
        _native.keeper_group_set(pgid, 0)


def _after_fork_in_child() -> None:
    # A forked child makes a base (and keeper) of its own on its first spawn;
    # the parent's pooled cgroups stay the parent's.
    global _base, _status, _lock, _group_keeper, _pool_lock
    _base = None
    _status = None
    _group_keeper = None
    _lingering.clear()
    _lock = threading.Lock()
    _pool_lock = threading.Lock()
    for cached in [*_idle[True], *_idle[False], *_live.values()]:
        cached.close()
    _idle[True].clear()
    _idle[False].clear()
    _live.clear()
    for fd in _parent_fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _parent_fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def status() -> Status:
    """Whether cgroup containment is available here, set up on demand."""
    if not _enabled:
        own, _ = own_cgroup_dir()
        return Status(False, own, f"switched off ({DISABLE_CGROUP_ENV}=1)")
    _current_base()
    assert _status is not None
    return _status


def new_job(die_with_parent: bool) -> tuple[str, int] | None:
    """A new or reused empty cgroup for one job: (its path, a directory fd),
    or None when cgroup containment is off or unavailable (then the job is a
    process group, as before: nothing fails that worked). Hand the fd back
    with :func:`spawned` once the child is started (or failed to start)."""
    base = _current_base()
    if base is None:
        return None
    if _lingering and next(_spawn_count) % _SWEEP_EVERY == 0:
        _sweep_lingering()
    if _pool_enabled:
        with _pool_lock:
            idle = _idle[die_with_parent]
            cached = idle.pop() if idle else None
            if cached is not None:
                _live[cached.path] = cached
        if cached is not None:
            try:
                cached.base_usec = _usage_usec(cached.cpu_fd)
                return cached.path, cached.dir_fd
            except OSError:
                _forget(cached)  # removed behind our back: make a new one
                with contextlib.suppress(OSError):
                    os.rmdir(cached.path)
    number = next(_job_numbers)
    path = f"{base.path}/{'jobs' if die_with_parent else 'detached'}/{number}"
    try:
        os.mkdir(path)
        if _pool_enabled and len(_live) < _POOL_LIVE_MAX:
            try:
                cached = _Cached(path, die_with_parent)
            except OSError:
                pass
            else:
                with _pool_lock:
                    _live[path] = cached
                return path, cached.dir_fd
        return path, os.open(path, _DIR_FLAGS)
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None


def spawned(job: tuple[str, int]) -> None:
    """The child of ``job`` (from :func:`new_job`) was started or failed:
    closes the directory fd unless the pool keeps it."""
    cached = _live.get(job[0])
    if cached is None or cached.dir_fd != job[1]:
        os.close(job[1])


def _forget(cached: _Cached) -> None:
    with _pool_lock:
        if _live.get(cached.path) is cached:
            del _live[cached.path]
    cached.close()


def release_job(path: str) -> bool:
    """The job of cgroup ``path`` is done with it: the cgroup goes back to
    the pool when it is reusable (see the module's docstring), else it is
    removed. False while a process still lives in it (nothing done)."""
    cached = _live.get(path)
    if cached is not None and _pool_enabled and cached.reusable():
        with _pool_lock:
            idle = _idle[cached.kind]
            if _live.get(path) is cached and len(idle) < _POOL_IDLE_MAX:
                del _live[path]
                idle.append(cached)
                return True
    return remove_job(path)


def drain_pool() -> None:
    """Removes the idle pooled cgroups (at exit; also for tests)."""
    with _pool_lock:
        idle = [*_idle[True], *_idle[False]]
        _idle[True].clear()
        _idle[False].clear()
    for cached in idle:
        cached.close()
        with contextlib.suppress(OSError):
            os.rmdir(cached.path)


atexit.register(drain_pool)


def remove_later(path: str) -> None:
    """Removes the job cgroup ``path`` once its last process is gone."""
    _lingering.add(path)


def _sweep_lingering() -> None:
    for path in list(_lingering):
        try:
            done = remove_job(path)
        except OSError:
            done = True  # not ours to fix: stop trying
        if done:
            _lingering.discard(path)


def _with_dir(path: str, call: Callable[[int], Any]) -> Any:
    fd = os.open(path, _DIR_FLAGS)
    try:
        return call(fd)
    finally:
        os.close(fd)


def kill_job(path: str) -> bool:
    """SIGKILLs every process of the job's cgroup; False if it is gone.

    The cgroup is not reused afterwards: on some kernels (6.18 here) a
    child cloned with CLONE_INTO_CGROUP into a cgroup that was once killed
    through ``cgroup.kill`` is SIGKILLed at birth."""
    cached = _live.get(path)
    if cached is not None:
        cached.killed = True
    try:
        _with_dir(path, _native.cgroup_kill)
    except FileNotFoundError:
        return False
    return True


def signal_job(path: str, sig: int) -> bool:
    """Sends ``sig`` to every process of the job's cgroup; False if it is gone."""
    try:
        _with_dir(path, lambda fd: _native.cgroup_signal(fd, sig))
    except FileNotFoundError:
        return False
    return True


def job_populated(path: str) -> bool:
    """Whether a live process remains in the job's cgroup (False: gone)."""
    try:
        return bool(_with_dir(path, _native.cgroup_populated))
    except FileNotFoundError:
        return False


def wait_job_empty(path: str, timeout: float | None) -> bool:
    """Sleeps (poll on cgroup.events) until the job's cgroup is empty or
    ``timeout`` seconds passed; True when empty (or gone)."""
    timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    try:
        while (rc := _native.cgroup_wait_empty(fd, timeout_ms)) == -errno.EINTR:
            pass
        return rc == 1
    finally:
        os.close(fd)


def events_watch(path: str) -> int:
    """An inotify fd, readable when the job's cgroup.events changes."""
    fd: int = _with_dir(path, _native.cgroup_events_watch)
    return fd


def remove_job(path: str) -> bool:
    """Removes the job's cgroup; False while a process still lives in it."""
    removed = _remove_job_dir(path)
    if removed:
        cached = _live.get(path)
        if cached is not None:
            _forget(cached)
    return removed


def _remove_job_dir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
        # Busy: a process still lives in it, or the job made cgroups of its
        # own below it (a nested orchestrator does), which go first.
        if job_populated(path):
            return False
        _remove_tree(path)
        return not os.path.exists(path)
    return True


def _usage_usec(fd: int) -> int:
    text = os.pread(fd, 4096, 0)
    start = text.find(b"usage_usec ")
    if start < 0:
        return 0
    end = text.find(b"\n", start)
    return int(text[start + 11 : end if end >= 0 else len(text)])


def job_cpu_seconds(path: str) -> float:
    """CPU seconds used by every process of the job's cgroup since the job
    started (``usage_usec`` of cpu.stat, which needs no controller, minus
    what earlier jobs of a reused cgroup used)."""
    cached = _live.get(path)
    if cached is not None:
        return max(0, _usage_usec(cached.cpu_fd) - cached.base_usec) / 1e6
    # Raw os calls: read at every reap, where open() costs three times more.
    fd = os.open(path + "/cpu.stat", _FILE_FLAGS)
    try:
        return _usage_usec(fd) / 1e6
    finally:
        os.close(fd)


def job_process_count(path: str) -> int:
    """Live processes in the job's cgroup and the cgroups below it."""
    count: int = _with_dir(path, _native.cgroup_count_procs)
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                count += job_process_count(entry.path)
    return count
