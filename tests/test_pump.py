"""The native output pump with real children, pipes, files and sockets."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest

from orchestrator_spawn import Redactor
from orchestrator_spawn._native import pump as _native
from orchestrator_spawn.pump import DISCARD, MEMORY, Capture, Redaction, start_capture
from tests.helpers.pump import arun as run
from tests.helpers.pump import piped, pump_threads, python_writer, thread_count

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc (and reopens pipes through it)"
)


def deterministic(n: int, seed: int = 1) -> bytes:
    """n pseudo-random bytes, the same in the child and in the test."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


WRITE_DETERMINISTIC = """
import hashlib
def deterministic(n, seed=1):
    out = bytearray(); block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest(); out += block
    return bytes(out[:n])
data = deterministic(int(sys.argv[1]), 1)
data2 = deterministic(int(sys.argv[2]), 2)
for i in range(0, max(len(data), len(data2)), 7001):
    out.write(data[i:i+7001]); out.flush()
    err.write(data2[i:i+7001]); err.flush()
"""


def test_passthrough_to_files_is_complete(tmp_path: Path) -> None:
    n_out, n_err = 3_000_000, 1_234_567
    proc, r_out, r_err = piped([*python_writer(WRITE_DETERMINISTIC), str(n_out), str(n_err)])
    capture = start_capture(
        r_out, r_err, stdout_sink=tmp_path / "out", stderr_sink=tmp_path / "err"
    )
    stats = run(capture.wait())
    assert proc.wait() == 0
    assert (tmp_path / "out").read_bytes() == deterministic(n_out, 1)
    assert (tmp_path / "err").read_bytes() == deterministic(n_err, 2)
    assert stats.stdout is not None
    assert stats.stderr is not None
    assert (stats.stdout.bytes_read, stats.stdout.bytes_written) == (n_out, n_out)
    assert (stats.stderr.bytes_read, stats.stderr.bytes_written) == (n_err, n_err)
    assert capture.done()


def test_wait_blocking_and_memory_sink() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "printf 'hello\\n'; printf 'oops' >&2"])
    capture = start_capture(r_out, r_err, stdout_sink=MEMORY, stderr_sink=MEMORY)
    capture.wait_blocking(timeout=30)
    proc.wait()
    assert capture.output("stdout") == b"hello\n"
    assert capture.output("stderr") == b"oops"


def test_same_path_for_both_streams_keeps_everything(tmp_path: Path) -> None:
    script = (
        "for i in range(2000):\n"
        "    out.write(b'o%d\\n' % i); out.flush(); err.write(b'e%d\\n' % i); err.flush()"
    )
    proc, r_out, r_err = piped(python_writer(script))
    log = tmp_path / "both.log"
    capture = start_capture(r_out, r_err, stdout_sink=str(log), stderr_sink=str(log))
    capture.wait_blocking(30)
    proc.wait()
    lines = log.read_bytes().splitlines()
    assert sorted(lines) == sorted(
        [b"o%d" % i for i in range(2000)] + [b"e%d" % i for i in range(2000)]
    )
    # Each stream's own order is kept.
    assert [x for x in lines if x.startswith(b"o")] == [b"o%d" % i for i in range(2000)]


def test_file_object_and_fd_sinks_stay_usable(tmp_path: Path) -> None:
    proc, r_out, r_err = piped(["sh", "-c", "echo out; echo err >&2"])
    with open(tmp_path / "o", "wb") as out_file:
        err_fd = os.open(tmp_path / "e", os.O_WRONLY | os.O_CREAT)
        capture = start_capture(r_out, r_err, stdout_sink=out_file, stderr_sink=err_fd)
        capture.wait_blocking(30)
        os.write(err_fd, b"mine\n")  # the caller's fd is its own, still open
        os.close(err_fd)
    proc.wait()
    assert (tmp_path / "o").read_bytes() == b"out\n"
    assert (tmp_path / "e").read_bytes() == b"err\nmine\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_raises_enospc_after_draining() -> None:
    size = 4 * 1024 * 1024  # far more than a pipe buffer: the child must not block
    proc, r_out, r_err = piped(["sh", "-c", f"head -c {size} /dev/zero; echo fine >&2"])
    capture = start_capture(r_out, r_err, stdout_sink="/dev/full", stderr_sink=MEMORY)
    with pytest.raises(OSError, match="writing captured stdout") as info:
        run(capture.wait())
    assert info.value.errno == errno.ENOSPC
    assert proc.wait(timeout=30) == 0
    assert _assert_drained(capture, size) == 0
    assert capture.output("stderr") == b"fine\n"


