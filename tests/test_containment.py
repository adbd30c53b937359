"""Job containment (CONTRACT §7): nothing a job starts outlives it.

Real processes, real cgroups: each test starts a job whose descendants escape
its process group (``setsid``) or its process tree (a double fork), and
checks that every kill path ends them. The cgroup tests need a writable
cgroup v2 directory (root here); the fallback tests switch cgroups off.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator_spawn
from orchestrator_spawn import PIPE, Child, spawn
from orchestrator_spawn._native import cgroup as native_cgroup
from orchestrator_spawn._native import spawn as native_spawn
from orchestrator_spawn._platform import cgroup
from orchestrator_spawn.run import run as run_job
from orchestrator_spawn.run import run_blocking
from tests.helpers.processes import CLI, wait_gone

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux only"),
]

# Starts two escapees and prints their pids, then "ready": one setsid'd (its
# own session and group), one double-forked (reparented away from the job).
ESCAPEES = textwrap.dedent(
    """
    setsid sh -c 'echo $$; exec sleep 300' &
    (sh -c 'echo $$; exec sleep 301' &)
    sleep 0.05
    echo ready
    """
)


def _cgroup_reason() -> str | None:
    status = cgroup.status()
    return None if status.available else status.reason


@pytest.fixture
def cgroups() -> Iterator[None]:
    """Cgroup containment on (skips where there is no writable cgroup v2)."""
    saved = cgroup.enabled()
    cgroup.set_enabled(True)
    try:
        reason = _cgroup_reason()
        if reason is not None:
            pytest.skip(f"no writable cgroup v2 here: {reason}")
        yield
    finally:
        cgroup.set_enabled(saved)


def _env_with_cgroups() -> dict[str, str]:
    """This environment without the off switch (for child orchestrators)."""
    return {k: v for k, v in os.environ.items() if k != cgroup.DISABLE_CGROUP_ENV}


def _escapee_pids(stream: object, expected: int = 2) -> list[int]:
    """Reads the escapees' pids (they may come after "ready": the double
    fork runs on its own schedule) up to "ready" and ``expected`` pids."""
    pids: list[int] = []
    ready = False
    while not (ready and len(pids) >= expected):
        line = stream.readline()  # type: ignore[attr-defined]
        assert line, "the job ended before it said ready"
        if line.strip() == b"ready":
            ready = True
        else:
            pids.append(int(line))
    return pids


def _spawn_escapees(**kwargs: object) -> tuple[Child, list[int]]:
    child = spawn(["sh", "-c", ESCAPEES + "exec sleep 302"], stdout=PIPE, **kwargs)  # type: ignore[arg-type]
    assert child.stdout is not None
    return child, _escapee_pids(child.stdout)


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _cleanup(child: Child, pids: list[int]) -> Iterator[None]:
    """Whatever the test's outcome: SIGKILL what is left of ``pids``, close ``child``."""
    try:
        yield
    finally:
        _kill_leftovers(pids)
        child.close()


def _all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    return all(wait_gone(pid, timeout=timeout) for pid in pids)


def _idle_paths() -> set[str]:
    return {cached.path for kind in (True, False) for cached in cgroup._idle[kind]}


def _released(path: str) -> bool:
    """The job is done with its cgroup: removed, or empty in the pool."""
    return not os.path.exists(path) or (
        path in _idle_paths() and Path(path, "cgroup.procs").read_text() == ""
    )


# -- kill paths ---------------------------------------------------------------


def test_kill_ends_setsid_and_double_forked_descendants(cgroups: None) -> None:
    child, pids = _spawn_escapees()
    with _cleanup(child, pids):
        assert child.containment == "cgroup"
        child.start_kill()
        assert child.wait_blocking(timeout=10) == -signal.SIGKILL
        assert _all_gone(pids)


def test_async_kill_ends_descendants_and_removes_the_cgroup(cgroups: None) -> None:
    child, pids = _spawn_escapees()
    path = child._cgroup
    assert path is not None
    assert os.path.isdir(path)

    async def main() -> int:
        return await child.kill()

    with _cleanup(child, pids):
        assert asyncio.run(main()) == -signal.SIGKILL
        assert _all_gone(pids, timeout=0.5)
        assert not os.path.exists(path)


def test_terminate_escalation_kills_the_whole_job(cgroups: None) -> None:
    # The leader ignores SIGTERM, so terminate() escalates after its grace.
    child = spawn(
        ["sh", "-c", "trap '' TERM; " + ESCAPEES + "while :; do sleep 1; done"], stdout=PIPE
    )
    assert child.stdout is not None
    pids = _escapee_pids(child.stdout)
    with _cleanup(child, pids):
        assert asyncio.run(child.terminate(grace=0.2)) == -signal.SIGKILL
        assert _all_gone(pids)


