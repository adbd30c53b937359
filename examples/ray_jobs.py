"""Scale-out: orchestrator-spawn inside Ray.

One ``JobRunner`` actor per node runs shell jobs through
``spawn_with_runner_and_capture``: the job's stdout and stderr go through the
native redaction pump before any byte reaches Python, a per-node semaphore
caps how many jobs run at once, and each job comes back with its redacted
lines, exit status, duration and ``job_usage()``. ``run_job_task`` is the
same as a plain Ray task (no actor).

The driver (``python examples/ray_jobs.py --jobs 200``) submits N jobs spread
over the runners, shows a progress bar and prints a summary table.

Needs ``pip install 'orchestrator-spawn[ray]'``. See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import ray

from orchestrator_spawn import (
    PIPE,
    STDOUT,
    RunnerConfig,
    SpawnError,
    run_blocking,
    spawn_with_runner_and_capture,
)

__all__ = ["JobRunner", "RunnerConfig", "SpawnError", "drive", "make_runners", "run_job_task"]

# The example's redaction: the built-in pack (RunnerConfig's default patterns).
RUNNER = RunnerConfig(shell="/bin/bash", shell_arg="-c")


async def _stream_job(
    runner: RunnerConfig, command: str, cwd: str, result: dict[str, Any]
) -> AsyncIterator[bytes]:
    """Runs ``command``; yields its redacted output line by line (stdout and
    stderr merged); fills ``result`` with returncode, duration and job_usage.

    Any way out of here (the caller cancelled, the consumer went away, an
    error) kills the whole job before returning: nothing of it survives."""
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    try:
        captured = spawn_with_runner_and_capture(
            runner,
            command,
            cwd,
            write_fd,
            write_fd,
            runner.redaction_patterns,
        )
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    child = captured.child
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )

    async def finish_capture() -> None:
        try:
            await captured.output_capture.wait()
        finally:
            os.close(write_fd)  # the pump is done with it: the reader sees EOF

    pumping = asyncio.ensure_future(finish_capture())
    try:
        while line := await reader.readline():
            yield line
        await pumping
        returncode = await child.wait()
        usage = child.job_usage()
        result.update(
            returncode=returncode,
            duration=time.monotonic() - started,
            cpu_seconds=usage.cpu_seconds,
            containment=child.containment,
        )
    finally:
        if child.returncode is None or child.job_usage().processes:
            await child.kill()  # SIGKILL to the whole job (cgroup.kill where there is one)
        if not pumping.done():
            pumping.cancel()
            with contextlib.suppress(BaseException):
                await pumping
        transport.close()


@ray.remote
class JobRunner:
    """Runs shell jobs on its node, at most ``max_jobs`` at a time.

    Create it with ``.options(max_concurrency=...)`` at least ``max_jobs``
    (an async actor runs that many method calls at once); calls beyond the
    cap wait for the semaphore: back-pressure is at the runner, not in the
    kernel."""

    def __init__(self, max_jobs: int = 4, runner: RunnerConfig | None = None) -> None:
        self.runner = runner or RUNNER
        self.max_jobs = max_jobs
        self.cap = asyncio.Semaphore(max_jobs)
        self.running = 0
        self.peak = 0

    async def run_job(self, command: str, cwd: str = "/") -> dict[str, Any]:
        """Runs one job; returns its redacted lines and status."""
        async with self.cap:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                result: dict[str, Any] = {"node": ray.get_runtime_context().get_node_id()}
                lines = [line async for line in _stream_job(self.runner, command, cwd, result)]
                result["lines"] = lines
                return result
            finally:
                self.running -= 1

    async def stream_job(self, command: str, cwd: str = "/") -> AsyncIterator[Any]:
        """Streams one job: its redacted lines as they come (``bytes``), then
        a final ``dict`` with the status. Call with
        ``.options(num_returns="streaming")``."""
        async with self.cap:
            result: dict[str, Any] = {}
            async for line in _stream_job(self.runner, command, cwd, result):
                yield line
            yield result

    async def run_job_subprocess(self, command: str, cwd: str = "/") -> dict[str, Any]:
        """The same job through ``asyncio.create_subprocess_exec`` (no
        redaction, no job containment): the baseline of docs/scale-out.md."""
        async with self.cap:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                self.runner.shell,
                self.runner.shell_arg,
                command,
                cwd=cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return {
                "lines": out.splitlines(keepends=True),
                "returncode": proc.returncode,
                "duration": time.monotonic() - started,
            }

    def stats(self) -> dict[str, int]:
        return {"max_jobs": self.max_jobs, "running": self.running, "peak": self.peak}


@ray.remote
def run_job_task(command: str) -> dict[str, Any]:
    """One job as a plain Ray task (blocking ``run_blocking``, redacted)."""
    started = time.monotonic()
    result = run_blocking(
        [RUNNER.shell, RUNNER.shell_arg, command], capture_output=False, stdout=PIPE, stderr=STDOUT
    )
    return {
        "lines": (result.stdout or b"").splitlines(keepends=True),
        "returncode": result.returncode,
        "duration": time.monotonic() - started,
    }


def make_runners(per_node_jobs: int = 4) -> list[Any]:
    """One JobRunner per alive node, pinned there (soft=False: a runner never
    moves; if its node dies, its calls fail and the driver resubmits)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    runners = []
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        runners.append(
            JobRunner.options(
                max_concurrency=per_node_jobs + 2,
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(per_node_jobs)
        )
    return runners


def _progress(done: int, total: int, width: int = 40) -> None:
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def drive(commands: list[str], runners: list[Any], method: str = "run_job") -> list[dict[str, Any]]:
    """Submits every command round-robin over the runners; returns the
    results in submission order, drawing a progress bar meanwhile."""
    refs = [
        getattr(runners[i % len(runners)], method).remote(command)
        for i, command in enumerate(commands)
    ]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[dict[str, Any]] = [{} for _ in refs]
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=min(len(pending), 16), timeout=1.0)
        for ref in ready:
            try:
                results[index[ref]] = ray.get(ref)
            except Exception as exc:  # a job that failed to spawn, a dead node
                results[index[ref]] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        _progress(len(refs) - len(pending), len(refs))
    sys.stderr.write("\n")
    return results


