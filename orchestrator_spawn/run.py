"""``run``/``run_blocking``: the ``subprocess.run`` of this package, and
``open_redacted``: a child's redacted output, live, line by line.

The child runs in its own process group; its stdout and stderr go through the
native pump, redacted (by default with the built-in pattern pack) before any
byte reaches Python; on timeout or cancellation the whole job is killed, so
nothing it started outlives the call by accident. Works under asyncio,
uvloop and trio.
"""

from __future__ import annotations

import contextlib
import locale
import math
import os
import select
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, final

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from orchestrator_spawn._aio import asyncio_loop, finish_shielded
from orchestrator_spawn._pipe_streams import ChildStreamWriter
from orchestrator_spawn.child import Child, log
from orchestrator_spawn.errors import OrchestratorSpawnError
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
from orchestrator_spawn.pump import (
    DISCARD,
    MEMORY,
    Capture,
    CaptureStats,
    RedactionLike,
    ResolvedRedaction,
    resolve_redaction,
    spawn_captured,
    spawn_into,
    start_capture,
)
from orchestrator_spawn.spawn import (
    DEVNULL,
    PIPE,
    STDOUT,
    ResourceLimits,
    StdioSpec,
    StrOrBytesPath,
    spawn,
)

__all__ = [
    "RedactedLine",
    "RedactedProcess",
    "RunResult",
    "RunTimeoutError",
    "open_redacted",
    "run",
    "run_blocking",
]

# After the group was killed, how long the pipes may take to reach end of file
# before the capture stops waiting for them (a process that left the group,
# e.g. with setsid(), may still hold them), in seconds.
_PIPE_GRACE = 1.0


@dataclass(frozen=True)
class RunResult:
    """What ``run`` returns: the exit status and the (redacted) output.

    ``returncode`` is negative -N when the child was killed by signal N.
    ``stdout``/``stderr`` are ``bytes`` (``str`` with ``text=True`` or an
    ``encoding``), None for a stream that was not captured.
    """

    args: tuple[StrOrBytesPath, ...]
    returncode: int
    stdout: Any
    stderr: Any

    def check_returncode(self) -> None:
        """Raise ``subprocess.CalledProcessError`` if ``returncode`` is not 0."""
        if self.returncode:
            raise subprocess.CalledProcessError(
                self.returncode, list(self.args), self.stdout, self.stderr
            )


class RunTimeoutError(OrchestratorSpawnError, subprocess.TimeoutExpired, TimeoutError):
    """``run`` hit its timeout; the child's whole job was killed and reaped.

    Also a ``subprocess.TimeoutExpired`` (and a ``TimeoutError``):
    ``stdout``/``output`` and ``stderr`` hold the redacted output produced
    until then (bytes); ``cmd`` and ``timeout`` (seconds) as there.
    """

    def __init__(
        self,
        cmd: Sequence[StrOrBytesPath],
        timeout: float,
        stdout: bytes | None,
        stderr: bytes | None,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, list(cmd), timeout, stdout, stderr)
        self.args = (self.cmd, timeout)

    def __str__(self) -> str:
        return subprocess.TimeoutExpired.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.timeout, self.output, self.stderr))


# ---- arguments ------------------------------------------------------------------


class _Plan(NamedTuple):
    """``run``'s arguments, checked before anything is started (a named
    tuple: one is made per job, and a frozen dataclass's fifteen
    ``object.__setattr__`` calls cost more)."""

    argv: Sequence[StrOrBytesPath]
    data: bytes | None
    encoding: str | None
    errors: str
    check: bool
    timeout: float | None
    redact: ResolvedRedaction | None
    cwd: StrOrBytesPath | None
    env: Mapping[Any, Any] | None
    limits: ResourceLimits | None
    stdin: StdioSpec
    stdout: StdioSpec
    stderr: StdioSpec
    capture_stdout: bool
    capture_stderr: bool


