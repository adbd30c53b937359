"""The command-line front end: ``orchestrator-spawn`` / ``python -m orchestrator_spawn``.

``orchestrator-spawn run [--limit KEY=VALUE ...] -- PROGRAM ARGS...`` runs a
program in its own process group with the given resource limits and, apart
from the redaction of its output, behaves as the program run from the same
shell would (``_cli_job``): it holds the terminal while it runs, Ctrl-C/Ctrl-Z
and every signal a shell delivers reach it, a closed pipeline stops it, and
the CLI exits with the program's status (ends by the same signal if one
killed it; 127 if it could not be found, 126 if it could not be executed, 2
for bad options, before anything runs).

The ``run`` options live in :func:`add_run_options` and are turned into spawn
arguments in :func:`run_spawn_kwargs`, so later options slot in there.

``orchestrator-spawn doctor`` (``_cli_doctor``) reports what this machine
offers and whether a profile can be enforced; ``orchestrator-spawn bench``
(``_cli_bench``) measures spawn, redaction and the pump against the stdlib.

The runner options (``--config``, ``--profile``, ``--redact``, ``--secret-env``,
``--secret-file``, ``--secret``, ``--no-redact``, ``--no-pty``, ``--stdout``,
``--stderr``) live in ``_cli_runner``: by
default the output passes through the built-in secret pattern pack on its
way to this terminal, so a token the program prints never shows in clear.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import resource
import signal
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator_spawn import __version__
from orchestrator_spawn._cli_bench import EPILOG as BENCH_EPILOG
from orchestrator_spawn._cli_bench import add_bench_options
from orchestrator_spawn._cli_doctor import EPILOG as DOCTOR_EPILOG
from orchestrator_spawn._cli_doctor import add_doctor_options
from orchestrator_spawn._cli_job import JobOutcome, run_job
from orchestrator_spawn._cli_runner import RunOutput, add_runner_options
from orchestrator_spawn.errors import OrchestratorSpawnError, SpawnError
from orchestrator_spawn.spawn import ResourceLimits

__all__ = ["add_run_options", "build_parser", "main", "parse_limit", "run_spawn_kwargs"]

LIMIT_KEYS = ("memory_bytes", "cpu_seconds", "processes", "open_files")
_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_LIMIT_VALUE = re.compile(r"^(\d+)([kmgt]?)(i?b?)$", re.IGNORECASE)


def parse_limit(text: str) -> tuple[str, int]:
    """Parses ``KEY=VALUE`` for ``--limit``; VALUE is an integer, and for
    memory_bytes may carry a binary suffix (``512M``, ``2G``, ``64KiB``)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in LIMIT_KEYS:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY one of {', '.join(LIMIT_KEYS)}, got {text!r}"
        )
    match = _LIMIT_VALUE.match(raw.strip())
    if match is None or (key != "memory_bytes" and (match.group(2) or match.group(3))):
        raise argparse.ArgumentTypeError(f"invalid value for {key}: {raw!r}")
    return key, int(match.group(1)) * _SUFFIXES[match.group(2).lower()]


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Adds every option of the ``run`` subcommand to ``parser``."""
    parser.add_argument(
        "--limit",
        metavar="KEY=VALUE",
        action="append",
        type=parse_limit,
        default=[],
        help=(
            "resource limit applied with setrlimit (soft = hard) before exec; "
            "KEY is memory_bytes (address space, suffixes K/M/G/T allowed), "
            "cpu_seconds, processes or open_files; repeat for several"
        ),
    )
    add_runner_options(parser)
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- PROGRAM ARGS...",
        help="the program to run and its arguments (PROGRAM is searched on PATH)",
    )


def run_spawn_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``spawn()`` keyword arguments the ``run`` options ask for."""
    limits = dict(args.limit) if args.limit else {}
    return {"limits": ResourceLimits(**limits) if limits else None}


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps texts with line breaks (the
    examples epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


RUN_EPILOG = """\
examples:
  orchestrator-spawn run -- make -j4
  orchestrator-spawn run --limit memory_bytes=1G --limit cpu_seconds=60 -- ./build.sh
  orchestrator-spawn run --secret-env DB_PASSWORD --stdout out.log -- ./deploy.sh
  orchestrator-spawn run --secret-file ~/.deploy-secrets -- ./deploy.sh
  orchestrator-spawn run --config runner.yaml --profile sandbox_write -- 'make test'
"""

MAIN_EPILOG = """\
examples:
  orchestrator-spawn run -- make -j4
  orchestrator-spawn doctor
  orchestrator-spawn bench --quick

'orchestrator-spawn COMMAND --help' describes each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``orchestrator-spawn`` parser with its run, doctor and bench subcommands."""
    parser = argparse.ArgumentParser(
        prog="orchestrator-spawn",
        description="Spawn processes through the orchestrator_spawn native core.",
        epilog=MAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a program in its own process group and exit with its status",
        description=(
            "Run PROGRAM in its own process group with the given limits, as if "
            "run from this shell, its output redacted on the way. It gets the "
            "terminal while it runs (Ctrl-C, Ctrl-Z and fg work as without the "
            "wrapper; its stdout and stderr are a pseudo-terminal when stdout is "
            "one); every signal a shell delivers is forwarded to its whole "
            "group, a second SIGINT within 3 s kills it; when the reader of the "
            "output goes away it gets SIGPIPE. The CLI returns when PROGRAM "
            "exits (background processes it left keep running, their later "
            "output is dropped) with PROGRAM's status, or ends by the signal "
            "that killed it (127 not found, 126 not executable, 2 bad options)."
        ),
        epilog=RUN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    add_run_options(run)
    doctor = commands.add_parser(
        "doctor",
        help="print what this machine offers: kernel features, PCRE2, sandbox modes",
        description=(
            "Probe and print the platform, the kernel features the spawn core and "
            "the sandbox use (pidfd, close_range, Landlock, namespaces, seccomp), "
            "the PCRE2 version and JIT, and what each sandbox mode would do here."
        ),
        epilog=DOCTOR_EPILOG,
        formatter_class=_HelpFormatter,
    )
    add_doctor_options(doctor)
    bench = commands.add_parser(
        "bench",
        help="measure spawn, redaction and the pump against the stdlib ways",
        description=(
            "Run the spawn, redaction and pump comparisons on this machine and "
            "print a table of medians and ratios against the stdlib ways "
            "(ratio > 1: orchestrator_spawn is faster). Progress goes to stderr."
        ),
        epilog=BENCH_EPILOG,
        formatter_class=_HelpFormatter,
    )
    add_bench_options(bench)
    return parser


def _doctor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from orchestrator_spawn._cli_doctor import run_doctor

    return run_doctor(args)


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from orchestrator_spawn._cli_bench import run_bench

    return run_bench(args)


def _run_job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> JobOutcome:
    command: list[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run: missing PROGRAM (usage: orchestrator-spawn run [options] -- PROGRAM)")
    try:
        output = RunOutput.from_args(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"orchestrator-spawn: {RunOutput.describe(err)}", file=sys.stderr)
        return JobOutcome(2, None)
    try:
        return run_job(output, command, run_spawn_kwargs(args))
    except SpawnError as err:
        print(f"orchestrator-spawn: {err}", file=sys.stderr)
        return JobOutcome(127 if err.errno == errno.ENOENT else 126, None)
    except OrchestratorSpawnError as err:  # policy, daemon-PID guard, sandbox
        print(f"orchestrator-spawn: {err}", file=sys.stderr)
        return JobOutcome(126, None)
    except ValueError as err:
        print(f"orchestrator-spawn: {err}", file=sys.stderr)
        return JobOutcome(2, None)
    except OSError as err:  # no pty, the pump could not start
        print(f"orchestrator-spawn: {err}", file=sys.stderr)
        return JobOutcome(126, None)
    finally:
        output.close()


def _die_of(signum: int) -> None:
    """Ends this process by ``signum`` (default action, no core file), so the
    parent sees what it would have seen from the program itself: a shell
    script stops on an interrupted command, ``pipefail`` sees SIGPIPE."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    As the program itself (``argv`` None: the console script, ``python -m``),
    when a signal killed the command ``run`` ran, the CLI ends by that same
    signal after cleaning up, as the command would have; the status returned
    otherwise (and in-process) is 128 + N.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand == "run":
        outcome = _run_job(args, parser)
        if outcome.signal is not None and argv is None:
            _die_of(outcome.signal)
        return outcome.status
    commands = {"doctor": _doctor, "bench": _bench}
    return commands[args.subcommand](args, parser)
