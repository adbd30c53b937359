"""The runner half of ``orchestrator-spawn run``: config, profiles, redaction.

``cli.py`` owns the command line; this module adds the runner options and
does the launching and output plumbing they call for, so ``cli.py`` needs
only a few calls:

* by default the program's stdout and stderr go through the native pump and
  the built-in secret pattern pack to this terminal (or to ``--stdout`` /
  ``--stderr`` files), so a token the program prints never shows in clear;
  ``--redact REGEX`` and ``--secret VALUE`` add to the pack, ``--no-redact``
  turns redaction off (output then goes straight to the terminal or files);
* with ``--config FILE`` and/or ``--profile NAME`` the command runs the
  runner's way (:func:`spawn_with_runner`): through the configured shell,
  under its policy and environment rules, with the named execution profile's
  limits and sandbox. The command is the single argument given, as a shell
  command line, or the arguments joined with shell quoting.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator_spawn.config import ConfigFile, load_config_file
from orchestrator_spawn.runner import (
    OutputTarget,
    _OpenedOutputs,
    redaction_config,
    spawn_with_runner,
)

if TYPE_CHECKING:
    from orchestrator_spawn.child import Child
    from orchestrator_spawn.pump import Redaction

__all__ = ["RunOutput", "add_runner_options", "shell_command"]


def add_runner_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--profile``, ``--redact``, ``--secret``,
    ``--no-redact``, ``--stdout`` and ``--stderr`` to the ``run`` parser."""
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
        "--secret",
        metavar="VALUE",
        action="append",
        default=[],
        help="also redact this exact value from the output; repeatable",
    )
    group.add_argument(
        "--no-redact",
        action="store_true",
        help="do not redact: output goes straight to the terminal or files",
    )
    group.add_argument("--stdout", metavar="FILE", help="write stdout to FILE (truncated)")
    group.add_argument("--stderr", metavar="FILE", help="write stderr to FILE (truncated)")


def shell_command(command: Sequence[str]) -> str:
    """The runner command line for ``command``: one argument as is, several quoted."""
    return command[0] if len(command) == 1 else shlex.join(command)


class RunOutput:
    """Launches the ``run`` command and carries its output where it belongs.

    Build with :meth:`from_args` (which validates everything before anything
    runs), start with :meth:`spawn`, and after the child exited call
    :meth:`finish` to wait until all output was redacted and written.
    """

    def __init__(
        self,
        *,
        config: ConfigFile | None,
        profile_name: str | None,
        redactor: Redaction | None,
        stdout: str | None,
        stderr: str | None,
    ) -> None:
        self._config = config
        self._profile_name = profile_name
        self._redactor = redactor
        self._stdout: OutputTarget = stdout if stdout is not None else 1
        self._stderr: OutputTarget = stderr if stderr is not None else 2
        self._capture: Any = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOutput:
        """Validate the runner options.

        Raises ``ValueError`` (bad config document or field, bad regex,
        ``--no-redact`` combined with ``--redact``/``--secret``, ``--profile``
        combined with ``--limit``), ``OSError`` (unreadable config file) or
        ``KeyError`` (unknown profile).
        """
        runner_mode = args.config is not None or args.profile is not None
        if runner_mode and getattr(args, "limit", None):
            raise ValueError(
                "--limit cannot be combined with --config/--profile: "
                "set the limits in the execution profile"
            )
        if args.no_redact and (args.redact or args.secret):
            raise ValueError("--no-redact cannot be combined with --redact or --secret")
        config = None
        if runner_mode:
            config = load_config_file(args.config) if args.config else ConfigFile()
            # Resolve now so an unknown profile fails before anything runs.
            config.resolve_profile(args.profile or "host", os.getcwd())
        redactor = None
        if not args.no_redact:
            from orchestrator_spawn.config import RunnerConfig
            from orchestrator_spawn.pump import Redaction

            base = (config.runner if config else RunnerConfig()).redaction_patterns
            redactor = redaction_config(
                Redaction(patterns=(*base, *args.redact), literals=tuple(args.secret))
            )
        return cls(
            config=config,
            profile_name=args.profile,
            redactor=redactor,
            stdout=args.stdout,
            stderr=args.stderr,
        )

    def spawn(self, command: Sequence[str], spawn_kwargs: Mapping[str, Any]) -> Child:
        """Start ``command`` (argv mode with ``spawn_kwargs``, or runner mode).

        Raises what :func:`spawn` / :func:`spawn_with_runner` raise.
        """
        if self._redactor is None:
            return self._launch(command, spawn_kwargs, self._stdout, self._stderr)
        from orchestrator_spawn.pump import start_capture

        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        # Capture first, so that an output file that cannot be opened fails
        # before the program runs.
        try:
            self._capture = start_capture(
                stdout=out_read,
                stderr=err_read,
                stdout_sink=self._stdout,
                stderr_sink=self._stderr,
                redact=self._redactor,
            )
        except BaseException:
            for fd in (out_read, err_read, out_write, err_write):
                os.close(fd)
            raise
        try:
            child = self._launch(command, spawn_kwargs, out_write, err_write)
            # A forwarded SIGINT/SIGTERM (or any kill) cuts the output short:
            # what the redactors hold then fails closed, never in clear.
            self._capture._follow_child(child)
        finally:
            os.close(out_write)
            os.close(err_write)
        return child

    def _launch(
        self,
        command: Sequence[str],
        spawn_kwargs: Mapping[str, Any],
        stdout: OutputTarget,
        stderr: OutputTarget,
    ) -> Child:
        if self._config is None:
            from orchestrator_spawn.spawn import spawn

            outputs = _OpenedOutputs(stdout, stderr)
            try:
                child: Child = spawn(
                    command, stdout=outputs.stdout, stderr=outputs.stderr, **spawn_kwargs
                )
            finally:
                outputs.close()
            return child
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

    def exit_status(self, status: int) -> int:
        """Wait until all output is written; the CLI's exit status.

        ``status`` is the program's; if writing its output failed the error is
        reported on stderr and a successful status becomes 1.
        """
        if self._capture is None:
            return status
        try:
            self._capture.wait_blocking()
        except OSError as err:
            print(f"orchestrator-spawn: writing the output failed: {err}", file=sys.stderr)
            return status or 1
        return status

    @staticmethod
    def describe(err: BaseException) -> str:
        """An option error as one line (``KeyError`` without its quotes)."""
        return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