def _assert_drained(capture: Capture, size: int) -> int:
    """The capture read all ``size`` bytes of stdout although its sink
    failed; returns how many of them reached the sink."""
    stats = capture.stats()
    assert stats.stdout is not None
    assert stats.stdout.bytes_read == size
    return stats.stdout.bytes_written


def test_closed_pipe_sink_raises_broken_pipe_after_draining() -> None:
    size = 2 * 1024 * 1024
    sink_r, sink_w = os.pipe()
    os.close(sink_r)
    proc, r_out, r_err = piped(["sh", "-c", f"head -c {size} /dev/zero"])
    try:
        capture = start_capture(r_out, r_err, stdout_sink=sink_w)
    finally:
        os.close(sink_w)
    with pytest.raises(BrokenPipeError):
        capture.wait_blocking(30)
    assert proc.wait(timeout=30) == 0
    _assert_drained(capture, size)


def test_closed_fd_sink_raises_ebadf_and_leaves_fds_to_caller() -> None:
    proc, r_out, r_err = piped(["true"])
    bad = os.open(os.devnull, os.O_WRONLY)
    os.close(bad)
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        start_capture(r_out, stdout_sink=bad)
    assert info.value.errno == errno.EBADF
    # On failure the read end is still ours: it is open and readable.
    assert os.read(r_out, 10) == b""
    os.close(r_out)
    os.close(r_err)
    proc.wait()


def test_source_must_be_pollable(tmp_path: Path) -> None:
    path = tmp_path / "regular"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="starting a capture") as info:
            start_capture(fd, stdout_sink=MEMORY)
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_slow_pipe_sink_gets_everything_and_stays_blocking() -> None:
    size = 3 * 1024 * 1024
    sink_r, sink_w = os.pipe()
    received = bytearray()

    def slow_reader() -> None:
        while True:
            chunk = os.read(sink_r, 4096)
            if not chunk:
                return
            received.extend(chunk)

    proc, r_out, r_err = piped([*python_writer(WRITE_DETERMINISTIC), str(size), "0"])
    capture = start_capture(r_out, r_err, stdout_sink=sink_w)
    if sys.platform.startswith("linux"):
        # The pump writes through its own non-blocking description of the
        # pipe (elsewhere it has to make the shared one non-blocking).
        assert os.get_blocking(sink_w)
    os.close(sink_w)
    reader = threading.Thread(target=slow_reader)
    reader.start()
    capture.wait_blocking(60)
    reader.join(30)
    os.close(sink_r)
    assert proc.wait() == 0
    assert bytes(received) == deterministic(size, 1)


