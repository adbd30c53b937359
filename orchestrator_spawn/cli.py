"""The command-line front end: ``orchestrator-spawn`` / ``python -m orchestrator_spawn``.

``orchestrator-spawn run [--limit KEY=VALUE ...] -- PROGRAM ARGS...`` runs a
program in its own process group with the given resource limits, its output
going straight to this terminal (inherited stdio), forwards SIGINT/SIGTERM to
the group, and exits with the program's status (128 + N if signal N killed it,
like a shell; 127 if it could not be found, 126 if it could not be executed).

The ``run`` options live in :func:`add_run_options` and are turned into spawn
arguments in :func:`run_spawn_kwargs`, so later options slot in there.

``orchestrator-spawn doctor`` (``_cli_doctor``) reports what this machine
offers and whether a profile can be enforced; ``orchestrator-spawn bench``
(``_cli_bench``) measures spawn, redaction and the pump against the stdlib.

The runner options (``--config``, ``--profile``, ``--redact``, ``--secret``,
``--no-redact``, ``--stdout``, ``--stderr``) live in ``_cli_runner``: by
default the output passes through the built-in secret pattern pack on its
way to this terminal, so a token the program prints never shows in clear.
"""

from __future__ import annotations

import argparse
import errno
import re
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from orchestrator_spawn._cli_bench import EPILOG as BENCH_EPILOG
from orchestrator_spawn._cli_bench import add_bench_options
from orchestrator_spawn._cli_doctor import EPILOG as DOCTOR_EPILOG
from orchestrator_spawn._cli_doctor import add_doctor_options
from orchestrator_spawn._cli_runner import RunOutput, add_runner_options
from orchestrator_spawn.child import Child
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
  orchestrator-spawn run --secret "$DB_PASSWORD" --stdout out.log -- ./deploy.sh
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
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a program in its own process group and exit with its status",
        description=(
            "Run PROGRAM in its own process group with the given limits. Its "
            "output goes straight to this terminal; SIGINT and SIGTERM are "
            "forwarded to its whole group; the exit status is the program's "
            "(128+N when signal N killed it, 127 not found, 126 not executable)."
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


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command: list[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run: missing PROGRAM (usage: orchestrator-spawn run [options] -- PROGRAM)")
    try:
        output = RunOutput.from_args(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"orchestrator-spawn: {RunOutput.describe(err)}", file=sys.stderr)
        return 2
    # The handlers go in before the spawn so that a signal arriving in
    # between is not lost: it is remembered and forwarded once the child exists.
    children: list[Child] = []
    pending: list[int] = []
    interrupted: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        interrupted.append(signum)
        if children:
            children[0].send_signal(signum)
        else:
            pending.append(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            child = output.spawn(command, run_spawn_kwargs(args))
        except SpawnError as err:
            print(f"orchestrator-spawn: {err}", file=sys.stderr)
            return 127 if err.errno == errno.ENOENT else 126
        except OrchestratorSpawnError as err:  # policy, daemon-PID guard, sandbox
            print(f"orchestrator-spawn: {err}", file=sys.stderr)
            return 126
        except ValueError as err:
            print(f"orchestrator-spawn: {err}", file=sys.stderr)
            return 2
        with child:
            children.append(child)
            for signum in pending:
                child.send_signal(signum)
            status = _exit_status(child.wait_blocking())
            if interrupted:
                # Interrupted: once the child has exited, nothing of its job
                # may run on (a setsid'd daemon would also hold the output
                # pipes open); with a cgroup this reaches all of it.
                child._kill_job()
        return output.exit_status(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"run": _run, "doctor": _doctor, "bench": _bench}
    return commands[args.subcommand](args, parser)
