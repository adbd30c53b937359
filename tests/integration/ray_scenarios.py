"""Runs the Ray scenarios of test_ray.py; prints one JSON object.

Must run in a private network namespace holding only loopback (test_ray.py
starts it under ``unshare --net`` and brings ``lo`` up): Ray binds and dials
the machine's interface address, and this keeps the test's cluster off the
real network. Usage: ray_scenarios.py MARKER NJOBS TEMP_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import ray
import ray_jobs  # examples/ray_jobs.py, on PYTHONPATH (the Ray workers inherit it)

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a planted GitHub token


def marked_pids(marker: str) -> list[int]:
    """Live processes whose argv contains ``marker`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def sleeper_job(marker: str) -> str:
    """A job with a setsid descendant: both processes carry ``marker`` in argv."""
    return (
        f"setsid bash -c 'exec -a {marker}-setsid sleep 600' </dev/null & "
        f"exec -a {marker}-main sleep 600"
    )


def leftovers_after(marker: str, cancel: Any, ref: Any) -> dict[str, Any]:
    """Waits for both marked processes, runs ``cancel``, and reports what of
    the job is still alive 10 s later (it should be nothing)."""
    started = wait_for(lambda: len(marked_pids(marker)) >= 2, 30)
    cancel()
    gone = wait_for(lambda: not marked_pids(marker), 10)
    error = ""
    try:
        ray.get(ref, timeout=30)
    except Exception as exc:
        error = type(exc).__name__
    return {"started": started, "gone": gone, "alive": marked_pids(marker), "error": error}


def main() -> None:
    marker, njobs, temp_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out: dict[str, Any] = {"netns": os.readlink("/proc/self/ns/net")}
    print("NETNS " + out["netns"], flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        runner = ray_jobs.JobRunner.options(max_concurrency=6).remote(4)

        # N jobs, each printing the planted token amid ordinary lines.
        command = f"echo begin; echo token={TOKEN}; echo $((6*7)) >&2; echo end"
        started = time.monotonic()
        results = ray.get([runner.run_job.remote(command) for _ in range(njobs)], timeout=300)
        out["jobs"] = {
            "n": len(results),
            "seconds": time.monotonic() - started,
            "returncodes": sorted({r["returncode"] for r in results}),
            "token_seen": any(TOKEN.encode() in b"".join(r["lines"]) for r in results),
            "redacted_seen": all(b"[REDACTED]" in b"".join(r["lines"]) for r in results),
            "all_lines": all(
                b"begin\n" in r["lines"] and b"42\n" in r["lines"] and b"end\n" in r["lines"]
                for r in results
            ),
            "peak": ray.get(runner.stats.remote())["peak"],
            "containment": sorted({r["containment"] for r in results}),
        }

        # A streamed job: lines come back redacted, then the status.
        stream = runner.stream_job.options(num_returns="streaming").remote(command)
        items = [ray.get(item) for item in stream]
        out["stream"] = {
            "lines": [i.decode() for i in items if isinstance(i, bytes)],
            "status": items[-1] if isinstance(items[-1], dict) else None,
        }

        # ray.cancel on a running job of the actor.
        m = f"{marker}-cancel"
        ref = runner.run_job.remote(sleeper_job(m))
        out["cancel"] = leftovers_after(m, lambda: ray.cancel(ref), ref)

        # ray.kill of the actor while a job runs in it.
        victim = ray_jobs.JobRunner.options(max_concurrency=6).remote(4)
        m = f"{marker}-kill"
        ref = victim.run_job.remote(sleeper_job(m))
        out["kill"] = leftovers_after(m, lambda: ray.kill(victim), ref)

        # ray.cancel(force=True) on a plain remote task: SIGKILL of its worker.
        m = f"{marker}-force"
        ref = ray_jobs.run_job_task.remote(sleeper_job(m))
        out["force"] = leftovers_after(m, lambda: ray.cancel(ref, force=True), ref)

        # A job that cannot spawn: a clear error in the driver, not a hang.
        bad = ray_jobs.JobRunner.options(max_concurrency=2).remote(
            1, ray_jobs.RunnerConfig(shell="/nonexistent/bash", policy="unsafe")
        )
        started = time.monotonic()
        try:
            ray.get(bad.run_job.remote("true"), timeout=60)
            out["spawn_error"] = {"raised": False}
        except Exception as exc:
            out["spawn_error"] = {
                "raised": True,
                "type": type(exc).__name__,
                # Ray wraps it in a RayTaskError whose .cause is the original.
                "is_spawn_error": isinstance(getattr(exc, "cause", exc), ray_jobs.SpawnError),
                "cause": repr(getattr(exc, "cause", None)),
                "message": str(exc),
                "seconds": time.monotonic() - started,
            }
    finally:
        ray.shutdown()
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    main()