@linux_only
def test_file_object_source_is_left_blocking() -> None:
    proc = subprocess.Popen(["sh", "-c", "echo via-popen"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    capture = start_capture(proc.stdout, stdout_sink=MEMORY)
    # The pump read through its own description of the pipe: the caller's
    # file object was neither made non-blocking nor closed.
    assert os.get_blocking(proc.stdout.fileno())
    capture.wait_blocking(30)
    proc.stdout.close()
    proc.wait()
    assert capture.output("stdout") == b"via-popen\n"


def test_socket_sink() -> None:
    left, right = socket.socketpair()
    proc, r_out, r_err = piped(["sh", "-c", "seq 1 20000"])
    capture = start_capture(r_out, r_err, stdout_sink=left)
    left.close()
    chunks = []
    while True:
        data = right.recv(65536)
        if not data:
            break
        chunks.append(data)
    capture.wait_blocking(30)
    right.close()
    proc.wait()
    expected = "".join(f"{i}\n" for i in range(1, 20001)).encode()
    assert b"".join(chunks) == expected


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_live_lines_and_sink_agree(tmp_path: Path, use_uvloop: bool) -> None:
    script = (
        "for i in range(300):\n    out.write(b'line %d\\n' % i); out.flush()\n    time.sleep(0.001)"
    )
    proc, r_out, r_err = piped(python_writer(script))

    async def main() -> list[bytes]:
        capture = start_capture(r_out, r_err, stdout_sink=tmp_path / "o", live=["stdout"])
        lines = [line async for line in capture.lines("stdout")]
        await capture.wait()
        return lines

    lines = run(main(), use_uvloop=use_uvloop)
    proc.wait()
    expected = [b"line %d\n" % i for i in range(300)]
    assert lines == expected
    assert (tmp_path / "o").read_bytes() == b"".join(expected)


def test_live_output_not_read_does_not_stall() -> None:
    size = 4 * 1024 * 1024
    proc, r_out, r_err = piped(["sh", "-c", f"head -c {size} /dev/zero"])
    capture = start_capture(r_out, r_err, stdout_sink=MEMORY, live=["stdout"])
    stats = run(capture.wait())
    assert proc.wait(timeout=30) == 0
    assert stats.stdout is not None
    assert stats.stdout.bytes_written == size


def test_live_reader_stopping_early_keeps_sink_complete() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "seq 1 100000"])

    async def main() -> Capture:
        capture = start_capture(r_out, r_err, stdout_sink=MEMORY, live=["stdout"])
        async for _ in capture.chunks("stdout"):
            break  # stop reading after the first chunk
        await capture.wait()
        return capture

    capture = run(main())
    proc.wait()
    assert capture.output("stdout") == "".join(f"{i}\n" for i in range(1, 100001)).encode()


def test_live_requires_opt_in() -> None:
    proc, r_out, r_err = piped(["true"])
    capture = start_capture(r_out, r_err)

    async def main() -> None:
        with pytest.raises(ValueError, match="live"):
            async for _ in capture.chunks("stdout"):
                pass

    run(main())
    capture.wait_blocking(30)
    proc.wait()


