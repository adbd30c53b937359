"""``_native.pump.pump_capture_start_pair`` + ``PumpCapture.commit``: the
two-step capture of the runner and ``run``. Step one opens the sinks and
takes two pipes (from the pool the reactor keeps made ahead); the child is
spawned onto the write ends; step two registers the read ends with the
reactor's poller from the calling thread and closes the pump's write ends
there. Real pipes, files and children throughout."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import sys
import time
from pathlib import Path

import pytest

from orchestrator_spawn import spawn
from orchestrator_spawn._native import pump as _native
from orchestrator_spawn.redact import compiled_patterns

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc fds")

MEMORY = _native.PUMP_SINK_MEMORY
PATH = _native.PUMP_SINK_PATH


def _redaction() -> _native.PumpRedaction:
    return _native.PumpRedaction(compiled_patterns((rb"token=\w+",), (), 0), b"[R]", 4096)


def _identity(fd: int) -> tuple[int, int] | None:
    """The pipe behind ``fd`` (device, inode), or None once ``fd`` is closed.
    The number alone says little: the reactor may reuse it at once for a
    pipe of its pool."""
    try:
        info = os.fstat(fd)
    except OSError as err:
        if err.errno != errno.EBADF:
            raise
        return None
    return info.st_dev, info.st_ino


def _captured_echo(script: str) -> tuple[bytes, bytes]:
    capture, out_w, err_w = _native.pump_capture_start_pair(
        MEMORY, None, MEMORY, None, _redaction()
    )
    try:
        child = spawn(["sh", "-c", script], stdout=out_w, stderr=err_w)
    except BaseException:
        capture.commit(0)
        raise
    capture.commit(child.pid)
    assert child.wait_blocking(30) == 0
    assert capture.wait(30)
    return capture.memory(0), capture.memory(1)


def _parked_pipes() -> set[int]:
    """This process's pipe fds in the parked range (the pump's, the pool's)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 256:
            continue
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("pipe:"):
                found.add(fd)
        except FileNotFoundError:  # the listdir's own fd
            pass
    return found


def _settled_fds() -> int:
    """How many fds are open once the reactor is done refilling its pipe
    pool (it refills after the events that finished the last captures; the
    pool's fd numbers change as its pipes are taken and made anew)."""
    previous = -1
    current = len(os.listdir("/proc/self/fd"))
    deadline = time.monotonic() + 10
    while current != previous and time.monotonic() < deadline:
        time.sleep(0.02)
        previous, current = current, len(os.listdir("/proc/self/fd"))
    return current