def test_terminate_reaches_every_process_of_the_job(cgroups: None) -> None:
    # SIGTERM goes to each member, setsid'd ones included: the job ends
    # well before the grace when every process obeys it ...
    child, pids = _spawn_escapees()
    with _cleanup(child, pids):
        started = time.monotonic()
        assert asyncio.run(child.terminate(grace=20)) == -signal.SIGTERM
        assert time.monotonic() - started < 10
        assert _all_gone(pids, timeout=0.5)
    # ... and a daemon that ignores it is killed at the grace, although the
    # child itself exited at once.
    script = "setsid sh -c 'trap \"\" TERM; echo $$; exec sleep 300' &\nsleep 0.05; echo ready\n"
    child = spawn(["sh", "-c", script + "exec sleep 302"], stdout=PIPE)
    assert child.stdout is not None
    pids = _escapee_pids(child.stdout, expected=1)
    with _cleanup(child, pids):
        started = time.monotonic()
        assert asyncio.run(child.terminate(grace=0.5)) == -signal.SIGTERM
        assert time.monotonic() - started >= 0.45
        assert _all_gone(pids, timeout=0.5)
        assert child._cgroup is None


def test_drop_ends_descendants(cgroups: None) -> None:
    child, pids = _spawn_escapees()
    assert child.stdout is not None
    child.stdout.close()
    try:
        del child
        gc.collect()
        assert _all_gone(pids)
    finally:
        _kill_leftovers(pids)


def test_with_block_ends_descendants(cgroups: None) -> None:
    child, pids = _spawn_escapees()
    try:
        with child:
            pass
        assert _all_gone(pids)
    finally:
        _kill_leftovers(pids)


def test_freezing_fallback_of_cgroup_kill(cgroups: None) -> None:
    # Kernels before 5.14 have no cgroup.kill: freeze, SIGKILL each member, thaw.
    child, pids = _spawn_escapees()
    with _cleanup(child, pids):
        path = child._cgroup
        assert path is not None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            native_cgroup.cgroup_kill_frozen(fd)
        finally:
            os.close(fd)
        assert Path(path, "cgroup.freeze").read_text() == "0\n"  # thawed again
        assert child.wait_blocking(timeout=10, whole_job=True) == -signal.SIGKILL
        assert _all_gone(pids)
        assert _released(path)  # frozen, killed member by member, thawed: reusable


def test_kill_after_exit_reaches_what_the_job_left(cgroups: None) -> None:
    # The leader exits on its own; close() leaves its daemons alone (as with
    # a process group), kill() ends them: the cgroup names this job only.
    child = spawn(["sh", "-c", ESCAPEES], stdout=PIPE)
    assert child.stdout is not None
    pids = _escapee_pids(child.stdout)
    with _cleanup(child, pids):
        assert child.wait_blocking(timeout=10) == 0
        assert not any(wait_gone(pid, timeout=0.1) for pid in pids)
        assert child.job_usage().processes == len(pids)
        asyncio.run(child.kill())
        assert _all_gone(pids)
        assert child._cgroup is None