def test_wait_blocking_timeout_then_group_kill() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "echo started; exec sleep 60"])
    capture = start_capture(r_out, r_err, stdout_sink=MEMORY)
    with pytest.raises(TimeoutError):
        capture.wait_blocking(timeout=0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    capture.wait_blocking(timeout=30)
    proc.wait()
    assert capture.output("stdout") == b"started\n"


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_grandchild_holding_pipe_finishes_once_group_killed(use_uvloop: bool) -> None:
    # The child exits at once; its background grandchild keeps both pipes open.
    proc, r_out, r_err = piped(["sh", "-c", "sleep 60 & echo parent-done"])
    assert proc.wait(timeout=30) == 0

    async def main() -> Capture:
        capture = start_capture(r_out, r_err, stdout_sink=MEMORY, stderr_sink=MEMORY)
        task = asyncio.ensure_future(capture.wait())
        finished, _ = await asyncio.wait({task}, timeout=0.3)
        assert not finished, "EOF cannot have come: the grandchild holds the pipe"
        os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(task, timeout=30)
        return capture

    capture = run(main(), use_uvloop=use_uvloop)
    assert capture.output("stdout") == b"parent-done\n"


def test_abort_finishes_without_eof() -> None:
    # Something we cannot kill keeps the pipe open; abort() stops waiting for it.
    proc, r_out, r_err = piped(["sh", "-c", "echo before; exec sleep 60"])
    capture = start_capture(r_out, r_err, stdout_sink=MEMORY)
    with pytest.raises(TimeoutError):
        capture.wait_blocking(0.3)
    capture.abort()
    capture.wait_blocking(30)
    assert capture.output("stdout") == b"before\n"
    proc.kill()
    proc.wait()


def test_many_waiters_and_cancelled_waiter(tmp_path: Path) -> None:
    proc, r_out, r_err = piped(["sh", "-c", "sleep 0.3; echo late"])

    async def main() -> None:
        capture = start_capture(r_out, r_err, stdout_sink=tmp_path / "o")
        cancelled = asyncio.ensure_future(capture.wait())
        waiters = [asyncio.ensure_future(capture.wait()) for _ in range(5)]
        await asyncio.sleep(0.05)
        cancelled.cancel()
        results = await asyncio.gather(*waiters)
        assert all(r == results[0] for r in results)
        assert capture.done()

    run(main())
    proc.wait()
    assert (tmp_path / "o").read_bytes() == b"late\n"


def test_waiters_on_several_loops_in_threads() -> None:
    errors: list[BaseException] = []

    def one_loop(index: int) -> None:
        try:
            proc, r_out, r_err = piped(["sh", "-c", f"sleep 0.1; echo {index}"])

            async def main() -> bytes:
                capture = start_capture(r_out, r_err, stdout_sink=MEMORY)
                await capture.wait()
                return capture.output("stdout")

            assert asyncio.run(main()) == f"{index}\n".encode()
            proc.wait()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=one_loop, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def test_discard_counts_bytes() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "head -c 100000 /dev/zero"])
    stats = start_capture(r_out, r_err, stdout_sink=DISCARD).wait_blocking(30)
    proc.wait()
    assert stats.stdout is not None
    assert (stats.stdout.bytes_read, stats.stdout.bytes_written) == (100000, 0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        start_capture()
    proc, r_out, r_err = piped(["true"])
    with pytest.raises(ValueError, match="live"):
        start_capture(r_out, live=["stderr"])
    os.close(r_out)
    os.close(r_err)
    proc.wait()


TOKEN = r"token=[A-Za-z0-9]+"


def test_secret_split_across_writes_is_redacted(tmp_path: Path) -> None:
    # Each piece is flushed separately, with pauses, so the pump reads them apart.
    pieces = [b"start tok", b"en=SEC", b"RET12", b"3 end\n", b"x" * 70000, b"tOKEn=", b"Z9\n"]
    script = (
        f"for piece in {pieces!r}:\n"
        "    out.write(piece); out.flush(); time.sleep(0.02)\n"
        "err.write(b'err token=abc\\n'); err.flush()"
    )
    proc, r_out, r_err = piped(python_writer(script))
    capture = start_capture(
        r_out,
        r_err,
        stdout_sink=tmp_path / "o",
        stderr_sink=tmp_path / "e",
        redact=[TOKEN],
    )
    stats = run(capture.wait())
    assert proc.wait() == 0
    expected = b"start [REDACTED] end\n" + b"x" * 70000 + b"[REDACTED]\n"
    assert (tmp_path / "o").read_bytes() == expected
    assert (tmp_path / "e").read_bytes() == b"err [REDACTED]\n"
    assert stats.stdout is not None
    assert stats.stdout.bytes_read == sum(map(len, pieces))
    assert stats.stdout.bytes_written == len(expected)


def test_redaction_matches_reference_on_random_writes() -> None:
    rng_script = """
import random
rng = random.Random(7)
parts = []
for i in range(20000):
    parts.append(b'word%d ' % i)
    if rng.random() < 0.05:
        parts.append(b'token=' + bytes(rng.choice(b'abcXYZ019') for _ in range(rng.randint(1, 40))))
    if rng.random() < 0.01:
        parts.append(b'PASSWORD: hunter2\\n')
data = b''.join(parts)
i = 0
while i < len(data):
    n = rng.randint(1, 5000)
    out.write(data[i:i+n]); out.flush(); i += n
"""
    proc, r_out, r_err = piped(python_writer(rng_script))
    literals = ["hunter2"]
    capture = start_capture(
        r_out,
        r_err,
        stdout_sink=MEMORY,
        redact=Redaction(patterns=[TOKEN], literals=literals, replacement=b"<x>"),
    )
    capture.wait_blocking(60)
    assert proc.wait() == 0
    # The same bytes, produced here, redacted the reference way.
    import random

    rng = random.Random(7)
    parts = []
    for i in range(20000):
        parts.append(b"word%d " % i)
        if rng.random() < 0.05:
            parts.append(
                b"token=" + bytes(rng.choice(b"abcXYZ019") for _ in range(rng.randint(1, 40)))
            )
        if rng.random() < 0.01:
            parts.append(b"PASSWORD: hunter2\n")
    reference = re.sub(rb"(?i)(?:" + TOKEN.encode() + rb")|(?:hunter2)", b"<x>", b"".join(parts))
    assert capture.output("stdout") == reference


def test_redacted_line_shows_up_before_eof() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "echo 'login token=abc123 ok'; exec sleep 60"])

    async def main() -> bytes:
        capture = start_capture(r_out, r_err, stdout_sink=MEMORY, live=["stdout"], redact=[TOKEN])
        lines = capture.lines("stdout")
        assert isinstance(lines, AsyncGenerator)  # closable early, as the test needs
        first: bytes = await asyncio.wait_for(lines.__anext__(), timeout=30)
        os.killpg(proc.pid, signal.SIGKILL)
        await lines.aclose()
        await capture.wait()
        assert capture.output("stdout") == first
        return first

    assert run(main()) == b"login [REDACTED] ok\n"
    proc.wait()


