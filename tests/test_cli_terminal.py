"""``orchestrator-spawn run`` at a terminal: an interactive bash on a real pty
runs the CLI, as a user would, and the tests type into it.

What is checked is what a user sees without the wrapper: the job reads the
terminal, Ctrl-C / Ctrl-\\ / Ctrl-Z reach it, ``fg`` resumes it, it sees a
terminal on stdout and stderr with the window's size, and the terminal is
left as it was found.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shlex
import signal
import struct
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import wait_gone

ROOT = Path(__file__).resolve().parent.parent
CLI = f"{shlex.quote(sys.executable)} -m orchestrator_spawn"
PROMPT = b"@prompt@ "
GITHUB_TOKEN = "gh" + "p_" + "Z9y8X7w6V5" * 3 + "u4T3s2"  # ghp_ + 36 alnum, assembled

pytestmark = pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs os.waitid")


def set_window(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Shell:
    """An interactive bash on a fresh pty (its controlling terminal)."""

    def __init__(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": str(ROOT),
            "TERM": "dumb",
            "HOME": os.environ.get("HOME", "/"),
            "PS1": PROMPT.decode(),
            "PS2": "",
            "HISTFILE": "/dev/null",
        }
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child execs at once
            os.chdir(ROOT)
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.pid, self.fd = pid, fd
        # Wide enough that bash never scrolls a command line (it would redraw
        # the prompt in the middle of the echo).
        set_window(fd, 40, 250)
        self.seen = b""
        self.last_status = -1
        self.expect(PROMPT)

    def send(self, data: bytes | str) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def line(self, text: str) -> None:
        self.send(text + "\n")

    def expect(self, pattern: bytes, timeout: float = 20.0) -> re.Match[bytes]:
        """Reads until ``pattern`` (a regex) appears in the output after what an
        earlier expect consumed; fails with what was seen after ``timeout``."""
        regex = re.compile(pattern if isinstance(pattern, bytes) else pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.seen)
            if found:
                self.seen = self.seen[found.end() :]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen; output: {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed; output: {self.seen!r}")
                self.seen += chunk

    def run(self, command: str, timeout: float = 20.0) -> bytes:
        """Runs ``command``, returns what it printed (and the echo of the line);
        ``self.last_status`` is its exit status."""
        # The marker is spelled differently in the echo of the line.
        self.line(f'{command}; echo "@do""ne@$?"')
        found = self.expect(rb"(?s)(.*?)@done@(\d+)", timeout)
        self.last_status = int(found.group(2))
        self.expect(re.escape(PROMPT))
        return found.group(1)

    def status(self) -> int:
        self.run("(exit $?)")
        return self.last_status

    def close(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGHUP)
        self.fd = -1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


@pytest.fixture
def shell() -> Iterator[Shell]:
    running = Shell()
    try:
        yield running
    finally:
        running.close()


def test_job_reads_the_terminal_as_foreground(shell: Shell) -> None:
    code = "import os; print(os.getpgrp() == os.tcgetpgrp(0), input('sa' + 'y: ')[::-1])"
    shell.line(f'{CLI} run -- {sys.executable} -c "{code}"')
    shell.expect(b"say: ")
    shell.line("olleh")
    shell.expect(b"True hello")
    shell.expect(PROMPT)
    assert shell.status() == 0


def test_ctrl_c_interrupts_a_job_reading_the_terminal(shell: Shell) -> None:
    code = "print('wait' + 'ing', flush=True); input()"
    shell.line(f'{CLI} run -- {sys.executable} -c "{code}"')
    shell.expect(b"waiting")
    time.sleep(0.2)
    shell.send(b"\x03")
    shell.expect(b"KeyboardInterrupt")
    shell.expect(PROMPT, timeout=10)
    assert shell.status() == 130


def test_ctrl_backslash_quits_the_job(shell: Shell) -> None:
    shell.line(f"{CLI} run -- sh -c 'echo st\"\"arted; exec sleep 60'")
    shell.expect(b"started")
    time.sleep(0.2)
    shell.send(b"\x1c")
    shell.expect(PROMPT, timeout=10)
    assert shell.status() == 128 + signal.SIGQUIT


def test_ctrl_z_stops_and_fg_resumes(shell: Shell) -> None:
    code = "import sys\nfor line in sys.stdin: print('echo:' + line.strip(), flush=True)"
    shell.line(f"{CLI} run -- {sys.executable} -c {shlex.quote(code)}")
    shell.line("one")
    shell.expect(b"echo:one")
    shell.send(b"\x1a")
    shell.expect(b"Stopped")
    shell.expect(PROMPT)
    states = shell.run("ps -o stat= -o comm= -t $(tty)")
    # Both the CLI and its job are stopped (T), not running in the background.
    assert re.search(rb"T\S*\s+python", states), states
    assert not re.search(rb"^\s*[RS]\S*\s+python", states, re.M), states
    shell.line("fg")
    shell.line("two")
    shell.expect(b"echo:two")
    shell.send(b"\x04")  # end of input
    shell.expect(PROMPT)
    assert shell.status() == 0


def test_terminal_modes_restored_after_a_job_killed_in_raw_mode(shell: Shell) -> None:
    code = "import os, signal, tty; tty.setraw(0); os.kill(os.getpid(), signal.SIGKILL)"
    before = shell.run("stty -g")
    shell.run(f'{CLI} run -- {sys.executable} -c "{code}"')
    assert shell.last_status == 128 + signal.SIGKILL
    assert shell.run("stty -g") == before


def test_stdout_and_stderr_are_a_terminal_with_the_window_size(shell: Shell) -> None:
    code = (
        "import os, sys; print(sys.stdout.isatty(), sys.stderr.isatty(), "
        "*os.get_terminal_size(), flush=True); print('tok', 'gh' + 'p_' + sys.argv[1], "
        "file=sys.stderr)"
    )
    out = shell.run(f'{CLI} run -- {sys.executable} -c "{code}" {GITHUB_TOKEN[4:]}')
    assert b"True True 250 40" in out, out
    assert b"tok [REDACTED]" in out, out
    assert GITHUB_TOKEN.encode() not in out
    code = "import sys; print(sys.stdout.isatty(), sys.stderr.isatty())"
    out = shell.run(f'{CLI} run --no-pty -- {sys.executable} -c "{code}"')
    assert b"False False" in out, out


def test_output_order_and_line_buffering_kept(shell: Shell) -> None:
    # On a terminal Python writes each line at once, and stderr comes where
    # it was written, not after all of stdout.
    code = (
        "import sys, time; print('first'); print('second', file=sys.stderr); "
        "print('third'); time.sleep(60)"
    )
    shell.line(f'{CLI} run -- {sys.executable} -c "{code}"')
    shell.expect(b"\nfirst\r\nsecond\r\nthird\r\n", timeout=10)
    shell.send(b"\x03")
    shell.expect(PROMPT)


def test_window_size_change_reaches_the_job(shell: Shell) -> None:
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGWINCH, lambda *a: os.write(1, "
        "b'size %d %d\\n' % tuple(os.get_terminal_size())))\n"
        "print('rea' + 'dy', flush=True)\n"
        "time.sleep(60)"
    )
    shell.line(f"{CLI} run -- {sys.executable} -c {shlex.quote(code)}")
    shell.expect(b"ready")
    set_window(shell.fd, 41, 132)
    os.killpg(os.tcgetpgrp(shell.fd), signal.SIGWINCH)  # what the terminal emulator does
    shell.expect(b"size 132 41", timeout=10)
    shell.send(b"\x03")
    shell.expect(PROMPT)


def test_closing_the_terminal_ends_the_job(shell: Shell, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    shell.line(f"{CLI} run -- sh -c 'echo $$ > {pid_file}; exec sleep 43'")
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job = int(pid_file.read_text())
    shell.close()  # the terminal goes away: bash gets SIGHUP and passes it on
    assert wait_gone(job), "the job survived its terminal"


def test_pump_reads_a_pty_master_to_the_end() -> None:
    # The slave's last close shows as EIO on the master: end of file, with
    # every byte written before it delivered and no error recorded.
    from orchestrator_spawn import spawn
    from orchestrator_spawn.pump import MEMORY, start_capture

    master, slave = os.openpty()
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    capture = start_capture(stdout=master, stdout_sink=MEMORY, redact=[r"ghp_[A-Za-z0-9]{36}"])
    try:
        child = spawn(["sh", "-c", f"seq 1 3000; echo {GITHUB_TOKEN}"], stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    with child:
        assert child.wait_blocking(timeout=30) == 0
    capture.wait_blocking(timeout=30)
    expected = "".join(f"{i}\n" for i in range(1, 3001)) + "[REDACTED]\n"
    assert capture.output("stdout") == expected.encode()
