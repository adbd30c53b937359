"""Sandboxed jobs run in their own pid namespace (CONTRACT §7).

The child is the namespace's init: when it dies, the kernel kills whatever
is left in the namespace, ``setsid``'d processes included, so a sandboxed
job is contained even where there is no writable cgroup. These tests switch
cgroups off to see the namespace alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from orchestrator_spawn import PIPE, Child
from orchestrator_spawn._platform import cgroup
from orchestrator_spawn.sandbox import prepare_sandbox
from orchestrator_spawn.sandbox.linux import probe_capabilities
from tests.helpers.processes import wait_gone
from tests.helpers.sandbox import profile, spawn_prepared

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux only"),
]

# The job prints its pid as its namespace sees it and starts two escapees;
# the test finds their host pids through /proc/<pid>/ns/pid.
SCRIPT = "echo $$; setsid sleep 300 & (sleep 301 &); echo ready; exec sleep 302"


def _sandboxed(workspace: Path, argv: list[str]) -> Child:
    reason = probe_capabilities().unavailable("userns")
    if reason is not None:
        pytest.skip(f"this kernel cannot: {reason}")
    with prepare_sandbox(profile(workspace), argv) as prepared:
        # A pipe that stays open: a job waiting on stdin ("read x") must
        # not see end of file from the test runner's stdin and exit.
        return spawn_prepared(prepared, stdin=PIPE, stdout=PIPE)


def _namespace_members(child: Child) -> list[int]:
    """Host pids of the processes in the child's pid namespace."""
    ns = os.readlink(f"/proc/{child.pid}/ns/pid")
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                members.append(int(entry))
        except OSError:
            continue
    return members


@pytest.mark.usefixtures("no_cgroups")
def test_sandboxed_job_is_init_of_its_pid_namespace(tmp_path: Path) -> None:
    child = _sandboxed(tmp_path, ["sh", "-c", SCRIPT])
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"1\n"
        assert child.stdout.readline() == b"ready\n"
        assert child.containment == "pid_namespace"
        # init (sleep 302) and the two escapees, once the double fork is done
        deadline = time.monotonic() + 10
        while len(members := _namespace_members(child)) != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(members) == 3, members
        assert asyncio.run(child.kill()) == -signal.SIGKILL
        assert all(wait_gone(pid, timeout=2.0) for pid in members)
    finally:
        child.close()


@pytest.mark.usefixtures("no_cgroups")
def test_escapees_die_with_the_init_when_it_exits(tmp_path: Path) -> None:
    child = _sandboxed(tmp_path, ["sh", "-c", "setsid sleep 300 & echo ready; read x"])
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        # The background fork may not be visible yet when "ready" arrives.
        deadline = time.monotonic() + 10
        while not (members := [p for p in _namespace_members(child) if p != child.pid]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert members
        child.send_signal(signal.SIGKILL, group=False)  # only the init
        child.wait_blocking(timeout=10)
        assert all(wait_gone(pid, timeout=2.0) for pid in members)
    finally:
        child.close()


@pytest.mark.usefixtures("no_cgroups")
def test_terminate_of_an_init_without_handler_escalates(tmp_path: Path) -> None:
    # An init ignores signals it installed no handler for, SIGKILL aside
    # (the kernel's rule for pid namespaces): terminate() ends it at its
    # grace, with SIGKILL, and the namespace with it.
    child = _sandboxed(tmp_path, ["sleep", "300"])
    try:
        assert child.containment == "pid_namespace"
        assert asyncio.run(child.terminate(grace=0.3)) == -signal.SIGKILL
    finally:
        child.close()


def test_sandboxed_job_with_cgroup_says_cgroup(tmp_path: Path) -> None:
    if not cgroup.status().available:
        pytest.skip("no writable cgroup v2 here")
    child = _sandboxed(tmp_path, ["sh", "-c", "echo $$"])
    try:
        assert child.containment == "cgroup"
        assert child.stdout is not None
        assert child.stdout.readline() == b"1\n"  # in a pid namespace as well
        assert child.wait_blocking(timeout=10) == 0
    finally:
        child.close()
