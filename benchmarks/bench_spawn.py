"""spawn + wait of /bin/true: orchestrator_spawn against the alternatives.

Run for numbers (a ratio table is printed at the end of the module):

    python -m pytest benchmarks/bench_spawn.py --benchmark-enable -p no:cacheprovider

and with the parent holding 2 GiB of touched memory:

    ORCHESTRATOR_SPAWN_BENCH_BIG_PARENT=1 python -m pytest benchmarks/bench_spawn.py \
        --benchmark-enable -p no:cacheprovider

In CI they run once each with ``--benchmark-disable`` as a smoke test.
Ratios are alternative_median / orchestrator_median (> 1: we are faster).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import ResourceLimits, spawn

TRUE = "/bin/true"
BIG_PARENT_ENV = "ORCHESTRATOR_SPAWN_BENCH_BIG_PARENT"
BIG_PARENT = os.environ.get(BIG_PARENT_ENV, "") not in ("", "0")
LIMITS = ResourceLimits(memory_bytes=1 << 30, cpu_seconds=60, processes=4096, open_files=256)

# name -> median seconds, filled as the benchmarks run.
MEDIANS: dict[str, float] = {}

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
    return lib.floor_spawn_wait  # type: ignore[no-any-return]


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
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    label = "2 GiB parent" if BIG_PARENT else "small parent"
    write("")
    write(f"spawn+wait of {TRUE}, {label}: median per spawn, ratio = other / ours")
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
        ("four limits", "orch_spawn_limits", ["popen_preexec_limits", "c_vfork_floor"]),
        ("asyncio", "orch_async", ["asyncio_exec"]),
    ]
    for title, ours, others in rows:
        if ours not in MEDIANS:
            continue
        base = MEDIANS[ours]
        write(f"  [{title}] {ours}: {base * 1e6:9.1f} us ({1 / base:7.0f}/s)")
        for other in others:
            if other in MEDIANS:
                value = MEDIANS[other]
                write(f"      {other:24s} {value * 1e6:9.1f} us  ratio {value / base:6.2f}x")


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


@pytest.mark.benchmark(group="spawn-wait")
def test_orch_spawn(benchmark: Any) -> None:
    def run() -> int:
        return spawn([TRUE]).wait_blocking()

    assert benchmark(run) == 0
    record(benchmark, "orch_spawn")


@pytest.mark.benchmark(group="spawn-wait")
def test_popen_plain(benchmark: Any) -> None:
    assert benchmark(lambda: subprocess.Popen([TRUE]).wait()) == 0
    record(benchmark, "popen_plain")


@pytest.mark.benchmark(group="spawn-wait")
def test_popen_process_group(benchmark: Any) -> None:
    assert benchmark(lambda: subprocess.Popen([TRUE], process_group=0).wait()) == 0
    record(benchmark, "popen_process_group")


@pytest.mark.benchmark(group="spawn-wait")
def test_posix_spawn(benchmark: Any) -> None:
    def run() -> int:
        pid = os.posix_spawn(TRUE, [TRUE], os.environ)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert benchmark(run) == 0
    record(benchmark, "posix_spawn")


@pytest.mark.benchmark(group="spawn-wait")
def test_c_vfork_floor(benchmark: Any, floor: Callable[[bytes], int]) -> None:
    assert benchmark(floor, TRUE.encode()) == 0
    record(benchmark, "c_vfork_floor")


@pytest.mark.benchmark(group="spawn-wait-limits")
def test_orch_spawn_limits(benchmark: Any) -> None:
    def run() -> int:
        return spawn([TRUE], limits=LIMITS).wait_blocking()

    assert benchmark(run) == 0
    record(benchmark, "orch_spawn_limits")


@pytest.mark.benchmark(group="spawn-wait-limits")
def test_popen_preexec_limits(benchmark: Any) -> None:
    def run() -> int:
        return subprocess.Popen([TRUE], process_group=0, preexec_fn=_apply_limits).wait()

    assert benchmark(run) == 0
    record(benchmark, "popen_preexec_limits")


@pytest.fixture(scope="module")
def event_loop_for_bench() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.benchmark(group="async-spawn-wait")
def test_orch_async(benchmark: Any, event_loop_for_bench: asyncio.AbstractEventLoop) -> None:
    async def run() -> int:
        return await spawn([TRUE]).wait()

    assert benchmark(lambda: event_loop_for_bench.run_until_complete(run())) == 0
    record(benchmark, "orch_async")


@pytest.mark.benchmark(group="async-spawn-wait")
def test_asyncio_exec(benchmark: Any, event_loop_for_bench: asyncio.AbstractEventLoop) -> None:
    async def run() -> int:
        proc = await asyncio.create_subprocess_exec(TRUE)
        return await proc.wait()

    assert benchmark(lambda: event_loop_for_bench.run_until_complete(run())) == 0
    record(benchmark, "asyncio_exec")
