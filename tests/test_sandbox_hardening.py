"""The sandbox escapes found by attacking it from inside a child (issue 11).

Every test runs the attack in a real sandboxed child and checks on the host,
from this process, that nothing changed. They run as root and, through
test_sandbox_unprivileged.py, as ``nobody``.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import pwd
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from orchestrator_spawn.config import ResolvedExecutionProfile
from orchestrator_spawn.sandbox import prepare_sandbox
from orchestrator_spawn.sandbox.linux import probe_capabilities
from orchestrator_spawn.sandbox.proxy import _LoopThread
from tests.helpers import sandbox as sbx
from tests.helpers.sandbox import DENIED, LINUX_ONLY, needs, profile, py, run, run_captured

pytestmark = LINUX_ONLY

MAX_CONNECTIONS_ENV = "ORCHESTRATOR_SPAWN_PROXY_MAX_CONNECTIONS"  # documented in proxy.py


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "private.txt").write_text("private")
    (ws / "out" / "mine.txt").write_text("mine")
    os.chmod(ws / "private.txt", 0o600)
    return ws


def _errnos(results: str) -> dict[str, int]:
    """``name=errno`` lines printed by a child -> dict."""
    out = {}
    for line in results.splitlines():
        name, _, value = line.partition("=")
        out[name] = int(value)
    return out


# Each attempt prints name=errno (0: it worked).
TRY = """
def attempt_each(calls):
    for name, fn in calls:
        try:
            fn()
            print(f"{name}=0")
        except OSError as e:
            print(f"{name}={e.errno}")
"""


def attempts(*calls: tuple[str, str]) -> str:
    """A child program running each ``(name, expression)`` through ``attempt_each``."""
    lines = "".join(f"    ({name!r}, lambda: {expr}),\n" for name, expr in calls)
    return TRY + "attempt_each([\n" + lines + "])\n"


def _snapshot(path: Path) -> tuple[object, ...]:
    st = os.stat(path)
    return (
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_mtime_ns,
        st.st_ctime_ns,  # (atime: reading the file for the snapshot moves it)
        sorted(os.listxattr(path)),
        path.read_bytes(),
    )


# --- 1. metadata outside the writable set -------------------------------------------


def _metadata_attacks(target: str) -> str:
    return (
        TRY
        + f"""
t = {target!r}
fd = os.open(t, os.O_RDONLY)
attempt_each([
    ("chmod_setuid", lambda: os.chmod(t, 0o4755)),
    ("chmod_0666", lambda: os.chmod(t, 0o666)),
    ("chown", lambda: os.chown(t, os.getuid(), os.getgid())),
    ("utime", lambda: os.utime(t, (0, 0))),
    ("setxattr", lambda: os.setxattr(t, "user.evil", b"1")),
    ("fchmod", lambda: os.fchmod(fd, 0o666)),
    ("futime", lambda: os.utime(fd, (0, 0))),
    ("fsetxattr", lambda: os.setxattr(fd, "user.evil", b"1")),
    ("proc_fd_chmod", lambda: os.chmod(f"/proc/self/fd/{{fd}}", 0o666)),
    ("stat", lambda: os.stat(t)),
    ("listxattr", lambda: os.listxattr(t)),
])
"""
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"fs_mode": "workspace_readonly"},
        {"fs_mode": "workspace_rw_scoped", "writable_paths": ["out"]},
    ],
    ids=["readonly", "rw_scoped"],
)
def test_metadata_outside_the_writable_set_cannot_change(
    workspace: Path, fields: dict[str, Any]
) -> None:
    needs("landlock", "seccomp", "userns")
    target = workspace / "private.txt"
    before = _snapshot(target)
    code, out = run_captured(profile(workspace, **fields), py(_metadata_attacks(str(target))))
    assert code == 0, out
    results = _errnos(out)
    for name, err in results.items():
        if name in ("stat", "listxattr"):
            assert err == 0, (name, out)  # reading metadata keeps working
        else:
            assert err in DENIED, (name, out)
    assert _snapshot(target) == before


def test_metadata_of_an_inherited_file_cannot_change_under_readonly(workspace: Path) -> None:
    """The job's stdout is a file the parent opened: fd and /proc/self/fd forms."""
    needs("landlock", "seccomp", "userns")
    log = workspace.parent / "job.log"
    log.write_text("")
    before = os.stat(log)
    code = attempts(
        ("fchmod", "os.fchmod(1, 0o4755)"),
        ("proc_chmod", 'os.chmod("/proc/self/fd/1", 0o666)'),
        ("futime", "os.utime(1, (0, 0))"),
        ("fsetxattr", 'os.setxattr(1, "user.evil", b"1")'),
    )
    with open(log, "w") as stdout:
        assert (
            run_with_stdout(profile(workspace, fs_mode="workspace_readonly"), py(code), stdout) == 0
        )
    results = _errnos(log.read_text())
    assert set(results) == {"fchmod", "proc_chmod", "futime", "fsetxattr"}
    assert all(err in DENIED for err in results.values()), results
    after = os.stat(log)
    assert after.st_mode == before.st_mode
    assert after.st_atime != 0  # utime((0, 0)) did not happen
    assert os.listxattr(log) == []


