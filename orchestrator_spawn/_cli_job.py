"""How ``orchestrator-spawn run`` runs its one job as a shell would.

The rule: apart from the redaction of its output, ``orchestrator-spawn run
-- CMD`` behaves like ``CMD`` run from the same shell.

* Terminal: when the CLI is the foreground job of its controlling terminal,
  the job's process group becomes the foreground group while it runs (keys,
  Ctrl-C, Ctrl-\\, Ctrl-Z go to the job, straight from the kernel), and the
  CLI's group again when it stops or ends, with the terminal's modes put
  back on every exit path (:mod:`._cli_terminal`).
* Job control: when the job stops (Ctrl-Z, SIGTTIN, SIGSTOP) the CLI takes the
  terminal back and stops itself with the same signal, so the shell sees a
  stopped job; on SIGCONT (``fg``/``bg``) it gives the terminal back if it is
  in the foreground and continues the job.
* Signals: every signal in :data:`FORWARDED_SIGNALS` the CLI receives goes to
  the job's process group, also while what is left of the group outlives the
  direct child. A second SIGINT within :data:`ESCALATE_SECONDS` kills the job
  (SIGKILL through ``Child``).
* Downstream: when the reader of a pipe the pump writes to goes away
  (``run -- yes | head``) that stream stops being pumped and its pipe is
  closed, so the job's next write fails with SIGPIPE/EPIPE, as it would.
* Exit: the CLI returns when the command it ran has exited. Background
  processes it left behind keep running, as after a shell command, but
  output they write after :data:`EXIT_GRACE_SECONDS` is dropped, never shown
  unredacted (their pipe or pty is closed: SIGPIPE/EPIPE or EIO for them).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator_spawn._cli_terminal import Terminal, copy_window_size, window_size

if TYPE_CHECKING:
    from orchestrator_spawn._cli_runner import RunOutput
    from orchestrator_spawn.child import Child

__all__ = [
    "ESCALATE_SECONDS",
    "EXIT_GRACE_SECONDS",
    "FORWARDED_SIGNALS",
    "JobOutcome",
    "run_job",
]

#: What a shell can deliver to a foreground job, catchable: forwarded to its group.
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in (
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGTERM",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGCONT",
        "SIGTSTP",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGABRT",
        "SIGINFO",
    )
    if hasattr(signal, name)
)
#: A second SIGINT within this many seconds SIGKILLs the job.
ESCALATE_SECONDS = 3.0
#: How long the output of leftover background processes is still pumped
#: after the command exited.
EXIT_GRACE_SECONDS = 0.1
#: How often the terminal's size is compared with the pty's (the CLI gets no
#: SIGWINCH while the job holds the terminal).
WINDOW_POLL_SECONDS = 0.2

_STOP_SIGNALS = {signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
_EXITED = b"X"
_STOPPED = b"S"


class JobOutcome:
    """How the job ended: ``status`` as a shell reports it (128+N for signal
    N), and ``signal`` N when a signal killed the direct child."""

    def __init__(self, status: int, signum: int | None) -> None:
        self.status = status
        self.signal = signum


def _ignore_signal(signum: int, frame: object) -> None:
    """A Python-level handler so the wake-up fd sees the signal; the loop acts."""


def _block_signals_in_this_thread() -> None:
    # Only the main thread takes the CLI's signals: a stop signal the CLI
    # sends itself must not be taken by a helper thread, and handlers run
    # in the main thread anyway.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def _notify(fd: int, message: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, message)


def _watch_exit(child: Child, events: int) -> None:
    _block_signals_in_this_thread()
    with contextlib.suppress(Exception):
        child.wait_blocking()
    _notify(events, _EXITED)


def _watch_stops(pid: int, events: int) -> None:
    """Reports each stop of the child (``waitid(WSTOPPED)`` neither reaps nor
    sees the exit, so the ``Child`` handle stays the only reaper)."""
    _block_signals_in_this_thread()
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WSTOPPED)
        except InterruptedError:
            continue
        except OSError:
            return  # reaped: nothing left to stop
        if info is not None:
            _notify(events, _STOPPED + bytes([info.si_status & 0xFF]))


class _Job:
    def __init__(self, output: RunOutput, terminal: Terminal | None) -> None:
        self.output = output
        self.terminal = terminal
        self.child: Child | None = None
        self.last_interrupt = -1e9
        # The job was told to end (INT, TERM, HUP, QUIT): once the command has
        # exited, nothing of its job may run on.
        self.interrupted = False
        self.skip_continue = False
        self.window: bytes | None = None

    # -- signalling the job ---------------------------------------------------

    def signal_group(self, signum: int) -> None:
        child = self.child
        if child is None:
            return
        if child.containment == "cgroup" and signum not in (signal.SIGTSTP, signal.SIGCONT):
            # Every process of the job, setsid'd ones included.
            child._signal_job(signum)
            return
        # Also once the direct child was reaped: what is left of its group.
        child._signal_group_even_after_exit(signum)

    def kill(self) -> None:
        child = self.child
        if child is None:
            return
        if child.returncode is None:
            child.start_kill()  # the whole job, through the Child API
        self.signal_group(signal.SIGKILL)

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCONT and self.skip_continue:
            self.skip_continue = False  # our own resume already continued the job
            return
        if signum == signal.SIGWINCH:
            self.sync_window(notify=False)
        if signum == signal.SIGINT:
            now = time.monotonic()
            if now - self.last_interrupt <= ESCALATE_SECONDS:
                self.kill()
                return
            self.last_interrupt = now
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            self.interrupted = True
        self.signal_group(signum)

    # -- the terminal ---------------------------------------------------------

    def sync_window(self, *, notify: bool) -> None:
        """Gives the pty the terminal's size; SIGWINCH to the job if it changed
        and ``notify`` (the CLI saw the change by polling)."""
        if self.output.pty_master < 0:
            return
        size = window_size(1)
        if size is None or size == self.window:
            return
        self.window = size
        copy_window_size(size, self.output.pty_master)
        if notify:
            self.signal_group(signal.SIGWINCH)

    def on_stop(self, stopsig: int) -> None:
        terminal, child = self.terminal, self.child
        assert child is not None
        tty_stop = stopsig in (signal.SIGTTIN, signal.SIGTTOU)
        if tty_stop and terminal is not None and terminal.job_is_foreground():
            # It touched the terminal before it was handed over; it may now.
            self.signal_group(signal.SIGCONT)
            return
        job_modes = terminal.take_back() if terminal else None
        own = stopsig if stopsig in _STOP_SIGNALS else signal.SIGSTOP
        previous = None if own == signal.SIGSTOP else signal.signal(own, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), own)  # returns once the shell continued us
        finally:
            if previous is not None:
                signal.signal(own, previous)
        if terminal and child.pgid is not None:
            terminal.give_to(child.pgid, job_modes)
        self.sync_window(notify=False)
        self.skip_continue = True
        self.signal_group(signal.SIGCONT)

    # -- the loop -------------------------------------------------------------

    def wait(self, wake: int, events_r: int) -> None:
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        poller.register(events_r, select.POLLIN)
        downstream = self.output.downstream_fds()
        for fd in downstream:
            poller.register(fd, 0)  # POLLERR/POLLHUP: the reader went away
        timeout = WINDOW_POLL_SECONDS * 1000 if self.output.pty_master >= 0 else None
        while True:
            for fd, _ in poller.poll(timeout):
                if fd == wake:
                    self.take_signals(wake)
                elif fd == events_r:
                    if self.take_events(events_r):
                        return
                else:
                    poller.unregister(fd)
                    self.output.abort_stream(downstream[fd])
            self.sync_window(notify=True)

    def take_events(self, events_r: int) -> bool:
        """Acts on the watcher threads' records; True once the child exited."""
        data = os.read(events_r, 512)
        exited = False
        index = 0
        while index < len(data):
            # A stop record is two bytes (its signal number may equal b"X").
            if data[index : index + 1] == _STOPPED and index + 1 < len(data):
                self.on_stop(data[index + 1])
                index += 2
                continue
            exited = exited or data[index : index + 1] == _EXITED
            index += 1
        return exited

    def take_signals(self, wake: int) -> None:
        try:
            data = os.read(wake, 512)
        except BlockingIOError:
            return
        for signum in data:
            self.on_signal(signum)


