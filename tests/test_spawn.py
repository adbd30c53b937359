"""spawn(): arguments, environment, fds, signals, limits and failures (CONTRACT §1)."""

from __future__ import annotations

import ast
import errno
import gc
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator_spawn import (
    DEVNULL,
    PIPE,
    STDOUT,
    Child,
    ResourceLimits,
    SpawnError,
    spawn,
)
from tests.helpers import seccomp as seccomp_helper

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc of the child"
)


def run_capture(argv: list[str], **kwargs: object) -> tuple[int, bytes]:
    """Runs argv with stdout=PIPE (blocking file) and returns (status, output)."""
    child = spawn(argv, stdout=PIPE, **kwargs)  # type: ignore[arg-type]
    with child:
        assert child.stdout is not None
        out = child.stdout.read()
        return child.wait_blocking(timeout=30), out


def zombie_children() -> list[int]:
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]


@pytest.fixture
def no_new_zombies() -> Iterator[None]:
    yield
    gc.collect()
    assert zombie_children() == []


# -- exit status -------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_codes(code: int) -> None:
    with spawn(["sh", "-c", f"exit {code}"]) as child:
        assert child.wait_blocking(timeout=30) == code
        assert child.returncode == code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1])
def test_killed_by_signal_is_negative(sig: int) -> None:
    with spawn(["sh", "-c", f"kill -{int(sig)} $$"]) as child:
        assert child.wait_blocking(timeout=30) == -sig


# -- argv, PATH, env, cwd ------------------------------------------------------


def test_argv_passed_verbatim() -> None:
    args = ["a b", "", "ünï", "--x=1", "*"]
    code, out = run_capture([sys.executable, "-c", "import sys; print(sys.argv[1:])", *args])
    assert code == 0
    assert out.decode().strip() == repr(args)


def test_argv_accepts_bytes_and_pathlike(tmp_path: Path) -> None:
    code, out = run_capture([Path("/bin/echo"), b"bytes", tmp_path])  # type: ignore[list-item]
    assert code == 0
    assert out == f"bytes {tmp_path}\n".encode()