def test_no_setuid_bit_on_an_inherited_file_under_rw_scoped(workspace: Path) -> None:
    """rw_scoped leaves an inherited file's plain mode bits reachable (see the
    threat model); the setuid/setgid bits never are."""
    needs("landlock", "seccomp", "userns")
    log = workspace.parent / "job.log"
    log.write_text("")
    mode = os.stat(log).st_mode
    code = attempts(
        ("fchmod_setuid", "os.fchmod(1, 0o4755)"),
        ("proc_chmod_setgid", 'os.chmod("/proc/self/fd/1", 0o2755)'),
    )
    prof = profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    with open(log, "w") as stdout:
        assert run_with_stdout(prof, py(code), stdout) == 0
    results = _errnos(log.read_text())
    assert results == {"fchmod_setuid": errno.EPERM, "proc_chmod_setgid": errno.EPERM}
    assert os.stat(log).st_mode == mode


def run_with_stdout(prof: ResolvedExecutionProfile, argv: list[str], stdout: IO[Any]) -> int:
    with (
        prepare_sandbox(prof, argv) as prepared,
        sbx.spawn_prepared(prepared, stdout=stdout) as child,
    ):
        return child.wait_blocking(timeout=60)


def test_metadata_inside_the_writable_set_still_changes_but_never_setuid(
    workspace: Path,
) -> None:
    needs("landlock", "seccomp", "userns")
    mine = workspace / "out" / "mine.txt"
    made = workspace / "out" / "made"
    code = (
        TRY
        + f"""
t = {str(mine)!r}
attempt_each([
    ("chmod_x", lambda: os.chmod(t, 0o755)),
    ("utime", lambda: os.utime(t, (1000, 1000))),
    ("setxattr", lambda: os.setxattr(t, "user.ok", b"1")),
    ("chmod_setuid", lambda: os.chmod(t, 0o4755)),
    ("chmod_setgid", lambda: os.chmod(t, 0o2755)),
    ("create_setuid", lambda: os.close(os.open({str(made)!r}, os.O_CREAT | os.O_WRONLY, 0o4755))),
])
"""
    )
    prof = profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    rc, out = run_captured(prof, py(code))
    assert rc == 0, out
    results = _errnos(out)
    assert results["chmod_x"] == results["utime"] == results["setxattr"] == 0, out
    assert results["chmod_setuid"] == results["chmod_setgid"] == errno.EPERM, out
    assert results["create_setuid"] == errno.EPERM, out
    assert os.stat(mine).st_mode & 0o7777 == 0o755
    assert os.stat(mine).st_mtime == 1000
    assert os.getxattr(mine, "user.ok") == b"1"
    assert not made.exists()


# --- 2. other processes through pid-taking system calls ------------------------------

