"""cgroup v2 containment and the keeper (``csrc/cgroup.c``).

Thin wrappers: each takes a directory fd of a cgroup v2 and raises OSError
(naming the call) where the C side returned -errno.
"""

from __future__ import annotations

import errno
from typing import Any

from orchestrator_spawn._native import check, ffi, lib


def cgroup_kill(dirfd: int) -> None:
    """SIGKILLs every process of the cgroup and its descendants (cgroup.kill,
    or freeze + kill + thaw before Linux 5.14)."""
    check(lib.os_cgroup_kill(dirfd), "cgroup.kill")


def cgroup_kill_frozen(dirfd: int) -> None:
    """``cgroup_kill``'s fallback for kernels before 5.14, on its own (tests)."""
    check(lib.os_cgroup_kill_frozen(dirfd), "freeze + SIGKILL + thaw")


def cgroup_signal(dirfd: int, sig: int) -> None:
    """Sends ``sig`` to every process of the cgroup and its descendants."""
    check(lib.os_cgroup_signal(dirfd, sig), f"signalling a cgroup with {sig}")


def cgroup_populated(dirfd: int) -> bool:
    """Whether a live process remains in the cgroup or below (cgroup.events)."""
    return check(lib.os_cgroup_populated(dirfd), "reading cgroup.events") == 1


def cgroup_count_procs(dirfd: int) -> int:
    """The number of processes listed in the cgroup's own cgroup.procs."""
    return check(lib.os_cgroup_count_procs(dirfd), "reading cgroup.procs")


def cgroup_wait_empty(dirfd: int, timeout_ms: int) -> int:
    """Sleeps in poll() until the cgroup is unpopulated (1) or ``timeout_ms``
    passed (0; negative waits forever); -EINTR when a signal arrived."""
    rc: int = lib.os_cgroup_wait_empty(dirfd, timeout_ms)
    if rc == -errno.EINTR:
        return rc
    return check(rc, "waiting on cgroup.events")


def cgroup_events_watch(dirfd: int) -> int:
    """A non-blocking inotify fd that turns readable when cgroup.events changes."""
    return check(lib.os_cgroup_events_watch(dirfd), "inotify on cgroup.events")


cgroup_events_drain: Any = lib.os_cgroup_events_drain


def keeper_start(watch_fd: int, kill_groups: bool, own_dirfd: int, name: bytes | None) -> int:
    """Forks the keeper (csrc/cgroup.c); returns its pid. ``own_dirfd`` -1
    (and ``name`` None): no cgroups, only the registered process groups."""
    rc = lib.os_keeper_start(
        watch_fd, int(kill_groups), own_dirfd, ffi.NULL if name is None else name
    )
    return check(rc, "starting the keeper")


def keeper_groups_new() -> None:
    """A fresh table of process groups for the next keeper to kill."""
    check(lib.os_keeper_groups_new(), "mapping the keeper's table")


# (pgid, 1) registers a process group with the keeper, (pgid, 0) forgets it.
keeper_group_set: Any = lib.os_keeper_group_set