def test_cli_ctrl_c_ends_descendants(cgroups: None) -> None:
    proc = subprocess.Popen(
        [*CLI, "run", "--", "sh", "-c", ESCAPEES + "wait"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=_env_with_cgroups(),
    )
    assert proc.stdout is not None
    pids = _escapee_pids(proc.stdout)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == -signal.SIGINT  # the CLI ends by its job's signal
        assert _all_gone(pids)
    finally:
        _kill_leftovers(pids)
        proc.kill()
        proc.wait()


# -- die with the parent --------------------------------------------------------

ORCHESTRATOR = textwrap.dedent(
    """
    import sys, threading
    from orchestrator_spawn import PIPE, spawn
    script = sys.argv[1]
    jobs = []
    def start(**kwargs):
        child = spawn(["sh", "-c", script + "exec sleep 303"], stdout=PIPE, **kwargs)
        jobs.append(child)
        seen, ready = 0, False
        while not (ready and seen >= 2):  # pids may come after "ready"
            line = child.stdout.readline().strip()
            if line == b"ready":
                ready = True
            else:
                print(int(line), flush=True)
                seen += 1
    start()  # from the main thread
    thread = threading.Thread(target=start)  # from a thread that then exits
    thread.start()
    thread.join()
    start(die_with_parent=False)
    print("containment", jobs[0].containment, *[job.pid for job in jobs], flush=True)
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def _run_orchestrator(
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], list[int], list[int], str, list[int]]:
    """Starts the orchestrator above; returns it, the pids that must die with
    it (two jobs' escapees), those of its die_with_parent=False job (leader
    and escapees), its containment, and the three leaders."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATOR, ESCAPEES],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=_env_with_cgroups() if env is None else env,
    )
    assert proc.stdout is not None
    pids: list[int] = []
    while True:
        line = proc.stdout.readline()
        assert line, "the orchestrator died early"
        if line.startswith(b"containment"):
            _, containment, *leader_text = line.split()
            leaders = [int(pid) for pid in leader_text]
            assert proc.stdout.readline() == b"ready\n"
            break
        pids.append(int(line))
    # The last job (die_with_parent=False): its leader and its two escapees.
    detached_pids = [*pids[-2:], leaders[2]]
    return proc, pids[:-2] + leaders[:2], detached_pids, containment.decode(), leaders


def test_sigkill_of_the_orchestrator_ends_its_jobs(cgroups: None) -> None:
    proc, pids, detached, containment, _ = _run_orchestrator()
    try:
        assert containment == "cgroup"
        assert len(pids) == 6  # two jobs: leader and two escapees each
        proc.kill()
        proc.wait()
        assert _all_gone(pids, timeout=2.0)
        # die_with_parent=False: that job runs on.
        assert not any(wait_gone(pid, timeout=0.2) for pid in detached)
    finally:
        _kill_leftovers(pids + detached)
        proc.kill()
        proc.wait()


def test_keeper_removes_the_orchestrators_cgroups(cgroups: None) -> None:
    own = cgroup.status().own_cgroup
    assert own is not None
    proc, pids, detached, _, _ = _run_orchestrator()
    try:
        mine = [
            name for name in os.listdir(own) if name.startswith(f"orchestrator-spawn.{proc.pid}.")
        ]
        assert len(mine) == 1
        proc.kill()
        proc.wait()
        _kill_leftovers(detached)
        deadline = time.monotonic() + 5
        while os.path.exists(os.path.join(own, mine[0])) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(os.path.join(own, mine[0]))
    finally:
        _kill_leftovers(pids + detached)
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("containment", "fixture"), [("process_group", "no_cgroups"), ("cgroup", "cgroups")]
)
def test_job_from_an_exiting_thread_keeps_running(
    containment: str, fixture: str, request: pytest.FixtureRequest
) -> None:
    # PR_SET_PDEATHSIG would fire when the spawning thread exits: it must
    # only be set for spawns from the main thread.
    request.getfixturevalue(fixture)
    children: list[Child] = []
    thread = threading.Thread(target=lambda: children.append(spawn(["sleep", "30"])))
    thread.start()
    thread.join()
    (child,) = children
    try:
        assert child.containment == containment
        with pytest.raises(TimeoutError):
            child.wait_blocking(timeout=0.3)
    finally:
        child.close()


def test_jobs_die_with_the_orchestrator_without_cgroups() -> None:
    # Without a cgroup the keeper SIGKILLs the jobs' process groups (and
    # PR_SET_PDEATHSIG the main thread's children): the job spawned from an
    # exiting thread dies too. setsid'd escapees are out of reach there.
    env = {**os.environ, cgroup.DISABLE_CGROUP_ENV: "1"}
    proc, pids, detached, containment, leaders = _run_orchestrator(env)
    try:
        assert containment == "process_group"
        proc.kill()
        proc.wait()
        assert wait_gone(leaders[0], timeout=2.0)
        assert wait_gone(leaders[1], timeout=2.0)
        assert not wait_gone(leaders[2], timeout=0.2)  # die_with_parent=False
    finally:
        _kill_leftovers(pids + detached + leaders)
        proc.kill()
        proc.wait()


# -- bookkeeping ----------------------------------------------------------------


def test_no_cgroup_left_after_1000_jobs(cgroups: None) -> None:
    paths = []
    for _ in range(20):
        children = [spawn(["true"]) for _ in range(50)]
        for child in children:
            assert child.containment == "cgroup"
            assert child._cgroup is not None
            paths.append(child._cgroup)
            assert child.wait_blocking(timeout=30) == 0
            assert child._cgroup is None
    # Reused from the pool (each batch after the first starts with the idle
    # ones), at most the pool's size left (idle and empty), none once the
    # pool is drained (as at exit).
    distinct = set(paths)
    assert len(distinct) <= 1000 - 19 * cgroup._POOL_IDLE_MAX
    left = {path for path in distinct if os.path.exists(path)}
    assert left <= _idle_paths()
    assert len(left) <= cgroup._POOL_IDLE_MAX
    assert all(_released(path) for path in left)
    cgroup.drain_pool()
    assert not [path for path in distinct if os.path.exists(path)]
    assert not cgroup._live