# System call numbers without a Python wrapper.
_NR = {
    "x86_64": {"ioprio_set": 251, "migrate_pages": 256, "move_pages": 279, "kcmp": 312},
    "aarch64": {"ioprio_set": 30, "migrate_pages": 238, "move_pages": 239, "kcmp": 272},
}


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the same user outside the sandbox (like the orchestrator)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _limits(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_other_processes_limits_and_scheduling_are_out_of_reach(
    workspace: Path, bystander: subprocess.Popen[bytes]
) -> None:
    needs("seccomp", "userns")
    nr = _NR.get(platform.machine())
    if nr is None:
        pytest.skip(f"no syscall numbers for {platform.machine()}")
    me, victim = os.getpid(), bystander.pid
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    my_limits, victim_limits = _limits(me), _limits(victim)
    victim_nice, victim_affinity = _nice(victim), os.sched_getaffinity(victim)
    code = (
        TRY
        + f"""
import resource
libc = ctypes.CDLL(None, use_errno=True)
def sys_(*args):
    if libc.syscall(*args) < 0:
        raise OSError(ctypes.get_errno(), "syscall")
me, victim = {me}, {victim}
attempt_each([
    ("prlimit_nofile_orchestrator",
     lambda: resource.prlimit(me, resource.RLIMIT_NOFILE, ({soft} - 1, {hard}))),
    ("prlimit_cpu_victim", lambda: resource.prlimit(victim, resource.RLIMIT_CPU, (1, 1))),
    ("setpriority_pid", lambda: os.setpriority(os.PRIO_PROCESS, victim, 19)),
    ("setpriority_user", lambda: os.setpriority(os.PRIO_USER, os.getuid(), 19)),
    ("setpriority_pgrp", lambda: os.setpriority(os.PRIO_PGRP, os.getpgid(victim), 19)),
    ("sched_setaffinity", lambda: os.sched_setaffinity(victim, {{0}})),
    ("sched_setscheduler",
     lambda: os.sched_setscheduler(victim, os.SCHED_BATCH, os.sched_param(0))),
    ("ioprio_set", lambda: sys_({nr["ioprio_set"]}, 1, victim, (3 << 13) | 7)),
    ("ioprio_set_user", lambda: sys_({nr["ioprio_set"]}, 3, os.getuid(), (3 << 13) | 7)),
    ("migrate_pages", lambda: sys_({nr["migrate_pages"]}, victim, 64, None, None)),
    ("move_pages", lambda: sys_({nr["move_pages"]}, victim, 0, None, None, None, 0)),
    ("kcmp", lambda: sys_({nr["kcmp"]}, os.getpid(), victim, 0, 0, 0)),
])
"""
    )
    rc, out = run_captured(profile(workspace), py(code))
    assert rc == 0, out
    results = _errnos(out)
    assert len(results) == 12, out
    assert all(err in DENIED | {errno.ESRCH} for err in results.values()), out
    assert _limits(me) == my_limits
    assert _limits(victim) == victim_limits
    assert _nice(victim) == victim_nice
    assert os.sched_getaffinity(victim) == victim_affinity
    assert bystander.poll() is None


def test_signals_through_a_pidfd_are_scoped_too(
    workspace: Path, bystander: subprocess.Popen[bytes]
) -> None:
    needs("landlock", "seccomp", "userns")
    if probe_capabilities().landlock_abi < 6:
        pytest.skip("Landlock signal scoping needs ABI 6")
    code = (
        TRY
        + f"""
import signal
import errno
try:
    fd = os.pidfd_open({bystander.pid})  # allowed: a pidfd alone changes nothing
except ProcessLookupError:
    fd = -1  # in a pid namespace the bystander cannot even be named

def send_through_pidfd():
    if fd < 0:
        raise OSError(errno.ESRCH, "not visible from this pid namespace")
    signal.pidfd_send_signal(fd, signal.SIGKILL)

attempt_each([
    ("pidfd_send_signal", send_through_pidfd),
    ("kill", lambda: os.kill({os.getpid()}, signal.SIGKILL)),
])
"""
    )
    rc, out = run_captured(profile(workspace), py(code))
    assert rc == 0, out
    results = _errnos(out)
    assert set(results) == {"pidfd_send_signal", "kill"}, out
    # EPERM from Landlock's signal scope; ESRCH where the job's pid namespace
    # does not even show the target.
    assert all(err in (errno.EPERM, errno.ESRCH) for err in results.values()), out
    assert bystander.poll() is None


def test_the_job_still_sets_its_own_limits_and_priority(workspace: Path) -> None:
    needs("seccomp", "userns")
    script = (
        'ulimit -n 64 && test "$(ulimit -n)" = 64 && '
        "nice -n 5 sh -c 'test \"$(nice)\" = 5' && "
        "sh -c 'ulimit -t 100; test \"$(ulimit -t)\" = 100'"
    )
    assert run(profile(workspace), ["/bin/sh", "-c", script]) == 0
    code = """
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (32, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
assert resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE)[0] == 32  # reading: allowed
os.setpriority(os.PRIO_PROCESS, 0, 3)
os.sched_setaffinity(0, os.sched_getaffinity(0))
"""
    assert run(profile(workspace), py(code)) == 0


# --- 3. readable_paths inside a writable path ---------------------------------------


def test_readable_path_cannot_be_replaced_through_its_directory(workspace: Path) -> None:
    needs("landlock", "seccomp", "userns")
    conf = workspace / "conf"
    conf.mkdir()
    (conf / "app.yml").write_text("good")
    prof = profile(
        workspace,
        fs_mode="workspace_rw_scoped",
        writable_paths=["."],
        readable_paths=["conf/app.yml"],
    )
    attack = "mv conf conf.orig && mkdir conf && echo evil > conf/app.yml"
    assert run(prof, ["/bin/sh", "-c", f"cd {workspace} && {attack}"]) != 0
    assert (workspace / "conf" / "app.yml").read_text() == "good"
    assert not (workspace / "conf.orig").exists()


def test_readable_path_survives_every_rename_remove_and_link(workspace: Path) -> None:
    needs("landlock", "seccomp", "userns")
    hooks = workspace / ".git" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\ntrue\n")
    (workspace / "other").write_text("evil")
    inode = os.stat(hooks / "pre-commit").st_ino
    prof = profile(
        workspace,
        fs_mode="workspace_rw_scoped",
        writable_paths=["."],
        readable_paths=[".git/hooks"],
    )
    code = (
        TRY
        + f"""
os.chdir({str(workspace)!r})
attempt_each([
    ("rename_top", lambda: os.rename(".git", ".git.orig")),
    ("rename_dir", lambda: os.rename(".git/hooks", ".git/hooks.orig")),
    ("rename_file", lambda: os.rename(".git/hooks/pre-commit", "stolen")),
    ("replace_file", lambda: os.rename("other", ".git/hooks/pre-commit")),
    ("replace_dir", lambda: (os.mkdir("empty"), os.rename("empty", ".git/hooks"))),
    ("rmdir", lambda: os.rmdir(".git/hooks")),
    ("unlink", lambda: os.unlink(".git/hooks/pre-commit")),
    ("link_in", lambda: os.link("other", ".git/hooks/new")),
    ("link_out", lambda: os.link(".git/hooks/pre-commit", "hardlink")),
    ("write", lambda: open(".git/hooks/pre-commit", "w")),
    ("chmod", lambda: os.chmod(".git/hooks/pre-commit", 0o777)),
])
"""
    )
    rc, out = run_captured(prof, py(code))
    assert rc == 0, out
    results = _errnos(out)
    assert len(results) == 11, out
    refused = DENIED | {errno.EBUSY, errno.EXDEV}
    assert all(err in refused for err in results.values()), out
    assert (hooks / "pre-commit").read_text() == "#!/bin/sh\ntrue\n"
    assert os.stat(hooks / "pre-commit").st_ino == inode
    assert sorted(os.listdir(hooks)) == ["pre-commit"]
    assert not (workspace / ".git.orig").exists()
    # The rest of the writable root stays writable.
    assert run(prof, ["/bin/sh", "-c", f"cd {workspace} && mv other renamed"]) == 0
    assert (workspace / "renamed").read_text() == "evil"


# --- 4. other terminals --------------------------------------------------------------


def _read_all(fd: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: no slave open any more
            break
        if not chunk:
            break
        data += chunk
    return data


def test_only_the_jobs_own_terminal_is_reachable(workspace: Path) -> None:
    needs("seccomp", "userns")
    victim_master, victim_slave = os.openpty()  # another session's terminal
    own_master, own_slave = os.openpty()
    victim_path = os.ttyname(victim_slave)
    code = f"""
import fcntl, termios
def try_open(path):
    try:
        os.close(os.open(path, os.O_RDWR | os.O_NOCTTY))
        return 0
    except OSError as e:
        return e.errno
victim = try_open({victim_path!r})
os.write(1, f"isatty={{int(os.isatty(0) and os.isatty(1))}} victim={{victim}}\\n".encode())
m, s = os.openpty()  # new terminals inside the sandbox still work
os.write(s, b"x")
os.write(1, f"openpty={{os.read(m, 1).decode()}}\\n".encode())
pid = os.fork()
if pid == 0:  # a session of its own with the job's terminal as controlling tty
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    tty = os.open("/dev/tty", os.O_WRONLY)
    os.write(tty, b"via-dev-tty\\n")
    os._exit(0)
os._exit(os.waitpid(pid, 0)[1] >> 8)
"""
    try:
        with (
            prepare_sandbox(profile(workspace), py(code)) as prepared,
            sbx.spawn_prepared(prepared, stdin=own_slave, stdout=own_slave) as child,
        ):
            os.close(own_slave)
            own_slave = -1
            output = _read_all(own_master, 20).decode()
            assert child.wait_blocking(timeout=30) == 0, output
    finally:
        for fd in (victim_master, victim_slave, own_master, own_slave):
            if fd >= 0:
                os.close(fd)
    assert "isatty=1" in output, output
    assert "victim=0" not in output, output
    assert re.search(r"victim=(2|13)\b", output), output  # ENOENT / EACCES
    assert "openpty=x" in output, output
    assert "via-dev-tty" in output, output


# --- 5. the proxy's resources -------------------------------------------------------


def test_proxy_caps_connections_and_refuses_the_rest_cleanly(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    needs("seccomp", "userns")
    cap, opened = 8, 40
    monkeypatch.setenv(MAX_CONNECTIONS_ENV, str(cap))
    prof = profile(workspace, network_mode="allowlist", network_allowlist=["127.0.0.1:9"])
    code = f"""
import select, time
conns = [socket.create_connection(("127.0.0.1", 3128), timeout=10) for _ in range({opened})]
answered, deadline = set(), time.monotonic() + 10
while time.monotonic() < deadline:
    if len(answered) >= {opened - cap}:
        deadline = min(deadline, time.monotonic() + 0.3)  # the others stay silent?
    ready, _, _ = select.select([c for c in conns if c not in answered], [], [], 0.1)
    answered.update(ready)
print(sum(c.recv(100).startswith(b"HTTP/1.1 503") for c in answered))
"""
    _LoopThread.loop()  # the proxies' shared thread exists before counting
    fds_before = len(os.listdir("/proc/self/fd"))
    with (
        caplog.at_level(logging.INFO, logger="orchestrator_spawn.sandbox.proxy"),
        prepare_sandbox(prof, py(code)) as prepared,
    ):
        proxy = prepared._proxy
        with sbx.spawn_prepared(prepared, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            out = child.stdout.read().decode()
            assert child.wait_blocking(timeout=60) == 0, out
        assert int(out) == opened - cap
        assert proxy.refused == opened - cap
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert proxy.active == 0
    assert all(sock.fileno() == -1 for sock in proxy._sockets)
    proxy_records = [r for r in caplog.records if r.name.endswith("proxy")]
    assert 1 <= len(proxy_records) <= 2, [r.getMessage() for r in proxy_records]
    assert not any(r.exc_info for r in caplog.records)


def test_proxy_stops_cleanly_while_connections_are_open(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needs("seccomp", "userns")
    prof = profile(workspace, network_mode="allowlist", network_allowlist=["127.0.0.1:9"])
    code = """
conns = [socket.create_connection(("127.0.0.1", 3128), timeout=10) for _ in range(5)]
print("open", flush=True)
time.sleep(60)
"""
    with caplog.at_level(logging.DEBUG):
        prepared = prepare_sandbox(prof, py("import time\n" + code))
        proxy = prepared._proxy
        with sbx.spawn_prepared(prepared, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"open\n"
            deadline = time.monotonic() + 10
            while proxy.active < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proxy.active == 5
            prepared.close()  # the proxy stops while the child holds 5 connections
            assert proxy.active == 0
            assert all(sock.fileno() == -1 for sock in proxy._sockets)
            child.start_kill()
            child.wait_blocking(timeout=30)
        time.sleep(0.2)  # anything the loop would still log about those sockets
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records
    ]


def test_proxy_out_of_fds_pauses_and_logs_once(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """accept() failing with EMFILE (the orchestrator out of fds) neither spins
    nor floods the log, and serving resumes once fds are available again."""
    import resource

    needs("seccomp", "userns")
    prof = profile(workspace, network_mode="allowlist", network_allowlist=["127.0.0.1:9"])
    code = """
sys.stdin.readline()
conns = [socket.create_connection(("127.0.0.1", 3128), timeout=30) for _ in range(20)]
for c in conns:
    c.sendall(b"GET http://not-allowed.invalid/ HTTP/1.1\\r\\n\\r\\n")
print("sent", flush=True)
print(sum(c.recv(100).startswith(b"HTTP/1.1 403") for c in conns), flush=True)
"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with (
        caplog.at_level(logging.INFO),
        prepare_sandbox(prof, py(code)) as prepared,
        sbx.spawn_prepared(prepared, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child,
    ):
        assert child.stdin is not None
        assert child.stdout is not None
        # The proxy must hold the child's listener before fds run out (the
        # handoff itself needs one in this process).
        proxy = prepared._proxy
        assert proxy is not None
        deadline = time.monotonic() + 10
        while (proxy._child_end is not None or not proxy._sockets) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        try:
            # No fd can be opened in this process from now on.
            resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
            child.stdin.write(b"go\n")
            child.stdin.flush()
            assert child.stdout.readline() == b"sent\n"
            time.sleep(1.5)  # three accept() rounds fail meanwhile
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert child.stdout.readline() == b"20\n"
        assert child.wait_blocking(timeout=30) == 0
    failures = [r for r in caplog.records if "accept() failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert not any(r.name == "asyncio" for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


# --- 6. the proxy handoff ------------------------------------------------------------


def _bound_unix_paths_of_this_process() -> list[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes:
            paths.append(fields[7])
    return paths


def test_proxy_handoff_is_unreachable_by_other_processes(workspace: Path) -> None:
    needs("seccomp", "userns")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].close(), daemon=True).start()
    prof = profile(workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{port}"])
    reach = f"""
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n")
sys.exit(0 if s.recv(100).startswith(b"HTTP/1.1 200") else 5)
"""
    with prepare_sandbox(prof, py(reach)) as prepared:
        # No filesystem socket another process could find and connect to.
        bound = _bound_unix_paths_of_this_process()
        # The attack: another sandbox connects to whatever handoff it can
        # find (only this test's own, if there is a path at all) first.
        handoff = getattr(prepared._proxy, "handoff_path", None)
        attack = """
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        s.sendall(b"x")
    except OSError as e:
        print("attack failed:", e)
"""
        attacker = profile(workspace, name="attacker", network_mode="deny")
        assert run(attacker, [*py(attack), *([handoff] if handoff else [])]) == 0
        with sbx.spawn_prepared(prepared) as child:
            assert child.wait_blocking(timeout=60) == 0
    server.close()
    assert bound == []


# --- 7. probe results after a transient failure -------------------------------------


def _probe_after_eagain() -> str:
    """In a forked copy of this process: probe while no fork is possible, then
    again once it is. Returns "ok" or what went wrong."""
    import ctypes
    import resource

    from orchestrator_spawn.sandbox import linux

    if os.geteuid() == 0:  # root is exempt from RLIMIT_NPROC: become nobody
        nobody = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
        os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
        # Changing ids made it non-dumpable: /proc/self would stay root's.
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    linux._probed = None  # this copy starts as a fresh process would
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, hard))  # this process alone fills it
    first = linux.probe_capabilities()
    resource.setrlimit(resource.RLIMIT_NPROC, (hard, hard))
    second = linux.probe_capabilities()
    if first.seccomp is None or "Resource temporarily unavailable" not in first.seccomp:
        return f"the first probe did not meet EAGAIN: {first}"
    if (second.seccomp, second.userns, second.landlock) != (None, None, None):
        return f"the failure was cached: {second}"
    return "ok"


def test_a_transient_probe_failure_is_not_cached() -> None:
    needs("seccomp", "userns", "landlock")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody' to be limited by RLIMIT_NPROC")
    read_end, write_end = os.pipe()
    pid = os.fork()  # a copy, not a new interpreter: nobody may not exec ours
    if pid == 0:
        try:
            os.close(read_end)
            try:
                report = _probe_after_eagain()
            except BaseException as err:  # report anything, never return into pytest
                report = repr(err)
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    os.waitpid(pid, 0)
    assert report == "ok"
