"""``await run(argv, ...)``: the ``subprocess.run`` of this package.

The child runs in its own process group; its stdout and stderr go through the
native pump (redacted when asked) into memory; on timeout or cancellation the
whole group is killed, so nothing it started outlives the call by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_spawn.child import Child
from orchestrator_spawn.errors import OrchestratorSpawnError
from orchestrator_spawn.pump import MEMORY, Capture, RedactionLike, _redaction, start_capture
from orchestrator_spawn.spawn import DEVNULL, PIPE, ResourceLimits, StrOrBytesPath, spawn

__all__ = ["RunResult", "RunTimeoutError", "run"]

# After the group was killed, how long the pipes may take to reach end of file
# before the capture stops waiting for them (a process that left the group,
# e.g. with setsid(), may still hold them), in seconds.
_PIPE_GRACE = 1.0


@dataclass(frozen=True)
class RunResult:
    """What ``run`` returns: the exit status and the (redacted) output.

    ``returncode`` is negative -N when the child was killed by signal N.
    """

    args: tuple[StrOrBytesPath, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    def check_returncode(self) -> None:
        """Raise ``subprocess.CalledProcessError`` if ``returncode`` is not 0."""
        if self.returncode:
            raise subprocess.CalledProcessError(
                self.returncode, list(self.args), self.stdout, self.stderr
            )


class RunTimeoutError(OrchestratorSpawnError, TimeoutError):
    """``run`` hit its timeout; the child's process group was killed.

    ``stdout``/``stderr`` hold the (redacted) output produced until then;
    ``cmd`` and ``timeout`` (seconds) are as in ``subprocess.TimeoutExpired``.
    """

    def __init__(
        self, cmd: Sequence[StrOrBytesPath], timeout: float, stdout: bytes, stderr: bytes
    ) -> None:
        super().__init__(f"command {list(cmd)!r} timed out after {timeout} seconds")
        self.cmd = list(cmd)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self) -> bytes:
        """Alias of ``stdout``, as in ``subprocess.TimeoutExpired``."""
        return self.stdout


async def _feed(child: Child, data: bytes) -> None:
    writer: Any = child.stdin
    if writer is None:
        return
    try:
        if data:
            writer.write(data)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child exited or closed stdin without reading it all
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _stop(child: Child, capture: Capture) -> None:
    """Kill the group, reap the child, and end the capture."""
    await child.kill()
    try:
        await asyncio.wait_for(asyncio.shield(capture.wait()), _PIPE_GRACE)
    except asyncio.TimeoutError:
        capture.abort()
    with contextlib.suppress(OSError):
        await capture.wait()


def _spawn_captured(
    argv: Sequence[StrOrBytesPath],
    *,
    cwd: StrOrBytesPath | None,
    env: Mapping[Any, Any] | None,
    has_input: bool,
    limits: ResourceLimits | None,
    redact: RedactionLike | None,
) -> tuple[Child, Capture]:
    # The pump makes both pipes; the capture runs before the child exists,
    # so a failed spawn just closes the writers and the capture ends empty.
    capture = start_capture(PIPE, PIPE, stdout_sink=MEMORY, stderr_sink=MEMORY, redact=redact)
    try:
        child = spawn(
            argv,
            cwd=cwd,
            env=env,
            # Never the caller's stdin: the child is in a background process
            # group, where reading the terminal would stop it (SIGTTIN).
            stdin=PIPE if has_input else DEVNULL,
            stdout=capture.writer("stdout"),
            stderr=capture.writer("stderr"),
            process_group=True,
            limits=limits,
        )
        # A kill (timeout, cancellation, or from elsewhere) cuts the output
        # short: what the redactors hold then fails closed.
        capture._follow_child(child)
    finally:
        # The child has its own copies; ours would keep the pipes from EOF.
        capture.close_writers()
    return child, capture


async def run(
    argv: Sequence[StrOrBytesPath],
    *,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
    redact: RedactionLike | None = None,
    limits: ResourceLimits | None = None,
    check: bool = False,
    whole_job: bool = False,
) -> RunResult:
    """Run ``argv`` to completion and return its status and output.

    The child is spawned with ``spawn`` in its own process group, stdout and
    stderr each captured through the native pump into memory, redacted by
    ``redact`` (a ``pump.Redaction`` or a sequence of patterns) before any
    byte reaches Python. ``stdin``: bytes written to the child's stdin, then
    closed (a child that does not read them is not an error); None gives it
    ``/dev/null``. ``cwd``, ``env``, ``limits`` are as for ``spawn``.

    Returns once the child exited and both pipes reached end of file (a
    background process that keeps them open is waited for, as with
    ``subprocess.run``; ``timeout`` bounds that too). ``timeout`` (seconds):
    when it passes, the whole process group is killed and
    ``RunTimeoutError`` (a ``TimeoutError``) is raised with the output so
    far. Cancelling the call also kills the group. ``check=True`` raises
    ``subprocess.CalledProcessError`` for a non-zero exit. ``whole_job=True``
    also waits until every process the child started has exited (see
    ``Child.wait``), within ``timeout``.

    Raises ``ValueError``/``TypeError`` for bad arguments or patterns before
    anything is spawned, ``SpawnError`` if the program could not be started,
    ``OSError`` if the output could not be kept (out of memory).
    """
    if stdin is not None and not isinstance(stdin, (bytes, bytearray, memoryview)):
        raise TypeError(f"stdin must be bytes or None, not {type(stdin).__name__}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    if redact is not None:
        _redaction(redact)  # bad patterns fail here, before a process exists
    child, capture = _spawn_captured(
        argv, cwd=cwd, env=env, has_input=stdin is not None, limits=limits, redact=redact
    )

    async def finish() -> None:
        feeding = [_feed(child, bytes(stdin))] if stdin is not None else []
        await asyncio.gather(child.wait(whole_job=whole_job), capture.wait(), *feeding)

    try:
        await asyncio.wait_for(finish(), timeout)
    except asyncio.TimeoutError:
        await _stop(child, capture)
        raise RunTimeoutError(
            argv, timeout or 0.0, capture.output("stdout"), capture.output("stderr")
        ) from None
    except BaseException:
        # Cancelled, or the capture failed: leave no process behind.
        await asyncio.shield(_stop(child, capture))
        raise
    returncode = child.returncode
    assert returncode is not None
    result = RunResult(tuple(argv), returncode, capture.output("stdout"), capture.output("stderr"))
    if check:
        result.check_returncode()
    return result