def _plan(
    argv: Sequence[StrOrBytesPath],
    *,
    input: bytes | str | None,
    capture_output: bool,
    text: bool,
    encoding: str | None,
    errors: str | None,
    check: bool,
    timeout: float | None,
    redact: RedactionLike | None,
    cwd: StrOrBytesPath | None,
    env: Mapping[Any, Any] | None,
    limits: ResourceLimits | None,
    stdin: StdioSpec,
    stdout: StdioSpec,
    stderr: StdioSpec,
) -> _Plan:
    if isinstance(stdin, (bytes, bytearray, str)):
        raise TypeError("stdin= takes what spawn() takes; pass the data itself as input=")
    if input is not None and stdin is not None:
        raise ValueError("stdin and input arguments may not both be used")
    if capture_output and (stdout is not None or stderr is not None):
        raise ValueError("stdout and stderr arguments may not be used with capture_output")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    text_mode = bool(text or encoding or errors)
    if text_mode and encoding is None:
        encoding = locale.getpreferredencoding(False)
    data: bytes | None = None
    if input is not None:
        if text_mode:
            if not isinstance(input, str):
                raise TypeError(f"input must be str with text=True, not {type(input).__name__}")
            data = input.encode(encoding or "utf-8", errors or "strict")
        elif isinstance(input, (bytes, bytearray, memoryview)):
            data = bytes(input)
        else:
            raise TypeError(
                f"input must be bytes (or str with text=True), not {type(input).__name__}"
            )
    # Bad patterns fail here, before a process exists; the capture takes the
    # checked setup as it is (not checked twice per job).
    resolved = None if redact is None else resolve_redaction(redact)
    return _Plan(
        argv,
        data,
        encoding if text_mode else None,
        errors or "strict",
        check,
        timeout,
        resolved,
        cwd,
        env,
        limits,
        stdin,
        stdout,
        stderr,
        capture_output or stdout == PIPE,
        capture_output or stderr == PIPE,
    )


def _start(plan: _Plan) -> tuple[Child[Any, Any], Capture | None]:
    """Spawns the child with its output going into the pump."""
    if plan.capture_stdout and plan.capture_stderr:
        # Both streams, the usual case: one two-step capture around the spawn.
        return spawn_captured(
            MEMORY,
            MEMORY,
            plan.redact,
            lambda out, err, follower: _launch(plan, out, err, follower),
        )
    capture = None
    if plan.capture_stdout or plan.capture_stderr:
        capture = start_capture(
            PIPE if plan.capture_stdout else None,
            PIPE if plan.capture_stderr else None,
            stdout_sink=MEMORY,
            stderr_sink=MEMORY,
            redact=plan.redact,
        )

    def launch() -> Child[Any, Any]:
        return _launch(
            plan,
            capture.writer("stdout") if plan.capture_stdout and capture else plan.stdout,
            capture.writer("stderr") if plan.capture_stderr and capture else plan.stderr,
        )

    # A kill (timeout, cancellation, or from elsewhere) cuts the output short:
    # what the redactors hold then fails closed.
    child = launch() if capture is None else spawn_into([capture], launch)
    return child, capture


def _launch(
    plan: _Plan, stdout: StdioSpec, stderr: StdioSpec, follower: Any = None
) -> Child[Any, Any]:
    return spawn(
        plan.argv,
        cwd=plan.cwd,
        env=plan.env,
        # Not the caller's stdin by default: the child is in a background
        # process group, where reading the terminal would stop it (SIGTTIN).
        stdin=PIPE if plan.data is not None else DEVNULL if plan.stdin is None else plan.stdin,
        stdout=stdout,
        stderr=stderr,
        process_group=True,
        limits=plan.limits,
        _async_streams=True,
        _output_follower=follower,
    )


def _outputs(capture: Capture | None) -> tuple[bytes | None, bytes | None]:
    if capture is None or not capture.done():
        return None, None
    names = capture.streams
    if len(names) == 2:  # both captured, the usual case: done was checked
        native = capture._native
        return native.memory(0), native.memory(1)
    return (
        capture.output("stdout") if "stdout" in names else None,
        capture.output("stderr") if "stderr" in names else None,
    )


def _decode(plan: _Plan, data: bytes | None) -> Any:
    if data is None or plan.encoding is None:
        return data
    # As subprocess does in text mode: universal newlines.
    text = data.decode(plan.encoding, plan.errors)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _result(plan: _Plan, child: Child[Any, Any], capture: Capture | None) -> RunResult:
    returncode = child.returncode
    assert returncode is not None
    out, err = _outputs(capture)
    result = RunResult(tuple(plan.argv), returncode, _decode(plan, out), _decode(plan, err))
    if plan.check:
        result.check_returncode()
    return result