def test_env_is_exactly_the_mapping() -> None:
    env = {"ONLY": "1", "WITH_EQUALS": "a=b", "EMPTY": ""}
    code, out = run_capture(["/usr/bin/env"], env=env)
    assert code == 0
    assert sorted(out.decode().splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


def test_env_bytes_keys_and_values() -> None:
    code, out = run_capture(["/usr/bin/env"], env={b"RAW": b"\xff\xfe"})
    assert code == 0
    assert out == b"RAW=\xff\xfe\n"


def test_env_none_inherits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SPAWN_MARKER", "inherited-value")
    code, out = run_capture(["sh", "-c", 'printf %s "$ORCH_SPAWN_MARKER"'])
    assert (code, out) == (0, b"inherited-value")


def test_many_arguments_and_variables_all_arrive() -> None:
    # More strings than the C core's on-stack pointer array holds (32 slots
    # for argv + envp together): the heap path must carry them all, in order.
    args = [f"arg-{i}" for i in range(40)]
    env = {f"VAR_{i}": f"value-{i}" for i in range(50)}
    code, out = run_capture(["/bin/sh", "-c", 'printf "%s\\n" "$@"; env', "sh", *args], env=env)
    assert code == 0
    lines = out.decode().splitlines()
    assert lines[:40] == args
    # The shell may export a variable of its own (PWD), nothing else is ours.
    assert {f"{k}={v}" for k, v in env.items()} <= set(lines[40:])
    assert len(lines[40:]) <= len(env) + 2


def _write_script(path: Path, mode: int) -> None:
    path.write_text("#!/bin/sh\necho found-$0\n")
    path.chmod(mode)


def test_path_lookup_uses_child_env(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _write_script(second / "orch-prog", 0o755)
    (first / "orch-prog").mkdir()  # a directory of that name is skipped
    code, out = run_capture(["orch-prog"], env={"PATH": f"{first}:{second}"})
    assert code == 0
    assert out == f"found-{second / 'orch-prog'}\n".encode()


def test_path_lookup_not_found_is_enoent(tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as info:
        spawn(["orch-no-such-program"], env={"PATH": str(tmp_path)})
    assert (info.value.errno, info.value.stage) == (errno.ENOENT, "exec")
    assert "orch-no-such-program" in str(info.value)
    assert info.value.program == "orch-no-such-program"


def test_path_lookup_only_unexecutable_is_eacces(tmp_path: Path) -> None:
    _write_script(tmp_path / "orch-noexec", 0o644)
    with pytest.raises(SpawnError) as info:
        spawn(["orch-noexec"], env={"PATH": str(tmp_path)})
    assert (info.value.errno, info.value.stage) == (errno.EACCES, "exec")


def test_path_lookup_skips_unexecutable_for_later_match(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write_script(a / "orch-p", 0o644)
    _write_script(b / "orch-p", 0o755)
    code, out = run_capture(["orch-p"], env={"PATH": f"{a}:{b}"})
    assert (code, out) == (0, f"found-{b / 'orch-p'}\n".encode())


def test_cwd(tmp_path: Path) -> None:
    code, out = run_capture(["/bin/pwd", "-P"], cwd=tmp_path)
    assert code == 0
    assert out.decode().strip() == str(tmp_path.resolve())


# -- process group -----------------------------------------------------------

PRINT_PGID = "import os; print(os.getpgid(0))"


def test_own_process_group() -> None:
    child = spawn([sys.executable, "-c", PRINT_PGID], stdout=PIPE)
    with child:
        assert child.stdout is not None
        out = child.stdout.read()
        assert child.wait_blocking(timeout=30) == 0
    assert child.pgid == child.pid
    assert int(out) == child.pid


def test_process_group_false_stays_in_ours() -> None:
    child = spawn([sys.executable, "-c", PRINT_PGID], stdout=PIPE, process_group=False)
    with child:
        assert child.stdout is not None
        out = child.stdout.read()
        child.wait_blocking(timeout=30)
    assert child.pgid is None
    assert int(out) == os.getpgid(0)


# -- resource limits ---------------------------------------------------------


def _proc_limits(text: str) -> dict[str, tuple[str, str]]:
    limits = {}
    for line in text.splitlines()[1:]:
        parts = line[26:].split()
        limits[line[:26].strip()] = (parts[0], parts[1])
    return limits


@linux_only
def test_each_rlimit_visible_in_proc_self_limits() -> None:
    limits = ResourceLimits(memory_bytes=3 << 30, cpu_seconds=123, processes=4567, open_files=89)
    code, out = run_capture(["cat", "/proc/self/limits"], limits=limits)
    assert code == 0
    seen = _proc_limits(out.decode())
    assert seen["Max address space"] == (str(3 << 30), str(3 << 30))
    assert seen["Max cpu time"] == ("123", "123")
    assert seen["Max processes"] == ("4567", "4567")
    assert seen["Max open files"] == ("89", "89")


@linux_only
@pytest.mark.parametrize(
    ("field", "row", "value"),
    [
        ("memory_bytes", "Max address space", 1 << 31),
        ("cpu_seconds", "Max cpu time", 7),
        ("processes", "Max processes", 321),
        ("open_files", "Max open files", 55),
    ],
)
def test_single_rlimit_leaves_others(field: str, row: str, value: int) -> None:
    parent = _proc_limits(Path("/proc/self/limits").read_text())
    code, out = run_capture(["cat", "/proc/self/limits"], limits=ResourceLimits(**{field: value}))
    assert code == 0
    seen = _proc_limits(out.decode())
    assert seen[row] == (str(value), str(value))
    for other in ("Max address space", "Max cpu time", "Max processes", "Max open files"):
        if other != row:
            assert seen[other] == parent[other]


def test_resource_limits_validation() -> None:
    with pytest.raises(ValueError, match="memory_bytes"):
        ResourceLimits(memory_bytes=-1)
    with pytest.raises(TypeError, match="open_files"):
        ResourceLimits(open_files=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="processes"):
        ResourceLimits(processes=True)
    assert ResourceLimits().as_rlimits() == (-1, -1, -1, -1)


def test_cpu_limit_kills_busy_child() -> None:
    busy = "while :; do :; done"
    with spawn(["sh", "-c", busy], limits=ResourceLimits(cpu_seconds=1)) as child:
        assert child.wait_blocking(timeout=60) in (-signal.SIGXCPU, -signal.SIGKILL)


# -- fds ---------------------------------------------------------------------

LIST_FDS = "ls /proc/$$/fd" if sys.platform.startswith("linux") else "ls /dev/fd"


def _child_fds(**kwargs: object) -> set[int]:
    code, out = run_capture(["sh", "-c", LIST_FDS], **kwargs)
    assert code == 0
    return {int(x) for x in out.split()}


@linux_only
def test_inheritable_fds_do_not_leak() -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        # The shell's fd 1 is the capture pipe; ls of /proc/$$/fd shows the shell's fds.
        assert _child_fds() == {0, 1, 2}
    finally:
        os.close(r)
        os.close(w)


@linux_only
def test_pass_fds_kept_and_inheritable() -> None:
    r, w = os.pipe()  # both close-on-exec: pass_fds must make w inheritable
    try:
        assert _child_fds(pass_fds=[w]) == {0, 1, 2, w}
        write_to_fd = "import os, sys; fd = int(sys.argv[1]); os.write(fd, b'through-%d' % fd)"
        child = spawn([sys.executable, "-c", write_to_fd, str(w)], pass_fds=[w, 1, 2])
        with child:
            assert child.wait_blocking(timeout=30) == 0
        assert os.read(r, 100) == f"through-{w}".encode()
    finally:
        os.close(r)
        os.close(w)


def test_pass_fds_validation() -> None:
    with pytest.raises(ValueError, match="pass_fds"):
        spawn(["true"], pass_fds=[-1])


def test_stdio_devnull_and_stdout_merge() -> None:
    child = spawn(
        ["sh", "-c", "cat; echo out; echo err >&2"], stdin=DEVNULL, stdout=PIPE, stderr=STDOUT
    )
    with child:
        assert child.stdout is not None
        assert sorted(child.stdout.read().split()) == [b"err", b"out"]
        assert child.wait_blocking(timeout=30) == 0


def test_stdio_pipes_round_trip_blocking() -> None:
    child = spawn(["cat"], stdin=PIPE, stdout=PIPE)
    with child:
        stdin, stdout = child.stdin, child.stdout
        assert stdin is not None
        assert stdout is not None
        data = os.urandom(100_000)

        def feed() -> None:
            stdin.write(data)
            stdin.close()

        writer = threading.Thread(target=feed)
        writer.start()
        assert stdout.read() == data
        writer.join()
        assert child.wait_blocking(timeout=30) == 0


def test_stdio_file_objects_and_fds(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"from-file\n")
    dst = tmp_path / "out.txt"
    with src.open("rb") as fin, dst.open("wb") as fout:
        child = spawn(["cat"], stdin=fin, stdout=fout.fileno())
        with child:
            assert child.wait_blocking(timeout=30) == 0
    assert dst.read_bytes() == b"from-file\n"


def test_stdio_swapped_low_fds(capfd: pytest.CaptureFixture[str]) -> None:
    # stdout goes to our fd 2 and stderr to our fd 1: sources that are
    # themselves 0-2 must be moved before the dup2s, or one overwrites the other.
    child = spawn(["sh", "-c", "echo to-out; echo to-err >&2"], stdout=2, stderr=1)
    with child:
        assert child.wait_blocking(timeout=30) == 0
    captured = capfd.readouterr()
    assert captured.out == "to-err\n"
    assert captured.err == "to-out\n"


def test_stdin_from_our_stdout_fd(tmp_path: Path) -> None:
    # The child's stdin is our fd 1 and its stdout a file: 1 must be read
    # before it is replaced.
    source = tmp_path / "src"
    source.write_bytes(b"via-fd-1\n")
    dest = tmp_path / "dst"
    saved = os.dup(1)
    try:
        fd = os.open(source, os.O_RDONLY)
        os.dup2(fd, 1)
        os.close(fd)
        with dest.open("wb") as out:
            child = spawn(["cat"], stdin=1, stdout=out)
            with child:
                assert child.wait_blocking(timeout=30) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert dest.read_bytes() == b"via-fd-1\n"


# -- signals in the child ----------------------------------------------------


def _mask_fields(text: str) -> dict[str, int]:
    return {
        line.split(":")[0]: int(line.split()[1], 16)
        for line in text.splitlines()
        if line.startswith(("SigBlk", "SigIgn", "SigCgt"))
    }


@linux_only
def test_blocked_ignored_and_handled_signals_reset_in_child() -> None:
    old_usr2 = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    old_hup = signal.signal(signal.SIGHUP, lambda *_: None)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    try:
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's default
        code, out = run_capture(["cat", "/proc/self/status"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGHUP, old_hup)
    assert code == 0
    assert _mask_fields(out.decode()) == {"SigBlk": 0, "SigIgn": 0, "SigCgt": 0}


@linux_only
def test_realtime_signals_ignored_or_handled_in_parent_are_default_in_child() -> None:
    # The child rewrites only the dispositions it finds not at SIG_DFL: the
    # high signal numbers must be found as well as the classic ones.
    ignored = [signal.SIGRTMIN + 3, signal.SIGRTMAX]
    handled = signal.SIGRTMIN + 1
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in ignored}
    saved[handled] = signal.signal(handled, lambda *_: None)
    try:
        code, out = run_capture(["cat", "/proc/self/status"])
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
    assert code == 0
    assert _mask_fields(out.decode()) == {"SigBlk": 0, "SigIgn": 0, "SigCgt": 0}


# -- failures ----------------------------------------------------------------


def test_exec_enoent_absolute(no_new_zombies: None, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SpawnError) as info:
        spawn([str(missing)])
    err = info.value
    assert (err.errno, err.stage, err.program) == (errno.ENOENT, "exec", str(missing))
    assert str(missing) in str(err)
    assert isinstance(err, OSError)


def test_exec_eacces(no_new_zombies: None, tmp_path: Path) -> None:
    script = tmp_path / "noexec"
    _write_script(script, 0o644)
    with pytest.raises(SpawnError) as info:
        spawn([str(script)])
    assert (info.value.errno, info.value.stage) == (errno.EACCES, "exec")


def test_exec_directory(no_new_zombies: None, tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as info:
        spawn([str(tmp_path)])
    assert (info.value.errno, info.value.stage) == (errno.EACCES, "exec")


def test_chdir_failure(no_new_zombies: None, tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as info:
        spawn(["true"], cwd=tmp_path / "nope")
    assert (info.value.errno, info.value.stage) == (errno.ENOENT, "chdir")
    assert "'true'" in str(info.value)


def test_chdir_not_a_directory(no_new_zombies: None, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpawnError) as info:
        spawn(["true"], cwd=tmp_path / "file")
    assert (info.value.errno, info.value.stage) == (errno.ENOTDIR, "chdir")


@linux_only
def test_setrlimit_failure(no_new_zombies: None) -> None:
    # RLIMIT_NOFILE above fs.nr_open is refused even for root.
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    with pytest.raises(SpawnError) as info:
        spawn(["true"], limits=ResourceLimits(open_files=nr_open + 1))
    assert (info.value.errno, info.value.stage) == (errno.EPERM, "setrlimit")


def test_dup2_failure_bad_fd(no_new_zombies: None) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(SpawnError) as info:
        spawn(["true"], stdout=w)
    assert (info.value.errno, info.value.stage) == (errno.EBADF, "dup2")


def test_failed_spawn_closes_pipes(no_new_zombies: None) -> None:
    before = len(os.listdir("/proc/self/fd" if sys.platform.startswith("linux") else "/dev/fd"))
    for _ in range(20):
        with pytest.raises(SpawnError):
            spawn(["/nonexistent/x"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
    after = len(os.listdir("/proc/self/fd" if sys.platform.startswith("linux") else "/dev/fd"))
    assert after == before


@pytest.mark.parametrize(
    ("argv", "kwargs", "message"),
    [
        ([], {}, "empty"),
        (["tr\0ue"], {}, "NUL"),
        (["true", "a\0b"], {}, "NUL"),
        (["true"], {"env": {"A=B": "1"}}, "illegal environment variable name"),
        (["true"], {"env": {"A\0": "1"}}, "illegal environment variable name"),
        (["true"], {"env": {"A": "1\0"}}, "NUL"),
        (["true"], {"env": {b"K=": b"v"}}, "illegal environment variable name"),
        (["true"], {"cwd": "/tmp\0x"}, "NUL"),
        (["true"], {"stderr": STDOUT, "stdout": STDOUT}, "STDOUT"),
        (["true"], {"stdin": -7}, "invalid file descriptor"),
    ],
)
def test_value_errors_before_fork(argv: list[str], kwargs: dict[str, object], message: str) -> None:
    children_before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(ValueError, match=message):
        spawn(argv, **kwargs)  # type: ignore[arg-type]
    assert {p.pid for p in psutil.Process().children()} <= children_before


def test_argv_must_be_a_sequence() -> None:
    with pytest.raises(TypeError):
        spawn("true")


def test_private_sandbox_plan_none_is_plain_spawn() -> None:
    with spawn(["true"], _sandbox_plan=None) as child:
        assert child.wait_blocking(timeout=30) == 0


def test_child_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError, match="spawn"):
        Child()


# -- threads -----------------------------------------------------------------


@pytest.mark.slow
def test_many_threads_spawning_while_others_allocate(no_new_zombies: None) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def allocate() -> None:
        while not stop.is_set():
            blocks = [bytearray(64 * 1024) for _ in range(64)]
            del blocks

    def spawner(count: int) -> None:
        try:
            for i in range(count):
                child = spawn(["sh", "-c", f"exit {i % 7}"])
                with child:
                    assert child.wait_blocking(timeout=60) == i % 7
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    allocators = [threading.Thread(target=allocate) for _ in range(2)]
    spawners = [threading.Thread(target=spawner, args=(63 if n else 59,)) for n in range(8)]
    for t in allocators + spawners:
        t.start()
    for t in spawners:
        t.join(timeout=240)
    stop.set()
    for t in allocators:
        t.join()
    assert not any(t.is_alive() for t in spawners), "spawner threads deadlocked"
    assert errors == []


@linux_only
def test_concurrent_spawns_do_not_leak_each_others_pipes() -> None:
    # Thread A's freshly created pipe must never show up in thread B's child.
    leaks: list[set[int]] = []

    def worker() -> None:
        for _ in range(40):
            fds = _child_fds(stdin=PIPE, stderr=PIPE)
            if fds != {0, 1, 2}:
                leaks.append(fds)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert leaks == []


# -- the child's private fd table (Linux: CLONE_FILES + CLOSE_RANGE_UNSHARE) --


def _fd_identities(fds: list[int]) -> dict[int, tuple[int, int]]:
    """The (device, inode) each fd refers to."""
    found = {}
    for fd in fds:
        st = os.fstat(fd)
        found[fd] = (st.st_dev, st.st_ino)
    return found


@linux_only
def test_redirects_never_touch_the_parents_fd_table(tmp_path: Path) -> None:
    # The child starts on the parent's own table and must copy it before its
    # first dup2: otherwise our 0-2 would be replaced, or fds closed under us.
    # Watched: 0-2 and fds of this test's own (other threads of the test
    # process may open and close theirs meanwhile).
    own = [fd for _ in range(8) for fd in os.pipe()]
    try:
        with (tmp_path / "out").open("wb") as out:
            watched = [0, 1, 2, out.fileno(), *own]
            before = _fd_identities(watched)
            for _ in range(20):
                child = spawn(["true"], stdin=DEVNULL, stdout=out, stderr=STDOUT)
                with child:
                    assert child.wait_blocking(timeout=30) == 0
                child = spawn(["true"], stdout=2, stderr=1)  # swapped low fds
                with child:
                    assert child.wait_blocking(timeout=30) == 0
                child = spawn(["true"], stdin=own[0], stdout=own[-1], pass_fds=own[4:8])
                with child:
                    assert child.wait_blocking(timeout=30) == 0
            with pytest.raises(SpawnError):
                spawn(["/nonexistent/program"], stdout=out)
            assert _fd_identities(watched) == before
    finally:
        for fd in own:
            os.close(fd)


@linux_only
def test_high_numbered_sources_and_pass_fds_with_many_fds_open() -> None:
    # Thousands of fds in the parent (an orchestrator capturing many children):
    # the child still gets its sources from the top of the table, a pass_fd
    # far above them, and none of the others.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held: list[int] = []
    try:
        for _ in range(1500):
            held.extend(os.pipe())
        os.set_inheritable(held[10], True)  # an inheritable one must not leak either
        r, w = os.pipe()
        high = os.dup2(w, wanted - 10, inheritable=False)
        held.extend([r, w, high])
        script = (
            "import os, sys; os.write(int(sys.argv[1]), b'high'); "
            "print(sorted(map(int, os.listdir('/proc/self/fd'))))"
        )
        child = spawn([sys.executable, "-c", script, str(high)], stdout=PIPE, pass_fds=[high])
        with child:
            assert child.stdout is not None
            listed = child.stdout.read()
            assert child.wait_blocking(timeout=30) == 0
        # The child's listdir fd shows up as one more entry; drop it.
        fds = set(ast.literal_eval(listed.decode())) - {0, 1, 2, high}
        assert len(fds) <= 1, fds
        assert os.read(r, 10) == b"high"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SPAWN_UNDER_SECCOMP = r"""
import os, sys
from orchestrator_spawn import PIPE, spawn
from orchestrator_spawn._platform import cgroup
def fds():
    # Less the files of reused job cgroups, which the pool keeps open.
    pooled = [*cgroup._idle[True], *cgroup._idle[False], *cgroup._live.values()]
    held = {fd for c in pooled for fd in (c.dir_fd, c.cpu_fd, c.events_fd)}
    held |= set(cgroup._parent_fds.values())
    return sorted(fd for fd in os.listdir("/proc/self/fd") if int(fd) not in held)
for attempt in range(3):
    before = fds()
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)
    child = spawn(["sh", "-c", "ls /proc/$$/fd; echo done"], stdout=PIPE)
    out = child.stdout.read().split()
    assert child.wait_blocking(timeout=30) == 0
    child.stdout.close()
    os.close(leak)
    assert out[-1] == b"done", out
    assert sorted(int(x) for x in out[:-1]) == [0, 1, 2], out
    assert fds() == before
print("ok")
"""


@linux_only
def test_spawn_works_where_close_range_and_unshare_are_forbidden(tmp_path: Path) -> None:
    # A child that can neither close_range(CLOSE_RANGE_UNSHARE) nor
    # unshare(CLONE_FILES) cannot leave the parent's fd table: the parent
    # notices and clones with a copied table from then on; fds are closed by
    # walking /proc/self/fd instead.
    helper = seccomp_helper.build(tmp_path)
    result = subprocess.run(
        [
            str(helper),
            *seccomp_helper.deny(
                (seccomp_helper.NR_CLOSE_RANGE, errno.EPERM),
                (seccomp_helper.NR_UNSHARE, errno.EPERM),
            ),
            "--",
            sys.executable,
            "-c",
            SPAWN_UNDER_SECCOMP,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr.decode()