def test_job_cgroup_removed_once_left_daemons_exit(cgroups: None) -> None:
    child = spawn(["sh", "-c", "setsid sleep 0.3 &"])
    path = child._cgroup
    assert path is not None
    assert child.wait_blocking(timeout=10) == 0
    assert os.path.isdir(path)  # the daemon still runs in it
    child.close()
    assert cgroup.wait_job_empty(path, 10)
    for _ in range(cgroup._SWEEP_EVERY):
        spawn(["true"]).wait_blocking()
    assert not os.path.exists(path)


@pytest.mark.parametrize("mode", ["cgroup", "process_group"])
def test_wait_whole_job(mode: str) -> None:
    saved = cgroup.enabled()
    cgroup.set_enabled(mode == "cgroup")
    try:
        if mode == "cgroup" and _cgroup_reason() is not None:
            pytest.skip("no writable cgroup v2 here")
        # The daemon outlives the child by a second: wide margins for a
        # loaded machine.
        child = spawn(["sh", "-c", "sleep 1 &"])
        assert child.containment == mode
        started = time.monotonic()
        assert child.wait_blocking(timeout=10) == 0
        assert time.monotonic() - started < 0.8
        assert child.wait_blocking(timeout=10, whole_job=True) == 0
        assert time.monotonic() - started >= 0.9
        assert child._cgroup is None
        # The async twin, and the timeout.
        child = spawn(["sh", "-c", "sleep 1 &"])
        with pytest.raises(TimeoutError):
            child.wait_blocking(timeout=0.1, whole_job=True)
        started = time.monotonic()
        assert asyncio.run(child.wait(whole_job=True)) == 0
        assert time.monotonic() - started >= 0.5
        assert child._cgroup is None
    finally:
        cgroup.set_enabled(saved)


def test_run_waits_for_the_whole_job_on_request(cgroups: None) -> None:
    # The daemon closes its output, so only whole_job makes run() wait for it.
    argv = ["sh", "-c", "setsid sh -c 'exec >/dev/null 2>&1; sleep 1' &"]
    started = time.monotonic()
    assert asyncio.run(run_job(argv)).returncode == 0
    assert time.monotonic() - started < 0.8
    started = time.monotonic()
    assert asyncio.run(run_job(argv, whole_job=True)).returncode == 0
    assert time.monotonic() - started >= 0.9
    # The blocking twin takes the same keyword and waits the same way.
    started = time.monotonic()
    assert run_blocking(argv).returncode == 0
    assert time.monotonic() - started < 0.8
    started = time.monotonic()
    assert run_blocking(argv, whole_job=True).returncode == 0
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize("mode", ["cgroup", "process_group"])
def test_job_usage(mode: str) -> None:
    saved = cgroup.enabled()
    cgroup.set_enabled(mode == "cgroup")
    try:
        if mode == "cgroup" and _cgroup_reason() is not None:
            pytest.skip("no writable cgroup v2 here")
        burn = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"
        child = spawn(["sh", "-c", f"({burn}) & {burn}; echo done; exec sleep 30"], stdout=PIPE)
        assert child.stdout is not None
        assert child.stdout.readline() == b"done\n"
        usage = child.job_usage()
        assert usage.cpu_seconds > 0.02
        assert 1 <= usage.processes <= 2
        child.start_kill()
        child.wait_blocking(whole_job=True)
        after = child.job_usage()
        assert after.processes == 0
        if mode == "cgroup":
            assert after.cpu_seconds >= usage.cpu_seconds
        child.close()
    finally:
        cgroup.set_enabled(saved)


# -- the two ways into the cgroup, threads, fds ------------------------------------


