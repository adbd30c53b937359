"""The runner half of ``orchestrator-spawn run``: config, profiles, redaction, output.

``cli.py`` owns the command line and the job's life (signals, terminal);
this module adds the runner options and does the launching and output
plumbing they call for:

* by default the program's stdout and stderr go through the native pump and
  the built-in secret pattern pack to this terminal (or to ``--stdout`` /
  ``--stderr`` files), so a token the program prints never shows in clear;
  ``--redact REGEX``, ``--secret-env NAME``, ``--secret-file PATH`` (and
  ``--secret VALUE``, which is visible to other users) add to the pack,
  ``--no-redact`` turns redaction off (output then goes straight to the
  terminal or files);
* when the CLI's stdout is a terminal the program writes to a pseudo-terminal
  whose output is pumped through the redactor to it (``--no-pty``: pipes);
* with ``--config FILE`` and/or ``--profile NAME`` the command runs the
  runner's way (:func:`spawn_with_runner`): through the configured shell,
  under its policy and environment rules, with the named execution profile's
  limits and sandbox. The command is the single argument given, as a shell
  command line, or the arguments joined with shell quoting.

Everything that can be wrong with the options (a file that cannot be opened
or read, a variable that is not set, a bad pattern) is found by
:meth:`RunOutput.from_args`, before anything runs.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator_spawn._cli_terminal import open_output_pty
from orchestrator_spawn.config import ConfigFile, load_config_file
from orchestrator_spawn.runner import redaction_config, spawn_with_runner

if TYPE_CHECKING:
    from orchestrator_spawn.child import Child
    from orchestrator_spawn.pump import Capture, Redaction

__all__ = ["RunOutput", "add_runner_options", "read_secret_file", "shell_command"]

SECRET_ON_COMMAND_LINE_WARNING = (
    "orchestrator-spawn: warning: --secret puts the value on the command line, "
    "where every local user can read it (ps, /proc/PID/cmdline); "
    "use --secret-env NAME or --secret-file PATH"
)


def add_runner_options(parser: argparse.ArgumentParser) -> None:
    """Add the runner, redaction and output options to the ``run`` parser."""
    group = parser.add_argument_group("runner, execution profiles and redaction")
    group.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON file with 'runner' settings and 'execution_profiles'; "
        "the command then runs through the runner's shell and policy",
    )
    group.add_argument(
        "--profile",
        metavar="NAME",
        help="execution profile from --config to run under (default: host); implies runner mode",
    )
    group.add_argument(
        "--redact",
        metavar="REGEX",
        action="append",
        default=[],
        help="also redact matches of REGEX (case-insensitive) from the output; repeatable",
    )
    group.add_argument(
        "--secret-env",
        metavar="NAME",
        action="append",
        default=[],
        help="also redact the value of environment variable NAME (the way to pass a "
        "secret); the variable is removed from the program's environment unless "
        "--keep-secret-env is given; repeatable",
    )
    group.add_argument(
        "--keep-secret-env",
        action="store_true",
        help="pass the --secret-env variables on to the program (still redacted)",
    )
    group.add_argument(
        "--secret-file",
        metavar="PATH",
        action="append",
        default=[],
        help="also redact every line of PATH as an exact value (one secret per line, "
        "empty lines skipped); repeatable",
    )
    group.add_argument(
        "--secret",
        metavar="VALUE",
        action="append",
        default=[],
        help="also redact this exact value; NOT for real secrets: the command line "
        "is visible to every local user (use --secret-env or --secret-file)",
    )
    group.add_argument(
        "--no-redact",
        action="store_true",
        help="do not redact: output goes straight to the terminal or files",
    )
    group.add_argument(
        "--no-pty",
        action="store_true",
        help="when stdout is a terminal, give the program pipes instead of a "
        "pseudo-terminal (it then sees no terminal on stdout/stderr)",
    )
    group.add_argument("--stdout", metavar="FILE", help="write stdout to FILE (truncated)")
    group.add_argument("--stderr", metavar="FILE", help="write stderr to FILE (truncated)")


def shell_command(command: Sequence[str]) -> str:
    """The runner command line for ``command``: one argument as is, several quoted."""
    return command[0] if len(command) == 1 else shlex.join(command)


def read_secret_file(path: str) -> list[bytes]:
    """The secrets in ``path``: one per line, line endings stripped, empty lines skipped.

    Raises ``OSError`` (naming the file) if it cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]


def _secret_env_values(names: Sequence[str]) -> list[bytes]:
    values = []
    for name in names:
        value = os.environb.get(os.fsencode(name)) if os.supports_bytes_environ else None
        if value is None and name in os.environ:
            value = os.fsencode(os.environ[name])
        if not value:
            state = "is empty" if value is not None else "is not set"
            raise ValueError(f"--secret-env {name}: the environment variable {state}")
        values.append(value)
    return values


