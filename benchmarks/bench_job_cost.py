"""Main-thread CPU per job: what one ``sh -c true`` job costs the orchestrator.

For a high-throughput orchestrator the CPU its own event-loop thread spends
per job is the ceiling (one thread at 300 us per job tops out near 3,000
jobs/s, whatever the children do). Each contender runs batches of jobs on one
asyncio event loop, a few in flight at a time, and the main thread's CPU time
(``time.thread_time()``: the pump's reactor thread and the children are not
counted) is divided by the number of jobs:

- ``spawn``: ``spawn(argv, stdout=DEVNULL, stderr=DEVNULL)``, await the exit;
- ``spawn_files``: the same with stdout/stderr into two new files per job;
- ``spawn_with_runner``: the runner (allowlist policy, allowlisted env, the
  default host profile) with stdout/stderr into two new files per job;
- ``spawn_with_runner_and_capture``: the same with both streams captured by
  the native pump, redacted with the default secret pattern pack;
- ``run``: ``orchestrator_spawn.run(argv, redact=<the pattern pack>)``;
- ``asyncio_exec``: the stdlib way: ``asyncio.create_subprocess_exec`` with
  both streams piped, ``communicate()``, Python ``re.sub`` over the same
  pattern pack and the result written into two new files per job.

Output files are created in a tmpfs directory (``/dev/shm`` when there is
one): on a disk one file creation can cost a millisecond and would measure
the disk instead of the orchestrator.

Every contender but ``asyncio_exec`` runs its jobs contained: where a
writable cgroup v2 exists, each job gets a cgroup (reused from the pool of
emptied ones, see ``orchestrator_spawn/_platform/cgroup.py``), ``spawn``
included, so the ratios compare like with like. To see what containment
costs: ``ORCHESTRATOR_SPAWN_CGROUP_POOL=0`` (a new cgroup per job) or
``ORCHESTRATOR_SPAWN_DISABLE_CGROUP=1`` (process groups).

Beside the main thread's CPU, the table gives the whole process's CPU per
job (``time.process_time()``: every thread of this process, the pump's
reactor included, not the children): the capture does part of its work on
the reactor thread (pipes made ahead, the streams' start), which a main-thread
figure alone would hide.

Run for numbers (a table with per-job medians, interquartile ranges and
ratios to ``spawn`` is printed at the end):

    python -m pytest benchmarks/bench_job_cost.py --benchmark-enable -p no:cacheprovider

Jobs per contender: env ORCHESTRATOR_SPAWN_BENCH_JOBS (default 1000, in
batches of 100); under ``--benchmark-disable`` (the CI smoke test) one batch
of a few jobs each.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import (
    DEVNULL,
    RunnerConfig,
    run,
    spawn,
    spawn_with_runner,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

SHELL = "/bin/sh"
COMMAND = "true"
ARGV = [SHELL, "-c", COMMAND]
RUNNER = RunnerConfig(shell=SHELL, shell_arg="-c")
PATTERNS = list(DEFAULT_REDACTION_PATTERNS)
# The stdlib contender's redaction: the same pack as one Python regex.
_PYTHON_RE = re.compile(b"(?i)" + b"|".join(b"(?:" + p.encode() + b")" for p in PATTERNS))
REPLACEMENT = b"[REDACTED]"

BATCH = 100  # jobs per timed sample
IN_FLIGHT = 4  # jobs running at once
SMOKE_BATCH = 4

Job = Callable[[str, int], Awaitable[None]]


# -- the contenders: one job each, started and awaited to the end -------------


async def job_spawn(directory: str, index: int) -> None:
    child = spawn(ARGV, stdout=DEVNULL, stderr=DEVNULL)
    assert await child.wait() == 0


async def job_spawn_files(directory: str, index: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    out = os.open(f"{directory}/{index}.out", flags, 0o644)
    try:
        err = os.open(f"{directory}/{index}.err", flags, 0o644)
        try:
            child = spawn(ARGV, stdout=out, stderr=err)
        finally:
            os.close(err)
    finally:
        os.close(out)
    assert await child.wait() == 0


def _logs(directory: str, index: int) -> tuple[str, str]:
    """The stdout and stderr file paths of job ``index``."""
    return f"{directory}/{index}.out", f"{directory}/{index}.err"


async def job_runner(directory: str, index: int) -> None:
    child = spawn_with_runner(RUNNER, COMMAND, directory, *_logs(directory, index))
    assert await child.wait() == 0


async def job_runner_capture(directory: str, index: int) -> None:
    captured = spawn_with_runner_and_capture(RUNNER, COMMAND, directory, *_logs(directory, index))
    assert await captured.child.wait() == 0
    await captured.output_capture.wait()


async def job_run(directory: str, index: int) -> None:
    result = await run(ARGV, redact=PATTERNS)
    assert result.returncode == 0


async def job_asyncio_exec(directory: str, index: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ARGV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0
    for suffix, data in ((".out", out), (".err", err)):
        with open(f"{directory}/{index}{suffix}", "wb") as sink:
            sink.write(_PYTHON_RE.sub(REPLACEMENT, data))


CONTENDERS: dict[str, Job] = {
    "spawn": job_spawn,
    "spawn_files": job_spawn_files,
    "spawn_with_runner": job_runner,
    "spawn_with_runner_and_capture": job_runner_capture,
    "run": job_run,
    "asyncio_exec": job_asyncio_exec,
}

# name -> per-job main-thread CPU samples (seconds), one per batch.
SAMPLES: dict[str, list[float]] = {}


# -- batches -------------------------------------------------------------------


async def _batch(job: Job, directory: str, jobs: int) -> None:
    counter = iter(range(jobs))

    async def worker() -> None:
        for index in counter:
            await job(directory, index)

    await asyncio.gather(*(worker() for _ in range(min(IN_FLIGHT, jobs))))


def timed_batch(
    loop: asyncio.AbstractEventLoop, job: Job, root: Path, jobs: int
) -> tuple[float, float]:
    """Main-thread and whole-process CPU seconds per job over one batch; its
    files are removed (untimed) afterwards."""
    directory = tempfile.mkdtemp(prefix="batch-", dir=root)
    try:
        gc.collect()
        started, process_started = time.thread_time(), time.process_time()
        loop.run_until_complete(_batch(job, directory, jobs))
        return (
            (time.thread_time() - started) / jobs,
            (time.process_time() - process_started) / jobs,
        )
    finally:
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def tmpfs_root() -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix=f"orch-spawn-jobcost-{os.getpid()}-", dir=base))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", False)) and not config.getoption(
        "benchmark_enable", False
    )


def format_table(
    samples: dict[str, list[float]], jobs: int, process: dict[str, list[float]] | None = None
) -> list[str]:
    """The table: main-thread CPU per job, then (with ``process``) the whole
    process's CPU per job (every thread: the pump's reactor too, which takes
    some of the capture's work off the main thread; not the children)."""
    lines = [
        f"main-thread CPU per job of `{' '.join(ARGV)}` ({jobs} jobs each, "
        f"{IN_FLIGHT} in flight): median [IQR of {BATCH}-job batches]; "
        "ratios x / spawn and x / spawn_files"
        + ("; process CPU per job (all threads), ratio x / spawn" if process else "")
    ]
    if "spawn" not in samples or "spawn_files" not in samples:
        return lines
    base = statistics.median(samples["spawn"])
    base_files = statistics.median(samples["spawn_files"])
    for name, values in samples.items():
        median = statistics.median(values)
        if len(values) >= 2:
            low, _, high = statistics.quantiles(values, n=4)
            spread = f"[{low * 1e6:6.1f}-{high * 1e6:6.1f}]"
        else:
            spread = ""
        line = (
            f"  {name:31s} {median * 1e6:7.1f} us {spread:17s} "
            f"{median / base:5.2f}x {median / base_files:5.2f}x"
        )
        if process and process.get(name) and process.get("spawn"):
            whole = statistics.median(process[name])
            line += f"   {whole * 1e6:7.1f} us {whole / statistics.median(process['spawn']):5.2f}x"
        lines.append(line)
    return lines