def test_child_joins_its_cgroup_itself_on_the_fork_path(cgroups: None) -> None:
    # The real-fork path (no clone3 there) has the child write itself into
    # cgroup.procs before exec.
    job = cgroup.new_job(True)
    assert job is not None
    path, fd = job
    try:
        read_end, write_end = os.pipe()
        pid, _pidfd, _contained = native_spawn.spawn_packed(
            b"/bin/sh",
            None,
            b"sh\0-c\0grep ^0:: /proc/self/cgroup; exec sleep 30\0",
            3,
            None,
            0,
            None,
            native_spawn.FD_INHERIT,
            write_end,
            native_spawn.FD_INHERIT,
            (),
            native_spawn.NEW_PROCESS_GROUP | native_spawn.FORCE_FORK,
            native_spawn.NO_LIMITS,
            fd,
            None,
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as out:
            # What the child saw of its own cgroup, before it exec'd sleep.
            own = out.readline().decode().strip()
        assert own.startswith("0::")
        assert path.endswith(own[3:])
        assert str(pid) in Path(path, "cgroup.procs").read_text().split()
        assert cgroup.kill_job(path)
        assert os.waitpid(pid, 0)[1] == signal.SIGKILL
        assert cgroup.wait_job_empty(path, 5)
    finally:
        os.close(fd)
        cgroup.remove_job(path)


def test_spawn_from_many_threads_with_containment(cgroups: None) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                with spawn(["sh", "-c", "ls /proc/self/fd"], stdout=PIPE) as child:
                    assert child.containment == "cgroup"
                    assert child.stdout is not None
                    fds = sorted(int(x) for x in child.stdout.read().split())
                    assert child.wait_blocking(timeout=30) == 0
                    # 0-2 and the fd ls itself opens on /proc/self/fd.
                    assert fds[:3] == [0, 1, 2], fds
                    assert len(fds) <= 4, fds
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


# -- fallback --------------------------------------------------------------------


def test_off_switch_falls_back_to_the_process_group() -> None:
    env = {**os.environ, cgroup.DISABLE_CGROUP_ENV: "1"}
    code = (
        "from orchestrator_spawn import spawn\n"
        "c = spawn(['true']); c.wait_blocking(); print(c.containment)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
    )
    assert done.stdout == b"process_group\n"


@pytest.mark.usefixtures("no_cgroups")
def test_process_group_fallback_still_kills_the_group() -> None:
    child = spawn(["sh", "-c", "sleep 300 & echo $!; exec sleep 301"], stdout=PIPE)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        assert child.containment == "process_group"
        assert asyncio.run(child.kill()) == -signal.SIGKILL
        assert wait_gone(grandchild)
    finally:
        _kill_leftovers([grandchild])


def test_unprivileged_user_falls_back_to_the_process_group() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become nobody")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    package = Path(orchestrator_spawn.__file__).resolve().parent
    top = Path(tempfile.mkdtemp(prefix="osp-containment-"))
    try:
        # The package the test imports, with the libraries an installed
        # (auditwheel-repaired) wheel keeps next to it.
        for source in (package, package.with_name(f"{package.name}.libs")):
            if source.is_dir():
                shutil.copytree(
                    source, top / source.name, ignore=shutil.ignore_patterns("__pycache__")
                )
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        code = (
            "from orchestrator_spawn import spawn\n"
            "from orchestrator_spawn._platform import cgroup\n"
            "c = spawn(['true']); c.wait_blocking(); print(c.containment)\n"
            "print(cgroup.status().reason)\n"
            "from orchestrator_spawn._cli_doctor import _containment\n"
            "print(*_containment()['missing'])"
        )
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                sys.executable,
                "-c",
                code,
            ],
            cwd=top,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(top)},
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0 and b"ModuleNotFoundError" in done.stderr:
            pytest.skip("this interpreter's packages are not readable by nobody")
        if done.returncode != 0 and b"error while loading shared libraries" in done.stderr:
            pytest.skip("this interpreter cannot be run by nobody (its libpython is not readable)")
        assert done.returncode == 0, done.stderr
        containment, reason, missing = done.stdout.decode().splitlines()
        assert containment == "process_group"
        assert "cannot create a cgroup" in reason, reason
        assert "systemd-run --user --scope -p Delegate=yes" in missing  # the doctor's advice
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_doctor_says_how_jobs_are_held_and_what_is_missing() -> None:
    def doctor(env: dict[str, str]) -> str:
        done = subprocess.run(
            [*CLI, "doctor"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=True,
        )
        return done.stdout.decode()

    off = doctor({**os.environ, cgroup.DISABLE_CGROUP_ENV: "1"})
    assert "job containment: process_group" in off
    assert f"missing: unset {cgroup.DISABLE_CGROUP_ENV}" in off
    if _cgroup_reason() is None:
        on = doctor(_env_with_cgroups())
        assert "job containment: cgroup" in on
        assert "keeper process" in on
