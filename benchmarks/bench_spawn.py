"""spawn + wait of /bin/true: orchestrator_spawn against the alternatives.

Run for numbers (a ratio table is printed at the end of the module):

    python -m pytest benchmarks/bench_spawn.py --benchmark-enable -p no:cacheprovider

and with the parent holding 2 GiB of touched memory:

    ORCHESTRATOR_SPAWN_BENCH_BIG_PARENT=1 python -m pytest benchmarks/bench_spawn.py \
        --benchmark-enable -p no:cacheprovider

In CI they run once each with ``--benchmark-disable`` as a smoke test.
Ratios are alternative_median / orchestrator_median (> 1: we are faster).

Containment: where a writable cgroup v2 exists (root here), ``orch_spawn``
gives every job a cgroup of its own (mkdir, clone3 CLONE_INTO_CGROUP, rmdir
at reap); ``orch_spawn_no_cgroup`` is the same spawn with cgroup containment
switched off (a process group). The table prints what the cgroup costs per
job.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import ResourceLimits, open_process, spawn
from orchestrator_spawn._platform import cgroup

TRUE = "/bin/true"
BIG_PARENT_ENV = "ORCHESTRATOR_SPAWN_BENCH_BIG_PARENT"
BIG_PARENT = os.environ.get(BIG_PARENT_ENV, "") not in ("", "0")
LIMITS = ResourceLimits(memory_bytes=1 << 30, cpu_seconds=60, processes=4096, open_files=256)

# name -> median seconds, filled as the benchmarks run.
MEDIANS: dict[str, float] = {}
# name -> (25th, 75th percentile) seconds, from the interleaved run only.
QUARTILES: dict[str, tuple[float, float]] = {}

FLOOR_C = r"""
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
/* The floor: vfork + execve + waitpid, no hygiene at all. */
int floor_spawn_wait(const char *path)
{
    char *argv[] = {(char *)path, 0};
    int status;
    pid_t pid = vfork();
    if (pid == 0) {
        execve(path, argv, environ);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0) {
    }
    return status;
}
"""


@pytest.fixture(scope="module")
def floor() -> Callable[[bytes], int]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the vfork floor")
    build = Path(os.environ.get("TMPDIR", "/tmp")) / f"orch-spawn-floor-{os.getpid()}"
    build.mkdir(exist_ok=True)
    (build / "floor.c").write_text(FLOOR_C)
    library = build / "floor.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(build / "floor.c")],
        check=True,
    )
    lib = ctypes.CDLL(str(library))  # ctypes releases the GIL around calls
    lib.floor_spawn_wait.argtypes = [ctypes.c_char_p]
    lib.floor_spawn_wait.restype = ctypes.c_int
    return lib.floor_spawn_wait


@pytest.fixture(scope="module", autouse=True)
def parent_memory() -> Iterator[bytearray | None]:
    """With the env switch on, the parent holds 2 GiB of touched memory."""
    if not BIG_PARENT:
        yield None
        return
    size = 2 << 30
    block = bytearray(size)
    block[::4096] = b"\x01" * (size // 4096)  # touch every page
    yield block
    del block


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not MEDIANS:
        return
    lines = format_ratio_table()
    # Fixture teardown runs under output capture: lift it to print the table.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines), flush=True)


def format_ratio_table() -> list[str]:
    label = "2 GiB parent" if BIG_PARENT else "small parent"
    lines = [f"spawn+wait of {TRUE}, {label}: medians; ratio = other / ours (> 1: ours faster)"]
    rows = [
        (
            "no limits",
            "orch_spawn",
            [
                "popen_plain",
                "popen_process_group",
                "posix_spawn",
                "asyncio_exec",
                "c_vfork_floor",
            ],
        ),
        ("containment", "orch_spawn", ["orch_spawn_no_cgroup"]),
        ("four limits", "orch_spawn_limits", ["popen_preexec_limits", "c_vfork_floor"]),
        ("asyncio", "orch_async", ["orch_open_process", "asyncio_exec"]),
        ("uvloop", "orch_async_uvloop", ["asyncio_exec_uvloop"]),
    ]
    for title, ours, others in rows:
        if ours not in MEDIANS:
            continue
        base = MEDIANS[ours]
        lines.append(f"  [{title}] {ours}: {base * 1e6:9.1f} us ({1 / base:7.0f}/s){_iqr(ours)}")
        for other in others:
            if other in MEDIANS:
                value = MEDIANS[other]
                lines.append(
                    f"      {other:24s} {value * 1e6:9.1f} us  ratio {value / base:6.2f}x"
                    f"{_iqr(other)}"
                )
    if "orch_spawn" in MEDIANS and "orch_spawn_no_cgroup" in MEDIANS:
        cost = MEDIANS["orch_spawn"] - MEDIANS["orch_spawn_no_cgroup"]
        state = cgroup.status()
        what = "cgroup per job" if state.available else f"no cgroup here: {state.reason}"
        lines.append(f"  containment cost ({what}): {cost * 1e6:+.1f} us per job (median diff)")
    return lines


def _iqr(name: str) -> str:
    if name not in QUARTILES:
        return ""
    low, high = QUARTILES[name]
    return f"  [IQR {low * 1e6:.0f}-{high * 1e6:.0f} us]"


def record(benchmark: Any, name: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        MEDIANS[name] = stats.stats.median


def _apply_limits() -> None:
    for res, value in (
        (resource.RLIMIT_AS, LIMITS.memory_bytes),
        (resource.RLIMIT_CPU, LIMITS.cpu_seconds),
        (resource.RLIMIT_NPROC, LIMITS.processes),
        (resource.RLIMIT_NOFILE, LIMITS.open_files),
    ):
        assert value is not None
        resource.setrlimit(res, (value, value))


# -- the contenders: each spawns /bin/true, waits, returns the exit status ----


def orch_spawn() -> int:
    return spawn([TRUE]).wait_blocking()


def orch_spawn_no_cgroup() -> int:
    # The same spawn with cgroup containment off: the job is a process group.
    saved = cgroup.enabled()
    cgroup.set_enabled(False)
    try:
        return spawn([TRUE]).wait_blocking()
    finally:
        cgroup.set_enabled(saved)


def orch_spawn_limits() -> int:
    return spawn([TRUE], limits=LIMITS).wait_blocking()


def popen_plain() -> int:
    return subprocess.Popen([TRUE]).wait()


if sys.version_info >= (3, 11):

    def popen_process_group() -> int:
        return subprocess.Popen([TRUE], process_group=0).wait()

else:  # Popen(process_group=) is new in 3.11: the 3.10 spelling

    def popen_process_group() -> int:
        return subprocess.Popen([TRUE], preexec_fn=os.setpgrp).wait()


if sys.version_info >= (3, 11):

    def popen_preexec_limits() -> int:
        return subprocess.Popen([TRUE], process_group=0, preexec_fn=_apply_limits).wait()

else:

    def popen_preexec_limits() -> int:
        def setpgrp_and_limits() -> None:
            os.setpgrp()
            _apply_limits()

        return subprocess.Popen([TRUE], preexec_fn=setpgrp_and_limits).wait()


def posix_spawn() -> int:
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


async def _orch_async() -> int:
    return await spawn([TRUE]).wait()


async def _orch_open_process() -> int:
    child = await open_process([TRUE])
    return await child.wait()


async def _asyncio_exec() -> int:
    proc = await asyncio.create_subprocess_exec(TRUE)
    return await proc.wait()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def uv_loop() -> Iterator[asyncio.AbstractEventLoop | None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the test extra
        yield None
        return
    event_loop = uvloop.new_event_loop()
    yield event_loop
    event_loop.close()


def contenders(
    floor: Callable[[bytes], int],
    loop: asyncio.AbstractEventLoop,
    uv_loop: asyncio.AbstractEventLoop | None = None,
) -> dict[str, Callable[[], int]]:
    on_uvloop: dict[str, Callable[[], int]] = {}
    if uv_loop is not None:
        on_uvloop = {
            "orch_async_uvloop": lambda: uv_loop.run_until_complete(_orch_async()),
            "asyncio_exec_uvloop": lambda: uv_loop.run_until_complete(_asyncio_exec()),
        }
    return on_uvloop | {
        "orch_spawn": orch_spawn,
        "orch_spawn_no_cgroup": orch_spawn_no_cgroup,
        "orch_spawn_limits": orch_spawn_limits,
        "popen_plain": popen_plain,
        "popen_process_group": popen_process_group,
        "popen_preexec_limits": popen_preexec_limits,
        "posix_spawn": posix_spawn,
        "c_vfork_floor": lambda: floor(TRUE.encode()),
        "orch_async": lambda: loop.run_until_complete(_orch_async()),
        "orch_open_process": lambda: loop.run_until_complete(_orch_open_process()),
        "asyncio_exec": lambda: loop.run_until_complete(_asyncio_exec()),
    }


@pytest.mark.benchmark(warmup=True, warmup_iterations=50)
@pytest.mark.parametrize(
    "name",
    [
        "orch_spawn",
        "orch_spawn_no_cgroup",
        "popen_plain",
        "popen_process_group",
        "posix_spawn",
        "c_vfork_floor",
        "orch_spawn_limits",
        "popen_preexec_limits",
        "orch_async",
        "orch_open_process",
        "asyncio_exec",
    ],
)
def test_spawn_wait(
    benchmark: Any,
    name: str,
    floor: Callable[[bytes], int],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """pytest-benchmark, one contender per test (sequential: load drift on a
    shared machine shows up in the ratios; see the interleaved test)."""
    group = (
        "limits"
        if "limits" in name
        else "async"
        if "async" in name
        else "containment"
        if name.startswith("orch_spawn") and "limits" not in name
        else "plain"
    )
    benchmark.group = f"spawn-wait-{group}"
    assert benchmark(contenders(floor, loop)[name]) == 0
    record(benchmark, name)


def test_interleaved_ratios(
    request: pytest.FixtureRequest,
    floor: Callable[[bytes], int],
    loop: asyncio.AbstractEventLoop,
    uv_loop: asyncio.AbstractEventLoop | None,
) -> None:
    """Runs every contender once per round, in a shuffled order, so load drift
    hits all of them alike; prints medians, interquartile ranges and ratios.
    Each sample starts with the young GC generations collected and the
    cyclic GC off. Rounds: env ORCHESTRATOR_SPAWN_BENCH_ROUNDS (default 300; 1 under
    --benchmark-disable), after ORCHESTRATOR_SPAWN_BENCH_WARMUP untimed rounds
    (default 20) so that no contender pays first-call costs (imports, the
    first event-loop or child-watcher set-up, cold caches) in its samples."""
    disabled = request.config.getoption("benchmark_disable", False) and not (
        request.config.getoption("benchmark_enable", False)
    )
    rounds = 1 if disabled else int(os.environ.get("ORCHESTRATOR_SPAWN_BENCH_ROUNDS", "300"))
    warmup = 0 if disabled else int(os.environ.get("ORCHESTRATOR_SPAWN_BENCH_WARMUP", "20"))
    runs = contenders(floor, loop, uv_loop)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    shuffler = random.Random(2)  # fixed seed: the same run order every time
    for _ in range(warmup):
        for _name, run in order:
            assert run() == 0
    # Equal GC state for every sample: no contender pays for a collection
    # triggered by another one's garbage. The young generations are collected
    # (untimed) before each sample, the cyclic GC is off while it runs.
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            # A new order each round: no contender always follows the same one.
            shuffler.shuffle(order)
            for name, run in order:
                gc.collect(1)
                started = time.perf_counter()
                assert run() == 0
                samples[name].append(time.perf_counter() - started)
    finally:
        if gc_was_enabled:
            gc.enable()
    if disabled:
        return
    saved = dict(MEDIANS)
    MEDIANS.clear()
    MEDIANS.update({name: statistics.median(values) for name, values in samples.items()})
    for name, values in samples.items():
        quartiles = statistics.quantiles(values, n=4)
        QUARTILES[name] = (quartiles[0], quartiles[2])
    lines = format_ratio_table()
    MEDIANS.clear()
    MEDIANS.update(saved)
    QUARTILES.clear()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[interleaved, {rounds} rounds]\n" + "\n".join(lines), flush=True)