# -- the benchmarks ----------------------------------------------------------


@pytest.mark.benchmark(timer=time.thread_time)  # main-thread CPU, not wall time
@pytest.mark.parametrize("name", list(CONTENDERS))
def test_job_cost(
    benchmark: Any,
    request: pytest.FixtureRequest,
    name: str,
    loop: asyncio.AbstractEventLoop,
    tmpfs_root: Path,
) -> None:
    """pytest-benchmark, one contender per test; the timer is the main
    thread's CPU clock, and a round is a batch of jobs (divide by the batch)."""
    jobs = SMOKE_BATCH if _disabled(request.config) else BATCH
    job = CONTENDERS[name]
    benchmark.group = "job-cost"
    benchmark.extra_info["jobs_per_round"] = jobs

    def one_batch() -> None:
        directory = tempfile.mkdtemp(prefix="bench-", dir=tmpfs_root)
        loop.run_until_complete(_batch(job, directory, jobs))

    benchmark.pedantic(one_batch, rounds=3, iterations=1, warmup_rounds=1)


def test_interleaved_ratios(
    request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, tmpfs_root: Path
) -> None:
    """Every contender runs one batch per round, in a shuffled order, so load
    drift hits them all alike; prints per-job medians, IQRs and ratios."""
    disabled = _disabled(request.config)
    jobs = int(os.environ.get("ORCHESTRATOR_SPAWN_BENCH_JOBS", "1000"))
    batch = SMOKE_BATCH if disabled else BATCH
    rounds = 1 if disabled else max(1, jobs // batch)
    order = list(CONTENDERS.items())
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    process: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _name, job in order:  # warm-up: imports, caches, the child watcher
        timed_batch(loop, job, tmpfs_root, SMOKE_BATCH)
    shuffler = random.Random(3)  # fixed seed: the same order every run
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name, job in order:
            main_thread, whole = timed_batch(loop, job, tmpfs_root, batch)
            samples[name].append(main_thread)
            process[name].append(whole)
    if disabled:
        return
    SAMPLES.update(samples)
    lines = format_table(samples, rounds * batch, process)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n[interleaved]\n" + "\n".join(lines), flush=True)
