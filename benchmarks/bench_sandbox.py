"""Spawn + wait cost of each sandbox mode against host mode (Linux).

Each round prepares the sandbox (builds the native plan; starts the proxy in
allowlist mode), spawns, applies the plan in the child, execs ``/bin/true``,
waits, and closes the sandbox. The kernel probes run once, before the timed
rounds (``probe_capabilities`` is cached); ``test_probe_once`` shows what a
spawn would cost if it probed every time.

Host mode is a plain ``spawn``; a sandbox plan adds its namespaces (made by
``clone`` itself, still a vfork child) and the sandbox steps (the read-only
mount tree, a private devpts, Landlock, seccomp), so the ratios
are what a user pays; ``test_spawn_wait_empty_plan`` (a plan with nothing to
do) separates the two.
Run for real numbers with
``python -m pytest benchmarks/bench_sandbox.py --benchmark-enable``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import spawn
from orchestrator_spawn._native.sandbox import SandboxPlan
from orchestrator_spawn.config import ExecutionProfile
from orchestrator_spawn.sandbox import linux as sandbox_linux
from orchestrator_spawn.sandbox import prepare_sandbox

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux sandbox backend"
)

TRUE = "/bin/true"

MODES: dict[str, dict[str, Any]] = {
    "host": {"mode": "host"},
    "fs_readonly": {"mode": "sandbox", "fs_mode": "workspace_readonly"},
    "fs_rw_scoped_with_readonly_bind": {
        "mode": "sandbox",
        "fs_mode": "workspace_rw_scoped",
        "writable_paths": ["out"],
        "readable_paths": ["out/ro"],
    },
    "net_deny": {"mode": "sandbox", "fs_mode": "workspace_readonly", "network_mode": "deny"},
    "net_allowlist": {
        "mode": "sandbox",
        "fs_mode": "workspace_readonly",
        "network_mode": "allowlist",
        "network_allowlist": ["127.0.0.1:9"],
    },
}


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="osp-bench-") as root:
        (Path(root) / "out" / "ro").mkdir(parents=True)
        yield Path(root)


def _spawn_and_wait(resolved: Any) -> None:
    with prepare_sandbox(resolved, [TRUE]) as prepared:
        env = {**prepared.env_overrides}
        with spawn(prepared.argv, env=env, _sandbox_plan=prepared.native_plan) as child:
            assert child.wait_blocking(timeout=30) == 0


@pytest.mark.parametrize("mode", list(MODES))
def test_spawn_wait(benchmark: Any, workspace: Path, mode: str) -> None:
    caps = sandbox_linux.probe_capabilities()  # probed once, outside the timing
    if mode != "host" and (caps.seccomp or caps.landlock or caps.userns):
        pytest.skip("every sandbox mode needs Landlock, seccomp and a user namespace")
    resolved = ExecutionProfile(**MODES[mode]).resolve(mode, workspace)
    benchmark.group = "sandbox spawn+wait /bin/true"
    benchmark(_spawn_and_wait, resolved)


def test_spawn_wait_empty_plan(benchmark: Any) -> None:
    """An empty plan: the sandbox hooks with nothing to do (the floor)."""
    plan = SandboxPlan()

    def spawn_and_wait() -> None:
        with spawn([TRUE], env={}, _sandbox_plan=plan) as child:
            assert child.wait_blocking(timeout=30) == 0

    benchmark.group = "sandbox spawn+wait /bin/true"
    benchmark(spawn_and_wait)


def test_probe_once(benchmark: Any) -> None:
    benchmark.group = "sandbox probes (paid once per process)"
    benchmark(sandbox_linux._probe_all)