def _timed_out(plan: _Plan, capture: Capture | None) -> RunTimeoutError:
    out, err = _outputs(capture)
    return RunTimeoutError(plan.argv, plan.timeout or 0.0, out, err)


def _warn_withheld(child: Child[Any, Any]) -> None:
    log.warning(
        "pid=%d: the job was killed but its output pipes stayed open (a process "
        "outside its group holds them); the capture was cut short",
        child.pid,
    )


async def _capture_wait(capture: Capture) -> CaptureStats:
    """``capture.wait()`` (it works under any backend)."""
    return await capture.wait()


async def _stop(child: Child[Any, Any], capture: Capture | None) -> None:
    """Kill the job, reap the child, and end the capture."""
    child._kill_job()
    await child._wait(None)
    if isinstance(child.stdin, ChildStreamWriter):
        child.stdin._abandon()
    if capture is None:
        return
    with anyio.move_on_after(_PIPE_GRACE):
        with contextlib.suppress(OSError):
            await _capture_wait(capture)
    if not capture.done():
        _warn_withheld(child)
        capture.abort()
    with contextlib.suppress(OSError):
        await _capture_wait(capture)


async def _feed(writer: ChildStreamWriter, data: bytes) -> None:
    try:
        if data:
            writer.write(data)
        writer.close()
        await writer.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child exited or closed stdin without reading it all
    writer._abandon()