def test_a_child_on_the_write_ends_is_redacted_into_both_files(tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "out.log", tmp_path / "err.log"
    capture, out_w, err_w = _native.pump_capture_start_pair(
        PATH, os.fsencode(out_path), PATH, os.fsencode(err_path), _redaction()
    )
    child = spawn(
        ["sh", "-c", "echo out token=abc; echo err token=def >&2"], stdout=out_w, stderr=err_w
    )
    capture.commit(child.pid)
    assert child.wait_blocking(30) == 0
    assert capture.wait(30)
    assert out_path.read_bytes() == b"out [R]\n"
    assert err_path.read_bytes() == b"err [R]\n"
    assert [s.error for s in capture.stats_all()] == [0, 0]


@linux_only
def test_output_written_before_the_commit_is_redacted_and_the_end_waits_for_it() -> None:
    """A pipe from the pool is on the reactor's poller from the start: what
    the child writes before the commit is pumped at once (the stream's
    redactor made at that first event), and end of file waits for the
    commit, which closes the pump's own write ends."""
    _captured_echo("true")
    _settled_fds()  # the pool holds pipes made ahead from here on
    capture, out_w, err_w = _native.pump_capture_start_pair(
        MEMORY, None, MEMORY, None, _redaction()
    )
    child = spawn(
        ["sh", "-c", "echo x token=abc; echo y token=def >&2"], stdout=out_w, stderr=err_w
    )
    assert child.wait_blocking(30) == 0
    deadline = time.monotonic() + 10
    while capture.stats_all()[1].bytes_read == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [s.bytes_read for s in capture.stats_all()] == [12, 12]
    assert not capture.done()  # the pump's writers keep both streams open
    capture.commit(child.pid)
    assert capture.wait(30)
    assert capture.memory(0) == b"x [R]\n"
    assert capture.memory(1) == b"y [R]\n"


def test_the_commit_closes_the_pumps_write_ends() -> None:
    capture, out_w, err_w = _native.pump_capture_start_pair(MEMORY, None, MEMORY, None, None)
    writers = [_identity(out_w), _identity(err_w)]
    assert None not in writers
    # Close-on-exec and blocking, as the pump's writers always are.
    assert fcntl.fcntl(out_w, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert os.get_blocking(out_w)
    os.write(out_w, b"before the commit\n")
    capture.commit(0)
    assert _identity(out_w) != writers[0]
    assert _identity(err_w) != writers[1]
    assert capture.wait(30)  # every writer closed: end of file on both
    assert capture.memory(0) == b"before the commit\n"
    assert capture.memory(1) == b""
    # The final counters in one call: read, written, teed; stdout then stderr.
    assert capture.pair_counters() == [18, 18, 0, 0, 0, 0]


def test_no_pair_counters_while_running_or_after_a_failed_stream() -> None:
    capture, _, _ = _native.pump_capture_start_pair(MEMORY, None, MEMORY, None, None)
    assert capture.pair_counters() is None  # not even committed
    capture.commit(0)
    assert capture.wait(30)
    assert capture.pair_counters() == [0, 0, 0, 0, 0, 0]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the sink's reader is gone: writing fails (EPIPE)
    specs = [
        _native.PumpStreamSpec(_native.PUMP_SOURCE_PIPE, write_end),
        _native.PumpStreamSpec(_native.PUMP_SOURCE_PIPE, MEMORY),
    ]
    failing, writers = _native.pump_capture_start(specs)
    os.write(writers[0], b"lost")
    for fd in writers:
        os.close(fd)
    assert failing.wait(30)
    assert failing.pair_counters() is None
    assert [s.error for s in failing.stats_all()] == [errno.EPIPE, 0]


def test_a_second_commit_does_nothing() -> None:
    capture, _out_w, _ = _native.pump_capture_start_pair(MEMORY, None, MEMORY, None, None)
    capture.commit(0)
    assert capture.wait(30)
    # The fd number may be reused meanwhile: a second commit must not close it.
    reused_r, reused_w = os.pipe()
    try:
        capture.commit(0)
        assert _identity(reused_r) is not None
        assert _identity(reused_w) is not None
    finally:
        os.close(reused_r)
        os.close(reused_w)


def test_a_capture_dropped_before_its_commit_ends_and_closes_its_writers() -> None:
    before = _native.pump_active_captures()
    capture, out_w, err_w = _native.pump_capture_start_pair(MEMORY, None, MEMORY, None, None)
    writers = [_identity(out_w), _identity(err_w)]
    del capture
    gc.collect()
    # Releasing it committed it: the writers are closed and it runs to its
    # (immediate) end of file instead of staying active forever.
    assert _identity(out_w) != writers[0]
    assert _identity(err_w) != writers[1]
    deadline = time.monotonic() + 10
    while _native.pump_active_captures() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _native.pump_active_captures() == before


def test_an_abort_right_after_the_commit_fails_closed() -> None:
    """The abort may reach the reactor before the stream's first event (the
    stream is started there lazily): what is held still never comes out in
    clear."""
    for _ in range(20):
        capture, out_w, err_w = _native.pump_capture_start_pair(
            MEMORY, None, MEMORY, None, _redaction()
        )
        child = spawn(
            ["sh", "-c", "printf 'x token=ab'; exec sleep 30"], stdout=out_w, stderr=err_w
        )
        capture.commit(child.pid)
        capture.abort()
        try:
            assert capture.wait(30)
        finally:
            child.close()
        out = capture.memory(0)
        assert b"ab" not in out
        assert out in (b"", b"x ", b"x [R]")


@linux_only
def test_pooled_pipes_are_reused_and_their_number_is_bounded() -> None:
    assert _captured_echo("echo warm") == (b"warm\n", b"")
    before = _settled_fds()
    for index in range(40):
        assert _captured_echo(f"echo {index}; echo e >&2") == (f"{index}\n".encode(), b"e\n")
    after = _settled_fds()
    # As many fds as after the first capture: the pool was refilled to the
    # same size, and nothing of the 40 captures is left open.
    assert after == before
    assert len(_parked_pipes()) <= 2 * 8


@linux_only
def test_a_sink_that_cannot_be_opened_returns_the_pipes_to_the_pool(tmp_path: Path) -> None:
    _captured_echo("true")
    before = _settled_fds()
    missing = os.fsencode(tmp_path / "no" / "such" / "dir")
    with pytest.raises(FileNotFoundError) as raised:
        _native.pump_capture_start_pair(MEMORY, None, PATH, missing, _redaction())
    assert raised.value.filename == os.fsdecode(missing)
    assert len(os.listdir("/proc/self/fd")) == before


@linux_only
def test_a_forked_child_closes_the_pool_and_captures_afresh() -> None:
    _captured_echo("true")
    _settled_fds()
    before = _parked_pipes()
    assert len(before) >= 2  # the pool holds made-ahead pipes now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        status = 1
        try:
            # The parent's pool is not the child's: its pipes were closed
            # (the parked pipes of captures still running, if any, stay).
            inherited = _parked_pipes()
            if (
                inherited <= before
                and len(before - inherited) >= 2
                and _captured_echo("echo child") == (b"child\n", b"")
            ):
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _captured_echo("echo parent") == (b"parent\n", b"")


def test_the_stats_of_a_finished_capture_are_ordinary_frozen_dataclasses() -> None:
    """``Capture.wait*`` builds them without their ``__init__`` (per job):
    they must still be the dataclasses users compare, hash and print."""
    import dataclasses

    from orchestrator_spawn.pump import PIPE, CaptureStats, StreamStats, start_capture

    capture = start_capture(PIPE, PIPE, redact=None)
    os.write(capture.writer("stdout"), b"12345")
    stats = capture.wait_blocking(30)
    expected = CaptureStats(StreamStats(5, 0, 0), StreamStats(0, 0, 0))
    assert stats == expected
    assert hash(stats) == hash(expected)
    assert repr(stats) == repr(expected)
    assert type(stats.stdout) is StreamStats
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.stdout.bytes_read = 1  # type: ignore[misc]