def summary(results: list[dict[str, Any]], wall: float) -> str:
    ok = sum(1 for r in results if r.get("returncode") == 0)
    failed = sum(1 for r in results if "returncode" in r and r["returncode"] != 0)
    errors = sum(1 for r in results if "error" in r)
    durations = sorted(r["duration"] for r in results if "duration" in r)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in results)
    lines = sum(len(r.get("lines", ())) for r in results)
    median = durations[len(durations) // 2] if durations else 0.0
    rows = [
        ("jobs", str(len(results))),
        ("exit 0", str(ok)),
        ("exit != 0", str(failed)),
        ("errors", str(errors)),
        ("lines", str(lines)),
        ("median duration", f"{median * 1000:.1f} ms"),
        ("job CPU total", f"{cpu:.2f} s"),
        ("wall", f"{wall:.2f} s"),
        ("throughput", f"{len(results) / wall:.1f} jobs/s" if wall else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--per-node", type=int, default=4, help="concurrency cap per node")
    parser.add_argument("--lines", type=int, default=64, help="output lines per job")
    parser.add_argument("--subprocess", action="store_true", help="baseline: plain subprocess")
    parser.add_argument("--address", default=None, help="Ray cluster (default: a local one)")
    args = parser.parse_args(argv)
    ray.init(address=args.address, num_cpus=None if args.address else 2, include_dashboard=False)
    try:
        runners = make_runners(args.per_node)
        ray.get([r.stats.remote() for r in runners])  # actors up before the clock starts
        command = f"for i in $(seq {args.lines}); do echo line $i; done" if args.lines else "true"
        started = time.monotonic()
        method = "run_job_subprocess" if args.subprocess else "run_job"
        results = drive([command] * args.jobs, runners, method)
        print(summary(results, time.monotonic() - started))
        return 0 if all(r.get("returncode") == 0 for r in results) else 1
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
