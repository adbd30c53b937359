"""``orchestrator-spawn bench``: the speed comparisons, run on this machine.

Three groups, each pitting orchestrator_spawn against the standard-library
way of doing the same work:

- ``spawn``: spawn + wait of ``/bin/true``: :func:`spawn` against
  ``subprocess.Popen``; with resource limits against
  ``Popen(process_group=0, preexec_fn=<setrlimit>)``; from an event loop
  against ``asyncio.create_subprocess_exec``.
- ``redact``: the built-in secret pattern pack
  (:mod:`orchestrator_spawn.patterns`) over the seeded log corpus that the
  redaction benchmarks use too (:mod:`orchestrator_spawn._corpus`):
  :class:`Redactor` fed 64 KiB chunks against Python ``re.sub`` over the
  alternation of the same patterns (the reference semantics), in MB/s. The
  two outputs are compared once; a mismatch is reported.
- ``pump``: one child writing N MiB of log lines through the built-in pack
  into a file: :func:`spawn` + the native pump, against ``Popen`` + Python
  ``re`` + ``write`` (line-buffered so a secret is never split), and the
  pipe floor ``generator | cat > file`` (no redaction at all).

Each round runs every contender of a group once, in a rotating order, so
load drift on a shared machine hits all of them alike; the table shows
medians over the rounds. ``ratio`` is the contender's median time divided by
orchestrator_spawn's for the same work: above 1, orchestrator_spawn is faster.

This module ships in the wheel: it imports nothing from ``benchmarks/`` or
``tests/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "EPILOG",
    "GROUPS",
    "BenchResult",
    "Contender",
    "LineRedactor",
    "Sizes",
    "add_bench_options",
    "render_table",
    "run_bench",
    "run_groups",
]

GROUPS = ("spawn", "redact", "pump")
TRUE = "/bin/true"
REPLACEMENT = b"[REDACTED]"

EPILOG = """\
examples:
  orchestrator-spawn bench --quick
  orchestrator-spawn bench --only spawn
  orchestrator-spawn bench --only redact,pump --rounds 9
  orchestrator-spawn bench --quick --json > bench.json

ratio = the contender's median time / orchestrator_spawn's median time for the
same work (> 1: orchestrator_spawn is faster). Rounds interleave the
contenders; expect noise on a busy machine and compare medians across runs.
"""


@dataclass(frozen=True)
class Sizes:
    """How much work one run does."""

    rounds: int
    spawns_per_round: int
    corpus_bytes: int
    pump_bytes: int


QUICK = Sizes(rounds=3, spawns_per_round=10, corpus_bytes=256 << 10, pump_bytes=1 << 20)
FULL = Sizes(rounds=5, spawns_per_round=50, corpus_bytes=4 << 20, pump_bytes=16 << 20)


@dataclass
class Contender:
    """One way of doing a group's work.

    ``sample`` does one round's work and returns the seconds it took (setup
    excluded). ``work`` is what one sample does: spawns (``unit="spawn"``) or
    bytes (``unit="byte"``). ``reference`` names the orchestrator_spawn
    contender this one is compared with (None: it is that reference).
    """

    group: str
    name: str
    sample: Callable[[], float]
    work: int
    unit: str
    reference: str | None = None
    times: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BenchResult:
    """One row of the table: medians in seconds per sample."""

    group: str
    name: str
    median_s: float
    work: int
    unit: str
    reference: str | None
    ratio: float
    rounds: int

    def rate(self) -> str:
        """Median per spawn (us/ms) or throughput (MB/s, 10^6 bytes per second)."""
        if self.unit == "byte":
            return f"{self.work / self.median_s / 1e6:8.1f} MB/s"
        per = self.median_s / self.work
        if per < 1e-3:
            return f"{per * 1e6:8.1f} us/spawn"
        return f"{per * 1e3:8.2f} ms/spawn"

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["per_unit_s"] = self.median_s / self.work
        return out


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """Adds ``--quick``, ``--only``, ``--rounds`` and ``--json`` to the bench parser."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 3 rounds: a few seconds in all (numbers are rougher)",
    )
    parser.add_argument(
        "--only",
        metavar="GROUPS",
        type=_parse_groups,
        default=GROUPS,
        help=f"comma-separated groups to run, of {','.join(GROUPS)} (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        metavar="N",
        help="rounds per group (default 3 with --quick, else 5)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of a table"
    )


