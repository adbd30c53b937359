"""The ``Child`` handle: waiting, signalling and kill-on-drop for one spawned process.

A ``Child`` comes only from :func:`orchestrator_spawn.spawn`. It reaps its
process exactly once (``wait4`` under a lock, whichever of ``wait_blocking``,
``try_wait``, ``await wait()`` or ``close()`` gets there first) and never
signals a process it has reaped, so a recycled pid is never hit. Exit
notification comes from :mod:`orchestrator_spawn._platform` (pidfd, kqueue,
or the single SIGCHLD reaper), never from a thread per child.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, final

from orchestrator_spawn._native import cgroup_events_drain as _native_drain
from orchestrator_spawn._native import reap as _reap
from orchestrator_spawn._native import wait_exit_nowait as _wait_exit_nowait
from orchestrator_spawn._pipe_streams import PipeStreamReader, PipeStreamWriter
from orchestrator_spawn._platform import ExitNotifier
from orchestrator_spawn._platform import cgroup as _cgroup

__all__ = ["Child", "JobUsage", "ResourceUsage", "kill_child_process_group"]

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


@final
class Child:
    """A running or finished child process; get one from ``spawn()``.

    Attributes: ``pid``; ``pgid`` (the child's own process group, or None
    when spawned with ``process_group=False``); ``returncode`` (None while
    running; the exit status, or the negative signal number when a signal
    killed it); ``rusage`` (a :class:`ResourceUsage` once reaped);
    ``stdin``/``stdout``/``stderr`` (see ``spawn()``); ``args``.

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
        "_deferred_loops",
        "_job_cpu",
        "_keeper_group",
        "_lock",
        "_notifier",
        "_pid_waiting",
        "_raw_rusage",
        "_reaped_callbacks",
        "_reaped_event",
        "_returncode",
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
    stdin: PipeStreamWriter | IO[bytes] | None
    stdout: PipeStreamReader | IO[bytes] | None
    stderr: PipeStreamReader | IO[bytes] | None
    _notifier: ExitNotifier
    _lock: threading.Lock
    _returncode: int | None
    # [user CPU us, system CPU us, ru_maxrss] once reaped (see _native.reap).
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Child objects are created by orchestrator_spawn.spawn()")

    @classmethod
    def _create(
        cls,
        pid: int,
        pgid: int | None,
        notifier: ExitNotifier,
        args: list[bytes],
        stdin: PipeStreamWriter | IO[bytes] | None,
        stdout: PipeStreamReader | IO[bytes] | None,
        stderr: PipeStreamReader | IO[bytes] | None,
        containment: str = "process_group",
        cgroup: str | None = None,
        keeper_group: int | None = None,
    ) -> Child:
        self = object.__new__(cls)
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
        self._deferred_loops = None
        self._stop_callbacks = None
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
        if self._reaped_callbacks is not None:
            # Set only while unreaped, under the lock: the list is final now.
            callbacks, self._reaped_callbacks = self._reaped_callbacks, None
            for callback in callbacks:
                with contextlib.suppress(Exception):
                    callback()

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
        callbacks = self._stop_callbacks
        if callbacks is None or sig not in _STOP_SIGNALS:
            return
        for callback in callbacks:
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
        """Removes the job's cgroup if nothing lives in it any more (keeping
        its CPU total for ``job_usage``); True once it is gone."""
        path = self._cgroup
        if path is None:
            return True
        try:
            cpu: float | None = _cgroup.job_cpu_seconds(path)
        except OSError:
            cpu = None
        try:
            removed = _cgroup.remove_job(path)
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
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
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
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is None:
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

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Child:
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

    # -- asyncio -------------------------------------------------------------

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

    async def wait(self, *, whole_job: bool = False) -> int:
        """Waits for the child to exit, reaps it and returns ``returncode``.

        ``whole_job=True`` also waits until every process the job started has
        exited (its cgroup's ``cgroup.events``; without a cgroup, the child's
        process group, polled), then removes the job's cgroup.

        Any number of tasks may await it at once; cancelling one of them does
        not kill the child and does not disturb the others."""
        returncode = self._returncode
        if returncode is None:
            # No reap attempt first: a child that already exited wakes the
            # notifier at once, and the common case (still running) saves a
            # syscall.
            returncode = await self._add_waiter(asyncio.get_running_loop())
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
        returncode = await self.wait()
        if self._cgroup is not None:
            await self._wait_job()
        return returncode

    async def terminate(self, grace: float = 5.0) -> int:
        """SIGTERMs the job; SIGKILLs it if it has not ended after ``grace``
        seconds. Reaps; returns ``returncode``.

        With a cgroup, every process of the job gets the SIGTERM and the job
        has ended once all of them exited (a daemon it started that ignores
        SIGTERM is killed at the grace, even when the child itself exited);
        otherwise the process group gets it and the job has ended when the
        child exited."""
        self._signal_job(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(whole_job=self._cgroup is not None), grace)
        except asyncio.TimeoutError:
            return await self.kill()


async def kill_child_process_group(child: Child) -> None:
    """SIGKILLs ``-child.pgid`` (what is left of it, if the child already
    exited and the pgid was not recycled) and reaps the child."""
    await child.kill()
