"""orchestrator-spawn inside Ray (examples/ray_jobs.py) on a local cluster.

The cluster runs in a private network namespace that holds only loopback:
Ray binds and dials the machine's interface address, and the test must not
put a cluster on the real network. So the scenarios run in a child,
``tests/integration/ray_scenarios.py``, started under ``unshare --net`` with
``lo`` brought up; it prints its findings as JSON and this file checks them.
Everything that ran in that namespace is killed afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.linux_only, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NJOBS = 200
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Ray scale-out test needs Linux (unshare --net)"
    if not (ROOT / "examples" / "ray_jobs.py").is_file():
        return "examples/ray_jobs.py is not here (tests run outside the source tree)"
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'orchestrator-spawn[ray]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare(1) and ip(8) to run the Ray cluster in a private network namespace"
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a private network namespace: {probe.stderr.decode().strip()}"
    return None


def _marked_pids(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def _pids_in_netns(netns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == netns:
                    found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Any]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    marker = f"osray{uuid.uuid4().hex[:10]}"
    temp_dir = tempfile.mkdtemp(prefix="osray-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "examples"), str(ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    helper = HERE / "ray_scenarios.py"
    script = f'ip link set lo up && exec "$0" {helper} {marker} {NJOBS} {temp_dir}'
    proc = subprocess.Popen(
        ["unshare", "--net", "bash", "-c", script, sys.executable],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    netns = ""
    try:
        out, err = proc.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        for line in (out if "out" in locals() else b"").decode(errors="replace").splitlines():
            if line.startswith("NETNS "):
                netns = line[6:]
        # Everything left in the private namespace is Ray's, started here.
        if netns:
            for pid in _pids_in_netns(netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in _marked_pids(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    text = out.decode(errors="replace")
    results = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert results, f"scenarios printed no result (exit {proc.returncode}):\n{err.decode()[-4000:]}"
    data: dict[str, Any] = json.loads(results[-1][len("RESULT ") :])
    data["marker"] = marker
    return data


def test_many_jobs_come_back_redacted(scenarios: dict[str, Any]) -> None:
    jobs = scenarios["jobs"]
    assert jobs["n"] == NJOBS
    assert jobs["returncodes"] == [0]
    assert not jobs["token_seen"], "the planted token came back in clear"
    assert jobs["redacted_seen"]
    assert jobs["all_lines"], "stdout or stderr lines are missing"
    assert 1 <= jobs["peak"] <= 4, "the per-node concurrency cap was not kept"


def test_streamed_lines_are_redacted(scenarios: dict[str, Any]) -> None:
    stream = scenarios["stream"]
    assert TOKEN not in "".join(stream["lines"])
    assert "begin\n" in stream["lines"]
    assert "token=[REDACTED]\n" in stream["lines"]
    assert stream["status"]["returncode"] == 0


@pytest.mark.parametrize("how", ["cancel", "kill", "force"])
def test_cancelled_job_leaves_no_process(scenarios: dict[str, Any], how: str) -> None:
    """ray.cancel on the actor's job, ray.kill(actor), ray.cancel(force=True)
    on a plain task: the job, its setsid descendant included, is gone."""
    found = scenarios[how]
    assert found["started"], f"{how}: the job never started both its processes: {found}"
    assert found["gone"], f"{how}: processes of the job still alive: {found['alive']}"
    assert found["error"], f"{how}: ray.get of the cancelled job did not raise"
    assert not _marked_pids(f"{scenarios['marker']}-{how}")


def test_spawn_failure_is_a_clear_error(scenarios: dict[str, Any]) -> None:
    failure = scenarios["spawn_error"]
    assert failure["raised"]
    assert failure["is_spawn_error"], failure
    assert "/nonexistent/bash" in failure["message"]
    assert "shell=" in failure["message"]
    assert failure["seconds"] < 30


def test_no_ray_process_left(scenarios: dict[str, Any]) -> None:
    # The fixture killed the namespace's processes; give the kernel a moment.
    deadline = time.monotonic() + 5
    while _pids_in_netns(scenarios["netns"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pids_in_netns(scenarios["netns"])