def _open_sink(path: str, option: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise OSError(err.errno, f"cannot open {option} {path}: {err.strerror}") from err


def _is_pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class RunOutput:
    """Launches the ``run`` command and carries its output where it belongs.

    Build with :meth:`from_args` (which validates everything and opens the
    output files before anything runs), start with :meth:`spawn`, and after
    the program exited call :meth:`finish`. Call :meth:`close` in any case.
    """

    def __init__(
        self,
        *,
        config: ConfigFile | None,
        profile_name: str | None,
        redactor: Redaction | None,
        stdout_fd: int,
        stderr_fd: int,
        owned_fds: list[int],
        pty: bool,
    ) -> None:
        self._config = config
        self._profile_name = profile_name
        self._redactor = redactor
        self._stdout_fd = stdout_fd
        self._stderr_fd = stderr_fd
        self._owned_fds = owned_fds
        self._want_pty = pty
        self.captures: dict[str, Capture] = {}
        #: A dup of the pty master (for window-size changes), or -1.
        self.pty_master = -1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOutput:
        """Validate the runner options and open the output files.

        Raises ``ValueError`` (bad config document or field, bad regex, a
        ``--secret-env`` variable not set, ``--no-redact`` combined with a
        redaction option, ``--profile`` combined with ``--limit``),
        ``OSError`` (unreadable config or secret file, output file that
        cannot be opened) or ``KeyError`` (unknown profile). Removes the
        ``--secret-env`` variables from this process's environment (so from
        the program's) unless ``--keep-secret-env``.
        """
        runner_mode = args.config is not None or args.profile is not None
        if runner_mode and getattr(args, "limit", None):
            raise ValueError(
                "--limit cannot be combined with --config/--profile: "
                "set the limits in the execution profile"
            )
        secret_options = args.redact or args.secret or args.secret_env or args.secret_file
        if args.no_redact and secret_options:
            raise ValueError(
                "--no-redact cannot be combined with --redact, --secret, "
                "--secret-env or --secret-file"
            )
        config = None
        if runner_mode:
            config = load_config_file(args.config) if args.config else ConfigFile()
            # Resolve now so an unknown profile fails before anything runs.
            config.resolve_profile(args.profile or "host", os.getcwd())
        redactor = None
        if not args.no_redact:
            from orchestrator_spawn.config import RunnerConfig
            from orchestrator_spawn.pump import Redaction

            literals: list[str | bytes] = [*args.secret, *_secret_env_values(args.secret_env)]
            for path in args.secret_file:
                try:
                    literals.extend(read_secret_file(path))
                except OSError as err:
                    raise OSError(
                        err.errno, f"cannot read --secret-file {path}: {err.strerror}"
                    ) from err
            base = (config.runner if config else RunnerConfig()).redaction_patterns
            redactor = redaction_config(
                Redaction(patterns=(*base, *args.redact), literals=tuple(literals))
            )
        if args.secret:
            print(SECRET_ON_COMMAND_LINE_WARNING, file=sys.stderr)
        owned: list[int] = []
        try:
            stdout_fd = _open_sink(args.stdout, "--stdout") if args.stdout else 1
            if stdout_fd != 1:
                owned.append(stdout_fd)
            stderr_fd = 2
            if args.stderr:
                stderr_fd = _open_sink(args.stderr, "--stderr")
                owned.append(stderr_fd)
                if stdout_fd != 1 and os.path.samestat(os.fstat(stdout_fd), os.fstat(stderr_fd)):
                    # One file under two names: one open file (one offset), so
                    # the two streams interleave instead of overwriting.
                    os.close(stderr_fd)
                    owned.remove(stderr_fd)
                    stderr_fd = stdout_fd
        except BaseException:
            for fd in owned:
                os.close(fd)
            raise
        if not args.keep_secret_env:
            for name in args.secret_env:
                os.environ.pop(name, None)
        return cls(
            config=config,
            profile_name=args.profile,
            redactor=redactor,
            stdout_fd=stdout_fd,
            stderr_fd=stderr_fd,
            owned_fds=owned,
            pty=not args.no_pty,
        )

    @property
    def redacting(self) -> bool:
        return self._redactor is not None

    def downstream_fds(self) -> dict[int, str]:
        """The pipes and sockets the pump writes to, by fd: their reader going
        away is the downstream closing (``run -- yes | head``)."""
        found = {}
        for name, fd in (("stdout", self._stdout_fd), ("stderr", self._stderr_fd)):
            if name in self.captures and fd not in found and _is_pipe_or_socket(fd):
                found[fd] = name
        return found

    def spawn(self, command: Sequence[str], spawn_kwargs: Mapping[str, Any]) -> Child:
        """Start ``command`` (argv mode with ``spawn_kwargs``, or runner mode).

        Raises what :func:`spawn` / :func:`spawn_with_runner` raise, and
        ``OSError`` if the pump cannot start.
        """
        if self._redactor is None:
            return self._launch(command, spawn_kwargs, self._stdout_fd, self._stderr_fd)
        from orchestrator_spawn.pump import PIPE, spawn_into, start_capture

        child_ends: list[int] = []
        try:
            out_end, err_end = -1, -1
            use_pty = self._want_pty and self._stdout_fd == 1 and os.isatty(1)
            if use_pty:
                master, slave = open_output_pty(1)
                child_ends.append(slave)
                self.pty_master = os.dup(master)
                os.set_inheritable(self.pty_master, False)
                self.captures["stdout"] = start_capture(
                    stdout=master, stdout_sink=1, redact=self._redactor
                )
                out_end = slave
                if self._stderr_fd == 2 and os.isatty(2):
                    err_end = slave  # one terminal, one ordering of both streams
            if out_end < 0:
                capture = start_capture(
                    stdout=PIPE, stdout_sink=self._stdout_fd, redact=self._redactor
                )
                self.captures["stdout"] = capture
                out_end = capture.writer("stdout")
            if err_end < 0:
                capture = start_capture(
                    stderr=PIPE, stderr_sink=self._stderr_fd, redact=self._redactor
                )
                self.captures["stderr"] = capture
                err_end = capture.writer("stderr")
            # A forwarded signal (or any kill) cuts the output short: what the
            # redactors hold then fails closed, never in clear.
            return spawn_into(
                list(self.captures.values()),
                lambda: self._launch(command, spawn_kwargs, out_end, err_end),
            )
        finally:
            for fd in child_ends:
                os.close(fd)
            # (spawn_into closed the writers; a capture started before a
            # failure above has its writers closed here.)
            for capture in self.captures.values():
                capture.close_writers()

    def _launch(
        self,
        command: Sequence[str],
        spawn_kwargs: Mapping[str, Any],
        stdout: int,
        stderr: int,
    ) -> Child:
        if self._config is None:
            from orchestrator_spawn.spawn import spawn

            return spawn(command, stdout=stdout, stderr=stderr, **spawn_kwargs)
        cwd = os.getcwd()
        profile = self._config.resolve_profile(self._profile_name or "host", cwd)
        return spawn_with_runner(
            self._config.runner,
            shell_command(command),
            cwd,
            stdout,
            stderr,
            {},
            False,
            profile,
        )

    def abort_stream(self, name: str) -> None:
        """Stop pumping ``name`` (its reader went away): the pump closes the
        program's end, so its next write fails with ``SIGPIPE``/``EPIPE`` as
        it would without the wrapper."""
        capture = self.captures.get(name)
        if capture is not None:
            capture.abort()

    def finish(self, status: int, grace: float) -> int:
        """After the program exited: the rest of its output, then the CLI's status.

        Waits up to ``grace`` seconds for end of file on every stream; what a
        leftover background process still holds open is then cut off: what
        is in the pipe now is redacted and written, later output is dropped
        (never shown unredacted). If writing the output failed (other than
        the reader going away) the error is reported and a successful
        ``status`` becomes 1.
        """
        failed = False
        for capture in self.captures.values():
            try:
                try:
                    capture.wait_blocking(grace)
                except TimeoutError:
                    capture.abort()
                    capture.wait_blocking()
            except OSError as err:
                if err.errno in (errno.EPIPE, errno.EIO):
                    continue  # the reader (or the terminal) went away
                print(f"orchestrator-spawn: writing the output failed: {err}", file=sys.stderr)
                failed = True
        return (status or 1) if failed else status

    def close(self) -> None:
        """Closes the output files and the pty (idempotent); running captures
        are aborted so none outlives the CLI holding the program's output."""
        for capture in self.captures.values():
            if not capture.done():
                capture.abort()
        for fd in self._owned_fds:
            os.close(fd)
        self._owned_fds = []
        if self.pty_master >= 0:
            os.close(self.pty_master)
            self.pty_master = -1

    @staticmethod
    def describe(err: BaseException) -> str:
        """An option error as one line (``KeyError`` without its quotes)."""
        if isinstance(err, KeyError) and err.args:
            return str(err.args[0])
        if isinstance(err, OSError) and err.strerror and not err.filename:
            return err.strerror
        return str(err)