async def run(
    argv: Sequence[StrOrBytesPath],
    *,
    input: bytes | str | None = None,
    capture_output: bool = True,
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    check: bool = False,
    timeout: float | None = None,
    redact: RedactionLike | None = DEFAULT_REDACTION_PATTERNS,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    limits: ResourceLimits | None = None,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    whole_job: bool = False,
) -> RunResult:
    """Run ``argv`` to completion and return its status and (redacted) output.

    The child is spawned in its own process group. With ``capture_output``
    (the default), or ``stdout=PIPE``/``stderr=PIPE``, a stream is captured
    through the native pump into memory, redacted by ``redact`` before any
    byte reaches Python: by default the built-in pattern pack (the default of
    the CLI and ``RunnerConfig``); a ``pump.Redaction`` or a sequence of
    patterns instead; ``redact=None`` switches redaction off. Otherwise
    ``stdout``/``stderr`` take what ``spawn()`` takes (``stderr=STDOUT``
    merges it into captured stdout).

    ``input``: bytes written to stdin, which is then closed (a child that does
    not read it all is not an error); ``stdin``: what ``spawn()`` takes
    (None: ``/dev/null``, since a background process group must not read the
    terminal). ``text=True`` or an ``encoding`` (default: the locale's)
    decode the output (``errors`` as for ``bytes.decode``; universal
    newlines) and encode ``input`` (then a ``str``).

    Returns once the child exited and every captured pipe reached end of
    file (a background process that keeps them open is waited for, as with
    ``subprocess.run``; ``timeout`` bounds that too). ``timeout`` (seconds):
    when it passes, the whole job is killed and reaped and
    ``RunTimeoutError`` (a ``subprocess.TimeoutExpired``) is raised with the
    redacted output so far. Cancelling the call kills the job too.
    ``check=True`` raises ``subprocess.CalledProcessError`` with the
    (redacted) output for a non-zero exit. ``whole_job=True`` also waits until every
    process the child started has exited (see ``Child.wait``), within
    ``timeout``.

    Raises ``ValueError``/``TypeError`` for bad arguments or patterns before
    anything is spawned, ``SpawnError`` if the program could not be started,
    ``OSError`` if the output could not be kept (out of memory).
    """
    plan = _plan(
        argv,
        input=input,
        capture_output=capture_output,
        text=text,
        encoding=encoding,
        errors=errors,
        check=check,
        timeout=timeout,
        redact=redact,
        cwd=cwd,
        env=env,
        limits=limits,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
    child, capture = _start(plan)

    if plan.data is None and timeout is None and asyncio_loop() is not None:
        # The common case under asyncio, without a task group or cancel
        # scope per job: the capture first (its failure kills the job at
        # once, as the task group's would), then the child's exit.
        try:
            if capture is not None:
                await capture.wait()
            await child._wait(None)
            if whole_job:
                await child._wait_job()
        except BaseException:
            # Cancelled, or the capture failed: leave no process behind.
            await finish_shielded(lambda: _stop(child, capture))
            raise
        return _result(plan, child, capture)

    async def finish() -> None:
        async with anyio.create_task_group() as group:
            if plan.data is not None and isinstance(child.stdin, ChildStreamWriter):
                group.start_soon(_feed, child.stdin, plan.data)
            if capture is not None:
                group.start_soon(_capture_wait, capture)
            await child._wait(None)
            if whole_job:
                await child._wait_job()

    try:
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            await finish()
    except BaseException:
        # Cancelled, or the capture failed: leave no process behind.
        await finish_shielded(lambda: _stop(child, capture))
        raise
    if scope.cancelled_caught:
        await finish_shielded(lambda: _stop(child, capture))
        raise _timed_out(plan, capture)
    return _result(plan, child, capture)


def _write_blocking(writer: Any, data: bytes, deadline: float | None) -> None:
    """Writes ``data`` to the child's stdin pipe without blocking past
    ``deadline``, then closes it. ``TimeoutError`` when the deadline passes."""
    fd = writer.fileno()
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError from None
                poller.poll(None if remaining is None else max(1, int(remaining * 1000)))
                continue
            except (BrokenPipeError, ConnectionResetError):
                break  # the child exited or closed stdin without reading it all
            view = view[written:]
    finally:
        writer._abandon()


def _stop_blocking(child: Child[Any, Any], capture: Capture | None) -> None:
    child.kill_blocking()
    if isinstance(child.stdin, ChildStreamWriter):
        child.stdin._abandon()
    if capture is None:
        return
    try:
        capture.wait_blocking(_PIPE_GRACE)
    except TimeoutError:
        _warn_withheld(child)
        capture.abort()
    except OSError:
        pass
    with contextlib.suppress(OSError):
        capture.wait_blocking()


def run_blocking(
    argv: Sequence[StrOrBytesPath],
    *,
    input: bytes | str | None = None,
    capture_output: bool = True,
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    check: bool = False,
    timeout: float | None = None,
    redact: RedactionLike | None = DEFAULT_REDACTION_PATTERNS,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    limits: ResourceLimits | None = None,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    whole_job: bool = False,
) -> RunResult:
    """The blocking twin of :func:`run`: the same arguments, results and
    errors, without an event loop (no thread is started for it). A
    ``KeyboardInterrupt`` while it waits kills and reaps the job too."""
    plan = _plan(
        argv,
        input=input,
        capture_output=capture_output,
        text=text,
        encoding=encoding,
        errors=errors,
        check=check,
        timeout=timeout,
        redact=redact,
        cwd=cwd,
        env=env,
        limits=limits,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
    deadline = None if timeout is None else time.monotonic() + timeout

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    child, capture = _start(plan)
    try:
        if plan.data is not None and child.stdin is not None:
            _write_blocking(child.stdin, plan.data, deadline)
        child.wait_blocking(remaining())
        if capture is not None:
            capture.wait_blocking(remaining())
        if whole_job:
            child.wait_blocking(remaining(), whole_job=True)
    except TimeoutError:
        _stop_blocking(child, capture)
        raise _timed_out(plan, capture) from None
    except BaseException:
        _stop_blocking(child, capture)
        raise
    return _result(plan, child, capture)


# ---- live redacted lines ------------------------------------------------------


class RedactedLine(NamedTuple):
    """One line of a child's output, already redacted: ``stream`` is
    ``"stdout"`` or ``"stderr"``, ``line`` the bytes with their ``b"\\n"`` (the
    last line of a stream may lack it)."""

    stream: str
    line: bytes


@final
class RedactedProcess:
    """A child whose stdout and stderr are redacted in C and handed to Python
    line by line, live; from :func:`open_redacted`, used as ``async with``.

    ``child`` is the :class:`Child`. ``redacted_lines()`` yields
    :class:`RedactedLine` objects as the child prints them and ends when its
    output ends (both pipes closed, normally when it exits). Leaving the
    ``async with`` block kills the job if it still runs and reaps it. Lines
    nobody reads are kept in memory, so the child never stalls on them."""

    def __init__(self, plan: _Plan, merge_stderr: bool) -> None:
        self._plan = plan
        self._merge = merge_stderr
        self._child: Child[Any, Any] | None = None
        self._capture: Capture | None = None
        self._group: Any = None
        self._receive: Any = None
        self._iterating = False

    @property
    def child(self) -> Child[Any, Any]:
        if self._child is None:
            raise RuntimeError("use open_redacted(...) with async with")
        return self._child

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    async def __aenter__(self) -> RedactedProcess:
        plan = self._plan
        names = ("stdout",) if self._merge else ("stdout", "stderr")
        capture = start_capture(
            PIPE,
            None if self._merge else PIPE,
            stdout_sink=DISCARD,
            stderr_sink=DISCARD,
            redact=plan.redact,
            live=names,
        )
        # The writers are closed here, so that the lines end when the child's
        # output ends (forgetting it is what made a hand-made capture hang).
        child = spawn_into(
            [capture],
            lambda: spawn(
                plan.argv,
                cwd=plan.cwd,
                env=plan.env,
                stdin=DEVNULL if plan.stdin is None else plan.stdin,
                stdout=capture.writer("stdout"),
                stderr=STDOUT if self._merge else capture.writer("stderr"),
                process_group=True,
                limits=plan.limits,
            ),
            follow=False,
            abort_on_failure=True,
        )
        self._child, self._capture = child, capture
        send, self._receive = anyio.create_memory_object_stream[RedactedLine](math.inf)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        with send:
            for name in names:
                tee = capture._take_tee(name)
                self._group.start_soon(_read_lines, tee.fd, name, send.clone(), tee)
        return self

    async def redacted_lines(self) -> AsyncIterator[RedactedLine]:
        """The redacted lines of stdout and stderr (interleaved as they come),
        until both streams end. One iteration per process."""
        if self._receive is None:
            raise RuntimeError("use open_redacted(...) with async with")
        if self._iterating:
            raise RuntimeError("redacted_lines() is already being iterated")
        self._iterating = True
        async for line in self._receive:
            yield line

    async def wait(self) -> int:
        """Waits for the child to exit (see ``Child.wait``)."""
        return await self.child.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        child, capture = self._child, self._capture
        assert child is not None
        assert capture is not None

        async def stop() -> None:
            if child.returncode is None:
                child._kill_job()
                await child._wait(None)
            with anyio.move_on_after(_PIPE_GRACE):
                with contextlib.suppress(OSError):
                    await _capture_wait(capture)
            if not capture.done():
                _warn_withheld(child)
                capture.abort()

        try:
            await finish_shielded(stop)
        finally:
            result: bool | None = await self._group.__aexit__(exc_type, exc, tb)
        return result


async def _read_lines(
    fd: int, name: str, send: MemoryObjectSendStream[RedactedLine], tee: Any
) -> None:
    pending = b""
    with send:
        try:
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    await anyio.wait_readable(fd)
                    continue
                if not data:
                    break
                pending += data
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    send.send_nowait(RedactedLine(name, line + b"\n"))
            if pending:
                send.send_nowait(RedactedLine(name, pending))
        finally:
            tee.close()


def open_redacted(
    argv: Sequence[StrOrBytesPath],
    *,
    redact: RedactionLike | None = DEFAULT_REDACTION_PATTERNS,
    merge_stderr: bool = False,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    limits: ResourceLimits | None = None,
    stdin: StdioSpec = None,
) -> RedactedProcess:
    """Starts ``argv`` in its own process group with its output redacted
    live; use as ``async with open_redacted(argv) as proc:`` and iterate
    ``proc.redacted_lines()``. ``redact`` as for :func:`run` (the built-in
    pack by default); ``merge_stderr=True`` sends stderr into stdout.
    Raises ``ValueError``/``TypeError`` for bad arguments before anything
    runs, ``SpawnError`` when entered if the program cannot start."""
    plan = _plan(
        argv,
        input=None,
        capture_output=False,
        text=False,
        encoding=None,
        errors=None,
        check=False,
        timeout=None,
        redact=redact,
        cwd=cwd,
        env=env,
        limits=limits,
        stdin=stdin,
        stdout=None,
        stderr=None,
    )
    return RedactedProcess(plan, merge_stderr)
