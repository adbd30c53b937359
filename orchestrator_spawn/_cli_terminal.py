"""The terminal side of ``orchestrator-spawn run``: foreground handoff and the output pty.

Two things a shell does for a job and the CLI does for its one job:

* :class:`Terminal` hands the controlling terminal's foreground process
  group to the job while it runs (so keyboard input, Ctrl-C, Ctrl-\\ and
  Ctrl-Z reach it, as they would without the wrapper), takes it back when
  the job stops or ends, and restores the terminal's modes on every exit.
* :func:`open_output_pty` makes the pseudo-terminal the job writes its
  stdout (and stderr) to when the CLI's own stdout is a terminal: the job
  sees a terminal (colours, progress bars, line-buffered output, one
  ordering of stdout and stderr) while every byte it prints still passes
  through the redaction pump on its way to the real terminal.

The job's stdin stays the real terminal: its process group is that
terminal's foreground group, so the kernel's line discipline delivers keys
and job-control signals to it directly, with no relay in between.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
from typing import Any

__all__ = ["Terminal", "copy_window_size", "open_output_pty", "window_size"]

_WINSIZE = struct.Struct("HHHH")


def window_size(fd: int) -> bytes | None:
    """The packed ``struct winsize`` of terminal ``fd`` (None if it has none)."""
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * _WINSIZE.size)
    except OSError:
        return None


def copy_window_size(size: bytes | None, pty_fd: int) -> None:
    """Sets the window size of the pty behind ``pty_fd`` (either end) to ``size``."""
    if size is not None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(pty_fd, termios.TIOCSWINSZ, size)


def open_output_pty(like_fd: int) -> tuple[int, int]:
    """A new pty ``(master, slave)`` with the modes and window size of terminal ``like_fd``.

    Both fds are close-on-exec. The caller gives the slave to the job and
    closes its own copy; reading the master then ends (``EIO``, which the
    pump takes for end of file) once the job and its descendants closed it.
    Raises ``OSError`` if no pty can be had.
    """
    master, slave = os.openpty()
    try:
        with contextlib.suppress(termios.error):
            modes = termios.tcgetattr(like_fd)
            # No output processing on the pty: the bytes the job writes reach
            # the real terminal as written, and its own processing (\n ->
            # \r\n) applies once, as without the wrapper.
            modes[1] &= ~termios.OPOST
            termios.tcsetattr(slave, termios.TCSANOW, modes)
        copy_window_size(window_size(like_fd), slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def _controlling_terminal_fd() -> int | None:
    """The first of fds 0, 2, 1 that is this process's controlling terminal."""
    for fd in (0, 2, 1):
        try:
            if os.isatty(fd):
                os.tcgetpgrp(fd)  # ENOTTY unless it is our controlling terminal
                return fd
        except OSError:
            continue
    return None


class Terminal:
    """The CLI's controlling terminal, while one job runs in the foreground.

    ``Terminal.open()`` returns None when there is no controlling terminal
    on fds 0-2 (pipes, cron, CI): nothing to hand over then. The CLI must
    ignore SIGTTOU while it holds one (``tcsetpgrp`` from a background group
    would stop it otherwise).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.own_group = os.getpgrp()
        self.modes: list[Any] | None = None
        with contextlib.suppress(termios.error):
            self.modes = termios.tcgetattr(fd)
        self.job_group: int | None = None  # set while the job holds the terminal

    @classmethod
    def open(cls) -> Terminal | None:
        fd = _controlling_terminal_fd()
        return cls(fd) if fd is not None else None

    def is_foreground(self) -> bool:
        """Whether the CLI's own process group is the terminal's foreground group."""
        try:
            return os.tcgetpgrp(self.fd) == self.own_group
        except OSError:
            return False

    def job_is_foreground(self) -> bool:
        try:
            return self.job_group is not None and os.tcgetpgrp(self.fd) == self.job_group
        except OSError:
            return False

    def give_to(self, pgid: int, modes: list[Any] | None = None) -> bool:
        """Makes ``pgid`` the foreground group if the CLI's group is it now.

        ``modes`` (the job's own, saved when it stopped) are set first, as a
        shell does on ``fg``. Returns whether the terminal was handed over.
        """
        if not self.is_foreground():
            return False
        if modes is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, modes)
        try:
            os.tcsetpgrp(self.fd, pgid)
        except OSError:
            return False
        self.job_group = pgid
        return True

    def take_back(self) -> list[Any] | None:
        """Makes the CLI's group the foreground group again and restores the
        modes the terminal had when the CLI started; returns the job's modes
        (to give back on resume). Safe to call at any time, any number of times."""
        job_modes = None
        if self.job_group is not None:
            with contextlib.suppress(termios.error):
                job_modes = termios.tcgetattr(self.fd)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(self.fd, self.own_group)
            self.job_group = None
        self.restore_modes()
        return job_modes

    def restore_modes(self) -> None:
        """Restores the modes saved at start, if the CLI is in the foreground
        (never under another job's feet)."""
        if self.modes is not None and self.is_foreground():
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.modes)