def test_redacting_into_a_slow_pipe_and_a_slow_live_reader() -> None:
    # Both the sink and the live pipe fill up: the stream pauses and resumes
    # until everything went through, redacted, in order.
    size = 2 * 1024 * 1024
    sink_r, sink_w = os.pipe()
    received = bytearray()

    def slow_sink_reader() -> None:
        while chunk := os.read(sink_r, 4096):
            received.extend(chunk)

    proc, r_out, r_err = piped(["sh", "-c", f"yes 'a token=abc b' | head -c {size}"])

    async def main() -> bytes:
        capture = start_capture(r_out, r_err, stdout_sink=sink_w, live=["stdout"], redact=[TOKEN])
        os.close(sink_w)
        live = bytearray()
        async for chunk in capture.chunks("stdout"):
            live.extend(chunk)
            await asyncio.sleep(0.001)
        await capture.wait()
        return bytes(live)

    reader = threading.Thread(target=slow_sink_reader)
    reader.start()
    live = run(main())
    reader.join(30)
    os.close(sink_r)
    assert proc.wait() == 0
    expected = re.sub(rb"token=[A-Za-z0-9]+", b"[REDACTED]", (b"a token=abc b\n" * size)[:size])
    assert bytes(received) == expected
    assert live == expected


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_redacting_into_dev_full_raises_after_draining() -> None:
    size = 3 * 1024 * 1024
    proc, r_out, r_err = piped(["sh", "-c", f"yes 'token=abc line' | head -c {size}"])
    capture = start_capture(r_out, r_err, stdout_sink="/dev/full", redact=[TOKEN])
    with pytest.raises(OSError, match="No space left") as info:
        capture.wait_blocking(60)
    assert info.value.errno == errno.ENOSPC
    assert proc.wait(timeout=30) == 0
    _assert_drained(capture, size)


def test_bad_redaction_arguments() -> None:
    proc, r_out, r_err = piped(["true"])
    try:
        with pytest.raises(ValueError, match=r"\(unclosed"):
            start_capture(r_out, stdout_sink=MEMORY, redact=["(unclosed"])
        with pytest.raises(ValueError, match="empty string"):
            start_capture(r_out, stdout_sink=MEMORY, redact=["a*"])
        with pytest.raises(TypeError, match="Redaction"):
            start_capture(r_out, stdout_sink=MEMORY, redact=Redactor([TOKEN]))  # type: ignore[arg-type]
    finally:
        os.close(r_out)
        os.close(r_err)
        proc.wait()