def run_job(
    output: RunOutput, command: Sequence[str], spawn_kwargs: Mapping[str, Any]
) -> JobOutcome:
    """Runs ``command`` as the CLI's job (see the module) and returns how it ended.

    Raises what ``output.spawn`` raises; the terminal, the signal handlers
    and the wake-up fd are restored on every path.
    """
    terminal = Terminal.open()
    job = _Job(output, terminal)
    wake, wake_w = os.pipe()
    events_r, events_w = os.pipe()
    for fd in (wake, wake_w):
        os.set_blocking(fd, False)
    previous: dict[int, Any] = {}
    old_wakeup = -1
    watchers: list[threading.Thread] = []
    try:
        # Handlers before the spawn: a signal that comes in between is kept
        # in the wake-up pipe and forwarded once the job exists.
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, _ignore_signal)
        if terminal is not None:
            previous[signal.SIGTTOU] = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        with output.spawn(command, spawn_kwargs) as child:
            job.child = child
            if terminal is not None and child.pgid is not None:
                terminal.give_to(child.pgid)
            job.sync_window(notify=False)
            watchers.append(threading.Thread(target=_watch_exit, args=(child, events_w)))
            if hasattr(os, "waitid"):
                watchers.append(threading.Thread(target=_watch_stops, args=(child.pid, events_w)))
            for watcher in watchers:
                watcher.daemon = True
                watcher.start()
            job.wait(wake, events_r)
            if terminal is not None:
                terminal.take_back()
            returncode = child.wait_blocking()
            if job.interrupted:
                # A setsid'd daemon would also hold the output pipes open;
                # with a cgroup this reaches all of the job.
                child._kill_job()
            status = 128 - returncode if returncode < 0 else returncode
            status = output.finish(status, EXIT_GRACE_SECONDS)
            job.take_signals(wake)  # what came in meanwhile goes to the leftovers
            return JobOutcome(status, -returncode if returncode < 0 else None)
    finally:
        if terminal is not None:
            terminal.take_back()
        signal.set_wakeup_fd(old_wakeup)
        for number, handler in previous.items():
            signal.signal(number, handler)
        for fd in (wake, wake_w, events_r):
            os.close(fd)
        # The exit watcher is done once the job was reaped. The stop watcher
        # may sleep in waitid(WSTOPPED) until this process's next child event
        # (a reap by another thread does not wake it): it is not waited for,
        # and keeps its pipe end rather than a number that could be reused.
        if not any(watcher.is_alive() for watcher in watchers):
            os.close(events_w)
