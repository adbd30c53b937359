"""Reused job cgroups (the pool in ``_platform/cgroup.py``), with real cgroups.

A job's cgroup, once the job is reaped and the cgroup empty, serves the next
job. These tests check that nothing of one job reaches the next through it:
CPU usage, limits, cgroups made below it, a kill; and that pooled cgroups
are removed at exit, after a crash (the keeper) and with the switches off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_spawn import PIPE, ResourceLimits, spawn
from orchestrator_spawn._platform import cgroup

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux only"),
]

# About 0.2 s of CPU in the shell itself.
BURN = "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done"


@pytest.fixture
def pool() -> Iterator[None]:
    """Cgroups on, the pool on and empty (skips without a writable cgroup v2)."""
    saved = cgroup.enabled(), cgroup._pool_enabled
    cgroup.set_enabled(True)
    cgroup._pool_enabled = True
    try:
        status = cgroup.status()
        if not status.available:
            pytest.skip(f"no writable cgroup v2 here: {status.reason}")
        cgroup.drain_pool()
        yield
    finally:
        cgroup.set_enabled(saved[0])
        cgroup._pool_enabled = saved[1]
        cgroup.drain_pool()


def _idle_paths() -> list[str]:
    return [cached.path for kind in (True, False) for cached in cgroup._idle[kind]]


def _finished_job(argv: list[str], **kwargs: object) -> str:
    """Runs a job to its end; returns the cgroup it had."""
    child = spawn(argv, **kwargs)  # type: ignore[arg-type]
    path = child._cgroup
    assert path is not None
    assert child.wait_blocking(timeout=30) == 0
    return path


def test_a_finished_jobs_cgroup_serves_the_next_job(pool: None) -> None:
    first = _finished_job(["true"])
    assert _idle_paths() == [first]
    second = spawn(["sleep", "0.2"])
    try:
        assert second.containment == "cgroup"
        assert second._cgroup == first
        assert Path(first, "cgroup.procs").read_text().split() == [str(second.pid)]
    finally:
        assert second.wait_blocking(timeout=10) == 0
    assert _idle_paths() == [first]


def test_cpu_usage_of_a_reused_cgroup_is_the_new_jobs_own(pool: None) -> None:
    burner = spawn(["sh", "-c", BURN])
    path = burner._cgroup
    assert burner.wait_blocking(timeout=30) == 0
    burned = burner.job_usage().cpu_seconds
    assert burned >= 0.05
    # The cgroup's own counter keeps the first job's CPU...
    total = int(Path(path, "cpu.stat").read_text().split()[1]) / 1e6  # type: ignore[arg-type]
    assert total >= burned
    # ...but the next job in it reports only its own, running and finished.
    idle = spawn(["sleep", "0.3"])
    try:
        assert idle._cgroup == path
        running = idle.job_usage()
        assert running.processes == 1
        assert running.cpu_seconds < burned / 2
    finally:
        assert idle.wait_blocking(timeout=10) == 0
    assert idle.job_usage().cpu_seconds < burned / 2
    # And the first job's figure stays what it was.
    assert burner.job_usage().cpu_seconds == burned


def test_limits_of_one_job_do_not_reach_the_next(pool: None) -> None:
    # Limits are per process (rlimits): nothing of them is kept in the cgroup.
    limited = spawn(
        ["sh", "-c", "ulimit -n"],
        stdout=PIPE,
        limits=ResourceLimits(open_files=64, processes=500),
    )
    path = limited._cgroup
    assert limited.stdout is not None
    assert limited.stdout.read().strip() == b"64"
    assert limited.wait_blocking(timeout=10) == 0
    limited.close()
    free = spawn(["sh", "-c", "ulimit -n"], stdout=PIPE)
    assert free._cgroup == path
    assert free.stdout is not None
    assert free.stdout.read().strip() != b"64"
    assert free.wait_blocking(timeout=10) == 0
    free.close()


def test_a_killed_jobs_cgroup_is_not_reused(pool: None) -> None:
    # On Linux 6.18 a child cloned into a cgroup once killed through
    # cgroup.kill is SIGKILLed at birth: such a cgroup must not be reused.
    victim = spawn(["sleep", "30"])
    path = victim._cgroup
    victim.start_kill()
    assert victim.wait_blocking(timeout=10) == -signal.SIGKILL
    assert path not in _idle_paths()
    assert not os.path.exists(path)  # type: ignore[arg-type]
    for _ in range(3):
        nxt = spawn(["sh", "-c", "exit 3"])
        assert nxt._cgroup != path
        assert nxt.wait_blocking(timeout=10) == 3


def test_a_cgroup_with_processes_left_is_not_reused_until_empty(pool: None) -> None:
    leaver = spawn(["sh", "-c", "setsid sleep 0.5 >/dev/null 2>&1 &"])
    path = leaver._cgroup
    assert path is not None
    assert leaver.wait_blocking(timeout=10) == 0
    assert path not in _idle_paths()  # the daemon still runs in it
    other = _finished_job(["true"])
    assert other != path
    assert cgroup.wait_job_empty(path, 10)
    # Empty now: handed back, it is reusable (the sweep would remove it
    # instead if the handle had been dropped while it still ran).
    leaver.close()
    assert path in _idle_paths()
    assert _finished_job(["true"]) == path


def test_a_cgroup_the_job_made_cgroups_in_is_not_reused(pool: None) -> None:
    # A job that made a cgroup below its own (a nested orchestrator does)
    # and left it: its cgroup (and the one below) is removed, not reused.
    script = textwrap.dedent(
        """
        rel=$(sed -n 's/^0:://p' /proc/self/cgroup)
        mkdir "$MOUNT$rel/left-by-job"
        """
    )
    own = cgroup.status().own_cgroup
    assert own is not None
    own_rel = Path("/proc/self/cgroup").read_text().split("0::", 1)[1].split("\n", 1)[0]
    mount = own[: len(own) - len(own_rel)] if own_rel != "/" else own
    maker = spawn(["sh", "-c", script], env={**os.environ, "MOUNT": mount})
    path = maker._cgroup
    assert path is not None
    assert maker.wait_blocking(timeout=10) == 0
    assert path not in _idle_paths()
    assert not os.path.exists(path)
    assert _finished_job(["true"]) != path


def _wait_unpopulated(path: str) -> None:
    """Until the cgroup at ``path`` has no process left (its job exited)."""
    deadline = time.monotonic() + 10
    while Path(path, "cgroup.events").read_text().startswith("populated 1"):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_frozen_cgroup_is_not_reused(pool: None) -> None:
    first = _finished_job(["true"])
    job = spawn(["true"])
    assert job._cgroup == first
    # Exited (a zombie, out of its cgroup) but not reaped yet: freeze the
    # empty cgroup, as a job or a tool could. Frozen, it is not reusable.
    _wait_unpopulated(first)
    Path(first, "cgroup.freeze").write_text("1")
    assert job.wait_blocking(timeout=10) == 0
    assert first not in _idle_paths()
    assert not os.path.exists(first)
    # The next job gets a new cgroup and runs.
    nxt = spawn(["sh", "-c", "exit 4"])
    assert nxt._cgroup != first
    assert nxt.wait_blocking(timeout=10) == 4


def test_a_thawed_cgroup_is_reused(pool: None) -> None:
    first = _finished_job(["true"])
    job = spawn(["true"])
    assert job._cgroup == first
    _wait_unpopulated(first)
    Path(first, "cgroup.freeze").write_text("1")
    Path(first, "cgroup.freeze").write_text("0")
    assert job.wait_blocking(timeout=10) == 0
    assert first in _idle_paths()


POOLED_ORCHESTRATOR = textwrap.dedent(
    """
    import sys
    from orchestrator_spawn import spawn
    from orchestrator_spawn._platform import cgroup

    children = [spawn(["true"]) for _ in range(4)]
    for child in children:
        child.wait_blocking()
    print(cgroup._base.path, flush=True)
    print(*[c.path for kind in (True, False) for c in cgroup._idle[kind]], flush=True)
    if sys.argv[1] == "crash":
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("how", ["exit", "crash"])
def test_pooled_cgroups_are_removed_when_the_orchestrator_ends(pool: None, how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", POOLED_ORCHESTRATOR, how],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2, done.stderr
    base, pooled = lines[0], lines[1].split()
    assert pooled
    assert all(path.startswith(base + "/") for path in pooled)
    if how == "exit":
        assert done.returncode == 0
    else:
        assert done.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while os.path.exists(base) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(base)
    assert not any(os.path.exists(path) for path in pooled)


def test_the_fds_the_pool_keeps_open_are_bounded(pool: None) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    baseline = open_fds()
    children = [spawn(["sleep", "0.2"]) for _ in range(cgroup._POOL_LIVE_MAX + 10)]
    # Three per running job with a pooled cgroup, none for the jobs beyond.
    assert open_fds() - baseline <= 3 * cgroup._POOL_LIVE_MAX + 2 + len(children)
    assert len(cgroup._live) == cgroup._POOL_LIVE_MAX
    for child in children:
        assert child.wait_blocking(timeout=30) == 0
    assert cgroup._live == {}
    assert len(_idle_paths()) == cgroup._POOL_IDLE_MAX
    assert open_fds() - baseline <= 3 * cgroup._POOL_IDLE_MAX + 2
    cgroup.drain_pool()
    assert open_fds() - baseline <= 2  # jobs/'s subtree_control, maybe detached/'s


def test_drain_removes_the_idle_cgroups(pool: None) -> None:
    paths = {_finished_job(["true"]) for _ in range(3)}
    assert set(_idle_paths()) == paths
    cgroup.drain_pool()
    assert _idle_paths() == []
    assert not any(os.path.exists(path) for path in paths)


SWITCHED = textwrap.dedent(
    """
    from orchestrator_spawn import spawn
    paths = []
    for _ in range(3):
        child = spawn(["true"])
        paths.append(str(child._cgroup))
        child.wait_blocking()
    print(child.containment, len(set(paths)))
    """
)


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (cgroup.DISABLE_CGROUP_ENV, "process_group 1"),  # all None
        (cgroup.POOL_ENV, "cgroup 3"),  # a new cgroup per job
    ],
)
def test_switches(pool: None, variable: str, expected: str) -> None:
    value = "1" if variable == cgroup.DISABLE_CGROUP_ENV else "0"
    done = subprocess.run(
        [sys.executable, "-c", SWITCHED],
        cwd=ROOT,
        env={**os.environ, variable: value},
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.decode().strip() == expected


def test_a_forked_process_does_not_use_the_parents_pool(pool: None) -> None:
    parent_path = _finished_job(["true"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            child = spawn(["true"])
            os.write(write, f"{child._cgroup}\n".encode())
            child.wait_blocking()
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as reader:
        child_path = reader.read().strip()
    os.waitpid(pid, 0)
    assert child_path != parent_path
    assert not child_path.startswith(os.path.dirname(os.path.dirname(parent_path)) + "/")
    assert parent_path in _idle_paths()