def _parse_groups(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in GROUPS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(GROUPS)}, got {text!r}"
        )
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ---- spawn ------------------------------------------------------------------

# (resource, value) pairs shared by spawn(limits=...) and the preexec_fn.
_RLIMITS = (
    ("RLIMIT_AS", 1 << 30),
    ("RLIMIT_CPU", 60),
    ("RLIMIT_NPROC", 4096),
    ("RLIMIT_NOFILE", 256),
)


def _set_rlimits() -> None:
    import resource

    for name, value in _RLIMITS:
        resource.setrlimit(getattr(resource, name), (value, value))


def _timed(count: int, one: Callable[[], object]) -> Callable[[], float]:
    def sample() -> float:
        started = time.perf_counter()
        for _ in range(count):
            one()
        return time.perf_counter() - started

    return sample


def _spawn_contenders(sizes: Sizes, stack: ExitStack) -> list[Contender]:
    from orchestrator_spawn import ResourceLimits, spawn

    n = sizes.spawns_per_round
    argv = [TRUE]
    limits = ResourceLimits(memory_bytes=1 << 30, cpu_seconds=60, processes=4096, open_files=256)

    def ours() -> None:
        with spawn(argv) as child:
            child.wait_blocking()

    def ours_limits() -> None:
        with spawn(argv, limits=limits) as child:
            child.wait_blocking()

    def popen() -> None:
        subprocess.Popen(argv).wait()

    group_kwargs: dict[str, Any] = (
        {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    )

    def popen_limits() -> None:
        subprocess.Popen(argv, preexec_fn=_set_rlimits, **group_kwargs).wait()

    loop = asyncio.new_event_loop()
    stack.callback(loop.close)

    async def ours_async() -> None:
        for _ in range(n):
            child = spawn(argv)
            await child.wait()

    async def asyncio_exec() -> None:
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(*argv)
            await proc.wait()

    def in_loop(coro: Callable[[], Any]) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            loop.run_until_complete(coro())
            return time.perf_counter() - started

        return sample

    spawn_ = "orchestrator_spawn.spawn"
    limits_ = "orchestrator_spawn.spawn(limits=...)"
    async_ = "orchestrator_spawn.spawn + await wait()"
    pg = "process_group=0" if sys.version_info >= (3, 11) else "start_new_session"
    return [
        Contender("spawn", spawn_, _timed(n, ours), n, "spawn"),
        Contender("spawn", "subprocess.Popen", _timed(n, popen), n, "spawn", spawn_),
        Contender("spawn", limits_, _timed(n, ours_limits), n, "spawn"),
        Contender(
            "spawn",
            f"Popen({pg}, preexec_fn=setrlimit)",
            _timed(n, popen_limits),
            n,
            "spawn",
            limits_,
        ),
        Contender("spawn", async_, in_loop(ours_async), n, "spawn"),
        Contender(
            "spawn", "asyncio.create_subprocess_exec", in_loop(asyncio_exec), n, "spawn", async_
        ),
    ]


# ---- redact -----------------------------------------------------------------


def _python_regex() -> re.Pattern[bytes]:
    from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

    parts = "|".join(f"(?:{p})" for p in DEFAULT_REDACTION_PATTERNS)
    return re.compile(("(?i)" + parts).encode())


def _redact_contenders(sizes: Sizes, stack: ExitStack, notes: list[str]) -> list[Contender]:
    from orchestrator_spawn import Redactor
    from orchestrator_spawn._corpus import log_corpus
    from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

    corpus = log_corpus(sizes.corpus_bytes)
    view = memoryview(corpus)
    chunk = 64 << 10
    regex = _python_regex()

    def ours_once() -> bytes:
        redactor = Redactor(DEFAULT_REDACTION_PATTERNS, replacement=REPLACEMENT)
        out = [redactor.feed(view[i : i + chunk]) for i in range(0, len(corpus), chunk)]
        out.append(redactor.finish())
        return b"".join(out)

    def python_once() -> bytes:
        return regex.sub(REPLACEMENT, corpus)

    if ours_once() != python_once():
        notes.append("redact: Redactor output differs from re.sub on the corpus")

    ours_name = "Redactor (C, PCRE2), built-in pack"
    return [
        Contender("redact", ours_name, _timed(1, ours_once), len(corpus), "byte"),
        Contender(
            "redact",
            "re.sub, same patterns",
            _timed(1, python_once),
            len(corpus),
            "byte",
            ours_name,
        ),
    ]


# ---- pump -------------------------------------------------------------------

_PUMP_LINE = (
    "2026-11-28T05:00:00.000Z INFO worker[17] request completed password=hunter2-x9 "
    "path=/v1/items dur=12ms"
)


def _generator(size: int) -> list[str]:
    return ["sh", "-c", f"yes '{_PUMP_LINE}' | head -c {size}"]


def _pump_contenders(sizes: Sizes, stack: ExitStack) -> list[Contender]:
    from orchestrator_spawn import DEVNULL, spawn
    from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
    from orchestrator_spawn.pump import Redaction, start_capture

    size = sizes.pump_bytes
    work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestrator-spawn-bench-"))
    ours_out = os.path.join(work_dir, "pump.out")
    stdlib_out = os.path.join(work_dir, "stdlib.out")
    floor_out = os.path.join(work_dir, "floor.out")
    redaction = Redaction(patterns=DEFAULT_REDACTION_PATTERNS, replacement=REPLACEMENT)
    regex = _python_regex()
    argv = _generator(size)

    def ours() -> float:
        started = time.perf_counter()
        read_end, write_end = os.pipe()
        try:
            child = spawn(argv, stdin=DEVNULL, stdout=write_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        with child:
            capture = start_capture(read_end, stdout_sink=ours_out, redact=redaction)
            capture.wait_blocking()
            child.wait_blocking()
        return time.perf_counter() - started

    def stdlib() -> float:
        started = time.perf_counter()
        with (
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as proc,
            open(stdlib_out, "wb") as sink,
        ):
            assert proc.stdout is not None
            _copy_redacted(proc.stdout, sink, regex)
        return time.perf_counter() - started

    def floor() -> float:
        started = time.perf_counter()
        with open(floor_out, "wb") as sink:
            first = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert first.stdout is not None
            with first, subprocess.Popen(["cat"], stdin=first.stdout, stdout=sink) as second:
                first.stdout.close()
                second.wait()
        return time.perf_counter() - started

    if shutil.which("cat") is None:  # pragma: no cover - every POSIX system has cat
        raise RuntimeError("bench pump: cat(1) is not on PATH")
    ours_name = "spawn + native pump -> file"
    return [
        Contender("pump", ours_name, ours, size, "byte"),
        Contender("pump", "Popen + Python re -> file", stdlib, size, "byte", ours_name),
        Contender("pump", "generator | cat > file (no redaction)", floor, size, "byte", ours_name),
    ]


class LineRedactor:
    """The standard-library way of redacting a stream: Python ``re`` over
    whole lines, so that no secret is split between two reads. ``feed()``
    returns the redacted complete lines so far, ``finish()`` the rest."""

    def __init__(self, regex: re.Pattern[bytes], replacement: bytes = REPLACEMENT) -> None:
        self._regex = regex
        self._replacement = replacement
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        self._pending += chunk
        cut = self._pending.rfind(b"\n") + 1
        if not cut:
            return b""
        lines, self._pending = self._pending[:cut], self._pending[cut:]
        return self._regex.sub(self._replacement, lines)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._regex.sub(self._replacement, rest)


def _copy_redacted(source: IO[bytes], sink: IO[bytes], regex: re.Pattern[bytes]) -> None:
    """Copies ``source`` to ``sink`` through ``regex``, whole lines at a time."""
    lines = LineRedactor(regex)
    while chunk := source.read1(1 << 16):  # type: ignore[attr-defined]
        if out := lines.feed(chunk):
            sink.write(out)
    sink.write(lines.finish())


# ---- running ----------------------------------------------------------------


class Progress:
    """A progress bar on ``stream``: redrawn in place on a terminal, else one
    line per group (so logs stay readable)."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        # One column short of the terminal, so the line never wraps.
        self.columns = max(shutil.get_terminal_size().columns - 1, 40)
        self._last_group = ""

    def step(self, group: str, name: str) -> None:
        if self.tty:
            filled = 30 * self.done // self.total
            bar = "#" * filled + "." * (30 - filled)
            text = f"[{bar}] {self.done}/{self.total} {group}: {name}"[: self.columns]
            self.stream.write("\r" + text.ljust(self.columns))
        elif group != self._last_group:
            self.stream.write(f"bench: {group} ({self.done}/{self.total} samples done)\n")
        self._last_group = group
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * self.columns + "\r")
        else:
            self.stream.write(f"bench: done ({self.done} samples)\n")
        self.stream.flush()


_BUILDERS: dict[str, Callable[[Sizes, ExitStack, list[str]], list[Contender]]] = {
    "spawn": lambda sizes, stack, notes: _spawn_contenders(sizes, stack),
    "redact": _redact_contenders,
    "pump": lambda sizes, stack, notes: _pump_contenders(sizes, stack),
}


def _rounds(contenders: Sequence[Contender], rounds: int) -> Iterator[tuple[int, Contender]]:
    """Every contender once per round, the starting one rotating each round."""
    for index in range(rounds):
        shift = index % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            yield index, contender


def run_groups(
    groups: Sequence[str], sizes: Sizes, progress_stream: IO[str] | None = None
) -> tuple[list[BenchResult], list[str]]:
    """Runs ``groups``; returns the table rows and notes (problems found)."""
    notes: list[str] = []
    results: list[BenchResult] = []
    with ExitStack() as stack:
        # Build everything first (corpus, scratch dirs) so the bar is honest.
        built = {group: _BUILDERS[group](sizes, stack, notes) for group in groups}
        total = sum(len(c) for c in built.values()) * (sizes.rounds + 1)
        progress = Progress(total, progress_stream or sys.stderr)
        for group, contenders in built.items():
            for contender in contenders:  # warm-up: imports, page cache, JIT
                progress.step(group, f"warm-up {contender.name}")
                contender.sample()
                progress.advance()
            for _, contender in _rounds(contenders, sizes.rounds):
                progress.step(group, contender.name)
                contender.times.append(contender.sample())
                progress.advance()
            results.extend(_results(contenders))
        progress.finish()
    return results, notes


def _results(contenders: Sequence[Contender]) -> list[BenchResult]:
    medians = {c.name: statistics.median(c.times) for c in contenders}
    rows = []
    for c in contenders:
        per_unit = medians[c.name] / c.work
        if c.reference is None:
            ratio = 1.0
        else:
            reference = next(r for r in contenders if r.name == c.reference)
            ratio = per_unit / (medians[reference.name] / reference.work)
        rows.append(
            BenchResult(
                c.group, c.name, medians[c.name], c.work, c.unit, c.reference, ratio, len(c.times)
            )
        )
    return rows


def render_table(results: Sequence[BenchResult], sizes: Sizes, notes: Sequence[str]) -> list[str]:
    """The result table as lines: one row per contender, medians and ratios."""
    header = (
        f"orchestrator-spawn bench on {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, {sizes.rounds} rounds (medians)"
    )
    lines = [
        header,
        f"spawn: {sizes.spawns_per_round} x {TRUE} per round; redact: "
        f"{sizes.corpus_bytes >> 10} KiB log corpus; pump: {sizes.pump_bytes >> 20} MiB",
        "",
    ]
    width = max(len(r.name) for r in results) if results else 10
    lines.append(f"{'group':<7} {'contender':<{width}} {'median':>17}  {'ratio':>7}  vs")
    for row in results:
        versus = "(reference)" if row.reference is None else row.reference
        lines.append(
            f"{row.group:<7} {row.name:<{width}} {row.rate():>17}  {row.ratio:>6.2f}x  {versus}"
        )
    lines.append("")
    lines.append("ratio: contender median time / orchestrator_spawn median time (> 1: ours faster)")
    lines.extend(f"note: {text}" for text in notes)
    return lines


def run_bench(args: argparse.Namespace) -> int:
    """Runs the bench subcommand for parsed ``args``; returns the exit status
    (1 when a correctness check failed, e.g. redaction outputs differ)."""
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(args.rounds, sizes.spawns_per_round, sizes.corpus_bytes, sizes.pump_bytes)
    results, notes = run_groups(list(dict.fromkeys(args.only)), sizes)
    bad = [r.name for r in results if not math.isfinite(r.ratio) or r.ratio <= 0]
    notes.extend(f"ratio of {name} is not finite" for name in bad)
    if args.json:
        print(
            json.dumps(
                {
                    "sizes": sizes.__dict__,
                    "results": [r.as_dict() for r in results],
                    "notes": notes,
                },
                indent=2,
            )
        )
    else:
        for line in render_table(results, sizes, notes):
            print(line)
    return 1 if notes else 0