@linux_only
def test_many_children_constant_threads(tmp_path: Path) -> None:
    # 1,000 lives in the benchmark; here enough to show the shape quickly.
    count = 150
    baseline = thread_count()
    script = (
        "for i in range(64):\n    out.write(b'line %d token=SECRET%d\\n' % (i, i))\nout.flush()"
    )
    started = [piped(python_writer(script)) for _ in range(count)]
    captures = [
        start_capture(
            r_out,
            r_err,
            stdout_sink=tmp_path / f"{i}.out",
            stderr_sink=tmp_path / f"{i}.err",
            redact=[r"token=\S+"],
        )
        for i, (_, r_out, r_err) in enumerate(started)
    ]
    peak = thread_count()

    async def main() -> None:
        await asyncio.gather(*(c.wait() for c in captures))

    run(main())
    for proc, _, _ in started:
        assert proc.wait() == 0
    assert peak <= baseline + 4
    assert thread_count() <= baseline + 4
    assert pump_threads() == 1
    expected = b"".join(b"line %d [REDACTED]\n" % i for i in range(64))
    for i in range(count):
        assert (tmp_path / f"{i}.out").read_bytes() == expected
        assert (tmp_path / f"{i}.err").read_bytes() == b""
    assert _native.pump_active_captures() == 0


@linux_only
def test_no_fd_leaks(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def batch() -> None:
        procs = []
        captures = []
        for i in range(20):
            proc, r_out, r_err = piped(["sh", "-c", "seq 1 3000; echo e >&2"])
            procs.append(proc)
            captures.append(
                start_capture(
                    r_out,
                    r_err,
                    stdout_sink=tmp_path / "same.log",
                    stderr_sink=tmp_path / "same.log",
                    live=["stdout"] if i % 2 else [],
                    redact=[TOKEN] if i % 3 else None,
                )
            )

        async def main() -> None:
            for capture in captures[1::4]:
                async for _ in capture.lines("stdout"):
                    pass
            await asyncio.gather(*(capture.wait() for capture in captures))

        run(main())
        for proc in procs:
            proc.wait()

    batch()  # warm up: the reactor's own fds exist from here on
    before = open_fds()
    batch()
    assert open_fds() == before


@linux_only
def test_fork_child_gets_a_fresh_pump() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "sleep 0.5; echo parent"])
    parent_capture = start_capture(r_out, r_err, stdout_sink=MEMORY)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        status = 1
        try:
            try:
                parent_capture.wait_blocking(1)
            except RuntimeError:
                child, c_out, c_err = piped(["echo", "in child"])
                capture = start_capture(c_out, c_err, stdout_sink=MEMORY)
                capture.wait_blocking(10)
                child.wait()
                status = 0 if capture.output("stdout") == b"in child\n" else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent_capture.wait_blocking(30)
    proc.wait()
    assert parent_capture.output("stdout") == b"parent\n"


def test_dropping_capture_is_safe() -> None:
    proc, r_out, r_err = piped(["sh", "-c", "seq 1 50000"])
    start_capture(r_out, r_err, stdout_sink=MEMORY, live=["stdout"])
    # Nobody keeps the capture: its live pipe closes, the pump drains on.
    assert proc.wait(timeout=30) == 0
    for _ in range(300):
        if _native.pump_active_captures() == 0:
            break
        threading.Event().wait(0.01)
    assert _native.pump_active_captures() == 0


def _spawned_concurrently(make: Callable[[], None], n: int) -> None:
    threads = [threading.Thread(target=make) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def test_start_from_many_threads(tmp_path: Path) -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def one() -> None:
        proc, r_out, r_err = piped(["sh", "-c", "seq 1 1000"])
        capture = start_capture(r_out, r_err, stdout_sink=MEMORY)
        capture.wait_blocking(30)
        proc.wait()
        with lock:
            results.append(capture.output("stdout"))

    _spawned_concurrently(one, 16)
    expected = "".join(f"{i}\n" for i in range(1, 1001)).encode()
    assert results == [expected] * 16
