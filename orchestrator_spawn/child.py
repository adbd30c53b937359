"""The ``Child`` handle: waiting, signalling and kill-on-drop for one spawned process.

A ``Child`` comes only from :func:`orchestrator_spawn.spawn` or
:func:`orchestrator_spawn.open_process`. It reaps its process exactly once
(``wait4`` under a lock, whichever of ``wait_blocking``, ``try_wait``,
``await wait()`` or ``close()`` gets there first) and never signals a process
it has reaped, so a recycled pid is never hit. Exit notification comes from
:mod:`orchestrator_spawn._platform` (pidfd, kqueue, or the single SIGCHLD
reaper), never from a thread per child.

One naming rule: ``x()`` is a coroutine and ``x_blocking()`` its blocking
twin (``wait``, ``communicate``, ``kill``, ``terminate``). Coroutines run
under asyncio (uvloop too) and trio; cancelling one kills and reaps the
child's whole job. Every kill goes through ``_kill_job``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import selectors
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Generic, Protocol, final

import anyio
from typing_extensions import TypeVar

from orchestrator_spawn._aio import asyncio_loop, finish_shielded, is_cancellation
from orchestrator_spawn._native.cgroup import cgroup_events_drain as _native_drain
from orchestrator_spawn._native.spawn import reap as _reap
from orchestrator_spawn._native.spawn import wait_exit_nowait as _wait_exit_nowait
from orchestrator_spawn._pipe_streams import ChildStreamReader, ChildStreamWriter
from orchestrator_spawn._platform import ExitNotifier
from orchestrator_spawn._platform import cgroup as _cgroup

__all__ = ["Child", "JobUsage", "ResourceUsage", "kill_child_process_group"]

#: The package's logger: DEBUG for each spawn, exit and kill; WARNING when
#: something fails closed. Nothing at INFO or above in normal operation.
log = logging.getLogger("orchestrator_spawn")

#: The type of ``child.stdin`` (``IO[bytes]`` from ``spawn()``,
#: ``ChildStreamWriter`` from ``open_process()``).
StdinT = TypeVar("StdinT", default=IO[bytes])
#: The type of ``child.stdout``/``child.stderr``.
OutputT = TypeVar("OutputT", default=IO[bytes])

# How long an async waiter sleeps between checks while a thread blocked in
# wait_blocking() owns the reaping (seconds; doubled up to the maximum).
_DEFERRED_POLL = 0.001
_DEFERRED_POLL_MAX = 0.05
_READ_CHUNK = 65536

# What the native sleep (_wait_exit_nowait) returns when a signal interrupted
# it, and when the child is not (or no longer) ours.
_INTERRUPTED = -errno.EINTR
_NOT_A_CHILD = -errno.ECHILD

# ru_maxrss is in kibibytes on Linux and in bytes on macOS.
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
# Signals after which a job's output may end cut short (see _call_before_stop).
_STOP_SIGNALS = frozenset(
    {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
)


@dataclass(frozen=True)
class ResourceUsage:
    """What the child (not its descendants) used, from ``wait4`` at exit.

    ``user_seconds``/``system_seconds`` are CPU seconds; ``max_rss_bytes`` is
    the peak resident set size in bytes.
    """

    user_seconds: float
    system_seconds: float
    max_rss_bytes: int


@dataclass(frozen=True)
class JobUsage:
    """What the whole job (the child and everything it started) uses now.

    ``cpu_seconds``: user + system CPU seconds of every process that ran in
    the job (its cgroup's ``cpu.stat``; without a cgroup, the live process
    tree through psutil plus the child's own usage once reaped, so CPU of
    descendants that already exited is missing there). ``processes``: live
    processes in the job now.
    """

    cpu_seconds: float
    processes: int


class _Communication:
    """What ``communicate()`` did so far: a call that timed out leaves it
    here, and the next call goes on from there (as in ``subprocess``)."""

    __slots__ = ("input", "offset", "stderr", "stdout")

    def __init__(self, data: bytes | None, stdout: bool, stderr: bool) -> None:
        self.input = memoryview(data or b"")
        self.offset = 0
        self.stdout: list[bytes] | None = [] if stdout else None
        self.stderr: list[bytes] | None = [] if stderr else None

    def result(self) -> tuple[bytes | None, bytes | None]:
        return (
            None if self.stdout is None else b"".join(self.stdout),
            None if self.stderr is None else b"".join(self.stderr),
        )


class _OutputFollower(Protocol):
    """What ``Child._follow_output`` takes (the pump's capture handle)."""

    def truncate(self) -> None: ...

    def child_exit(self, killed: bool) -> None: ...


@final
class Child(Generic[StdinT, OutputT]):
    """A running or finished child process; get one from ``spawn()`` or
    ``open_process()``.

    Attributes: ``pid``; ``pgid`` (the child's own process group, or None
    when spawned with ``process_group=False``); ``returncode`` (None while
    running; the exit status, or the negative signal number when a signal
    killed it); ``rusage`` (a :class:`ResourceUsage` once reaped);
    ``stdin``/``stdout``/``stderr`` (``PIPE``: blocking binary files from
    ``spawn()``, :class:`ChildStreamWriter`/:class:`ChildStreamReader` from
    ``open_process()``; else None); ``args``.

    Kill on drop: ``close()``, leaving ``with``/``async with``, or garbage
    collection while the process still runs SIGKILLs its whole job (see
    ``containment``) and reaps it.

    ``containment`` says what holds the job: ``"cgroup"`` (its own cgroup v2:
    every kill reaches all it started, ``setsid``'d and double-forked
    processes included), ``"pid_namespace"`` (a sandboxed job without a
    cgroup: the child is the init of its pid namespace, and when it dies the
    kernel kills the rest; as an init it ignores signals it has no handler
    for, SIGKILL aside, so ``terminate()`` reaches it only through its grace
    escalation), or ``"process_group"``.
    """

    # Slots: a handle is created per spawn, on the hot path.
    __slots__ = (
        "__weakref__",
        "_cgroup",
        "_communication",
        "_deferred_loops",
        "_generic_waiter",
        "_job_cpu",
        "_keeper_group",
        "_lock",
        "_notifier",
        "_output_followers",
        "_pid_waiting",
        "_raw_rusage",
        "_reaped_callbacks",
        "_reaped_event",
        "_returncode",
        "_started",
        "_stop_callbacks",
        "_waiters",
        "args",
        "containment",
        "pgid",
        "pid",
        "stderr",
        "stdin",
        "stdout",
    )

    pid: int
    pgid: int | None
    containment: str
    args: list[bytes]
    stdin: StdinT | None
    stdout: OutputT | None
    stderr: OutputT | None
    _notifier: ExitNotifier
    _lock: threading.Lock
    _returncode: int | None
    # [user CPU us, system CPU us, ru_maxrss] once reaped (see _native.spawn.reap).
    _raw_rusage: list[int] | None
    _waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future[int]]]
    # True while a thread sleeps in waitid(P_PID, pid, WNOWAIT): only that
    # thread may reap then (reaping under it would let the pid be recycled
    # while it sleeps). Others wait for _reaped_event, or (event loops) are
    # listed in _deferred_loops and called back.
    _pid_waiting: bool
    _reaped_event: threading.Event | None
    # Internal hooks run once by the thread that reaps (see _call_when_reaped).
    _reaped_callbacks: list[Callable[[], None]] | None
    # The output pump's captures of this child's pipes (see _follow_output):
    # told how it ended once reaped.
    _output_followers: list[_OutputFollower] | None
    _deferred_loops: list[asyncio.AbstractEventLoop] | None
    # Internal hooks run before the library sends a signal that may end the
    # job (see _call_before_stop).
    _stop_callbacks: list[Callable[[], None]] | None
    # The job's cgroup directory until it is removed (containment "cgroup"),
    # and the job's CPU seconds read just before removing it.
    _cgroup: str | None
    _job_cpu: float | None
    # The process group the keeper kills if the orchestrator dies (a job
    # without a cgroup), forgotten at reap.
    _keeper_group: int | None
    # Set while one task of a non-asyncio loop sleeps on the exit notifier;
    # other tasks wait for the event (trio lets one task wait per fd).
    _generic_waiter: anyio.Event | None
    _communication: _Communication | None
    _started: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Child objects are created by orchestrator_spawn.spawn() or open_process()")

    @classmethod
    def _create(
        cls,
        pid: int,
        pgid: int | None,
        notifier: ExitNotifier,
        args: list[bytes],
        stdin: Any,
        stdout: Any,
        stderr: Any,
        containment: str = "process_group",
        cgroup: str | None = None,
        keeper_group: int | None = None,
        output_follower: _OutputFollower | None = None,
    ) -> Child[Any, Any]:
        self: Child[Any, Any] = object.__new__(cls)
        self.containment = containment
        self._cgroup = cgroup
        self._keeper_group = keeper_group
        self._job_cpu = None
        self.pid = pid
        self.pgid = pgid
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._notifier = notifier
        self._lock = threading.Lock()
        self._returncode = None
        self._raw_rusage = None
        self._waiters = {}
        self._pid_waiting = False
        self._reaped_event = None
        self._reaped_callbacks = None
        # As _follow_output, before anything else can see the handle.
        self._output_followers = None if output_follower is None else [output_follower]
        self._deferred_loops = None
        self._stop_callbacks = None
        self._generic_waiter = None
        self._communication = None
        self._started = time.monotonic()
        return self

    # -- state ---------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """The exit status (negative signal number if killed), None while running.

        Always current: reading it checks (without blocking) whether the child
        has exited, like ``try_wait()``."""
        if self._returncode is None:
            self._try_reap()
        return self._returncode

    @property
    def rusage(self) -> ResourceUsage | None:
        """CPU seconds and peak RSS of the child at exit; None until reaped."""
        usage = self._raw_rusage
        if usage is None:
            return None
        user_us, system_us, maxrss = usage
        return ResourceUsage(user_us / 1e6, system_us / 1e6, maxrss * _MAXRSS_UNIT)

    def __repr__(self) -> str:
        rc = self._returncode
        if rc is None:
            status = f"running with PID {self.pid}"
        elif rc < 0:
            status = f"exited with signal {-rc}"
        else:
            status = f"exited with status {rc}"
        program = os.fsdecode(self.args[0]) if self.args else "?"
        return f"<Child {program!r}: {status}>"

    # -- reaping -------------------------------------------------------------

    def _try_reap(self) -> bool:
        """Reaps the child if it has exited; True once reaped. Never blocks.

        False as well while another thread sleeps in ``waitid(P_PID, ...)``
        for this child: that thread reaps it as soon as it wakes."""
        with self._lock:
            if self._returncode is not None:
                return True
            if self._pid_waiting or not self._reap_locked():
                return False
        self._after_reap()
        return True

    def _reap_locked(self) -> bool:
        """One ``wait4(WNOHANG)``; True if it reaped. Hold the lock, and call
        only while unreaped and nobody sleeps by pid."""
        try:
            reaped = _reap(self.pid)
        except ChildProcessError:
            # Someone else reaped it (SIGCHLD set to SIG_IGN, or a stray
            # waitpid(-1)); like subprocess we cannot know the status.
            self._returncode = 0
            return True
        if reaped is None:
            return False
        self._returncode, *usage = reaped
        self._raw_rusage = usage
        return True

    def _after_reap(self) -> None:
        if self._waiters:
            self._forget_closed_loops()
        self._notifier.close()
        if self._cgroup is not None:
            self._remove_cgroup()
        if self._keeper_group is not None:
            _cgroup.forget_group(self._keeper_group)
        if log.isEnabledFor(logging.DEBUG):
            self._log_exit()
        followers = self._output_followers
        if followers is not None:
            # The followers added while unreaped (later ones are told at once).
            killed = self._returncode is not None and self._returncode < 0
            for follower in followers:
                # Not contextlib.suppress: this runs for every job. A
                # follower's failure must not stop the others.
                try:  # noqa: SIM105
                    follower.child_exit(killed)
                except Exception:
                    pass
        if self._reaped_callbacks is not None:
            # Set only while unreaped, under the lock: the list is final now.
            callbacks, self._reaped_callbacks = self._reaped_callbacks, None
            for callback in callbacks:
                with contextlib.suppress(Exception):
                    callback()

    def _log_exit(self) -> None:
        usage = self.rusage
        log.debug(
            "exit pid=%d status=%s duration=%.6fs user=%.6fs system=%.6fs max_rss=%s",
            self.pid,
            self._returncode,
            time.monotonic() - self._started,
            usage.user_seconds if usage else 0.0,
            usage.system_seconds if usage else 0.0,
            usage.max_rss_bytes if usage else 0,
        )

    def _call_when_reaped(self, callback: Callable[[], None]) -> None:
        """Internal: runs ``callback()`` once the child has been reaped, in the
        thread that reaps it (at once if it already was). It must not block;
        its exceptions are swallowed. The runner releases a sandbox's
        resources (its allowlist proxy) this way."""
        with self._lock:
            if self._returncode is None:
                if self._reaped_callbacks is None:
                    self._reaped_callbacks = []
                self._reaped_callbacks.append(callback)
                return
        with contextlib.suppress(Exception):
            callback()

    def _follow_output(self, follower: _OutputFollower) -> None:
        """Internal: ``follower`` (the pump's handle of a capture of this
        child's pipes) gets ``truncate()`` before each signal that may end
        the job (as ``_call_before_stop``) and ``child_exit(killed)`` once
        the child is reaped (at once if it was): what ``_call_before_stop``
        and ``_call_when_reaped`` do, under one lock and without a closure
        per job."""
        with self._lock:
            # Truncated before each stop signal (_before_signal) whether or
            # not the child was reaped; told how it ended once reaped. A new
            # list each time: a reaping thread may be going through the old.
            followers = self._output_followers
            self._output_followers = [follower] if followers is None else [*followers, follower]
            code = self._returncode
            if code is None:
                return
        with contextlib.suppress(Exception):
            follower.child_exit(code < 0)

    def _call_before_stop(self, callback: Callable[[], None]) -> None:
        """Internal: runs ``callback()`` each time, before this handle sends
        the job a signal that may end it (SIGKILL, SIGTERM, SIGINT, SIGHUP,
        SIGQUIT: ``kill``, ``terminate``, kill on drop, ``send_signal``). It
        must not block; its exceptions are swallowed. The output pump marks
        a capture truncated this way, so that a secret cut short by the kill
        fails closed."""
        with self._lock:
            if self._stop_callbacks is None:
                self._stop_callbacks = []
            self._stop_callbacks.append(callback)

    def _before_signal(self, sig: int) -> None:
        if sig not in _STOP_SIGNALS:
            return
        for follower in self._output_followers or ():
            with contextlib.suppress(Exception):
                follower.truncate()
        for callback in self._stop_callbacks or ():
            with contextlib.suppress(Exception):
                callback()

    def _forget_closed_loops(self) -> None:
        # A loop closed while it watched us (asyncio.run ending with a
        # cancelled wait) never calls back: drop its watch so the pidfd closes.
        # Other loops' threads add and pop their entries meanwhile: iterate
        # over a copy (list() of a dict is atomic) and pop, never del.
        for loop in list(self._waiters):
            if loop.is_closed() and self._waiters.pop(loop, None) is not None:
                self._notifier.unwatch(loop)

    def try_wait(self) -> int | None:
        """The exit status if the child has exited (reaping it), else None.

        Never blocks."""
        self._try_reap()
        return self._returncode

    def wait_blocking(self, timeout: float | None = None, *, whole_job: bool = False) -> int:
        """Blocks until the child exits, reaps it and returns ``returncode``.

        ``whole_job=True`` also waits until every process the job started has
        exited (see ``wait``); ``timeout`` then covers both.

        ``timeout`` is in seconds (None: no limit); raises ``TimeoutError``
        when it passes first. Does not spin: sleeps in ``waitid`` or on the
        pidfd (Linux), kqueue (macOS) or the SIGCHLD reaper's event
        (fallback). Safe to call from several threads at once. On Linux it
        raises ``OSError`` if a pidfd is needed (a timeout, or another thread
        already waiting) and cannot be opened."""
        if timeout is None:
            # Each sleep returns at once if the child already exited.
            while self._returncode is None:
                self._sleep_until_exit(None)
                if self._returncode is None:
                    self._try_reap()
            if whole_job:
                self._wait_job_blocking(None)
            return self._returncode
        deadline = time.monotonic() + timeout
        while not self._try_reap():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self!r} still running after {timeout} seconds")
            self._sleep_until_exit(remaining)
        assert self._returncode is not None
        if whole_job:
            self._wait_job_blocking(max(0.0, deadline - time.monotonic()))
        return self._returncode

    def _sleep_until_exit(self, timeout: float | None) -> None:
        """Sleeps until the child may have exited or ``timeout`` seconds passed."""
        with self._lock:
            if self._returncode is not None:
                return
            event = None
            by_pid = False
            if self._pid_waiting:
                # Another thread sleeps in waitid(P_PID) and will reap.
                event = self._reaped_event
                if event is None:
                    event = self._reaped_event = threading.Event()
            elif timeout is None and self._notifier.can_wait_by_pid():
                # The common case needs no pidfd: sleep by pid, and keep the
                # other reapers off until we are out of the kernel.
                by_pid = self._pid_waiting = True
            else:
                # Unreaped (we hold the lock): the pidfd names our child.
                self._notifier.prepare()
        if event is not None:
            event.wait(timeout)
        elif by_pid:
            self._sleep_by_pid()
        else:
            self._notifier.wait(timeout)

    def _sleep_by_pid(self) -> None:
        reaped = False
        try:
            # Does not reap (WNOWAIT): the pid stays ours while nobody reaps.
            # -EINTR: the loop's back edge runs Python's signal handlers
            # (which may raise, KeyboardInterrupt say), then sleeps again.
            while (rc := _wait_exit_nowait(self.pid)) == _INTERRUPTED:
                pass
            # -ECHILD: reaped behind our back (SIGCHLD ignored), which
            # _reap_locked reports.
            if rc < 0 and rc != _NOT_A_CHILD:
                raise OSError(-rc, f"waitid({self.pid}) failed: {os.strerror(-rc)}")
        finally:
            with self._lock:
                self._pid_waiting = False
                # Reap in the same critical section (a no-op if interrupted
                # before the exit: WNOHANG).
                reaped = self._returncode is None and self._reap_locked()
                event, self._reaped_event = self._reaped_event, None
                loops, self._deferred_loops = self._deferred_loops, None
            if reaped:
                self._after_reap()
            # The others may go on now (or take over if we were interrupted).
            if event is not None:
                event.set()
            for loop in loops or ():
                with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                    loop.call_soon_threadsafe(self._resume_watch, loop)

    # -- signals -------------------------------------------------------------

    def send_signal(self, sig: int, *, group: bool = True) -> None:
        """Sends ``sig`` to the child's process group (``group=True`` and the
        child has one) or to the child alone. Does nothing once the child has
        been reaped, so a recycled pid is never signalled."""
        self._before_signal(sig)
        with self._lock:
            if self._returncode is not None:
                return
            try:
                if group and self.pgid is not None:
                    os.killpg(self.pgid, sig)
                else:
                    os.kill(self.pid, sig)
            except ProcessLookupError:
                pass  # cannot happen before reaping; be lenient anyway

    def start_kill(self) -> None:
        """SIGKILLs the whole job (its cgroup, else its process group) without
        waiting. Once the child was reaped it only reaches what the job's
        cgroup still holds."""
        self._kill_job(after_exit=False)

    def _kill_job(self, *, after_exit: bool = True) -> None:
        """SIGKILL to the whole job: the one routine every kill goes through
        (``start_kill``, ``kill``, ``terminate``'s escalation, kill on drop,
        the CLI through those).

        With a cgroup: ``cgroup.kill``, before or after the child was reaped
        (the directory names this job only, never a recycled pid); once the
        cgroup was removed the job is empty. A pid namespace's init takes the
        namespace with it, so it is signalled like a group leader. Otherwise
        SIGKILL to the process group while the child runs, and with
        ``after_exit`` also to what is left of it afterwards (unless its
        number was recycled)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "kill pid=%d pgid=%s containment=%s signal=SIGKILL",
                self.pid,
                self.pgid,
                self.containment,
            )
        if self.containment == "cgroup":
            path = self._cgroup
            if path is not None:
                self._before_signal(signal.SIGKILL)
                _cgroup.kill_job(path)
            return
        if after_exit:
            self._signal_group_even_after_exit(signal.SIGKILL)
        else:
            self.send_signal(signal.SIGKILL)

    # -- the whole job -------------------------------------------------------

    def _signal_job(self, sig: int) -> None:
        """Sends ``sig`` to every process of the job: with a cgroup, each
        member (``setsid``'d ones included) while the cgroup exists; else the
        process group, as ``send_signal``."""
        path = self._cgroup
        if path is not None:
            self._before_signal(sig)
            _cgroup.signal_job(path, sig)
        else:
            self.send_signal(sig)

    def _remove_cgroup(self) -> bool:
        """Removes the job's cgroup (or returns it to the pool of reusable
        ones) if nothing lives in it any more, keeping its CPU total for
        ``job_usage``; True once the handle is done with it."""
        path = self._cgroup
        if path is None:
            return True
        try:
            cpu: float | None = _cgroup.job_cpu_seconds(path)
        except OSError:
            cpu = None
        try:
            removed = _cgroup.release_job(path)  # removed, or pooled for reuse
        except OSError:
            removed = False
        if removed:
            if cpu is not None:
                self._job_cpu = cpu
            self._cgroup = None
        return removed

    def _wait_job_blocking(self, timeout: float | None) -> None:
        """After the child was reaped: sleeps until nothing of the job runs
        any more (``TimeoutError`` after ``timeout`` seconds)."""
        path = self._cgroup
        if path is not None:
            if not _cgroup.wait_job_empty(path, timeout):
                raise TimeoutError(f"{self!r}: its job still runs after {timeout} seconds")
            self._remove_cgroup()
            return
        if self.containment != "process_group" or self.pgid is None:
            return  # gone with its cgroup, or with its pid namespace's init
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self._group_alive():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self!r}: its process group still runs after {timeout} s")
            # No event tells when a process group empties: poll, backing off.
            time.sleep(delay if deadline is None else min(delay, deadline - time.monotonic()))
            delay = min(delay * 2, 0.05)

    def _group_alive(self) -> bool:
        """Whether the reaped child's process group still has members. While
        it has, its number cannot be reused, so a live process of that pid
        means the group is gone and the number recycled."""
        assert self.pgid is not None
        try:
            os.kill(self.pgid, 0)
            return False
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def _wait_job(self) -> None:
        """The async twin of ``_wait_job_blocking`` (no timeout): cgroup.events
        through an inotify fd on the running loop, no thread."""
        path = self._cgroup
        if path is None:
            if self.containment == "process_group" and self.pgid is not None:
                delay = 0.001
                while self._group_alive():
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.05)
            return
        if asyncio_loop() is None:
            # Not asyncio (trio): poll the populated flag, backing off.
            delay = 0.001
            while _cgroup.job_populated(path):
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
            self._remove_cgroup()
            return
        try:
            fd = _cgroup.events_watch(path)
        except FileNotFoundError:
            self._remove_cgroup()
            return
        loop = asyncio.get_running_loop()
        try:
            while _cgroup.job_populated(path):
                changed: asyncio.Future[None] = loop.create_future()

                def wake(changed: asyncio.Future[None] = changed) -> None:
                    if not changed.done():
                        changed.set_result(None)

                loop.add_reader(fd, wake)
                try:
                    await changed
                finally:
                    loop.remove_reader(fd)
                    _native_drain(fd)
        finally:
            os.close(fd)
        self._remove_cgroup()

    def _settle_killed_job(self) -> None:
        """After a kill and the reap: waits (at most a second) until the
        killed job's cgroup is empty and removes it. A process stuck in the
        kernel longer leaves the cgroup to be removed later."""
        if self._cgroup is None:
            return
        with contextlib.suppress(TimeoutError):
            self._wait_job_blocking(1.0)
        self._release_cgroup()

    def _release_cgroup(self) -> None:
        """The handle is done with its job: removes the cgroup, or, while
        processes the job left behind still run in it (the child exited on
        its own; close() does not kill those), hands it to the sweep that
        removes it once empty."""
        path = self._cgroup
        if path is not None and not self._remove_cgroup():
            _cgroup.remove_later(path)

    def job_usage(self) -> JobUsage:
        """CPU seconds and live processes of the whole job (see
        :class:`JobUsage`): from the job's cgroup when it has one, else from
        the live process tree (psutil)."""
        path = self._cgroup
        if path is not None:
            try:
                return JobUsage(_cgroup.job_cpu_seconds(path), _cgroup.job_process_count(path))
            except FileNotFoundError:
                pass  # removed meanwhile: the job is over
        if self.containment == "cgroup":
            cpu = self._job_cpu
            if cpu is None:
                usage = self.rusage
                cpu = usage.user_seconds + usage.system_seconds if usage else 0.0
            return JobUsage(cpu, 0)
        return self._tree_usage()

    def _tree_usage(self) -> JobUsage:
        import psutil

        cpu = 0.0
        alive = 0
        with self._lock:  # unreaped while we hold it: the pid is ours
            if self._returncode is None:
                try:
                    root = psutil.Process(self.pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    tree = []
                for proc in tree:
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        cpu += times.user + times.system
                        if proc.status() != psutil.STATUS_ZOMBIE:
                            alive += 1
        usage = self.rusage
        if usage is not None:
            cpu += usage.user_seconds + usage.system_seconds
        return JobUsage(cpu, alive)

    def _kill_group_after_exit(self, sig: int) -> None:
        """Signals what is left of the process group after the leader was reaped.

        The leader's pid number stays allocated while any process still uses it
        as its process group id, so if that number now names a live process,
        our group is gone and the number was recycled: leave it alone."""
        if self.pgid is None:
            return
        try:
            os.kill(self.pgid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            return
        else:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def _signal_group_even_after_exit(self, sig: int) -> None:
        self._before_signal(sig)
        with self._lock:
            running = self._returncode is None
            if running:
                try:
                    if self.pgid is not None:
                        os.killpg(self.pgid, sig)
                    else:
                        os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
        if not running:
            self._kill_group_after_exit(sig)

    # -- closing -------------------------------------------------------------

    def _close_pipes(self) -> None:
        streams: tuple[Any, ...] = (self.stdin, self.stdout, self.stderr)
        for stream in streams:
            if stream is None:
                continue
            if isinstance(stream, ChildStreamWriter):
                stream._abandon()
                continue
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        """Kills the whole job if the child still runs, reaps it, removes the
        job's cgroup (once empty: a child that exited on its own may have
        left processes running, which close() leaves alone), and closes the
        parent's pipe ends. Idempotent.

        It blocks until the killed child is reaped (normally well under a
        millisecond); in async code prefer ``await child.kill()`` or
        ``async with child:``."""
        if not self._try_reap():
            self._kill_job(after_exit=False)
            self.wait_blocking()
            self._settle_killed_job()
        else:
            self._release_cgroup()
        self._close_pipes()

    def __enter__(self) -> Child[StdinT, OutputT]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Child[StdinT, OutputT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._try_reap():
            await self.kill()
        else:
            self._release_cgroup()
        self._close_pipes()

    def __del__(self) -> None:
        # Kill on drop. Attributes may be missing if _create never finished.
        if getattr(self, "_returncode", 0) is not None and getattr(self, "_cgroup", None) is None:
            return
        try:
            if not self._try_reap():
                self._kill_job(after_exit=False)
                self.wait_blocking()
                self._settle_killed_job()
            else:
                self._release_cgroup()
        except Exception:  # nothing sensible to do in a finalizer
            pass

    # -- blocking twins ----------------------------------------------------

    def kill_blocking(self) -> int:
        """SIGKILLs the whole job, then waits for and reaps the child; returns
        ``returncode``. If the child already exited, what is left of its job
        is killed (its cgroup; else its group, if the pgid was not recycled).
        With a cgroup, also waits (at most a second) until the job is empty
        and removes the cgroup."""
        self._kill_job()
        returncode = self.wait_blocking()
        self._settle_killed_job()
        return returncode

    def terminate_blocking(self, grace: float = 5.0) -> int:
        """SIGTERMs the job; SIGKILLs it if it has not ended after ``grace``
        seconds (with a cgroup: every process of it). Reaps; returns
        ``returncode``."""
        self._signal_job(signal.SIGTERM)
        try:
            return self.wait_blocking(grace, whole_job=self._cgroup is not None)
        except TimeoutError:
            return self.kill_blocking()

    def _communication_state(self, data: bytes | None) -> _Communication:
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"input must be bytes or None, not {type(data).__name__}")
        comm = self._communication
        if comm is None:
            comm = self._communication = _Communication(
                bytes(data) if data is not None and self.stdin is not None else None,
                self.stdout is not None,
                self.stderr is not None,
            )
        elif data:
            raise ValueError("communicate() was called again with input after a timeout")
        return comm

    def communicate_blocking(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Sends ``input`` to stdin and closes it, reads stdout and stderr to
        end of file, waits for the child; returns ``(stdout, stderr)`` (None
        for a stream that is not a pipe). ``subprocess`` semantics: a child
        that stops reading its stdin (``BrokenPipeError``) is not an error;
        after ``timeout`` seconds ``TimeoutError`` is raised, the child keeps
        running, and calling again (without input) goes on where it stopped.
        Works with the streams of ``spawn()`` and of ``open_process()``."""
        comm = self._communication_state(input)
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            stdin = self.stdin
            if stdin is not None:
                if isinstance(stdin, ChildStreamWriter):
                    # Bytes written but still queued go first.
                    pending = bytes(stdin._buffer) + bytes(comm.input[comm.offset :])
                    stdin._buffer.clear()
                    comm.input, comm.offset = memoryview(pending), 0
                else:
                    with contextlib.suppress(BrokenPipeError, ValueError):
                        stdin.flush()  # type: ignore[attr-defined]
                if comm.offset < len(comm.input) and _fileno(stdin) >= 0:
                    selector.register(_fileno(stdin), selectors.EVENT_WRITE, "stdin")
                else:
                    self._close_stdin()
            for name, chunks in (("stdout", comm.stdout), ("stderr", comm.stderr)):
                stream = getattr(self, name)
                if stream is None or chunks is None:
                    continue
                if isinstance(stream, ChildStreamReader) and stream._buffer:
                    chunks.append(stream._take(len(stream._buffer)))
                if _fileno(stream) >= 0:
                    selector.register(_fileno(stream), selectors.EVENT_READ, name)
            while selector.get_map():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self!r} still running after {timeout} seconds")
                for key, _events in selector.select(remaining):
                    if key.data == "stdin":
                        if self._write_input(key.fd, comm):
                            selector.unregister(key.fd)
                            self._close_stdin()
                        continue
                    try:
                        data = os.read(key.fd, _READ_CHUNK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    if data:
                        getattr(comm, key.data).append(data)
                    else:
                        selector.unregister(key.fd)
                        with contextlib.suppress(OSError):
                            getattr(self, key.data).close()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait_blocking(remaining)
        return comm.result()

    def _write_input(self, fd: int, comm: _Communication) -> bool:
        """Writes some input without blocking; True when done (or broken)."""
        # A blocking fd takes PIPE_BUF bytes without blocking once writable.
        size = _READ_CHUNK if not os.get_blocking(fd) else select.PIPE_BUF
        try:
            comm.offset += os.write(fd, comm.input[comm.offset : comm.offset + size])
        except (BlockingIOError, InterruptedError):
            return False
        except (BrokenPipeError, ConnectionResetError):
            return True  # the child stopped reading: not an error
        return comm.offset >= len(comm.input)

    def _close_stdin(self) -> None:
        stdin = self.stdin
        if isinstance(stdin, ChildStreamWriter):
            stdin._abandon()
        elif stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()  # type: ignore[attr-defined]

    # -- coroutines ------------------------------------------------------------

    def _add_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        """A future of its own for one awaiting task (so cancelling it touches
        nobody else); the first waiter of a loop makes the loop watch the exit."""
        waiter: asyncio.Future[int] = loop.create_future()
        waiters = self._waiters.get(loop)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._watch(loop)
        self._waiters[loop] = [waiter]
        return waiter

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        # A weak reference: a cancelled waiter must not keep the handle (and
        # so kill on drop) from going away.
        ref = weakref.ref(self)
        notifier = self._notifier

        def on_exit() -> None:
            child = ref()
            if child is None:
                notifier.unwatch(loop)
            else:
                child._on_exit_event(loop)

        with self._lock:
            if self._returncode is None:
                notifier.prepare()  # unreaped: the pidfd names our child
        notifier.watch(loop, on_exit)

    def _resume_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Called back once the thread sleeping by pid is out of the kernel.
        if loop not in self._waiters:
            return
        if self._try_reap():
            self._on_exit_event(loop)
        else:
            self._watch(loop)

    def _on_exit_event(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._try_reap():
            with self._lock:
                deferred = self._pid_waiting
                if deferred:
                    if self._deferred_loops is None:
                        self._deferred_loops = []
                    self._deferred_loops.append(loop)
            if deferred:
                # The exited child's pidfd stays readable: stop watching (no
                # busy loop) until the thread sleeping by pid has reaped; it
                # calls _resume_watch then.
                self._notifier.unwatch(loop)
            return  # else a spurious wake-up: keep watching
        self._notifier.unwatch(loop)
        returncode = self._returncode
        assert returncode is not None
        for waiter in self._waiters.pop(loop, ()):
            if not waiter.done():  # a cancelled waiter is done
                waiter.set_result(returncode)

    async def _wait_generic(self) -> int:
        """Waits for the exit under any anyio backend (trio): one task per
        child sleeps on the exit notifier, the others on an event."""
        delay = _DEFERRED_POLL
        while not self._try_reap():
            event = self._generic_waiter
            if event is not None:
                await event.wait()
                continue
            if self._pid_waiting:
                # A thread blocked in wait_blocking() reaps it; the notifier
                # may stay readable until then: poll, briefly.
                await anyio.sleep(delay)
                delay = min(delay * 2, _DEFERRED_POLL_MAX)
                continue
            event = self._generic_waiter = anyio.Event()
            try:
                with self._lock:
                    if self._returncode is None:
                        self._notifier.prepare()
                if self._returncode is None:
                    await self._notifier.wait_async()
            finally:
                self._generic_waiter = None
                event.set()
        returncode = self._returncode
        assert returncode is not None
        return returncode

    async def _wait(self, timeout: float | None) -> int:
        """``wait()`` without the kill on cancellation."""
        if self._returncode is not None:
            return self._returncode
        loop = asyncio_loop()
        if loop is None:
            if timeout is None:
                return await self._wait_generic()
            with anyio.move_on_after(timeout):
                return await self._wait_generic()
            raise TimeoutError(f"{self!r} still running after {timeout} seconds")
        # asyncio: no reap attempt first: a child that already exited wakes
        # the notifier at once, and the common case (still running) saves a
        # syscall.
        if timeout is None:
            return await self._add_waiter(loop)
        try:
            return await asyncio.wait_for(self._add_waiter(loop), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self!r} still running after {timeout} seconds") from None

    async def _kill_on_cancel(self) -> None:
        """A coroutine of ours was cancelled: kill the job, reap the child
        (shielded from further cancellation), close the pipes."""
        self._kill_job()
        await finish_shielded(lambda: self._wait(None))
        self._close_pipes()

    async def wait(self, timeout: float | None = None, *, whole_job: bool = False) -> int:
        """Waits for the child to exit, reaps it and returns ``returncode``.

        ``whole_job=True`` also waits until every process the job started has
        exited (its cgroup's ``cgroup.events``; without a cgroup, the child's
        process group, polled), then removes the job's cgroup.

        ``timeout`` in seconds (None: no limit): ``TimeoutError`` when it
        passes first, and the child keeps running. Any number of tasks may
        await it at once. Cancelling the wait (a cancel scope, ``task.cancel()``,
        a timeout around it) kills and reaps the child's whole job."""
        try:
            returncode = await self._wait(timeout)
        except BaseException as exc:
            if is_cancellation(exc) and self._returncode is None:
                await self._kill_on_cancel()
            raise
        if whole_job:
            await self._wait_job()
        return returncode

    async def kill(self) -> int:
        """SIGKILLs the whole job, then waits for and reaps the child.

        If the child already exited, what is left of its job is killed (its
        cgroup; else its process group, if the pgid was not recycled). With a
        cgroup, also waits until the job is empty and removes the cgroup.
        Returns ``returncode``."""
        self._kill_job()
        try:
            returncode = await self._wait(None)
            if self._cgroup is not None:
                await self._wait_job()
            return returncode
        except BaseException as exc:
            if is_cancellation(exc):
                await self._kill_on_cancel()
            raise

    async def terminate(self, grace: float = 5.0) -> int:
        """SIGTERMs the job; SIGKILLs it if it has not ended after ``grace``
        seconds. Reaps; returns ``returncode``.

        With a cgroup, every process of the job gets the SIGTERM and the job
        has ended once all of them exited (a daemon it started that ignores
        SIGTERM is killed at the grace, even when the child itself exited);
        otherwise the process group gets it and the job has ended when the
        child exited."""
        self._signal_job(signal.SIGTERM)
        deadline = time.monotonic() + grace
        try:
            try:
                returncode = await self._wait(grace)
                if self._cgroup is not None:
                    with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)) as scope:
                        await self._wait_job()
                    if scope.cancelled_caught:
                        raise TimeoutError
                return returncode
            except TimeoutError:
                return await self.kill()
        except BaseException as exc:
            if is_cancellation(exc):
                await self._kill_on_cancel()
            raise

    def _async_streams(
        self,
    ) -> tuple[ChildStreamWriter | None, ChildStreamReader | None, ChildStreamReader | None]:
        """The pipes as async streams; blocking files of ``spawn()`` are
        turned into streams over the same fds (they are used up anyway)."""
        converted: list[Any] = []
        for name in ("stdin", "stdout", "stderr"):
            stream = getattr(self, name)
            if stream is None or isinstance(stream, (ChildStreamReader, ChildStreamWriter)):
                converted.append(stream)
                continue
            if name == "stdin":
                with contextlib.suppress(BrokenPipeError, ValueError):
                    stream.flush()
            fd = _fileno(stream)
            if fd < 0:
                converted.append(None)
                continue
            new_fd = os.dup(fd)
            with contextlib.suppress(OSError, ValueError):
                stream.close()
            async_stream = (
                ChildStreamWriter(new_fd) if name == "stdin" else ChildStreamReader(new_fd)
            )
            setattr(self, name, async_stream)
            converted.append(async_stream)
        return converted[0], converted[1], converted[2]

    async def _communicate(
        self, data: bytes | None, timeout: float | None
    ) -> tuple[bytes | None, bytes | None]:
        comm = self._communication_state(data)
        stdin, stdout, stderr = self._async_streams()

        async def feed(writer: ChildStreamWriter) -> None:
            try:
                if comm.offset < len(comm.input):
                    rest = comm.input[comm.offset :]
                    comm.offset = len(comm.input)  # queued in the writer now
                    writer.write(rest)
                writer.close()
                await writer.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the child stopped reading: not an error
            writer._abandon()

        async def collect(reader: ChildStreamReader, chunks: list[bytes]) -> None:
            while chunk := await reader.read(_READ_CHUNK):
                chunks.append(chunk)
            reader.close()

        with anyio.move_on_after(timeout) as scope:
            async with anyio.create_task_group() as group:
                if stdin is not None:
                    group.start_soon(feed, stdin)
                if stdout is not None and comm.stdout is not None:
                    group.start_soon(collect, stdout, comm.stdout)
                if stderr is not None and comm.stderr is not None:
                    group.start_soon(collect, stderr, comm.stderr)
            await self._wait(None)
        if scope.cancelled_caught and self._returncode is None:
            raise TimeoutError(f"{self!r} still running after {timeout} seconds")
        return comm.result()

    async def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """The coroutine twin of ``communicate_blocking()``: sends ``input``
        and closes stdin, reads stdout and stderr to end of file, waits;
        returns ``(stdout, stderr)``. ``TimeoutError`` after ``timeout``
        seconds leaves the child running (call again to go on); cancelling
        the call kills and reaps the job."""
        try:
            return await self._communicate(input, timeout)
        except BaseException as exc:
            if is_cancellation(exc) and self._returncode is None:
                await self._kill_on_cancel()
            raise


def _fileno(stream: Any) -> int:
    try:
        return int(stream.fileno())
    except (OSError, ValueError):
        return -1  # a closed file


async def kill_child_process_group(child: Child[Any, Any]) -> None:
    """SIGKILLs ``-child.pgid`` (what is left of it, if the child already
    exited and the pgid was not recycled) and reaps the child."""
    await child.kill()
